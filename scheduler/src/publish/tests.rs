//! Placements from plans, and the publisher's change detection and destinations.

use std::sync::Mutex;

use causeway_model::ClusterId;

use super::*;
use crate::plan::{Action, Decision, Role as PlanRole};
use crate::policy::SchedulerConfig;

/// A SpreadPolicy `shop` with a dns name over a, b, c, and a BurstPolicy `web` without.
fn config() -> (tempfile::TempDir, SchedulerConfig) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(
        &file,
        "apiVersion: causeway.dev/v1alpha1
kind: Scheduler
metadata: {name: main}
spec:
  stubKubeconfig: k.yaml
---
apiVersion: causeway.dev/v1alpha1
kind: SpreadPolicy
metadata: {name: shop}
spec:
  workload: {namespace: shop, deployment: cart}
  replicas: 8
  clusters:
    - {cluster: a, weight: 2}
    - {cluster: b, weight: 1}
    - {cluster: c, weight: 1}
  dns: {name: cart.svc.example., ttl: 2s}
---
apiVersion: causeway.dev/v1alpha1
kind: BurstPolicy
metadata: {name: web}
spec:
  workload: {namespace: shop, deployment: web}
  home: [a]
  burst: [{cluster: b, maxReplicas: 2}]
  demand: {capacity: {}}
",
    )
    .unwrap();
    let c = SchedulerConfig::load(&[file]).unwrap();
    (dir, c)
}

fn decision(policy: &str, cluster: &str, ready: u32, traffic: Traffic) -> Decision {
    Decision {
        policy: policy.into(),
        cluster: ClusterId::new(cluster).unwrap(),
        role: PlanRole::Spread,
        current: ready,
        ready,
        planned: ready,
        traffic,
        action: Action::Keep,
        reason: String::new(),
    }
}

fn plan(decisions: Vec<Decision>) -> Plan {
    Plan {
        decisions,
        ..Default::default()
    }
}

#[test]
fn one_placement_per_dns_name_with_weights_roles_and_health() {
    let (_dir, c) = config();
    let p = plan(vec![
        decision("shop", "a", 4, Traffic::Serve),
        decision("shop", "b", 2, Traffic::Drain),
        decision("shop", "c", 0, Traffic::Out),
        decision("web", "a", 9, Traffic::Serve),
    ]);
    let got = placements(&c, &p);
    let t = |cluster: &str, weight, role, health| PlacementTarget {
        cluster: ClusterId::new(cluster).unwrap(),
        addresses: Vec::new(),
        weight,
        role,
        health,
    };
    assert_eq!(
        got,
        [Placement {
            service: "cart.svc.example.".into(),
            targets: vec![
                t("a", 4, Role::Active, Health::Healthy),
                t("b", 0, Role::Draining, Health::Unhealthy),
                t("c", 0, Role::Active, Health::Unhealthy),
            ],
        }],
        "the policy without a dns name publishes nothing"
    );
    // What goes over HTTP: addresses left out (dns keeps its zone's).
    let json = serde_json::json!({ "placements": got }).to_string();
    assert!(!json.contains("addresses"), "{json}");
    assert!(json.contains(r#""role":"draining""#), "{json}");
}

/// A sink that records what it is given, refusing while `refuse` is set.
#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<Vec<Placement>>>,
    refuse: Mutex<Option<String>>,
}

impl PlacementSink for Recorder {
    fn send(&self, placements: Vec<Placement>) -> Result<(), String> {
        if let Some(e) = self.refuse.lock().unwrap().clone() {
            return Err(e);
        }
        self.got.lock().unwrap().push(placements);
        Ok(())
    }
}

#[tokio::test]
async fn sends_on_change_and_on_refresh_in_process() {
    let (_dir, c) = config();
    let sink = Arc::new(Recorder::default());
    let dyn_sink: Arc<dyn PlacementSink> = sink.clone();
    let mut publisher = Publisher::for_config(Some("http://127.0.0.1:9"), Some(&dyn_sink))
        .unwrap()
        .expect("a publisher");
    publisher.refresh = Duration::from_millis(200); // 30 s in the scheduler
    assert!(matches!(publisher.destination(), Destination::InProcess(_)));
    let four = placements(&c, &plan(vec![decision("shop", "a", 4, Traffic::Serve)]));
    let five = placements(&c, &plan(vec![decision("shop", "a", 5, Traffic::Serve)]));
    assert!(publisher.publish(&four).await.unwrap());
    assert!(!publisher.publish(&four).await.unwrap(), "unchanged");
    assert!(publisher.publish(&five).await.unwrap(), "a weight changed");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(publisher.publish(&five).await.unwrap(), "refreshed");
    assert_eq!(sink.got.lock().unwrap().len(), 3);
    // A refusal is an error, and the same placements are tried again next round.
    *sink.refuse.lock().unwrap() = Some("cluster x is not a target".into());
    let e = publisher.publish(&four).await.unwrap_err();
    assert_eq!(e.to_string(), "dns (in process): cluster x is not a target");
    *sink.refuse.lock().unwrap() = None;
    assert!(publisher.publish(&four).await.unwrap());
}

#[test]
fn outside_the_hub_it_is_dns_api_or_nothing() {
    let p = Publisher::for_config(Some("http://127.0.0.1:8053/"), None).unwrap();
    assert!(matches!(
        p.as_ref().map(Publisher::destination),
        Some(Destination::Http { url, authority }) if url == "http://127.0.0.1:8053" && authority == "127.0.0.1:8053"
    ));
    assert!(Publisher::for_config(None, None).unwrap().is_none());
    assert!(matches!(
        Publisher::for_config(Some("https://x:1"), None),
        Err(PublishError::Url(_))
    ));
}
