//! `causeway crds`: the committed CRDs (charts/causeway-hub/crds/) are what the command
//! generates now (drift check), a real kube-apiserver accepts them, and the example files the
//! binaries load are accepted as custom resources, while what the loaders refuse (an unknown
//! field, a wrong type, a missing required field) is refused by the API server too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway_testbed::testing::{Kubectl, run, run_ok, run_with_stdin};

const CRD_DIR: &str = "charts/causeway-hub/crds";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn causeway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
}

/// Every file of a directory: name → content.
fn files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("directory entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            (name, text)
        })
        .collect()
}

#[test]
fn committed_crds_match_the_rust_types() {
    let tmp = tempfile::tempdir().expect("temp dir");
    run_ok(causeway().arg("crds").arg("--out").arg(tmp.path()));
    let generated = files(tmp.path());
    let committed = files(&root().join(CRD_DIR));
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>(),
        "the CRD files differ: run `causeway crds --out {CRD_DIR}/`"
    );
    for (name, text) in &generated {
        assert!(
            committed[name] == *text,
            "{CRD_DIR}/{name} is not what `causeway crds` generates from the Rust types now: \
             run `causeway crds --out {CRD_DIR}/` and commit it"
        );
    }
    assert_eq!(
        generated.len(),
        6,
        "one CRD per kind: {:?}",
        generated.keys()
    );

    // Without --out: the same documents on stdout, one stream.
    let stdout = run_ok(causeway().arg("crds"));
    for text in generated.values() {
        assert!(stdout.contains(text.as_str()), "stdout lacks a CRD");
    }
}

/// The documents of some YAML files whose kind is one of `kinds`, as JSON.
fn documents(paths: &[&str], kinds: &[&str]) -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(root().join(p)).expect("an example file");
        for part in text.split("\n---\n") {
            let doc: serde_json::Value =
                serde_yaml_ng::from_str(part).unwrap_or_else(|e| panic!("{p}: {e}"));
            if kinds.contains(&doc["kind"].as_str().unwrap_or_default()) {
                docs.push(doc);
            }
        }
    }
    docs
}

/// `kubectl apply --server-side -n NS -f -` of one document: Ok(stdout) or Err(stderr).
fn apply(k: &Kubectl, ns: &str, doc: &serde_json::Value) -> Result<String, String> {
    let mut cmd = k.cmd();
    cmd.args([
        "apply",
        "--server-side",
        "--field-manager=causeway-test",
        "-n",
        ns,
        "-f",
        "-",
    ]);
    let out = run_with_stdin(cmd, doc.to_string().as_bytes()).expect("kubectl runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_takes_the_crds_and_the_examples_as_custom_resources() {
    let tb = causeway_testbed::shared().await;
    let c = tb.cluster("tb-a").expect("cluster tb-a");
    let k = Kubectl::admin(c);
    let crds = root().join(CRD_DIR);
    k.run(&[
        "apply".as_ref(),
        "--server-side".as_ref(),
        "-f".as_ref(),
        crds.as_os_str(),
    ]);
    let names: Vec<String> = files(&crds)
        .keys()
        .map(|f| format!("crd/{}", f.trim_end_matches(".yaml")))
        .collect();
    let mut wait = vec!["--for=condition=Established".to_owned()];
    wait.extend(names.iter().cloned());
    k.wait(
        &wait.iter().map(String::as_str).collect::<Vec<_>>(),
        Duration::from_secs(60),
    );
    let ns = "crds-examples";
    let out = run(k.cmd().args(["create", "namespace", ns]));
    assert!(
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("AlreadyExists"),
        "create namespace: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every example document of a Causeway kind, as the binaries load it.
    let kinds = [
        "BurstPolicy",
        "SpreadPolicy",
        "FailoverPolicy",
        "Zone",
        "LatencyMap",
        "AccessPolicy",
    ];
    let docs = documents(
        &[
            "examples/scheduler/scheduler.yaml",
            "examples/scheduler/spread.yaml",
            "examples/scheduler/failover.yaml",
            "examples/dns/causeway-dns.yaml",
            "examples/tunnel/access-policy.yaml",
        ],
        &kinds,
    );
    let mut seen: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        kinds.len(),
        "an example of every kind: {seen:?}"
    );
    for doc in &docs {
        if let Err(e) = apply(&k, ns, doc) {
            panic!("{} {} refused: {e}", doc["kind"], doc["metadata"]["name"]);
        }
    }
    // They are there, under the category, with the printer columns.
    let listed = k.run(&["get", "causeway", "-n", ns]);
    for doc in &docs {
        let name = doc["metadata"]["name"].as_str().expect("a name");
        assert!(listed.contains(name), "{name} not listed:\n{listed}");
    }
    let bp = k.run(&["get", "burstpolicies", "-n", ns]);
    assert!(
        bp.contains("DEPLOYMENT") && bp.contains("web"),
        "printer columns:\n{bp}"
    );
    // The status subresource exists (production mode will write it).
    let status = k.run(&[
        "get",
        "--raw",
        &format!("/apis/causeway.dev/v1alpha1/namespaces/{ns}/burstpolicies/web/status"),
    ]);
    assert!(status.contains("\"kind\":\"BurstPolicy\""), "{status}");

    // What the loaders refuse is refused here too (deny_unknown_fields → strict field
    // validation of a structural schema; types; required fields).
    let base = docs
        .iter()
        .find(|d| d["kind"] == "BurstPolicy")
        .expect("a BurstPolicy example")
        .clone();
    let bad = |mutate: &dyn Fn(&mut serde_json::Value)| {
        let mut d = base.clone();
        d["metadata"]["name"] = "bad".into();
        mutate(&mut d);
        d
    };
    let cases: [(&str, serde_json::Value, &str); 5] = [
        (
            "two demand sources (a CEL rule, as the loader's check)",
            bad(&|d| {
                d["spec"]["demand"]["external"] =
                    serde_json::json!({"targetPerReplica": 10, "homeMaxReplicas": 4})
            }),
            "set exactly one of capacity, hpa or external",
        ),
        (
            "unknown field in spec",
            bad(&|d| d["spec"]["homes"] = serde_json::json!(["idc-bj"])),
            ".spec.homes: field not declared in schema",
        ),
        (
            "unknown field deep down",
            bad(&|d| d["spec"]["burst"][0]["maxReplica"] = 3.into()),
            "maxReplica: field not declared in schema",
        ),
        (
            "wrong type",
            bad(&|d| d["spec"]["headroomPercent"] = "ten".into()),
            "headroomPercent",
        ),
        (
            "missing required field",
            bad(&|d| {
                d["spec"].as_object_mut().expect("spec").remove("workload");
            }),
            "workload",
        ),
    ];
    for (what, doc, expect) in cases {
        match apply(&k, ns, &doc) {
            Ok(out) => panic!("{what}: accepted: {out}"),
            Err(e) => assert!(
                e.contains(expect),
                "{what}: refused, but not for {expect:?}: {e}"
            ),
        }
    }
}
