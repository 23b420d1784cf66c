//! `spec.topology`: the sandbox's clusters, client networks, stub and users.

use std::collections::BTreeMap;

use causeway_model::ClusterId;
use serde::Deserialize;

/// The sandbox: clusters, client networks and the stub.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    /// Clusters, each a testbed control plane with kwok nodes.
    pub clusters: Vec<Cluster>,
    /// Client networks and their round-trip time to each cluster (dns's latency map).
    #[serde(default)]
    pub clients: Vec<ClientNetwork>,
    /// The stub (hub side of the tunnel).
    #[serde(default)]
    pub stub: Stub,
    /// Stub users the runner adds (`causeway user add`), for `expect.kubectl`.
    #[serde(default)]
    pub users: Vec<User>,
}

/// `topology.users[i]`: a user of the stub, with a kubeconfig for the clusters its
/// glob matches, and (with `rbac: view`) the built-in `view` ClusterRole bound to its
/// group in every cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// User name (`alice`); its kubeconfig is `<work>/<name>.kubeconfig`.
    pub name: String,
    /// The group the stub asserts for it (the member clusters' RBAC binds groups).
    pub group: String,
    /// The clusters it may reach through the stub, a glob (`"idc-*"`; default `"*"`).
    #[serde(default = "default_user_clusters")]
    pub clusters: String,
    /// The member RBAC the runner creates for its group (default `view`).
    #[serde(default)]
    pub rbac: UserRbac,
}

fn default_user_clusters() -> String {
    "*".into()
}

/// The member RBAC of a drill user's group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UserRbac {
    /// A ClusterRoleBinding of the group to the built-in `view` ClusterRole, in every cluster.
    #[default]
    View,
    /// Nothing: the member clusters refuse it everything.
    None,
}

/// One cluster of the sandbox.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    /// Cluster ID (`idc-bj`).
    pub name: ClusterId,
    /// Own data centre or public cloud.
    pub role: Role,
    /// Number of kwok nodes (1 to 100; default 2).
    #[serde(default = "default_nodes")]
    pub nodes: u32,
    /// CPU of each node, a Kubernetes quantity (`"32"`, `"500m"`; default `"32"`).
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// Agents connecting this cluster to the stub (1 to 4; default 1).
    #[serde(default = "default_agents")]
    pub agents: u32,
}

fn default_nodes() -> u32 {
    2
}
fn default_cpu() -> String {
    "32".into()
}
fn default_agents() -> u32 {
    1
}

/// What a cluster is to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Your own data centre: filled first, the usual primary.
    Idc,
    /// A public cloud: burst target, backup.
    Cloud,
}

/// A client network: where DNS questions come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientNetwork {
    /// Name used by `expect.dns.client`.
    pub name: String,
    /// The subnet sent as EDNS client subnet.
    pub subnet: ipnet::IpNet,
    /// Round-trip time to each cluster, in milliseconds.
    #[serde(default)]
    pub rtt_ms: BTreeMap<ClusterId, u32>,
}

/// The stub of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stub {
    /// 1, or 2 for an active stub and a standby (needed by `stubKilled`).
    #[serde(default = "default_stub_replicas")]
    pub replicas: u32,
}

impl Default for Stub {
    fn default() -> Self {
        Self {
            replicas: default_stub_replicas(),
        }
    }
}

fn default_stub_replicas() -> u32 {
    1
}
