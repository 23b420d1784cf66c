use std::path::Path;
use std::time::Duration;

use super::validation::check_quantity;
use super::*;
use causeway_config::HumanDuration;

const GOOD: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Scenario
metadata: {name: t}
spec:
  description: a test drill
  hypothesis: it holds
  topology:
    clusters:
      - {name: idc-bj, role: idc}
      - {name: aws-sg, role: cloud, nodes: 1, cpu: 500m, agents: 2}
    clients:
      - {name: sg, subnet: 203.0.113.0/24, rttMs: {idc-bj: 70, aws-sg: 8}}
  install:
    policies: [p.yaml]
    zones: [z.yaml]
    workloads: [{file: w.yaml}, {file: db.yaml, clusters: [idc-bj, aws-sg]}]
  steps:
    - {name: settle, wait: 2s}
    - name: surge
      fault: {loadSurge: {scale: {cluster: idc-bj, workload: {namespace: shop, deployment: web}, replicas: 6}}}
    - name: ready
      expect:
        replicasReady: {cluster: aws-sg, workload: {namespace: shop, deployment: web}, op: \">=\", value: 1}
        within: 30s
        for: 5s
    - name: dns
      expect:
        dns: {name: app.svc.example., client: sg, contains: [aws-sg]}
        within: 10s
    - name: cut
      fault: {networkCut: {cluster: idc-bj}}
    - name: primary
      expect:
        primary: {policy: db, cluster: aws-sg}
        within: 1m
    - name: rto
      measure: {from: cut, to: primary, atMost: 60s}
    - name: metric
      expect:
        metric: {component: scheduler, name: causeway_scheduler_failovers_total, labels: {policy: db}, op: atLeast, value: 1}
        within: 5s
";

fn parse(text: &str) -> Result<Scenario, ConfigError> {
    parse_str(Path::new("t.yaml"), text)
}

/// `GOOD` with `from` replaced by `to` (which must occur exactly once).
fn with(from: &str, to: &str) -> String {
    assert_eq!(
        GOOD.matches(from).count(),
        1,
        "{from:?} must occur once in GOOD"
    );
    GOOD.replace(from, to)
}

/// The 1-based line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
}

/// Parses `text`, which must fail at the line holding `marker`, naming `field`, with a
/// reason containing `reason`.
fn fails(text: &str, marker: &str, field: &str, reason: &str) {
    let e = parse(text).expect_err("should fail");
    let shown = e.to_string();
    let line = line_of(text, marker);
    assert_eq!(e.position.map(|p| p.line), Some(line), "{shown}");
    assert_eq!(e.field, field, "{shown}");
    assert!(e.reason.contains(reason), "{shown}");
    assert!(
        shown.starts_with(&format!("t.yaml:{line}:"))
            && shown.contains(&format!(": Scenario/t: {field}: ")),
        "{shown}"
    );
}

#[test]
fn reads_every_part() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.name, "t");
    assert_eq!(s.summary_line(), "a test drill");
    assert_eq!(s.hypothesis, "it holds");
    let idc = &s.topology.clusters[0];
    assert_eq!(
        (idc.role, idc.nodes, idc.cpu.as_str(), idc.agents),
        (Role::Idc, 2, "32", 1)
    );
    let aws = &s.topology.clusters[1];
    assert_eq!(
        (aws.role, aws.nodes, aws.cpu.as_str(), aws.agents),
        (Role::Cloud, 1, "500m", 2)
    );
    assert_eq!(s.topology.stub.replicas, 1);
    assert_eq!(s.topology.clients[0].rtt_ms.len(), 2);
    assert_eq!(s.home().map(|c| c.name.as_str()), Some("idc-bj"));
    assert_eq!(s.workload_clusters(&s.install.workloads[0]).len(), 1);
    assert_eq!(s.workload_clusters(&s.install.workloads[1]).len(), 2);
    let kinds: Vec<&str> = s.steps.iter().map(|st| st.action.kind()).collect();
    assert_eq!(
        kinds,
        [
            "wait", "fault", "expect", "expect", "fault", "expect", "measure", "expect"
        ]
    );
    assert_eq!(s.steps[0].action, StepAction::Wait(Duration::from_secs(2)));
    let StepAction::Expect(e) = &s.steps[2].action else {
        panic!("{:?}", s.steps[2]);
    };
    assert_eq!(
        (e.within, e.hold),
        (Duration::from_secs(30), Some(Duration::from_secs(5)))
    );
    let Condition::ReplicasReady(r) = &e.condition else {
        panic!("{e:?}");
    };
    assert_eq!((r.op, r.value), (Op::AtLeast, 1));
    let StepAction::Expect(e) = &s.steps[3].action else {
        panic!()
    };
    assert_eq!(
        e.condition.to_string(),
        "dns app.svc.example. from sg answers include [aws-sg]"
    );
    assert!(matches!(
        &s.steps[4].action,
        StepAction::Fault(f @ Fault::NetworkCut(_)) if f.cluster().map(ClusterId::as_str) == Some("idc-bj")
    ));
    let StepAction::Measure(m) = &s.steps[6].action else {
        panic!()
    };
    assert_eq!(m.at_most, Some(HumanDuration(Duration::from_secs(60))));
    assert_eq!(s.step_index("rto"), Some(6));
    assert_eq!(s.resolve(Path::new("p.yaml")), Path::new("p.yaml"));
}

#[test]
fn ops_quoted_or_in_words() {
    for (written, op) in [
        ("\">=\"", Op::AtLeast),
        ("atLeast", Op::AtLeast),
        ("\"<=\"", Op::AtMost),
        ("atMost", Op::AtMost),
        ("\"=\"", Op::Equals),
        ("equals", Op::Equals),
    ] {
        let s = parse(&with("op: \">=\"", &format!("op: {written}"))).unwrap();
        let StepAction::Expect(Expect {
            condition: Condition::ReplicasReady(r),
            ..
        }) = &s.steps[2].action
        else {
            panic!()
        };
        assert_eq!(r.op, op, "{written}");
    }
    assert!(
        Op::AtLeast.holds(2.0, 1.0) && !Op::AtMost.holds(2.0, 1.0) && Op::Equals.holds(0.0, 0.0)
    );
}

#[test]
fn a_bad_duration_names_its_field_line_and_column() {
    let text = with("within: 30s", "within: soon");
    fails(
        &text,
        "within: soon",
        "spec.steps[2].expect.within",
        "invalid duration \"soon\"",
    );
    let e = parse(&text).unwrap_err();
    let col = text
        .lines()
        .nth(line_of(&text, "within: soon") - 1)
        .unwrap()
        .find("soon")
        .unwrap()
        + 1;
    assert_eq!(e.position.map(|p| p.column), Some(col), "{e}");
}

#[test]
fn durations_are_bounded() {
    fails(
        &with("within: 30s", "within: 0s"),
        "within: 0s",
        "spec.steps[2].expect.within",
        "more than 0s",
    );
    fails(
        &with("for: 5s", "for: 2h"),
        "for: 2h",
        "spec.steps[2].expect.for",
        "at most 1h",
    );
    fails(
        &with("wait: 2s", "wait: 0ms"),
        "wait: 0ms",
        "spec.steps[0].wait",
        "more than 0s",
    );
}

#[test]
fn unknown_fields_are_refused_at_their_key() {
    fails(
        &with("      fault: {networkCut", "      faults: {networkCut"),
        "faults:",
        "spec.steps[4].faults",
        "unknown field `faults`",
    );
    fails(
        &with("        for: 5s", "        for: 5s\n        until: 9s"),
        "until:",
        "spec.steps[2].expect.until",
        "unknown field `until`",
    );
    fails(
        &with(
            "networkCut: {cluster: idc-bj}",
            "networkCut: {cluster: idc-bj, how: drop}",
        ),
        "networkCut",
        "spec.steps[4].fault.networkCut.how",
        "unknown field `how`",
    );
}

#[test]
fn a_step_has_exactly_one_action() {
    fails(
        &with(
            "    - {name: settle, wait: 2s}",
            "    - {name: settle, wait: 2s, measure: {from: a, to: b}}",
        ),
        "name: settle",
        "spec.steps[0]",
        "exactly one of wait, fault, restore, expect or measure",
    );
    fails(
        &with("    - {name: settle, wait: 2s}", "    - {name: settle}"),
        "name: settle",
        "spec.steps[0]",
        "exactly one of",
    );
    fails(
        &with(
            "fault: {networkCut: {cluster: idc-bj}}",
            "fault: {networkCut: {cluster: idc-bj}, stubKilled: {}}",
        ),
        "stubKilled: {}}",
        "spec.steps[4].fault",
        "exactly one of agentKilled",
    );
    fails(
        &with(
            "contains: [aws-sg]",
            "contains: [aws-sg], excludes: [idc-bj]",
        ),
        "contains:",
        "spec.steps[3].expect.dns",
        "exactly one of equals, contains or excludes",
    );
    let text = with(
        "        within: 10s",
        "        within: 10s\n        primary: {policy: db, cluster: aws-sg}",
    );
    let e = parse(&text).unwrap_err();
    // At the `expect:` key of step 3, the line after its name.
    assert_eq!(
        e.position.map(|p| p.line),
        Some(line_of(&text, "- name: dns") + 1),
        "{e}"
    );
    assert_eq!(e.field, "spec.steps[3].expect", "{e}");
    assert!(
        e.reason.contains("exactly one of dns, replicasReady"),
        "{e}"
    );
}

#[test]
fn step_names_are_unique_and_plain() {
    let text = with("- name: cut", "- name: surge");
    let e = parse(&text).unwrap_err();
    let lines: Vec<&str> = text.lines().collect();
    let second = lines
        .iter()
        .rposition(|l| l.contains("- name: surge"))
        .unwrap()
        + 1;
    assert_eq!(e.position.map(|p| p.line), Some(second), "{e}");
    assert_eq!(e.field, "spec.steps[4].name", "{e}");
    assert!(e.reason.contains("another step is named \"surge\""), "{e}");
    fails(
        &with("- name: cut", "- name: the cut"),
        "the cut",
        "spec.steps[4].name",
        "letters, digits",
    );
}

#[test]
fn measures_name_earlier_steps_in_order() {
    fails(
        &with("from: cut, to: primary", "from: cut, to: primry"),
        "from: cut",
        "spec.steps[6].measure.to",
        "no earlier step named \"primry\"; a measure names steps before it (settle, surge, ready, dns, cut, primary)",
    );
    fails(
        &with("from: cut, to: primary", "from: primary, to: cut"),
        "from: primary",
        "spec.steps[6].measure.to",
        "must come after",
    );
    fails(
        &with("from: cut, to: primary", "from: cut, to: metric"),
        "from: cut",
        "spec.steps[6].measure.to",
        "no earlier step named \"metric\"",
    );
}

#[test]
fn clusters_and_clients_must_be_in_the_topology() {
    fails(
        &with(
            "networkCut: {cluster: idc-bj}",
            "networkCut: {cluster: idc-sh}",
        ),
        "networkCut",
        "spec.steps[4].fault.networkCut.cluster",
        "unknown cluster \"idc-sh\"; topology.clusters has aws-sg, idc-bj",
    );
    fails(
        &with("contains: [aws-sg]", "contains: [aws-sg, gcp-us]"),
        "contains:",
        "spec.steps[3].expect.dns.contains[1]",
        "unknown cluster \"gcp-us\"",
    );
    fails(
        &with("client: sg", "client: eu"),
        "client: eu",
        "spec.steps[3].expect.dns.client",
        "unknown client network \"eu\"",
    );
    fails(
        &with("rttMs: {idc-bj: 70", "rttMs: {idc-sh: 70"),
        "rttMs",
        "spec.topology.clients[0].rttMs.idc-sh",
        "unknown cluster",
    );
    fails(
        &with("clusters: [idc-bj, aws-sg]", "clusters: [idc-bj, aws-gz]"),
        "db.yaml",
        "spec.install.workloads[1].clusters[1]",
        "unknown cluster \"aws-gz\"",
    );
    fails(
        &with(
            "- {name: aws-sg, role: cloud",
            "- {name: idc-bj, role: cloud",
        ),
        "role: cloud",
        "spec.topology.clusters[1].name",
        "listed twice",
    );
    fails(
        &with("- {name: idc-bj, role: idc}", "- {name: IDC, role: idc}"),
        "name: IDC",
        "spec.topology.clusters[0].name",
        "lower-case",
    );
}

#[test]
fn topology_values_are_checked() {
    fails(
        &with("cpu: 500m", "cpu: lots"),
        "cpu: lots",
        "spec.topology.clusters[1].cpu",
        "invalid CPU quantity",
    );
    fails(
        &with("cpu: 500m", "cpu: \"0\""),
        "cpu: \"0\"",
        "spec.topology.clusters[1].cpu",
        "invalid CPU quantity",
    );
    fails(
        &with("nodes: 1", "nodes: 0"),
        "nodes: 0",
        "spec.topology.clusters[1].nodes",
        "between 1 and 100",
    );
    fails(
        &with("role: idc}", "role: edge}"),
        "role: edge",
        "spec.topology.clusters[0].role",
        "unknown variant `edge`",
    );
    fails(
        &with("subnet: 203.0.113.0/24", "subnet: 203.0.113/24"),
        "subnet:",
        "spec.topology.clients[0].subnet",
        "invalid",
    );
    for ok in ["2", "0.5", "500m", "16"] {
        assert!(check_quantity(ok).is_ok(), "{ok}");
    }
    for bad in ["", "m", "0m", "1.5m", "-1", "1e3", "1.", ".5"] {
        assert!(check_quantity(bad).is_err(), "{bad}");
    }
}

#[test]
fn stub_killed_needs_a_standby() {
    let text = with(
        "fault: {networkCut: {cluster: idc-bj}}",
        "fault: {stubKilled: {}}",
    );
    fails(
        &text,
        "stubKilled",
        "spec.steps[4].fault.stubKilled",
        "topology.stub.replicas: 2",
    );
    let two = text.replace("    clients:\n", "    stub: {replicas: 2}\n    clients:\n");
    let s = parse(&two).unwrap();
    assert!(matches!(
        s.steps[4].action,
        StepAction::Fault(Fault::StubKilled(_))
    ));
}

#[test]
fn the_file_holds_one_scenario() {
    let e = parse(&GOOD.replace("kind: Scenario", "kind: Drill")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("t.yaml:2:7: Drill/t: kind: unknown kind \"Drill\""),
        "{e}"
    );
    let e = parse(&format!(
        "{GOOD}---\n{}",
        GOOD.replace("{name: t}", "{name: u}")
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("Scenario/u") && e.reason.contains("one Scenario document"),
        "{e}"
    );
    let e = parse("# nothing\n").unwrap_err();
    assert_eq!(e.to_string(), "t.yaml: no Scenario document in the file");
    let e = parse(&GOOD.replace("causeway.dev/v1alpha1", "causeway.dev/v1")).unwrap_err();
    assert!(e.to_string().starts_with("t.yaml:1:"), "{e}");
}

/// Writes GOOD's install files into a temp folder (with `policies` as p.yaml).
fn install_dir(policies: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yaml"), GOOD).unwrap();
    std::fs::write(dir.path().join("p.yaml"), policies).unwrap();
    std::fs::write(
        dir.path().join("z.yaml"),
        "apiVersion: causeway.dev/v1alpha1\nkind: Zone\nmetadata: {name: z}\nspec: {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("w.yaml"), "kind: Namespace\n").unwrap();
    std::fs::write(dir.path().join("db.yaml"), "kind: Namespace\n").unwrap();
    dir
}

const FAILOVER_DB: &str =
    "apiVersion: causeway.dev/v1alpha1\nkind: FailoverPolicy\nmetadata: {name: db}\nspec: {}\n";

#[test]
fn load_reads_the_install_files() {
    let dir = install_dir(FAILOVER_DB);
    let file = dir.path().join("t.yaml");
    let s = Scenario::load(&file).unwrap();
    assert_eq!(s.resolve(Path::new("p.yaml")), dir.path().join("p.yaml"));

    // A missing workload file.
    std::fs::remove_file(dir.path().join("db.yaml")).unwrap();
    let e = Scenario::load(&file).unwrap_err();
    assert_eq!(e.field, "spec.install.workloads[1].file", "{e}");
    assert_eq!(
        e.position.map(|p| p.line),
        Some(line_of(GOOD, "db.yaml")),
        "{e}"
    );
    assert!(e.reason.contains("cannot read"), "{e}");
}

#[test]
fn load_checks_the_kinds_and_policy_names() {
    // The primary expectation names db, which must be a FailoverPolicy.
    let dir = install_dir(&FAILOVER_DB.replace("FailoverPolicy", "BurstPolicy"));
    let e = Scenario::load(&dir.path().join("t.yaml")).unwrap_err();
    assert_eq!(e.field, "spec.steps[5].expect.primary.policy", "{e}");
    assert!(
        e.reason
            .contains("no FailoverPolicy named \"db\" in install.policies"),
        "{e}"
    );

    // A Zone in the policy files is refused, naming the inner file's position.
    let dir = install_dir(&FAILOVER_DB.replace("FailoverPolicy", "Zone"));
    let e = Scenario::load(&dir.path().join("t.yaml")).unwrap_err();
    assert_eq!(e.field, "spec.install.policies[0]", "{e}");
    assert!(
        e.reason
            .contains("p.yaml:2:7: Zone/db: kind: unknown kind \"Zone\""),
        "{e}"
    );

    // A policy file that is not there.
    let dir = install_dir(FAILOVER_DB);
    std::fs::remove_file(dir.path().join("p.yaml")).unwrap();
    let e = Scenario::load(&dir.path().join("t.yaml")).unwrap_err();
    assert_eq!(e.field, "spec.install.policies[0]", "{e}");
    assert!(e.reason.contains("cannot read"), "{e}");
}

#[test]
fn the_shipped_scenarios_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            names.push(s.name);
        }
    }
    names.sort();
    for want in ["idc-outage", "partition", "quickstart"] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
}

#[test]
fn latency_change_names_a_client_and_its_clusters() {
    let text = with(
        "fault: {networkCut: {cluster: idc-bj}}",
        "fault: {latencyChange: {client: sg, rttMs: {aws-sg: 120}}}",
    );
    let s = parse(&text).unwrap();
    let StepAction::Fault(Fault::LatencyChange(l)) = &s.steps[4].action else {
        panic!("{:?}", s.steps[4].action);
    };
    assert_eq!(l.client, "sg");
    assert_eq!(l.rtt_ms.get(&ClusterId::new("aws-sg").unwrap()), Some(&120));
    assert_eq!(s.steps[4].action.kind(), "fault");
    fails(
        &with(
            "fault: {networkCut: {cluster: idc-bj}}",
            "fault: {latencyChange: {client: eu, rttMs: {aws-sg: 120}}}",
        ),
        "latencyChange",
        "spec.steps[4].fault.latencyChange.client",
        "unknown client network \"eu\"; topology.clients has sg",
    );
    fails(
        &with(
            "fault: {networkCut: {cluster: idc-bj}}",
            "fault: {latencyChange: {client: sg, rttMs: {ali-hz: 120}}}",
        ),
        "latencyChange",
        "spec.steps[4].fault.latencyChange.rttMs.ali-hz",
        "unknown cluster \"ali-hz\"",
    );
    fails(
        &with(
            "fault: {networkCut: {cluster: idc-bj}}",
            "fault: {latencyChange: {client: sg, rttMs: {}}}",
        ),
        "latencyChange",
        "spec.steps[4].fault.latencyChange.rttMs",
        "at least one cluster",
    );
    // A cluster the client has no RTT to: nothing to revert to.
    fails(
        &with(
            "fault: {networkCut: {cluster: idc-bj}}",
            "fault: {latencyChange: {client: sg, rttMs: {idc-bj: 3}}}",
        )
        .replace("rttMs: {idc-bj: 70, aws-sg: 8}", "rttMs: {aws-sg: 8}"),
        "latencyChange",
        "spec.steps[4].fault.latencyChange.rttMs.idc-bj",
        "has no RTT to idc-bj",
    );
    fails(
        &with(
            "fault: {networkCut: {cluster: idc-bj}}",
            "fault: {latencyChange: {client: sg, rttMs: {aws-sg: x}}}",
        ),
        "latencyChange",
        "spec.steps[4].fault.latencyChange.rttMs.aws-sg",
        "",
    );
}

#[test]
fn restore_names_an_earlier_fault_step_once() {
    let text = with(
        "    - name: rto\n",
        "    - {name: healed, restore: cut}\n    - name: rto\n",
    );
    let s = parse(&text).unwrap();
    assert_eq!(s.steps[6].action, StepAction::Restore("cut".into()));
    assert_eq!(s.steps[6].action.kind(), "restore");
    // A measure may name it.
    let m = text.replace("to: primary, atMost", "to: healed, atMost");
    assert!(parse(&m).is_ok());
    fails(
        &text.replace("restore: cut", "restore: settle"),
        "restore: settle",
        "spec.steps[6].restore",
        "step \"settle\" is a wait; restore names an earlier fault step",
    );
    fails(
        &text.replace("restore: cut", "restore: later"),
        "restore: later",
        "spec.steps[6].restore",
        "no earlier fault step named \"later\" (surge, cut)",
    );
    fails(
        &text.replace(
            "    - {name: healed, restore: cut}\n",
            "    - {name: healed, restore: cut}\n    - {name: again, restore: cut}\n",
        ),
        "name: again",
        "spec.steps[7].restore",
        "restored by an earlier step already",
    );
    fails(
        &text.replace("restore: cut}", "restore: cut, wait: 1s}"),
        "name: healed",
        "spec.steps[6]",
        "exactly one of wait, fault, restore, expect or measure",
    );
}

const KUBECTL: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Scenario
metadata: {name: t}
spec:
  description: kubectl through the stub
  topology:
    clusters:
      - {name: idc-bj, role: idc, agents: 2}
      - {name: aws-sg, role: cloud}
    users:
      - {name: alice, group: dev}
      - {name: bob, group: guests, clusters: \"idc-*\", rbac: none}
  steps:
    - name: reads
      expect:
        kubectl: {user: alice, cluster: idc-bj, args: [get, pods, -n, shop]}
        within: 10s
        for: 5s
    - name: refused
      expect:
        kubectl: {user: bob, cluster: idc-bj, args: [get, pods], succeeds: false}
        within: 5s
";

/// `KUBECTL` with `from` replaced by `to` (which must occur exactly once).
fn kubectl_with(from: &str, to: &str) -> String {
    assert_eq!(KUBECTL.matches(from).count(), 1, "{from:?} once in KUBECTL");
    KUBECTL.replace(from, to)
}

#[test]
fn users_and_kubectl_expectations_are_read() {
    let s = parse(KUBECTL).unwrap();
    let u = &s.topology.users;
    assert_eq!(u.len(), 2);
    assert_eq!(
        (
            u[0].name.as_str(),
            u[0].group.as_str(),
            u[0].clusters.as_str()
        ),
        ("alice", "dev", "*")
    );
    assert_eq!(u[0].rbac, UserRbac::View, "view is the default");
    assert_eq!(
        (u[1].clusters.as_str(), u[1].rbac),
        ("idc-*", UserRbac::None)
    );
    let StepAction::Expect(e) = &s.steps[0].action else {
        panic!("{:?}", s.steps[0])
    };
    assert_eq!(e.hold, Some(Duration::from_secs(5)));
    let Condition::Kubectl(k) = &e.condition else {
        panic!("{e:?}")
    };
    assert_eq!((k.user.as_str(), k.cluster.as_str()), ("alice", "idc-bj"));
    assert_eq!(k.args, ["get", "pods", "-n", "shop"]);
    assert_eq!(
        k.wanted(),
        Some(KubectlOutcome::Ok),
        "succeeds defaults to true"
    );
    assert_eq!(
        e.condition.to_string(),
        "kubectl get pods -n shop as alice in idc-bj succeeds"
    );
    let StepAction::Expect(e) = &s.steps[1].action else {
        panic!("{:?}", s.steps[1])
    };
    assert!(matches!(&e.condition, Condition::Kubectl(k) if k.wanted().is_none()));
    assert!(e.condition.to_string().ends_with("as bob in idc-bj fails"));
    // No users: an empty list.
    assert!(parse(GOOD).unwrap().topology.users.is_empty());
}

#[test]
fn kubectl_names_a_known_user_and_cluster_and_some_arguments() {
    let t = kubectl_with(
        "{user: bob, cluster: idc-bj",
        "{user: carol, cluster: idc-bj",
    );
    fails(
        &t,
        "user: carol",
        "spec.steps[1].expect.kubectl.user",
        "unknown user \"carol\"; topology.users has alice, bob",
    );
    let t = kubectl_with("{user: bob, cluster: idc-bj", "{user: bob, cluster: ali-hz");
    fails(
        &t,
        "cluster: ali-hz",
        "spec.steps[1].expect.kubectl.cluster",
        "unknown cluster \"ali-hz\"",
    );
    let t = kubectl_with("args: [get, pods], succeeds", "args: [], succeeds");
    fails(
        &t,
        "args: []",
        "spec.steps[1].expect.kubectl.args",
        "kubectl's arguments",
    );
    let t = kubectl_with("args: [get, pods], succeeds", "args: [get, \"\"], succeeds");
    fails(
        &t,
        "args: [get, \"\"]",
        "spec.steps[1].expect.kubectl.args",
        "none empty",
    );
    let t = kubectl_with("succeeds: false}", "succeeds: false, as: root}");
    fails(&t, "as: root", "spec.steps[1].expect.kubectl.as", "");
}

#[test]
fn kubectl_outcomes_are_read_and_checked() {
    for (word, want) in [
        ("ok", KubectlOutcome::Ok),
        ("refused", KubectlOutcome::Refused),
        ("unavailable", KubectlOutcome::Unavailable),
    ] {
        let t = kubectl_with("succeeds: false}", &format!("outcome: {word}}}"));
        let s = parse(&t).unwrap();
        let StepAction::Expect(e) = &s.steps[1].action else {
            panic!("{:?}", s.steps[1])
        };
        let Condition::Kubectl(k) = &e.condition else {
            panic!("{e:?}")
        };
        assert_eq!(k.wanted(), Some(want));
    }
    let t = kubectl_with("succeeds: false}", "outcome: refused}");
    let s = parse(&t).unwrap();
    let StepAction::Expect(e) = &s.steps[1].action else {
        panic!()
    };
    assert!(
        e.condition
            .to_string()
            .ends_with("as bob in idc-bj is refused (401/403)")
    );
    let t = kubectl_with("succeeds: false}", "succeeds: false, outcome: refused}");
    fails(
        &t,
        "succeeds: false, outcome",
        "spec.steps[1].expect.kubectl.outcome",
        "either succeeds or outcome, not both",
    );
    let t = kubectl_with("succeeds: false}", "outcome: forbidden}");
    fails(&t, "forbidden", "spec.steps[1].expect.kubectl.outcome", "");
}

#[test]
fn users_are_checked() {
    let t = kubectl_with("{name: bob, group: guests", "{name: alice, group: guests");
    fails(
        &t,
        "{name: alice, group: guests",
        "spec.topology.users[1].name",
        "listed twice",
    );
    let t = kubectl_with("{name: bob, group: guests", "{name: ../bob, group: guests");
    fails(
        &t,
        "{name: ../bob",
        "spec.topology.users[1].name",
        "<work>/<name>.kubeconfig",
    );
    let t = kubectl_with("{name: alice, group: dev}", "{name: alice, group: \" \"}");
    fails(
        &t,
        "{name: alice, group:",
        "spec.topology.users[0].group",
        "must not be empty",
    );
    let t = kubectl_with("rbac: none", "rbac: admin");
    fails(&t, "rbac: admin", "spec.topology.users[1].rbac", "");
    let t = kubectl_with("clusters: \"idc-*\"", "clusters: \"\"");
    fails(
        &t,
        "clusters: \"\"",
        "spec.topology.users[1].clusters",
        "a glob",
    );
}

#[test]
fn health_failing_is_read_and_checked() {
    let t = GOOD.replace(
        "fault: {networkCut: {cluster: idc-bj}}",
        "fault: {healthFailing: {cluster: idc-bj}}",
    );
    let s = parse(&t).unwrap();
    let f = s
        .steps
        .iter()
        .find_map(|st| match &st.action {
            StepAction::Fault(f @ Fault::HealthFailing(_)) => Some(f),
            _ => None,
        })
        .expect("a healthFailing step");
    assert_eq!(f.cluster().map(|c| c.as_str()), Some("idc-bj"));
    assert_eq!(
        f.to_string(),
        "health check of idc-bj's targets failing (503)"
    );
    let t = GOOD.replace(
        "fault: {networkCut: {cluster: idc-bj}}",
        "fault: {healthFailing: {cluster: ali-hz}}",
    );
    fails(
        &t,
        "healthFailing: {cluster: ali-hz}",
        "spec.steps[4].fault.healthFailing.cluster",
        "unknown cluster",
    );
    let t = GOOD
        .replace(
            "fault: {networkCut: {cluster: idc-bj}}",
            "fault: {healthFailing: {cluster: idc-bj}}",
        )
        .replace("    zones: [z.yaml]\n", "");
    fails(
        &t,
        "healthFailing: {cluster: idc-bj}",
        "spec.steps[4].fault.healthFailing",
        "needs install.zones",
    );
}
