//! What the scheduler saw of every cluster: plain data, filled by [`crate::observe`]
//! (or by a test, or by a what-if), read by [`crate::plan`].

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_model::ClusterId;

use crate::policy::WorkloadRef;
use crate::quantity::Resources;

/// One round's view of every cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// By cluster ID.
    pub clusters: BTreeMap<ClusterId, ClusterState>,
    /// External metric values by policy name (posted to the scheduler).
    pub external: BTreeMap<String, f64>,
    /// Failover policies: when this scheduler last wrote (or tried to write) each role
    /// lease, as time since it started, by policy and cluster. Filled from apply, not
    /// from the clusters: a write whose answer was lost may still have landed.
    pub renewals: BTreeMap<(String, ClusterId), Duration>,
}

/// One cluster as seen through the stub.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    /// The stub answered for it (an agent session is up and its API server replied).
    pub reachable: bool,
    /// Why not, when not.
    pub error: Option<String>,
    /// Allocatable of its schedulable, ready nodes.
    pub allocatable: Resources,
    /// Requests of its pods bound to a node and not finished.
    pub requested: Resources,
    /// The workloads the policies name, by reference.
    pub workloads: BTreeMap<WorkloadRef, WorkloadState>,
}

impl ClusterState {
    /// Allocatable minus requested.
    pub fn free(&self) -> Resources {
        self.allocatable.minus(self.requested)
    }
}

/// One Deployment in one cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadState {
    /// `spec.replicas`.
    pub replicas: u32,
    /// `status.readyReplicas`.
    pub ready: u32,
    /// Its pods bound to a node (running or starting).
    pub scheduled: u32,
    /// Its pods Pending with `PodScheduled=False, reason Unschedulable`.
    pub unschedulable: u32,
    /// Requests of one pod (from the pod template).
    pub pod_requests: Resources,
    /// Labelled as a copy managed by Causeway.
    pub managed: bool,
    /// The copy's `causeway.dev/applied-hash` annotation: apply skips an unchanged copy.
    pub applied_hash: Option<String>,
    /// Sum of its pods' CPU usage from `metrics.k8s.io`, millicores, when known.
    pub cpu_usage_millis: Option<u64>,
    /// Pods that `cpu_usage_millis` covers.
    pub pods_with_metrics: u32,
    /// Its HPA, when the policy names one and it exists here.
    pub hpa: Option<HpaState>,
    /// Failover policies: its role ConfigMap and role lease here.
    pub role: Option<RoleState>,
}

/// A failover workload's role in one cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleState {
    /// The role ConfigMap's `data.role` (`primary`, `replica`, `fenced`, or anything a
    /// person wrote); `None` when there is no such ConfigMap.
    pub role: Option<String>,
    /// Who changed it last (`causeway.dev/role-changed-by`: `scheduler`, `agent/<id>`).
    pub changed_by: Option<String>,
    /// The role lease here, when there is one.
    pub lease: Option<LeaseState>,
}

impl RoleState {
    /// The ConfigMap says `role`.
    pub fn is(&self, role: &str) -> bool {
        self.role.as_deref() == Some(role)
    }
}

/// A role lease as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseState {
    /// Time since its `renewTime`, by this scheduler's clock (which wrote it).
    pub age: Duration,
    /// The agent fenced the workload under it (`causeway.dev/fenced-by`).
    pub fenced_by: Option<String>,
}

/// A HorizontalPodAutoscaler's spec and status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HpaState {
    /// `spec.minReplicas`.
    pub min_replicas: u32,
    /// `spec.maxReplicas`.
    pub max_replicas: u32,
    /// `status.currentReplicas`.
    pub current_replicas: u32,
    /// `status.desiredReplicas`.
    pub desired_replicas: u32,
    /// Target average CPU utilization, percent of requests.
    pub target_cpu_percent: Option<u32>,
    /// Condition `ScalingLimited` is True (the HPA wants more than `maxReplicas`).
    pub scaling_limited: bool,
}
