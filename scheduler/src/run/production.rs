//! Production mode (`--hub-kubeconfig`): the policies from the hub cluster, their
//! `status`, and nothing written from a standby.
//!
//! 1. The file's documents (the `Scheduler` document, and any policies it holds) are the
//!    base; the hub's `BurstPolicy`, `SpreadPolicy` and `FailoverPolicy` objects are added
//!    ([`Hub::watch`]) and everything loads through [`SchedulerConfig::from_documents`].
//!    An object the loader refuses keeps its last good version ([`LastGood`]); the others
//!    apply. A change takes effect at the next round, like a file change.
//! 2. The leader writes each object's verdict (`Accepted` and `observedGeneration`) and
//!    its decision (`status.decision`, and for a FailoverPolicy `status.primary` and
//!    `status.phase`), each only when it changed since this replica last wrote it (or,
//!    after a handover, since what the status already says).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use causeway_config::{ConfigError, Document};
use causeway_hubstore::{Hub, Kind, LastGood, Snapshot, Verdict};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::plan::{Action, Plan, Traffic};
use crate::policy::{PolicyRef, SchedulerConfig};

/// The kinds the scheduler reads from the hub.
pub const KINDS: [Kind; 3] = [Kind::BurstPolicy, Kind::SpreadPolicy, Kind::FailoverPolicy];

/// The field manager of the scheduler's `Placement` objects, and their
/// `app.kubernetes.io/managed-by` label.
pub const MANAGER: &str = "causeway-scheduler";

/// What the leader last wrote (or found already written) in one object's status.
type Written<T> = BTreeMap<(Kind, String), T>;

/// The hub's side of the loop.
pub(super) struct Production {
    hub: Hub,
    rx: watch::Receiver<Option<Arc<Snapshot>>>,
    last_good: LastGood,
    /// The snapshot the running configuration was loaded from.
    loaded: Option<Arc<Snapshot>>,
    /// The objects the file defines too (their status is not ours to write).
    in_files: BTreeSet<(Kind, String)>,
    /// The verdicts of the last load.
    verdicts: Vec<Verdict>,
    verdicts_written: Written<(Option<i64>, Result<(), String>)>,
    /// The decision per object (its comparable part) and when it started.
    decisions: Written<(Value, String)>,
    decisions_written: Written<Value>,
}

impl Production {
    /// Starts watching the hub's policies until `shutdown`.
    pub(super) fn new(hub: Hub, shutdown: CancellationToken) -> Self {
        let rx = hub.watch(&KINDS, shutdown);
        Self {
            hub,
            rx,
            last_good: LastGood::default(),
            loaded: None,
            in_files: BTreeSet::new(),
            verdicts: Vec::new(),
            verdicts_written: BTreeMap::new(),
            decisions: BTreeMap::new(),
            decisions_written: BTreeMap::new(),
        }
    }

    /// Waits for the first full listing of the hub's policies; false on shutdown.
    pub(super) async fn listed(&mut self, shutdown: &CancellationToken) -> bool {
        info!(namespace = %self.hub.namespace(), "waiting for the hub's policies to be listed");
        tokio::select! {
            r = self.rx.wait_for(Option::is_some) => r.is_ok(),
            _ = shutdown.cancelled() => false,
        }
    }

    /// Whether the hub's policies (their specs, not their status) changed since the
    /// last load.
    pub(super) fn changed(&self) -> bool {
        match (self.rx.borrow().as_ref(), &self.loaded) {
            (Some(now), Some(loaded)) => now.specs_differ(loaded),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Loads `files` + the hub's policies, keeping the last good version of each object
    /// that does not load. An error is the files' own (the caller keeps its last good
    /// configuration).
    pub(super) fn load(&mut self, files: &[PathBuf]) -> Result<SchedulerConfig, ConfigError> {
        let mut base: Vec<Document> = Vec::new();
        for f in files {
            base.extend(causeway_config::read_file(f)?);
        }
        let snapshot = self.rx.borrow().clone().unwrap_or_default();
        let loaded = self
            .last_good
            .load(&base, &snapshot, SchedulerConfig::from_documents);
        let mut config = loaded.config?;
        config.files = files.to_vec();
        for v in &loaded.verdicts {
            if let Err(why) = &v.result {
                warn!(object = %format!("{}/{}", v.kind, v.name), generation = v.generation, error = %why, "hub object refused; its last good version (if any) keeps running");
            }
        }
        self.in_files = base
            .iter()
            .filter_map(|d| Some((kind_of(&d.kind)?, d.name().to_string())))
            .collect();
        self.verdicts = loaded.verdicts;
        self.loaded = Some(snapshot);
        Ok(config)
    }

    /// Forgets what this replica wrote: after a handover the status in the hub is what
    /// counts.
    pub(super) fn forget_writes(&mut self) {
        self.verdicts_written.clear();
        self.decisions_written.clear();
    }

    /// The leader's writes: each changed verdict, then each changed decision.
    pub(super) async fn write_status(
        &mut self,
        config: &SchedulerConfig,
        plan: &Plan,
        metrics: &Metrics,
    ) {
        let Some(snapshot) = self.rx.borrow().clone() else {
            return;
        };
        let due: Vec<Verdict> = self
            .verdicts
            .iter()
            .filter(|v| {
                self.verdicts_written.get(&(v.kind, v.name.clone()))
                    != Some(&(v.generation, v.result.clone()))
            })
            .cloned()
            .collect();
        if !due.is_empty() {
            let n = self.hub.write_verdicts(&snapshot, &due).await;
            metrics
                .status_writes
                .with_label_values(&["verdict", "ok"])
                .inc_by(n as u64);
            for v in due {
                self.verdicts_written
                    .insert((v.kind, v.name), (v.generation, v.result));
            }
        }
        let now = causeway_hubstore::status::rfc3339(SystemTime::now());
        let mut seen = BTreeSet::new();
        for p in config.policies().iter() {
            let Some(kind) = kind_of(p.kind()) else {
                continue;
            };
            let key = (kind, p.name().to_string());
            let Some(object) = snapshot.get(kind, p.name()) else {
                continue;
            };
            if self.in_files.contains(&key) {
                continue;
            }
            seen.insert(key.clone());
            let decision = comparable(p, plan);
            let since = match self.decisions.get(&key) {
                Some((d, since)) if *d == decision => since.clone(),
                _ => {
                    // A new leader keeps the `since` its predecessor wrote for the same decision.
                    let current = object.status.as_ref();
                    let since = match current {
                        Some(s) if comparable_of_status(s) == decision => s["decision"]["since"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| now.clone()),
                        _ => now.clone(),
                    };
                    self.decisions
                        .insert(key.clone(), (decision.clone(), since.clone()));
                    since
                }
            };
            if self.decisions_written.get(&key) == Some(&decision) {
                continue;
            }
            if object
                .status
                .as_ref()
                .is_some_and(|s| comparable_of_status(s) == decision)
            {
                self.decisions_written.insert(key, decision);
                continue;
            }
            let body = status_body(p, plan, &since, object.status.as_ref());
            match self.hub.write_status(kind, p.name(), body).await {
                Ok(()) => {
                    metrics
                        .status_writes
                        .with_label_values(&["decision", "ok"])
                        .inc();
                    info!(object = %format!("{kind}/{}", p.name()), decision = %decision, "decision written to status");
                    self.decisions_written.insert(key, decision);
                }
                Err(e) => {
                    metrics
                        .status_writes
                        .with_label_values(&["decision", "error"])
                        .inc();
                    warn!(error = %e, "cannot write the decision to status; retrying next round");
                }
            }
        }
        self.decisions.retain(|k, _| seen.contains(k));
        self.decisions_written.retain(|k, _| seen.contains(k));
    }
}

fn kind_of(kind: &str) -> Option<Kind> {
    KINDS.into_iter().find(|k| k.as_str() == kind)
}

fn traffic(t: Traffic) -> &'static str {
    match t {
        Traffic::Serve => "serve",
        Traffic::Drain => "drain",
        Traffic::Out => "out",
    }
}

/// What a write is due on: per cluster the planned replicas, the ready ones and DNS;
/// a FailoverPolicy's primary and phase. Reasons are written with it but do not count
/// (some carry a running timer, which would write every round).
fn comparable(p: PolicyRef<'_>, plan: &Plan) -> Value {
    let mut clusters = Map::new();
    for d in plan.decisions.iter().filter(|d| d.policy == p.name()) {
        clusters.insert(
            d.cluster.to_string(),
            json!({"desired": d.planned, "ready": d.ready, "dns": traffic(d.traffic)}),
        );
    }
    let mut v = json!({ "clusters": clusters });
    if let PolicyRef::Failover(_) = p
        && let Some(s) = plan.failover.get(p.name())
    {
        v["primary"] = json!(s.primary.as_str());
        v["phase"] = json!(phase(p.name(), plan));
    }
    v
}

/// The same, read back from a status the scheduler wrote.
fn comparable_of_status(status: &Value) -> Value {
    let mut clusters = Map::new();
    if let Some(m) = status["decision"]["clusters"].as_object() {
        for (c, d) in m {
            clusters.insert(
                c.clone(),
                json!({"desired": d["desired"], "ready": d["ready"], "dns": d["dns"]}),
            );
        }
    }
    let mut v = json!({ "clusters": clusters });
    if !status["primary"].is_null() {
        v["primary"] = status["primary"].clone();
        v["phase"] = status["phase"].clone();
    }
    v
}

/// A FailoverPolicy's phase: `Serving` (the primary in DNS), `Fencing` (a cluster being
/// fenced), `Promoting` (the role being granted), or `Unavailable` (the primary lost,
/// waiting for its lease to run out or for a usable backup).
fn phase(policy: &str, plan: &Plan) -> &'static str {
    let Some(s) = plan.failover.get(policy) else {
        return "Unavailable";
    };
    let mine = || plan.decisions.iter().filter(|d| d.policy == policy);
    if mine().any(|d| d.cluster == s.primary && d.traffic == Traffic::Serve) {
        "Serving"
    } else if mine().any(|d| d.action == Action::Fence) {
        "Fencing"
    } else if mine().any(|d| matches!(d.action, Action::Grant(_))) {
        "Promoting"
    } else {
        "Unavailable"
    }
}

/// The merge patch of `status`: `decision` {clusters {NAME: {desired, ready, dns,
/// reason}}, reason, since} (clusters no longer planned set to null), and for a
/// FailoverPolicy `primary`, `phase` and `lastFailover`.
fn status_body(p: PolicyRef<'_>, plan: &Plan, since: &str, current: Option<&Value>) -> Value {
    let mut clusters = Map::new();
    for d in plan.decisions.iter().filter(|d| d.policy == p.name()) {
        clusters.insert(
            d.cluster.to_string(),
            json!({
                "desired": d.planned,
                "ready": d.ready,
                "dns": traffic(d.traffic),
                "reason": d.reason,
            }),
        );
    }
    if let Some(old) = current.and_then(|s| s["decision"]["clusters"].as_object()) {
        for c in old.keys() {
            if !clusters.contains_key(c) {
                clusters.insert(c.clone(), Value::Null);
            }
        }
    }
    let mut body = json!({
        "decision": {
            "clusters": clusters,
            "reason": plan.demand.get(p.name()).cloned().unwrap_or_default(),
            "since": since,
        }
    });
    if let PolicyRef::Failover(_) = p
        && let Some(s) = plan.failover.get(p.name())
    {
        body["primary"] = json!(s.primary.as_str());
        body["phase"] = json!(phase(p.name(), plan));
        if let Some(f) = &s.last {
            body["lastFailover"] = json!({
                "from": f.from.as_str(),
                "to": f.to.as_str(),
                "reason": f.why,
            });
        }
    }
    body
}

#[cfg(test)]
mod tests;
