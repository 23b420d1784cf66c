//! The scheduler's loop: observe → plan → apply → publish, every `interval`, plus its
//! HTTP endpoints.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /metrics` | Prometheus text |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 after the first round, else 503 |
//! | `GET /v1/plan` | the last decision table (text) |
//! | `POST /v1/external` | `{"policy":"web","value":650}`: an external demand value |
//!
//! The policy files are read again when one changes; a file that does not load is
//! logged with its `file:line:column` error and counted, and the last good policies
//! keep running.
//!
//! In production mode ([`RunOptions::hub`], `production.rs`) the hub's policy objects
//! are added to the files' documents, the leader writes their `status`, and placements
//! also go to the hub as `Placement` objects.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use causeway_election::LeaseConfig;
use causeway_hubstore::Hub;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::coordination::v1::Lease;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::apply::Applier;
use crate::metrics::Metrics;
use crate::observe::{self, Clusters};
use crate::plan::{self, Decision, Memory, Plan, Role};
use crate::policy::SchedulerConfig;
use crate::publish::{self, PlacementSink, Publisher};

mod production;

pub use production::{KINDS, MANAGER};

/// Why the scheduler cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration does not load.
    #[error(transparent)]
    Config(#[from] causeway_config::ConfigError),
    /// Member clients cannot be built.
    #[error(transparent)]
    Clients(#[from] observe::ClientsError),
    /// dns's API URL is wrong.
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    /// The metrics listener cannot bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Lease's hub cluster cannot be reached.
    #[error(transparent)]
    Lease(#[from] causeway_election::LeaseError),
    /// Metrics cannot be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// State shared with the HTTP endpoints.
#[derive(Default)]
struct Status {
    ready: bool,
    table: String,
    external: BTreeMap<String, f64>,
}

fn lock(s: &Mutex<Status>) -> std::sync::MutexGuard<'_, Status> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How [`run`] runs, beside its configuration files.
#[derive(Default)]
pub struct RunOptions {
    /// Elect one leader among several replicas with this Lease; none: this replica
    /// always writes.
    pub lease: Option<LeaseConfig>,
    /// A dns in the same process (`causeway hub`): placements go there and `dnsApi` is
    /// not used.
    pub dns: Option<Arc<dyn PlacementSink>>,
    /// The client of `lease` (production mode: the hub connection's); without it one is
    /// made from `lease.kubeconfig`.
    pub lease_api: Option<kube::Api<Lease>>,
    /// Production mode: the hub's policy objects are added to the files' documents, the
    /// leader writes their status and publishes placements as `Placement` objects there
    /// (as well as to `dnsApi`, when set).
    pub hub: Option<Hub>,
}

/// Runs the scheduler on `files` until `shutdown`.
///
/// With `options.lease`, several replicas elect one leader with a `coordination.k8s.io/v1`
/// Lease in a hub cluster (`causeway_election`, as the stubs do): every replica
/// observes and plans (standbys serve `/v1/plan` and metrics), only the leader writes to
/// members and publishes to dns, and leadership is checked again right before writing.
pub async fn run(
    files: Vec<PathBuf>,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let mut production = options
        .hub
        .clone()
        .map(|hub| production::Production::new(hub, shutdown.clone()));
    let mut config = match production.as_mut() {
        None => SchedulerConfig::load(&files)?,
        Some(p) => {
            if !p.listed(&shutdown).await {
                return Ok(());
            }
            p.load(&files)?
        }
    };
    let leader = match options.lease {
        None => None,
        Some(cfg) => {
            let api = match options.lease_api {
                Some(api) => api,
                None => causeway_election::client(&cfg).await?,
            };
            let (tx, rx) = watch::channel(false);
            info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "campaigning for the scheduler Lease");
            tokio::spawn(causeway_election::run(api, cfg, tx, shutdown.clone()));
            Some(rx)
        }
    };
    let is_leader = || leader.as_ref().is_none_or(|rx| *rx.borrow());
    let mut was_leader: Option<bool> = None;
    let mut stamps = mtimes(&files);
    let metrics = Metrics::new()?;
    let status = Arc::new(Mutex::new(Status::default()));
    if let Some(addr) = config.scheduler.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| RunError::Listen { addr, source })?;
        info!("listening on scheduler http://{local}");
        tokio::spawn(serve(
            listener,
            metrics.clone(),
            status.clone(),
            shutdown.clone(),
        ));
    }
    let mut clusters =
        Clusters::from_stub_kubeconfig(&config.scheduler.stub_kubeconfig, &config.clusters())
            .await?
            .with_watches();
    let mut publisher =
        Publisher::for_config(config.scheduler.dns_api.as_deref(), options.dns.as_ref())?;
    let mut hub_publisher = options
        .hub
        .clone()
        .map(|hub| Publisher::to_hub(hub, MANAGER));
    let mut applier = Applier::new(config.scheduler.writes_per_second);
    let mut memory = Memory::default();
    let mut last: BTreeMap<(String, String), (u32, String)> = BTreeMap::new();
    let mut burst_since: BTreeMap<String, BurstState> = BTreeMap::new();
    let mut rto_reported: BTreeMap<String, Duration> = BTreeMap::new();
    let started = Instant::now();
    info!(
        policies = config.policies().len(),
        clusters = config.clusters().len(),
        "scheduler started"
    );
    loop {
        let round = Instant::now();
        // Reload changed files; keep the last good configuration on error.
        let now_stamps = mtimes(&files);
        let hub_changed = production.as_ref().is_some_and(|p| p.changed());
        if now_stamps != stamps || hub_changed {
            stamps = now_stamps;
            let loaded = match production.as_mut() {
                None => SchedulerConfig::load(&files),
                Some(p) => p.load(&files),
            };
            match loaded {
                Ok(new) => {
                    if new.clusters() != config.clusters()
                        || new.scheduler.stub_kubeconfig != config.scheduler.stub_kubeconfig
                    {
                        match Clusters::from_stub_kubeconfig(
                            &new.scheduler.stub_kubeconfig,
                            &new.clusters(),
                        )
                        .await
                        {
                            Ok(c) => clusters = c.with_watches(),
                            Err(e) => {
                                warn!(error = %e, "reload: cannot build member clients; keeping the last good configuration")
                            }
                        }
                    }
                    if new.scheduler.dns_api != config.scheduler.dns_api {
                        publisher = Publisher::for_config(
                            new.scheduler.dns_api.as_deref(),
                            options.dns.as_ref(),
                        )
                        .ok()
                        .flatten();
                    }
                    info!(policies = new.policies().len(), "configuration reloaded");
                    config = new;
                }
                Err(e) => {
                    metrics.config_errors.inc();
                    metrics.rounds.with_label_values(&["config_error"]).inc();
                    warn!(error = %e, "configuration not reloaded; the last good policies keep running");
                }
            }
        }
        let interval = config.scheduler.interval.0;
        let timeout = interval.max(Duration::from_secs(5));

        let mut observed = observe::observe(&clusters, &config, timeout).await;
        observed.external = lock(&status).external.clone();
        observed.renewals = applier
            .renewals()
            .iter()
            .map(|(k, t)| (k.clone(), t.saturating_duration_since(started)))
            .collect();
        metrics
            .round_seconds
            .with_label_values(&["observe"])
            .observe(round.elapsed().as_secs_f64());

        let (plan, next) = plan::compute(&config, &observed, &memory, started.elapsed());
        memory = next;
        log_changes(&plan, &mut last);
        record(&metrics, &plan, &mut burst_since);
        record_failovers(&metrics, &config, &plan, &mut rto_reported);

        let leading = is_leader();
        if was_leader != Some(leading) {
            if leading {
                info!("leader: applying and publishing");
                if let Some(p) = production.as_mut() {
                    p.forget_writes();
                }
                if let Some(p) = hub_publisher.as_mut() {
                    p.forget();
                }
            } else {
                info!("standby: observing and planning only");
            }
            metrics.leader.set(i64::from(leading));
            was_leader = Some(leading);
        }
        let t = Instant::now();
        let outcomes = if leading {
            applier.apply(&clusters, &config, &observed, &plan).await
        } else {
            Vec::new()
        };
        for o in outcomes {
            let action = o.what.split(' ').next().unwrap_or("apply").to_string();
            match &o.result {
                Ok(()) => {
                    metrics
                        .writes
                        .with_label_values(&[o.cluster.as_str(), &action, "ok"])
                        .inc();
                    info!(policy = %o.policy, cluster = %o.cluster, what = %o.what, "applied");
                }
                Err(e) => {
                    metrics
                        .writes
                        .with_label_values(&[o.cluster.as_str(), &action, e.label()])
                        .inc();
                    warn!(policy = %o.policy, cluster = %o.cluster, what = %o.what, error = %e, "write failed");
                }
            }
        }
        metrics
            .round_seconds
            .with_label_values(&["apply"])
            .observe(t.elapsed().as_secs_f64());

        if let Some(p) = publisher.as_mut().filter(|_| is_leader()) {
            let placements = publish::placements(&config, &plan);
            match p.publish(&placements).await {
                Ok(true) => info!(placements = placements.len(), "published to dns"),
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot publish to dns"),
            }
        }
        if let Some(p) = hub_publisher.as_mut().filter(|_| is_leader()) {
            let placements = publish::placements(&config, &plan);
            // A hub that does not answer must not hold the rounds up (the client's own
            // read timeout is minutes).
            match tokio::time::timeout(timeout, p.publish(&placements)).await {
                Ok(Ok(true)) => info!(
                    placements = placements.len(),
                    "published Placement objects to the hub"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    // Sent again next round.
                    p.forget();
                    warn!(error = %e, "cannot publish Placement objects to the hub");
                }
                Err(_) => {
                    p.forget();
                    warn!(
                        timeout_seconds = timeout.as_secs(),
                        "the hub did not answer: Placement objects not published this round"
                    );
                }
            }
        }
        if let Some(p) = production.as_mut().filter(|_| is_leader())
            && tokio::time::timeout(timeout, p.write_status(&config, &plan, &metrics))
                .await
                .is_err()
        {
            warn!(
                timeout_seconds = timeout.as_secs(),
                "the hub did not answer: status not fully written this round"
            );
        }
        {
            let mut s = lock(&status);
            s.ready = true;
            s.table = plan.table();
        }
        metrics.rounds.with_label_values(&["ok"]).inc();
        metrics
            .round_seconds
            .with_label_values(&["total"])
            .observe(round.elapsed().as_secs_f64());

        let wait = interval.saturating_sub(round.elapsed());
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    info!("scheduler stopped");
    Ok(())
}

fn mtimes(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// Logs every decision whose planned count or reason changed since the last round.
fn log_changes(plan: &Plan, last: &mut BTreeMap<(String, String), (u32, String)>) {
    for Decision {
        policy,
        cluster,
        current,
        planned,
        reason,
        traffic,
        ..
    } in &plan.decisions
    {
        let key = (policy.clone(), cluster.to_string());
        let now = (*planned, reason.clone());
        if last.get(&key) != Some(&now) {
            info!(
                policy = %policy,
                cluster = %cluster,
                current,
                planned,
                dns = ?traffic,
                reason = %reason,
                demand = plan.demand.get(policy).map(String::as_str).unwrap_or(""),
                "decision"
            );
            last.insert(key, now);
        }
    }
}

/// Replica gauges, and the time from overflow to every burst replica Ready.
fn record(metrics: &Metrics, plan: &Plan, burst_since: &mut BTreeMap<String, BurstState>) {
    let mut burst: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for d in &plan.decisions {
        let labels = |kind| [d.policy.as_str(), d.cluster.as_str(), kind];
        metrics
            .replicas
            .with_label_values(&labels("current"))
            .set(i64::from(d.current));
        metrics
            .replicas
            .with_label_values(&labels("ready"))
            .set(i64::from(d.ready));
        metrics
            .replicas
            .with_label_values(&labels("planned"))
            .set(i64::from(d.planned));
        if matches!(d.role, Role::Home | Role::Burst) {
            let e = burst.entry(d.policy.as_str()).or_default();
            e.0 += d.planned;
            e.1 += d.ready.min(d.planned);
        }
    }
    for (policy, (planned, ready)) in burst {
        if planned == 0 {
            burst_since.remove(policy);
            continue;
        }
        let state = burst_since
            .entry(policy.to_string())
            .or_insert_with(|| BurstState::Waiting(Instant::now()));
        // Measured once per burst: from overflow first planned to every replica Ready.
        if let BurstState::Waiting(since) = *state
            && ready >= planned
        {
            let secs = since.elapsed().as_secs_f64();
            metrics
                .burst_ready_seconds
                .with_label_values(&[policy])
                .observe(secs);
            info!(
                policy,
                replicas = planned,
                seconds = secs,
                "burst replicas all Ready"
            );
            *state = BurstState::Ready;
        }
    }
}

/// The primary gauges, and each failover's RTO once, when the promoted cluster serves.
fn record_failovers(
    metrics: &Metrics,
    config: &SchedulerConfig,
    plan: &Plan,
    reported: &mut BTreeMap<String, Duration>,
) {
    for (policy, s) in &plan.failover {
        for c in config
            .failover
            .iter()
            .filter(|p| &p.name == policy)
            .flat_map(|p| p.spec.clusters())
        {
            metrics
                .primary
                .with_label_values(&[policy.as_str(), c.as_str()])
                .set(i64::from(c == &s.primary));
        }
        let Some(f) = &s.last else { continue };
        let Some(rto) = f.rto() else { continue };
        if reported.get(policy) == Some(&f.promoted_at) {
            continue;
        }
        reported.insert(policy.clone(), f.promoted_at);
        metrics.failovers.with_label_values(&[policy]).inc();
        metrics
            .failover_rto_seconds
            .with_label_values(&[policy])
            .set(rto.as_secs_f64());
        let target = config
            .failover
            .iter()
            .find(|p| &p.name == policy)
            .map(|p| p.spec.rto.0);
        let within = target.is_none_or(|t| rto <= t);
        if within {
            info!(policy = %policy, from = %f.from, to = %f.to, why = %f.why, rto_seconds = rto.as_secs_f64(), target_seconds = target.map(|t| t.as_secs()), "failover complete");
        } else {
            warn!(policy = %policy, from = %f.from, to = %f.to, why = %f.why, rto_seconds = rto.as_secs_f64(), target_seconds = target.map(|t| t.as_secs()), "failover complete, RTO above its target");
        }
    }
}

/// Where a policy's current burst is: waiting for its replicas since, or all Ready once.
#[derive(Clone, Copy)]
enum BurstState {
    Waiting(Instant),
    Ready,
}

async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    status: Arc<Mutex<Status>>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                let status = status.clone();
                async move { Ok::<_, Infallible>(handle(req, &metrics, &status).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    r
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalValue {
    policy: String,
    value: f64,
}

async fn handle(
    req: Request<Incoming>,
    metrics: &Metrics,
    status: &Mutex<Status>,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => text(StatusCode::OK, metrics.render()),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if lock(status).ready {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "first round not done\n")
            }
        }
        (&Method::GET, "/v1/plan") => text(StatusCode::OK, lock(status).table.clone()),
        (&Method::POST, "/v1/external") => {
            let body = match Limited::new(req.into_body(), 64 << 10).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("body: {e}\n")),
            };
            match serde_json::from_slice::<ExternalValue>(&body) {
                Ok(v) if v.value.is_finite() && v.value >= 0.0 => {
                    lock(status).external.insert(v.policy, v.value);
                    text(StatusCode::OK, "ok\n")
                }
                Ok(_) => text(
                    StatusCode::BAD_REQUEST,
                    "value must be a finite number >= 0\n",
                ),
                Err(e) => text(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"policy\":NAME,\"value\":NUMBER}}: {e}\n"),
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
