//! Stabilization windows (the HPA's `behavior`) and the DNS drain before removal.
//!
//! Kubernetes' rule (`stabilizeRecommendationWithBehaviors` in the HPA controller):
//! keep every recommendation of the last window; scale up to the *smallest*
//! recommendation of the scale-up window, down to the *largest* of the scale-down
//! window, else stay. With the defaults (up 0 s, down 300 s) scale-up is immediate
//! and scale-down waits until five minutes of recommendations all allow it.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use causeway_model::ClusterId;

use crate::policy::{Behavior, BurstPolicy};

/// What the planner remembers between rounds, per policy and cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    tracks: BTreeMap<(String, ClusterId), Track>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Track {
    /// (time, recommendation), oldest first.
    recommendations: VecDeque<(Duration, u32)>,
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
    /// Records `recommendation` for (policy, cluster) at `now` and applies the windows.
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
        if current < up {
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
        }
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
