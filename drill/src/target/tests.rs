use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const TARGET: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: DrillTarget
metadata: {name: staging}
spec:
  kubeconfig: admin.kubeconfig
  clusters:
    - {name: idc-bj, agents: {namespace: causeway-system, deployment: causeway-agent}}
    - {name: aws-sg, context: sg}
  users:
    - {name: alice, kubeconfig: alice.kubeconfig}
  dns: {server: \"127.0.0.1:5353\", api: \"http://127.0.0.1:8053\"}
  scheduler: \"http://127.0.0.1:8080/\"
";

const SCENARIO: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Scenario
metadata: {name: s}
spec:
  description: d
  topology:
    clusters:
      - {name: idc-bj, role: idc}
      - {name: aws-sg, role: cloud}
    users:
      - {name: alice, group: dev}
  steps:
    - name: reads
      expect:
        kubectl: {user: alice, cluster: idc-bj, args: [get, pods]}
        within: 5s
";

fn scenario(steps: &str) -> Scenario {
    crate::scenario::parse_str(Path::new("s.yaml"), &format!("{SCENARIO}{steps}")).unwrap()
}

fn target(dir: &Path, text: &str) -> Result<DrillTarget, ConfigError> {
    write(dir, "admin.kubeconfig", "x");
    write(dir, "alice.kubeconfig", "x");
    DrillTarget::load(&write(dir, "t.yaml", text))
}

#[test]
fn a_target_is_read_with_paths_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let t = target(dir.path(), TARGET).unwrap();
    assert_eq!(t.name, "staging");
    assert_eq!(t.kubectl, PathBuf::from("kubectl"));
    assert_eq!(
        t.clusters[0].context, "idc-bj",
        "context defaults to the name"
    );
    assert_eq!(t.clusters[1].context, "sg");
    assert_eq!(
        t.clusters[0].kubeconfig,
        dir.path().join("admin.kubeconfig")
    );
    assert_eq!(
        t.clusters[0].agents.as_ref().map(|a| a.deployment.as_str()),
        Some("causeway-agent")
    );
    assert_eq!(t.users[0].1, dir.path().join("alice.kubeconfig"));
    assert_eq!(t.dns.unwrap().api, Some("127.0.0.1:8053".parse().unwrap()));
    assert_eq!(t.scheduler, Some("127.0.0.1:8080".parse().unwrap()));
}

#[test]
fn errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let e = target(dir.path(), &TARGET.replace("context: sg", "contxt: sg")).unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains("t.yaml:8:"), "{shown}");
    assert!(
        shown.contains("DrillTarget/staging: spec.clusters[1].contxt"),
        "{shown}"
    );
    let e = target(
        dir.path(),
        &TARGET.replace("alice.kubeconfig}", "nobody.kubeconfig}"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("spec.users[0].kubeconfig"), "{e}");
    let e = target(dir.path(), &TARGET.replace("127.0.0.1:5353", "dns.local")).unwrap_err();
    assert!(e.to_string().contains("spec.dns.server"), "{e}");
    let e = target(
        dir.path(),
        &TARGET.replace("kind: DrillTarget", "kind: Scenario"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("DrillTarget"), "{e}");
}

#[test]
fn faults_are_refused_without_allow_faults_and_when_remote_cannot_do_them() {
    let dir = tempfile::tempdir().unwrap();
    let t = target(dir.path(), TARGET).unwrap();
    assert_eq!(t.refusal(&scenario(""), false), None, "no fault: fine");
    let surge = "    - name: surge\n      fault: {loadSurge: {scale: {cluster: idc-bj, workload: {namespace: shop, deployment: web}, replicas: 6}}}\n";
    let why = t.refusal(&scenario(surge), false).unwrap();
    assert!(
        why.contains("fault steps (surge)") && why.contains("--allow-faults"),
        "{why}"
    );
    assert_eq!(t.refusal(&scenario(surge), true), None);
    for (step, needle) in [
        (
            "{apiServerStopped: {cluster: idc-bj}}",
            "step x: apiServerStopped cannot",
        ),
        (
            "{networkCut: {cluster: idc-bj}}",
            "step x: networkCut cannot",
        ),
        (
            "{agentsStopped: {cluster: aws-sg}}",
            "where aws-sg's agents run",
        ),
        (
            "{loadSurge: {podCpu: {cluster: idc-bj, workload: {namespace: shop, deployment: web}, cpu: \"1\"}}}",
            "podCpu cannot",
        ),
    ] {
        let s = scenario(&format!("    - name: x\n      fault: {step}\n"));
        let why = t.refusal(&s, true).unwrap_or_default();
        assert!(why.contains(needle), "{step}: {why}");
    }
    let agents = scenario("    - name: x\n      fault: {agentsStopped: {cluster: idc-bj}}\n");
    assert_eq!(t.refusal(&agents, true), None, "idc-bj's agents are named");
    // A cluster or user the target lacks.
    let t2 = target(
        dir.path(),
        &TARGET.replace("    - {name: aws-sg, context: sg}\n", ""),
    )
    .unwrap();
    let why = t2.refusal(&scenario(""), false).unwrap();
    assert!(why.contains("cluster aws-sg is not in the target"), "{why}");
}

#[test]
fn a_kept_sandbox_is_written_as_a_target_that_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let k = write(dir.path(), "idc-bj.kubeconfig", "x");
    let a = write(dir.path(), "alice.kubeconfig", "x");
    let yaml = target_yaml(
        "s-sandbox",
        Path::new("/bin/kubectl"),
        &[("idc-bj".into(), k.clone())],
        &[("alice".into(), a)],
        Some((
            "127.0.0.1:5353".parse().unwrap(),
            "127.0.0.1:8053".parse().unwrap(),
        )),
        None,
        Some("127.0.0.1:9100".parse().unwrap()),
    );
    let t = DrillTarget::load(&write(dir.path(), "target.yaml", &yaml)).unwrap();
    assert_eq!(t.clusters[0].kubeconfig, k);
    assert_eq!(t.kubectl, PathBuf::from("/bin/kubectl"));
    assert_eq!(t.stub_metrics, Some("127.0.0.1:9100".parse().unwrap()));
    assert!(t.scheduler.is_none());
}
