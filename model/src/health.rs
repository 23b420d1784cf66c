//! Health of a cluster for one service, as the scheduler or a prober reports it.

use serde::{Deserialize, Serialize};

use crate::ClusterId;

/// Whether a cluster can take traffic for a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Serving.
    Healthy,
    /// Not serving: down, unreachable, or no ready replicas.
    Unhealthy,
    /// Nothing known yet.
    Unknown,
}

/// An external health input: "cluster X is unhealthy for service S, because …".
///
/// dns combines these with its own probes; the scheduler sends them when, for
/// example, a cluster has 0 ready replicas or its agent is unreachable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthReport {
    /// The service (a GSLB name such as `app.svc.example.`), or `None` for every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The cluster reported on.
    pub cluster: ClusterId,
    /// Its health.
    pub health: Health,
    /// A short reason for people reading logs and `explain`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}
