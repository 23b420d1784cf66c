//! Self-fencing (FailoverPolicy; the protocol is in docs/scheduler.md, "FailoverPolicy
//! (DR) and fencing", the agent's part in docs/tunnel.md, "Self-fencing"): the scheduler
//! renews a role Lease in the primary cluster through the stub; when the renewals stop
//! for the Lease's duration, this agent demotes its local primary on its own, so that a
//! scheduler that promotes a backup after `duration + margin` never makes two writers.
//!
//! Every `interval`, and again just after a Lease would expire, the agent lists Leases
//! labelled `causeway.dev/role-lease=true` in all namespaces from its own API server (its
//! ServiceAccount token, impersonating `causeway:fencer`), and [`decide`] says which have
//! expired. Fencing one means:
//! 1. the role ConfigMap gets `data.role: fenced` and the role-changed-at/-by annotations;
//! 2. in mode `scale-to-zero`, the Deployment's replicas go to the annotation
//!    `causeway.dev/replicas-before-fence`, then its `scale` subresource to 0;
//! 3. the Lease gets `causeway.dev/fenced-at` and `causeway.dev/fenced-by`.
//!
//! A failed step is retried on the next round; the agent never un-fences.

mod decide;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use causeway_model::cluster::ClusterId;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use decide::{
    Decision, FenceMode, LeaseKey, Listed, Memory, Now, RoleLease, decide, parse_lease,
};

use super::forward::Forwarder;
use super::metrics::AgentMetrics;
use crate::body;

/// Label that marks a role Lease.
pub const LABEL_ROLE_LEASE: &str = "causeway.dev/role-lease";
/// Label naming the Lease's policy.
pub const LABEL_POLICY: &str = "causeway.dev/policy";
/// Lease annotation: the Deployment to scale to zero.
pub const ANNOTATION_DEPLOYMENT: &str = "causeway.dev/fence-deployment";
/// Lease annotation: the role ConfigMap.
pub const ANNOTATION_CONFIGMAP: &str = "causeway.dev/fence-configmap";
/// Lease annotation: `scale-to-zero` or `role`.
pub const ANNOTATION_MODE: &str = "causeway.dev/fence-mode";
/// Lease annotation written by the fence: when (RFC 3339, µs).
pub const ANNOTATION_FENCED_AT: &str = "causeway.dev/fenced-at";
/// Lease annotation written by the fence: `agent/<cluster>`.
pub const ANNOTATION_FENCED_BY: &str = "causeway.dev/fenced-by";
/// ConfigMap annotation: when the role last changed (RFC 3339, µs).
pub const ANNOTATION_ROLE_CHANGED_AT: &str = "causeway.dev/role-changed-at";
/// ConfigMap annotation: who changed it.
pub const ANNOTATION_ROLE_CHANGED_BY: &str = "causeway.dev/role-changed-by";
/// Deployment annotation: its replicas before the fence scaled it to 0.
pub const ANNOTATION_REPLICAS_BEFORE: &str = "causeway.dev/replicas-before-fence";
/// The role a fence writes.
pub const ROLE_FENCED: &str = "fenced";
/// The user the agent impersonates to fence (bound by examples/tunnel/fencer-rbac.yaml).
pub const DEFAULT_USER: &str = "causeway:fencer";
/// Default time between two lists of the role Leases.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The longest any one request to the API server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response body read (a LeaseList of many Leases fits easily).
const MAX_BODY: usize = 16 << 20;
/// How long after a Lease would expire the agent lists again to check it.
const EXPIRY_SLACK: Duration = Duration::from_millis(20);
/// How often the same list failure is logged.
const LIST_WARNING_EVERY: Duration = Duration::from_secs(60);

/// How the agent fences (`causeway agent --fence-interval`, `--no-fence`).
#[derive(Clone, Debug)]
pub struct FenceConfig {
    /// Time between two lists of the role Leases.
    pub interval: Duration,
    /// The user impersonated for every fencing request.
    pub user: String,
}

impl Default for FenceConfig {
    fn default() -> Self {
        FenceConfig {
            interval: DEFAULT_INTERVAL,
            user: DEFAULT_USER.to_owned(),
        }
    }
}

/// Why a request of the fencer failed.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The ServiceAccount token is unreadable.
    #[error("{0}")]
    Token(#[from] super::forward::TokenError),
    /// The API server could not be reached.
    #[error("{0}")]
    Upstream(#[from] super::upstream::UpstreamError),
    /// No answer within the request timeout.
    #[error("no answer from the API server within {0:?}")]
    Timeout(Duration),
    /// The response body could not be read.
    #[error("reading the API server's answer: {0}")]
    Body(String),
    /// The API server refused.
    #[error("{method} {path}: {status}: {message}")]
    Status {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
        /// The answer's status.
        status: StatusCode,
        /// The `metav1.Status` message, or the start of the body.
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("{path}: unexpected answer: {reason}")]
    Unexpected {
        /// The request path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A header value could not be built (the configured user).
    #[error("invalid header value: {0}")]
    Header(#[from] http::header::InvalidHeaderValue),
}

impl FenceError {
    fn status(&self) -> Option<StatusCode> {
        match self {
            FenceError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The fencer's client of the local API server: the agent's upstream pool and token,
/// impersonating one user.
struct Kube {
    forwarder: Arc<Forwarder>,
    user: HeaderValue,
}

impl Kube {
    /// Sends one request; a JSON body is sent as a merge patch.
    async fn send(
        &self,
        method: Method,
        path: &str,
        patch: Option<Value>,
    ) -> Result<Value, FenceError> {
        let upstream = self.forwarder.upstream();
        let base = upstream.base();
        let uri = format!(
            "{}://{}{path}",
            base.scheme_str().unwrap_or("https"),
            base.authority().map(|a| a.as_str()).unwrap_or("")
        );
        let token = self.forwarder.token().get()?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .version(http::Version::HTTP_2)
            .header(header::ACCEPT, "application/json")
            .header(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            )
            .header(crate::impersonate::IMPERSONATE_USER, self.user.clone());
        let body = match patch {
            Some(p) => {
                req = req.header(header::CONTENT_TYPE, "application/merge-patch+json");
                body::full(p.to_string())
            }
            None => body::empty(),
        };
        let req = req.body(body).map_err(|e| FenceError::Unexpected {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let exchange = async {
            let (resp, _slot) = upstream.send(req).await?;
            let status = resp.status();
            let bytes = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| FenceError::Body(e.to_string()))?
                .to_bytes();
            Ok::<(StatusCode, Bytes), FenceError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| FenceError::Timeout(REQUEST_TIMEOUT))??;
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            let message = value
                .as_ref()
                .and_then(|v| v["message"].as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
                });
            return Err(FenceError::Status {
                method,
                path: path.to_owned(),
                status,
                message,
            });
        }
        value.ok_or_else(|| FenceError::Unexpected {
            path: path.to_owned(),
            reason: "not JSON".into(),
        })
    }

    async fn list_leases(&self) -> Result<Vec<Value>, FenceError> {
        let path = format!(
            "/apis/coordination.k8s.io/v1/leases?labelSelector={}%3Dtrue",
            LABEL_ROLE_LEASE.replace('/', "%2F")
        );
        let list = self.send(Method::GET, &path, None).await?;
        match list["items"].as_array() {
            Some(items) => Ok(items.clone()),
            // An empty list may come without `items`.
            None if list["kind"] == "LeaseList" => Ok(Vec::new()),
            None => Err(FenceError::Unexpected {
                path,
                reason: "no items".into(),
            }),
        }
    }

    /// Writes the fence for `lease`: the three steps of the module doc, each
    /// idempotent. A missing ConfigMap or Deployment is warned about and skipped.
    async fn fence(&self, lease: &RoleLease, by: &str) -> Result<(), FenceError> {
        let ns = &lease.key.namespace;
        let now = || humantime::format_rfc3339_micros(SystemTime::now()).to_string();

        let cm = format!("/api/v1/namespaces/{ns}/configmaps/{}", lease.configmap);
        match self.send(Method::GET, &cm, None).await {
            Ok(current) if current["data"]["role"] == ROLE_FENCED => {}
            Ok(_) => {
                let patch = json!({
                    "metadata": {"annotations": {
                        ANNOTATION_ROLE_CHANGED_AT: now(),
                        ANNOTATION_ROLE_CHANGED_BY: by,
                    }},
                    "data": {"role": ROLE_FENCED},
                });
                self.send(Method::PATCH, &cm, Some(patch)).await?;
            }
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => tracing::warn!(
                lease = %lease.key, configmap = %lease.configmap,
                "self-fencing: the role ConfigMap does not exist"
            ),
            Err(e) => return Err(e),
        }

        if lease.mode == FenceMode::ScaleToZero {
            let deploy = format!(
                "/apis/apps/v1/namespaces/{ns}/deployments/{}",
                lease.deployment
            );
            let scale_path = format!("{deploy}/scale");
            match self.send(Method::GET, &scale_path, None).await {
                Ok(scale) => {
                    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
                    if replicas > 0 {
                        let keep = json!({"metadata": {"annotations": {
                            ANNOTATION_REPLICAS_BEFORE: replicas.to_string(),
                        }}});
                        self.send(Method::PATCH, &deploy, Some(keep)).await?;
                        let zero = json!({"spec": {"replicas": 0}});
                        self.send(Method::PATCH, &scale_path, Some(zero)).await?;
                    }
                }
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => tracing::warn!(
                    lease = %lease.key, deployment = %lease.deployment,
                    "self-fencing: the Deployment does not exist"
                ),
                Err(e) => return Err(e),
            }
        }

        let path = format!(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{}",
            lease.key.name
        );
        let mark = json!({"metadata": {"annotations": {
            ANNOTATION_FENCED_AT: now(),
            ANNOTATION_FENCED_BY: by,
        }}});
        match self.send(Method::PATCH, &path, Some(mark)).await {
            // Deleted meanwhile: the scheduler took the role away itself.
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// The last list failure logged, so the same one is logged at most once a minute.
#[derive(Default)]
struct ListWarnings {
    last: Option<(tokio::time::Instant, bool)>,
}

impl ListWarnings {
    fn failed(&mut self, e: &FenceError, user: &str) {
        let forbidden = matches!(
            e.status(),
            Some(StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED)
        );
        let now = tokio::time::Instant::now();
        if let Some((at, was_forbidden)) = self.last
            && was_forbidden == forbidden
            && now.duration_since(at) < LIST_WARNING_EVERY
        {
            tracing::debug!(error = %e, "cannot list role leases");
            return;
        }
        self.last = Some((now, forbidden));
        if forbidden {
            tracing::warn!(
                error = %e, user,
                "self-fencing off: the API server refuses to list role leases \
                 (apply examples/tunnel/fencer-rbac.yaml)"
            );
        } else {
            tracing::warn!(
                error = %e,
                "self-fencing paused: cannot list role leases; retrying, history kept"
            );
        }
    }

    fn listed(&mut self) {
        if self.last.take().is_some() {
            tracing::info!("self-fencing on: role leases listed again");
        }
    }
}

/// Lists the role Leases every `config.interval` and fences the expired ones, until
/// `shutdown`. Runs whether or not a session to a stub is up.
pub async fn run(
    config: FenceConfig,
    cluster: ClusterId,
    forwarder: Arc<Forwarder>,
    metrics: Arc<AgentMetrics>,
    shutdown: CancellationToken,
) {
    let user = match HeaderValue::from_str(&config.user) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(user = %config.user, error = %e, "self-fencing off: invalid user");
            return;
        }
    };
    let kube = Kube { forwarder, user };
    let by = format!("agent/{cluster}");
    tracing::info!(interval = ?config.interval, user = %config.user, "self-fencing on");
    let mut memory = Memory::default();
    let mut warnings = ListWarnings::default();
    // The CLI refuses anything below 100 ms; a zero period would spin.
    let interval = config.interval.max(Duration::from_millis(100));
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        next = tokio::time::Instant::now() + interval;
        let items = match kube.list_leases().await {
            Ok(items) => items,
            Err(e) => {
                warnings.failed(&e, &config.user);
                continue;
            }
        };
        warnings.listed();
        let listed: Vec<Listed> = items.iter().map(parse_lease).collect();
        let now = Now::read();
        let decisions = decide(&mut memory, &listed, now);
        let (mut valid, mut expired, mut invalid) = (0, 0, 0);
        for d in decisions {
            match d {
                Decision::Live { remaining, .. } => {
                    valid += 1;
                    // Look again just after it would expire, not up to an interval later.
                    let expiry = tokio::time::Instant::from_std(now.mono) + remaining;
                    next = next.min(expiry + EXPIRY_SLACK);
                }
                Decision::Fenced(_) => expired += 1,
                Decision::Invalid { key, reason, warn } => {
                    invalid += 1;
                    if warn {
                        tracing::warn!(lease = %key, reason, "ignoring an invalid role lease");
                    }
                }
                Decision::Fence {
                    lease,
                    since_renewal,
                } => {
                    expired += 1;
                    match kube.fence(lease, &by).await {
                        Ok(()) => {
                            memory.fenced(lease);
                            metrics.fences.with_label_values(&["fenced"]).inc();
                            tracing::warn!(
                                policy = %lease.policy,
                                namespace = %lease.key.namespace,
                                lease = %lease.key.name,
                                seconds_since_renewal = since_renewal.as_secs_f64(),
                                lease_seconds = lease.duration.as_secs(),
                                "self-fenced: role lease not renewed"
                            );
                        }
                        Err(e) => {
                            metrics.fences.with_label_values(&["failed"]).inc();
                            tracing::warn!(
                                policy = %lease.policy, lease = %lease.key, error = %e,
                                "self-fencing failed; retrying next round"
                            );
                        }
                    }
                }
            }
        }
        for (state, n) in [("valid", valid), ("expired", expired), ("invalid", invalid)] {
            metrics.role_leases.with_label_values(&[state]).set(n);
        }
    }
}
