//! The scheduler's configuration: a `Scheduler` document and `BurstPolicy` documents.
//!
//! They are Kubernetes-style YAML read through [`causeway_config`], so every error is
//! `file:line:column: Kind/name: field.path: reason`. `docs/scheduler.md` is the reference.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_config::{ConfigError, Document, HumanDuration};
use causeway_model::ClusterId;
use serde::Deserialize;

/// Where the scheduler reaches clusters and dns, and how often it works.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulerSpec {
    /// A kubeconfig for the scheduler's stub identity (`causeway user add
    /// causeway-scheduler …`). Its server is `https://STUB/clusters/<id>`; the scheduler
    /// swaps the cluster ID to reach each member. Relative to the config file.
    pub stub_kubeconfig: PathBuf,
    /// dns's HTTP API (`http://127.0.0.1:8053`), where placement health is posted.
    #[serde(default)]
    pub dns_api: Option<String>,
    /// Time between two rounds of observe → plan → apply → publish.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Most API writes per second into member clusters, all clusters together.
    #[serde(default = "default_writes_per_second")]
    pub writes_per_second: u32,
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

fn default_writes_per_second() -> u32 {
    20
}

/// The workload a policy places: a Deployment in its home cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadRef {
    /// Namespace.
    pub namespace: String,
    /// Deployment name.
    pub deployment: String,
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.deployment)
    }
}

/// `BurstPolicy.spec`: fill the home clusters first, burst the overflow.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BurstSpec {
    /// The workload; its source of truth is the Deployment in the first home cluster.
    pub workload: WorkloadRef,
    /// Home (IDC) clusters in fill order.
    pub home: Vec<ClusterId>,
    /// Burst (public) clusters in preference order.
    pub burst: Vec<BurstTarget>,
    /// What says how many replicas are wanted.
    pub demand: Demand,
    /// Extra replicas on top of the overflow, in percent of it (rounded up).
    #[serde(default)]
    pub headroom_percent: u32,
    /// Scale-up and scale-down stabilization, with the HPA's defaults.
    #[serde(default)]
    pub behavior: Behavior,
    /// The GSLB name dns serves for this workload, and its TTL: a drained cluster keeps
    /// its replicas for one TTL after leaving the answers.
    #[serde(default)]
    pub dns: Option<DnsBinding>,
}

/// One burst cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BurstTarget {
    /// The cluster.
    pub cluster: ClusterId,
    /// Most replicas placed there.
    pub max_replicas: u32,
    /// Replicas kept there even with no overflow (warm standby); 0 deletes the copy.
    #[serde(default)]
    pub warm_minimum: u32,
    /// Changes to the copied Deployment in this cluster.
    #[serde(default)]
    pub overrides: Overrides,
}

/// Per-cluster changes to the copy of the home workload.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Overrides {
    /// Replace the registry (the part before the first `/`) of every container image.
    #[serde(default)]
    pub image_registry: Option<String>,
    /// Environment variables set on every container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// The demand source: exactly one of the three.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Demand {
    /// Replicas fixed by the user on the home Deployment; what cannot run at home
    /// (Pending `Unschedulable`, or more than allocatable minus requests allows) overflows.
    #[serde(default)]
    pub capacity: Option<CapacityDemand>,
    /// A real HPA on the home Deployment: total demand is the HPA algorithm over the
    /// pods of all clusters, and what is beyond the HPA's `maxReplicas` overflows.
    #[serde(default)]
    pub hpa: Option<HpaDemand>,
    /// An external metric value (posted to the scheduler) with a target per replica.
    #[serde(default)]
    pub external: Option<ExternalDemand>,
}

/// Capacity-driven demand (no settings yet; an empty mapping).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityDemand {}

/// HPA-driven demand.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaDemand {
    /// The HorizontalPodAutoscaler's name in the workload's namespace.
    pub name: String,
    /// Tolerance of the ratio before the demand changes (the HPA's default 0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    0.1
}

/// Demand from an external metric.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalDemand {
    /// Metric value one replica handles.
    pub target_per_replica: f64,
    /// Most replicas the home clusters together run.
    pub home_max_replicas: u32,
}

/// Scale-up / scale-down stabilization, as in `autoscaling/v2` `behavior`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// Scale-up rules (default: immediate).
    #[serde(default = "ScalingRules::up")]
    pub scale_up: ScalingRules,
    /// Scale-down rules (default: 300 s stabilization).
    #[serde(default = "ScalingRules::down")]
    pub scale_down: ScalingRules,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            scale_up: ScalingRules::up(),
            scale_down: ScalingRules::down(),
        }
    }
}

/// One direction's rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    /// Recommendations over this window are considered: scale-up takes their
    /// minimum, scale-down their maximum (the HPA's rule).
    pub stabilization_window: HumanDuration,
}

impl ScalingRules {
    fn up() -> Self {
        Self {
            stabilization_window: HumanDuration(Duration::ZERO),
        }
    }
    fn down() -> Self {
        Self {
            stabilization_window: HumanDuration(Duration::from_secs(300)),
        }
    }
}

/// The GSLB name of a workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsBinding {
    /// Fully qualified name (`app.svc.example.`).
    pub name: String,
    /// TTL of its records: how long a drained cluster keeps its replicas.
    #[serde(default = "default_dns_ttl")]
    pub ttl: HumanDuration,
}

fn default_dns_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// A checked `BurstPolicy`.
#[derive(Debug, Clone)]
pub struct BurstPolicy {
    /// `metadata.name`.
    pub name: String,
    /// The spec.
    pub spec: BurstSpec,
}

/// The demand source a policy uses, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemandKind {
    /// [`Demand::capacity`].
    Capacity,
    /// [`Demand::hpa`].
    Hpa,
    /// [`Demand::external`].
    External,
}

impl BurstSpec {
    /// Which demand source is set (checked to be exactly one when loaded).
    pub fn demand_kind(&self) -> DemandKind {
        if self.demand.hpa.is_some() {
            DemandKind::Hpa
        } else if self.demand.external.is_some() {
            DemandKind::External
        } else {
            DemandKind::Capacity
        }
    }

    /// The first home cluster: where the source Deployment lives.
    pub fn source_cluster(&self) -> &ClusterId {
        // Checked non-empty when loaded.
        &self.home[0]
    }
}

/// Everything the scheduler reads from its files.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The files read.
    pub files: Vec<PathBuf>,
    /// The `Scheduler` document.
    pub scheduler: SchedulerSpec,
    /// Every `BurstPolicy`, by name.
    pub burst: Vec<BurstPolicy>,
}

impl SchedulerConfig {
    /// Reads and checks `files` (one `Scheduler` document in all, any number of policies).
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut scheduler: Option<(SchedulerSpec, PathBuf)> = None;
        let mut burst: Vec<BurstPolicy> = Vec::new();
        let mut names = BTreeSet::new();
        for file in files {
            for doc in causeway_config::read_file(file)? {
                match doc.kind.as_str() {
                    "Scheduler" => {
                        if scheduler.is_some() {
                            return Err(doc.error("kind", "only one Scheduler document is allowed"));
                        }
                        let mut spec: SchedulerSpec = doc.spec()?;
                        spec.stub_kubeconfig = relative_to(file, &spec.stub_kubeconfig);
                        if spec.interval.0 < Duration::from_millis(100) {
                            return Err(doc.error("spec.interval", "must be at least 100ms"));
                        }
                        if spec.writes_per_second == 0 {
                            return Err(doc.error("spec.writesPerSecond", "must be at least 1"));
                        }
                        scheduler = Some((spec, file.clone()));
                    }
                    "BurstPolicy" => {
                        let spec: BurstSpec = doc.spec()?;
                        check_burst(&doc, &spec)?;
                        if !names.insert(doc.name().to_string()) {
                            return Err(doc.error(
                                "metadata.name",
                                "a BurstPolicy of this name is already defined",
                            ));
                        }
                        burst.push(BurstPolicy {
                            name: doc.name().to_string(),
                            spec,
                        });
                    }
                    _ => return Err(doc.unknown_kind(&["Scheduler", "BurstPolicy"])),
                }
            }
        }
        let first = files
            .first()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("(no file)"));
        let Some((scheduler, _)) = scheduler else {
            return Err(ConfigError::file(
                first,
                "no Scheduler document in any file given",
            ));
        };
        Ok(Self {
            files: files.to_vec(),
            scheduler,
            burst,
        })
    }

    /// Every cluster any policy names, sorted.
    pub fn clusters(&self) -> BTreeSet<ClusterId> {
        let mut out = BTreeSet::new();
        for p in &self.burst {
            out.extend(p.spec.home.iter().cloned());
            out.extend(p.spec.burst.iter().map(|b| b.cluster.clone()));
        }
        out
    }
}

fn relative_to(file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    file.parent()
        .map(|d| d.join(p))
        .unwrap_or_else(|| p.to_path_buf())
}

fn check_burst(doc: &Document, spec: &BurstSpec) -> Result<(), ConfigError> {
    let set = [
        spec.demand.capacity.is_some(),
        spec.demand.hpa.is_some(),
        spec.demand.external.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(doc.error(
            "spec.demand",
            "set exactly one of capacity, hpa or external",
        ));
    }
    if let Some(h) = &spec.demand.hpa
        && !(0.0..1.0).contains(&h.tolerance)
    {
        return Err(doc.error(
            "spec.demand.hpa.tolerance",
            "must be at least 0 and below 1",
        ));
    }
    if let Some(e) = &spec.demand.external
        && !(e.target_per_replica.is_finite() && e.target_per_replica > 0.0)
    {
        return Err(doc.error(
            "spec.demand.external.targetPerReplica",
            "must be a positive number",
        ));
    }
    if spec.home.is_empty() {
        return Err(doc.error("spec.home", "name at least one home cluster"));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in spec.home.iter().enumerate() {
        if !seen.insert(c) {
            return Err(doc.error(
                &format!("spec.home[{i}]"),
                format_args!("cluster {c} is listed twice"),
            ));
        }
    }
    for (i, b) in spec.burst.iter().enumerate() {
        if !seen.insert(&b.cluster) {
            return Err(doc.error(
                &format!("spec.burst[{i}].cluster"),
                format_args!(
                    "cluster {} is already a home or burst cluster of this policy",
                    b.cluster
                ),
            ));
        }
        if b.warm_minimum > b.max_replicas {
            return Err(doc.error(
                &format!("spec.burst[{i}].warmMinimum"),
                format_args!("must not exceed maxReplicas ({})", b.max_replicas),
            ));
        }
        if let Some(r) = &b.overrides.image_registry
            && (r.is_empty() || r.contains('/') || r.contains(char::is_whitespace))
        {
            return Err(doc.error(
                &format!("spec.burst[{i}].overrides.imageRegistry"),
                "must be a registry host[:port] without '/'",
            ));
        }
    }
    if let Some(d) = &spec.dns
        && !d.name.ends_with('.')
    {
        return Err(doc.error("spec.dns.name", "must be fully qualified (end with '.')"));
    }
    for (field, v) in [
        ("namespace", &spec.workload.namespace),
        ("deployment", &spec.workload.deployment),
    ] {
        if !is_dns_label(v) {
            return Err(doc.error(
                &format!("spec.workload.{field}"),
                "must be a Kubernetes name (lower-case letters, digits, '-')",
            ));
        }
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests;
