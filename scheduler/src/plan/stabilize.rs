//! Stabilization windows (the HPA's `behavior`) and the DNS drain before removal.
//!
//! Kubernetes' rule (`stabilizeRecommendationWithBehaviors` in the HPA controller):
//! keep every recommendation of the last window; scale up to the *smallest*
//! recommendation of the scale-up window, down to the *largest* of the scale-down
//! window, else stay. With the defaults (up 0 s, down 300 s) scale-up is immediate
//! and scale-down waits until five minutes of recommendations all allow it.
//!
//! Then the rate limits (`behavior.*.policies`, the HPA's
//! `calculateScaleUpLimitWithScalingRules` / `calculateScaleDownLimitWithBehaviors`):
//! each policy allows a change relative to the replicas at the start of its period
//! (the count before the first change planned within the period); `selectPolicy`
//! takes the largest allowed change (`Max`), the smallest (`Min`) or none
//! (`Disabled`). With the defaults a scale-up is at most max(+100 %, +4) per 15 s.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use causeway_model::ClusterId;

use crate::policy::{Behavior, BurstPolicy, ScalingPolicyType, ScalingRules, SelectPolicy};

#[cfg(test)]
mod tests;

/// What the planner remembers between rounds, per policy and cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    tracks: BTreeMap<(String, ClusterId), Track>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Track {
    /// (time, recommendation), oldest first.
    recommendations: VecDeque<(Duration, u32)>,
    /// (time, replicas before the change) for each change planned here, oldest first,
    /// kept for the longest policy period.
    changes: VecDeque<(Duration, u32)>,
    /// When this cluster left the DNS answers before its replicas go.
    drain_since: Option<Duration>,
}

/// The stabilized count and a few words on why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stabilized {
    /// Replicas after the windows.
    pub replicas: u32,
    /// Empty when the recommendation passed unchanged.
    pub why: String,
}

impl Memory {
    /// Records `recommendation` for (policy, cluster) at `now`, applies the windows,
    /// then the rate limits, and records the change it plans.
    pub fn stabilize(
        &mut self,
        policy: &str,
        cluster: &ClusterId,
        behavior: &Behavior,
        current: u32,
        recommendation: u32,
        now: Duration,
    ) -> Stabilized {
        let track = self
            .tracks
            .entry((policy.to_string(), cluster.clone()))
            .or_default();
        // One recommendation per instant: a second plan at the same time replaces it.
        if track.recommendations.back().is_some_and(|(t, _)| *t == now) {
            track.recommendations.pop_back();
        }
        track.recommendations.push_back((now, recommendation));
        let up_window = behavior.scale_up.stabilization_window.0;
        let down_window = behavior.scale_down.stabilization_window.0;
        let keep = up_window.max(down_window);
        while let Some((t, _)) = track.recommendations.front() {
            if now.saturating_sub(*t) > keep {
                track.recommendations.pop_front();
            } else {
                break;
            }
        }
        let within = |w: Duration| {
            track
                .recommendations
                .iter()
                .filter(move |(t, _)| now.saturating_sub(*t) <= w)
                .map(|(_, r)| *r)
        };
        let up = within(up_window).min().unwrap_or(recommendation);
        let down = within(down_window).max().unwrap_or(recommendation);
        let windowed = if current < up {
            let why = if up < recommendation {
                format!("scale-up window {}s holds it at {up}", up_window.as_secs())
            } else {
                String::new()
            };
            Stabilized { replicas: up, why }
        } else if current > down {
            let why = if down > recommendation {
                format!(
                    "scale-down window {}s holds it at {down}",
                    down_window.as_secs()
                )
            } else {
                String::new()
            };
            Stabilized {
                replicas: down,
                why,
            }
        } else {
            let why = if recommendation != current {
                format!(
                    "held at {current} by the {} window",
                    if recommendation > current {
                        "scale-up"
                    } else {
                        "scale-down"
                    }
                )
            } else {
                String::new()
            };
            Stabilized {
                replicas: current,
                why,
            }
        };
        limit(track, behavior, current, windowed, now)
    }

    /// The drain of (policy, cluster): starts it if needed and returns for how long it
    /// has been out of the answers.
    pub fn draining_for(&mut self, policy: &str, cluster: &ClusterId, now: Duration) -> Duration {
        let track = self
            .tracks
            .entry((policy.to_string(), cluster.clone()))
            .or_default();
        let since = *track.drain_since.get_or_insert(now);
        now.saturating_sub(since)
    }

    /// Ends the drain of (policy, cluster), if any.
    pub fn end_drain(&mut self, policy: &str, cluster: &ClusterId) {
        if let Some(t) = self.tracks.get_mut(&(policy.to_string(), cluster.clone())) {
            t.drain_since = None;
        }
    }

    /// Drops what belongs to policies or clusters no longer configured.
    pub fn forget_except(&mut self, policies: &[BurstPolicy], _now: Duration) {
        // One set of what is configured, then one pass: linear in tracks + policies
        // (a scan of every policy per track was 4·10⁸ steps at 10,000 policies).
        let mut keep: HashSet<(&str, &ClusterId)> = HashSet::new();
        for pol in policies {
            for c in pol
                .spec
                .home
                .iter()
                .chain(pol.spec.burst.iter().map(|b| &b.cluster))
            {
                keep.insert((pol.name.as_str(), c));
            }
        }
        self.tracks
            .retain(|(p, c), _| keep.contains(&(p.as_str(), c)));
    }
}

/// Applies the direction's rate limit to the windowed count and records the change.
fn limit(
    track: &mut Track,
    behavior: &Behavior,
    current: u32,
    windowed: Stabilized,
    now: Duration,
) -> Stabilized {
    // One change per instant: a second plan at the same time replaces the first.
    if track.changes.back().is_some_and(|(t, _)| *t == now) {
        track.changes.pop_back();
    }
    let longest = behavior
        .scale_up
        .policies
        .iter()
        .chain(&behavior.scale_down.policies)
        .map(|p| p.period_seconds)
        .max()
        .unwrap_or(0);
    let keep = Duration::from_secs(u64::from(longest));
    while let Some((t, _)) = track.changes.front() {
        if now.saturating_sub(*t) >= keep {
            track.changes.pop_front();
        } else {
            break;
        }
    }
    let target = windowed.replicas;
    let (replicas, note) = if target > current {
        let (limit, note) = up_limit(&track.changes, &behavior.scale_up, current, now);
        if target > limit {
            (limit, note)
        } else {
            (target, String::new())
        }
    } else if target < current {
        let (limit, note) = down_limit(&track.changes, &behavior.scale_down, current, now);
        if target < limit {
            (limit, note)
        } else {
            (target, String::new())
        }
    } else {
        (target, String::new())
    };
    if replicas != current {
        track.changes.push_back((now, current));
    }
    let why = match (windowed.why.is_empty(), note.is_empty()) {
        (_, true) => windowed.why,
        (true, false) => note,
        (false, false) => format!("{}; {note}", windowed.why),
    };
    Stabilized { replicas, why }
}

/// The replicas at the start of a `period`-second period: the count before the first
/// change planned within it, else the current count. With every change applied this is
/// the HPA's current count minus the changes of the period
/// (`getReplicasChangePerPeriod`); a change planned again because it has not happened
/// yet (a refused or throttled write) is not counted twice.
fn period_start(
    changes: &VecDeque<(Duration, u32)>,
    current: u32,
    period: u32,
    now: Duration,
) -> i64 {
    let period = Duration::from_secs(u64::from(period));
    let start = changes
        .iter()
        .find(|(t, _)| now.saturating_sub(*t) < period)
        .map_or(current, |(_, before)| *before);
    i64::from(start)
}

fn to_replicas(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Most replicas a scale-up may reach now, and the words for when it binds.
fn up_limit(
    changes: &VecDeque<(Duration, u32)>,
    rules: &ScalingRules,
    current: u32,
    now: Duration,
) -> (u32, String) {
    if rules.select_policy == SelectPolicy::Disabled {
        return (
            current,
            "scale-up disabled (selectPolicy Disabled)".to_string(),
        );
    }
    let proposals = rules.policies.iter().map(|p| {
        let start = period_start(changes, current, p.period_seconds, now);
        let proposed = match p.kind {
            ScalingPolicyType::Pods => start + i64::from(p.value),
            // ceil(start · (1 + value/100))
            ScalingPolicyType::Percent => {
                let x = start * (100 + i64::from(p.value));
                x.div_euclid(100) + i64::from(x.rem_euclid(100) != 0)
            }
        };
        (proposed, p)
    });
    let chosen = if rules.select_policy == SelectPolicy::Min {
        proposals.min_by_key(|(n, _)| *n)
    } else {
        proposals.max_by_key(|(n, _)| *n)
    };
    match chosen {
        // Never below the current count (changes still in the period hold it there).
        Some((n, p)) => {
            let limit = to_replicas(n).max(current);
            (limit, format!("scale-up limited to {limit} by {p}"))
        }
        None => (current, "scale-up held: no scaling policy".to_string()),
    }
}

/// Fewest replicas a scale-down may reach now, and the words for when it binds.
fn down_limit(
    changes: &VecDeque<(Duration, u32)>,
    rules: &ScalingRules,
    current: u32,
    now: Duration,
) -> (u32, String) {
    if rules.select_policy == SelectPolicy::Disabled {
        return (
            current,
            "scale-down disabled (selectPolicy Disabled)".to_string(),
        );
    }
    let proposals = rules.policies.iter().map(|p| {
        let start = period_start(changes, current, p.period_seconds, now);
        let proposed = match p.kind {
            ScalingPolicyType::Pods => start - i64::from(p.value),
            // floor(start · (1 - value/100))
            ScalingPolicyType::Percent => (start * (100 - i64::from(p.value))).div_euclid(100),
        };
        (proposed, p)
    });
    // Max allows the largest change: the lowest count.
    let chosen = if rules.select_policy == SelectPolicy::Min {
        proposals.max_by_key(|(n, _)| *n)
    } else {
        proposals.min_by_key(|(n, _)| *n)
    };
    match chosen {
        Some((n, p)) => {
            let limit = to_replicas(n).min(current);
            (limit, format!("scale-down limited to {limit} by {p}"))
        }
        None => (current, "scale-down held: no scaling policy".to_string()),
    }
}
