//! Placement: which clusters serve a service, with which addresses, weights and roles.
//!
//! The scheduler computes it; dns answers from it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{ClusterId, Health};

/// The role a cluster plays for a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes traffic (active-active, or the DR primary).
    #[default]
    Active,
    /// Takes traffic only when no active cluster is healthy (DR backup).
    Standby,
    /// Being drained: keep answering existing clients, send no new ones.
    Draining,
}

/// One cluster serving a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementTarget {
    /// The cluster.
    pub cluster: ClusterId,
    /// Addresses clients should connect to (the cluster's ingress for this service).
    pub addresses: Vec<IpAddr>,
    /// Relative share of new traffic (0 = none).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Role of this cluster for the service.
    #[serde(default)]
    pub role: Role,
    /// Health as the scheduler sees it (ready replicas, agent reachability).
    #[serde(default = "default_health")]
    pub health: Health,
}

fn default_weight() -> u32 {
    100
}

fn default_health() -> Health {
    Health::Unknown
}

/// Which clusters serve one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// The service's DNS name, fully qualified (`app.svc.example.`).
    pub service: String,
    /// The clusters serving it.
    pub targets: Vec<PlacementTarget>,
}
