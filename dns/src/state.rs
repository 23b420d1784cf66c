//! The immutable [`Snapshot`] that queries read, and the [`State`] that publishes it.
//!
//! One builder task (in [`crate::health`]'s combiner and [`crate::reload`]) makes a
//! new snapshot whenever the config, a target's health or the latency map changes,
//! and stores it with `ArcSwap::store`. A query does one `load()` and never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use causeway_model::Health;

use crate::latency::LatencyTable;
use crate::zone::Zones;

/// Health of one GSLB target as the policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// Whether it may be answered.
    pub healthy: bool,
    /// State of the active probe (`Unknown` before the first `rise`/`fall` run, or no probe).
    pub probe: Health,
    /// Latest external report, with its reason.
    pub external: Option<(Health, String)>,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            healthy: true,
            probe: Health::Unknown,
            external: None,
        }
    }
}

impl TargetHealth {
    /// Combines probe and external input: unhealthy if either says so.
    pub fn combine(probe: Health, external: Option<(Health, String)>) -> Self {
        let ext_down = matches!(external, Some((Health::Unhealthy, _)));
        Self {
            healthy: probe != Health::Unhealthy && !ext_down,
            probe,
            external,
        }
    }
}

/// Health of every target: `[gslb id][target index]`.
pub type HealthView = Vec<Vec<TargetHealth>>;

/// Everything a query needs, immutable.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every published snapshot; caches compare it.
    pub generation: u64,
    /// Zones and GSLB names.
    pub zones: Arc<Zones>,
    /// Target health.
    pub health: Arc<HealthView>,
    /// Latency map.
    pub latency: Arc<LatencyTable>,
}

impl Snapshot {
    /// Health of target `t` of GSLB name `g`.
    pub fn target_health(&self, g: usize, t: usize) -> TargetHealth {
        self.health
            .get(g)
            .and_then(|v| v.get(t))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether target `t` of GSLB name `g` may be answered.
    pub fn is_healthy(&self, g: usize, t: usize) -> bool {
        self.health
            .get(g)
            .and_then(|v| v.get(t))
            .is_none_or(|h| h.healthy)
    }
}

/// The published snapshot.
#[derive(Debug)]
pub struct State {
    current: ArcSwap<Snapshot>,
    next_generation: AtomicU64,
}

impl State {
    /// A state serving `zones` with every target healthy and an empty latency map.
    pub fn new(zones: Arc<Zones>, health: Arc<HealthView>, latency: Arc<LatencyTable>) -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot {
                generation: 1,
                zones,
                health,
                latency,
            }),
            next_generation: AtomicU64::new(2),
        }
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes a snapshot built from the parts of the current one, changed by `f`.
    pub fn publish(
        &self,
        f: impl FnOnce(&Snapshot) -> (Arc<Zones>, Arc<HealthView>, Arc<LatencyTable>),
    ) {
        let cur = self.current.load_full();
        let (zones, health, latency) = f(&cur);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        self.current.store(Arc::new(Snapshot {
            generation,
            zones,
            health,
            latency,
        }));
    }
}
