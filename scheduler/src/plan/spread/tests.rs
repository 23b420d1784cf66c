//! Table tests of the spread planner, in the manner of the HPA controller's own.

use std::time::Duration;

use causeway_config::HumanDuration;
use causeway_model::ClusterId;

use super::{Claim, split};
use crate::observed::{ClusterState, Observed, WorkloadState};
use crate::plan::{Action, Memory, Plan, Role, Traffic, compute};
use crate::policy::{
    Behavior, DnsBinding, ScalingPolicy, ScalingPolicyType, ScalingRules, SelectPolicy, SpreadBy,
    SpreadPolicy, SpreadSpec, SpreadTarget, WorkloadRef,
};
use crate::quantity::Resources;

const S: fn(u64) -> Duration = Duration::from_secs;

fn id(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

fn wref() -> WorkloadRef {
    WorkloadRef {
        namespace: "shop".into(),
        deployment: "web".into(),
    }
}

/// `clusters`: (name, weight, minReplicas); scale-down window and rebalanceAfter in s.
fn policy(replicas: u32, clusters: &[(&str, u32, u32)], down: u64, rebalance: u64) -> SpreadPolicy {
    SpreadPolicy {
        name: "shop".into(),
        spec: SpreadSpec {
            workload: wref(),
            replicas,
            clusters: clusters
                .iter()
                .map(|(c, w, m)| SpreadTarget {
                    cluster: id(c),
                    weight: Some(*w),
                    min_replicas: *m,
                    overrides: Default::default(),
                })
                .collect(),
            by: SpreadBy::Weight,
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
                    stabilization_window: HumanDuration(S(down)),
                    ..ScalingRules::down()
                },
            },
            rebalance_after: HumanDuration(S(rebalance)),
            dns: Some(DnsBinding {
                name: "shop.svc.example.".into(),
                ttl: HumanDuration(S(5)),
            }),
        },
    }
}

fn by_capacity(mut p: SpreadPolicy) -> SpreadPolicy {
    p.spec.by = SpreadBy::FreeCapacity;
    for t in &mut p.spec.clusters {
        t.weight = None;
    }
    p
}

/// A reachable cluster with `cores` of CPU, running `replicas` of 500m pods (all
/// bound and ready); `source` marks the user's Deployment, else a managed copy.
fn cluster(cores: u64, replicas: Option<u32>, source: bool) -> ClusterState {
    let mut c = ClusterState {
        reachable: true,
        allocatable: Resources {
            cpu_millis: cores * 1000,
            memory_bytes: 1 << 40,
            pods: 110,
        },
        ..Default::default()
    };
    if let Some(n) = replicas {
        c.requested = Resources {
            cpu_millis: u64::from(n) * 500,
            memory_bytes: 0,
            pods: u64::from(n),
        };
        c.workloads.insert(
            wref(),
            WorkloadState {
                replicas: n,
                ready: n,
                scheduled: n,
                pod_requests: Resources {
                    cpu_millis: 500,
                    memory_bytes: 0,
                    pods: 1,
                },
                managed: !source,
                ..Default::default()
            },
        );
    }
    c
}

fn lost() -> ClusterState {
    ClusterState {
        reachable: false,
        error: Some("503 ServiceUnavailable: no agent session".into()),
        ..Default::default()
    }
}

fn observed(clusters: &[(&str, ClusterState)]) -> Observed {
    let mut o = Observed::default();
    for (c, s) in clusters {
        o.clusters.insert(id(c), s.clone());
    }
    o
}

fn planned(plan: &Plan) -> Vec<u32> {
    plan.decisions.iter().map(|d| d.planned).collect()
}

#[test]
fn split_by_weight_minimums_and_largest_remainder() {
    // (total, [(weight, min)], expected)
    type Case = (u32, &'static [(u64, u32)], &'static [u32]);
    let cases: &[Case] = &[
        (8, &[(2, 0), (1, 0), (1, 0)], &[4, 2, 2]),
        (12, &[(2, 1), (1, 1), (1, 0)], &[6, 3, 3]),
        // 10 by 2:1:1 = 5, 2.5, 2.5: one left over, the tie goes to the first listed.
        (10, &[(2, 0), (1, 0), (1, 0)], &[5, 3, 2]),
        // 7 by 1:1:1 = 2.33 each: the one left goes to the first.
        (7, &[(1, 0), (1, 0), (1, 0)], &[3, 2, 2]),
        // 5 by 3:1:1 = 3, 1, 1 — but aws needs 2: it gets 2, 3 go 3:1 → 2.25/0.75 → 2, 1.
        (5, &[(3, 0), (1, 0), (1, 2)], &[2, 1, 2]),
        // A weight-0 cluster gets its minimum only.
        (6, &[(1, 0), (1, 0), (0, 1)], &[3, 2, 1]),
        // A minimum under the weighted share changes nothing (a floor, not an addition).
        (8, &[(2, 1), (1, 1), (1, 0)], &[4, 2, 2]),
        // Pinning cascades: 9 by 8:1:1, b min 3 and c min 3 → a 3.
        (9, &[(8, 0), (1, 3), (1, 3)], &[3, 3, 3]),
        // Every weight 0: even split, extra to the first listed.
        (5, &[(0, 0), (0, 0)], &[3, 2]),
        (0, &[(2, 0), (1, 0)], &[0, 0]),
        (3, &[(1, 0)], &[3]),
    ];
    for (total, claims, want) in cases {
        let claims: Vec<Claim> = claims
            .iter()
            .map(|(weight, min)| Claim {
                weight: *weight,
                min: *min,
            })
            .collect();
        let got: Vec<u32> = split(*total, &claims)
            .parts
            .iter()
            .map(|p| p.replicas)
            .collect();
        assert_eq!(&got, want, "{total} over {claims:?}");
        assert_eq!(got.iter().sum::<u32>(), *total, "{total} over {claims:?}");
    }
}

#[test]
fn split_marks_minimums_and_rounding() {
    let s = split(
        10,
        &[
            Claim { weight: 2, min: 0 },
            Claim { weight: 1, min: 0 },
            Claim { weight: 1, min: 0 },
            Claim { weight: 0, min: 1 },
        ],
    );
    assert!(s.parts[3].at_minimum);
    assert_eq!((s.by_weight, s.weights), (9, 4));
    // 9 by 2:1:1 = 4.5, 2.25, 2.25 → 4, 2, 2, one left to the largest remainder.
    assert_eq!(
        s.parts.iter().map(|p| p.replicas).collect::<Vec<_>>(),
        vec![5, 2, 2, 1]
    );
    assert!(s.parts[0].rounded_up && !s.parts[1].rounded_up);
}

#[test]
fn places_by_weight_with_reasons() {
    let p = policy(8, &[("idc", 2, 1), ("ali", 1, 1), ("aws", 1, 0)], 300, 60);
    let o = observed(&[
        ("idc", cluster(16, Some(8), true)),
        ("ali", cluster(16, None, false)),
        ("aws", cluster(16, None, false)),
    ]);
    let (plan, mem) = compute(std::slice::from_ref(&p), &o, &Memory::default(), S(0));
    // No earlier recommendation holds the source (as the HPA after a restart).
    assert_eq!(planned(&plan), vec![4, 2, 2], "{}", plan.table());
    assert!(
        plan.decisions[0].reason.contains("weight 2 of 4 → 4 of 8"),
        "{}",
        plan.decisions[0].reason
    );
    assert_eq!(plan.decisions[0].action, Action::Scale(4));
    assert_eq!(plan.decisions[0].role, Role::Source);
    assert_eq!(plan.decisions[1].role, Role::Spread);
    assert_eq!(plan.decisions[1].action, Action::Apply(2));
    assert_eq!(plan.decisions[2].action, Action::Apply(2));
    assert_eq!(plan.decisions[0].traffic, Traffic::Serve);
    assert_eq!(plan.decisions[1].traffic, Traffic::Out, "no ready copy yet");
    assert!(plan.demand["shop"].starts_with("spread: 8 replicas by weight over 3 of 3"));
    assert!(plan.table().contains("spread"));
    // The copies become ready: they join the DNS answers with their ready replicas.
    let o = observed(&[
        ("idc", cluster(16, Some(4), true)),
        ("ali", cluster(16, Some(2), false)),
        ("aws", cluster(16, Some(2), false)),
    ]);
    let (plan, _) = compute(&[p], &o, &mem, S(10));
    assert_eq!(planned(&plan), vec![4, 2, 2]);
    assert_eq!(plan.decisions[0].action, Action::Keep);
    assert!(plan.decisions.iter().all(|d| d.traffic == Traffic::Serve));
}

#[test]
fn the_source_is_scaled_and_dns_weights_follow_ready_replicas() {
    let p = policy(8, &[("idc", 2, 0), ("ali", 1, 0), ("aws", 1, 0)], 0, 60);
    let mut ali = cluster(16, Some(2), false);
    ali.workloads.get_mut(&wref()).unwrap().ready = 1;
    let o = observed(&[
        ("idc", cluster(16, Some(2), true)),
        ("ali", ali),
        ("aws", cluster(16, Some(2), false)),
    ]);
    let (plan, _) = compute(&[p], &o, &Memory::default(), S(0));
    assert_eq!(planned(&plan), vec![4, 2, 2]);
    assert_eq!(plan.decisions[0].action, Action::Scale(4));
    assert_eq!(plan.decisions[1].action, Action::Apply(2));
    let weights: Vec<u32> = plan.decisions.iter().map(|d| d.dns_weight()).collect();
    assert_eq!(weights, vec![2, 1, 2]);
}

#[test]
fn a_lost_cluster_s_share_moves_at_once_and_comes_back_after_rebalance_after() {
    let p = [policy(
        8,
        &[("idc", 2, 0), ("ali", 1, 0), ("aws", 1, 0)],
        20,
        10,
    )];
    let steady = |ali: ClusterState, idc: u32, aws: u32| {
        observed(&[
            ("idc", cluster(16, Some(idc), true)),
            ("ali", ali),
            ("aws", cluster(16, Some(aws), false)),
        ])
    };
    let (plan, mem) = compute(
        &p,
        &steady(cluster(16, Some(2), false), 4, 2),
        &Memory::default(),
        S(0),
    );
    assert_eq!(planned(&plan), vec![4, 2, 2]);

    // ali is lost: 8 by 2:1 over idc and aws = 5.33, 2.67 → 5, 3 at once.
    let (plan, mem) = compute(&p, &steady(lost(), 4, 2), &mem, S(5));
    assert_eq!(planned(&plan), vec![5, 0, 3], "{}", plan.table());
    assert_eq!(
        (plan.decisions[0].action, plan.decisions[2].action),
        (Action::Scale(5), Action::Apply(3))
    );
    assert_eq!(
        (plan.decisions[1].action, plan.decisions[1].traffic),
        (Action::Keep, Traffic::Out)
    );
    assert!(plan.decisions[1].reason.contains("no agent session"));
    assert!(
        plan.demand["shop"].contains("unreachable: ali"),
        "{}",
        plan.demand["shop"]
    );

    // ali is back with its old 2 replicas: held, out of DNS, for rebalanceAfter 10 s.
    let back = steady(cluster(16, Some(2), false), 5, 3);
    let (plan, mem) = compute(&p, &back, &mem, S(30));
    assert_eq!(planned(&plan), vec![5, 2, 3], "{}", plan.table());
    assert_eq!(
        (plan.decisions[1].action, plan.decisions[1].traffic),
        (Action::Keep, Traffic::Out)
    );
    assert!(
        plan.decisions[1]
            .reason
            .contains("back for 0s of rebalanceAfter 10s"),
        "{}",
        plan.decisions[1].reason
    );
    let (plan, mem) = compute(&p, &back, &mem, S(39));
    assert_eq!(planned(&plan), vec![5, 2, 3]);
    assert_eq!(plan.decisions[1].traffic, Traffic::Out);

    // After 10 s it rejoins: its share, in DNS; the others hold theirs for the 20 s window.
    let (plan, mem) = compute(&p, &back, &mem, S(40));
    assert_eq!(planned(&plan), vec![5, 2, 3], "{}", plan.table());
    assert_eq!(
        (plan.decisions[1].action, plan.decisions[1].traffic),
        (Action::Apply(2), Traffic::Serve)
    );
    assert!(
        plan.decisions[0]
            .reason
            .contains("held at 5 by the scale-down window"),
        "{}",
        plan.decisions[0].reason
    );
    let (plan, mem) = compute(&p, &back, &mem, S(55));
    assert_eq!(planned(&plan), vec![5, 2, 3], "still within the window");
    let (plan, _) = compute(&p, &back, &mem, S(61));
    assert_eq!(planned(&plan), vec![4, 2, 2], "{}", plan.table());
    assert_eq!(plan.decisions[0].action, Action::Scale(4));
}

#[test]
fn a_cluster_that_flaps_while_back_starts_its_wait_again() {
    let p = [policy(4, &[("idc", 1, 0), ("ali", 1, 0)], 0, 10)];
    let up = observed(&[
        ("idc", cluster(16, Some(2), true)),
        ("ali", cluster(16, Some(2), false)),
    ]);
    let down = observed(&[("idc", cluster(16, Some(4), true)), ("ali", lost())]);
    let (_, mem) = compute(&p, &up, &Memory::default(), S(0));
    let (plan, mem) = compute(&p, &down, &mem, S(1));
    assert_eq!(planned(&plan)[0], 4);
    let (_, mem) = compute(&p, &up, &mem, S(2));
    let (_, mem) = compute(&p, &down, &mem, S(8));
    let (plan, mem) = compute(&p, &up, &mem, S(11));
    assert!(
        plan.decisions[1].reason.contains("back for 0s"),
        "{}",
        plan.table()
    );
    let (plan, _) = compute(&p, &up, &mem, S(21));
    assert_eq!(
        plan.decisions[1].traffic,
        Traffic::Serve,
        "{}",
        plan.table()
    );
}

#[test]
fn the_lost_source_s_share_goes_to_the_copies() {
    let p = [policy(
        8,
        &[("idc", 2, 0), ("ali", 1, 0), ("aws", 1, 0)],
        0,
        60,
    )];
    let o = observed(&[
        ("idc", lost()),
        ("ali", cluster(16, Some(2), false)),
        ("aws", cluster(16, Some(2), false)),
    ]);
    let (plan, _) = compute(&p, &o, &Memory::default(), S(0));
    assert_eq!(planned(&plan), vec![0, 4, 4], "{}", plan.table());
    assert_eq!(plan.decisions[0].action, Action::Keep);
    assert_eq!(plan.decisions[1].action, Action::Apply(4));
}

#[test]
fn minimums_of_lost_clusters_do_not_count() {
    // ali's minimum 3 goes with it; idc and aws split all 6 by weight.
    let p = [policy(
        6,
        &[("idc", 1, 0), ("ali", 1, 3), ("aws", 1, 0)],
        0,
        60,
    )];
    let o = observed(&[
        ("idc", cluster(16, Some(3), true)),
        ("ali", lost()),
        ("aws", cluster(16, None, false)),
    ]);
    let (plan, _) = compute(&p, &o, &Memory::default(), S(0));
    assert_eq!(planned(&plan), vec![3, 0, 3]);
}

#[test]
fn by_free_capacity_splits_by_what_fits() {
    // 500m pods: idc runs 2 on 2 cores (fit 2 + 2 free = 4), ali 4 cores (8), aws 2 (4).
    let p = [by_capacity(policy(
        8,
        &[("idc", 0, 0), ("ali", 0, 0), ("aws", 0, 1)],
        0,
        60,
    ))];
    let o = observed(&[
        ("idc", cluster(2, Some(2), true)),
        ("ali", cluster(4, None, false)),
        ("aws", cluster(2, None, false)),
    ]);
    let (plan, _) = compute(&p, &o, &Memory::default(), S(0));
    assert_eq!(planned(&plan), vec![2, 4, 2], "{}", plan.table());
    assert!(
        plan.decisions[1]
            .reason
            .contains("8 fit here of 16 → 4 of 8"),
        "{}",
        plan.decisions[1].reason
    );
    assert!(plan.demand["shop"].contains("16 fit in them"));
    // More than fits anywhere: proportional still, and the demand says the rest waits.
    let p = [by_capacity(policy(
        32,
        &[("idc", 0, 0), ("ali", 0, 0), ("aws", 0, 0)],
        0,
        60,
    ))];
    let (plan, _) = compute(&p, &o, &Memory::default(), S(0));
    assert_eq!(planned(&plan), vec![8, 16, 8]);
    assert!(plan.demand["shop"].contains("the rest will be Pending"));
}

#[test]
fn a_cluster_going_to_zero_drains_dns_first() {
    // aws's weight becomes 0 (policy change): out of DNS for the 5 s TTL, then deleted.
    let p = [policy(4, &[("idc", 1, 0), ("aws", 0, 0)], 0, 60)];
    let o = observed(&[
        ("idc", cluster(16, Some(2), true)),
        ("aws", cluster(16, Some(2), false)),
    ]);
    let (plan, mem) = compute(&p, &o, &Memory::default(), S(0));
    assert_eq!(
        (
            plan.decisions[1].planned,
            plan.decisions[1].traffic,
            plan.decisions[1].action
        ),
        (2, Traffic::Drain, Action::Keep)
    );
    assert_eq!(plan.decisions[0].action, Action::Scale(4));
    let (plan, _) = compute(&p, &o, &mem, S(5));
    assert_eq!(
        (
            plan.decisions[1].planned,
            plan.decisions[1].traffic,
            plan.decisions[1].action
        ),
        (0, Traffic::Out, Action::Delete)
    );
}

#[test]
fn an_unmanaged_deployment_is_left_out_of_the_split() {
    let p = [policy(
        6,
        &[("idc", 1, 0), ("ali", 1, 0), ("aws", 1, 0)],
        0,
        60,
    )];
    let mut ali = cluster(16, Some(1), false);
    ali.workloads.get_mut(&wref()).unwrap().managed = false;
    let o = observed(&[
        ("idc", cluster(16, Some(3), true)),
        ("ali", ali),
        ("aws", cluster(16, None, false)),
    ]);
    let (plan, _) = compute(&p, &o, &Memory::default(), S(0));
    assert_eq!(planned(&plan), vec![3, 1, 3]);
    assert_eq!(plan.decisions[1].action, Action::Keep);
    assert!(plan.decisions[1].reason.contains("not managed by Causeway"));
}

#[test]
fn a_missing_source_deployment_holds_everything() {
    let p = [policy(6, &[("idc", 1, 0), ("ali", 1, 0)], 0, 60)];
    let o = observed(&[
        ("idc", cluster(16, None, true)),
        ("ali", cluster(16, Some(3), false)),
    ]);
    let (plan, _) = compute(&p, &o, &Memory::default(), S(0));
    assert!(plan.decisions.iter().all(|d| d.action == Action::Keep));
    assert_eq!(plan.decisions[1].traffic, Traffic::Serve);
    assert!(plan.demand["shop"].contains("not found in source cluster idc"));
}

#[test]
fn burst_and_spread_policies_plan_side_by_side_and_memory_is_forgotten() {
    let spread = [policy(4, &[("idc", 1, 0), ("ali", 1, 0)], 300, 60)];
    let o = observed(&[
        ("idc", cluster(16, Some(4), true)),
        ("ali", cluster(16, None, false)),
    ]);
    let (_, mem) = compute(&spread, &o, &Memory::default(), S(0));
    assert_ne!(mem, Memory::default());
    // The policy is gone: nothing of it is remembered.
    let none: [SpreadPolicy; 0] = [];
    let (plan, mem) = compute(&none, &o, &mem, S(1));
    assert!(plan.decisions.is_empty());
    assert_eq!(mem, Memory::default());
}

#[test]
fn same_inputs_same_plan() {
    let p = [policy(
        9,
        &[("idc", 2, 1), ("ali", 1, 1), ("aws", 1, 0)],
        300,
        60,
    )];
    let o = observed(&[
        ("idc", cluster(16, Some(3), true)),
        ("ali", lost()),
        ("aws", cluster(16, Some(3), false)),
    ]);
    let a = compute(&p, &o, &Memory::default(), S(7));
    let b = compute(&p, &o, &Memory::default(), S(7));
    assert_eq!(a, b);
}
