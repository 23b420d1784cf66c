//! `FailoverPolicy`: disaster recovery for a workload with one writer (a database with
//! a read-write primary and read-only replicas). Each cluster runs its own Deployment of
//! the workload; the scheduler only moves the *role*, carried by a ConfigMap the app
//! reads, and fences the old primary before it promotes a backup. The protocol is in
//! `docs/scheduler.md` ("Failover and fencing").

use std::collections::BTreeSet;
use std::time::Duration;

use causeway_config::{ConfigError, Document, HumanDuration};
use causeway_model::ClusterId;
use serde::Deserialize;

use super::{DnsBinding, WorkloadRef, check_dns, check_workload, is_dns_label};

/// `FailoverPolicy.spec`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailoverSpec {
    /// The workload: a Deployment of this name runs in every cluster named here.
    pub workload: WorkloadRef,
    /// The preferred primary: the first holder of the role.
    #[schemars(with = "String")]
    pub primary: ClusterId,
    /// Backups in promotion order.
    #[schemars(with = "Vec<String>")]
    pub backups: Vec<ClusterId>,
    /// A promoted cluster runs at least this many replicas (a cold standby at 0 is
    /// scaled up when promoted).
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// The ConfigMap (in the workload's namespace, key `role`) the app reads its role
    /// from: `primary`, `replica` or `fenced`. Default `<deployment>-role`.
    #[serde(default)]
    pub role_config_map: Option<String>,
    /// What fencing does to the old primary.
    #[serde(default)]
    pub fence: FenceMode,
    /// The role lease the primary's agent watches.
    #[serde(default)]
    pub lease: LeaseSpec,
    /// A reachable primary with no ready replica this long is failed over (fenced by
    /// the scheduler first, confirmed, then the backup promoted).
    #[serde(default = "default_unhealthy_after")]
    #[schemars(with = "String")]
    pub unhealthy_after: HumanDuration,
    /// Fail back to `primary` on its own once it has been a healthy `replica` this long
    /// (a planned switchover: fence, confirm, promote). Without it, failback is manual.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub failback_after: Option<HumanDuration>,
    /// The recovery time objective: the measured RTO is reported against it.
    #[serde(default = "default_rto")]
    #[schemars(with = "String")]
    pub rto: HumanDuration,
    /// The GSLB name: only the serving primary is in its answers.
    #[serde(default)]
    pub dns: Option<DnsBinding>,
}

fn default_replicas() -> u32 {
    1
}

fn default_unhealthy_after() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_rto() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// How the old primary is fenced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FenceMode {
    /// Role `fenced` and the Deployment scaled to 0.
    #[default]
    ScaleToZero,
    /// Role `fenced` only: the app stops writing when it reads it.
    Role,
}

impl FenceMode {
    /// The value of the role lease's `causeway.dev/fence-mode` annotation.
    pub fn annotation(self) -> &'static str {
        match self {
            FenceMode::ScaleToZero => "scale-to-zero",
            FenceMode::Role => "role",
        }
    }
}

/// The role lease: renewed through the stub while the primary is reachable; its agent
/// fences the primary when it is not renewed for `duration`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseSpec {
    /// `leaseDurationSeconds` (whole seconds, at least 2 s).
    #[serde(default = "default_lease_duration")]
    #[schemars(with = "String")]
    pub duration: HumanDuration,
    /// Added to the duration before a backup of an unreachable primary is promoted: the
    /// agent's poll interval, its writes and clock-rate drift must fit in it.
    #[serde(default = "default_lease_margin")]
    #[schemars(with = "String")]
    pub margin: HumanDuration,
}

impl Default for LeaseSpec {
    fn default() -> Self {
        Self {
            duration: default_lease_duration(),
            margin: default_lease_margin(),
        }
    }
}

fn default_lease_duration() -> HumanDuration {
    HumanDuration(Duration::from_secs(15))
}

fn default_lease_margin() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// A checked `FailoverPolicy`.
#[derive(Debug, Clone)]
pub struct FailoverPolicy {
    /// `metadata.name`.
    pub name: String,
    /// The spec.
    pub spec: FailoverSpec,
}

impl FailoverSpec {
    /// The primary, then the backups: every cluster, in promotion order.
    pub fn clusters(&self) -> impl Iterator<Item = &ClusterId> {
        std::iter::once(&self.primary).chain(self.backups.iter())
    }

    /// The role ConfigMap's name.
    pub fn role_config_map(&self) -> String {
        self.role_config_map
            .clone()
            .unwrap_or_else(|| format!("{}-role", self.workload.deployment))
    }
}

impl FailoverPolicy {
    /// The role lease's name in the primary's cluster.
    pub fn lease_name(&self) -> String {
        format!("causeway-role-{}", self.name)
    }
}

/// The smallest margin accepted: the agent polls every second by default and must
/// also write the fence.
const MIN_MARGIN: Duration = Duration::from_secs(2);

pub(super) fn check_failover(doc: &Document, spec: &FailoverSpec) -> Result<(), ConfigError> {
    check_workload(doc, &spec.workload)?;
    if spec.backups.is_empty() {
        return Err(doc.error("spec.backups", "name at least one backup cluster"));
    }
    let mut seen = BTreeSet::from([&spec.primary]);
    for (i, b) in spec.backups.iter().enumerate() {
        if !seen.insert(b) {
            return Err(doc.error(
                &format!("spec.backups[{i}]"),
                format_args!("cluster {b} is listed twice (or is the primary)"),
            ));
        }
    }
    if spec.replicas == 0 {
        return Err(doc.error(
            "spec.replicas",
            "a promoted primary needs at least 1 replica",
        ));
    }
    if let Some(cm) = &spec.role_config_map
        && !is_dns_label(cm)
    {
        return Err(doc.error(
            "spec.roleConfigMap",
            "must be a Kubernetes name (lower-case letters, digits, '-')",
        ));
    }
    let d = spec.lease.duration.0;
    if d < Duration::from_secs(2) || d.subsec_nanos() != 0 {
        return Err(doc.error(
            "spec.lease.duration",
            "must be whole seconds, at least 2s (it is the Lease's leaseDurationSeconds)",
        ));
    }
    if spec.lease.margin.0 < MIN_MARGIN {
        return Err(doc.error(
            "spec.lease.margin",
            "must be at least 2s: the agent's poll interval and its fence writes must fit in it",
        ));
    }
    check_dns(doc, spec.dns.as_ref())
}

/// The lease must be renewed at least three times per duration, once per round at most.
pub(super) fn check_interval(
    doc: &Document,
    spec: &FailoverSpec,
    interval: Duration,
) -> Result<(), ConfigError> {
    if interval.saturating_mul(3) > spec.lease.duration.0 {
        return Err(doc.error(
            "spec.lease.duration",
            format_args!(
                "must be at least 3 scheduler intervals ({:?}): the lease is renewed once per round",
                interval.saturating_mul(3)
            ),
        ));
    }
    Ok(())
}
