//! The scheduler's configuration: a `Scheduler` document, `BurstPolicy`,
//! `SpreadPolicy` and `FailoverPolicy` documents.
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

pub mod failover;

pub use failover::{FailoverPolicy, FailoverSpec, FenceMode, LeaseSpec};

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BurstSpec {
    /// The workload; its source of truth is the Deployment in the first home cluster.
    pub workload: WorkloadRef,
    /// Home (IDC) clusters in fill order.
    #[schemars(with = "Vec<String>")]
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BurstTarget {
    /// The cluster.
    #[schemars(with = "String")]
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
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Overrides {
    /// Replace the registry (the part before the first `/`) of every container image.
    #[serde(default)]
    pub image_registry: Option<String>,
    /// Environment variables set on every container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Overrides {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.image_registry.is_none() && self.env.is_empty()
    }
}

/// The demand source: exactly one of the three.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.capacity), has(self.hpa), has(self.external)].filter(x, x).size() == 1",
    "message": "set exactly one of capacity, hpa or external"
}]))]
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
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityDemand {}

/// HPA-driven demand.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalDemand {
    /// Metric value one replica handles.
    pub target_per_replica: f64,
    /// Most replicas the home clusters together run.
    pub home_max_replicas: u32,
}

/// Scale-up / scale-down stabilization and rate limits, as in `autoscaling/v2`
/// `behavior`. A direction left out, or a field of it left out, takes the HPA's default.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(from = "RawBehavior")]
#[schemars(into = "RawBehavior")] // the schema of what is written, both ways
pub struct Behavior {
    /// Scale-up rules (default: immediate, at most +100 % or +4 replicas per 15 s,
    /// whichever is more).
    pub scale_up: ScalingRules,
    /// Scale-down rules (default: 300 s stabilization, at most -100 % per 15 s).
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

/// `behavior` as written, before the defaults of each direction are filled in.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBehavior {
    #[serde(default)]
    scale_up: Option<RawScalingRules>,
    #[serde(default)]
    scale_down: Option<RawScalingRules>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawScalingRules {
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    stabilization_window: Option<HumanDuration>,
    #[serde(default)]
    policies: Option<Vec<ScalingPolicy>>,
    #[serde(default)]
    select_policy: Option<SelectPolicy>,
}

impl RawScalingRules {
    fn or(self, d: ScalingRules) -> ScalingRules {
        ScalingRules {
            stabilization_window: self.stabilization_window.unwrap_or(d.stabilization_window),
            policies: self.policies.unwrap_or(d.policies),
            select_policy: self.select_policy.unwrap_or(d.select_policy),
        }
    }
}

impl From<RawBehavior> for Behavior {
    fn from(r: RawBehavior) -> Self {
        let fill = |raw: Option<RawScalingRules>, d: ScalingRules| match raw {
            Some(raw) => raw.or(d),
            None => d,
        };
        Self {
            scale_up: fill(r.scale_up, ScalingRules::up()),
            scale_down: fill(r.scale_down, ScalingRules::down()),
        }
    }
}

/// One direction's rules (`HPAScalingRules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingRules {
    /// Recommendations over this window are considered: scale-up takes their
    /// minimum, scale-down their maximum (the HPA's rule).
    pub stabilization_window: HumanDuration,
    /// Rate limits: each allows a change relative to the replicas at the start of its
    /// period; [`ScalingRules::select_policy`] picks among them.
    pub policies: Vec<ScalingPolicy>,
    /// Which policy's limit applies, or none (no change in this direction).
    pub select_policy: SelectPolicy,
}

impl ScalingRules {
    /// The HPA's scale-up default: no window; `Max` of +100 % and +4 pods per 15 s.
    pub fn up() -> Self {
        Self {
            stabilization_window: HumanDuration(Duration::ZERO),
            policies: vec![
                ScalingPolicy {
                    kind: ScalingPolicyType::Percent,
                    value: 100,
                    period_seconds: 15,
                },
                ScalingPolicy {
                    kind: ScalingPolicyType::Pods,
                    value: 4,
                    period_seconds: 15,
                },
            ],
            select_policy: SelectPolicy::Max,
        }
    }

    /// The HPA's scale-down default: a 300 s window; -100 % per 15 s.
    pub fn down() -> Self {
        Self {
            stabilization_window: HumanDuration(Duration::from_secs(300)),
            policies: vec![ScalingPolicy {
                kind: ScalingPolicyType::Percent,
                value: 100,
                period_seconds: 15,
            }],
            select_policy: SelectPolicy::Max,
        }
    }
}

/// One rate limit (`HPAScalingPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: ScalingPolicyType,
    /// Replicas (`Pods`) or percent of the replicas at the period's start (`Percent`);
    /// at least 1.
    pub value: u32,
    /// The period the change is counted over, 1..=1800 s.
    pub period_seconds: u32,
}

impl std::fmt::Display for ScalingPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ScalingPolicyType::Pods => "Pods",
            ScalingPolicyType::Percent => "Percent",
        };
        write!(f, "{kind} {}/{}s", self.value, self.period_seconds)
    }
}

/// What a [`ScalingPolicy`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum ScalingPolicyType {
    /// A number of replicas.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// Which policy applies when there are several (`selectPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum SelectPolicy {
    /// The policy allowing the largest change.
    #[default]
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No change in this direction.
    Disabled,
}

/// The GSLB name of a workload.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsBinding {
    /// Fully qualified name (`app.svc.example.`).
    pub name: String,
    /// TTL of its records: how long a drained cluster keeps its replicas.
    #[serde(default = "default_dns_ttl")]
    #[schemars(with = "String")]
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

/// `SpreadPolicy.spec`: active-active, the replicas spread over clusters by weight or
/// by free capacity, with a minimum per cluster.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpreadSpec {
    /// The workload; its source of truth is the Deployment in the first cluster.
    pub workload: WorkloadRef,
    /// Replicas in all clusters together.
    pub replicas: u32,
    /// The clusters, the first holding the source Deployment. Their order breaks ties
    /// when rounding.
    pub clusters: Vec<SpreadTarget>,
    /// What the replicas are split by.
    #[serde(default)]
    pub by: SpreadBy,
    /// Scale-up and scale-down stabilization, with the HPA's defaults: a cluster that
    /// takes over a lost cluster's share scales up at once; when the lost cluster is
    /// back, the others give their extra replicas back through the scale-down window.
    #[serde(default)]
    pub behavior: Behavior,
    /// A cluster that was unreachable gets its share back only after it has been
    /// reachable again this long (it stays out of the split and out of DNS until then).
    #[serde(default = "default_rebalance_after")]
    #[schemars(with = "String")]
    pub rebalance_after: HumanDuration,
    /// The GSLB name dns serves for this workload, and its TTL: a cluster going to 0
    /// leaves the answers one TTL before its replicas go.
    #[serde(default)]
    pub dns: Option<DnsBinding>,
}

fn default_rebalance_after() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// One cluster of a `SpreadPolicy`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpreadTarget {
    /// The cluster.
    #[schemars(with = "String")]
    pub cluster: ClusterId,
    /// Relative share with `by: weight` (default 1; 0 = only its minimum). Not used
    /// with `by: freeCapacity`.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Replicas it gets at least while it is reachable.
    #[serde(default)]
    pub min_replicas: u32,
    /// Changes to the copied Deployment in this cluster (not in the first cluster,
    /// which holds the source).
    #[serde(default)]
    pub overrides: Overrides,
}

impl SpreadTarget {
    /// The weight with its default (1).
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }
}

/// What a `SpreadPolicy` splits its replicas by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SpreadBy {
    /// Each cluster's `weight`.
    #[default]
    Weight,
    /// How many of the workload's pods fit in each cluster: the ones it runs there plus
    /// what allocatable minus requests takes.
    FreeCapacity,
}

/// A checked `SpreadPolicy`.
#[derive(Debug, Clone)]
pub struct SpreadPolicy {
    /// `metadata.name`.
    pub name: String,
    /// The spec.
    pub spec: SpreadSpec,
}

impl SpreadSpec {
    /// The first cluster: where the source Deployment lives.
    pub fn source_cluster(&self) -> &ClusterId {
        // Checked non-empty when loaded.
        &self.clusters[0].cluster
    }
}

/// Every policy of a configuration, by kind, borrowed: what observe, plan, apply and
/// publish take. `&SchedulerConfig`, a slice or `Vec` of one kind convert into it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policies<'a> {
    /// The `BurstPolicy` documents.
    pub burst: &'a [BurstPolicy],
    /// The `SpreadPolicy` documents.
    pub spread: &'a [SpreadPolicy],
    /// The `FailoverPolicy` documents.
    pub failover: &'a [FailoverPolicy],
}

/// One policy of any kind.
#[derive(Debug, Clone, Copy)]
pub enum PolicyRef<'a> {
    /// A `BurstPolicy`.
    Burst(&'a BurstPolicy),
    /// A `SpreadPolicy`.
    Spread(&'a SpreadPolicy),
    /// A `FailoverPolicy`.
    Failover(&'a FailoverPolicy),
}

impl<'a> Policies<'a> {
    /// Every policy, burst first, then spread, then failover, each kind in file order.
    pub fn iter(&self) -> impl Iterator<Item = PolicyRef<'a>> + 'a {
        let (burst, spread, failover) = (self.burst, self.spread, self.failover);
        burst
            .iter()
            .map(PolicyRef::Burst)
            .chain(spread.iter().map(PolicyRef::Spread))
            .chain(failover.iter().map(PolicyRef::Failover))
    }

    /// The policy called `name` (names are unique across kinds).
    pub fn get(&self, name: &str) -> Option<PolicyRef<'a>> {
        self.iter().find(|p| p.name() == name)
    }

    /// How many policies there are.
    pub fn len(&self) -> usize {
        self.burst.len() + self.spread.len() + self.failover.len()
    }

    /// No policy at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> PolicyRef<'a> {
    /// Its `kind` (`BurstPolicy`, `SpreadPolicy`, `FailoverPolicy`).
    pub fn kind(self) -> &'static str {
        match self {
            PolicyRef::Burst(_) => "BurstPolicy",
            PolicyRef::Spread(_) => "SpreadPolicy",
            PolicyRef::Failover(_) => "FailoverPolicy",
        }
    }

    /// `metadata.name`.
    pub fn name(self) -> &'a str {
        match self {
            PolicyRef::Burst(p) => &p.name,
            PolicyRef::Spread(p) => &p.name,
            PolicyRef::Failover(p) => &p.name,
        }
    }

    /// The workload it places.
    pub fn workload(self) -> &'a WorkloadRef {
        match self {
            PolicyRef::Burst(p) => &p.spec.workload,
            PolicyRef::Spread(p) => &p.spec.workload,
            PolicyRef::Failover(p) => &p.spec.workload,
        }
    }

    /// The cluster holding the source Deployment (a failover policy's preferred primary).
    pub fn source_cluster(self) -> &'a ClusterId {
        match self {
            PolicyRef::Burst(p) => p.spec.source_cluster(),
            PolicyRef::Spread(p) => p.spec.source_cluster(),
            PolicyRef::Failover(p) => &p.spec.primary,
        }
    }

    /// Its GSLB name, if any.
    pub fn dns(self) -> Option<&'a DnsBinding> {
        match self {
            PolicyRef::Burst(p) => p.spec.dns.as_ref(),
            PolicyRef::Spread(p) => p.spec.dns.as_ref(),
            PolicyRef::Failover(p) => p.spec.dns.as_ref(),
        }
    }

    /// The overrides of the copy in `cluster` (none when it has none).
    pub fn overrides(self, cluster: &ClusterId) -> Option<&'a Overrides> {
        match self {
            PolicyRef::Burst(p) => p
                .spec
                .burst
                .iter()
                .find(|b| &b.cluster == cluster)
                .map(|b| &b.overrides),
            PolicyRef::Spread(p) => p
                .spec
                .clusters
                .iter()
                .find(|t| &t.cluster == cluster)
                .map(|t| &t.overrides),
            PolicyRef::Failover(_) => None,
        }
    }

    /// Every cluster it names, in its order.
    pub fn clusters(self) -> Box<dyn Iterator<Item = &'a ClusterId> + 'a> {
        match self {
            PolicyRef::Burst(p) => Box::new(
                p.spec
                    .home
                    .iter()
                    .chain(p.spec.burst.iter().map(|b| &b.cluster)),
            ),
            PolicyRef::Spread(p) => Box::new(p.spec.clusters.iter().map(|t| &t.cluster)),
            PolicyRef::Failover(p) => Box::new(p.spec.clusters()),
        }
    }
}

impl<'a> From<&'a BurstPolicy> for PolicyRef<'a> {
    fn from(p: &'a BurstPolicy) -> Self {
        PolicyRef::Burst(p)
    }
}

impl<'a> From<&'a SpreadPolicy> for PolicyRef<'a> {
    fn from(p: &'a SpreadPolicy) -> Self {
        PolicyRef::Spread(p)
    }
}

impl<'a> From<&'a FailoverPolicy> for PolicyRef<'a> {
    fn from(p: &'a FailoverPolicy) -> Self {
        PolicyRef::Failover(p)
    }
}

impl<'a> From<&'a SchedulerConfig> for Policies<'a> {
    fn from(c: &'a SchedulerConfig) -> Self {
        Policies {
            burst: &c.burst,
            spread: &c.spread,
            failover: &c.failover,
        }
    }
}

impl<'a> From<&'a [BurstPolicy]> for Policies<'a> {
    fn from(burst: &'a [BurstPolicy]) -> Self {
        Policies {
            burst,
            ..Default::default()
        }
    }
}

impl<'a> From<&'a Vec<BurstPolicy>> for Policies<'a> {
    fn from(burst: &'a Vec<BurstPolicy>) -> Self {
        Policies {
            burst,
            ..Default::default()
        }
    }
}

impl<'a, const N: usize> From<&'a [BurstPolicy; N]> for Policies<'a> {
    fn from(burst: &'a [BurstPolicy; N]) -> Self {
        Policies {
            burst,
            ..Default::default()
        }
    }
}

impl<'a> From<&'a [SpreadPolicy]> for Policies<'a> {
    fn from(spread: &'a [SpreadPolicy]) -> Self {
        Policies {
            spread,
            ..Default::default()
        }
    }
}

impl<'a> From<&'a Vec<SpreadPolicy>> for Policies<'a> {
    fn from(spread: &'a Vec<SpreadPolicy>) -> Self {
        Policies {
            spread,
            ..Default::default()
        }
    }
}

impl<'a> From<&'a [FailoverPolicy]> for Policies<'a> {
    fn from(failover: &'a [FailoverPolicy]) -> Self {
        Policies {
            failover,
            ..Default::default()
        }
    }
}

impl<'a> From<&'a Vec<FailoverPolicy>> for Policies<'a> {
    fn from(failover: &'a Vec<FailoverPolicy>) -> Self {
        Policies {
            failover,
            ..Default::default()
        }
    }
}

impl<'a, const N: usize> From<&'a [FailoverPolicy; N]> for Policies<'a> {
    fn from(failover: &'a [FailoverPolicy; N]) -> Self {
        Policies {
            failover,
            ..Default::default()
        }
    }
}

impl<'a, const N: usize> From<&'a [SpreadPolicy; N]> for Policies<'a> {
    fn from(spread: &'a [SpreadPolicy; N]) -> Self {
        Policies {
            spread,
            ..Default::default()
        }
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
    /// Every `SpreadPolicy`, by name.
    pub spread: Vec<SpreadPolicy>,
    /// Every `FailoverPolicy`, by name.
    pub failover: Vec<FailoverPolicy>,
}

impl SchedulerConfig {
    /// Reads and checks `files` (one `Scheduler` document in all, any number of policies).
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut docs = Vec::new();
        for file in files {
            docs.extend(causeway_config::read_file(file)?);
        }
        let first = files
            .first()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("(no file)"));
        let mut config = Self::checked(&docs, first)?;
        config.files = files.to_vec();
        Ok(config)
    }

    /// Checks `docs` (one `Scheduler` document in all, any number of policies), as
    /// [`Self::load`] does once it has read its files. Production mode calls it on the
    /// file's documents followed by the hub's objects (`causeway_hubstore::LastGood`);
    /// each error names the document's file (or `hub:` object). [`Self::files`] lists the
    /// documents' distinct files in order.
    pub fn from_documents(docs: &[Document]) -> Result<Self, ConfigError> {
        let first = docs
            .first()
            .map(Document::file)
            .unwrap_or(Path::new("(no file)"));
        Self::checked(docs, first)
    }

    fn checked(docs: &[Document], first: &Path) -> Result<Self, ConfigError> {
        let mut scheduler: Option<SchedulerSpec> = None;
        let mut files: Vec<PathBuf> = Vec::new();
        let mut burst: Vec<BurstPolicy> = Vec::new();
        let mut spread: Vec<SpreadPolicy> = Vec::new();
        let mut failover: Vec<FailoverPolicy> = Vec::new();
        // Checked against the Scheduler's interval once every document is read.
        let mut failover_docs: Vec<&Document> = Vec::new();
        // Workload → the failover policy moving its role: nothing else may place it.
        let mut names = BTreeSet::new();
        // Workload → the first policy placing it (`Kind/name`): only BurstPolicies may share one.
        let mut placers: BTreeMap<WorkloadRef, String> = BTreeMap::new();
        for doc in docs {
            let file = doc.file();
            if !files.iter().any(|f| f == file) {
                files.push(file.to_path_buf());
            }
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
                    scheduler = Some(spec);
                }
                "BurstPolicy" => {
                    let spec: BurstSpec = doc.spec()?;
                    check_burst(doc, &spec)?;
                    claim(doc, &spec.workload, &mut names, &mut placers)?;
                    burst.push(BurstPolicy {
                        name: doc.name().to_string(),
                        spec,
                    });
                }
                "SpreadPolicy" => {
                    let spec: SpreadSpec = doc.spec()?;
                    check_spread(doc, &spec)?;
                    claim(doc, &spec.workload, &mut names, &mut placers)?;
                    spread.push(SpreadPolicy {
                        name: doc.name().to_string(),
                        spec,
                    });
                }
                "FailoverPolicy" => {
                    let spec: FailoverSpec = doc.spec()?;
                    failover::check_failover(doc, &spec)?;
                    claim(doc, &spec.workload, &mut names, &mut placers)?;
                    failover.push(FailoverPolicy {
                        name: doc.name().to_string(),
                        spec,
                    });
                    failover_docs.push(doc);
                }
                _ => {
                    return Err(doc.unknown_kind(&[
                        "Scheduler",
                        "BurstPolicy",
                        "SpreadPolicy",
                        "FailoverPolicy",
                    ]));
                }
            }
        }
        let Some(scheduler) = scheduler else {
            return Err(ConfigError::file(
                first,
                "no Scheduler document in any file given",
            ));
        };
        for (doc, p) in failover_docs.iter().zip(&failover) {
            failover::check_interval(doc, &p.spec, scheduler.interval.0)?;
        }
        Ok(Self {
            files,
            scheduler,
            burst,
            spread,
            failover,
        })
    }

    /// Every cluster any policy names, sorted.
    pub fn clusters(&self) -> BTreeSet<ClusterId> {
        self.policies()
            .iter()
            .flat_map(|p| p.clusters().cloned())
            .collect()
    }

    /// Every policy, of every kind.
    pub fn policies(&self) -> Policies<'_> {
        Policies::from(self)
    }
}

/// Registers policy `doc` (a unique name) as the placer of `workload`. A workload has one
/// placer, except that several BurstPolicies may share one.
fn claim(
    doc: &Document,
    workload: &WorkloadRef,
    names: &mut BTreeSet<String>,
    placers: &mut BTreeMap<WorkloadRef, String>,
) -> Result<(), ConfigError> {
    if !names.insert(doc.name().to_string()) {
        return Err(doc.error("metadata.name", "a policy of this name is already defined"));
    }
    let me = format!("{}/{}", doc.kind, doc.name());
    match placers.get(workload) {
        Some(other) if !(doc.kind == "BurstPolicy" && other.starts_with("BurstPolicy/")) => {
            Err(doc.error(
                "spec.workload",
                format_args!("{workload} is already placed by {other}"),
            ))
        }
        Some(_) => Ok(()),
        None => {
            placers.insert(workload.clone(), me);
            Ok(())
        }
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
        check_registry(doc, &format!("spec.burst[{i}].overrides"), &b.overrides)?;
    }
    check_behavior(doc, &spec.behavior)?;
    check_dns(doc, spec.dns.as_ref())?;
    check_workload(doc, &spec.workload)
}

fn check_spread(doc: &Document, spec: &SpreadSpec) -> Result<(), ConfigError> {
    check_workload(doc, &spec.workload)?;
    if spec.clusters.is_empty() {
        return Err(doc.error("spec.clusters", "name at least one cluster"));
    }
    let mut seen = BTreeSet::new();
    for (i, t) in spec.clusters.iter().enumerate() {
        if !seen.insert(&t.cluster) {
            return Err(doc.error(
                &format!("spec.clusters[{i}].cluster"),
                format_args!("cluster {} is listed twice", t.cluster),
            ));
        }
        if spec.by == SpreadBy::FreeCapacity && t.weight.is_some() {
            return Err(doc.error(
                &format!("spec.clusters[{i}].weight"),
                "not used with by: freeCapacity (the split follows what fits); remove it or use by: weight",
            ));
        }
        if i == 0 && !t.overrides.is_empty() {
            return Err(doc.error(
                "spec.clusters[0].overrides",
                "the first cluster holds the source Deployment, which is scaled, not copied; overrides apply to the other clusters' copies",
            ));
        }
        check_registry(doc, &format!("spec.clusters[{i}].overrides"), &t.overrides)?;
    }
    if spec.by == SpreadBy::Weight && spec.clusters.iter().all(|t| t.weight() == 0) {
        return Err(doc.error(
            "spec.clusters[0].weight",
            "at least one cluster needs a weight above 0",
        ));
    }
    let mins: u64 = spec
        .clusters
        .iter()
        .map(|t| u64::from(t.min_replicas))
        .sum();
    if mins > u64::from(spec.replicas) {
        return Err(doc.error(
            "spec.replicas",
            format_args!("must be at least the sum of the clusters' minReplicas ({mins})"),
        ));
    }
    check_behavior(doc, &spec.behavior)?;
    check_dns(doc, spec.dns.as_ref())
}

/// Most policies in one direction (as the HPA).
const MAX_SCALING_POLICIES: usize = 10;
/// Longest policy period in seconds (as the HPA).
const MAX_PERIOD_SECONDS: u32 = 1800;

fn check_behavior(doc: &Document, b: &Behavior) -> Result<(), ConfigError> {
    for (dir, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
        let field = format!("spec.behavior.{dir}.policies");
        if rules.policies.is_empty() {
            return Err(doc.error(
                &field,
                "name at least one policy (selectPolicy: Disabled stops this direction)",
            ));
        }
        if rules.policies.len() > MAX_SCALING_POLICIES {
            return Err(doc.error(
                &field,
                format_args!("at most {MAX_SCALING_POLICIES} policies"),
            ));
        }
        for (i, p) in rules.policies.iter().enumerate() {
            if p.value < 1 {
                return Err(doc.error(&format!("{field}[{i}].value"), "must be at least 1"));
            }
            if !(1..=MAX_PERIOD_SECONDS).contains(&p.period_seconds) {
                return Err(doc.error(
                    &format!("{field}[{i}].periodSeconds"),
                    format_args!("must be 1 to {MAX_PERIOD_SECONDS}"),
                ));
            }
        }
    }
    Ok(())
}

fn check_workload(doc: &Document, w: &WorkloadRef) -> Result<(), ConfigError> {
    for (field, v) in [("namespace", &w.namespace), ("deployment", &w.deployment)] {
        if !is_dns_label(v) {
            return Err(doc.error(
                &format!("spec.workload.{field}"),
                "must be a Kubernetes name (lower-case letters, digits, '-')",
            ));
        }
    }
    Ok(())
}

fn check_registry(doc: &Document, field: &str, o: &Overrides) -> Result<(), ConfigError> {
    if let Some(r) = &o.image_registry
        && (r.is_empty() || r.contains('/') || r.contains(char::is_whitespace))
    {
        return Err(doc.error(
            &format!("{field}.imageRegistry"),
            "must be a registry host[:port] without '/'",
        ));
    }
    Ok(())
}

fn check_dns(doc: &Document, dns: Option<&DnsBinding>) -> Result<(), ConfigError> {
    if let Some(d) = dns
        && !d.name.ends_with('.')
    {
        return Err(doc.error("spec.dns.name", "must be fully qualified (end with '.')"));
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
