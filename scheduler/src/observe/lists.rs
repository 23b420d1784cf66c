//! Nodes and pods read page by page into slim types and folded as they arrive.
//!
//! A deserialized `k8s_openapi` Pod takes ~34 KB of heap (managedFields alone ~14 KB);
//! these types keep only what the scheduler counts (~2 KB per pod, measured in
//! `bench/scheduler`), and a page of [`PAGE`] objects is folded into totals before the next
//! is read, so a cluster of 10,000 pods never holds more than one page.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::quantity::{self, Resources};

/// Objects per page (`limit`).
pub const PAGE: usize = 500;

#[derive(Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    #[serde(default)]
    metadata: ListMeta,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(default, rename = "continue")]
    cont: Option<String>,
}

/// The parts of a Pod the scheduler reads.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SlimPod {
    /// `metadata`.
    pub metadata: SlimMeta,
    /// `spec`.
    pub spec: SlimPodSpec,
    /// `status`.
    pub status: SlimStatus,
}

/// The parts of `metadata` the scheduler reads.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SlimMeta {
    /// `name`.
    pub name: String,
    /// `namespace`.
    pub namespace: String,
    /// `uid` (the watches key their tables by it).
    pub uid: String,
    /// `resourceVersion` (the watches resume from it).
    pub resource_version: Option<String>,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// Set while the object is being deleted.
    pub deletion_timestamp: Option<IgnoredAny>,
}

/// The parts of a pod spec the scheduler reads.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct SlimPodSpec {
    /// The node it is bound to.
    pub node_name: Option<String>,
    /// Containers.
    pub containers: Vec<SlimContainer>,
    /// Init containers.
    pub init_containers: Vec<SlimContainer>,
}

/// A container's requests.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SlimContainer {
    /// `resources`.
    pub resources: SlimResources,
}

/// `resources.requests`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SlimResources {
    /// Requests by resource name, as quantities.
    pub requests: BTreeMap<String, String>,
}

/// `status.conditions` (pods and nodes).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SlimStatus {
    /// Conditions.
    pub conditions: Vec<SlimCondition>,
    /// Node allocatable (nodes only).
    pub allocatable: BTreeMap<String, String>,
}

/// One condition.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SlimCondition {
    /// `type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `status`.
    pub status: String,
    /// `reason`.
    pub reason: Option<String>,
}

/// The parts of a Node the scheduler reads.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SlimNode {
    /// `metadata` (only `uid` and `resourceVersion` are used).
    pub metadata: SlimMeta,
    spec: SlimNodeSpec,
    status: SlimStatus,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SlimNodeSpec {
    unschedulable: Option<bool>,
}

impl SlimNode {
    /// Its allocatable when Ready and schedulable, else nothing.
    pub fn schedulable_allocatable(&self) -> Resources {
        let ready = self
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if !ready || self.spec.unschedulable.unwrap_or(false) {
            return Resources::default();
        }
        let get = |k: &str, scale: u64| {
            self.status
                .allocatable
                .get(k)
                .and_then(|q| quantity::parse(q, scale).ok())
                .unwrap_or(0)
        };
        Resources {
            cpu_millis: get("cpu", 1000),
            memory_bytes: get("memory", 1),
            pods: get("pods", 1),
        }
    }
}

impl SlimPod {
    /// Bound to a node.
    pub fn bound(&self) -> bool {
        self.spec.node_name.is_some()
    }

    /// Pending with `PodScheduled=False, reason Unschedulable`.
    pub fn unschedulable(&self) -> bool {
        self.status.conditions.iter().any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
    }

    /// Its requests (containers summed, init containers' max), one pod.
    pub fn requests(&self) -> Resources {
        requests(
            self.spec.containers.iter().map(|c| &c.resources.requests),
            self.spec
                .init_containers
                .iter()
                .map(|c| &c.resources.requests),
        )
    }
}

/// Requests of a pod: containers summed, the init containers' maximum per resource (as
/// kube-scheduler counts), one pod.
pub fn requests<'a, S: AsRef<str> + 'a>(
    containers: impl Iterator<Item = &'a BTreeMap<String, S>>,
    inits: impl Iterator<Item = &'a BTreeMap<String, S>>,
) -> Resources {
    let one = |r: &BTreeMap<String, S>| {
        let get = |k: &str, scale: u64| {
            r.get(k)
                .and_then(|q| quantity::parse(q.as_ref(), scale).ok())
                .unwrap_or(0)
        };
        Resources {
            cpu_millis: get("cpu", 1000),
            memory_bytes: get("memory", 1),
            pods: 0,
        }
    };
    let mut sum = containers.fold(Resources::default(), |acc, r| acc.plus(one(r)));
    for r in inits.map(one) {
        sum.cpu_millis = sum.cpu_millis.max(r.cpu_millis);
        sum.memory_bytes = sum.memory_bytes.max(r.memory_bytes);
    }
    sum.pods = 1;
    sum
}

/// Reads every page of `path` (`/api/v1/pods`) with `query` (already encoded pairs), calling
/// `each` for every item; at most 1,000 pages.
async fn for_each<T: serde::de::DeserializeOwned>(
    client: &kube::Client,
    path: &str,
    query: &[(&str, &str)],
    page: usize,
    mut each: impl FnMut(T),
) -> Result<(), kube::Error> {
    let mut cont: Option<String> = None;
    for _ in 0..1_000 {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("limit", &page.to_string());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        if let Some(c) = &cont {
            q.append_pair("continue", c);
        }
        let req = http::Request::get(format!("{path}?{}", q.finish()))
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        let page: List<T> = client.request(req).await?;
        page.items.into_iter().for_each(&mut each);
        match page.metadata.cont.filter(|c| !c.is_empty()) {
            Some(c) => cont = Some(c),
            None => return Ok(()),
        }
    }
    Ok(())
}

/// Allocatable of the cluster's Ready, schedulable nodes.
pub async fn allocatable(client: &kube::Client) -> Result<Resources, kube::Error> {
    let mut total = Resources::default();
    for_each(client, "/api/v1/nodes", &[], PAGE, |n: SlimNode| {
        total = total.plus(n.schedulable_allocatable());
    })
    .await?;
    Ok(total)
}

/// The field selector of live pods (not Succeeded or Failed), for lists and watches.
pub const LIVE_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// Calls `each` for every pod not Succeeded or Failed, [`PAGE`] at a time.
pub async fn for_each_live_pod(
    client: &kube::Client,
    each: impl FnMut(SlimPod),
) -> Result<(), kube::Error> {
    for_each_live_pod_paged(client, PAGE, each).await
}

/// [`for_each_live_pod`] with `page` pods per request (tests page through a few pods).
pub async fn for_each_live_pod_paged(
    client: &kube::Client,
    page: usize,
    each: impl FnMut(SlimPod),
) -> Result<(), kube::Error> {
    let live = [("fieldSelector", LIVE_PODS)];
    for_each(client, "/api/v1/pods", &live, page, each).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_pod_reads_into_the_slim_type() {
        let text = include_str!("../../../bench/scheduler/pod.json");
        let p: SlimPod = serde_json::from_str(text).unwrap();
        assert!(!p.metadata.name.is_empty());
        assert_eq!(p.requests().pods, 1);
        let list = format!(r#"{{"metadata":{{"continue":"abc"}},"items":[{text},{text}]}}"#);
        let l: List<SlimPod> = serde_json::from_str(&list).unwrap();
        assert_eq!(
            (l.items.len(), l.metadata.cont.as_deref()),
            (2, Some("abc"))
        );
    }

    #[test]
    fn requests_sum_containers_and_take_the_largest_init() {
        let m = |cpu: &str| BTreeMap::from([("cpu".to_string(), cpu.to_string())]);
        let r = requests([m("100m"), m("200m")].iter(), [m("1"), m("50m")].iter());
        assert_eq!((r.cpu_millis, r.pods), (1000, 1));
        let r = requests([m("100m"), m("200m")].iter(), std::iter::empty());
        assert_eq!(r.cpu_millis, 300);
    }
}
