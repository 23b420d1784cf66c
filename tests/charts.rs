//! The Helm charts (charts/causeway-hub, charts/causeway-agent): `helm lint` is clean, and
//! what `helm template` renders is accepted by a real kube-apiserver (`kubectl apply
//! --dry-run=server`, the hub's CRDs applied first: every object checked against the API
//! server's own schemas, no internet) and by the binaries (`--validate` of the config files
//! the chart's ConfigMaps carry, with the example policies, zones and access policy as values).
//!
//! helm is built from its pinned Go module (testbed/go/tools) into .cache/bin by
//! `testbed/build-bins.sh --with-chart-tools` (scripts/setup runs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway_testbed::testing::{Kubectl, run, run_ok};
use serde_json::{Value, json};

const HUB: &str = "charts/causeway-hub";
const AGENT: &str = "charts/causeway-agent";
const AGENT_VALUES: &str = "charts/causeway-agent/ci/test-values.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// helm from .cache/bin, with its caches in `home` (nothing from the user's).
fn helm(home: &Path) -> Command {
    let dir =
        causeway_testbed::bin_dir().unwrap_or_else(|e| panic!("testbed binaries missing: {e}"));
    let bin = dir.join("helm");
    assert!(
        bin.is_file(),
        "{} missing: run `testbed/build-bins.sh --with-chart-tools` (scripts/setup does)",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.current_dir(root());
    for (var, sub) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        cmd.env(var, home.join(sub));
    }
    cmd
}

/// The documents of a YAML stream (empty ones left out), as JSON.
fn documents(text: &str) -> Vec<Value> {
    text.split("\n---")
        .map(|part| part.trim_start_matches("---"))
        .filter_map(|part| {
            let doc: Value =
                serde_yaml_ng::from_str(part).unwrap_or_else(|e| panic!("not YAML: {e}\n{part}"));
            (!doc.is_null()).then_some(doc)
        })
        .collect()
}

/// The example documents of these kinds in an example file: kind → [{name, spec}].
fn examples(path: &str) -> BTreeMap<String, Vec<Value>> {
    let text = std::fs::read_to_string(root().join(path)).expect("an example file");
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for d in documents(&text) {
        let kind = d["kind"].as_str().expect("a kind").to_owned();
        by_kind
            .entry(kind)
            .or_default()
            .push(json!({"name": d["metadata"]["name"], "spec": d["spec"]}));
    }
    by_kind
}

/// Hub values that carry every example: policies, zones, latency map, access policy; and the
/// optional NetworkPolicies on.
fn hub_values() -> Value {
    let mut policies = BTreeMap::new();
    for f in ["scheduler.yaml", "spread.yaml", "failover.yaml"] {
        for (kind, docs) in examples(&format!("examples/scheduler/{f}")) {
            policies.entry(kind).or_insert_with(Vec::new).extend(docs);
        }
    }
    let dns = examples("examples/dns/causeway-dns.yaml");
    let access = examples("examples/tunnel/access-policy.yaml");
    json!({
        "stub": {"accessPolicy": access["AccessPolicy"][0]["spec"]},
        "dns": {"zones": dns["Zone"], "latencyMaps": dns["LatencyMap"]},
        "scheduler": {"policies": {
            "burst": policies["BurstPolicy"],
            "spread": policies["SpreadPolicy"],
            "failover": policies["FailoverPolicy"],
        }},
        "networkPolicy": {"enabled": true},
    })
}

#[test]
fn helm_lint_is_clean() {
    let home = tempfile::tempdir().expect("temp dir");
    for args in [
        vec!["lint", "--strict", HUB],
        vec!["lint", "--strict", AGENT, "-f", AGENT_VALUES],
    ] {
        let out = run_ok(helm(home.path()).args(&args));
        assert!(out.contains("0 chart(s) failed"), "helm {args:?}:\n{out}");
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "helm {args:?}:\n{out}"
        );
    }
}

#[test]
fn the_agent_chart_refuses_system_masters_and_the_optional_objects_render() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = run(helm(home.path()).args([
        "template",
        "a",
        AGENT,
        "-f",
        AGENT_VALUES,
        "--set",
        "impersonation.groups={dev,system:masters}",
    ]));
    assert!(!out.status.success(), "system:masters rendered");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("system:masters is never allowed"), "{err}");

    // With an enrolled identity shared by the replicas: no join token, the Secret mounted
    // read-only as the state directory.
    let text = run_ok(helm(home.path()).args([
        "template",
        "a",
        AGENT,
        "--set",
        "cluster=idc-bj,stubUrls={https://stub.example:7443},identity.existingSecret=agent-id",
    ]));
    let docs = documents(&text);
    assert!(
        !docs.iter().any(|d| d["kind"] == "Secret"),
        "a token Secret"
    );
    let pod = &docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment")["spec"]["template"]["spec"];
    assert!(!pod.to_string().contains("CAUSEWAY_JOIN_TOKEN"), "{pod}");
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"], "agent-id",
        "{pod}"
    );

    // The ServiceMonitors need the Prometheus Operator's CRDs (not in the testbed): rendered
    // and checked for shape here only.
    let text = run_ok(helm(home.path()).args([
        "template",
        "h",
        HUB,
        "--set",
        "serviceMonitor.enabled=true",
    ]));
    let monitors: Vec<Value> = documents(&text)
        .into_iter()
        .filter(|d| d["kind"] == "ServiceMonitor")
        .collect();
    assert_eq!(monitors.len(), 3, "one per part");
    for m in &monitors {
        assert_eq!(m["spec"]["endpoints"][0]["path"], "/metrics", "{m}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rendered_charts_are_accepted_by_the_api_server_and_the_binaries() {
    let home = tempfile::tempdir().expect("temp dir");
    let work = tempfile::tempdir().expect("temp dir");
    let values = work.path().join("hub-values.json");
    std::fs::write(&values, hub_values().to_string()).expect("write values");

    let tb = causeway_testbed::shared().await;
    let c = tb.cluster("tb-a").expect("cluster tb-a");
    let k = Kubectl::admin(c);
    // The hub's CRDs first, as `helm install` does.
    let crds = root().join(HUB).join("crds");
    k.run(&[
        "apply".as_ref(),
        "--server-side".as_ref(),
        "-f".as_ref(),
        crds.as_os_str(),
    ]);
    k.wait(
        &[
            "--for=condition=Established",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=causeway",
        ],
        Duration::from_secs(60),
    );

    for (ns, release, chart, values) in [
        ("causeway-system", "hub", HUB, values.as_path()),
        ("causeway-agent", "agent", AGENT, &root().join(AGENT_VALUES)),
    ] {
        let out = run(k.cmd().args(["create", "namespace", ns]));
        assert!(
            out.status.success() || String::from_utf8_lossy(&out.stderr).contains("AlreadyExists"),
            "create namespace {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = run_ok(
            helm(home.path())
                .args(["template", release, chart, "-n", ns, "-f"])
                .arg(values),
        );
        let docs = documents(&rendered);
        let file = work.path().join(format!("{release}.yaml"));
        std::fs::write(&file, &rendered).expect("write rendered");
        // Every object through the API server's validation and admission, nothing stored.
        let out = k.run(&[
            "apply".as_ref(),
            "--dry-run=server".as_ref(),
            "-n".as_ref(),
            ns.as_ref(),
            "-f".as_ref(),
            file.as_os_str(),
        ]);
        let accepted = out
            .lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count();
        assert_eq!(
            accepted,
            docs.len(),
            "{chart}: not every object accepted:\n{out}"
        );

        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        let expect: &[&str] = if chart == HUB {
            &[
                "Deployment",
                "Service",
                "PodDisruptionBudget",
                "Role",
                "RoleBinding",
                "NetworkPolicy",
                "PersistentVolumeClaim",
                "ConfigMap",
            ]
        } else {
            &[
                "Deployment",
                "ClusterRole",
                "ClusterRoleBinding",
                "Secret",
                "ServiceAccount",
                "PodDisruptionBudget",
            ]
        };
        for kind in expect {
            assert!(kinds.contains(kind), "{chart}: no {kind} in {kinds:?}");
        }
        if chart == HUB {
            validate_hub_configs(&docs, work.path());
        } else {
            check_agent(&docs);
        }

        // A real install: every object created, the pods Running on kwok's nodes (they do not
        // run our image: the binaries are tested with these configs above). No storage
        // provisioner in the testbed: the stub's state on an emptyDir.
        let out = run_ok(
            helm(home.path())
                .args([
                    "install",
                    release,
                    chart,
                    "-n",
                    ns,
                    "--wait",
                    "--timeout",
                    "120s",
                ])
                .args(["--set", "stub.persistence.enabled=false", "-f"])
                .arg(values)
                .arg("--kubeconfig")
                .arg(&c.kubeconfig),
        );
        assert!(
            out.contains("STATUS: deployed") && out.contains("NOTES:"),
            "{out}"
        );
        let selector = format!("app.kubernetes.io/instance={release}");
        let pods = k
            .json(&["get", "pods", "-n", ns, "-l", &selector])
            .expect("pods");
        let pods = pods["items"].as_array().expect("items");
        let want = if chart == HUB { 5 } else { 2 };
        assert_eq!(pods.len(), want, "{chart}: pods");
        let mut nodes = Vec::new();
        for p in pods {
            assert_eq!(
                p["status"]["phase"], "Running",
                "{chart}: {}",
                p["metadata"]["name"]
            );
            nodes.push(p["spec"]["nodeName"].as_str().expect("a node").to_owned());
        }
        if chart == AGENT {
            assert_ne!(nodes[0], nodes[1], "agents on one node");
        }
    }
}

/// The config files in the hub's ConfigMaps, checked by the binary that reads them.
fn validate_hub_configs(docs: &[Value], dir: &Path) {
    let dir = dir.join("configs");
    std::fs::create_dir_all(&dir).expect("configs dir");
    for d in docs.iter().filter(|d| d["kind"] == "ConfigMap") {
        for (file, text) in d["data"].as_object().expect("data") {
            std::fs::write(dir.join(file), text.as_str().expect("text")).expect("write config");
        }
    }
    let causeway = env!("CARGO_BIN_EXE_causeway");
    let check = |args: &[&str], expect: &str| {
        let out = run_ok(Command::new(causeway).args(args).current_dir(&dir));
        assert!(out.contains(expect), "causeway {args:?}: {out}");
    };
    check(&["dns", "--validate", "--config", "dns.yaml"], "1 zone(s)");
    check(&["stub", "--validate", "--config", "stub.yaml"], "ok");
    check(
        &["scheduler", "--validate", "--config", "scheduler.yaml"],
        "1 BurstPolicy, 1 SpreadPolicy, 1 FailoverPolicy",
    );
}

/// The agent runs as its ServiceAccount, spread over nodes, and may only impersonate.
fn check_agent(docs: &[Value]) {
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(
        pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            .is_array(),
        "{pod}"
    );
    for role in docs.iter().filter(|d| d["kind"] == "ClusterRole") {
        for rule in role["rules"].as_array().expect("rules") {
            let verbs = rule["verbs"].to_string();
            let name = role["metadata"]["name"].as_str().expect("name");
            if name.ends_with("-impersonator") {
                assert_eq!(verbs, r#"["impersonate"]"#, "{name}: {rule}");
                assert!(!rule.to_string().contains("system:masters"), "{rule}");
            } else {
                assert!(name.ends_with("-fencer"), "unexpected ClusterRole {name}");
                assert!(
                    !verbs.contains("impersonate") && !verbs.contains('*'),
                    "{rule}"
                );
            }
        }
    }
}
