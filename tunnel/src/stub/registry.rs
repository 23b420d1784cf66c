//! The registry of live sessions, per cluster, and the balancing choice; [`Avoid`]
//! names the connections (and the agent) a request must keep away from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use causeway_model::cluster::ClusterId;
use rand::Rng;

use crate::metrics::Metrics;
use crate::mux::Session;
use crate::mux::session::AgentId;

/// Connections a request may not be sent on: those already tried, and every
/// connection of an agent that lost it.
#[derive(Clone, Debug, Default)]
pub struct Avoid {
    /// Connection IDs (sessions or data connections) already tried.
    pub conns: Vec<u64>,
    /// An agent none of whose connections may be used.
    pub agent: Option<AgentId>,
}

impl Avoid {
    /// Nothing avoided.
    pub fn none() -> Self {
        Avoid::default()
    }

    /// Every connection of `agent`.
    pub fn agent(agent: AgentId) -> Self {
        Avoid {
            conns: Vec::new(),
            agent: Some(agent),
        }
    }

    /// The one connection `id`.
    pub fn conn(id: u64) -> Self {
        Avoid {
            conns: vec![id],
            agent: None,
        }
    }

    /// Whether connection `id` of `agent` may be used.
    pub fn allows(&self, id: u64, agent: &AgentId) -> bool {
        !self.conns.contains(&id) && self.agent.as_ref() != Some(agent)
    }
}

/// Live sessions by cluster. Removal is instant: the task driving a session
/// removes it the moment its connection ends.
pub struct Registry {
    sessions: RwLock<HashMap<ClusterId, Vec<Arc<Session>>>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// An empty registry reporting to `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Registry {
            sessions: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// A fresh session ID.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a live session.
    pub fn add(&self, s: Arc<Session>) {
        let mut map = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let list = map.entry(s.cluster.clone()).or_default();
        list.push(s.clone());
        self.metrics
            .sessions
            .with_label_values(&[s.cluster.as_str()])
            .set(list.len() as i64);
    }

    /// Removes a session.
    pub fn remove(&self, cluster: &ClusterId, id: u64) {
        let mut map = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = map.get_mut(cluster) {
            list.retain(|s| s.id != id);
            self.metrics
                .sessions
                .with_label_values(&[cluster.as_str()])
                .set(list.len() as i64);
            if list.is_empty() {
                map.remove(cluster);
            }
        }
    }

    /// Live sessions of `cluster`.
    pub fn count(&self, cluster: &ClusterId) -> usize {
        let map = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        map.get(cluster).map_or(0, Vec::len)
    }

    /// Short (not long-running) streams in flight on all sessions of `cluster`.
    pub fn short_in_flight(&self, cluster: &ClusterId) -> usize {
        let map = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        map.get(cluster)
            .map_or(0, |l| l.iter().map(|s| s.short_in_flight()).sum())
    }

    /// Every cluster with at least one live session, with its session count.
    pub fn clusters(&self) -> Vec<(ClusterId, usize)> {
        let map = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = map.iter().map(|(c, l)| (c.clone(), l.len())).collect();
        v.sort();
        v
    }

    /// Picks a live session of `cluster` that `avoid` allows, by the power of two
    /// random choices: draw two, keep the one with fewer streams in flight.
    pub fn pick(&self, cluster: &ClusterId, avoid: &Avoid) -> Option<Arc<Session>> {
        let map = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        let live: Vec<&Arc<Session>> = map
            .get(cluster)?
            .iter()
            .filter(|s| !s.is_closed() && avoid.allows(s.id, &s.agent))
            .collect();
        match live.len() {
            0 => None,
            1 => Some(live[0].clone()),
            n => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (sa, sb) = (live[a], live[b]);
                Some(
                    if sb.in_flight() < sa.in_flight() {
                        sb
                    } else {
                        sa
                    }
                    .clone(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avoid_keeps_away_from_tried_connections_and_the_lost_agent() {
        let (a, b) = (AgentId::new("1a"), AgentId::new("2b"));
        assert!(Avoid::none().allows(1, &a));
        let lost = Avoid::agent(a.clone());
        assert!(!lost.allows(1, &a) && !lost.allows(7, &a));
        assert!(lost.allows(1, &b));
        let mut tried = Avoid::conn(3);
        assert!(!tried.allows(3, &b) && tried.allows(4, &a));
        tried.agent = Some(b.clone());
        assert!(!tried.allows(4, &b) && !tried.allows(3, &a) && tried.allows(4, &a));
    }
}
