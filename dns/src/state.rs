//! The immutable [`Snapshot`] that queries read, the [`State`] that publishes it, and
//! the [`ServerState`] every task of a running server shares.
//!
//! One task, [`crate::builder`], makes a new snapshot whenever the config, a target's
//! health or the latency map changes, and stores it with `ArcSwap::store`. A query
//! does one `load()` and never waits.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use causeway_model::{Health, Role};

use crate::config::IdentitySpec;
use crate::latency::LatencyTable;
use crate::load::LoadedConfig;
use crate::metrics::Metrics;
use crate::ratelimit::ResponseLimiter;
use crate::zone::{Gslb, GslbId, Target, Zones};

/// Health of one GSLB target as the policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// Whether it may be answered.
    pub healthy: bool,
    /// State of the active probe (`Unknown` before the first `rise`/`fall` run, or no probe).
    pub probe: Health,
    /// Latest external report, with its reason.
    pub external: Option<(Health, String)>,
    /// What the last placement for this name said about this target, if it named it.
    pub placement: Option<Arc<TargetPlacement>>,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            healthy: true,
            probe: Health::Unknown,
            external: None,
            placement: None,
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
            placement: None,
        }
    }

    /// Adds the placement's view of the target: its health counts like an external
    /// report (unhealthy if it says so).
    pub fn with_placement(mut self, placement: Option<Arc<TargetPlacement>>) -> Self {
        if placement
            .as_ref()
            .is_some_and(|p| p.health == Health::Unhealthy)
        {
            self.healthy = false;
        }
        self.placement = placement;
        self
    }
}

/// One target as a placement (`causeway_model::PlacementTarget`) set it, over the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlacement {
    /// Share of new clients; replaces the zone's weight. 0: no new clients.
    pub weight: u32,
    /// `draining`: out of new answers; `standby`: only when no active target is healthy.
    pub role: Role,
    /// Health as the scheduler sees it (`unhealthy` takes the target out).
    pub health: Health,
    /// IPv4 addresses replacing the zone's (with `v6`), when either is non-empty.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 addresses replacing the zone's (with `v4`), when either is non-empty.
    pub v6: Vec<Ipv6Addr>,
}

impl TargetPlacement {
    /// Whether the placement's addresses replace the zone's.
    pub fn has_addresses(&self) -> bool {
        !self.v4.is_empty() || !self.v6.is_empty()
    }
}

/// Health of every target: `[gslb id][target index]`.
pub type HealthView = Vec<Vec<TargetHealth>>;

/// The [`HealthView`] of `zones`, with `health` of each target.
pub fn health_view(
    zones: &Zones,
    health: impl Fn(GslbId, usize, &Gslb, &Target) -> TargetHealth,
) -> HealthView {
    zones
        .gslb
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            g.targets
                .iter()
                .enumerate()
                .map(|(ti, t)| health(gi, ti, g, t))
                .collect()
        })
        .collect()
}

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

    /// The placement's view of target `t` of GSLB name `g`, if a placement named it.
    pub fn placement(&self, g: usize, t: usize) -> Option<&TargetPlacement> {
        self.health
            .get(g)
            .and_then(|v| v.get(t))
            .and_then(|h| h.placement.as_deref())
    }

    /// Weight of target `t` of GSLB name `g`: the placement's, else the zone's.
    pub fn weight(&self, g: usize, t: usize) -> u32 {
        match self.placement(g, t) {
            Some(p) => p.weight,
            None => self
                .zones
                .gslb
                .get(g)
                .and_then(|g| g.targets.get(t))
                .map_or(0, |t| t.weight),
        }
    }

    /// Role of target `t` of GSLB name `g`: the placement's, else active.
    pub fn role(&self, g: usize, t: usize) -> Role {
        self.placement(g, t).map_or(Role::Active, |p| p.role)
    }

    /// Whether target `t` of GSLB name `g` takes new clients: not draining and, when a
    /// placement set its weight, a weight above 0. (A zone weight of 0 is the
    /// `weighted` policy's business: it shares equally when every weight is 0.)
    pub fn takes_new_clients(&self, g: usize, t: usize) -> bool {
        self.placement(g, t)
            .is_none_or(|p| p.role != Role::Draining && p.weight > 0)
    }

    /// IPv4 addresses of target `t` of GSLB name `g`: the placement's when it gave
    /// any address, else the zone's.
    pub fn v4(&self, g: usize, t: usize) -> &[Ipv4Addr] {
        match self.placement(g, t) {
            Some(p) if p.has_addresses() => &p.v4,
            _ => self
                .zones
                .gslb
                .get(g)
                .and_then(|g| g.targets.get(t))
                .map_or(&[], |t| &t.v4),
        }
    }

    /// IPv6 addresses of target `t` of GSLB name `g` (see [`Self::v4`]).
    pub fn v6(&self, g: usize, t: usize) -> &[Ipv6Addr] {
        match self.placement(g, t) {
            Some(p) if p.has_addresses() => &p.v6,
            _ => self
                .zones
                .gslb
                .get(g)
                .and_then(|g| g.targets.get(t))
                .map_or(&[], |t| &t.v6),
        }
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

/// What every task of a running server shares: the socket workers, the builder, the
/// reload watcher and the HTTP API.
#[derive(Debug)]
pub struct ServerState {
    /// The published snapshot.
    pub state: Arc<State>,
    /// Metrics.
    pub metrics: Metrics,
    /// Response rate limiter, if configured.
    pub limiter: ArcSwapOption<ResponseLimiter>,
    /// CHAOS identity and NSID (`spec.identity`); replaced before the snapshot of a
    /// reload is published, so cached CHAOS replies never outlive it.
    pub identity: ArcSwap<IdentitySpec>,
    /// Set once every socket is bound and the first snapshot is published.
    pub ready: AtomicBool,
}

impl ServerState {
    /// A server about to start serving `zones`: not ready, every target healthy, no
    /// latency map, no rate limiter (the builder sets them).
    pub fn starting(zones: Arc<Zones>) -> Self {
        Self {
            state: Arc::new(State::new(
                zones,
                Arc::new(Vec::new()),
                Arc::new(LatencyTable::default()),
            )),
            metrics: Metrics::new(),
            limiter: ArcSwapOption::empty(),
            identity: ArcSwap::from_pointee(IdentitySpec::default()),
            ready: AtomicBool::new(false),
        }
    }

    /// A ready server serving `loaded` as it is: no probe has run (every target
    /// counts as healthy), the static latency map, the configured rate limiter. For
    /// offline `explain`, tests, fuzzing and benchmarks of the query path.
    pub fn serving(loaded: &LoadedConfig) -> Self {
        Self {
            state: Arc::new(State::new(
                loaded.zones.clone(),
                Arc::new(Vec::new()),
                loaded.latency.clone(),
            )),
            metrics: Metrics::new(),
            limiter: ArcSwapOption::new(
                loaded
                    .config
                    .server
                    .rate_limit
                    .as_ref()
                    .map(|s| Arc::new(ResponseLimiter::new(s))),
            ),
            identity: ArcSwap::from_pointee(loaded.config.server.identity.clone()),
            ready: AtomicBool::new(true),
        }
    }
}
