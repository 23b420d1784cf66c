//! One active replica among several (stubs, schedulers): a `coordination.k8s.io/v1`
//! Lease in a hub cluster.
//!
//! The holder renews every third of the lease duration. A standby takes the Lease
//! over only once `renewTime + leaseDurationSeconds` has passed (or when the holder
//! released it on shutdown by clearing `holderIdentity`). The active replica stops
//! (serving users, writing to members) the moment a renewal fails for longer than the
//! lease duration or another holder appears; every write carries the
//! `resourceVersion` it read, so two replicas can never both believe they won
//! (optimistic concurrency).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The Lease that picks the active replica.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Kubeconfig of the hub cluster.
    pub kubeconfig: PathBuf,
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// Lease duration; renewed every third of it.
    pub duration: Duration,
    /// This replica's holder identity.
    pub identity: String,
}

/// Why the lease client could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The hub kubeconfig is unusable.
    #[error("hub kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A client for the hub cluster's Leases.
pub async fn client(config: &LeaseConfig) -> Result<Api<Lease>, LeaseError> {
    let err = |reason: String| LeaseError::Kubeconfig {
        path: config.kubeconfig.display().to_string(),
        reason,
    };
    let kc =
        kube::config::Kubeconfig::read_from(&config.kubeconfig).map_err(|e| err(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    let client = kube::Client::try_from(cfg).map_err(|e| err(e.to_string()))?;
    Ok(Api::namespaced(client, &config.namespace))
}

/// What one round decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Round {
    Holding,
    /// Another replica holds it (if known), and its Lease expires in this long (if known).
    Standby(Option<String>, Option<Duration>),
}

/// How long after a held Lease expires (its `renewTime + leaseDurationSeconds`) a standby
/// takes it: a margin for clock skew between replicas and for the holder, which stops acting
/// `duration` after the instant it *sent* its last renewal.
fn takeover_margin(duration: Duration) -> Duration {
    (duration / 10).max(Duration::from_millis(100))
}

/// Campaigns for the Lease until `shutdown`, sending `true` on `leader` while this
/// stub holds it and `false` while it does not (the stub serves users only on `true`).
/// On shutdown `false` is sent and a held Lease is released so a standby takes over at
/// once.
pub async fn run(
    api: Api<Lease>,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let period = config.duration / 3;
    let mut last_renew: Option<Instant> = None;
    let mut was = None;
    loop {
        if was == Some(true) && last_renew.is_some_and(|t| t.elapsed() >= config.duration) {
            tracing::warn!(identity = %config.identity, lease = %config.name, "lease not renewed within its duration: stopped acting as the active replica");
            leader.send_replace(false);
            was = Some(false);
        }
        // The holder counts its Lease from before the request: never later than the
        // renewTime it writes, so it stops acting no later than a standby may take over.
        let sent = Instant::now();
        let mut sleep = period;
        // While holding, a round that hangs must not outlast the Lease: it times out when
        // the last renewal expires, and the replica stops acting then.
        // (Once it has run out, rounds are ordinary campaigns again.)
        let valid_left = last_renew.map(|t| config.duration.saturating_sub(t.elapsed()));
        let limit = period
            .max(Duration::from_millis(500))
            .min(valid_left.filter(|d| !d.is_zero()).unwrap_or(Duration::MAX));
        let round = tokio::select! {
            r = tokio::time::timeout(limit, campaign(&api, &config)) => r,
            () = shutdown.cancelled() => break,
        };
        let now_active = match round {
            Ok(Ok(Round::Holding)) => {
                last_renew = Some(sent);
                true
            }
            Ok(Ok(Round::Standby(holder, expires_in))) => {
                // Try again right when the holder's Lease runs out rather than up to a
                // period later: takeover within about the Lease duration of its last renewal.
                if let Some(left) = expires_in {
                    sleep = sleep.min(left + takeover_margin(config.duration));
                }
                if was != Some(false) {
                    tracing::info!(holder = holder.as_deref().unwrap_or(""), lease = %config.name, "standby: another replica holds the lease");
                }
                last_renew = None;
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = %config.name, "lease round failed");
                // Keep serving only while the last renewal is still within the duration.
                last_renew.is_some_and(|t| t.elapsed() < config.duration)
            }
            Err(_) => {
                tracing::warn!(lease = %config.name, "lease round timed out");
                last_renew.is_some_and(|t| t.elapsed() < config.duration)
            }
        };
        if now_active && last_renew != Some(sent) {
            // Not renewed this round: look again when the last renewal runs out.
            if let Some(left) = last_renew.map(|t| config.duration.saturating_sub(t.elapsed())) {
                sleep = sleep.min(left);
            }
        }
        if was != Some(now_active) {
            if now_active {
                tracing::info!(identity = %config.identity, lease = %config.name, "active: holding the lease");
            } else if was == Some(true) {
                tracing::warn!(identity = %config.identity, lease = %config.name, "lost the lease: stopped acting as the active replica");
            }
            leader.send_replace(now_active);
            was = Some(now_active);
        }
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shutdown.cancelled() => break,
        }
    }
    leader.send_replace(false);
    if was == Some(true) {
        match release(&api, &config).await {
            Ok(()) => tracing::info!(lease = %config.name, "released the lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the lease"),
        }
    }
}

async fn campaign(api: &Api<Lease>, config: &LeaseConfig) -> Result<Round, kube::Error> {
    let now = Timestamp::now();
    let secs = i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Round::Holding),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Standby(None, None)),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let mine = holder.as_deref() == Some(config.identity.as_str());
    if !mine {
        let dur = spec.lease_duration_seconds.unwrap_or(secs);
        let expires = spec
            .renew_time
            .as_ref()
            .map(|MicroTime(t)| *t + SignedDuration::from_secs(i64::from(dur)));
        let expired = expires.is_none_or(|e| e < now);
        if holder.is_some() && !expired {
            let left = expires
                .and_then(|e| Duration::try_from(e.duration_since(now)).ok())
                .filter(|d| {
                    *d <= config
                        .duration
                        .max(Duration::from_secs(u64::from(dur.unsigned_abs())))
                });
            return Ok(Round::Standby(holder, left));
        }
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(config.identity.clone());
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(secs);
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Round::Holding),
        // Someone else wrote first: they hold it now.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Standby(None, None)),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    api.replace(&config.name, &PostParams::default(), &lease)
        .await?;
    Ok(())
}
