use std::io::Write;

use super::*;

const GOOD: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Scheduler
metadata: {name: main}
spec:
  stubKubeconfig: sched.kubeconfig
  dnsApi: http://127.0.0.1:8053
  interval: 1s
---
apiVersion: causeway.dev/v1alpha1
kind: BurstPolicy
metadata: {name: web}
spec:
  workload: {namespace: shop, deployment: web}
  home: [idc-bj]
  burst:
    - cluster: ali-hz
      maxReplicas: 10
      overrides: {imageRegistry: registry.ali.example}
    - {cluster: aws-sg, maxReplicas: 20}
  demand:
    capacity: {}
  behavior:
    scaleDown: {stabilizationWindow: 20s}
  dns: {name: app.svc.example., ttl: 5s}
";

fn load(text: &str) -> Result<SchedulerConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    SchedulerConfig::load(&[path]).map_err(|mut e| {
        e.file = PathBuf::from("s.yaml");
        e
    })
}

#[test]
fn loads_a_good_file_with_defaults() {
    let c = load(GOOD).unwrap();
    assert!(c.scheduler.stub_kubeconfig.ends_with("sched.kubeconfig"));
    assert!(c.scheduler.stub_kubeconfig.is_absolute());
    let p = &c.burst[0];
    assert_eq!(p.spec.demand_kind(), DemandKind::Capacity);
    assert_eq!(
        p.spec.behavior.scale_up.stabilization_window.0,
        Duration::ZERO
    );
    assert_eq!(
        p.spec.behavior.scale_down.stabilization_window.0,
        Duration::from_secs(20)
    );
    assert_eq!(c.clusters().len(), 3);
}

#[test]
fn errors_point_at_the_line_and_column() {
    let e = load(&GOOD.replace("maxReplicas: 20}", "maxReplicas: -2}")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("s.yaml:19:38: BurstPolicy/web: spec.burst[1].maxReplicas: invalid value"),
        "{e}"
    );
    let e = load(&GOOD.replace(
        "      maxReplicas: 10",
        "      maxReplicas: 10\n      maxReplica: 3",
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("s.yaml:18:7: BurstPolicy/web: spec.burst[0].maxReplica: unknown field"),
        "{e}"
    );
    let e = load(&GOOD.replace("    capacity: {}", "    capacity: {}\n    hpa: {name: web}"))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.yaml:20:3: BurstPolicy/web: spec.demand: set exactly one of capacity, hpa or external"
    );
    let e = load(&GOOD.replace("{cluster: aws-sg", "{cluster: idc-bj")).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "s.yaml:19:17: BurstPolicy/web: spec.burst[1].cluster: cluster idc-bj is already"
        ),
        "{e}"
    );
    let e = load(&GOOD.replace("registry.ali.example", "registry.ali.example/x")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("s.yaml:18:34: BurstPolicy/web: spec.burst[0].overrides.imageRegistry:"),
        "{e}"
    );
    let e = load(&GOOD.replace("home: [idc-bj]", "home: [IDC]")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("s.yaml:14:10: BurstPolicy/web: spec.home[0]: cluster ID"),
        "{e}"
    );
}

#[test]
fn a_scheduler_document_is_required() {
    let only_policy = GOOD.split("---\n").nth(1).unwrap();
    let e = load(only_policy).unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.yaml: no Scheduler document in any file given"
    );
}

const SPREAD: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Scheduler
metadata: {name: main}
spec:
  stubKubeconfig: sched.kubeconfig
---
apiVersion: causeway.dev/v1alpha1
kind: SpreadPolicy
metadata: {name: shop}
spec:
  workload: {namespace: shop, deployment: web}
  replicas: 12
  clusters:
    - {cluster: idc-bj, weight: 2, minReplicas: 1}
    - {cluster: ali-hz, weight: 1, minReplicas: 1}
    - cluster: aws-sg
      overrides: {imageRegistry: registry.aws.example}
  behavior: {scaleDown: {stabilizationWindow: 30s}}
  dns: {name: shop.svc.example., ttl: 5s}
";

#[test]
fn loads_a_spread_policy_with_defaults() {
    let c = load(SPREAD).unwrap();
    let p = &c.spread[0];
    assert_eq!(p.spec.by, SpreadBy::Weight);
    assert_eq!(p.spec.source_cluster().as_str(), "idc-bj");
    assert_eq!(p.spec.clusters[2].weight(), 1);
    assert_eq!(p.spec.rebalance_after.0, Duration::from_secs(60));
    assert_eq!(
        p.spec.behavior.scale_down.stabilization_window.0,
        Duration::from_secs(30)
    );
    assert_eq!(c.clusters().len(), 3);
    let all = c.policies();
    assert_eq!(all.len(), 1);
    let shop = all.get("shop").unwrap();
    assert_eq!(shop.source_cluster().as_str(), "idc-bj");
    let aws = ClusterId::new("aws-sg").unwrap();
    assert_eq!(
        shop.overrides(&aws)
            .and_then(|o| o.image_registry.as_deref()),
        Some("registry.aws.example")
    );
    // Burst and spread policies load side by side, and share one namespace of names;
    // a workload is placed by one policy only.
    let spread_doc = SPREAD.split("---\n").nth(1).unwrap();
    let both = format!("{GOOD}---\n{spread_doc}");
    let e = load(&both).unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.yaml:30:3: SpreadPolicy/shop: spec.workload: shop/web is already placed by BurstPolicy/web"
    );
    let both = both.replace(
        "deployment: web}\n  replicas",
        "deployment: cart}\n  replicas",
    );
    let c = load(&both).unwrap();
    assert_eq!((c.burst.len(), c.spread.len()), (1, 1));
    let e = load(&both.replace("name: shop}", "name: web}")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("SpreadPolicy/web: metadata.name: a policy of this name is already defined"),
        "{e}"
    );
}

#[test]
fn the_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scheduler");
    let c = SchedulerConfig::load(&[dir.join("scheduler.yaml"), dir.join("spread.yaml")]).unwrap();
    assert_eq!((c.burst.len(), c.spread.len()), (1, 1));
    assert_eq!(c.spread[0].spec.clusters.len(), 3);
}

#[test]
fn spread_errors_point_at_the_line_and_column() {
    let cases = [
        (
            SPREAD.replace("weight: 1, minReplicas: 1", "weight: -1, minReplicas: 1"),
            "s.yaml:15:33: SpreadPolicy/shop: spec.clusters[1].weight: invalid value",
        ),
        (
            SPREAD.replace("{cluster: ali-hz", "{cluster: idc-bj"),
            "s.yaml:15:17: SpreadPolicy/shop: spec.clusters[1].cluster: cluster idc-bj is listed twice",
        ),
        (
            SPREAD.replace("replicas: 12", "replicas: 1"),
            "s.yaml:12:13: SpreadPolicy/shop: spec.replicas: must be at least the sum of the clusters' minReplicas (2)",
        ),
        (
            SPREAD.replace("  replicas: 12", "  replicas: 12\n  by: freeCapacity"),
            "s.yaml:15:33: SpreadPolicy/shop: spec.clusters[0].weight: not used with by: freeCapacity",
        ),
        (
            SPREAD.replace("  replicas: 12", "  replicas: 12\n  by: capacity"),
            "s.yaml:13:7: SpreadPolicy/shop: spec.by: unknown variant `capacity`",
        ),
        (
            SPREAD.replace(
                "minReplicas: 1}\n    - {cluster: ali",
                "minReplica: 1}\n    - {cluster: ali",
            ),
            "s.yaml:14:36: SpreadPolicy/shop: spec.clusters[0].minReplica: unknown field",
        ),
        (
            SPREAD.replace(
                "{cluster: idc-bj, weight: 2, minReplicas: 1}",
                "{cluster: idc-bj, weight: 2, overrides: {env: {A: b}}}",
            ),
            "s.yaml:14:36: SpreadPolicy/shop: spec.clusters[0].overrides: the first cluster holds the source Deployment",
        ),
        (
            SPREAD
                .replace("weight: 2,", "weight: 0,")
                .replace("weight: 1,", "weight: 0,")
                .replace(
                    "    - cluster: aws-sg",
                    "    - cluster: aws-sg\n      weight: 0",
                ),
            "s.yaml:14:33: SpreadPolicy/shop: spec.clusters[0].weight: at least one cluster needs a weight above 0",
        ),
        (
            SPREAD.replace("registry.aws.example", "registry.aws.example/x"),
            "s.yaml:17:34: SpreadPolicy/shop: spec.clusters[2].overrides.imageRegistry:",
        ),
        (
            SPREAD.replace(
                &SPREAD[SPREAD.find("  clusters:").unwrap()..SPREAD.find("  behavior").unwrap()],
                "  clusters: []\n",
            ),
            "s.yaml:13:3: SpreadPolicy/shop: spec.clusters: name at least one cluster",
        ),
        (
            SPREAD.replace("  replicas: 12", "  replicas: 12\n  rebalanceAfter: soon"),
            "s.yaml:13:19: SpreadPolicy/shop: spec.rebalanceAfter: invalid duration \"soon\"",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        let e = load(&text).unwrap_err().to_string();
        if !e.starts_with(want) {
            wrong.push(format!("want {want}\ngot  {e}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const FAILOVER: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Scheduler
metadata: {name: main}
spec:
  stubKubeconfig: sched.kubeconfig
  interval: 1s
---
apiVersion: causeway.dev/v1alpha1
kind: FailoverPolicy
metadata: {name: db}
spec:
  workload: {namespace: shop, deployment: db}
  primary: idc-bj
  backups: [ali-hz, aws-sg]
  lease: {duration: 6s, margin: 3s}
";

#[test]
fn loads_a_failover_policy_with_defaults() {
    let c = load(FAILOVER).unwrap();
    let p = &c.failover[0];
    assert_eq!(p.spec.replicas, 1);
    assert_eq!(p.spec.role_config_map(), "db-role");
    assert_eq!(p.lease_name(), "causeway-role-db");
    assert_eq!(p.spec.fence, FenceMode::ScaleToZero);
    assert_eq!(p.spec.unhealthy_after.0, Duration::from_secs(30));
    assert!(p.spec.failback_after.is_none());
    assert_eq!(c.clusters().len(), 3);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scheduler");
    let c =
        SchedulerConfig::load(&[dir.join("scheduler.yaml"), dir.join("failover.yaml")]).unwrap();
    assert_eq!(c.failover[0].spec.backups.len(), 2);
}

#[test]
fn failover_errors_point_at_the_line_and_column() {
    let cases = [
        (
            FAILOVER.replace("backups: [ali-hz, aws-sg]", "backups: []"),
            "s.yaml:14:3: FailoverPolicy/db: spec.backups: name at least one backup cluster",
        ),
        (
            FAILOVER.replace("[ali-hz, aws-sg]", "[ali-hz, idc-bj]"),
            "s.yaml:14:21: FailoverPolicy/db: spec.backups[1]: cluster idc-bj is listed twice (or is the primary)",
        ),
        (
            FAILOVER.replace("duration: 6s", "duration: 2500ms"),
            "s.yaml:15:21: FailoverPolicy/db: spec.lease.duration: must be whole seconds",
        ),
        (
            FAILOVER.replace("margin: 3s", "margin: 1s"),
            "s.yaml:15:33: FailoverPolicy/db: spec.lease.margin: must be at least 2s",
        ),
        (
            FAILOVER.replace("interval: 1s", "interval: 3s"),
            "s.yaml:15:21: FailoverPolicy/db: spec.lease.duration: must be at least 3 scheduler intervals",
        ),
        (
            FAILOVER.replace("  lease:", "  fence: stonith\n  lease:"),
            "s.yaml:15:10: FailoverPolicy/db: spec.fence: unknown variant `stonith`",
        ),
    ];
    for (text, want) in cases {
        let e = load(&text).unwrap_err().to_string();
        assert!(e.starts_with(want), "want {want}\n got {e}");
    }
    // A workload has one placer: a BurstPolicy may not also place shop/db.
    let both = format!(
        "{FAILOVER}---\n{}",
        GOOD.split("---\n")
            .nth(1)
            .unwrap()
            .replace("name: web}", "name: web2}")
            .replace("deployment: web}", "deployment: db}")
    );
    let e = load(&both).unwrap_err().to_string();
    assert!(
        e.contains(
            "BurstPolicy/web2: spec.workload: shop/db is already placed by FailoverPolicy/db"
        ),
        "{e}"
    );
}

#[test]
fn behavior_policies_default_as_the_hpa_and_load() {
    // Left out: the HPA's defaults in both directions.
    let c = load(&GOOD.replace(
        "  behavior:\n    scaleDown: {stabilizationWindow: 20s}\n",
        "",
    ))
    .unwrap();
    let b = &c.burst[0].spec.behavior;
    assert_eq!(b.scale_up, ScalingRules::up());
    assert_eq!(b.scale_down, ScalingRules::down());
    assert_eq!(b.scale_up.select_policy, SelectPolicy::Max);
    assert_eq!(b.scale_up.policies.len(), 2);
    // Only the window given: the direction's policies stay the defaults.
    let c = load(GOOD).unwrap();
    assert_eq!(
        c.burst[0].spec.behavior.scale_down.policies,
        ScalingRules::down().policies
    );
    // Policies given without a window: the window stays the default.
    let c = load(&GOOD.replace(
        "    scaleDown: {stabilizationWindow: 20s}",
        "    scaleUp:\n      selectPolicy: Min\n      policies:\n        - {type: Pods, value: 2, periodSeconds: 60}\n        - {type: Percent, value: 10, periodSeconds: 30}\n    scaleDown: {selectPolicy: Disabled}",
    ))
    .unwrap();
    let b = &c.burst[0].spec.behavior;
    assert_eq!(b.scale_up.stabilization_window.0, Duration::ZERO);
    assert_eq!(b.scale_up.select_policy, SelectPolicy::Min);
    assert_eq!(
        b.scale_up.policies,
        vec![
            ScalingPolicy {
                kind: ScalingPolicyType::Pods,
                value: 2,
                period_seconds: 60
            },
            ScalingPolicy {
                kind: ScalingPolicyType::Percent,
                value: 10,
                period_seconds: 30
            },
        ]
    );
    assert_eq!(b.scale_down.select_policy, SelectPolicy::Disabled);
    assert_eq!(
        b.scale_down.stabilization_window.0,
        Duration::from_secs(300)
    );
    assert_eq!(b.scale_down.policies, ScalingRules::down().policies);
    // SpreadPolicy: the same type, the same defaults.
    let c = load(SPREAD).unwrap();
    assert_eq!(c.spread[0].spec.behavior.scale_up, ScalingRules::up());
}

#[test]
fn behavior_policy_errors_point_at_the_field() {
    let with = |rules: &str| {
        load(&GOOD.replace("    scaleDown: {stabilizationWindow: 20s}", rules))
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            "    scaleUp:\n      policies:\n        - {type: Pods, value: 0, periodSeconds: 15}",
            "s.yaml:25:31: BurstPolicy/web: spec.behavior.scaleUp.policies[0].value: must be at least 1",
        ),
        (
            "    scaleDown:\n      policies:\n        - {type: Pods, value: 1, periodSeconds: 15}\n        - {type: Percent, value: 5, periodSeconds: 1801}",
            "s.yaml:26:52: BurstPolicy/web: spec.behavior.scaleDown.policies[1].periodSeconds: must be 1 to 1800",
        ),
        (
            "    scaleDown: {policies: [{type: Pods, value: 1, periodSeconds: 0}]}",
            "s.yaml:23:66: BurstPolicy/web: spec.behavior.scaleDown.policies[0].periodSeconds: must be 1 to 1800",
        ),
        (
            "    scaleUp: {policies: []}",
            "s.yaml:23:15: BurstPolicy/web: spec.behavior.scaleUp.policies: name at least one policy",
        ),
        (
            "    scaleUp: {selectPolicy: Biggest}",
            "s.yaml:23:29: BurstPolicy/web: spec.behavior.scaleUp.selectPolicy: unknown variant",
        ),
        (
            "    scaleUp: {policies: [{type: Replicas, value: 1, periodSeconds: 15}]}",
            "s.yaml:23:33: BurstPolicy/web: spec.behavior.scaleUp.policies[0].type: unknown variant",
        ),
        (
            "    scaleUp: {policies: [{type: Pods, value: 1, period: 15}]}",
            "s.yaml:23:49: BurstPolicy/web: spec.behavior.scaleUp.policies[0].period: unknown field",
        ),
    ];
    for (rules, want) in cases {
        let e = with(rules);
        assert!(e.starts_with(want), "{rules}\n got: {e}\nwant: {want}");
    }
    let eleven = (0..11)
        .map(|_| "{type: Pods, value: 1, periodSeconds: 15}")
        .collect::<Vec<_>>()
        .join(", ");
    let e = with(&format!("    scaleUp: {{policies: [{eleven}]}}"));
    assert!(
        e.starts_with(
            "s.yaml:23:15: BurstPolicy/web: spec.behavior.scaleUp.policies: at most 10 policies"
        ),
        "{e}"
    );
    // The same check for a SpreadPolicy.
    let e = load(&SPREAD.replace(
        "{scaleDown: {stabilizationWindow: 30s}}",
        "{scaleDown: {policies: [{type: Percent, value: 0, periodSeconds: 15}]}}",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "SpreadPolicy/shop: spec.behavior.scaleDown.policies[0].value: must be at least 1"
        ),
        "{e}"
    );
}
