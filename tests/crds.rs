//! `causeway crds`: the committed CRDs (charts/causeway-hub/crds/) are what the command
//! generates now (drift check), a real kube-apiserver accepts them, and the example files the
//! binaries load are accepted as custom resources, while what the loaders refuse (an unknown
//! field, a wrong type, a missing required field) is refused by the API server too.

use std::process::Command;

use causeway_testbed::testing::{Kubectl, run_ok, run_with_stdin};

#[path = "support/crds.rs"]
mod crds_support;
use crds_support::{CRD_DIR, apply_crds, create_namespace, files, root};

fn causeway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
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
        7,
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
    apply_crds(&k);
    let ns = "crds-examples";
    create_namespace(&k, ns);

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
    // A Placement as the scheduler's leader writes it (no example file: it is never
    // written by hand).
    let placement = serde_json::json!({
        "apiVersion": "causeway.dev/v1alpha1",
        "kind": "Placement",
        "metadata": {"name": "app.svc.example"},
        "spec": {
            "service": "app.svc.example.",
            "targets": [
                {"cluster": "idc-bj", "weight": 3, "role": "active", "health": "healthy",
                 "addresses": ["192.0.2.11", "2001:db8::11"]},
                {"cluster": "aws-sg", "weight": 1, "role": "draining", "health": "unknown"},
            ],
        },
    });
    serde_json::from_value::<causeway_model::Placement>(placement["spec"].clone())
        .expect("the example is a causeway_model::Placement");
    let mut docs = docs;
    docs.push(placement.clone());
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
    let pl = k.run(&["get", "placements", "-n", ns]);
    assert!(
        pl.contains("SERVICE") && pl.contains("app.svc.example.") && pl.contains("idc-bj"),
        "printer columns:\n{pl}"
    );
    // Defaults of the model (weight 100, role active, health unknown) are the schema's.
    let stored = k.run(&[
        "get",
        "placement",
        "app.svc.example",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.targets[1].weight}",
    ]);
    assert_eq!(stored.trim(), "1");
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
    // A Placement's cluster is a cluster ID; roles and health are the model's enums.
    for (what, mutate, expect) in [
        (
            "cluster that is not a DNS label",
            (|d: &mut serde_json::Value| d["spec"]["targets"][0]["cluster"] = "IDC_BJ".into())
                as fn(&mut serde_json::Value),
            "should match",
        ),
        (
            "unknown role",
            |d| d["spec"]["targets"][0]["role"] = "primary".into(),
            "Unsupported value",
        ),
        (
            "unknown field",
            |d| d["spec"]["targets"][0]["zone"] = "x".into(),
            "field not declared in schema",
        ),
    ] {
        let mut d = placement.clone();
        d["metadata"]["name"] = "bad".into();
        mutate(&mut d);
        match apply(&k, ns, &d) {
            Ok(out) => panic!("Placement, {what}: accepted: {out}"),
            Err(e) => assert!(
                e.contains(expect),
                "Placement, {what}: refused, but not for {expect:?}: {e}"
            ),
        }
    }
}
