//! Causeway's authoritative GSLB DNS server.
//!
//! Service domains (`svc.example.`) are delegated here; each query is answered with
//! the healthy cluster that suits the asking client best, by policy.
//!
//! **Start here:** [`run`] wires everything together ([`start`] then [`Server::run`]);
//! a query's life is in [`handler`]. Other parts feed it through the HTTP [`api`] or, in
//! the same process, an [`Inputs`] handle.
//!
//! # Module map
//!
//! | module | what it does |
//! |---|---|
//! | [`config`] | the YAML file (`DnsServer`, `Zone`, `LatencyMap`) read through `causeway-config`, every value validated |
//! | [`zone`] | compiled zones: names → RRsets or GSLB names, delegations, health checks, lookup |
//! | [`load`] | config → compiled zones → probe targets, every error at `file:line:column` |
//! | [`state`] | the immutable [`state::Snapshot`] queries read, published with arc-swap; [`state::ServerState`] |
//! | [`builder`] | the one task that turns config + health + placement + latency into snapshots |
//! | [`inputs`] | placements and health reports, validated, from HTTP or in process ([`Inputs`]) |
//! | [`policy`] | `latency`, `failover`, `weighted`, `all-healthy`: pure functions with ECS scope |
//! | [`latency`] | the latency map: longest-prefix match, posted measurements aged by moka |
//! | [`health`] | HTTP/HTTPS/TCP probes of compiled checks, rise/fall hysteresis, external reports |
//! | [`ecs`] | EDNS Client Subnet (RFC 7871) |
//! | [`wire`] | query parsing and per-query reply patches on the wire |
//! | [`answer`] | the slow path: builds and encodes a reply once (hickory-proto) |
//! | [`handler`] | the query path: parse → rate limit → prepared-reply cache → patch |
//! | [`server`] | UDP (SO_REUSEPORT, a thread per socket) and TCP (pipelining, idle timeout, cap) |
//! | [`api`] | HTTP API: latency, health and placement input, explain, metrics, healthz/readyz |
//! | [`explain`] | why a name answers what it does |
//! | [`metrics`] | Prometheus metric names and handles |
//! | [`reload`] | SIGHUP and file-change reload, keeping the last good config |
//! | [`hub`] | production mode: zones, latency maps and placements from a hub cluster, status, the `causeway-dns` Lease |
//! | [`ratelimit`] | per-client-prefix response rate limiting with slip |
//! | [`scalegen`] | large generated configs for benchmarks and the memory test |
#![warn(missing_docs)]
#![deny(clippy::print_stdout, clippy::dbg_macro)]

pub mod answer;
pub mod api;
pub mod builder;
pub mod config;
pub mod dnssec;
pub mod ecs;
pub mod explain;
pub mod handler;
pub mod health;
pub mod hub;
pub mod inputs;
pub mod latency;
pub mod load;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod reload;
pub mod scalegen;
pub mod server;
pub mod state;
pub mod wire;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::info;

pub use causeway_config::ConfigError;
pub use config::Config;
pub use inputs::{InputError, Inputs};
pub use load::LoadedConfig;

/// Error starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A DNS socket could not be bound.
    #[error(transparent)]
    Bind(#[from] server::BindError),
    /// The API socket could not be bound.
    #[error("cannot bind http {addr}: {source}")]
    BindApi {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No listen address given.
    #[error("no listen address: set spec.listen in the DnsServer document or pass --listen")]
    NoListen,
    /// Starting a worker failed.
    #[error("cannot start workers: {0}")]
    Start(#[source] std::io::Error),
}

/// How to run.
#[derive(Debug)]
pub struct RunOptions {
    /// The configuration, loaded.
    pub config: LoadedConfig,
    /// Listen addresses replacing `spec.listen` (empty: use the config).
    pub listen: Vec<SocketAddr>,
    /// API address replacing `spec.api`.
    pub api: Option<SocketAddr>,
}

/// Runs the DNS server until `shutdown` is cancelled.
pub async fn run(opts: RunOptions, shutdown: CancellationToken) -> Result<(), Error> {
    start(opts, shutdown).await?.run().await;
    Ok(())
}

/// A started server: sockets bound, first snapshot published, serving. [`Self::inputs`]
/// feeds it in process; [`Self::run`] keeps it going until shutdown.
pub struct Server {
    builder: builder::Builder,
    rx: tokio::sync::mpsc::UnboundedReceiver<builder::Event>,
    servers: server::Servers,
    inputs: Inputs,
    dns_addrs: Vec<SocketAddr>,
    api_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Server")
    }
}

impl Server {
    /// A handle that takes placements and health reports without HTTP.
    pub fn inputs(&self) -> Inputs {
        self.inputs.clone()
    }

    /// The DNS addresses bound (UDP and TCP on each), ports filled in.
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    /// The HTTP API's address, if it has one.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// Applies inputs until `shutdown` (given to [`start`]), then stops the sockets.
    pub async fn run(self) {
        let Self {
            builder,
            rx,
            servers,
            ..
        } = self;
        builder.run(rx).await;
        info!("shutting down");
        let _ = tokio::task::spawn_blocking(move || servers.stop()).await;
    }
}

/// Binds the sockets, publishes the first snapshot and starts serving; the returned
/// [`Server`] must be [`Server::run`] for inputs to be applied.
pub async fn start(opts: RunOptions, shutdown: CancellationToken) -> Result<Server, Error> {
    start_as(opts, shutdown, false).await
}

/// [`start`] for a caller that owns reloading and readiness (production mode,
/// [`hub`]): the config file is not watched here (the caller reloads through
/// [`Inputs::reload`]) and `/readyz` stays 503 until [`Inputs::set_ready`]. DNS is
/// served from the start.
pub async fn start_managed(opts: RunOptions, shutdown: CancellationToken) -> Result<Server, Error> {
    start_as(opts, shutdown, true).await
}

async fn start_as(
    opts: RunOptions,
    shutdown: CancellationToken,
    managed: bool,
) -> Result<Server, Error> {
    let loaded = opts.config;
    let config = &loaded.config;
    let zones = loaded.zones.clone();
    let shared = Arc::new(state::ServerState::starting(zones.clone()));
    let store = latency::LatencyStore::new(
        config.server.latency.max_age.0,
        config.server.latency.max_entries,
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();

    let listen = if opts.listen.is_empty() {
        config.server.listen.clone()
    } else {
        opts.listen
    };
    if listen.is_empty() {
        return Err(Error::NoListen);
    }
    let bound = server::bind(&listen, config.server.udp_sockets_per_address)?;

    let api_listener = match opts.api.or(config.server.api) {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::BindApi { addr, source })?;
            let local = l
                .local_addr()
                .map_err(|source| Error::BindApi { addr, source })?;
            info!("listening on api http://{local}");
            Some((l, local))
        }
        None => None,
    };

    let watch = reload::WatchSettings::of(config);
    let tcp = config.server.tcp.clone();
    info!(
        file = %config.file.display(),
        zones = zones.zones.len(),
        names = zones.name_count(),
        gslb = zones.gslb.len(),
        "configuration loaded"
    );
    // The builder takes the config (and drops what it does not keep).
    let builder = builder::Builder::start(
        shared.clone(),
        loaded,
        store.clone(),
        tx.clone(),
        shutdown.clone(),
    );
    let dns_addrs: Vec<SocketAddr> = bound.iter().map(|b| b.addr).collect();
    let servers =
        server::serve(bound, shared.clone(), &tcp, shutdown.clone()).map_err(Error::Start)?;

    let inputs = Inputs::new(shared.clone(), tx.clone());
    let api_addr = api_listener.as_ref().map(|(_, a)| *a);
    if let Some((l, _)) = api_listener {
        tokio::spawn(api::serve(
            l,
            api::Api {
                shared: shared.clone(),
                events: tx.clone(),
                latency: store,
                inputs: inputs.clone(),
            },
            shutdown.clone(),
        ));
    }
    if !managed {
        tokio::spawn(reload::watch(watch, shared.clone(), tx, shutdown.clone()));
    }
    builder::trim_heap();
    {
        // Forget rate-limit state of quiet client networks.
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = t.tick() => {
                        if let Some(l) = &*shared.limiter.load() {
                            l.retain_recent();
                        }
                    }
                }
            }
        });
    }
    if !managed {
        shared.ready.store(true, Ordering::SeqCst);
        info!("ready");
    }
    Ok(Server {
        builder,
        rx,
        servers,
        inputs,
        dns_addrs,
        api_addr,
    })
}

/// Re-exported so the CLI can drive shutdown without its own dependency.
pub use tokio_util::sync::CancellationToken;
