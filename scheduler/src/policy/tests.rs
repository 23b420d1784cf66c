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
