//! The stub: users' HTTPS listener, agents' listener, metrics listener.
//!
//! A request's path, one step per file: [`listener`] (TLS, HTTP/1.1 + HTTP/2; reads
//! the [`target`] `/clusters/<id>/…` for the audit record, deciding nothing on it) →
//! [`gate`] (`Authenticated` → `Authorized` → `Impersonated`) → [`route`] (an idle
//! [`data`] connection for a short request, else a stream on a live session from the
//! [`registry`], two random choices) → [`forward`] (the answer back; upgrade splice) →
//! [`exchange`] (audit event + metrics when it ends).
//!
//! Beside it: [`agents`] (the agents' listener: sessions, data connections,
//! [`enrol`]ment), [`admin`] (metrics and health), [`state`] (what every connection
//! shares).

pub mod admin;
pub mod agents;
pub mod data;
pub mod enrol;
pub mod exchange;
pub mod forward;
pub mod gate;
pub mod latency;
pub mod listener;
pub mod production;
pub mod registry;
pub mod route;
pub mod state;
pub mod target;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::authz::AccessPolicy;
use crate::config::OneDocumentFile;
use crate::enrol::Enroller;
use crate::metrics::Metrics;
use crate::users::UserStoreHandle;
pub use gate::ConnInfo;
pub use registry::Registry;
pub use state::{AgentCheck, EnrolledCheck, StubState};

/// The stub's parts, built from its configuration.
pub struct StubParts {
    /// Access policy.
    pub policy: AccessPolicy,
    /// User store.
    pub users: UserStoreHandle,
    /// Audit log.
    pub audit: Option<Arc<AuditLog>>,
    /// Enrolment handler; without one, enrolment requests get 404.
    pub enroller: Option<Arc<Enroller>>,
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
    /// The running stub's state (registry, metrics, active flag).
    pub shared: Arc<StubState>,
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
/// once per listener. Handshakes in progress are bounded by the default
/// [`crate::transport::HandshakeLimits`].
pub fn start(
    parts: StubParts,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<StubHandle, StubError> {
    start_with_handshakes(parts, listeners, Default::default(), shutdown)
}

/// [`start`], each TLS listener bounding its handshakes in progress by `handshakes`.
pub fn start_with_handshakes(
    parts: StubParts,
    listeners: Listeners,
    handshakes: crate::transport::HandshakeLimits,
    shutdown: CancellationToken,
) -> Result<StubHandle, StubError> {
    let shared = Arc::new(StubState::new(
        Arc::new(Metrics::new()),
        parts.policy,
        parts.users,
        parts.audit,
        parts.enroller,
        parts.enrolled,
        parts.agent_allowed,
    ));
    shared.set_active(!parts.standby);
    let addrs = [
        listeners.users.local_addr()?,
        listeners.agents.local_addr()?,
        listeners.metrics.local_addr()?,
    ];
    let mut user_tls = parts.user_tls;
    user_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut agent_tls = parts.agent_tls;
    agent_tls.alpn_protocols = vec![
        crate::protocol::ALPN_TUNNEL.to_vec(),
        crate::protocol::ALPN_DATA.to_vec(),
        b"http/1.1".to_vec(),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(listener::serve_users(
        shared.clone(),
        listeners.users,
        tls_server(&shared, "users", user_tls, handshakes),
        shutdown.clone(),
    ));
    tasks.spawn(agents::serve_agents(
        shared.clone(),
        listeners.agents,
        tls_server(&shared, "agents", agent_tls, handshakes),
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

/// `config` behind a handshake gate of `limits` that reports to the stub's metrics as
/// listener `name`.
fn tls_server(
    shared: &StubState,
    name: &str,
    config: rustls::ServerConfig,
    limits: crate::transport::HandshakeLimits,
) -> crate::transport::TlsServer {
    let m = &shared.metrics;
    let gate = crate::transport::HandshakeGate::new(limits).with_metrics(
        m.handshakes_in_progress.with_label_values(&[name]),
        m.handshakes_refused
            .with_label_values(&[name, "source_limit"]),
        m.handshakes_refused.with_label_values(&[name, "evicted"]),
    );
    crate::transport::TlsServer {
        config: Arc::new(config),
        handshakes: Arc::new(gate),
    }
}

/// Why a stub could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CA or serving certificate.
    #[error("{0}")]
    Pki(#[from] crate::pki::PkiError),
    /// The state directory.
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    /// Users or tokens.
    #[error("{0}")]
    Users(#[from] crate::users::UsersError),
    /// The access policy.
    #[error("{0}")]
    Policy(#[from] causeway_config::ConfigError),
    /// The audit log.
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    /// The hub cluster for the lease.
    #[error("{0}")]
    Lease(#[from] crate::lease::LeaseError),
    /// The state Secret in the hub (production mode).
    #[error("{0}")]
    Hub(#[from] crate::hub_state::SecretStateError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({which}): {source}")]
    Bind {
        /// Which listener.
        which: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Starting failed.
    #[error("{0}")]
    Start(#[from] StubError),
}

/// Lifetime of the stub's serving certificate (re-issued at every start).
const SERVER_CERT_TTL: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// Runs a stub from its configuration until `shutdown`: loads or creates the CA in
/// the state directory, binds the three listeners, campaigns for the lease if one is
/// configured.
pub async fn run(
    config: crate::config::StubConfig,
    shutdown: CancellationToken,
) -> Result<(), SetupError> {
    run_with_hub(config, None, shutdown).await
}

/// Production mode's part of [`run_with_hub`]: the hub namespace, and the URL users
/// reach the stub at (for the scheduler's kubeconfig; `None`: not made).
pub struct HubMode {
    /// The hub namespace (state Secret, AccessPolicies, scheduler identity).
    pub hub: causeway_hubstore::Hub,
    /// `https://HOST:PORT` of the users' listener as the scheduler reaches it.
    pub users_url: Option<String>,
}

/// [`run`], in production mode when `hub` is given: the state directory is a mirror of
/// the Secret [`crate::hub_state::SECRET_NAME`] (created with the CA by the first
/// replica), enrolments consume join tokens there by compare-and-swap, the access policy
/// adds the hub's `AccessPolicy` objects, and the active stub writes their status and the
/// scheduler's identity ([`production`]).
pub async fn run_with_hub(
    config: crate::config::StubConfig,
    hub: Option<HubMode>,
    shutdown: CancellationToken,
) -> Result<(), SetupError> {
    use crate::pki::Ca;
    let secret_state = match &hub {
        Some(h) => Some(Arc::new(
            crate::hub_state::SecretState::open(
                h.hub.clone(),
                crate::hub_state::SECRET_NAME,
                Some(&config.state_dir),
            )
            .await?,
        )),
        None => None,
    };
    let _mirror = secret_state.as_ref().map(|s| s.watch(shutdown.clone()));
    let ca = Ca::load_or_create(&config.state_dir)?;
    let server = ca.issue_server(&config.server_names, SERVER_CERT_TTL)?;
    let state = crate::state::StateDir::open(&config.state_dir)?;
    let users = UserStoreHandle::load(&config.state_dir, config.token_file.as_deref())?;
    let _reload = users.watch(std::time::Duration::from_secs(2));
    let policy = match &config.access_policy {
        Some(p) => AccessPolicy::load(p)?,
        None => AccessPolicy::default(),
    };
    let audit = match &config.audit {
        Some(a) => Some(Arc::new(AuditLog::open(&a.path, a.max_bytes, a.keep)?)),
        None => None,
    };
    let lease_api = match &config.lease {
        Some(l) => Some(crate::lease::client(l).await?),
        None => None,
    };
    let (s1, s2) = (state.clone(), state.clone());
    let parts = StubParts {
        policy,
        users,
        audit: audit.clone(),
        user_tls: ca.user_server_config(&server)?,
        agent_tls: ca.agent_server_config(&server, false)?,
        enroller: None,
        enrolled: Box::new(move |c| crate::enrol::is_enrolled(&s1, c)),
        agent_allowed: Box::new(move |cert, c| crate::enrol::check_agent_cert(&s2, cert, c)),
        // In production mode, also until the hub's access policies are loaded.
        standby: config.lease.is_some() || hub.is_some(),
    };
    let mut enroller = Enroller::new(state, Arc::new(ca), crate::enrol::DEFAULT_AGENT_CERT_TTL);
    if let Some(s) = &secret_state {
        enroller = enroller.with_hub(s.clone());
    }
    let parts = StubParts {
        enroller: Some(Arc::new(enroller)),
        ..parts
    };
    let base_policy = match (&hub, &config.access_policy) {
        (Some(_), file) => production::policy_documents(file.as_deref())?,
        _ => Vec::new(),
    };
    let bind = |which: &'static str, addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| SetupError::Bind {
                which,
                addr,
                source,
            })
    };
    let listeners = Listeners {
        users: bind("users", config.listen_users).await?,
        agents: bind("agents", config.listen_agents).await?,
        metrics: bind("metrics", config.listen_metrics).await?,
    };
    let handle = start_with_handshakes(parts, listeners, config.handshakes, shutdown.clone())?;
    if let Some(reports) = config.latency_reports.clone() {
        tokio::spawn(latency::run(
            handle.shared.clone(),
            reports,
            shutdown.clone(),
        ));
    }
    let _production = match (hub, secret_state) {
        (Some(h), Some(state)) => Some(
            production::start(
                production::Production {
                    hub: h.hub,
                    state,
                    base: base_policy,
                    users_url: h.users_url,
                },
                handle.shared.clone(),
                shutdown.clone(),
            )
            .await,
        ),
        _ => None,
    };
    if config.lease.is_none() {
        handle.shared.set_active(true);
    }
    let lease_task = match (lease_api, config.lease) {
        (Some(api), Some(l)) => {
            let (leader, mut is_leader) = watch::channel(false);
            let shared = handle.shared.clone();
            // Serve users exactly while the lease says this stub leads; ends with the
            // lease task (its last word is `false`).
            tokio::spawn(async move {
                while is_leader.changed().await.is_ok() {
                    let on = *is_leader.borrow_and_update();
                    shared.set_active(on);
                }
            });
            Some(tokio::spawn(crate::lease::run(
                api,
                l,
                leader,
                shutdown.clone(),
            )))
        }
        _ => None,
    };
    shutdown.cancelled().await;
    if let Some(t) = lease_task {
        let _ = t.await;
    }
    handle.join().await;
    if let Some(a) = audit {
        a.flush(std::time::Duration::from_secs(2));
    }
    Ok(())
}
