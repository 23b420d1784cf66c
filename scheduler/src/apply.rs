//! Apply: make each cluster's copy of the workload match the plan.
//!
//! * `Apply(n)`: server-side apply (field manager `causeway-scheduler`, forced) of a copy
//!   of the source Deployment with `n` replicas, the cluster's overrides, the label
//!   `app.kubernetes.io/managed-by: causeway` and a hash of what was applied; skipped when
//!   the copy already carries that hash (no write for an unchanged copy). The source is
//!   read once per round; when it cannot be read (its cluster lost, as a spread policy
//!   allows), the last one read is copied.
//! * `Scale(n)`: the source Deployment's `scale` subresource (burst policies with
//!   external demand, spread policies).
//! * `Delete`: deletes the copy, only if it carries the managed-by label.
//! * Failover ([`role`]): `Hold` renews the primary's role lease (every third of its
//!   duration), `Grant` gives a cluster the primary role, `Fence` fences one, `Replica`
//!   creates a missing role ConfigMap. `Hold` and `Grant` never back off: a renewal that
//!   waited would let the agent fence a healthy primary. When each lease was last
//!   written (or tried) is kept for the planner ([`Applier::renewals`]).
//!
//! Writes are rate-limited for all clusters together (governor). A refused write
//! (RBAC, quota, admission webhook, invalid object) is reported with the API's reason
//! and that cluster × policy backs off exponentially (5 s doubling to 5 min), so a
//! refusal is never retried in a hot loop.

pub mod role;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use causeway_model::ClusterId;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::observe::{APPLIED_HASH, Clusters, MANAGED_BY};
use crate::observed::Observed;
use crate::plan::{Action, Plan};
use crate::policy::{Overrides, Policies, PolicyRef};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "causeway-scheduler";

/// Result of one attempted change, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The policy.
    pub policy: String,
    /// The cluster.
    pub cluster: ClusterId,
    /// What was done (`apply 3`, `delete`, `scale 4`), or skipped and why.
    pub what: String,
    /// `Ok` or the refusal's reason label (`Forbidden`, `Invalid`, `Unreachable`, …).
    pub result: Result<(), ApplyError>,
}

/// Why a write failed; the variant name is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The member's API refused it (RBAC, quota, webhook, invalid object).
    #[error("{cluster} refused: {code} {reason}: {message}")]
    Refused {
        /// The cluster.
        cluster: ClusterId,
        /// HTTP status.
        code: u16,
        /// The Status reason (`Forbidden`, `Invalid`, …).
        reason: String,
        /// The Status message.
        message: String,
    },
    /// No answer (tunnel or API server down).
    #[error("{cluster} unreachable: {message}")]
    Unreachable {
        /// The cluster.
        cluster: ClusterId,
        /// Why.
        message: String,
    },
    /// The source Deployment could not be read to copy it.
    #[error("source Deployment unavailable: {0}")]
    NoSource(String),
    /// Backing off after earlier failures.
    #[error("backing off for {0:?} after {1} failures")]
    BackingOff(Duration, u32),
}

impl ApplyError {
    /// A short, bounded label for metrics.
    pub fn label(&self) -> &str {
        match self {
            ApplyError::Refused { reason, .. } => match reason.as_str() {
                "Forbidden" | "Invalid" | "NotFound" | "Conflict" | "AlreadyExists"
                | "BadRequest" => reason,
                _ => "Refused",
            },
            ApplyError::Unreachable { .. } => "Unreachable",
            ApplyError::NoSource(_) => "NoSource",
            ApplyError::BackingOff(..) => "BackingOff",
        }
    }
}

/// The writer: rate limit and back-off state live here between rounds.
pub struct Applier {
    limiter: DefaultDirectRateLimiter,
    backoff: BTreeMap<(String, ClusterId), (Instant, u32)>,
    /// The source Deployment last read, per policy.
    last_source: BTreeMap<String, Deployment>,
    /// When each role lease was last written or tried, per failover policy and cluster.
    renewed: BTreeMap<(String, ClusterId), Instant>,
}

const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Applier {
    /// At most `writes_per_second` writes, all clusters together.
    pub fn new(writes_per_second: u32) -> Self {
        let per = NonZeroU32::new(writes_per_second).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(Quota::per_second(per)),
            backoff: BTreeMap::new(),
            last_source: BTreeMap::new(),
            renewed: BTreeMap::new(),
        }
    }

    /// When each role lease was last written or tried (a write whose answer was lost
    /// may have landed), by failover policy and cluster.
    pub fn renewals(&self) -> &BTreeMap<(String, ClusterId), Instant> {
        &self.renewed
    }

    /// Carries out the plan's actions; returns what was attempted. `policies` is
    /// `&SchedulerConfig` or a slice of one kind.
    pub async fn apply<'a>(
        &mut self,
        clusters: &Clusters,
        policies: impl Into<Policies<'a>>,
        observed: &Observed,
        plan: &Plan,
    ) -> Vec<Outcome> {
        let names: BTreeMap<&str, PolicyRef<'_>> =
            policies.into().iter().map(|p| (p.name(), p)).collect();
        self.last_source
            .retain(|p, _| names.contains_key(p.as_str()));
        self.renewed
            .retain(|(p, _), _| matches!(names.get(p.as_str()), Some(PolicyRef::Failover(_))));
        let mut out = Vec::new();
        let mut sources: BTreeMap<String, Result<Deployment, ApplyError>> = BTreeMap::new();
        for d in &plan.decisions {
            if d.action == Action::Keep {
                continue;
            }
            let Some(&policy) = names.get(d.policy.as_str()) else {
                continue;
            };
            let key = (d.policy.clone(), d.cluster.clone());
            if let (Action::Hold | Action::Grant(_), PolicyRef::Failover(p)) = (d.action, policy) {
                let Some(client) = clusters.get(&d.cluster) else {
                    continue;
                };
                let due = p.spec.lease.duration.0 / 3;
                let fresh = self.renewed.get(&key).is_some_and(|t| t.elapsed() < due);
                if d.action == Action::Hold && fresh {
                    continue;
                }
                self.limiter.until_ready().await;
                let result = match d.action {
                    Action::Grant(n) => role::grant(client, p, &d.cluster, n).await,
                    _ => role::renew_lease(client, p, &d.cluster).await,
                };
                // Noted after the answer (or its failure): it may have landed until then.
                self.renewed.insert(key, Instant::now());
                out.push(Outcome {
                    policy: d.policy.clone(),
                    cluster: d.cluster.clone(),
                    what: d.action.to_string(),
                    result,
                });
                continue;
            }
            let now = Instant::now();
            if let Some((until, n)) = self.backoff.get(&key)
                && *until > now
            {
                out.push(Outcome {
                    policy: d.policy.clone(),
                    cluster: d.cluster.clone(),
                    what: d.action.to_string(),
                    result: Err(ApplyError::BackingOff(*until - now, *n)),
                });
                continue;
            }
            let Some(client) = clusters.get(&d.cluster) else {
                continue;
            };
            let result = match (d.action, policy) {
                (Action::Fence, PolicyRef::Failover(p)) => {
                    self.limiter.until_ready().await;
                    role::fence(client, p, &d.cluster).await
                }
                (Action::Replica, PolicyRef::Failover(p)) => {
                    self.limiter.until_ready().await;
                    role::replica(client, p, &d.cluster).await
                }
                (
                    Action::Keep
                    | Action::Hold
                    | Action::Grant(_)
                    | Action::Fence
                    | Action::Replica,
                    _,
                ) => {
                    continue;
                }
                (Action::Delete, _) => {
                    self.limiter.until_ready().await;
                    delete_copy(client, policy, &d.cluster).await
                }
                (Action::Scale(n), _) => {
                    self.limiter.until_ready().await;
                    scale_source(client, policy, &d.cluster, n).await
                }
                (Action::Apply(n), _) => {
                    if !sources.contains_key(&d.policy) {
                        let src = match read_source(clusters, policy).await {
                            Ok(src) => {
                                self.last_source.insert(d.policy.clone(), src.clone());
                                Ok(src)
                            }
                            Err(e) => self.last_source.get(&d.policy).cloned().ok_or(e),
                        };
                        sources.insert(d.policy.clone(), src);
                    }
                    let src = match sources.get(&d.policy) {
                        Some(Ok(s)) => s,
                        Some(Err(e)) => {
                            out.push(Outcome {
                                policy: d.policy.clone(),
                                cluster: d.cluster.clone(),
                                what: d.action.to_string(),
                                result: Err(e.clone()),
                            });
                            continue;
                        }
                        None => continue,
                    };
                    let overrides = policy.overrides(&d.cluster).cloned().unwrap_or_default();
                    let copy = render_copy(src, policy, &overrides, n);
                    let hash = copy_hash(&copy);
                    let unchanged = observed
                        .clusters
                        .get(&d.cluster)
                        .and_then(|c| c.workloads.get(policy.workload()))
                        .is_some_and(|w| w.applied_hash.as_deref() == Some(hash.as_str()));
                    if unchanged {
                        continue;
                    }
                    self.limiter.until_ready().await;
                    apply_copy(client, policy, &d.cluster, copy, &hash).await
                }
            };
            match &result {
                Ok(()) => {
                    self.backoff.remove(&key);
                }
                Err(_) => {
                    let n = self.backoff.get(&key).map(|(_, n)| n + 1).unwrap_or(1);
                    let wait = BACKOFF_FIRST
                        .saturating_mul(1 << (n - 1).min(6))
                        .min(BACKOFF_MAX);
                    self.backoff.insert(key, (Instant::now() + wait, n));
                }
            }
            out.push(Outcome {
                policy: d.policy.clone(),
                cluster: d.cluster.clone(),
                what: d.action.to_string(),
                result,
            });
        }
        out
    }
}

fn api_error(cluster: &ClusterId, e: kube::Error) -> ApplyError {
    match e {
        kube::Error::Api(s) if s.code == 502 || s.code == 503 || s.code == 504 => {
            ApplyError::Unreachable {
                cluster: cluster.clone(),
                message: format!("{} {}", s.code, s.message),
            }
        }
        kube::Error::Api(s) => ApplyError::Refused {
            cluster: cluster.clone(),
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        other => ApplyError::Unreachable {
            cluster: cluster.clone(),
            message: other
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        },
    }
}

async fn read_source(clusters: &Clusters, policy: PolicyRef<'_>) -> Result<Deployment, ApplyError> {
    let src = policy.source_cluster();
    let client = clusters
        .get(src)
        .ok_or_else(|| ApplyError::NoSource(format!("no client for {src}")))?;
    let w = policy.workload();
    let api: Api<Deployment> = Api::namespaced(client.clone(), &w.namespace);
    api.get(&w.deployment)
        .await
        .map_err(|e| ApplyError::NoSource(api_error(src, e).to_string()))
}

/// The copy of `src` for another cluster of `policy` (a `&BurstPolicy`, `&SpreadPolicy`
/// or [`PolicyRef`]): name, namespace, labels, selector and pod template of the source,
/// `replicas`, the overrides, and Causeway's label.
pub fn render_copy<'a>(
    src: &Deployment,
    policy: impl Into<PolicyRef<'a>>,
    overrides: &Overrides,
    replicas: u32,
) -> Value {
    let policy = policy.into();
    let w = policy.workload();
    let spec = src.spec.clone().unwrap_or_default();
    let mut template = serde_json::to_value(&spec.template).unwrap_or(Value::Null);
    apply_overrides(&mut template, overrides);
    let mut labels = src.metadata.labels.clone().unwrap_or_default();
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": w.deployment,
            "namespace": w.namespace,
            "labels": labels,
            "annotations": {
                "causeway.dev/policy": policy.name(),
                "causeway.dev/source-cluster": policy.source_cluster().as_str(),
            },
        },
        "spec": {
            "replicas": replicas,
            "selector": spec.selector,
            "template": template,
            "strategy": spec.strategy,
            "minReadySeconds": spec.min_ready_seconds,
        },
    })
}

/// Replaces the registry of every container image and sets the environment variables.
fn apply_overrides(template: &mut Value, o: &Overrides) {
    for list in ["containers", "initContainers"] {
        let Some(containers) = template
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(|v| v.as_array_mut())
        else {
            continue;
        };
        for c in containers {
            if let Some(reg) = &o.image_registry
                && let Some(image) = c.get("image").and_then(|i| i.as_str())
            {
                let new = with_registry(image, reg);
                c["image"] = Value::String(new);
            }
            if o.env.is_empty() {
                continue;
            }
            let env = c
                .as_object_mut()
                .map(|m| m.entry("env").or_insert_with(|| Value::Array(Vec::new())));
            if let Some(Value::Array(env)) = env {
                for (k, v) in &o.env {
                    env.retain(|e| e.get("name").and_then(|n| n.as_str()) != Some(k));
                    env.push(json!({"name": k, "value": v}));
                }
            }
        }
    }
}

/// `registry/path:tag` with the registry swapped; an image without a registry (Docker
/// Hub, `nginx:1`) gets one in front.
pub fn with_registry(image: &str, registry: &str) -> String {
    match image.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            format!("{registry}/{rest}")
        }
        _ => format!("{registry}/{image}"),
    }
}

/// A stable hash of the rendered copy (hex SHA-256, first 16 bytes).
pub fn copy_hash(copy: &Value) -> String {
    let digest = Sha256::digest(copy.to_string().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

async fn apply_copy(
    client: &kube::Client,
    policy: PolicyRef<'_>,
    cluster: &ClusterId,
    mut copy: Value,
    hash: &str,
) -> Result<(), ApplyError> {
    let ns = &policy.workload().namespace;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(ns)
        .await
        .map_err(|e| api_error(cluster, e))?
        .is_none()
    {
        let doc = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        namespaces
            .patch(ns, &pp, &Patch::Apply(&doc))
            .await
            .map_err(|e| api_error(cluster, e))?;
    }
    copy["metadata"]["annotations"][APPLIED_HASH] = Value::String(hash.to_string());
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.patch(&policy.workload().deployment, &pp, &Patch::Apply(&copy))
        .await
        .map(|_| ())
        .map_err(|e| api_error(cluster, e))
}

async fn delete_copy(
    client: &kube::Client,
    policy: PolicyRef<'_>,
    cluster: &ClusterId,
) -> Result<(), ApplyError> {
    let w = policy.workload();
    let api: Api<Deployment> = Api::namespaced(client.clone(), &w.namespace);
    let name = &w.deployment;
    let Some(d) = api.get_opt(name).await.map_err(|e| api_error(cluster, e))? else {
        return Ok(());
    };
    let managed = d
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1);
    if !managed {
        return Ok(());
    }
    api.delete(name, &DeleteParams::default())
        .await
        .map(|_| ())
        .map_err(|e| api_error(cluster, e))
}

async fn scale_source(
    client: &kube::Client,
    policy: PolicyRef<'_>,
    cluster: &ClusterId,
    n: u32,
) -> Result<(), ApplyError> {
    let w = policy.workload();
    let api: Api<Deployment> = Api::namespaced(client.clone(), &w.namespace);
    let patch = json!({"spec": {"replicas": n}});
    api.patch_scale(
        &w.deployment,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|e| api_error(cluster, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_override() {
        assert_eq!(
            with_registry("nginx:1.27", "reg.ali.example"),
            "reg.ali.example/nginx:1.27"
        );
        assert_eq!(
            with_registry("library/nginx", "r:5000"),
            "r:5000/library/nginx"
        );
        assert_eq!(
            with_registry("registry.idc.local/shop/web:2", "reg.ali.example"),
            "reg.ali.example/shop/web:2"
        );
        assert_eq!(with_registry("localhost/web", "r.example"), "r.example/web");
    }

    #[test]
    fn a_spread_copy_names_its_policy_and_source_and_takes_its_overrides() {
        use crate::policy::{SpreadPolicy, SpreadSpec, SpreadTarget, WorkloadRef};
        use causeway_model::ClusterId;

        let target = |c: &str, registry: Option<&str>| SpreadTarget {
            cluster: ClusterId::new(c).expect("a valid ID"),
            weight: None,
            min_replicas: 0,
            overrides: Overrides {
                image_registry: registry.map(str::to_owned),
                env: Default::default(),
            },
        };
        let p = SpreadPolicy {
            name: "shop".into(),
            spec: SpreadSpec {
                workload: WorkloadRef {
                    namespace: "shop".into(),
                    deployment: "web".into(),
                },
                replicas: 4,
                clusters: vec![target("idc", None), target("aws", Some("r.aws.example"))],
                by: Default::default(),
                behavior: Default::default(),
                rebalance_after: Default::default(),
                dns: None,
            },
        };
        let src: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "replicas": 9,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "reg.idc/shop/web:1"}]}},
            },
        }))
        .expect("a Deployment");
        let aws = ClusterId::new("aws").expect("a valid ID");
        let overrides = PolicyRef::from(&p)
            .overrides(&aws)
            .cloned()
            .unwrap_or_default();
        let copy = render_copy(&src, &p, &overrides, 2);
        assert_eq!(copy["spec"]["replicas"], 2);
        assert_eq!(
            copy["metadata"]["annotations"]["causeway.dev/policy"],
            "shop"
        );
        assert_eq!(
            copy["metadata"]["annotations"]["causeway.dev/source-cluster"],
            "idc"
        );
        assert_eq!(copy["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
        assert_eq!(
            copy["spec"]["template"]["spec"]["containers"][0]["image"],
            "r.aws.example/shop/web:1"
        );
    }

    #[test]
    fn overrides_set_env_once() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "nginx", "env": [{"name": "K", "value": "old"}]}]}});
        let o = Overrides {
            image_registry: Some("r.example".into()),
            env: [
                ("K".to_string(), "new".to_string()),
                ("SITE".to_string(), "ali".to_string()),
            ]
            .into(),
        };
        apply_overrides(&mut t, &o);
        assert_eq!(t["spec"]["containers"][0]["image"], "r.example/nginx");
        assert_eq!(
            t["spec"]["containers"][0]["env"],
            json!([{"name": "K", "value": "new"}, {"name": "SITE", "value": "ali"}])
        );
    }
}
