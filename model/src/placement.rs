//! Placement: which clusters serve a service, with which addresses, weights and roles.
//!
//! The scheduler computes it; dns answers from it (`POST /v1/placement` on dns's API, or
//! in process in `causeway hub`). A placement names some of a GSLB name's targets by
//! cluster; dns applies each named target's weight, role, health and (when given)
//! addresses over its zone configuration, and keeps the zone's settings for the others.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{ClusterId, Health};

/// The role a cluster plays for a service.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementTarget {
    /// The cluster.
    pub cluster: ClusterId,
    /// Addresses clients should connect to (the cluster's ingress for this service).
    /// Empty: keep the addresses dns has configured for the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// Relative share of new traffic (0 = none: no new clients).
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// The service's DNS name, fully qualified (`app.svc.example.`).
    pub service: String,
    /// The clusters serving it.
    pub targets: Vec<PlacementTarget>,
}
