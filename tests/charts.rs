//! The Helm charts (charts/causeway-hub, charts/causeway-agent): `helm lint` is clean, and
//! what `helm template` renders is accepted by a real kube-apiserver (`kubectl apply
//! --dry-run=server`, the hub's CRDs applied first: every object checked against the API
//! server's own schemas, no internet) and by the binaries (`--validate` of the config files
//! the chart's ConfigMaps carry, with the example policies, zones and access policy as values).
//!
//! `kubeconform -strict` takes the same renderings (the hub's CRDs included) and the example
//! custom resources, with JSON schemas converted from that kube-apiserver's own OpenAPI v3
//! documents after the CRDs are in them (support/openapi_schemas.rs), and refuses unknown
//! fields, in a built-in kind and in a custom resource.
//!
//! helm and kubeconform are built from their pinned Go modules (testbed/go/tools) into
//! .cache/bin by `testbed/build-bins.sh --with-chart-tools` (scripts/setup runs it).

#[path = "support/crds.rs"]
mod crds_support;
#[path = "support/helm.rs"]
mod helm_support;
#[path = "support/openapi_schemas.rs"]
mod openapi_schemas;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway_testbed::testing::{Kubectl, run, run_ok};
use crds_support::apply_crds;
use helm_support::{helm, root, tool};
use serde_json::{Value, json};

const HUB: &str = "charts/causeway-hub";
const AGENT: &str = "charts/causeway-agent";
const AGENT_VALUES: &str = "charts/causeway-agent/ci/test-values.yaml";

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
    // …and no Secret of its own to make: no --identity-secret, no access to Secrets.
    assert!(!pod.to_string().contains("--identity-secret"), "{pod}");
    assert!(!docs.iter().any(|d| d["kind"] == "Role"), "a Role");

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
    apply_crds(&k);

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
                "StatefulSet",
                "ConfigMap",
                "ServiceAccount",
                // Production mode: the values' objects as custom resources.
                "Zone",
                "LatencyMap",
                "BurstPolicy",
                "SpreadPolicy",
                "FailoverPolicy",
                "AccessPolicy",
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
        let want = if chart == HUB { 6 } else { 2 };
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

/// The kinds of the hub's CRDs (charts/causeway-hub/crds/).
fn crd_kinds() -> Vec<String> {
    let dir = root().join(HUB).join("crds");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the crds directory") {
        let text = std::fs::read_to_string(entry.expect("an entry").path()).expect("a CRD");
        for d in documents(&text) {
            kinds.push(
                d["spec"]["names"]["kind"]
                    .as_str()
                    .expect("a kind")
                    .to_owned(),
            );
        }
    }
    kinds.sort();
    kinds
}

/// The kinds of the example custom resources, and the example files that hold them.
const KINDS: [&str; 6] = [
    "BurstPolicy",
    "SpreadPolicy",
    "FailoverPolicy",
    "Zone",
    "LatencyMap",
    "AccessPolicy",
];
const EXAMPLES: [&str; 5] = [
    "examples/scheduler/scheduler.yaml",
    "examples/scheduler/spread.yaml",
    "examples/scheduler/failover.yaml",
    "examples/dns/causeway-dns.yaml",
    "examples/tunnel/access-policy.yaml",
];

/// `kubeconform -strict -summary` with the schemas in `schemas` on `files`: (passed, output).
fn kubeconform(schemas: &Path, files: &[PathBuf]) -> (bool, String) {
    let location = format!(
        "{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        schemas.display()
    );
    let out = run(tool("kubeconform")
        .args(["-strict", "-summary", "-schema-location", &location])
        .args(files));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn kubeconform_strict_passes_with_the_api_servers_own_schemas() {
    let home = tempfile::tempdir().expect("temp dir");
    let work = tempfile::tempdir().expect("temp dir");

    // Both charts as the other test renders them, the hub with its CRDs; and the example
    // custom resources; `versions`: their apiVersions, whose schemas are fetched.
    let values = work.path().join("hub-values.json");
    std::fs::write(&values, hub_values().to_string()).expect("write values");
    let mut versions: BTreeSet<String> = BTreeSet::new();
    let mut files = Vec::new();
    let mut count = 0;
    for (name, chart, values, extra) in [
        ("hub", HUB, values.as_path(), &["--include-crds"][..]),
        ("agent", AGENT, &root().join(AGENT_VALUES), &[][..]),
    ] {
        let text = run_ok(
            helm(home.path())
                .args(["template", name, chart, "-n", "causeway-system"])
                .args(extra)
                .arg("-f")
                .arg(values),
        );
        let docs = documents(&text);
        count += docs.len();
        versions.extend(docs.iter().map(api_version));
        if chart == HUB {
            let crds = docs
                .iter()
                .filter(|d| d["kind"] == "CustomResourceDefinition")
                .count();
            assert_eq!(crds, crd_kinds().len(), "the hub's CRDs rendered");
        }
        let file = work.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).expect("write rendered");
        files.push(file);
    }
    let text = EXAMPLES
        .iter()
        .map(|f| std::fs::read_to_string(root().join(f)).expect("an example"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    let crs: Vec<Value> = documents(&text)
        .into_iter()
        .filter(|d| KINDS.iter().any(|kind| d["kind"] == *kind))
        .collect();
    assert!(crs.len() >= KINDS.len(), "{} example resources", crs.len());
    count += crs.len();
    versions.extend(crs.iter().map(api_version));
    let file = work.path().join("examples.yaml");
    std::fs::write(&file, yaml_stream(&crs)).expect("write examples");
    files.push(file);

    // The API server's OpenAPI v3 document of each API version used, once the CRDs are in
    // it (the API server publishes a CRD's schema shortly after it is Established).
    let tb = causeway_testbed::shared().await;
    let k = Kubectl::admin(tb.cluster("tb-a").expect("cluster tb-a"));
    apply_crds(&k);
    let mut docs = Vec::new();
    causeway_testbed::testing::wait_for(
        "every API version and the CRDs in /openapi/v3",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let index: Value = serde_json::from_str(&k.run(&["get", "--raw", "/openapi/v3"]))
                .map_err(|e| format!("index not JSON: {e}"))?;
            docs.clear();
            for v in &versions {
                let path = if v.contains('/') {
                    format!("apis/{v}")
                } else {
                    format!("api/{v}")
                };
                let url = index["paths"][&path]["serverRelativeURL"]
                    .as_str()
                    .ok_or(format!("no {path} in the index"))?;
                let doc: Value = serde_json::from_str(&k.run(&["get", "--raw", url]))
                    .map_err(|e| format!("{url} not JSON: {e}"))?;
                docs.push(doc);
            }
            let all = docs.iter().any(|d| {
                crd_kinds().iter().all(|kind| {
                    !d["components"]["schemas"][format!("dev.causeway.v1alpha1.{kind}")].is_null()
                })
            });
            all.then_some(())
                .ok_or_else(|| "the CRDs not published yet".to_owned())
        },
    );
    let defs = openapi_schemas::merge_v3(&docs).expect("OpenAPI v3 documents");
    let schemas = work.path().join("schemas");
    let written = openapi_schemas::write_schemas(&defs, &schemas).expect("schemas");
    for f in [
        "deployment-apps-v1.json",
        "customresourcedefinition-apiextensions-v1.json",
        "burstpolicy-causeway-v1alpha1.json",
    ] {
        assert!(written.contains(f), "no {f} in {written:?}");
    }

    let (ok, out) = kubeconform(&schemas, &files);
    assert!(ok, "kubeconform refused:\n{out}");
    let summary = format!("Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0");
    assert!(out.contains(&summary), "want {summary}:\n{out}");

    // An unknown field, deep in a built-in kind and in a custom resource (below a nullable
    // field), is refused.
    let rendered = std::fs::read_to_string(&files[0]).expect("hub.yaml");
    let mut deployment = documents(&rendered)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always".into();
    let mut policy = crs
        .iter()
        .find(|d| d["kind"] == "BurstPolicy")
        .expect("a BurstPolicy")
        .clone();
    policy["spec"]["demand"] = json!({"hpa": {"name": "web", "tolerence": 0.2}});
    let broken = work.path().join("broken.yaml");
    std::fs::write(&broken, yaml_stream(&[deployment, policy])).expect("write broken");
    let (ok, out) = kubeconform(&schemas, &[broken]);
    assert!(!ok, "kubeconform took unknown fields:\n{out}");
    for field in ["imagePullPolcy", "tolerence"] {
        assert!(
            out.contains(&format!("'{field}'")),
            "{field} not named:\n{out}"
        );
    }
    assert!(out.contains("Valid: 0, Invalid: 2"), "both refused:\n{out}");
}

/// A document's apiVersion.
fn api_version(d: &Value) -> String {
    d["apiVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no apiVersion: {d}"))
        .to_owned()
}

/// Documents as one YAML stream.
fn yaml_stream(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml_ng::to_string(d).expect("YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
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
    // Production mode: the zones, policies and access policy are custom resources beside
    // the ConfigMaps; each part loads them after its file, as it does from the hub.
    let custom = |kinds: &[&str]| {
        let picked: Vec<Value> = docs
            .iter()
            .filter(|d| kinds.iter().any(|k| d["kind"] == *k))
            .map(|d| {
                json!({"apiVersion": d["apiVersion"], "kind": d["kind"],
                       "metadata": {"name": d["metadata"]["name"]}, "spec": d["spec"]})
            })
            .collect();
        yaml_stream(&picked)
    };
    let with = |base: &str, kinds: &[&str]| {
        let text = std::fs::read_to_string(dir.join(base)).expect("a config");
        let all = format!("{text}\n---\n{}", custom(kinds));
        let file = format!("all-{base}");
        std::fs::write(dir.join(&file), all).expect("write config");
        file
    };
    let dns = with("dns.yaml", &["Zone", "LatencyMap"]);
    let scheduler = with(
        "scheduler.yaml",
        &["BurstPolicy", "SpreadPolicy", "FailoverPolicy"],
    );
    let causeway = env!("CARGO_BIN_EXE_causeway");
    let check = |args: &[&str], expect: &str| {
        let out = run_ok(Command::new(causeway).args(args).current_dir(&dir));
        assert!(out.contains(expect), "causeway {args:?}: {out}");
    };
    check(&["dns", "--validate", "--config", &dns], "1 zone(s)");
    check(&["stub", "--validate", "--config", "stub.yaml"], "ok");
    check(
        &["scheduler", "--validate", "--config", &scheduler],
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
    // The shared identity (identity.shared, the default with a join token): the agents
    // make and read one Secret, and may touch no other but create.
    let args = pod["containers"][0]["args"].to_string();
    assert!(
        args.contains(r#""--identity-secret","agent-causeway-agent-identity""#),
        "{args}"
    );
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role")
        .expect("the identity Role");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update", "patch"],
             "resourceNames": ["agent-causeway-agent-identity"]},
        ]),
        "{role}"
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
