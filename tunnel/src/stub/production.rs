//! Production mode (`--hub-kubeconfig` / `--hub-in-cluster`): what the stub does with the
//! hub cluster besides keeping its state in a Secret ([`crate::hub_state`]):
//!
//! - the access policy: the file's `AccessPolicy` documents plus the hub's `AccessPolicy`
//!   objects (watched; an object that does not load keeps its last good version, and its
//!   `status` says why: written by the active stub only);
//! - the scheduler's stub identity: the active stub makes the Secret
//!   [`SCHEDULER_SECRET`] (key [`SCHEDULER_KEY`], a kubeconfig for user
//!   `causeway-scheduler`, group `causeway:schedulers`) once, if no one has.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use causeway_config::{ConfigError, Document};
use causeway_hubstore::secret::Created;
use causeway_hubstore::{Hub, Kind, LastGood, Snapshot};
use causeway_model::ClusterId;
use tokio_util::sync::CancellationToken;

use super::state::StubState;
use crate::authz::AccessPolicy;
use crate::hub_state::{MANAGER, SecretState};
use crate::pki::Ca;

/// The Secret holding the scheduler's stub identity.
pub const SCHEDULER_SECRET: &str = "causeway-scheduler-identity";
/// Its key: the scheduler's kubeconfig.
pub const SCHEDULER_KEY: &str = "scheduler.kubeconfig";

/// How often the task looks again without a change (leadership, a failed write).
const TICK: Duration = Duration::from_secs(2);
/// How long the stub waits for the hub's policies before serving with the file's only.
const FIRST_LOAD: Duration = Duration::from_secs(10);

/// What the production task needs.
pub struct Production {
    /// The hub namespace.
    pub hub: Hub,
    /// The state Secret.
    pub state: Arc<SecretState>,
    /// The file's `AccessPolicy` documents (`spec.accessPolicy`), loaded with the hub's.
    pub base: Vec<Document>,
    /// The users' URL for the scheduler's kubeconfig; `None`: no identity is made.
    pub users_url: Option<String>,
}

/// The file's access-policy documents (none without a file).
pub fn policy_documents(file: Option<&Path>) -> Result<Vec<Document>, ConfigError> {
    match file {
        Some(p) => causeway_config::read_file(p),
        None => Ok(Vec::new()),
    }
}

/// Watches the hub's `AccessPolicy` objects and keeps `shared`'s policy up to date, writes
/// their status and the scheduler's identity while this stub is active, until `shutdown`.
/// Waits (up to 10 s) for the first load before returning the task, so the stub does
/// not start serving with the file's policy alone.
pub async fn start(
    p: Production,
    shared: Arc<StubState>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut rx = p.hub.watch(&[Kind::AccessPolicy], shutdown.clone());
    let mut last_good = LastGood::default();
    let mut current: Option<Arc<Snapshot>> = None;
    let mut verdicts = Vec::new();
    let first = match tokio::time::timeout(FIRST_LOAD, rx.wait_for(Option::is_some)).await {
        Ok(Ok(snap)) => snap.clone(),
        _ => None,
    };
    match first {
        Some(s) => {
            verdicts = load(&p, &mut last_good, &shared, &s);
            current = Some(s);
        }
        None => tracing::warn!(
            "hub AccessPolicies not listed within 10 s (CRD installed? RBAC?); serving with the file's policy until they are"
        ),
    }
    tokio::spawn(async move {
        let mut identity_done = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let snap = rx.borrow_and_update().clone();
                    if let Some(s) = snap {
                        verdicts = load(&p, &mut last_good, &shared, &s);
                        current = Some(s);
                    }
                }
                () = tokio::time::sleep(TICK) => {}
            }
            if !shared.is_active() {
                continue;
            }
            if let Some(s) = &current {
                p.hub.write_verdicts(s, &verdicts).await;
            }
            if !identity_done && let Some(url) = &p.users_url {
                match ensure_scheduler_identity(&p.hub, &p.state, url).await {
                    Ok(()) => identity_done = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot make the scheduler's identity yet")
                    }
                }
            }
        }
    })
}

/// Loads a snapshot into `shared`'s policy; the verdicts to write.
fn load(
    p: &Production,
    last_good: &mut LastGood,
    shared: &StubState,
    snap: &Snapshot,
) -> Vec<causeway_hubstore::Verdict> {
    let loaded = last_good.load(&p.base, snap, AccessPolicy::from_all);
    match loaded.config {
        Ok(policy) => {
            tracing::info!(
                objects = snap.objects.len(),
                rules = policy.rules().len(),
                "access policy loaded (file + hub)"
            );
            shared.set_policy(policy);
        }
        Err(e) => {
            tracing::error!(error = %e, "access policy not loaded; keeping the last good one")
        }
    }
    loaded.verdicts
}

/// Makes the Secret [`SCHEDULER_SECRET`] unless it exists: user `causeway-scheduler` is
/// added to the state (compare-and-swap) and its kubeconfig stored (first wins).
pub async fn ensure_scheduler_identity(
    hub: &Hub,
    state: &SecretState,
    users_url: &str,
) -> Result<(), IdentityError> {
    if hub.secret(SCHEDULER_SECRET).await?.is_some() {
        return Ok(());
    }
    let kubeconfig = state
        .update(|dir| -> Result<String, IdentityError> {
            let ca = Ca::load_or_create(dir.path())?;
            let mut known: Vec<ClusterId> = crate::enrol::known_clusters(dir)?
                .into_iter()
                .map(|c| c.id)
                .collect();
            if known.is_empty() {
                // The scheduler takes only the stub's base URL from the context.
                known.extend(ClusterId::new("any".to_owned()).ok());
            }
            Ok(crate::users::scheduler_identity(
                dir, &ca, users_url, &known,
            )?)
        })
        .await?;
    let data = [(SCHEDULER_KEY.to_owned(), kubeconfig.into_bytes())].into();
    match hub.create_secret(SCHEDULER_SECRET, MANAGER, data).await? {
        Created::Created => tracing::info!(
            secret = %format!("{}/{SCHEDULER_SECRET}", hub.namespace()),
            "created the scheduler's stub identity (user causeway-scheduler)"
        ),
        Created::Exists(_) => {}
    }
    Ok(())
}

/// Why the scheduler's identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The hub's API.
    #[error(transparent)]
    Hub(#[from] causeway_hubstore::HubError),
    /// The state Secret.
    #[error(transparent)]
    State(#[from] crate::hub_state::SecretStateError),
    /// The CA.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// Recording the user.
    #[error(transparent)]
    Users(#[from] crate::users::UsersError),
    /// Reading the clusters.
    #[error(transparent)]
    Enrol(#[from] crate::enrol::EnrolError),
}
