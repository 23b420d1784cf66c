//! Nodes and pods of every member cluster, watched through the stub and folded into
//! small tables as events arrive, so a round reads totals instead of listing.
//!
//! Per cluster, two long-lived tasks run kube-runtime's [`watcher`] (an initial list of
//! [`lists::PAGE`] objects a page, then a watch from its resourceVersion) over slim types
//! ([`WatchedPod`], [`WatchedNode`]) and fold every event into a [`PodTable`] or a
//! [`NodeTable`]; no object is kept. A pod costs one entry keyed by its UID (its group,
//! requests, bound / Unschedulable / deleting flags) and its name in its group's name set;
//! pods with the same namespace and labels (one ReplicaSet's) share a group, which holds
//! the counts a round reads. A round reads a table only while its watch is *synced*: its
//! initial list is complete and no error has come since. A watch that errors is dropped
//! (its table too) and started again, initial list included, after a back-off
//! ([`DefaultBackoff`]: 0.8 s doubling to 30 s, with jitter), so a cluster whose agent is
//! gone costs one failed request a resource every 30 s; meanwhile rounds list.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use causeway_model::ClusterId;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::watcher::{self, DefaultBackoff, Event, watcher};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::lists::{self, SlimNode, SlimPod};
use crate::quantity::Resources;

/// A pod as the watch reads it: already folded to what the tables keep.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "SlimPod")]
pub struct WatchedPod {
    metadata: ObjectMeta,
    /// Bound to a node.
    pub bound: bool,
    /// Pending with `PodScheduled=False, reason Unschedulable`.
    pub unschedulable: bool,
    /// Being deleted.
    pub deleting: bool,
    /// Its requests (one pod).
    pub requests: Resources,
}

impl From<SlimPod> for WatchedPod {
    fn from(p: SlimPod) -> Self {
        let (bound, unschedulable, requests) = (p.bound(), p.unschedulable(), p.requests());
        let m = p.metadata;
        WatchedPod {
            bound,
            unschedulable,
            deleting: m.deletion_timestamp.is_some(),
            requests,
            metadata: ObjectMeta {
                name: Some(m.name),
                namespace: Some(m.namespace),
                uid: Some(m.uid),
                resource_version: m.resource_version,
                labels: Some(m.labels),
                ..Default::default()
            },
        }
    }
}

/// A node as the watch reads it: its allocatable when Ready and schedulable.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "SlimNode")]
pub struct WatchedNode {
    metadata: ObjectMeta,
    /// Allocatable when Ready and schedulable, else zero.
    pub allocatable: Resources,
}

impl From<SlimNode> for WatchedNode {
    fn from(n: SlimNode) -> Self {
        WatchedNode {
            allocatable: n.schedulable_allocatable(),
            metadata: ObjectMeta {
                uid: Some(n.metadata.uid),
                resource_version: n.metadata.resource_version,
                ..Default::default()
            },
        }
    }
}

macro_rules! core_v1_resource {
    ($t:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl kube::Resource for $t {
            type DynamicType = ();
            type Scope = $scope;
            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                "".into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                "v1".into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
core_v1_resource!(
    WatchedPod,
    "Pod",
    "pods",
    k8s_openapi::NamespaceResourceScope
);
core_v1_resource!(
    WatchedNode,
    "Node",
    "nodes",
    k8s_openapi::ClusterResourceScope
);

/// Folds one kind of object into a table.
pub trait Fold<K>: Default {
    /// Adds `obj`, or replaces the entry of its UID.
    fn apply(&mut self, obj: &K);
    /// Removes the entry of `obj`'s UID.
    fn delete(&mut self, obj: &K);
}

/// A cluster's pods: totals, and counts per group of pods with the same namespace and labels.
#[derive(Default)]
pub struct PodTable {
    pods: HashMap<Box<str>, PodEntry>,
    groups: HashMap<Arc<GroupKey>, Group>,
    requested: Resources,
}

struct PodEntry {
    group: Arc<GroupKey>,
    requests: Resources,
    bound: bool,
    unschedulable: bool,
    deleting: bool,
}

#[derive(Hash, PartialEq, Eq)]
struct GroupKey {
    namespace: Box<str>,
    labels: BTreeMap<String, String>,
}

#[derive(Default)]
struct Group {
    /// Entries in it.
    pods: u32,
    /// Not being deleted, bound.
    scheduled: u32,
    /// Not being deleted, not bound, Unschedulable.
    unschedulable: u32,
    /// Names of its pods not being deleted.
    names: HashSet<Box<str>>,
}

/// What a round reads of one workload's pods.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PodCounts {
    /// Bound, not being deleted.
    pub scheduled: u32,
    /// Pending `Unschedulable`, not being deleted.
    pub unschedulable: u32,
}

impl PodTable {
    /// Requests of the bound pods (being deleted or not), as a list folds them.
    pub fn requested(&self) -> Resources {
        self.requested
    }

    /// Pods in the table.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// No pods.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The pods of `namespace` whose labels include `selector`; their names (not being
    /// deleted) into `names` when given. O(groups), not O(pods), without `names`.
    pub fn count(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
        mut names: Option<&mut BTreeSet<String>>,
    ) -> PodCounts {
        let mut c = PodCounts::default();
        for (k, g) in &self.groups {
            let ours = &*k.namespace == namespace
                && selector.iter().all(|(l, v)| k.labels.get(l) == Some(v));
            if !ours {
                continue;
            }
            c.scheduled += g.scheduled;
            c.unschedulable += g.unschedulable;
            if let Some(n) = names.as_deref_mut() {
                n.extend(g.names.iter().map(|s| s.to_string()));
            }
        }
        c
    }

    fn add(&mut self, e: &PodEntry, name: &str) {
        if e.bound {
            self.requested = self.requested.plus(e.requests);
        }
        let g = self.groups.entry(e.group.clone()).or_default();
        g.pods += 1;
        if !e.deleting {
            if e.bound {
                g.scheduled += 1;
            } else if e.unschedulable {
                g.unschedulable += 1;
            }
            g.names.insert(name.into());
        }
    }

    fn remove(&mut self, e: &PodEntry, name: &str) {
        if e.bound {
            self.requested = self.requested.minus(e.requests);
        }
        let Some(g) = self.groups.get_mut(&e.group) else {
            return;
        };
        g.pods = g.pods.saturating_sub(1);
        if !e.deleting {
            if e.bound {
                g.scheduled = g.scheduled.saturating_sub(1);
            } else if e.unschedulable {
                g.unschedulable = g.unschedulable.saturating_sub(1);
            }
            g.names.remove(name);
        }
        if g.pods == 0 {
            self.groups.remove(&e.group);
        }
    }

    /// The shared key of `namespace` and `labels` (one allocation per group).
    fn key(&self, namespace: &str, labels: BTreeMap<String, String>) -> Arc<GroupKey> {
        let k = GroupKey {
            namespace: namespace.into(),
            labels,
        };
        match self.groups.get_key_value(&k) {
            Some((shared, _)) => shared.clone(),
            None => Arc::new(k),
        }
    }
}

impl Fold<WatchedPod> for PodTable {
    fn apply(&mut self, p: &WatchedPod) {
        let (Some(uid), Some(name)) = (&p.metadata.uid, &p.metadata.name) else {
            return;
        };
        if let Some(old) = self.pods.remove(uid.as_str()) {
            self.remove(&old, name);
        }
        let namespace = p.metadata.namespace.as_deref().unwrap_or_default();
        let labels = p.metadata.labels.clone().unwrap_or_default();
        let e = PodEntry {
            group: self.key(namespace, labels),
            requests: p.requests,
            bound: p.bound,
            unschedulable: p.unschedulable,
            deleting: p.deleting,
        };
        self.add(&e, name);
        self.pods.insert(uid.as_str().into(), e);
    }

    fn delete(&mut self, p: &WatchedPod) {
        let (Some(uid), Some(name)) = (&p.metadata.uid, &p.metadata.name) else {
            return;
        };
        if let Some(old) = self.pods.remove(uid.as_str()) {
            self.remove(&old, name);
        }
    }
}

/// A cluster's nodes: each one's contribution, and their sum.
#[derive(Default)]
pub struct NodeTable {
    nodes: HashMap<Box<str>, Resources>,
    total: Resources,
}

impl NodeTable {
    /// Allocatable of the Ready, schedulable nodes.
    pub fn allocatable(&self) -> Resources {
        self.total
    }
}

impl Fold<WatchedNode> for NodeTable {
    fn apply(&mut self, n: &WatchedNode) {
        let Some(uid) = &n.metadata.uid else { return };
        if let Some(old) = self.nodes.insert(uid.as_str().into(), n.allocatable) {
            self.total = self.total.minus(old);
        }
        self.total = self.total.plus(n.allocatable);
    }

    fn delete(&mut self, n: &WatchedNode) {
        let Some(uid) = &n.metadata.uid else { return };
        if let Some(old) = self.nodes.remove(uid.as_str()) {
            self.total = self.total.minus(old);
        }
    }
}

/// A table and where its watch is.
#[derive(Default)]
struct Synced<T> {
    /// The table as of the last event, valid while `synced`.
    current: T,
    /// The table being built by an initial list (`Init` … `InitDone`).
    next: Option<T>,
    synced: bool,
}

impl<T> Synced<T> {
    fn event<K>(&mut self, ev: Event<K>)
    where
        T: Fold<K>,
    {
        match ev {
            Event::Init => self.next = Some(T::default()),
            Event::InitApply(o) => self.next.get_or_insert_with(T::default).apply(&o),
            Event::InitDone => {
                self.current = self.next.take().unwrap_or_default();
                self.synced = true;
            }
            Event::Apply(o) => self.current.apply(&o),
            Event::Delete(o) => self.current.delete(&o),
        }
    }

    /// The watch failed: forget everything until the next initial list completes.
    fn lost(&mut self)
    where
        T: Default,
    {
        *self = Self::default();
    }
}

/// One cluster's watches: their tables and counters.
#[derive(Default)]
pub struct ClusterWatch {
    pods: Mutex<Synced<PodTable>>,
    nodes: Mutex<Synced<NodeTable>>,
    restarts: AtomicU64,
    listed: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClusterWatch {
    /// `f` of the pod table, when its watch is synced.
    pub fn pods<R>(&self, f: impl FnOnce(&PodTable) -> R) -> Option<R> {
        let s = lock(&self.pods);
        s.synced.then(|| f(&s.current))
    }

    /// Allocatable of the Ready, schedulable nodes, when the node watch is synced.
    pub fn allocatable(&self) -> Option<Resources> {
        let s = lock(&self.nodes);
        s.synced.then(|| s.current.allocatable())
    }

    /// Where the watches are.
    pub fn status(&self) -> WatchStatus {
        WatchStatus {
            pods_synced: lock(&self.pods).synced,
            nodes_synced: lock(&self.nodes).synced,
            restarts: self.restarts.load(Ordering::Relaxed),
            listed: self.listed.load(Ordering::Relaxed),
        }
    }

    /// A round listed nodes or pods of this cluster instead (not synced).
    pub(crate) fn count_list(&self) {
        self.listed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where one cluster's watches are (for tests and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStatus {
    /// The pod watch's initial list is complete and it has not failed since.
    pub pods_synced: bool,
    /// The same for nodes.
    pub nodes_synced: bool,
    /// Watches restarted after an error (both kinds).
    pub restarts: u64,
    /// Node or pod lists rounds made instead of reading a table (each counts one).
    pub listed: u64,
}

/// The watches of every observed cluster; dropping it stops them.
#[derive(Default)]
pub struct Watches {
    clusters: Mutex<BTreeMap<ClusterId, (Arc<ClusterWatch>, CancellationToken)>>,
}

impl fmt::Debug for Watches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(lock(&self.clusters).keys()).finish()
    }
}

impl Watches {
    /// The watches of `cluster`, started with `client` if they are not running.
    pub fn ensure(&self, cluster: &ClusterId, client: &kube::Client) -> Arc<ClusterWatch> {
        let mut all = lock(&self.clusters);
        if let Some((w, _)) = all.get(cluster) {
            return w.clone();
        }
        let w = Arc::new(ClusterWatch::default());
        let stop = CancellationToken::new();
        let pods = watcher::Config::default()
            .page_size(lists::PAGE as u32)
            .fields(lists::LIVE_PODS);
        let nodes = watcher::Config::default().page_size(lists::PAGE as u32);
        let (c, wc) = (cluster.clone(), w.clone());
        tokio::spawn(run::<WatchedPod, _>(
            Api::all(client.clone()),
            pods,
            c.clone(),
            wc.clone(),
            |w| &w.pods,
            stop.clone(),
        ));
        tokio::spawn(run::<WatchedNode, _>(
            Api::all(client.clone()),
            nodes,
            c,
            wc,
            |w| &w.nodes,
            stop.clone(),
        ));
        info!(cluster = %cluster, "watching nodes and pods");
        all.insert(cluster.clone(), (w.clone(), stop));
        w
    }

    /// Stops the watches of clusters not in `keep`.
    pub fn retain(&self, keep: &BTreeSet<&ClusterId>) {
        lock(&self.clusters).retain(|id, (_, stop)| {
            let kept = keep.contains(id);
            if !kept {
                info!(cluster = %id, "no longer watching nodes and pods");
                stop.cancel();
            }
            kept
        });
    }

    /// The watches of `cluster`, if running.
    pub fn get(&self, cluster: &ClusterId) -> Option<Arc<ClusterWatch>> {
        lock(&self.clusters).get(cluster).map(|(w, _)| w.clone())
    }

    /// Clusters watched.
    pub fn clusters(&self) -> Vec<ClusterId> {
        lock(&self.clusters).keys().cloned().collect()
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for (_, stop) in lock(&self.clusters).values() {
            stop.cancel();
        }
    }
}

/// One resource's watch of one cluster until `stop`: fold events; on an error forget the
/// table, wait the back-off and start over.
async fn run<K, T>(
    api: Api<K>,
    config: watcher::Config,
    cluster: ClusterId,
    watch: Arc<ClusterWatch>,
    table: fn(&ClusterWatch) -> &Mutex<Synced<T>>,
    stop: CancellationToken,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    T: Fold<K> + Send,
{
    let kind = K::plural(&());
    let mut backoff = DefaultBackoff::default();
    while !stop.is_cancelled() {
        let mut events = std::pin::pin!(watcher(api.clone(), config.clone()));
        let why = loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = events.next() => next,
            };
            match next {
                Some(Ok(ev)) => {
                    let done = matches!(ev, Event::InitDone);
                    lock(table(&watch)).event(ev);
                    if done {
                        info!(cluster = %cluster, kind = %kind, "watch synced");
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the watch stream ended".to_string(),
            }
        };
        lock(table(&watch)).lost();
        watch.restarts.fetch_add(1, Ordering::Relaxed);
        let wait = backoff.next().unwrap_or(std::time::Duration::from_secs(30));
        debug!(cluster = %cluster, kind = %kind, error = %why, retry_in = ?wait, "watch failed; starting over after the back-off");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str, app: &str, node: Option<&str>, cpu: &str) -> WatchedPod {
        let node = node
            .map(|n| format!(r#","nodeName":"{n}""#))
            .unwrap_or_default();
        serde_json::from_str(&format!(
            r#"{{"metadata":{{"uid":"{uid}","name":"{name}","namespace":"ns","resourceVersion":"1","labels":{{"app":"{app}","h":"x"}}}},
            "spec":{{"containers":[{{"resources":{{"requests":{{"cpu":"{cpu}"}}}}}}]{node}}},
            "status":{{"conditions":[{{"type":"PodScheduled","status":"False","reason":"Unschedulable"}}]}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_real_pod_and_node_read_into_the_watched_types() {
        let p: WatchedPod =
            serde_json::from_str(include_str!("../../../bench/scheduler/pod.json")).unwrap();
        assert!(p.metadata.uid.as_deref().is_some_and(|u| !u.is_empty()));
        assert!(p.metadata.resource_version.is_some());
        assert_eq!(p.requests.pods, 1);
        let n: WatchedNode =
            serde_json::from_str(include_str!("../../../bench/scheduler/node.json")).unwrap();
        assert!(n.allocatable.cpu_millis > 0);
    }

    #[test]
    fn events_fold_into_counts_and_totals() {
        let sel = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let mut t = Synced::<PodTable>::default();
        t.event(Event::Init);
        t.event(Event::InitApply(pod("1", "a", "web", Some("n"), "100m")));
        t.event(Event::InitApply(pod("2", "b", "web", None, "100m")));
        assert!(!t.synced);
        t.event(Event::InitDone);
        let mut names = BTreeSet::new();
        let c = t.current.count("ns", &sel, Some(&mut names));
        assert_eq!((c.scheduled, c.unschedulable), (1, 1));
        assert_eq!(names.len(), 2);
        assert_eq!(t.current.requested().cpu_millis, 100);
        // b binds, a is deleted, c appears in another group.
        t.event(Event::Apply(pod("2", "b", "web", Some("n"), "100m")));
        t.event(Event::Delete(pod("1", "a", "web", Some("n"), "100m")));
        t.event(Event::Apply(pod("3", "c", "db", Some("n"), "1")));
        let c = t.current.count("ns", &sel, None);
        assert_eq!((c.scheduled, c.unschedulable), (1, 0));
        assert_eq!(t.current.requested().cpu_millis, 1100);
        assert_eq!(t.current.count("other", &sel, None), PodCounts::default());
        // Deleting: still requested, no longer counted.
        let mut gone = pod("2", "b", "web", Some("n"), "100m");
        gone.deleting = true;
        t.event(Event::Apply(gone.clone()));
        assert_eq!(t.current.count("ns", &sel, None), PodCounts::default());
        assert_eq!(t.current.requested().cpu_millis, 1100);
        t.event(Event::Delete(gone));
        assert_eq!(t.current.requested().cpu_millis, 1000);
        assert_eq!((t.current.len(), t.current.groups.len()), (1, 1));
        // A relist replaces the table only when complete.
        t.event(Event::Init);
        t.event(Event::InitApply(pod("4", "d", "web", Some("n"), "200m")));
        assert_eq!(t.current.requested().cpu_millis, 1000);
        t.event(Event::InitDone);
        assert_eq!(t.current.requested().cpu_millis, 200);
        t.lost();
        assert!(!t.synced && t.current.is_empty());
    }
}
