//! Inputs from the other parts: placements and external health reports, validated the
//! same way whether they arrive over HTTP (`POST /v1/placement`, `POST /v1/health`) or
//! in process through an [`Inputs`] handle (what `causeway hub` gives its scheduler).
//!
//! A valid input becomes one [`Event`] for the builder, which publishes a new snapshot at
//! once. Validation reads the current snapshot: every service must be a GSLB name. A
//! placement target that is not one of the name's clusters is *ignored* (dropped, counted
//! as `result="ignored_target"`, logged once per name and cluster, and listed in the API's
//! answer): a policy may place a workload in a cluster the name is not served from, and
//! that must not hold back the other clusters' updates. Counts are bounded ([`MAX_PLACEMENTS`],
//! [`MAX_PLACEMENT_TARGETS`], [`MAX_ADDRESSES`]); HTTP bodies also by
//! [`crate::api::MAX_BODY`].

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use causeway_model::{HealthReport, Placement};
use tokio::sync::mpsc;

use crate::builder::{Event, normalize_service};
use crate::load::LoadedConfig;
use crate::state::{ServerState, Snapshot};

/// Most placements in one input.
pub const MAX_PLACEMENTS: usize = 10_000;
/// Most targets in one placement.
pub const MAX_PLACEMENT_TARGETS: usize = 256;
/// Most addresses of one placement target.
pub const MAX_ADDRESSES: usize = 64;
/// Longest reason of a health report.
pub const MAX_REASON: usize = 1024;
/// Longest wait of [`Inputs::reload`] for the builder to publish.
pub const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why an input was refused. The variant names double as the `result` label of
/// `causeway_dns_placement_updates_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The service is not a GSLB name of any zone.
    #[error("{field}: {service:?} is not a GSLB name")]
    UnknownService {
        /// Where in the input (`placements[0].service`).
        field: String,
        /// The service as given (cut to 255 characters).
        service: String,
    },
    /// The cluster is not a target of the service's GSLB name.
    #[error("{field}: cluster {cluster} is not a target of {service}")]
    UnknownCluster {
        /// Where in the input (`placements[0].targets[1].cluster`).
        field: String,
        /// The cluster.
        cluster: String,
        /// The GSLB name.
        service: String,
    },
    /// Some other value is out of bounds or repeated.
    #[error("{field}: {reason}")]
    Invalid {
        /// Where in the input.
        field: String,
        /// Why.
        reason: String,
    },
    /// The server has stopped; nothing takes inputs any more.
    #[error("dns has stopped")]
    Stopped,
}

impl InputError {
    /// Bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownService { .. } => "unknown_service",
            Self::UnknownCluster { .. } => "unknown_cluster",
            Self::Invalid { .. } => "invalid",
            Self::Stopped => "stopped",
        }
    }
}

/// A cloneable handle that feeds a running server's builder without HTTP: placements
/// and health reports, validated like the API's. Get it from [`crate::Server::inputs`].
#[derive(Clone)]
pub struct Inputs {
    shared: Arc<ServerState>,
    events: mpsc::UnboundedSender<Event>,
    /// (name, cluster) pairs already logged as ignored.
    ignored_logged: Arc<Mutex<HashSet<(String, String)>>>,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inputs")
    }
}

impl Inputs {
    /// A handle over `shared` that sends to the builder through `events`.
    pub fn new(shared: Arc<ServerState>, events: mpsc::UnboundedSender<Event>) -> Self {
        Self {
            shared,
            events,
            ignored_logged: Arc::default(),
        }
    }

    /// Applies `placements` (each replaces the last placement of its service; one with
    /// no targets removes it). Returns how many were accepted: all or none. Targets that
    /// are not clusters of their name are ignored (see the module docs).
    pub fn placements(&self, placements: Vec<Placement>) -> Result<usize, InputError> {
        self.placements_at(placements, |i| format!("placements[{i}]"))
            .map(|(n, _)| n)
    }

    /// [`Self::placements`], naming fields with `field(index)` in errors; also returns
    /// the ignored targets, each as `field: why`.
    pub(crate) fn placements_at(
        &self,
        mut placements: Vec<Placement>,
        field: impl Fn(usize) -> String,
    ) -> Result<(usize, Vec<String>), InputError> {
        let r = validate_placements(&self.shared, &mut placements, &field).and_then(|ignored| {
            let n = placements.len();
            self.events
                .send(Event::Placement(placements))
                .map_err(|_| InputError::Stopped)?;
            Ok((n, ignored))
        });
        self.shared.metrics.placement_update(match &r {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        });
        if let Ok((_, ignored)) = &r {
            for i in ignored {
                self.shared.metrics.placement_update("ignored_target");
                let mut logged = self
                    .ignored_logged
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if logged.len() < 10_000 && logged.insert((i.service.clone(), i.cluster.clone())) {
                    tracing::info!(service = %i.service, cluster = %i.cluster, "placement target ignored: the cluster is not a target of the name");
                }
            }
        }
        r.map(|(n, ignored)| (n, ignored.into_iter().map(|i| i.text).collect()))
    }

    /// Replaces the running configuration with `loaded`, as a file reload does (probe
    /// state carried over by name and cluster, placements kept), and waits until
    /// queries see it (at most [`RELOAD_WAIT`]), so that placements checked next are
    /// checked against it. Listen and API addresses are not rebound. For production mode
    /// ([`crate::hub`]), which loads the file together with the hub's objects.
    pub async fn reload(&self, loaded: LoadedConfig) -> Result<(), InputError> {
        let zones = loaded.zones.clone();
        self.events
            .send(Event::Reload(Box::new(loaded)))
            .map_err(|_| InputError::Stopped)?;
        let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
        while !Arc::ptr_eq(&self.shared.state.load().zones, &zones) {
            if tokio::time::Instant::now() >= deadline || self.events.is_closed() {
                return Err(InputError::Stopped);
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Removes the placements of `services` (normalised FQDNs) without checking that
    /// they are still GSLB names: a deleted `Placement` object whose name went away
    /// with it must not come back with the name ([`crate::hub`]).
    pub(crate) fn remove_placements(&self, services: Vec<String>) {
        let removals = services
            .into_iter()
            .map(|service| Placement {
                service,
                targets: Vec::new(),
            })
            .collect();
        let _ = self.events.send(Event::Placement(removals));
    }

    /// Counts a reload that did not load (`causeway_dns_reloads_total{result="error"}`).
    pub fn reload_failed(&self) {
        self.shared.metrics.reload(false);
    }

    /// Sets what `/readyz` answers.
    pub fn set_ready(&self, ready: bool) {
        self.shared
            .ready
            .store(ready, std::sync::atomic::Ordering::SeqCst);
    }

    /// The snapshot queries read now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.state.load_full()
    }

    /// Applies external health `reports` (`health: unknown` clears one). Returns how
    /// many were accepted: all or none.
    pub fn health(&self, reports: Vec<HealthReport>) -> Result<usize, InputError> {
        let snap = self.shared.state.load();
        for (i, r) in reports.iter().enumerate() {
            if let Some(s) = &r.service
                && snap.zones.gslb_by_name(&normalize_service(s)).is_none()
            {
                return Err(InputError::UnknownService {
                    field: format!("reports[{i}].service"),
                    service: cut(s),
                });
            }
            if r.reason.len() > MAX_REASON || r.reason.chars().any(char::is_control) {
                return Err(InputError::Invalid {
                    field: format!("reports[{i}].reason"),
                    reason: format!("at most {MAX_REASON} characters, no control characters"),
                });
            }
        }
        let n = reports.len();
        self.events
            .send(Event::External(reports))
            .map_err(|_| InputError::Stopped)?;
        Ok(n)
    }
}

/// A string for an error message: at most 255 characters.
fn cut(s: &str) -> String {
    s.chars().take(255).collect()
}

/// A placement target dropped because its cluster is not a target of the name.
struct Ignored {
    service: String,
    cluster: String,
    /// `field: why`.
    text: String,
}

/// Checks `placements` and drops the targets that are not clusters of their name,
/// returning those.
fn validate_placements(
    shared: &ServerState,
    placements: &mut [Placement],
    field: &impl Fn(usize) -> String,
) -> Result<Vec<Ignored>, InputError> {
    if placements.len() > MAX_PLACEMENTS {
        return Err(InputError::Invalid {
            field: "placements".into(),
            reason: format!(
                "{} placements; at most {MAX_PLACEMENTS} at once",
                placements.len()
            ),
        });
    }
    let snap = shared.state.load();
    let mut services = HashSet::new();
    let mut ignored = Vec::new();
    for (i, p) in placements.iter_mut().enumerate() {
        let at = field(i);
        let service = normalize_service(&p.service);
        let Some(id) = snap.zones.gslb_by_name(&service) else {
            return Err(InputError::UnknownService {
                field: format!("{at}.service"),
                service: cut(&p.service),
            });
        };
        if !services.insert(service.clone()) {
            return Err(InputError::Invalid {
                field: format!("{at}.service"),
                reason: format!("{service} has another placement in this input"),
            });
        }
        if p.targets.len() > MAX_PLACEMENT_TARGETS {
            return Err(InputError::Invalid {
                field: format!("{at}.targets"),
                reason: format!("at most {MAX_PLACEMENT_TARGETS} targets"),
            });
        }
        let g = &snap.zones.gslb[id];
        let mut clusters = HashSet::new();
        let mut unknown = Vec::new();
        for (j, t) in p.targets.iter().enumerate() {
            let at = format!("{at}.targets[{j}]");
            if !g.targets.iter().any(|z| z.cluster == t.cluster) {
                let e = InputError::UnknownCluster {
                    field: format!("{at}.cluster"),
                    cluster: t.cluster.to_string(),
                    service: g.fqdn.clone(),
                };
                ignored.push(Ignored {
                    service: g.fqdn.clone(),
                    cluster: t.cluster.to_string(),
                    text: e.to_string(),
                });
                unknown.push(j);
                continue;
            }
            if !clusters.insert(&t.cluster) {
                return Err(InputError::Invalid {
                    field: format!("{at}.cluster"),
                    reason: format!("cluster {} appears twice", t.cluster),
                });
            }
            if t.addresses.len() > MAX_ADDRESSES {
                return Err(InputError::Invalid {
                    field: format!("{at}.addresses"),
                    reason: format!("at most {MAX_ADDRESSES} addresses"),
                });
            }
            for (k, a) in t.addresses.iter().enumerate() {
                if !answerable(a) {
                    return Err(InputError::Invalid {
                        field: format!("{at}.addresses[{k}]"),
                        reason: format!("{a} is not an address clients can connect to"),
                    });
                }
            }
        }
        for j in unknown.into_iter().rev() {
            p.targets.remove(j);
        }
    }
    Ok(ignored)
}

/// Not unspecified, multicast or broadcast.
fn answerable(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}
