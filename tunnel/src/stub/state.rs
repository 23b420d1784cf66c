//! [`StubState`]: what every connection of a running stub shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use causeway_model::cluster::ClusterId;
use rustls::pki_types::CertificateDer;

use super::data::DataPool;
use super::registry::Registry;
use crate::audit::AuditLog;
use crate::authz::AccessPolicy;
use crate::enrol::Enroller;
use crate::metrics::Metrics;
use crate::users::UserStoreHandle;

/// Checks an agent certificate (already verified against the CA) at session start,
/// e.g. against revocations and the list of enrolled clusters.
pub type AgentCheck =
    Box<dyn Fn(&CertificateDer<'_>, &ClusterId) -> Result<(), String> + Send + Sync>;

/// Whether a cluster ID was enrolled.
pub type EnrolledCheck = Box<dyn Fn(&ClusterId) -> bool + Send + Sync>;

/// The state every connection of a running stub shares: live sessions, idle data
/// connections, the policy and users it checks requests against, the audit log.
pub struct StubState {
    /// Live sessions.
    pub registry: Registry,
    /// Idle data connections of the agents.
    pub data: DataPool,
    /// Metric handles.
    pub metrics: Arc<Metrics>,
    /// Who may reach which cluster: the file's policy, plus in production mode the hub's
    /// `AccessPolicy` objects (replaced as they change).
    policy: RwLock<Arc<AccessPolicy>>,
    /// Users, revocations, bearer tokens (reloaded when their files change).
    pub users: UserStoreHandle,
    /// The audit log, if configured.
    pub audit: Option<Arc<AuditLog>>,
    /// The enrolment handler (agents' listener, connections without a certificate).
    pub enroller: Option<Arc<Enroller>>,
    /// Enrolled clusters.
    pub enrolled: EnrolledCheck,
    /// Extra checks on agent certificates.
    pub agent_allowed: AgentCheck,
    active: AtomicBool,
}

impl StubState {
    /// A stub's state, on standby until [`StubState::set_active`].
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        policy: AccessPolicy,
        users: UserStoreHandle,
        audit: Option<Arc<AuditLog>>,
        enroller: Option<Arc<Enroller>>,
        enrolled: EnrolledCheck,
        agent_allowed: AgentCheck,
    ) -> Self {
        StubState {
            registry: Registry::new(metrics.clone()),
            data: DataPool::new(metrics.data_idle.clone()),
            metrics,
            policy: RwLock::new(Arc::new(policy)),
            users,
            audit,
            enroller,
            enrolled,
            agent_allowed,
            active: AtomicBool::new(false),
        }
    }

    /// The access policy now.
    pub fn policy(&self) -> Arc<AccessPolicy> {
        match self.policy.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the access policy (production mode: the hub's objects changed).
    pub fn set_policy(&self, policy: AccessPolicy) {
        let policy = Arc::new(policy);
        match self.policy.write() {
            Ok(mut g) => *g = policy,
            Err(p) => *p.into_inner() = policy,
        }
    }

    /// Whether this stub serves users now (holds the lease, or runs without one).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Switches serving on or off (the lease does this).
    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Release);
        self.metrics.active.set(i64::from(on));
    }

    /// Whether `cluster` was enrolled with `causeway cluster add` (or has a live session).
    pub fn is_enrolled(&self, cluster: &ClusterId) -> bool {
        self.registry.count(cluster) > 0 || (self.enrolled)(cluster)
    }
}
