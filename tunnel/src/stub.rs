//! The stub: users' HTTPS listener, agents' listener, metrics listener.
//!
//! A request's path, one step per file: [`listener`] (TLS, HTTP/1.1 + HTTP/2) →
//! [`gate`] (`Authenticated` → `Authorized`) → [`route`] (`/clusters/<id>/…`) →
//! [`registry`] (a live session, two random choices) → [`forward`] (a stream on the
//! session, upgrade splice) → [`exchange`] (audit event + metrics when it ends).

pub mod admin;
pub mod agents;
pub mod enrol;
pub mod exchange;
pub mod forward;
pub mod gate;
pub mod listener;
pub mod registry;
pub mod route;
mod stand_in;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use causeway_model::cluster::ClusterId;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::authz::AccessPolicy;
use crate::metrics::Metrics;
pub use registry::Registry;
pub use stand_in::UserStore;

/// Checks an agent certificate (already verified against the CA) at session start,
/// e.g. against revocations and the list of enrolled clusters.
pub type AgentCheck =
    Box<dyn Fn(&CertificateDer<'_>, &ClusterId) -> Result<(), String> + Send + Sync>;

/// Whether a cluster ID was enrolled.
pub type EnrolledCheck = Box<dyn Fn(&ClusterId) -> bool + Send + Sync>;

/// State shared by every connection of a stub.
pub struct Shared {
    /// Live sessions.
    pub registry: Registry,
    /// Metric handles.
    pub metrics: Arc<Metrics>,
    /// Who may reach which cluster.
    pub policy: AccessPolicy,
    /// Users, revocations, bearer tokens.
    pub users: UserStore,
    /// The audit log, if configured.
    pub audit: Option<Arc<AuditLog>>,
    /// Enrolled clusters.
    pub enrolled: EnrolledCheck,
    /// Extra checks on agent certificates.
    pub agent_allowed: AgentCheck,
    active: AtomicBool,
}

impl Shared {
    /// Whether this stub serves users now (holds the lease, or runs without one).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Switches serving on or off (the lease does this).
    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Release);
        self.metrics.active.set(i64::from(on));
    }
}

/// One user connection: where it came from and its client certificate.
pub struct ConnInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// The verified client certificate, if one was sent.
    pub cert: Option<CertificateDer<'static>>,
}

/// The stub's parts, built from its configuration.
pub struct StubParts {
    /// Access policy.
    pub policy: AccessPolicy,
    /// User store.
    pub users: UserStore,
    /// Audit log.
    pub audit: Option<Arc<AuditLog>>,
    /// TLS of the users' listener (client certificate optional).
    pub user_tls: rustls::ServerConfig,
    /// TLS of the agents' listener (client certificate optional, checked per route).
    pub agent_tls: rustls::ServerConfig,
    /// Enrolled clusters.
    pub enrolled: EnrolledCheck,
    /// Extra checks on agent certificates.
    pub agent_allowed: AgentCheck,
    /// Starts on standby (a lease task will switch it on).
    pub standby: bool,
}

/// The stub's bound listeners (the caller binds, so tests can use port 0).
pub struct Listeners {
    /// Users' HTTPS.
    pub users: TcpListener,
    /// Agents' TLS.
    pub agents: TcpListener,
    /// Metrics, plain HTTP.
    pub metrics: TcpListener,
}

/// A running stub's handle.
pub struct StubHandle {
    /// Shared state (registry, metrics, active flag).
    pub shared: Arc<Shared>,
    /// Bound addresses: users, agents, metrics.
    pub addrs: [SocketAddr; 3],
    tasks: tokio::task::JoinSet<()>,
}

impl StubHandle {
    /// Waits until every listener task ended (after shutdown).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Why a stub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StubError {
    /// A listener address could not be read.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Starts serving on `listeners` until `shutdown`; logs `listening on <name> <url>`
/// once per listener.
pub fn start(
    parts: StubParts,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<StubHandle, StubError> {
    let metrics = Arc::new(Metrics::new());
    let shared = Arc::new(Shared {
        registry: Registry::new(metrics.clone()),
        metrics,
        policy: parts.policy,
        users: parts.users,
        audit: parts.audit,
        enrolled: parts.enrolled,
        agent_allowed: parts.agent_allowed,
        active: AtomicBool::new(false),
    });
    shared.set_active(!parts.standby);
    let addrs = [
        listeners.users.local_addr()?,
        listeners.agents.local_addr()?,
        listeners.metrics.local_addr()?,
    ];
    let mut user_tls = parts.user_tls;
    user_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut agent_tls = parts.agent_tls;
    agent_tls.alpn_protocols = vec![crate::protocol::ALPN_TUNNEL.to_vec(), b"http/1.1".to_vec()];
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(listener::serve_users(
        shared.clone(),
        listeners.users,
        Arc::new(user_tls),
        shutdown.clone(),
    ));
    tasks.spawn(agents::serve_agents(
        shared.clone(),
        listeners.agents,
        Arc::new(agent_tls),
        shutdown.clone(),
    ));
    tasks.spawn(admin::serve_admin(
        shared.clone(),
        listeners.metrics,
        shutdown.clone(),
    ));
    tracing::info!("listening on users https://{}", addrs[0]);
    tracing::info!("listening on agents https://{}", addrs[1]);
    tracing::info!("listening on metrics http://{}", addrs[2]);
    Ok(StubHandle {
        shared,
        addrs,
        tasks,
    })
}
