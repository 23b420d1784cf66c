//! Observe: every member cluster through the tunnel's stub, as the scheduler's own
//! stub identity (a kubeconfig from `causeway user add causeway-scheduler`).
//!
//! Each round reads the policies' Deployments, HPAs, role ConfigMaps and Leases and pod
//! metrics (`metrics.k8s.io`) in every cluster, concurrently, each cluster bounded by a
//! timeout; those reads decide reachability: a cluster whose agent has no session at the
//! stub (503), or whose API server does not answer, is observed as unreachable with the
//! reason. Nodes and pods come from per-cluster watches ([`watch`], with
//! [`Clusters::with_watches`]) folded into small tables; a cluster whose watch is not
//! synced (initial list not done, or failed since) is listed that round instead: a page at a
//! time into slim types folded into totals ([`lists`]). At most [`CONCURRENT_CLUSTERS`]
//! clusters are read at once, which bounds the memory of those lists.

pub mod lists;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use causeway_model::ClusterId;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::observed::{ClusterState, HpaState, LeaseState, Observed, RoleState, WorkloadState};
use crate::policy::{DemandKind, Policies, WorkloadRef};
use crate::quantity;

/// Clusters observed at once (each holds at most one page of its lists meanwhile).
pub const CONCURRENT_CLUSTERS: usize = 16;

/// Label every copy made by the scheduler carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "causeway");
/// Annotation with the hash of the applied copy (template, overrides, replicas).
pub const APPLIED_HASH: &str = "causeway.dev/applied-hash";

/// Why the member clients cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    /// The kubeconfig does not load.
    #[error("stub kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Its path.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Its server is not a `…/clusters/<id>` URL of a stub.
    #[error("stub kubeconfig {path}: server {server:?} is not a stub URL ending in /clusters/<id>")]
    NotStub {
        /// Its path.
        path: String,
        /// The server found.
        server: String,
    },
    /// A client cannot be built.
    #[error("client for cluster {cluster}: {source}")]
    Client {
        /// The cluster.
        cluster: ClusterId,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// A kube client per member cluster, each talking to `https://STUB/clusters/<id>`.
#[derive(Clone)]
pub struct Clusters {
    clients: BTreeMap<ClusterId, kube::Client>,
    /// The same, without the read timeout: a watch may be quiet for minutes (the
    /// watcher has its own idle timeout).
    watch_clients: BTreeMap<ClusterId, kube::Client>,
    /// Watches of nodes and pods ([`Clusters::with_watches`]); stopped when the last
    /// clone of these clients is dropped.
    watches: Option<Arc<watch::Watches>>,
}

impl Clusters {
    /// Builds one client per cluster from the scheduler's stub kubeconfig.
    pub async fn from_stub_kubeconfig(
        path: &Path,
        clusters: &BTreeSet<ClusterId>,
    ) -> Result<Self, ClientsError> {
        let shown = path.display().to_string();
        let kc = Kubeconfig::read_from(path).map_err(|source| ClientsError::Kubeconfig {
            path: shown.clone(),
            source,
        })?;
        let base = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|source| ClientsError::Kubeconfig {
                path: shown.clone(),
                source,
            })?;
        let server = base.cluster_url.to_string();
        let stub = match server.trim_end_matches('/').rsplit_once("/clusters/") {
            Some((stub, _)) => stub.to_string(),
            None => {
                return Err(ClientsError::NotStub {
                    path: shown,
                    server,
                });
            }
        };
        let mut clients = BTreeMap::new();
        let mut watch_clients = BTreeMap::new();
        for id in clusters {
            let mut cfg = base.clone();
            cfg.cluster_url =
                format!("{stub}/clusters/{id}")
                    .parse()
                    .map_err(|_| ClientsError::NotStub {
                        path: shown.clone(),
                        server: server.clone(),
                    })?;
            cfg.read_timeout = Some(Duration::from_secs(10));
            cfg.connect_timeout = Some(Duration::from_secs(5));
            // No retries inside a round: the stub answers 503 at once for a cluster with
            // no agent session, and kube's default policy would retry that with back-off
            // until the round's timeout, holding up every cluster's round. The next
            // round asks again.
            cfg.default_retry = false;
            let build = |cfg: kube::Config| {
                kube::Client::try_from(cfg).map_err(|source| ClientsError::Client {
                    cluster: id.clone(),
                    source,
                })
            };
            let mut watch_cfg = cfg.clone();
            watch_cfg.read_timeout = None;
            clients.insert(id.clone(), build(cfg)?);
            watch_clients.insert(id.clone(), build(watch_cfg)?);
        }
        Ok(Self {
            clients,
            watch_clients,
            watches: None,
        })
    }

    /// These clients, with [`observe`] reading nodes and pods from watches: each
    /// cluster's are started by the first `observe` that names it and stopped by the
    /// first that does not, or when the last clone of the returned value is dropped
    /// (the scheduler's loop; `scheduler plan` observes once and lists).
    pub fn with_watches(mut self) -> Self {
        self.watches = Some(Arc::default());
        self
    }

    /// Where the watches of `cluster` are, when it is watched.
    pub fn watch_status(&self, cluster: &ClusterId) -> Option<watch::WatchStatus> {
        Some(self.watches.as_ref()?.get(cluster)?.status())
    }

    /// The client of `cluster`.
    pub fn get(&self, cluster: &ClusterId) -> Option<&kube::Client> {
        self.clients.get(cluster)
    }

    /// Every cluster with a client.
    pub fn ids(&self) -> impl Iterator<Item = &ClusterId> {
        self.clients.keys()
    }
}

/// What one cluster must be asked for: the workloads there and which need metrics/HPAs.
#[derive(Default)]
struct Wants {
    workloads: BTreeMap<WorkloadRef, WorkloadWants>,
}

#[derive(Default, Clone)]
struct WorkloadWants {
    hpa: Option<String>,
    metrics: bool,
    /// Failover: the role ConfigMap and the role lease to read.
    role: Option<(String, String)>,
}

/// Observes every cluster the policies name, concurrently, each within `timeout`.
/// `policies` is `&SchedulerConfig` or a slice of one kind.
///
/// * Burst policies: the workload in every home and burst cluster; the HPA in the
///   source cluster and the pods' CPU in every cluster when the demand is an HPA.
/// * Spread policies: the workload in every cluster (replicas, ready, its pods bound or
///   Pending, its pod requests), and each cluster's allocatable and requests (for
///   `by: freeCapacity`); no HPA, no metrics.
/// * Failover policies: the workload, its role ConfigMap and its role lease in every
///   cluster.
pub async fn observe<'a>(
    clusters: &Clusters,
    policies: impl Into<Policies<'a>>,
    timeout: Duration,
) -> Observed {
    let policies = policies.into();
    let mut wants: BTreeMap<ClusterId, Wants> = BTreeMap::new();
    for p in policies.burst {
        let hpa = p.spec.demand.hpa.as_ref().map(|h| h.name.clone());
        let metrics = p.spec.demand_kind() == DemandKind::Hpa;
        for c in p
            .spec
            .home
            .iter()
            .chain(p.spec.burst.iter().map(|b| &b.cluster))
        {
            let ww = wants
                .entry(c.clone())
                .or_default()
                .workloads
                .entry(p.spec.workload.clone())
                .or_default();
            ww.metrics |= metrics;
            if c == p.spec.source_cluster() {
                ww.hpa = ww.hpa.take().or(hpa.clone());
            }
        }
    }
    for p in policies.spread {
        for t in &p.spec.clusters {
            wants
                .entry(t.cluster.clone())
                .or_default()
                .workloads
                .entry(p.spec.workload.clone())
                .or_default();
        }
    }
    for p in policies.failover {
        for c in p.spec.clusters() {
            wants
                .entry(c.clone())
                .or_default()
                .workloads
                .entry(p.spec.workload.clone())
                .or_default()
                .role = Some((p.spec.role_config_map(), p.lease_name()));
        }
    }
    if let Some(watches) = &clusters.watches {
        watches.retain(&wants.keys().collect());
    }
    let tasks = wants.into_iter().map(|(id, w)| {
        let client = clusters.get(&id).cloned();
        let watch = clusters.watches.as_ref().and_then(|ws| {
            let client = clusters.watch_clients.get(&id)?;
            Some(ws.ensure(&id, client))
        });
        async move {
            let state = match client {
                None => unreachable_state("no client for this cluster".into()),
                Some(client) => match tokio::time::timeout(
                    timeout,
                    observe_cluster(client, &w, watch.as_deref()),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => unreachable_state(short_error(&e)),
                    Err(_) => unreachable_state(format!("no answer within {}s", timeout.as_secs())),
                },
            };
            (id, state)
        }
    });
    let clusters: Vec<_> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
        futures::stream::iter(tasks),
        CONCURRENT_CLUSTERS,
    ))
    .await;
    Observed {
        clusters: clusters.into_iter().collect(),
        ..Default::default()
    }
}

fn unreachable_state(error: String) -> ClusterState {
    ClusterState {
        reachable: false,
        error: Some(error),
        ..Default::default()
    }
}

/// The first line of an error, without kube's wrapping of the API's Status.
fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

async fn observe_cluster(
    client: kube::Client,
    wants: &Wants,
    watch: Option<&watch::ClusterWatch>,
) -> Result<ClusterState, kube::Error> {
    // 1. The workloads: Deployments (their selectors decide which pods count) and HPAs.
    let mut found = Vec::new();
    for (w, ww) in &wants.workloads {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &w.namespace);
        let Some(d) = deployments.get_opt(&w.deployment).await? else {
            continue;
        };
        let mut ws = workload_state(&d);
        if let Some(name) = &ww.hpa {
            let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &w.namespace);
            ws.hpa = hpas.get_opt(name).await?.map(|h| hpa_state(&h));
        }
        if let Some((config_map, lease)) = &ww.role {
            ws.role = Some(role_state(&client, &w.namespace, config_map, lease).await?);
        }
        let selector = match_labels(&d);
        found.push((w, ww, ws, selector, BTreeSet::<String>::new()));
    }
    // 2. Nodes and 3. pods: from the watches' tables when synced, else a page at a time,
    // folded into totals.
    let allocatable = match watch.and_then(|w| w.allocatable()) {
        Some(a) => a,
        None => {
            watch.inspect(|w| w.count_list());
            lists::allocatable(&client).await?
        }
    };
    let mut state = ClusterState {
        reachable: true,
        allocatable,
        ..Default::default()
    };
    let read = watch.and_then(|w| {
        w.pods(|t| {
            state.requested = t.requested();
            for (w, ww, ws, selector, names) in &mut found {
                let Some(sel) = selector else { continue };
                let c = t.count(&w.namespace, sel, ww.metrics.then_some(names));
                ws.scheduled = c.scheduled;
                ws.unschedulable = c.unschedulable;
            }
        })
    });
    if read.is_none() {
        watch.inspect(|w| w.count_list());
        lists::for_each_live_pod(&client, |p| {
            if p.bound() {
                state.requested = state.requested.plus(p.requests());
            }
            if p.metadata.deletion_timestamp.is_some() {
                return;
            }
            for (w, ww, ws, selector, names) in &mut found {
                let Some(sel) = selector else { continue };
                let ours = p.metadata.namespace == w.namespace
                    && sel.iter().all(|(k, v)| p.metadata.labels.get(k) == Some(v));
                if !ours {
                    continue;
                }
                if p.bound() {
                    ws.scheduled += 1;
                } else if p.unschedulable() {
                    ws.unschedulable += 1;
                }
                if ww.metrics {
                    names.insert(p.metadata.name.clone());
                }
            }
        })
        .await?;
    }
    // 4. The workloads' pod metrics.
    for (w, ww, mut ws, _, names) in found {
        if ww.metrics
            && let Some((usage, n)) = pod_cpu_usage(&client, &w.namespace, &names).await
        {
            ws.cpu_usage_millis = Some(usage);
            ws.pods_with_metrics = n;
        }
        state.workloads.insert(w.clone(), ws);
    }
    Ok(state)
}

/// The Deployment's `matchLabels` (the form copies and tests use); `None` when it also
/// has `matchExpressions` (not evaluated: its pods are not counted) or selects nothing.
fn match_labels(d: &Deployment) -> Option<BTreeMap<String, String>> {
    let sel = &d.spec.as_ref()?.selector;
    if sel
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    sel.match_labels.clone().filter(|m| !m.is_empty())
}

/// What the Deployment itself says: replicas, ready, one pod's requests, managed, hash.
fn workload_state(d: &Deployment) -> WorkloadState {
    let spec = d.spec.as_ref();
    let status = d.status.as_ref();
    let template = spec.and_then(|s| s.template.spec.as_ref());
    let reqs = |cs: &[k8s_openapi::api::core::v1::Container]| -> Vec<BTreeMap<String, String>> {
        cs.iter()
            .map(|c| {
                c.resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .map(|r| r.iter().map(|(k, q)| (k.clone(), q.0.clone())).collect())
                    .unwrap_or_default()
            })
            .collect()
    };
    let pod_requests = template
        .map(|t| {
            let containers = reqs(&t.containers);
            let inits = reqs(t.init_containers.as_deref().unwrap_or_default());
            lists::requests(containers.iter(), inits.iter())
        })
        .unwrap_or_default();
    WorkloadState {
        replicas: spec
            .and_then(|s| s.replicas)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(1),
        ready: status
            .and_then(|s| s.ready_replicas)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0),
        pod_requests,
        managed: d
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY.0))
            .is_some_and(|v| v == MANAGED_BY.1),
        applied_hash: d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(APPLIED_HASH))
            .cloned(),
        ..Default::default()
    }
}

/// Annotation on the role ConfigMap: who changed the role last.
pub const ROLE_CHANGED_BY: &str = "causeway.dev/role-changed-by";
/// Annotation on the role ConfigMap: when (RFC 3339, microseconds).
pub const ROLE_CHANGED_AT: &str = "causeway.dev/role-changed-at";
/// Annotation the agent puts on a role lease it fenced under.
pub const FENCED_BY: &str = "causeway.dev/fenced-by";

/// The role ConfigMap's `role` and the role lease's age.
async fn role_state(
    client: &kube::Client,
    namespace: &str,
    config_map: &str,
    lease: &str,
) -> Result<RoleState, kube::Error> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ConfigMap;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = cms.get_opt(config_map).await?;
    let annotation = |cm: &ConfigMap, key: &str| {
        cm.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = leases.get_opt(lease).await?.map(|l| {
        let renewed = l
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| std::time::SystemTime::from(t.0));
        LeaseState {
            age: renewed
                .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                .unwrap_or_default(),
            fenced_by: l
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(FENCED_BY))
                .cloned(),
        }
    });
    Ok(RoleState {
        role: cm
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .and_then(|d| d.get("role"))
            .cloned(),
        changed_by: cm.as_ref().and_then(|c| annotation(c, ROLE_CHANGED_BY)),
        lease,
    })
}

fn hpa_state(h: &HorizontalPodAutoscaler) -> HpaState {
    let spec = Some(&h.spec);
    let status = h.status.as_ref();
    let to_u32 = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    HpaState {
        min_replicas: to_u32(spec.and_then(|s| s.min_replicas)).max(1),
        max_replicas: spec.map(|s| to_u32(Some(s.max_replicas))).unwrap_or(0),
        current_replicas: to_u32(status.and_then(|s| s.current_replicas)),
        desired_replicas: status
            .map(|s| to_u32(Some(s.desired_replicas)))
            .unwrap_or(0),
        target_cpu_percent: spec
            .and_then(|s| s.metrics.as_ref())
            .and_then(|ms| {
                ms.iter().find_map(|m| {
                    m.resource
                        .as_ref()
                        .filter(|r| r.name == "cpu")
                        .and_then(|r| r.target.average_utilization)
                })
            })
            .and_then(|v| u32::try_from(v).ok()),
        scaling_limited: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "ScalingLimited" && c.status == "True")
            }),
    }
}

/// Sum of CPU usage of the named pods from `metrics.k8s.io`, and how many had metrics.
async fn pod_cpu_usage(
    client: &kube::Client,
    namespace: &str,
    pods: &BTreeSet<String>,
) -> Option<(u64, u32)> {
    let req = http::Request::get(format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
    ))
    .body(Vec::new())
    .ok()?;
    let list: serde_json::Value = client.request(req).await.ok()?;
    let mut usage = 0u64;
    let mut n = 0u32;
    for item in list.get("items")?.as_array()? {
        let name = item.pointer("/metadata/name").and_then(|v| v.as_str());
        if !name.is_some_and(|n| pods.contains(n)) {
            continue;
        }
        let containers = item.get("containers").and_then(|c| c.as_array());
        let cpu: u64 = containers
            .into_iter()
            .flatten()
            .filter_map(|c| c.pointer("/usage/cpu").and_then(|v| v.as_str()))
            .filter_map(|q| quantity::cpu_millis(q).ok())
            .sum();
        usage += cpu;
        n += 1;
    }
    Some((usage, n))
}
