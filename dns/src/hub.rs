//! Production mode: the zones, latency maps and placements of a hub cluster
//! (`causeway dns --hub-kubeconfig FILE | --hub-in-cluster`).
//!
//! The config file's documents (the `DnsServer`, and any `Zone`s and `LatencyMap`s it
//! holds) are the base; the hub namespace's `Zone` and `LatencyMap` objects are added
//! and the whole set is loaded by the file loader ([`LoadedConfig::from_documents_allowing_no_zone`])
//! through [`LastGood`]: an object the loader refuses keeps its last good version (or
//! stays out) and the others apply. Every change of the objects, and of the file
//! (polled as in [`crate::reload`], and SIGHUP), reloads the running server as a file
//! reload does ([`Inputs::reload`]).
//!
//! `Placement` objects (written by the scheduler's leader) are applied on every replica
//! as `POST /v1/placement` is ([`Inputs::placements`]); a deleted one removes its
//! placement, a refused one (its service no GSLB name, a bad address) leaves its last
//! good version in effect. So every replica answers the same.
//!
//! One replica writes `status`: the holder of the Lease [`LeaseSettings::name`]
//! (`causeway-dns`) in the hub namespace. It writes each object's `Accepted`
//! condition ([`Hub::write_verdicts`]), `status.writer` (its identity), for a `Zone`
//! the health of its GSLB names as it sees them (`status.gslb`), and for a `Placement`
//! the targets it ignored (`status.ignoredTargets`). Every replica serves DNS, leader
//! or not; `/readyz` says ready once the first hub snapshot is loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use causeway_config::{ConfigError, Document};
use causeway_hubstore::{Hub, HubObject, Kind, LastGood, Snapshot, Verdict};
use causeway_model::Placement;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::builder::normalize_service;
use crate::inputs::Inputs;
use crate::load::LoadedConfig;
use crate::{RunOptions, reload};

/// The kinds a dns replica watches.
pub const KINDS: [Kind; 3] = [Kind::Zone, Kind::LatencyMap, Kind::Placement];

/// How often the leader compares the status it wants (health) with what is written.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// How long a status write is trusted before the watch shows it (not written again).
const ECHO_WAIT: Duration = Duration::from_secs(10);

/// Most GSLB names listed in one Zone's `status.gslb`.
pub const MAX_STATUS_NAMES: usize = 100;

/// The Lease that picks the replica writing status.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Its name (`causeway-dns`), in the hub namespace.
    pub name: String,
    /// Its duration; the holder renews every third of it.
    pub duration: Duration,
    /// This replica's holder identity.
    pub identity: String,
}

/// How to run in production mode.
#[derive(Debug)]
pub struct HubOptions {
    /// The config file: the base documents.
    pub file: PathBuf,
    /// Listen addresses replacing `spec.listen` (empty: the file's).
    pub listen: Vec<SocketAddr>,
    /// API address replacing `spec.api`.
    pub api: Option<SocketAddr>,
    /// The hub namespace.
    pub hub: Hub,
    /// The status writer's Lease.
    pub lease: LeaseSettings,
}

/// Why production mode did not start.
#[derive(Debug, thiserror::Error)]
pub enum HubRunError {
    /// The config file does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server did not start.
    #[error(transparent)]
    Start(#[from] crate::Error),
}

/// Runs the DNS server in production mode until `shutdown`.
pub async fn run(opts: HubOptions, shutdown: CancellationToken) -> Result<(), HubRunError> {
    let base = causeway_config::read_file(&opts.file)?;
    let first = LoadedConfig::from_documents_allowing_no_zone(&opts.file, &base)?;
    let watch_file = first.config.server.watch;
    let server = crate::start_managed(
        RunOptions {
            config: first,
            listen: opts.listen,
            api: opts.api,
        },
        shutdown.clone(),
    )
    .await?;
    let inputs = server.inputs();
    info!(namespace = opts.hub.namespace(), kinds = ?KINDS, "production mode: watching the hub");
    let snapshots = opts.hub.watch(&KINDS, shutdown.clone());

    let (leader_tx, leader_rx) = watch::channel(false);
    let lease_api: kube::Api<Lease> =
        kube::Api::namespaced(opts.hub.client(), opts.hub.namespace());
    let lease = causeway_election::LeaseConfig {
        // Not read: the Api above is built from the hub connection.
        kubeconfig: PathBuf::from("hub"),
        namespace: opts.hub.namespace().to_string(),
        name: opts.lease.name.clone(),
        duration: opts.lease.duration,
        identity: opts.lease.identity.clone(),
    };
    tokio::spawn(causeway_election::run(
        lease_api,
        lease,
        leader_tx,
        shutdown.clone(),
    ));

    let control = Control {
        file: opts.file,
        watch_file,
        base,
        hub: opts.hub,
        identity: opts.lease.identity,
        inputs,
        last_good: LastGood::default(),
        known: BTreeSet::new(),
        loaded: None,
        placements: BTreeMap::new(),
        verdicts: Vec::new(),
        written: BTreeMap::new(),
        ready: false,
    };
    let control = tokio::spawn(control.run(snapshots, leader_rx, shutdown.clone()));
    server.run().await;
    shutdown.cancel();
    let _ = control.await;
    Ok(())
}

/// What became of one `Placement` object.
#[derive(Debug, Clone)]
struct Applied {
    /// The object's document when it was applied.
    document: Value,
    /// The service whose placement it set (normalised): this version's, or, when this
    /// version was refused, the last good one's (still in effect).
    service: Option<String>,
    /// Ignored targets (`field: why`), or why it was refused.
    result: Result<Vec<String>, String>,
}

/// The loop that keeps the server on the hub's objects.
struct Control {
    file: PathBuf,
    watch_file: bool,
    /// The file's documents, as last read well.
    base: Vec<Document>,
    hub: Hub,
    identity: String,
    inputs: Inputs,
    last_good: LastGood,
    /// Zones and LatencyMaps some version of which this replica has loaded (its
    /// [`LastGood`] has a version to put back).
    known: BTreeSet<(Kind, String)>,
    /// The snapshot whose specs were last loaded.
    loaded: Option<Arc<Snapshot>>,
    /// Placement objects by name.
    placements: BTreeMap<String, Applied>,
    /// The verdicts of the last load (Zones, LatencyMaps, Placements).
    verdicts: Vec<Verdict>,
    /// Extra status written (leader only), and when: not written again until the watch
    /// shows it or [`ECHO_WAIT`] passes.
    written: BTreeMap<(Kind, String), (Value, Instant)>,
    ready: bool,
}

impl Control {
    async fn run(
        mut self,
        mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
        mut leader: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; reload on file change only");
                None
            }
        };
        let mut poll = tokio::time::interval(reload::POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status_tick = tokio::time::interval(STATUS_EVERY);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stamp = file_stamp(&self.file);
        let mut is_leader = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = snapshots.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let Some(snap) = snapshots.borrow_and_update().clone() else { continue };
                    let specs_changed = self.loaded.as_deref().is_none_or(|l| l.specs_differ(&snap));
                    if specs_changed {
                        self.load(&snap).await;
                    }
                    if is_leader {
                        self.write_status(&snap).await;
                    }
                }
                r = leader.changed() => {
                    if r.is_err() {
                        return;
                    }
                    is_leader = *leader.borrow_and_update();
                    if is_leader {
                        info!(identity = %self.identity, "writing status: this replica holds the lease");
                        self.written.clear();
                        let snap = snapshots.borrow().clone();
                        if let Some(snap) = snap {
                            self.write_status(&snap).await;
                        }
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    let snap = snapshots.borrow().clone();
                    self.reload_file("SIGHUP", snap).await;
                }
                _ = poll.tick(), if self.watch_file => {
                    let now = file_stamp(&self.file);
                    if now != stamp {
                        stamp = now;
                        let snap = snapshots.borrow().clone();
                        self.reload_file("file changed", snap).await;
                    }
                }
                _ = status_tick.tick(), if is_leader => {
                    let snap = snapshots.borrow().clone();
                    if let Some(snap) = snap {
                        self.write_status(&snap).await;
                    }
                }
            }
        }
    }

    /// Reads the file again and loads it with the hub's objects.
    async fn reload_file(&mut self, why: &str, snap: Option<Arc<Snapshot>>) {
        let file = self.file.clone();
        let read = tokio::task::spawn_blocking(move || causeway_config::read_file(&file)).await;
        match read {
            Ok(Ok(docs)) => {
                info!(file = %self.file.display(), reason = why, "reading the config file again");
                self.base = docs;
            }
            Ok(Err(e)) => {
                self.inputs.reload_failed();
                error!(
                    reason = why,
                    "invalid configuration: {e}; keeping the last good configuration"
                );
                return;
            }
            Err(e) => {
                error!(error = %e, "reload task failed");
                return;
            }
        }
        match snap {
            Some(snap) => self.load(&snap).await,
            None => {
                // No hub snapshot yet: the file alone.
                match LoadedConfig::from_documents_allowing_no_zone(&self.file, &self.base) {
                    Ok(loaded) => {
                        self.watch_file = loaded.config.server.watch;
                        let _ = self.inputs.reload(loaded).await;
                    }
                    Err(e) => {
                        self.inputs.reload_failed();
                        error!(
                            reason = why,
                            "invalid configuration: {e}; keeping the last good configuration"
                        );
                    }
                }
            }
        }
    }

    /// Loads the base and the Zones and LatencyMaps of `snap`, then applies its
    /// Placements.
    async fn load(&mut self, snap: &Arc<Snapshot>) {
        let config_objects = Snapshot {
            objects: snap
                .objects
                .iter()
                .filter(|o| o.kind != Kind::Placement)
                .cloned()
                .collect(),
        };
        let mut last_good = std::mem::take(&mut self.last_good);
        let base = self.base.clone();
        let file = self.file.clone();
        let known = self.known.clone();
        let job = tokio::task::spawn_blocking(move || {
            let load =
                |docs: &[Document]| LoadedConfig::from_documents_allowing_no_zone(&file, docs);
            let first = last_good.load(&base, &config_objects, load);
            // Refused objects this replica never loaded (it started after the bad change):
            // load the last good spec the leader keeps in their status instead, so it
            // answers as the replicas that ran through the change.
            let refused: Vec<(Kind, String)> = first
                .verdicts
                .iter()
                .filter(|v| v.result.is_err() && !known.contains(&(v.kind, v.name.clone())))
                .map(|v| (v.kind, v.name.clone()))
                .collect();
            let mut substituted = Vec::new();
            let mut objects = config_objects.clone();
            for o in &mut objects.objects {
                if refused.contains(&(o.kind, o.name.clone()))
                    && let Some(spec) = status_last_good(o)
                {
                    o.document["spec"] = spec;
                    substituted.push((o.kind, o.name.clone()));
                }
            }
            if substituted.is_empty() {
                return (last_good, first, Vec::new());
            }
            let second = last_good.load(&base, &objects, load);
            substituted.retain(|k| {
                second
                    .verdicts
                    .iter()
                    .any(|v| (v.kind, &v.name) == (k.0, &k.1) && v.result.is_ok())
            });
            let loaded = causeway_hubstore::Loaded {
                config: second.config,
                verdicts: first.verdicts,
            };
            (last_good, loaded, substituted)
        })
        .await;
        let (last_good, loaded, substituted) = match job {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "the loader failed; keeping the last good configuration");
                return;
            }
        };
        self.last_good = last_good;
        for key in substituted {
            warn!(object = %format!("{}/{}", key.0, key.1), "refused; serving the last good spec kept in its status");
            self.known.insert(key);
        }
        let mut verdicts = loaded.verdicts;
        for v in &verdicts {
            if v.result.is_ok() {
                self.known.insert((v.kind, v.name.clone()));
            }
        }
        self.known
            .retain(|(kind, name)| snap.get(*kind, name).is_some());
        match loaded.config {
            Ok(config) => {
                self.watch_file = config.config.server.watch;
                let (zones, gslb) = (config.zones.zones.len(), config.zones.gslb.len());
                if self.inputs.reload(config).await.is_err() {
                    return;
                }
                info!(
                    zones,
                    gslb,
                    objects = snap.objects.len(),
                    "hub objects loaded"
                );
            }
            Err(e) => {
                self.inputs.reload_failed();
                error!("invalid configuration: {e}; keeping the last good configuration");
            }
        }
        self.apply_placements(snap);
        verdicts.extend(self.placement_verdicts(snap));
        self.verdicts = verdicts;
        self.loaded = Some(snap.clone());
        if !self.ready {
            self.ready = true;
            self.inputs.set_ready(true);
            info!(
                objects = snap.objects.len(),
                "ready: the first hub snapshot is loaded"
            );
        }
    }

    /// Applies new and changed Placement objects (and those that failed or had targets
    /// ignored before: the zones may have changed), and removes the placements of
    /// deleted ones.
    fn apply_placements(&mut self, snap: &Snapshot) {
        let gone: Vec<String> = self
            .placements
            .keys()
            .filter(|name| snap.get(Kind::Placement, name).is_none())
            .cloned()
            .collect();
        let mut removals: Vec<String> = Vec::new();
        for name in gone {
            if let Some(Applied {
                service: Some(s), ..
            }) = self.placements.remove(&name)
            {
                info!(placement = %name, service = %s, "Placement deleted: placement removed");
                removals.push(s);
            }
        }
        for o in snap.of(Kind::Placement) {
            let before = self.placements.get(&o.name);
            let redo = match before {
                None => true,
                Some(a) => a.document != o.document || !matches!(&a.result, Ok(i) if i.is_empty()),
            };
            if !redo {
                continue;
            }
            let old_service = before.and_then(|a| a.service.clone());
            let mut applied = apply_one(&self.inputs, o);
            if let Err(why) = &applied.result {
                // Its last good version stays in effect: this replica's, or, if it never
                // applied one (it started after the bad change), the one the leader keeps
                // in the status.
                warn!(placement = %o.name, error = %why, "Placement refused; its last good version stays");
                applied.service = old_service.or_else(|| {
                    let spec = status_last_good(o)?;
                    let mut good = o.clone();
                    good.document["spec"] = spec;
                    let a = apply_one(&self.inputs, &good);
                    if a.result.is_ok() {
                        warn!(placement = %o.name, "applied the last good spec kept in its status");
                    }
                    a.result.is_ok().then_some(a.service).flatten()
                });
            } else if let Some(old) = old_service
                && applied.service.as_ref() != Some(&old)
            {
                removals.push(old);
            }
            self.placements.insert(o.name.clone(), applied);
        }
        // A service another object still places is not removed.
        let placed: Vec<&String> = self
            .placements
            .values()
            .filter_map(|a| a.service.as_ref())
            .collect();
        removals.retain(|s| !placed.contains(&s));
        if !removals.is_empty() {
            self.inputs.remove_placements(removals);
        }
    }

    fn placement_verdicts(&self, snap: &Snapshot) -> Vec<Verdict> {
        snap.of(Kind::Placement)
            .map(|o| Verdict {
                kind: Kind::Placement,
                name: o.name.clone(),
                generation: o.generation,
                result: match self.placements.get(&o.name).map(|a| &a.result) {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(why)) => Err(why.clone()),
                    None => Err("not applied".into()),
                },
            })
            .collect()
    }

    /// The leader's status writes: verdicts, then the extra fields that differ.
    async fn write_status(&mut self, snap: &Snapshot) {
        let verdicts = self.hub.write_verdicts(snap, &self.verdicts).await;
        let dns = self.inputs.snapshot();
        let mut extra = 0;
        for o in &snap.objects {
            let want = match o.kind {
                Kind::Zone => json!({
                    "writer": self.identity,
                    "gslb": zone_health(&dns, o),
                }),
                Kind::Placement => json!({
                    "writer": self.identity,
                    "ignoredTargets": self
                        .placements
                        .get(&o.name)
                        .and_then(|a| a.result.as_ref().ok())
                        .cloned()
                        .unwrap_or_default(),
                }),
                _ => json!({ "writer": self.identity }),
            };
            let mut want = want;
            if matches!(o.kind, Kind::Zone | Kind::LatencyMap | Kind::Placement)
                && self
                    .verdicts
                    .iter()
                    .any(|v| v.kind == o.kind && v.name == o.name && v.result.is_ok())
            {
                want["lastGood"] = json!({
                    "generation": o.generation,
                    "spec": o.document["spec"],
                });
            }
            let key = (o.kind, o.name.clone());
            if status_has(o.status.as_ref(), &want) {
                self.written.remove(&key);
                continue;
            }
            if let Some((w, at)) = self.written.get(&key)
                && *w == want
                && at.elapsed() < ECHO_WAIT
            {
                continue;
            }
            match self.hub.write_status(o.kind, &o.name, want.clone()).await {
                Ok(()) => {
                    extra += 1;
                    self.written.insert(key, (want, Instant::now()));
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => warn!(error = %e, "cannot write status"),
            }
        }
        if verdicts + extra > 0 {
            info!(
                verdicts,
                extra,
                writer = %self.identity,
                "status written"
            );
        }
    }
}

/// Parses and applies one Placement object.
fn apply_one(inputs: &Inputs, o: &HubObject) -> Applied {
    let placement: Result<Placement, String> = o
        .to_document()
        .and_then(|d| d.spec::<Placement>())
        .map_err(|e| e.to_string());
    let placement = match placement {
        Ok(p) => p,
        Err(why) => {
            return Applied {
                document: o.document.clone(),
                service: None,
                result: Err(why),
            };
        }
    };
    let service = normalize_service(&placement.service);
    let result = inputs
        .placements_at(vec![placement], |_| "spec".into())
        .map(|(_, ignored)| ignored)
        .map_err(|e| format!("{}: {e}", o.object()));
    Applied {
        document: o.document.clone(),
        service: result.is_ok().then_some(service),
        result,
    }
}

/// The spec of `status.lastGood`, when it is about an older generation than `o`'s.
fn status_last_good(o: &HubObject) -> Option<Value> {
    let last = o.status.as_ref()?.get("lastGood")?;
    let generation = last.get("generation")?.as_i64();
    (generation != o.generation).then(|| last.get("spec").cloned())?
}

/// Whether `status` holds every field of `want` with the same value.
fn status_has(status: Option<&Value>, want: &Value) -> bool {
    let (Some(status), Some(want)) = (status, want.as_object()) else {
        return false;
    };
    want.iter().all(|(k, v)| status.get(k) == Some(v))
}

/// `status.gslb` of a Zone object: each GSLB name of the zone it serves (the last good
/// version), its targets and their health as this replica sees them.
fn zone_health(dns: &crate::state::Snapshot, o: &HubObject) -> Value {
    let Some(origin) = o.document["spec"]["origin"].as_str() else {
        return json!([]);
    };
    let origin = normalize_service(origin);
    let Some(zone) = dns
        .zones
        .zones
        .iter()
        .position(|z| z.label.eq_ignore_ascii_case(&origin))
    else {
        return json!([]);
    };
    let names: Vec<Value> = dns
        .zones
        .gslb
        .iter()
        .enumerate()
        .filter(|(_, g)| g.zone == zone)
        .take(MAX_STATUS_NAMES)
        .map(|(gi, g)| {
            let targets: Vec<Value> = g
                .targets
                .iter()
                .enumerate()
                .map(|(ti, t)| {
                    json!({
                        "cluster": t.cluster.as_str(),
                        "healthy": dns.is_healthy(gi, ti),
                        "role": format!("{:?}", dns.role(gi, ti)).to_lowercase(),
                        "weight": dns.weight(gi, ti),
                    })
                })
                .collect();
            let healthy = (0..g.targets.len())
                .filter(|&ti| dns.is_healthy(gi, ti))
                .count();
            json!({
                "name": g.fqdn,
                "healthy": format!("{healthy}/{}", g.targets.len()),
                "targets": targets,
            })
        })
        .collect();
    Value::Array(names)
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_ONLY: &str = "apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {name: s}
spec: {listen: [\"127.0.0.1:0\"]}
";

    #[test]
    fn a_file_without_zones_loads_in_production_mode() {
        let file = Path::new("dns.yaml");
        let docs = causeway_config::parse_str(file, SERVER_ONLY).expect("parses");
        assert!(LoadedConfig::from_documents(file, &docs).is_err());
        let loaded = LoadedConfig::from_documents_allowing_no_zone(file, &docs).expect("loads");
        assert!(loaded.zones.zones.is_empty());
        assert_eq!(loaded.config.server.listen.len(), 1);
        // An invalid DnsServer is still refused.
        let bad = SERVER_ONLY.replace("spec: {", "spec: {udpSocketsPerAddress: 0, ");
        let docs = causeway_config::parse_str(file, &bad).expect("parses");
        let e = LoadedConfig::from_documents_allowing_no_zone(file, &docs).unwrap_err();
        assert!(e.to_string().contains("udpSocketsPerAddress"), "{e}");
    }

    #[test]
    fn status_fields_compare_by_key() {
        let want = json!({"writer": "a", "gslb": []});
        assert!(status_has(
            Some(&json!({"writer": "a", "gslb": [], "conditions": []})),
            &want
        ));
        assert!(!status_has(
            Some(&json!({"writer": "b", "gslb": []})),
            &want
        ));
        assert!(!status_has(None, &want));
    }
}
