//! Table tests of the planner, in the manner of the HPA controller's own.

use std::time::Duration;

use causeway_model::ClusterId;

use super::*;
use crate::observed::{ClusterState, HpaState, Observed, WorkloadState};
use crate::policy::{
    Behavior, BurstPolicy, BurstSpec, BurstTarget, CapacityDemand, Demand, DnsBinding,
    ExternalDemand, HpaDemand, ScalingPolicy, ScalingPolicyType, ScalingRules, SelectPolicy,
    WorkloadRef,
};
use crate::quantity::Resources;
use causeway_config::HumanDuration;

fn id(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

fn wref() -> WorkloadRef {
    WorkloadRef {
        namespace: "shop".into(),
        deployment: "web".into(),
    }
}

fn policy(demand: Demand, down_window: u64, ttl: u64) -> BurstPolicy {
    BurstPolicy {
        name: "web".into(),
        spec: BurstSpec {
            workload: wref(),
            home: vec![id("idc")],
            burst: vec![
                BurstTarget {
                    cluster: id("ali"),
                    max_replicas: 3,
                    warm_minimum: 0,
                    overrides: Default::default(),
                },
                BurstTarget {
                    cluster: id("aws"),
                    max_replicas: 10,
                    warm_minimum: 0,
                    overrides: Default::default(),
                },
            ],
            demand,
            headroom_percent: 0,
            behavior: Behavior {
                scale_up: ScalingRules {
                    stabilization_window: HumanDuration(Duration::ZERO),
                    // These tests burst by more than the HPA's default (+4 or +100 % per
                    // 15 s) in one round; the rate limits have their own tests.
                    policies: vec![ScalingPolicy {
                        kind: ScalingPolicyType::Pods,
                        value: 10_000,
                        period_seconds: 15,
                    }],
                    select_policy: SelectPolicy::Max,
                },
                scale_down: ScalingRules {
                    stabilization_window: HumanDuration(Duration::from_secs(down_window)),
                    ..ScalingRules::down()
                },
            },
            dns: Some(DnsBinding {
                name: "app.example.".into(),
                ttl: HumanDuration(Duration::from_secs(ttl)),
            }),
        },
    }
}

fn capacity() -> Demand {
    Demand {
        capacity: Some(CapacityDemand {}),
        hpa: None,
        external: None,
    }
}

fn cpu(m: u64) -> Resources {
    Resources {
        cpu_millis: m,
        memory_bytes: 0,
        pods: 1,
    }
}

/// A cluster with `cores` of allocatable CPU and 110 pods.
fn cluster(cores: u64) -> ClusterState {
    ClusterState {
        reachable: true,
        allocatable: Resources {
            cpu_millis: cores * 1000,
            memory_bytes: 1 << 40,
            pods: 110,
        },
        ..Default::default()
    }
}

/// Source with `replicas` of 500m pods on `cores`; `bound` of them scheduled.
fn source(cores: u64, replicas: u32, bound: u32, unschedulable: u32) -> ClusterState {
    let mut c = cluster(cores);
    c.requested = Resources {
        cpu_millis: u64::from(bound) * 500,
        memory_bytes: 0,
        pods: u64::from(bound),
    };
    c.workloads.insert(
        wref(),
        WorkloadState {
            replicas,
            ready: bound,
            scheduled: bound,
            unschedulable,
            pod_requests: cpu(500),
            ..Default::default()
        },
    );
    c
}

fn copy(c: &mut ClusterState, replicas: u32, ready: u32) {
    c.requested = c.requested.plus(Resources {
        cpu_millis: u64::from(replicas) * 500,
        memory_bytes: 0,
        pods: u64::from(replicas),
    });
    c.workloads.insert(
        wref(),
        WorkloadState {
            replicas,
            ready,
            scheduled: replicas,
            pod_requests: cpu(500),
            managed: true,
            ..Default::default()
        },
    );
}

fn observed(src: ClusterState, ali: ClusterState, aws: ClusterState) -> Observed {
    let mut o = Observed::default();
    o.clusters.insert(id("idc"), src);
    o.clusters.insert(id("ali"), ali);
    o.clusters.insert(id("aws"), aws);
    o
}

fn planned(plan: &Plan) -> Vec<(String, u32, Action, Traffic)> {
    plan.decisions
        .iter()
        .map(|d| (d.cluster.to_string(), d.planned, d.action, d.traffic))
        .collect()
}

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn capacity_overflow_fills_burst_clusters_in_order() {
    // 10 wanted on 2 cores of 500m pods: 4 fit, 6 Pending → ali takes its max 3, aws 3.
    let o = observed(source(2, 10, 4, 6), cluster(8), cluster(8));
    let (plan, _) = compute(&[policy(capacity(), 300, 30)], &o, &Memory::default(), S(0));
    assert_eq!(
        planned(&plan),
        vec![
            ("idc".into(), 10, Action::Keep, Traffic::Serve),
            ("ali".into(), 3, Action::Apply(3), Traffic::Out),
            ("aws".into(), 3, Action::Apply(3), Traffic::Out),
        ]
    );
    assert!(
        plan.demand["web"].contains("overflow 6"),
        "{}",
        plan.demand["web"]
    );
    assert!(
        plan.decisions[1].reason.contains("maxReplicas 3"),
        "{}",
        plan.decisions[1].reason
    );
}

#[test]
fn overflow_is_predicted_from_allocatable_before_pods_go_pending() {
    // The scheduler has not marked them yet: 0 Unschedulable, but 2 cores take only 4.
    let o = observed(source(2, 6, 4, 0), cluster(8), cluster(8));
    let (plan, _) = compute(&[policy(capacity(), 300, 30)], &o, &Memory::default(), S(0));
    assert_eq!(plan.decisions[1].planned, 2);
    assert_eq!(plan.decisions[2].planned, 0);
    assert_eq!(plan.decisions[2].action, Action::Keep);
}

#[test]
fn a_burst_cluster_takes_only_what_fits() {
    let o = observed(source(2, 10, 4, 6), cluster(1), cluster(8));
    let (plan, _) = compute(&[policy(capacity(), 300, 30)], &o, &Memory::default(), S(0));
    assert_eq!(plan.decisions[1].planned, 2, "{}", plan.decisions[1].reason);
    assert!(
        plan.decisions[1].reason.contains("only 2 fit"),
        "{}",
        plan.decisions[1].reason
    );
    assert_eq!(plan.decisions[2].planned, 4);
}

#[test]
fn unreachable_burst_cluster_is_skipped_and_out_of_dns() {
    let mut ali = cluster(8);
    copy(&mut ali, 2, 2);
    ali.reachable = false;
    ali.error = Some("no agent session".into());
    let o = observed(source(2, 10, 4, 6), ali, cluster(8));
    let (plan, _) = compute(&[policy(capacity(), 300, 30)], &o, &Memory::default(), S(0));
    assert_eq!(plan.decisions[1].action, Action::Keep);
    assert_eq!(plan.decisions[1].traffic, Traffic::Out);
    assert!(plan.decisions[1].reason.contains("no agent session"));
    assert_eq!(plan.decisions[2].planned, 6);
}

#[test]
fn scale_back_waits_for_the_window_then_drains_dns_for_a_ttl_cloud_first() {
    let p = [policy(capacity(), 20, 5)];
    // Burst is up: ali 3, aws 3, all ready.
    let mut ali = cluster(8);
    copy(&mut ali, 3, 3);
    let mut aws = cluster(8);
    copy(&mut aws, 3, 3);
    let busy = observed(source(2, 10, 4, 6), ali.clone(), aws.clone());
    let (_, mem) = compute(&p, &busy, &Memory::default(), S(0));
    // Load drops to 7 wanted: overflow 3 — aws (last in order) should give its 3 back.
    let calmer = observed(source(2, 7, 4, 3), ali.clone(), aws.clone());
    let (plan, mem) = compute(&p, &calmer, &mem, S(10));
    assert_eq!(
        plan.decisions[2].planned, 3,
        "within the 20 s window: {}",
        plan.decisions[2].reason
    );
    assert!(
        plan.decisions[2].reason.contains("scale-down window"),
        "{}",
        plan.decisions[2].reason
    );
    let (plan, mem) = compute(&p, &calmer, &mem, S(21));
    assert_eq!(plan.decisions[1].planned, 3, "ali keeps its 3");
    assert_eq!(plan.decisions[1].traffic, Traffic::Serve);
    // aws leaves DNS first, keeps its replicas for the 5 s TTL.
    assert_eq!(
        (
            plan.decisions[2].planned,
            plan.decisions[2].traffic,
            plan.decisions[2].action
        ),
        (3, Traffic::Drain, Action::Keep)
    );
    let (plan, mem) = compute(&p, &calmer, &mem, S(24));
    assert_eq!(plan.decisions[2].traffic, Traffic::Drain);
    let (plan, _) = compute(&p, &calmer, &mem, S(26));
    assert_eq!(
        (plan.decisions[2].traffic, plan.decisions[2].action),
        (Traffic::Out, Action::Delete)
    );
}

#[test]
fn a_new_surge_during_the_drain_cancels_it() {
    let p = [policy(capacity(), 0, 30)];
    let mut aws = cluster(8);
    copy(&mut aws, 3, 3);
    let mut ali = cluster(8);
    copy(&mut ali, 3, 3);
    let calm = observed(source(2, 7, 4, 3), ali.clone(), aws.clone());
    let (plan, mem) = compute(&p, &calm, &Memory::default(), S(0));
    assert_eq!(plan.decisions[2].traffic, Traffic::Drain);
    let busy = observed(source(2, 10, 4, 6), ali, aws);
    let (plan, mem) = compute(&p, &busy, &mem, S(5));
    assert_eq!(
        (plan.decisions[2].planned, plan.decisions[2].traffic),
        (3, Traffic::Serve)
    );
    // And a later calm starts a fresh drain, not the old one.
    let (plan, _) = compute(&p, &calm, &mem, S(40));
    assert_eq!(plan.decisions[2].traffic, Traffic::Drain);
}

#[test]
fn source_unreachable_holds_every_copy() {
    let mut ali = cluster(8);
    copy(&mut ali, 3, 3);
    let mut src = source(2, 10, 4, 6);
    src.reachable = false;
    let o = observed(src, ali, cluster(8));
    let (plan, _) = compute(&[policy(capacity(), 0, 0)], &o, &Memory::default(), S(0));
    assert_eq!(plan.decisions[0].traffic, Traffic::Out);
    assert_eq!(
        (plan.decisions[1].planned, plan.decisions[1].action),
        (3, Action::Keep)
    );
    assert_eq!(plan.decisions[1].traffic, Traffic::Serve);
    assert!(plan.demand["web"].contains("unreachable"));
}

#[test]
fn an_unmanaged_deployment_in_a_burst_cluster_is_left_alone() {
    let mut ali = cluster(8);
    copy(&mut ali, 1, 1);
    ali.workloads.get_mut(&wref()).unwrap().managed = false;
    let o = observed(source(2, 10, 4, 6), ali, cluster(8));
    let (plan, _) = compute(&[policy(capacity(), 0, 0)], &o, &Memory::default(), S(0));
    assert_eq!(plan.decisions[1].action, Action::Keep);
    assert_eq!(plan.decisions[2].planned, 6);
}

fn hpa_policy() -> BurstPolicy {
    policy(
        Demand {
            capacity: None,
            hpa: Some(HpaDemand {
                name: "web".into(),
                tolerance: 0.1,
            }),
            external: None,
        },
        0,
        0,
    )
}

fn with_hpa(mut c: ClusterState, usage: u64, pods: u32, limited: bool) -> ClusterState {
    let w = c.workloads.get_mut(&wref()).unwrap();
    w.cpu_usage_millis = Some(usage);
    w.pods_with_metrics = pods;
    w.hpa = Some(HpaState {
        min_replicas: 1,
        max_replicas: 4,
        current_replicas: 4,
        desired_replicas: 4,
        target_cpu_percent: Some(50),
        scaling_limited: limited,
    });
    c
}

#[test]
fn hpa_demand_is_computed_over_all_clusters_pods() {
    // Table: (usage at home, usage in ali's 2 pods, expected overflow).
    // 500m requests at 50 % → 250m per replica.
    let cases = [
        (4 * 250, 0, 0),       // exactly at target: 4 replicas, no overflow
        (4 * 500, 0, 4),       // 2000m → 8 replicas, HPA max 4 → 4 out
        (4 * 500, 2 * 500, 8), // with ali's pods busy too: 3000m → 12 → 8 out
        (4 * 260, 0, 0),       // ratio 1.04 within the 10 % tolerance
    ];
    for (home_use, ali_use, want) in cases {
        let mut ali = cluster(16);
        let ali_pods = if ali_use > 0 { 2 } else { 0 };
        if ali_use > 0 {
            copy(&mut ali, 2, 2);
            let w = ali.workloads.get_mut(&wref()).unwrap();
            w.cpu_usage_millis = Some(ali_use);
            w.pods_with_metrics = ali_pods;
        }
        let src = with_hpa(source(16, 4, 4, 0), home_use, 4, true);
        let o = observed(src, ali, cluster(16));
        let (plan, _) = compute(&[hpa_policy()], &o, &Memory::default(), S(0));
        let out: u32 = plan.decisions[1..].iter().map(|d| d.planned).sum();
        assert_eq!(
            out, want,
            "home {home_use}m ali {ali_use}m: {}",
            plan.demand["web"]
        );
    }
}

#[test]
fn hpa_below_max_sends_nothing_out() {
    let mut src = with_hpa(source(16, 3, 3, 0), 3 * 500, 3, false);
    src.workloads
        .get_mut(&wref())
        .unwrap()
        .hpa
        .as_mut()
        .unwrap()
        .current_replicas = 3;
    let o = observed(src, cluster(8), cluster(8));
    let (plan, _) = compute(&[hpa_policy()], &o, &Memory::default(), S(0));
    assert!(
        plan.decisions[1..].iter().all(|d| d.planned == 0),
        "{}",
        plan.table()
    );
    assert!(plan.demand["web"].contains("below max"));
}

#[test]
fn external_demand_fills_home_then_bursts_with_headroom() {
    let mut p = policy(
        Demand {
            capacity: None,
            hpa: None,
            external: Some(ExternalDemand {
                target_per_replica: 100.0,
                home_max_replicas: 4,
            }),
        },
        0,
        0,
    );
    p.spec.headroom_percent = 50;
    let mut o = observed(source(16, 2, 2, 0), cluster(8), cluster(8));
    o.external.insert("web".into(), 650.0);
    let (plan, _) = compute(&[p], &o, &Memory::default(), S(0));
    // 650/100 → 7 replicas; home 4 (scale 2 → 4); overflow 3 +50 % → 5: ali 3, aws 2.
    assert_eq!(plan.decisions[0].action, Action::Scale(4));
    assert_eq!(plan.decisions[1].planned, 3);
    assert_eq!(plan.decisions[2].planned, 2);
    assert!(plan.table().contains("scale 4"));
}

#[test]
fn same_inputs_same_plan() {
    let o = observed(source(2, 10, 4, 6), cluster(8), cluster(8));
    let p = [policy(capacity(), 300, 30)];
    let a = compute(&p, &o, &Memory::default(), S(7));
    let b = compute(&p, &o, &Memory::default(), S(7));
    assert_eq!(a, b);
}

#[test]
fn a_second_plan_at_the_same_instant_replaces_the_first_recommendation() {
    let p = [policy(capacity(), 300, 30)];
    let mut ali = cluster(8);
    copy(&mut ali, 2, 2);
    let o = observed(source(2, 6, 4, 2), ali.clone(), cluster(8));
    let (_, mem) = compute(&p, &o, &Memory::default(), S(5));
    // Same instant, more demand (a what-if): scale-up is immediate, not held by the first.
    let more = observed(source(2, 10, 4, 6), ali, cluster(8));
    let (plan, _) = compute(&p, &more, &mem, S(5));
    assert_eq!(plan.decisions[1].planned, 3);
    assert_eq!(plan.decisions[2].planned, 3, "{}", plan.table());
}
