//! The one task that builds and publishes snapshots.
//!
//! Inputs arrive as [`Event`]s: probe transitions, external health reports,
//! placements, "the latency store changed", and loaded reloads. The builder keeps the parts, makes a
//! new [`crate::state::Snapshot`] and publishes it. Health changes publish at once
//! (failover time); latency changes are coalesced to at most one rebuild per
//! [`LATENCY_REBUILD`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use causeway_model::{ClusterId, Health, HealthReport, Placement, Role};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::health::{self, Hysteresis, ProbeTargets};
use crate::latency::{LatencyStore, LatencyTable};
use crate::load::LoadedConfig;
use crate::ratelimit::ResponseLimiter;
use crate::state::{HealthView, ServerState, TargetHealth, TargetPlacement, health_view};
use crate::zone::Zones;

/// Least time between two latency-table rebuilds.
pub const LATENCY_REBUILD: Duration = Duration::from_secs(1);
/// How often aged-out measurements are swept.
const AGING_SWEEP: Duration = Duration::from_secs(10);

/// An input to the builder.
#[derive(Debug)]
pub enum Event {
    /// A probe changed state.
    Probe {
        /// Config epoch the probe belongs to (stale ones are ignored).
        epoch: u64,
        /// GSLB name.
        gslb: usize,
        /// Target.
        target: usize,
        /// New state.
        health: Health,
        /// Last error, for the log.
        error: Option<String>,
    },
    /// External health reports.
    External(Vec<HealthReport>),
    /// Placements from the scheduler, validated ([`crate::inputs`]); each replaces the
    /// last one of its service.
    Placement(Vec<Placement>),
    /// Measurements were added to the latency store.
    Latency,
    /// A new configuration, validated and compiled.
    Reload(Box<LoadedConfig>),
    /// A latency map uploaded whole (`PUT /v1/latency/map`) replacing the config's, or
    /// `None` (`DELETE`) to serve the config's again; `done` is told once queries see it.
    LatencyMap {
        /// The new map.
        map: Option<Arc<LatencyTable>>,
        /// Told after the snapshot with it is published.
        done: tokio::sync::oneshot::Sender<()>,
    },
}

/// Key of an external report: (service FQDN or every service, cluster).
type ReportKey = (Option<String>, ClusterId);

/// The builder's state.
pub struct Builder {
    shared: Arc<ServerState>,
    tx: mpsc::UnboundedSender<Event>,
    epoch: u64,
    zones: Arc<Zones>,
    probe_targets: ProbeTargets,
    probes: Vec<Vec<Health>>,
    external: HashMap<ReportKey, (Health, String)>,
    /// Last placement per service FQDN: cluster → what it set. Kept across reloads.
    placements: HashMap<String, HashMap<ClusterId, Arc<TargetPlacement>>>,
    /// The config's latency map (entries and files).
    static_latency: Arc<LatencyTable>,
    /// A map uploaded whole, served instead of the config's until deleted.
    uploaded: Option<Arc<LatencyTable>>,
    /// Told after the next publish.
    published: Vec<tokio::sync::oneshot::Sender<()>>,
    store: LatencyStore,
    latency: Arc<LatencyTable>,
    latency_dirty: bool,
    probe_token: CancellationToken,
    shutdown: CancellationToken,
}

/// Returns freed heap memory to the OS (glibc keeps the peak of a big config parse).
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Normalises a service name: lower case, trailing dot.
pub fn normalize_service(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    if s.ends_with('.') { s } else { format!("{s}.") }
}

impl Builder {
    /// Publishes the first snapshot of `loaded` into `shared.state` and starts the
    /// probes. `tx` must be the sender of the channel later given to [`Self::run`].
    pub fn start(
        shared: Arc<ServerState>,
        loaded: LoadedConfig,
        store: LatencyStore,
        tx: mpsc::UnboundedSender<Event>,
        shutdown: CancellationToken,
    ) -> Self {
        let LoadedConfig {
            mut config,
            zones,
            probes: probe_targets,
            latency: static_latency,
        } = loaded;
        config.latency = Vec::new();
        let mut b = Self {
            shared,
            tx,
            epoch: 0,
            probes: Vec::new(),
            zones,
            probe_targets,
            external: HashMap::new(),
            placements: HashMap::new(),
            static_latency,
            uploaded: None,
            published: Vec::new(),
            store,
            latency: Arc::new(LatencyTable::default()),
            latency_dirty: true,
            probe_token: shutdown.child_token(),
            shutdown,
        };
        b.set_limiter(&config);
        b.rebuild_latency();
        b.reset_probes(&HashMap::new());
        b.publish();
        b
    }

    /// The rate limiter and the identity of `config` (before its snapshot is published).
    fn set_limiter(&self, config: &Config) {
        self.shared
            .identity
            .store(Arc::new(config.server.identity.clone()));
        self.shared.limiter.store(
            config
                .server
                .rate_limit
                .as_ref()
                .map(|s| Arc::new(ResponseLimiter::new(s))),
        );
    }

    /// Runs until shutdown, applying events.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_latency = tokio::time::Instant::now();
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    let mut health_changed = self.apply(ev);
                    while let Ok(ev) = rx.try_recv() {
                        health_changed |= self.apply(ev);
                    }
                    if health_changed {
                        self.publish();
                        self.acknowledge();
                    }
                }
                _ = tick.tick() => {
                    let now = tokio::time::Instant::now();
                    if now - last_sweep >= AGING_SWEEP && !self.store.is_empty() {
                        last_sweep = now;
                        self.latency_dirty = true;
                    }
                    if self.latency_dirty && now - last_latency >= LATENCY_REBUILD {
                        last_latency = now;
                        self.rebuild_latency();
                        self.publish();
                    }
                }
            }
        }
        self.probe_token.cancel();
    }

    /// Applies one event; true when health or zones changed (publish now).
    fn apply(&mut self, ev: Event) -> bool {
        match ev {
            Event::Probe {
                epoch,
                gslb,
                target,
                health,
                error,
            } => {
                if epoch != self.epoch {
                    return false;
                }
                let Some(slot) = self.probes.get_mut(gslb).and_then(|v| v.get_mut(target)) else {
                    return false;
                };
                *slot = health;
                if let Some(g) = self.zones.gslb.get(gslb) {
                    let cluster = g.targets[target].cluster.as_str();
                    let to = if health == Health::Healthy {
                        "healthy"
                    } else {
                        "unhealthy"
                    };
                    self.shared.metrics.transition(cluster, to);
                    info!(name = %g.fqdn, cluster, to, error = error.as_deref().unwrap_or(""), "target health changed");
                }
                true
            }
            Event::External(reports) => {
                for r in reports {
                    let key = (
                        r.service.as_deref().map(normalize_service),
                        r.cluster.clone(),
                    );
                    info!(service = key.0.as_deref().unwrap_or("*"), cluster = %r.cluster, health = ?r.health, reason = %r.reason, "external health report");
                    if r.health == Health::Unknown {
                        self.external.remove(&key);
                    } else {
                        self.external.insert(key, (r.health, r.reason));
                    }
                }
                true
            }
            Event::Placement(placements) => {
                for p in placements {
                    self.apply_placement(p);
                }
                self.count_placements();
                true
            }
            Event::Latency => {
                self.latency_dirty = true;
                false
            }
            Event::LatencyMap { map, done } => {
                match &map {
                    Some(m) => info!(
                        prefixes = m.len(),
                        clusters = m.clusters().len(),
                        "latency map uploaded"
                    ),
                    None => info!("uploaded latency map deleted: serving the config's"),
                }
                self.uploaded = map;
                self.published.push(done);
                self.rebuild_latency();
                true
            }
            Event::Reload(loaded) => {
                let LoadedConfig {
                    config,
                    zones,
                    probes,
                    latency,
                } = *loaded;
                // Carry probe state over by (name, cluster).
                let mut carried = HashMap::new();
                for (gi, g) in self.zones.gslb.iter().enumerate() {
                    for (ti, t) in g.targets.iter().enumerate() {
                        if let Some(h) = self.probes.get(gi).and_then(|v| v.get(ti)) {
                            carried.insert((g.fqdn.clone(), t.cluster.clone()), *h);
                        }
                    }
                }
                self.static_latency = latency;
                self.set_limiter(&config);
                self.zones = zones;
                self.probe_targets = probes;
                self.reset_probes(&carried);
                self.rebuild_latency();
                self.count_placements();
                self.shared.metrics.reload(true);
                info!(file = %config.file.display(), zones = self.zones.zones.len(), gslb = self.zones.gslb.len(), "configuration reloaded");
                drop(config);
                trim_heap();
                true
            }
        }
    }

    /// Replaces the placement of `p.service` (no targets: removes it).
    fn apply_placement(&mut self, p: Placement) {
        let service = normalize_service(&p.service);
        let summary: Vec<String> = p
            .targets
            .iter()
            .map(|t| {
                format!(
                    "{}={}/{}/{}",
                    t.cluster,
                    t.weight,
                    format!("{:?}", t.role).to_lowercase(),
                    format!("{:?}", t.health).to_lowercase()
                )
            })
            .collect();
        info!(service = %service, targets = %summary.join(" "), "placement");
        if p.targets.is_empty() {
            self.placements.remove(&service);
            return;
        }
        let targets = p
            .targets
            .into_iter()
            .map(|t| {
                let (mut v4, mut v6) = (Vec::new(), Vec::new());
                for a in t.addresses {
                    match a {
                        std::net::IpAddr::V4(a) => v4.push(a),
                        std::net::IpAddr::V6(a) => v6.push(a),
                    }
                }
                let placed = TargetPlacement {
                    weight: t.weight,
                    role: t.role,
                    health: t.health,
                    v4,
                    v6,
                };
                (t.cluster, Arc::new(placed))
            })
            .collect();
        self.placements.insert(service, targets);
    }

    /// Sets the gauge of targets under a placement, by role (those of names the zones
    /// still have).
    fn count_placements(&self) {
        let mut by_role = [0i64; 3];
        for g in &self.zones.gslb {
            let Some(placed) = self.placements.get(&g.fqdn) else {
                continue;
            };
            for t in &g.targets {
                if let Some(p) = placed.get(&t.cluster) {
                    by_role[match p.role {
                        Role::Active => 0,
                        Role::Standby => 1,
                        Role::Draining => 2,
                    }] += 1;
                }
            }
        }
        for (role, n) in ["active", "standby", "draining"].into_iter().zip(by_role) {
            self.shared.metrics.placement_targets(role).set(n);
        }
    }

    /// Stops old probes and starts one task per checked target.
    fn reset_probes(&mut self, carried: &HashMap<(String, ClusterId), Health>) {
        self.probe_token.cancel();
        self.probe_token = self.shutdown.child_token();
        self.epoch += 1;
        self.probes = self
            .zones
            .gslb
            .iter()
            .map(|g| {
                g.targets
                    .iter()
                    .map(|t| {
                        carried
                            .get(&(g.fqdn.clone(), t.cluster.clone()))
                            .copied()
                            .unwrap_or(Health::Unknown)
                    })
                    .collect()
            })
            .collect();
        for (gi, g) in self.zones.gslb.iter().enumerate() {
            for (ti, t) in g.targets.iter().enumerate() {
                let (Some(check), Some(target)) = (&t.check, self.probe_targets.get(gi, ti)) else {
                    continue;
                };
                let target = target.clone();
                let tx = self.tx.clone();
                let epoch = self.epoch;
                let initial = self.probes[gi][ti];
                tokio::spawn(health::run_checks(
                    check.interval,
                    check.timeout,
                    Hysteresis::new(check.rise, check.fall, initial),
                    move || {
                        let target = target.clone();
                        async move { health::probe::probe(&target).await }
                    },
                    move |health, error: Option<health::ProbeError>| {
                        let _ = tx.send(Event::Probe {
                            epoch,
                            gslb: gi,
                            target: ti,
                            health,
                            error: error.map(|e| e.to_string()),
                        });
                    },
                    self.probe_token.clone(),
                ));
            }
        }
    }

    /// The served map: the uploaded one, else the config's, with the posted
    /// measurements over it (no copy when nothing is posted).
    fn rebuild_latency(&mut self) {
        let base = self.uploaded.as_ref().unwrap_or(&self.static_latency);
        let posted = Arc::new(LatencyTable::build(self.store.items()));
        self.latency = LatencyTable::merge(&[base, &posted]);
        self.latency_dirty = false;
        self.shared
            .metrics
            .latency_prefixes
            .set(self.latency.len() as i64);
    }

    fn health_view(&self) -> HealthView {
        health_view(&self.zones, |gi, ti, g, t| {
            let probe = self
                .probes
                .get(gi)
                .and_then(|v| v.get(ti))
                .copied()
                .unwrap_or(Health::Unknown);
            let ext = self
                .external
                .get(&(Some(g.fqdn.clone()), t.cluster.clone()))
                .or_else(|| self.external.get(&(None, t.cluster.clone())))
                .cloned();
            let placed = self
                .placements
                .get(&g.fqdn)
                .and_then(|p| p.get(&t.cluster))
                .cloned();
            TargetHealth::combine(probe, ext).with_placement(placed)
        })
    }

    fn publish(&self) {
        let health = Arc::new(self.health_view());
        let zones = self.zones.clone();
        let latency = self.latency.clone();
        self.shared.state.publish(|_| (zones, health, latency));
        self.shared
            .metrics
            .generation
            .set(self.shared.state.load().generation as i64);
    }

    /// Tells those waiting for a latency map that queries see it.
    fn acknowledge(&mut self) {
        for done in self.published.drain(..) {
            let _ = done.send(());
        }
    }
}
