//! Production mode's pure parts: the file + hub objects through the scheduler's loader
//! with last-good, and the status written from a plan.

use std::path::{Path, PathBuf};

use causeway_hubstore::HubObject;
use causeway_model::ClusterId;

use super::*;
use crate::plan::{Decision, Role, failover};

const BASE: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Scheduler
metadata: {name: main}
spec:
  stubKubeconfig: /k.yaml
  interval: 1s
---
apiVersion: causeway.dev/v1alpha1
kind: SpreadPolicy
metadata: {name: shop}
spec:
  workload: {namespace: shop, deployment: cart}
  replicas: 4
  clusters: [{cluster: a, weight: 1}, {cluster: b, weight: 1}]
";

fn base() -> Vec<Document> {
    causeway_config::parse_str(Path::new("/etc/scheduler.yaml"), BASE).unwrap()
}

/// A hub BurstPolicy `name` at `generation` for deployment `deployment`, bursting to
/// `max` replicas in b.
fn burst(name: &str, generation: i64, deployment: &str, max: i64) -> HubObject {
    HubObject {
        kind: Kind::BurstPolicy,
        name: name.into(),
        generation: Some(generation),
        resource_version: None,
        source: PathBuf::from(format!("hub:ns/burstpolicies/{name}")),
        document: json!({
            "apiVersion": "causeway.dev/v1alpha1", "kind": "BurstPolicy",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {
                "workload": {"namespace": "shop", "deployment": deployment},
                "home": ["a"],
                "burst": [{"cluster": "b", "maxReplicas": max, "warmMinimum": 1}],
                "demand": {"capacity": {}},
            },
        }),
        status: None,
    }
}

fn snap(objects: Vec<HubObject>) -> Snapshot {
    Snapshot { objects }
}

#[test]
fn hub_policies_load_with_the_files_and_a_bad_change_keeps_the_last_good() {
    let mut lg = LastGood::default();
    let first = lg.load(
        &base(),
        &snap(vec![burst("web", 1, "web", 4)]),
        SchedulerConfig::from_documents,
    );
    let c = first.config.unwrap();
    assert_eq!((c.spread.len(), c.burst.len()), (1, 1));
    assert_eq!(c.burst[0].spec.burst[0].max_replicas, 4);
    assert_eq!(
        c.files,
        vec![PathBuf::from("/etc/scheduler.yaml")]
            .into_iter()
            .chain([PathBuf::from("hub:ns/burstpolicies/web")])
            .collect::<Vec<_>>()
    );

    // warmMinimum above maxReplicas: refused, naming the object and field; 4 keeps running.
    let second = lg.load(
        &base(),
        &snap(vec![burst("web", 2, "web", 0)]),
        SchedulerConfig::from_documents,
    );
    let c = second.config.unwrap();
    assert_eq!(c.burst[0].spec.burst[0].max_replicas, 4);
    let why = second.verdicts[0].result.clone().unwrap_err();
    assert!(
        why.starts_with("hub:ns/burstpolicies/web:") && why.contains("spec.burst[0].warmMinimum"),
        "{why}"
    );
    assert_eq!(second.verdicts[0].generation, Some(2));

    // A new object placing the file policy's workload is left out; the rest runs.
    let third = lg.load(
        &base(),
        &snap(vec![burst("cart", 1, "cart", 2), burst("web", 3, "web", 6)]),
        SchedulerConfig::from_documents,
    );
    let c = third.config.unwrap();
    assert_eq!(c.burst.len(), 1);
    assert_eq!(c.burst[0].spec.burst[0].max_replicas, 6);
    let why = third.verdicts[0].result.clone().unwrap_err();
    assert!(why.contains("already placed by SpreadPolicy/shop"), "{why}");
    assert!(third.verdicts[1].result.is_ok());
}

#[test]
fn without_a_scheduler_document_the_error_names_the_first_document() {
    let docs = causeway_config::parse_str(
        Path::new("/etc/p.yaml"),
        "apiVersion: causeway.dev/v1alpha1\nkind: SpreadPolicy\nmetadata: {name: s}\nspec:\n  workload: {namespace: a, deployment: b}\n  replicas: 1\n  clusters: [{cluster: a}]\n",
    )
    .unwrap();
    let e = SchedulerConfig::from_documents(&docs).unwrap_err();
    assert_eq!(e.file, PathBuf::from("/etc/p.yaml"));
    assert!(e.to_string().contains("no Scheduler document"), "{e}");
}

fn decision(policy: &str, cluster: &str, planned: u32, ready: u32, t: Traffic) -> Decision {
    Decision {
        policy: policy.into(),
        cluster: ClusterId::new(cluster).unwrap(),
        role: Role::Burst,
        current: ready,
        ready,
        planned,
        traffic: t,
        action: Action::Keep,
        reason: format!("{cluster} reason"),
    }
}

fn config() -> SchedulerConfig {
    let mut lg = LastGood::default();
    lg.load(
        &base(),
        &snap(vec![burst("web", 1, "web", 4)]),
        SchedulerConfig::from_documents,
    )
    .config
    .unwrap()
}

#[test]
fn the_decision_status_has_every_cluster_and_nulls_the_ones_gone() {
    let c = config();
    let p = c.policies().get("web").unwrap();
    let mut plan = Plan {
        decisions: vec![
            decision("web", "a", 4, 4, Traffic::Serve),
            decision("web", "b", 2, 1, Traffic::Serve),
            decision("shop", "a", 2, 2, Traffic::Serve),
        ],
        ..Default::default()
    };
    plan.demand
        .insert("web".into(), "capacity: 6 wanted, 4 fit".into());
    let old = json!({"decision": {"clusters": {"a": {}, "c": {"desired": 1}}}});
    let body = status_body(p, &plan, "2026-11-27T21:30:00Z", Some(&old));
    assert_eq!(
        body,
        json!({"decision": {
            "clusters": {
                "a": {"desired": 4, "ready": 4, "dns": "serve", "reason": "a reason"},
                "b": {"desired": 2, "ready": 1, "dns": "serve", "reason": "b reason"},
                "c": null,
            },
            "reason": "capacity: 6 wanted, 4 fit",
            "since": "2026-11-27T21:30:00Z",
        }})
    );
    // What decides a write: the numbers and DNS, read back the same from the status.
    let key = comparable(p, &plan);
    let mut written = body.clone();
    written["decision"]["clusters"]
        .as_object_mut()
        .unwrap()
        .remove("c");
    assert_eq!(comparable_of_status(&written), key);
    // A reason alone changing is not a change; a ready replica is.
    plan.decisions[0].reason = "a reason, 3s later".into();
    assert_eq!(comparable(p, &plan), key);
    plan.decisions[1].ready = 2;
    assert_ne!(comparable(p, &plan), key);
}

#[test]
fn failover_phase_follows_the_primary_and_the_actions() {
    let mut plan = Plan {
        decisions: vec![
            decision("db", "a", 1, 1, Traffic::Serve),
            decision("db", "b", 0, 0, Traffic::Out),
        ],
        ..Default::default()
    };
    plan.failover.insert(
        "db".into(),
        failover::Status {
            primary: ClusterId::new("a").unwrap(),
            last: None,
        },
    );
    assert_eq!(phase("db", &plan), "Serving");
    plan.decisions[0].traffic = Traffic::Out;
    assert_eq!(phase("db", &plan), "Unavailable");
    plan.decisions[0].action = Action::Fence;
    assert_eq!(phase("db", &plan), "Fencing");
    plan.decisions[0].action = Action::Keep;
    plan.decisions[1].action = Action::Grant(1);
    assert_eq!(phase("db", &plan), "Promoting");
    assert_eq!(phase("other", &plan), "Unavailable");
}
