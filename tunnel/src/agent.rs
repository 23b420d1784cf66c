//! The agent: holds sessions open to the stub(s) and forwards every stream to the
//! local API server.
//!
//! Stages: [`dialer`] (connect with backoff, serve the session) → [`forward`]
//! (identity → impersonation headers, the ServiceAccount token) → [`upstream`]
//! (HTTP/2 pool, HTTP/1.1 for upgrades); [`metrics`] counts them. Beside them,
//! [`fence`] demotes the local primary when its role Lease is not renewed, and
//! [`prober`] measures latency for the stub to report (`--probe-config`). Before any of
//! it, [`identity_secret`] may share the enrolled identity through a Secret.

pub mod dialer;
pub mod fence;
pub mod forward;
pub mod identity_secret;
pub mod metrics;
pub mod prober;
pub mod upstream;

use std::sync::Arc;

use causeway_model::cluster::ClusterId;
use tokio_util::sync::CancellationToken;

pub use dialer::StubTarget;
pub use fence::FenceConfig;
pub use forward::{Forwarder, TokenSource};
pub use upstream::{Upstream, UpstreamConfig};

/// Everything the agent needs to run.
pub struct AgentConfig {
    /// The cluster this agent serves (bound into its certificate).
    pub cluster: ClusterId,
    /// Stubs to dial; the agent holds sessions to all of them (HA stubs).
    pub stubs: Vec<StubTarget>,
    /// Sessions per stub (streams are balanced across them and across agents).
    pub sessions_per_stub: usize,
    /// HTTP/1.1 data connections held beside each session for short requests (0: none).
    pub data_connections: usize,
    /// Client TLS for the stub: trusts the stub CA, presents the agent certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// The local API server.
    pub upstream: UpstreamConfig,
    /// The agent's ServiceAccount token.
    pub token: TokenSource,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (none: not served).
    pub metrics_listener: Option<tokio::net::TcpListener>,
    /// Self-fencing through role Leases (none: off).
    pub fence: Option<FenceConfig>,
    /// Measured latency: the prober's config (none: no prober; [`prober`]).
    pub prober: Option<causeway_probe::ProberConfig>,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The API-server client could not be built.
    #[error("{0}")]
    Upstream(#[from] upstream::UpstreamError),
    /// Nothing to dial.
    #[error("no stub address given")]
    NoStub,
}

/// Runs the agent until `shutdown`.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    if config.stubs.is_empty() {
        return Err(AgentError::NoStub);
    }
    let with_alpn = |alpn: &[u8]| {
        let mut tls = (*config.tls).clone();
        tls.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(tls)
    };
    let metrics = Arc::new(metrics::AgentMetrics::new());
    let forwarder = Arc::new(Forwarder::new(
        Upstream::new(config.upstream)?,
        config.token,
        metrics.clone(),
    ));
    let dialer = Arc::new(dialer::Dialer {
        tls: with_alpn(crate::protocol::ALPN_TUNNEL),
        data_tls: with_alpn(crate::protocol::ALPN_DATA),
        data_connections: config.data_connections,
        forwarder: forwarder.clone(),
        metrics: metrics.clone(),
        prober: config
            .prober
            .map(|c| prober::Prober::start(c, shutdown.clone())),
    });
    tracing::info!(
        cluster = %config.cluster,
        stubs = config.stubs.len(),
        sessions_per_stub = config.sessions_per_stub,
        data_connections = config.data_connections,
        "agent starting"
    );
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(listener) = config.metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("listening on metrics http://{addr}");
        }
        tasks.spawn(metrics::serve(metrics.clone(), listener, shutdown.clone()));
    }
    match config.fence {
        Some(fence) => {
            tasks.spawn(fence::run(
                fence,
                config.cluster.clone(),
                forwarder,
                metrics.clone(),
                shutdown.clone(),
            ));
        }
        None => tracing::info!("self-fencing off"),
    }
    for target in &config.stubs {
        for slot in 0..config.sessions_per_stub.max(1) {
            tasks.spawn(dialer::hold(
                dialer.clone(),
                target.clone(),
                slot,
                shutdown.clone(),
            ));
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
