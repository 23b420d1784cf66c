//! `BurstPolicy`: fill the home clusters first, send the overflow to burst clusters in
//! preference order, take it back in reverse order (cloud first) after the scale-down
//! window, and drain DNS for one TTL before removing replicas.
//!
//! 1. Demand: how many replicas do not fit at home (the *overflow*):
//!    * capacity: the source Deployment's replicas that cannot run there — its pods
//!      Pending `Unschedulable`, or more than allocatable minus requests allows;
//!    * hpa: the HPA algorithm over the pods of *every* cluster,
//!      `ceil(Σ CPU usage / (target % × request))` with the HPA's tolerance, minus the
//!      home HPA's `maxReplicas` once the HPA is at its max (Karmada's FederatedHPA
//!      computes the total the same way);
//!    * external: `ceil(value / targetPerReplica)` minus `homeMaxReplicas`.
//! 2. Headroom: the overflow grows by `headroomPercent` (rounded up).
//! 3. Fill: other home clusters, then burst clusters, each up to what fits there
//!    (and `maxReplicas`); unreachable clusters get nothing new.
//! 4. Stabilize each cluster's count ([`super::stabilize`]), then drain: a cluster
//!    going to 0 leaves the DNS answers first and keeps its replicas for one TTL.

use std::time::Duration;

use causeway_model::ClusterId;

use super::stabilize::Memory;
use super::{Action, Decision, Role, Traffic};
use crate::observed::{ClusterState, Observed, WorkloadState};
use crate::policy::{BurstPolicy, DemandKind};

/// Plans one policy: the demand line and one decision per cluster.
pub fn plan(
    policy: &BurstPolicy,
    observed: &Observed,
    memory: &mut Memory,
    now: Duration,
) -> (String, Vec<Decision>) {
    let spec = &policy.spec;
    let w = &spec.workload;
    let state = |c: &ClusterId| observed.clusters.get(c);
    let workload = |c: &ClusterId| state(c).and_then(|s| s.workloads.get(w));
    let source = spec.source_cluster();

    // Every copy outside the source: other home clusters first, then burst clusters.
    struct Slot<'a> {
        cluster: &'a ClusterId,
        role: Role,
        max: u32,
        warm: u32,
    }
    let mut slots: Vec<Slot<'_>> = spec.home[1..]
        .iter()
        .map(|c| Slot {
            cluster: c,
            role: Role::Home,
            max: u32::MAX,
            warm: 0,
        })
        .collect();
    slots.extend(spec.burst.iter().map(|b| Slot {
        cluster: &b.cluster,
        role: Role::Burst,
        max: b.max_replicas,
        warm: b.warm_minimum,
    }));

    let src_state = state(source).filter(|s| s.reachable);
    let src_w = workload(source).filter(|_| src_state.is_some());
    let copies_now: u32 = slots
        .iter()
        .filter_map(|s| workload(s.cluster).map(|w| w.replicas))
        .sum();

    // 1. Demand.
    let (overflow, mut demand_why, source_scale) = match (src_state, src_w) {
        (None, _) => (
            None,
            format!("source cluster {source} unreachable: holding every copy as it is"),
            None,
        ),
        (Some(_), None) => (
            None,
            format!("Deployment {w} not found in source cluster {source}: holding every copy"),
            None,
        ),
        (Some(cs), Some(sw)) => match spec.demand_kind() {
            DemandKind::Capacity => {
                let (o, why) = capacity_overflow(cs, sw);
                (Some(o), why, None)
            }
            DemandKind::Hpa => {
                let (o, why) = hpa_overflow(policy, observed, sw, copies_now);
                (o, why, None)
            }
            DemandKind::External => {
                let (o, scale, why) = external_overflow(policy, observed);
                (o, why, scale)
            }
        },
    };

    // 2. Headroom.
    let overflow = overflow.map(|o| {
        if o > 0 && spec.headroom_percent > 0 {
            let with = (u64::from(o) * u64::from(100 + spec.headroom_percent)).div_ceil(100);
            let with = u32::try_from(with).unwrap_or(u32::MAX);
            demand_why.push_str(&format!("; +{}% headroom → {with}", spec.headroom_percent));
            with
        } else {
            o
        }
    });

    let mut decisions = Vec::with_capacity(slots.len() + 1);
    decisions.push(source_decision(
        policy,
        source,
        src_state,
        src_w,
        source_scale,
    ));

    // 3. Fill in order, 4. stabilize and drain.
    let mut remaining = overflow.unwrap_or(0);
    for slot in &slots {
        let cs = state(slot.cluster);
        let here = workload(slot.cluster);
        let current = here.map(|w| w.replicas).unwrap_or(0);
        let ready = here.map(|w| w.ready).unwrap_or(0);
        let mut d = Decision {
            policy: policy.name.clone(),
            cluster: slot.cluster.clone(),
            role: slot.role,
            current,
            ready,
            planned: current,
            traffic: Traffic::Out,
            action: Action::Keep,
            reason: String::new(),
        };
        let Some(cs) = cs.filter(|c| c.reachable) else {
            d.reason = format!(
                "unreachable ({}): no writes, out of DNS",
                cs.and_then(|c| c.error.as_deref())
                    .unwrap_or("not observed")
            );
            decisions.push(d);
            continue;
        };
        // Held as it is: someone else's Deployment, or no demand known.
        let held = if here.is_some_and(|h| !h.managed) {
            Some(format!(
                "a Deployment {w} not managed by Causeway exists here: left alone"
            ))
        } else if overflow.is_none() {
            Some(demand_why.clone())
        } else {
            None
        };
        if let Some(reason) = held {
            d.reason = reason;
            d.traffic = if ready > 0 {
                Traffic::Serve
            } else {
                Traffic::Out
            };
            decisions.push(d);
            continue;
        }
        let pod = src_w.map(|s| s.pod_requests).unwrap_or_default();
        let fit = fits_here(cs, here, pod);
        let cap = slot.max.min(fit);
        let take = remaining.min(cap);
        remaining -= take;
        let want = take.max(slot.warm.min(cap.max(current)));
        let mut why = if take > 0 {
            format!("overflow: {take} of {}", take + remaining)
        } else {
            "no overflow left for it".to_string()
        };
        if cap < slot.max && take == cap && remaining > 0 {
            why.push_str(&format!(" (only {fit} fit here)"));
        } else if take == slot.max && remaining > 0 {
            why.push_str(&format!(" (maxReplicas {})", slot.max));
        }
        if want > take {
            why.push_str(&format!("; warm minimum {}", slot.warm));
        }
        let s = memory.stabilize(
            &policy.name,
            slot.cluster,
            &spec.behavior,
            current,
            want,
            now,
        );
        if !s.why.is_empty() {
            why.push_str("; ");
            why.push_str(&s.why);
        }
        d.planned = s.replicas;
        if d.planned == 0 && current > 0 {
            let ttl = spec.dns.as_ref().map(|b| b.ttl.0).unwrap_or(Duration::ZERO);
            let out_for = memory.draining_for(&policy.name, slot.cluster, now);
            if out_for < ttl {
                d.planned = current;
                d.traffic = Traffic::Drain;
                why.push_str(&format!(
                    "; draining: out of DNS for {}s of TTL {}s before removal",
                    out_for.as_secs(),
                    ttl.as_secs()
                ));
            } else {
                d.traffic = Traffic::Out;
                d.action = Action::Delete;
                why.push_str("; drained: removing");
            }
        } else {
            memory.end_drain(&policy.name, slot.cluster);
            d.traffic = if ready > 0 && d.planned > 0 {
                Traffic::Serve
            } else {
                Traffic::Out
            };
            d.action = if d.planned > 0 {
                // Level-triggered: the copy is applied every round (idempotent), so it
                // follows changes of the source Deployment.
                Action::Apply(d.planned)
            } else if here.is_some() {
                Action::Delete
            } else {
                Action::Keep
            };
        }
        d.reason = why;
        decisions.push(d);
    }
    if let Some(o) = overflow
        && remaining > 0
    {
        demand_why.push_str(&format!("; {remaining} of {o} overflow fit nowhere"));
    }
    (demand_why, decisions)
}

fn source_decision(
    policy: &BurstPolicy,
    source: &ClusterId,
    cs: Option<&ClusterState>,
    w: Option<&WorkloadState>,
    scale: Option<u32>,
) -> Decision {
    let current = w.map(|w| w.replicas).unwrap_or(0);
    let ready = w.map(|w| w.ready).unwrap_or(0);
    let (planned, action, reason) = match (cs, scale) {
        (None, _) => (current, Action::Keep, "unreachable: out of DNS".to_string()),
        (Some(_), Some(n)) if w.is_some() => (
            n,
            if n == current {
                Action::Keep
            } else {
                Action::Scale(n)
            },
            format!("home first: {n} of the external demand"),
        ),
        (Some(_), _) => (
            current,
            Action::Keep,
            "source of truth: replicas set by its owner or HPA".into(),
        ),
    };
    Decision {
        policy: policy.name.clone(),
        cluster: source.clone(),
        role: Role::Source,
        current,
        ready,
        planned,
        traffic: if cs.is_some() && ready > 0 {
            Traffic::Serve
        } else {
            Traffic::Out
        },
        action,
        reason,
    }
}

/// How many replicas of the workload can run in `cs`: those bound now plus what the
/// free allocatable takes.
fn fits_here(
    cs: &ClusterState,
    here: Option<&WorkloadState>,
    pod: crate::quantity::Resources,
) -> u32 {
    let bound = here.map(|w| w.scheduled).unwrap_or(0);
    let more = cs.free().fits(pod);
    u32::try_from(u64::from(bound).saturating_add(more)).unwrap_or(u32::MAX)
}

fn capacity_overflow(cs: &ClusterState, w: &WorkloadState) -> (u32, String) {
    let fit = fits_here(cs, Some(w), w.pod_requests).min(w.replicas);
    let by_alloc = w.replicas - fit;
    let overflow = by_alloc.max(w.unschedulable);
    let why = format!(
        "capacity: {} replicas wanted at home, {fit} fit by allocatable minus requests, {} Pending Unschedulable → overflow {overflow}",
        w.replicas, w.unschedulable
    );
    (overflow, why)
}

fn hpa_overflow(
    policy: &BurstPolicy,
    observed: &Observed,
    source: &WorkloadState,
    copies_now: u32,
) -> (Option<u32>, String) {
    let Some(hpa) = &source.hpa else {
        return (
            None,
            "hpa: the HPA is not found in the source cluster: holding copies".into(),
        );
    };
    let Some(target) = hpa.target_cpu_percent.filter(|t| *t > 0) else {
        return (
            None,
            "hpa: the HPA has no CPU utilization target: holding copies".into(),
        );
    };
    let request = source.pod_requests.cpu_millis;
    if request == 0 {
        return (
            None,
            "hpa: the pods request no CPU, so utilization is undefined: holding copies".into(),
        );
    }
    let tolerance = policy
        .spec
        .demand
        .hpa
        .as_ref()
        .map(|h| h.tolerance)
        .unwrap_or(0.1);
    let mut usage = 0u64;
    let mut pods = 0u32;
    for c in all_clusters(policy) {
        if let Some(w) = observed
            .clusters
            .get(c)
            .filter(|s| s.reachable)
            .and_then(|s| s.workloads.get(&policy.spec.workload))
            && let Some(u) = w.cpu_usage_millis
        {
            usage += u;
            pods += w.pods_with_metrics;
        }
    }
    if pods == 0 {
        return (None, "hpa: no pod metrics yet: holding copies".into());
    }
    let per_replica = request as f64 * f64::from(target) / 100.0;
    let ratio = usage as f64 / (per_replica * f64::from(pods));
    let total_now = source.replicas + copies_now;
    let total = if (ratio - 1.0).abs() <= tolerance {
        total_now
    } else {
        (usage as f64 / per_replica).ceil() as u32
    };
    let at_max = hpa.scaling_limited || hpa.current_replicas >= hpa.max_replicas;
    let overflow = if at_max {
        total.saturating_sub(hpa.max_replicas)
    } else {
        0
    };
    let why = format!(
        "hpa: ΣCPU {usage}m over {pods} pods at target {target}% of {request}m → {total} replicas (ratio {ratio:.2}, tolerance {tolerance}); home HPA {}/{} {}→ overflow {overflow}",
        hpa.current_replicas,
        hpa.max_replicas,
        if hpa.scaling_limited {
            "ScalingLimited "
        } else if at_max {
            "at max "
        } else {
            "below max "
        },
    );
    (Some(overflow), why)
}

fn external_overflow(
    policy: &BurstPolicy,
    observed: &Observed,
) -> (Option<u32>, Option<u32>, String) {
    let Some(e) = &policy.spec.demand.external else {
        return (None, None, String::new());
    };
    let Some(v) = observed.external.get(&policy.name).copied() else {
        return (
            None,
            None,
            "external: no value posted yet: holding copies".into(),
        );
    };
    let total = (v.max(0.0) / e.target_per_replica).ceil() as u32;
    let home = total.min(e.home_max_replicas);
    let overflow = total - home;
    let why = format!(
        "external: value {v} / {} per replica → {total} replicas; home max {} → overflow {overflow}",
        e.target_per_replica, e.home_max_replicas
    );
    (Some(overflow), Some(home), why)
}

fn all_clusters(policy: &BurstPolicy) -> impl Iterator<Item = &ClusterId> {
    policy
        .spec
        .home
        .iter()
        .chain(policy.spec.burst.iter().map(|b| &b.cluster))
}
