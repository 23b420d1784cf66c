//! `SpreadPolicy` (active-active): the policy's replicas split over its clusters, by
//! weight or by free capacity, with a minimum per cluster; rebalanced when a cluster is
//! lost and when it comes back.
//!
//! 1. Members: a cluster is in the split while it is reachable. A cluster that was
//!    unreachable (lost) and answers again is *back*: it stays out of the split, keeps
//!    the replicas it still has and stays out of DNS until it has been reachable for
//!    `rebalanceAfter`, so a flapping cluster does not pull replicas to and fro. When
//!    the scheduler starts, a reachable cluster is in at once.
//! 2. Weights: `by: weight` uses each cluster's `weight`; `by: freeCapacity` how many
//!    of the workload's pods fit there (its pods bound there plus what allocatable minus
//!    requests takes, the pod's requests read from the source's template).
//! 3. Split ([`split`]): a cluster whose weighted share is below its `minReplicas` gets
//!    its minimum, and the rest is split again over the others, until no share is below
//!    its minimum (a minimum is a floor, not an addition); the shares are then rounded
//!    down and the replicas left go one each to the largest remainders, ties to the
//!    cluster listed first. Integers only, so the split is exact and deterministic.
//! 4. Stabilize each cluster's count ([`super::stabilize`]): with the defaults the
//!    clusters taking a lost cluster's share scale up at once, and when it is back they
//!    give their extra replicas back through the scale-down window. A cluster going to
//!    0 leaves the DNS answers first and keeps its replicas for one TTL.
//! 5. Act: the source Deployment (first cluster) is scaled; the other clusters get a
//!    copy of it (applied, or deleted at 0). DNS serves a cluster while it is in the
//!    split with ready replicas; its weight is its ready replicas
//!    ([`super::Decision::dns_weight`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use causeway_model::ClusterId;

use super::stabilize;
use super::{Action, Decision, Role, Traffic};
use crate::observed::{ClusterState, Observed, WorkloadState};
use crate::policy::{SpreadBy, SpreadPolicy, SpreadTarget};
use crate::quantity::Resources;

/// What spread policies remember between rounds, per policy and cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    tracks: BTreeMap<(String, ClusterId), Track>,
}

#[derive(Debug, Clone, PartialEq)]
struct Track {
    presence: Presence,
    /// Stabilization windows and the drain of this one (policy, cluster).
    windows: stabilize::Memory,
}

/// Where a cluster stands in a policy's split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// Reachable and in the split.
    In,
    /// Unreachable: its share goes to the others.
    Lost,
    /// Reachable again since `since`, not yet for `rebalanceAfter`.
    Back { since: Duration },
}

impl Memory {
    /// Updates and returns the presence of (policy, cluster) at `now`.
    fn presence(
        &mut self,
        policy: &str,
        cluster: &ClusterId,
        reachable: bool,
        rebalance_after: Duration,
        now: Duration,
    ) -> Presence {
        let track = self
            .tracks
            .entry((policy.to_string(), cluster.clone()))
            .or_insert_with(|| Track {
                // First sight: a reachable cluster is in at once.
                presence: if reachable {
                    Presence::In
                } else {
                    Presence::Lost
                },
                windows: stabilize::Memory::default(),
            });
        let next = match (track.presence, reachable) {
            (_, false) => Presence::Lost,
            (Presence::In, true) => Presence::In,
            (Presence::Lost, true) => Presence::Back { since: now },
            (Presence::Back { since }, true) => Presence::Back { since },
        };
        track.presence = match next {
            Presence::Back { since } if now.saturating_sub(since) >= rebalance_after => {
                Presence::In
            }
            p => p,
        };
        track.presence
    }

    fn windows(&mut self, policy: &str, cluster: &ClusterId) -> &mut stabilize::Memory {
        // `presence` made the track earlier in the same round.
        &mut self
            .tracks
            .entry((policy.to_string(), cluster.clone()))
            .or_insert_with(|| Track {
                presence: Presence::In,
                windows: stabilize::Memory::default(),
            })
            .windows
    }

    /// Drops what belongs to policies or clusters no longer configured.
    pub fn forget_except(&mut self, policies: &[SpreadPolicy]) {
        // One set of what is configured, then one pass (linear, not tracks × policies).
        let keep: std::collections::HashSet<(&str, &ClusterId)> = policies
            .iter()
            .flat_map(|pol| {
                pol.spec
                    .clusters
                    .iter()
                    .map(move |t| (pol.name.as_str(), &t.cluster))
            })
            .collect();
        self.tracks
            .retain(|(p, c), _| keep.contains(&(p.as_str(), c)));
    }
}

/// One member's claim on the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    /// Its weight (or how many pods fit there).
    pub weight: u64,
    /// Its minimum.
    pub min: u32,
}

/// One member's part of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    /// Replicas it gets.
    pub replicas: u32,
    /// It got its minimum, more than its weighted share.
    pub at_minimum: bool,
    /// Its share was rounded up (one of the largest remainders).
    pub rounded_up: bool,
}

/// A split of `total` replicas over claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    /// One part per claim, in order.
    pub parts: Vec<Part>,
    /// Replicas split by weight (after the minimums).
    pub by_weight: u32,
    /// Sum of the weights they were split by.
    pub weights: u64,
}

/// Splits `total` over `claims`: minimums as floors, the rest by weight, rounded by
/// largest remainder (ties to the first claim). The minimums must not add up to more
/// than `total` (checked when the policy is loaded); all-zero weights split evenly.
pub(crate) fn split(total: u32, claims: &[Claim]) -> Split {
    let even = claims.iter().all(|c| c.weight == 0);
    let weight = |c: &Claim| if even { 1 } else { u128::from(c.weight) };
    let n = claims.len();
    let mut at_min = vec![false; n];
    let mut rest = u128::from(total);
    // Pin every claim whose weighted share of what is left is below its minimum; each
    // round pins at least one or stops, so at most n rounds.
    for _ in 0..=n {
        let weights: u128 = (0..n)
            .filter(|i| !at_min[*i])
            .map(|i| weight(&claims[i]))
            .sum();
        let below: Vec<usize> = (0..n)
            .filter(|i| !at_min[*i])
            .filter(|i| rest * weight(&claims[*i]) < u128::from(claims[*i].min) * weights)
            .collect();
        if below.is_empty() {
            break;
        }
        for i in below {
            at_min[i] = true;
            rest = rest.saturating_sub(u128::from(claims[i].min));
        }
    }
    let free: Vec<usize> = (0..n).filter(|i| !at_min[*i]).collect();
    let weights: u128 = free.iter().map(|i| weight(&claims[*i])).sum();
    let mut parts: Vec<Part> = claims
        .iter()
        .zip(&at_min)
        .map(|(c, m)| Part {
            replicas: if *m { c.min } else { 0 },
            at_minimum: *m,
            rounded_up: false,
        })
        .collect();
    let mut remainders = Vec::with_capacity(free.len());
    let mut given = 0u128;
    for &i in &free {
        let x = rest * weight(&claims[i]);
        let (q, r) = x
            .checked_div(weights)
            .zip(x.checked_rem(weights))
            .unwrap_or((0, 0));
        parts[i].replicas = u32::try_from(q).unwrap_or(u32::MAX);
        given += q;
        remainders.push((r, i));
    }
    // Largest remainder first, then the cluster listed first.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = rest.saturating_sub(given);
    // Fewer than `free.len()` are left when the weights are not all 0; otherwise what
    // is left goes round in order. Each pass gives at least one, so this ends.
    while left > 0 && !remainders.is_empty() {
        for &(_, i) in &remainders {
            if left == 0 {
                break;
            }
            parts[i].replicas = parts[i].replicas.saturating_add(1);
            parts[i].rounded_up = true;
            left -= 1;
        }
    }
    Split {
        parts,
        by_weight: u32::try_from(rest).unwrap_or(u32::MAX),
        weights: u64::try_from(weights).unwrap_or(u64::MAX),
    }
}

/// One cluster as this round sees it.
struct Seen<'a> {
    target: &'a SpreadTarget,
    state: Option<&'a ClusterState>,
    here: Option<&'a WorkloadState>,
    presence: Presence,
    /// In the split this round.
    member: bool,
}

impl Seen<'_> {
    fn current(&self) -> u32 {
        self.here.map(|w| w.replicas).unwrap_or(0)
    }
    fn ready(&self) -> u32 {
        self.here.map(|w| w.ready).unwrap_or(0)
    }
}

/// Plans one policy: the demand line and one decision per cluster, in its order.
pub fn plan(
    policy: &SpreadPolicy,
    observed: &Observed,
    memory: &mut Memory,
    now: Duration,
) -> (String, Vec<Decision>) {
    let spec = &policy.spec;
    let w = &spec.workload;
    let source = spec.source_cluster();

    // 1. Members.
    let seen: Vec<Seen<'_>> = spec
        .clusters
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let state = observed.clusters.get(&t.cluster);
            let reachable = state.is_some_and(|s| s.reachable);
            let presence = memory.presence(
                &policy.name,
                &t.cluster,
                reachable,
                spec.rebalance_after.0,
                now,
            );
            let here = state
                .filter(|s| s.reachable)
                .and_then(|s| s.workloads.get(w));
            // A Deployment of that name that Causeway does not manage is left alone.
            let ours = i == 0 || here.is_none_or(|h| h.managed);
            Seen {
                target: t,
                state,
                here,
                presence,
                member: presence == Presence::In && ours,
            }
        })
        .collect();

    let decision = |s: &Seen<'_>, i: usize| Decision {
        policy: policy.name.clone(),
        cluster: s.target.cluster.clone(),
        role: if i == 0 { Role::Source } else { Role::Spread },
        current: s.current(),
        ready: s.ready(),
        planned: s.current(),
        traffic: Traffic::Out,
        action: Action::Keep,
        reason: String::new(),
    };

    // The source is reachable but its Deployment is gone: nothing to spread.
    if seen[0].presence != Presence::Lost && seen[0].here.is_none() {
        let why =
            format!("Deployment {w} not found in source cluster {source}: holding every copy");
        let decisions = seen
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut d = decision(s, i);
                if s.presence == Presence::In && s.ready() > 0 {
                    d.traffic = Traffic::Serve;
                }
                d.reason = why.clone();
                d
            })
            .collect();
        return (why, decisions);
    }

    // 2. Weights.
    let pod = seen
        .iter()
        .filter_map(|s| s.here.map(|h| h.pod_requests))
        .find(|r| *r != Resources::default())
        .unwrap_or_default();
    let fit = |s: &Seen<'_>| -> u64 {
        let bound = s.here.map(|h| u64::from(h.scheduled)).unwrap_or(0);
        s.state
            .map(|cs| bound.saturating_add(cs.free().fits(pod)))
            .unwrap_or(0)
    };
    let claims: Vec<Claim> = seen
        .iter()
        .filter(|s| s.member)
        .map(|s| Claim {
            weight: match spec.by {
                SpreadBy::Weight => u64::from(s.target.weight()),
                SpreadBy::FreeCapacity => fit(s),
            },
            min: s.target.min_replicas,
        })
        .collect();
    let even = !claims.is_empty() && claims.iter().all(|c| c.weight == 0);

    // 3. Split.
    let split = split(spec.replicas, &claims);
    let mut demand = format!(
        "spread: {} replicas by {} over {} of {} clusters",
        spec.replicas,
        match spec.by {
            SpreadBy::Weight => "weight",
            SpreadBy::FreeCapacity => "free capacity",
        },
        claims.len(),
        seen.len()
    );
    let names = |p: &dyn Fn(&Seen<'_>) -> bool| {
        seen.iter()
            .filter(|s| p(s))
            .map(|s| s.target.cluster.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let lost = names(&|s| s.presence == Presence::Lost);
    if !lost.is_empty() {
        let _ = write!(
            demand,
            "; unreachable: {lost} (its share goes to the others)"
        );
    }
    let back = names(&|s| matches!(s.presence, Presence::Back { .. }));
    if !back.is_empty() {
        let _ = write!(
            demand,
            "; back, rejoining after rebalanceAfter {}s: {back}",
            spec.rebalance_after.0.as_secs()
        );
    }
    if spec.by == SpreadBy::FreeCapacity {
        let room: u64 = claims.iter().map(|c| c.weight).sum();
        let _ = write!(demand, "; {room} fit in them");
        if room < u64::from(spec.replicas) {
            demand.push_str(" (the rest will be Pending)");
        }
    }
    if even {
        demand.push_str("; no weight among them: split evenly");
    }
    if claims.is_empty() {
        demand.push_str("; no cluster can take replicas: holding");
    }

    // 4. Stabilize and drain, 5. act.
    let ttl = spec.dns.as_ref().map(|b| b.ttl.0).unwrap_or(Duration::ZERO);
    let mut parts = split.parts.iter();
    let mut decisions = Vec::with_capacity(seen.len());
    for (i, s) in seen.iter().enumerate() {
        let mut d = decision(s, i);
        let cluster = &s.target.cluster;
        match s.presence {
            Presence::Lost => {
                d.reason = format!(
                    "unreachable ({}): its share goes to the others; no writes, out of DNS",
                    s.state
                        .and_then(|c| c.error.as_deref())
                        .unwrap_or("not observed")
                );
                decisions.push(d);
                continue;
            }
            Presence::Back { since } => {
                // Its replicas count in the scale-down window once it rejoins.
                let windows = memory.windows(&policy.name, cluster);
                windows.stabilize(
                    &policy.name,
                    cluster,
                    &spec.behavior,
                    d.current,
                    d.current,
                    now,
                );
                d.reason = format!(
                    "back for {}s of rebalanceAfter {}s: holding its {} replicas out of DNS until it rejoins the split",
                    now.saturating_sub(since).as_secs(),
                    spec.rebalance_after.0.as_secs(),
                    d.current
                );
                decisions.push(d);
                continue;
            }
            Presence::In if !s.member => {
                d.reason =
                    format!("a Deployment {w} not managed by Causeway exists here: left alone");
                if d.ready > 0 {
                    d.traffic = Traffic::Serve;
                }
                decisions.push(d);
                continue;
            }
            Presence::In => {}
        }
        let Some(part) = parts.next() else {
            decisions.push(d);
            continue;
        };
        let want = part.replicas;
        let mut why = if part.at_minimum {
            format!("minReplicas {want} (above its weighted share)")
        } else if even {
            format!("{want} of {}: even split", split.by_weight)
        } else {
            match spec.by {
                SpreadBy::Weight => format!(
                    "weight {} of {} → {want} of {}",
                    s.target.weight(),
                    split.weights,
                    split.by_weight
                ),
                SpreadBy::FreeCapacity => format!(
                    "{} fit here of {} → {want} of {}",
                    fit(s),
                    split.weights,
                    split.by_weight
                ),
            }
        };
        if part.rounded_up {
            why.push_str(" (rounded up: largest remainder)");
        }
        let windows = memory.windows(&policy.name, cluster);
        let st = windows.stabilize(&policy.name, cluster, &spec.behavior, d.current, want, now);
        if !st.why.is_empty() {
            why.push_str("; ");
            why.push_str(&st.why);
        }
        d.planned = st.replicas;
        if d.planned == 0 && d.current > 0 {
            let out_for = windows.draining_for(&policy.name, cluster, now);
            if out_for < ttl {
                d.planned = d.current;
                d.traffic = Traffic::Drain;
                let _ = write!(
                    why,
                    "; draining: out of DNS for {}s of TTL {}s before removal",
                    out_for.as_secs(),
                    ttl.as_secs()
                );
                d.reason = why;
                decisions.push(d);
                continue;
            }
            why.push_str("; drained: removing");
        } else {
            windows.end_drain(&policy.name, cluster);
        }
        d.traffic = if d.ready > 0 && d.planned > 0 {
            Traffic::Serve
        } else {
            Traffic::Out
        };
        d.action = match (i, d.planned) {
            (0, n) if n == d.current => Action::Keep,
            (0, n) => Action::Scale(n),
            // Level-triggered: applied every round (skipped when unchanged), so the
            // copy follows changes of the source Deployment.
            (_, n) if n > 0 => Action::Apply(n),
            _ if s.here.is_some() => Action::Delete,
            _ => Action::Keep,
        };
        d.reason = why;
        decisions.push(d);
    }
    (demand, decisions)
}

#[cfg(test)]
mod tests;
