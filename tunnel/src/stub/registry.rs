//! The registry of live sessions, per cluster, and the balancing choice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use causeway_model::cluster::ClusterId;
use rand::Rng;

use crate::metrics::Metrics;
use crate::mux::Session;

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

    /// Picks a session of `cluster` not in `tried`, by the power of two random
    /// choices: draw two, keep the one with fewer streams in flight.
    pub fn pick(&self, cluster: &ClusterId, tried: &[u64]) -> Option<Arc<Session>> {
        let map = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        let live: Vec<&Arc<Session>> = map
            .get(cluster)?
            .iter()
            .filter(|s| !s.is_closed() && !tried.contains(&s.id))
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
