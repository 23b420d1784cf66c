//! The `Scenario` document: a drill as a file.
//!
//! ```yaml
//! apiVersion: causeway.dev/v1alpha1
//! kind: Scenario
//! metadata: {name: quickstart}
//! spec:
//!   description: one line, shown by `causeway drill --list`
//!   hypothesis: what should hold
//!   topology:
//!     clusters:
//!       - {name: idc-bj, role: idc, nodes: 1, cpu: "2"}
//!       - {name: aws-sg, role: cloud}
//!     clients:
//!       - {name: sg-users, subnet: 203.0.113.0/24, rttMs: {idc-bj: 70, aws-sg: 8}}
//!   install:                      # paths relative to this file
//!     policies: [policies.yaml]
//!     zones: [zone.yaml]
//!     workloads:                  # applied to the home cluster unless clusters are listed
//!       - {file: web.yaml}
//!   steps:
//!     - {name: settle, wait: 5s}
//!     - name: surge
//!       fault: {loadSurge: {scale: {cluster: idc-bj, workload: {namespace: shop, deployment: web}, replicas: 6}}}
//!     - name: burst-ready
//!       expect:
//!         replicasReady: {cluster: aws-sg, workload: {namespace: shop, deployment: web}, op: ">=", value: 2}
//!         within: 30s
//!     - name: time-to-burst
//!       measure: {from: surge, to: burst-ready, atMost: 30s}
//! ```
//!
//! Reading has two layers: [`parse_str`] reads the document through the config
//! envelope (unknown fields, types, durations) and checks it on its own (step names,
//! clusters, deadlines); [`Scenario::load`] also reads the files under `install`.
//! Every error is a [`ConfigError`] at the line and column of the field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_config::{ConfigError, Document, HumanDuration};
use causeway_model::ClusterId;
use serde::Deserialize;

/// The document kind of a scenario.
pub const KIND: &str = "Scenario";

/// The longest deadline, wait or hold a step may have.
pub const MAX_STEP_DURATION: Duration = Duration::from_secs(3600);

/// Kinds accepted in `install.policies` files. A `Scheduler` document there is
/// ignored: the drill runs its own scheduler.
pub const POLICY_KINDS: &[&str] = &["Scheduler", "BurstPolicy", "SpreadPolicy", "FailoverPolicy"];

/// Kinds accepted in `install.zones` files. A `DnsServer` document there is ignored:
/// the drill runs its own dns with its own listeners.
pub const ZONE_KINDS: &[&str] = &["DnsServer", "Zone", "LatencyMap"];

/// A checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The file it was read from; `install` paths are relative to its folder.
    pub file: PathBuf,
    /// `metadata.name`.
    pub name: String,
    /// One line saying what the drill does (`causeway drill --list`).
    pub description: String,
    /// What should hold, in words.
    pub hypothesis: String,
    /// The sandbox the drill runs on.
    pub topology: Topology,
    /// What is installed before the first step.
    pub install: Install,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

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

/// Files installed before the first step, as written (relative to the scenario file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Install {
    /// Causeway policy files (`BurstPolicy`, `SpreadPolicy`, `FailoverPolicy`).
    #[serde(default)]
    pub policies: Vec<PathBuf>,
    /// dns files (`Zone`, `LatencyMap`).
    #[serde(default)]
    pub zones: Vec<PathBuf>,
    /// Kubernetes manifests (Namespaces, Deployments, HPAs) and where they go.
    #[serde(default)]
    pub workloads: Vec<Workload>,
}

/// `install.workloads[i]`: a Kubernetes manifest applied with kubectl.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// The manifest, relative to the scenario file.
    pub file: PathBuf,
    /// The clusters it is applied to; default: the home cluster (the first `idc` one).
    #[serde(default)]
    pub clusters: Vec<ClusterId>,
}

/// One named step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique in the scenario; `measure` refers to steps by it.
    pub name: String,
    /// What the step does.
    pub action: StepAction,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepAction {
    /// Do nothing for this long.
    Wait(Duration),
    /// Inject a fault (reverted at the end of the drill).
    Fault(Fault),
    /// Wait until a condition holds, within a deadline.
    Expect(Expect),
    /// Name the time between two earlier steps.
    Measure(Measure),
    /// Revert the fault of an earlier step now (`restore: STEP`) rather than at the end.
    Restore(String),
}

impl StepAction {
    /// `wait`, `fault`, `expect` or `measure`.
    pub fn kind(&self) -> &'static str {
        match self {
            StepAction::Wait(_) => "wait",
            StepAction::Fault(_) => "fault",
            StepAction::Expect(_) => "expect",
            StepAction::Measure(_) => "measure",
            StepAction::Restore(_) => "restore",
        }
    }
}

/// A fault, written `fault: {agentKilled: {cluster: idc-bj}}` (one key).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// SIGKILL the cluster's agent(s); its session to the stub ends.
    AgentKilled(ClusterFault),
    /// Stop every agent of the cluster (kept stopped until reverted).
    AgentsStopped(ClusterFault),
    /// Stop the cluster's kube-apiserver (SIGSTOP; SIGCONT on revert).
    ApiServerStopped(ClusterFault),
    /// Drop the bytes between the cluster's agents and the stub (a relay that cuts,
    /// not a kill): the agents keep running and can fence.
    NetworkCut(ClusterFault),
    /// Kill the active stub; the standby takes over (`topology.stub.replicas: 2`).
    StubKilled(NoFields),
    /// The health endpoint dns probes for the cluster's GSLB targets answers 503
    /// (reverted: 200 again). Needs `install.zones`.
    HealthFailing(ClusterFault),
    /// More load than the home cluster can take.
    LoadSurge(LoadSurge),
    /// New round-trip times from a client network to clusters, posted to dns's
    /// `/v1/latency` (reverted by posting the RTTs of `topology.clients`).
    LatencyChange(LatencyChange),
}

impl Fault {
    /// The cluster the fault is about, if any.
    pub fn cluster(&self) -> Option<&ClusterId> {
        match self {
            Fault::AgentKilled(c)
            | Fault::AgentsStopped(c)
            | Fault::ApiServerStopped(c)
            | Fault::NetworkCut(c)
            | Fault::HealthFailing(c) => Some(&c.cluster),
            Fault::StubKilled(_) => None,
            Fault::LoadSurge(s) => s.cluster(),
            Fault::LatencyChange(_) => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::AgentKilled(c) => write!(f, "agent of {} killed", c.cluster),
            Fault::AgentsStopped(c) => write!(f, "all agents of {} stopped", c.cluster),
            Fault::ApiServerStopped(c) => write!(f, "kube-apiserver of {} stopped", c.cluster),
            Fault::NetworkCut(c) => {
                write!(f, "network cut between {}'s agents and the stub", c.cluster)
            }
            Fault::StubKilled(_) => write!(f, "active stub killed"),
            Fault::HealthFailing(c) => {
                write!(f, "health check of {}'s targets failing (503)", c.cluster)
            }
            Fault::LoadSurge(LoadSurge::Scale(s)) => write!(
                f,
                "load surge: {} in {} scaled to {} replicas",
                s.workload, s.cluster, s.replicas
            ),
            Fault::LoadSurge(LoadSurge::PodCpu(s)) => write!(
                f,
                "load surge: pods of {} in {} use {} CPU each",
                s.workload, s.cluster, s.cpu
            ),
            Fault::LoadSurge(LoadSurge::External(s)) => {
                write!(
                    f,
                    "load surge: external value {} for policy {}",
                    s.value, s.policy
                )
            }
            Fault::LatencyChange(l) => {
                let rtt: Vec<String> = l
                    .rtt_ms
                    .iter()
                    .map(|(c, ms)| format!("{c} {ms} ms"))
                    .collect();
                write!(f, "latency from {} now {}", l.client, rtt.join(", "))
            }
        }
    }
}

/// A fault about one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterFault {
    /// The cluster.
    pub cluster: ClusterId,
}

/// `fault.latencyChange`: a client network's round-trip times change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyChange {
    /// A client network of `topology.clients`.
    pub client: String,
    /// The new RTT to each of these clusters, in milliseconds; each must have an RTT from
    /// this client in `topology.clients` (what the fault is reverted to).
    pub rtt_ms: BTreeMap<ClusterId, u32>,
}

/// An empty mapping (`stubKilled: {}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// A load surge, by one of three demand sources (`loadSurge: {scale: {...}}`).
#[derive(Debug, Clone, PartialEq)]
pub enum LoadSurge {
    /// Scale the source Deployment past what fits: pods Pending (capacity demand).
    Scale(ScaleSurge),
    /// Simulated CPU use of the workload's pods (metrics-server → HPA).
    PodCpu(PodCpuSurge),
    /// An external demand value posted to the scheduler (`POST /v1/external`).
    External(ExternalSurge),
}

impl LoadSurge {
    fn cluster(&self) -> Option<&ClusterId> {
        match self {
            LoadSurge::Scale(s) => Some(&s.cluster),
            LoadSurge::PodCpu(s) => Some(&s.cluster),
            LoadSurge::External(_) => None,
        }
    }
}

/// `loadSurge.scale`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleSurge {
    /// The cluster holding the source Deployment.
    pub cluster: ClusterId,
    /// The Deployment.
    pub workload: WorkloadRef,
    /// Replicas to scale it to (≥ 1).
    pub replicas: u32,
}

/// `loadSurge.podCpu`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodCpuSurge {
    /// The cluster whose pods report the usage.
    pub cluster: ClusterId,
    /// The Deployment.
    pub workload: WorkloadRef,
    /// CPU used by each pod, a Kubernetes quantity (`"900m"`).
    pub cpu: String,
}

/// `loadSurge.external`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSurge {
    /// A `BurstPolicy` with external demand, from `install.policies`.
    pub policy: String,
    /// The value posted.
    pub value: f64,
}

/// A Deployment, as policies name it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadRef {
    /// Namespace.
    pub namespace: String,
    /// Deployment name.
    pub deployment: String,
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.deployment)
    }
}

/// An expectation: a condition that must hold within a deadline (and keep holding).
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// What must hold.
    pub condition: Condition,
    /// The deadline, from the start of the step.
    pub within: Duration,
    /// Once it holds, it must keep holding this long (`for:`).
    pub hold: Option<Duration>,
}

/// What an expectation waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The DNS answer for a name.
    Dns(DnsExpect),
    /// Ready replicas of a workload in a cluster.
    ReplicasReady(ReplicasExpect),
    /// Who holds the primary role of a `FailoverPolicy`.
    Primary(PrimaryExpect),
    /// A Prometheus metric of a Causeway part.
    Metric(MetricExpect),
    /// kubectl as a drill user, through the stub.
    Kubectl(KubectlExpect),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Dns(d) => {
                write!(f, "dns {}", d.name)?;
                if let Some(c) = &d.client {
                    write!(f, " from {c}")?;
                }
                let (word, list) = match &d.answer {
                    DnsMatch::Equals(l) => ("answers exactly", l),
                    DnsMatch::Contains(l) => ("answers include", l),
                    DnsMatch::Excludes(l) => ("answers exclude", l),
                };
                let list: Vec<&str> = list.iter().map(ClusterId::as_str).collect();
                write!(f, " {word} [{}]", list.join(", "))
            }
            Condition::ReplicasReady(r) => write!(
                f,
                "ready replicas of {} in {} {} {}",
                r.workload, r.cluster, r.op, r.value
            ),
            Condition::Primary(p) => write!(f, "primary of {} is {}", p.policy, p.cluster),
            Condition::Metric(m) => {
                write!(f, "{} metric {}", m.component, m.name)?;
                if !m.labels.is_empty() {
                    let labels: Vec<String> =
                        m.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                    write!(f, "{{{}}}", labels.join(","))?;
                }
                write!(f, " {} {}", m.op, m.value)
            }
            Condition::Kubectl(k) => write!(
                f,
                "kubectl {} as {} in {} {}",
                k.args.join(" "),
                k.user,
                k.cluster,
                match k.wanted() {
                    Some(KubectlOutcome::Ok) => "succeeds",
                    Some(KubectlOutcome::Refused) => "is refused (401/403)",
                    Some(KubectlOutcome::Unavailable) => "is unavailable",
                    None => "fails",
                }
            ),
        }
    }
}

/// `expect.dns`.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsExpect {
    /// The name asked (`app.svc.example.`).
    pub name: String,
    /// A client network from `topology.clients`; without it, no client subnet is sent.
    pub client: Option<String>,
    /// How the answer's clusters must compare.
    pub answer: DnsMatch,
}

/// How the clusters of a DNS answer must compare with a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsMatch {
    /// Exactly these clusters.
    Equals(Vec<ClusterId>),
    /// At least these clusters.
    Contains(Vec<ClusterId>),
    /// None of these clusters.
    Excludes(Vec<ClusterId>),
}

/// `expect.kubectl`: the testbed's kubectl with a drill user's kubeconfig and the
/// context of a cluster, through the stub.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubectlExpect {
    /// A user from `topology.users`.
    pub user: String,
    /// The cluster (the kubeconfig's context of that name).
    pub cluster: ClusterId,
    /// kubectl's arguments (`[get, pods, -n, shop]`).
    pub args: Vec<String>,
    /// `true` (the default): it must exit 0; `false`: it must fail, however
    /// (refused, unavailable or another error). Not with `outcome`.
    #[serde(default)]
    pub succeeds: Option<bool>,
    /// Exactly how it must end (`ok`, `refused`, `unavailable`). Not with `succeeds`.
    #[serde(default)]
    pub outcome: Option<KubectlOutcome>,
}

impl KubectlExpect {
    /// The outcome asked for: `outcome`, else `ok` for `succeeds: true` (the default),
    /// `None` (any failure) for `succeeds: false`.
    pub fn wanted(&self) -> Option<KubectlOutcome> {
        match (self.outcome, self.succeeds) {
            (Some(o), _) => Some(o),
            (None, Some(false)) => None,
            (None, _) => Some(KubectlOutcome::Ok),
        }
    }
}

/// How a kubectl command through the stub ended, decided from the HTTP status of the
/// last response kubectl logged (`-v=6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KubectlOutcome {
    /// Exit status 0.
    Ok,
    /// Refused: the last response was HTTP 401 or 403 (the stub's policy, or the member
    /// cluster's RBAC through impersonation).
    Refused,
    /// Not served: the last response was a 5xx (e.g. 503: no live agent, or a standby
    /// stub), or there was none (connection refused or reset, timeout).
    Unavailable,
}

impl fmt::Display for KubectlOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KubectlOutcome::Ok => "ok",
            KubectlOutcome::Refused => "refused",
            KubectlOutcome::Unavailable => "unavailable",
        })
    }
}

/// `expect.replicasReady`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicasExpect {
    /// The cluster.
    pub cluster: ClusterId,
    /// The Deployment (its copy, in a burst cluster).
    pub workload: WorkloadRef,
    /// Comparison.
    pub op: Op,
    /// Number of ready replicas compared with.
    pub value: u32,
}

/// `expect.primary`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrimaryExpect {
    /// A `FailoverPolicy` from `install.policies`.
    pub policy: String,
    /// The cluster whose role ConfigMap says `primary` (and no other).
    pub cluster: ClusterId,
}

/// `expect.metric`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricExpect {
    /// Whose `/metrics`.
    pub component: Component,
    /// Metric name (`causeway_scheduler_failover_rto_seconds`).
    pub name: String,
    /// Labels the series must have (others are free); the matching series are summed.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Comparison.
    pub op: Op,
    /// Value compared with.
    pub value: f64,
}

/// A Causeway part serving `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Component {
    /// The scheduler.
    Scheduler,
    /// The GSLB DNS server.
    Dns,
    /// The active stub.
    Stub,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::Scheduler => "scheduler",
            Component::Dns => "dns",
            Component::Stub => "stub",
        })
    }
}

/// A comparison, written `">="`, `"<="`, `"="` (quoted in YAML) or `atLeast`,
/// `atMost`, `equals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Op {
    /// ≥
    #[serde(rename = ">=", alias = "atLeast")]
    AtLeast,
    /// ≤
    #[serde(rename = "<=", alias = "atMost")]
    AtMost,
    /// =
    #[serde(rename = "=", alias = "==", alias = "equals")]
    Equals,
}

impl Op {
    /// Whether `seen op wanted` holds.
    pub fn holds(self, seen: f64, wanted: f64) -> bool {
        match self {
            Op::AtLeast => seen >= wanted,
            Op::AtMost => seen <= wanted,
            Op::Equals => seen == wanted,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::AtLeast => ">=",
            Op::AtMost => "<=",
            Op::Equals => "=",
        })
    }
}

/// `measure`: the time from one earlier step to another, named by the step.
///
/// The instant of a step is when its effect happened: a fault when it was applied,
/// an expectation when its condition first held, a wait when it ended.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Measure {
    /// The earlier step.
    pub from: String,
    /// The later step.
    pub to: String,
    /// Optional budget: the measure fails above it.
    #[serde(default)]
    pub at_most: Option<HumanDuration>,
}

// ----- The document as written -----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScenarioSpec {
    description: String,
    #[serde(default)]
    hypothesis: String,
    topology: Topology,
    #[serde(default)]
    install: Install,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawStep {
    name: String,
    #[serde(default)]
    wait: Option<HumanDuration>,
    #[serde(default)]
    fault: Option<RawFault>,
    #[serde(default)]
    expect: Option<RawExpect>,
    #[serde(default)]
    measure: Option<Measure>,
    #[serde(default)]
    restore: Option<String>,
}

/// `fault`: exactly one of these (serde_yaml_ng reads externally tagged enums only
/// from YAML tags, so the one-key mapping is read as a struct of options).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFault {
    #[serde(default)]
    agent_killed: Option<ClusterFault>,
    #[serde(default)]
    agents_stopped: Option<ClusterFault>,
    #[serde(default)]
    api_server_stopped: Option<ClusterFault>,
    #[serde(default)]
    network_cut: Option<ClusterFault>,
    #[serde(default)]
    stub_killed: Option<NoFields>,
    #[serde(default)]
    health_failing: Option<ClusterFault>,
    #[serde(default)]
    load_surge: Option<RawLoadSurge>,
    #[serde(default)]
    latency_change: Option<LatencyChange>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLoadSurge {
    #[serde(default)]
    scale: Option<ScaleSurge>,
    #[serde(default)]
    pod_cpu: Option<PodCpuSurge>,
    #[serde(default)]
    external: Option<ExternalSurge>,
}

impl RawFault {
    fn into_fault(self) -> Result<Fault, (&'static str, &'static str)> {
        const ONE: &str = "exactly one of agentKilled, agentsStopped, apiServerStopped, networkCut, stubKilled, healthFailing, loadSurge or latencyChange";
        let mut found = Vec::new();
        if let Some(c) = self.agent_killed {
            found.push(Fault::AgentKilled(c));
        }
        if let Some(c) = self.agents_stopped {
            found.push(Fault::AgentsStopped(c));
        }
        if let Some(c) = self.api_server_stopped {
            found.push(Fault::ApiServerStopped(c));
        }
        if let Some(c) = self.network_cut {
            found.push(Fault::NetworkCut(c));
        }
        if let Some(n) = self.stub_killed {
            found.push(Fault::StubKilled(n));
        }
        if let Some(c) = self.health_failing {
            found.push(Fault::HealthFailing(c));
        }
        if let Some(l) = self.latency_change {
            found.push(Fault::LatencyChange(l));
        }
        if let Some(l) = self.load_surge {
            let mut surges = Vec::new();
            if let Some(x) = l.scale {
                surges.push(LoadSurge::Scale(x));
            }
            if let Some(x) = l.pod_cpu {
                surges.push(LoadSurge::PodCpu(x));
            }
            if let Some(x) = l.external {
                surges.push(LoadSurge::External(x));
            }
            if surges.len() != 1 {
                return Err((
                    "fault.loadSurge",
                    "exactly one of scale, podCpu or external",
                ));
            }
            found.extend(surges.pop().map(Fault::LoadSurge));
        }
        if found.len() != 1 {
            return Err(("fault", ONE));
        }
        found.pop().ok_or(("fault", ONE))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    dns: Option<RawDns>,
    #[serde(default)]
    replicas_ready: Option<ReplicasExpect>,
    #[serde(default)]
    primary: Option<PrimaryExpect>,
    #[serde(default)]
    metric: Option<MetricExpect>,
    #[serde(default)]
    kubectl: Option<KubectlExpect>,
    within: HumanDuration,
    #[serde(default, rename = "for")]
    hold: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDns {
    name: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    equals: Option<Vec<ClusterId>>,
    #[serde(default)]
    contains: Option<Vec<ClusterId>>,
    #[serde(default)]
    excludes: Option<Vec<ClusterId>>,
}

/// Reads the one `Scenario` document of a file and checks it on its own (no other
/// file is read; see [`Scenario::load`]).
pub fn parse_str(file: &Path, text: &str) -> Result<Scenario, ConfigError> {
    let docs = causeway_config::parse_str(file, text)?;
    from_documents(file, &docs)
}

/// The scenario in `docs`, which must hold exactly one `Scenario` document.
pub fn from_documents(file: &Path, docs: &[Document]) -> Result<Scenario, ConfigError> {
    let mut found: Option<Scenario> = None;
    for doc in docs {
        if doc.kind != KIND {
            return Err(doc.unknown_kind(&[KIND]));
        }
        if found.is_some() {
            return Err(doc.error("", "a scenario file holds one Scenario document"));
        }
        found = Some(check(doc)?);
    }
    found.ok_or_else(|| ConfigError::file(file, "no Scenario document in the file"))
}

impl Scenario {
    /// Reads `path`, checks the scenario, and reads every file under `install`
    /// (policies and zones through the config envelope, with their kinds checked;
    /// workloads must be readable). A `primary` expectation must name a
    /// `FailoverPolicy`, an `external` surge a `BurstPolicy`, from those files.
    pub fn load(path: &Path) -> Result<Scenario, ConfigError> {
        let docs = causeway_config::read_file(path)?;
        let scenario = from_documents(path, &docs)?;
        // from_documents returned Ok, so there is exactly one document.
        let Some(doc) = docs.first() else {
            return Err(ConfigError::file(path, "no Scenario document in the file"));
        };
        scenario.check_install(doc)?;
        Ok(scenario)
    }

    /// `path` of `install`, relative to the scenario file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.file.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The cluster of the topology named `name`.
    pub fn cluster(&self, name: &ClusterId) -> Option<&Cluster> {
        self.topology.clusters.iter().find(|c| &c.name == name)
    }

    /// The index of the step named `name`.
    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// The home cluster: the first of role `idc`.
    pub fn home(&self) -> Option<&Cluster> {
        self.topology.clusters.iter().find(|c| c.role == Role::Idc)
    }

    /// The clusters `workload` is applied to.
    pub fn workload_clusters(&self, workload: &Workload) -> Vec<ClusterId> {
        if workload.clusters.is_empty() {
            self.home()
                .map(|c| vec![c.name.clone()])
                .unwrap_or_default()
        } else {
            workload.clusters.clone()
        }
    }

    /// The first line of the description.
    pub fn summary_line(&self) -> &str {
        self.description.lines().next().unwrap_or_default().trim()
    }

    fn check_install(&self, doc: &Document) -> Result<(), ConfigError> {
        let mut policies: BTreeMap<String, String> = BTreeMap::new(); // name → kind
        for (i, w) in self.install.workloads.iter().enumerate() {
            let path = self.resolve(&w.file);
            std::fs::read_to_string(&path).map_err(|e| {
                doc.error(
                    &format!("spec.install.workloads[{i}].file"),
                    format_args!("cannot read {}: {e}", path.display()),
                )
            })?;
        }
        let lists: [(&str, &[PathBuf], &[&str]); 2] = [
            ("policies", &self.install.policies, POLICY_KINDS),
            ("zones", &self.install.zones, ZONE_KINDS),
        ];
        for (list, paths, kinds) in lists {
            for (i, p) in paths.iter().enumerate() {
                let field = format!("spec.install.{list}[{i}]");
                let path = self.resolve(p);
                let docs = causeway_config::read_file(&path)
                    .map_err(|e| doc.error(&field, format_args!("in the file named here: {e}")))?;
                if docs.is_empty() {
                    return Err(
                        doc.error(&field, format_args!("{} holds no document", path.display()))
                    );
                }
                for d in &docs {
                    if !kinds.contains(&d.kind.as_str()) {
                        return Err(doc.error(
                            &field,
                            format_args!("in the file named here: {}", d.unknown_kind(kinds)),
                        ));
                    }
                    if list == "policies" && d.kind != "Scheduler" {
                        policies.insert(d.name().to_string(), d.kind.clone());
                    }
                }
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            let (field, name, kind) = match &step.action {
                StepAction::Expect(Expect {
                    condition: Condition::Primary(p),
                    ..
                }) => ("expect.primary.policy", &p.policy, "FailoverPolicy"),
                StepAction::Fault(Fault::LoadSurge(LoadSurge::External(e))) => {
                    ("fault.loadSurge.external.policy", &e.policy, "BurstPolicy")
                }
                _ => continue,
            };
            if policies.get(name).map(String::as_str) != Some(kind) {
                return Err(doc.error(
                    &format!("spec.steps[{i}].{field}"),
                    format_args!("no {kind} named {name:?} in install.policies"),
                ));
            }
        }
        Ok(())
    }
}

/// Everything that can be checked from the document alone.
fn check(doc: &Document) -> Result<Scenario, ConfigError> {
    let spec: ScenarioSpec = doc.spec()?;
    if spec.description.trim().is_empty() {
        return Err(doc.error("spec.description", "must not be empty"));
    }
    check_topology(doc, &spec.topology)?;
    for (list, paths) in [
        ("policies", &spec.install.policies),
        ("zones", &spec.install.zones),
    ] {
        for (i, p) in paths.iter().enumerate() {
            if p.as_os_str().is_empty() {
                return Err(doc.error(&format!("spec.install.{list}[{i}]"), "must not be empty"));
            }
        }
    }
    let clusters: BTreeSet<&ClusterId> = spec.topology.clusters.iter().map(|c| &c.name).collect();
    let has_home = spec.topology.clusters.iter().any(|c| c.role == Role::Idc);
    for (i, w) in spec.install.workloads.iter().enumerate() {
        if w.file.as_os_str().is_empty() {
            return Err(doc.error(
                &format!("spec.install.workloads[{i}].file"),
                "must not be empty",
            ));
        }
        if w.clusters.is_empty() && !has_home {
            return Err(doc.error(
                &format!("spec.install.workloads[{i}]"),
                "no home cluster (role: idc) to apply it to; list its clusters",
            ));
        }
        for (j, c) in w.clusters.iter().enumerate() {
            if !clusters.contains(c) {
                return Err(doc.error(
                    &format!("spec.install.workloads[{i}].clusters[{j}]"),
                    format_args!(
                        "unknown cluster \"{c}\"; topology.clusters has {}",
                        names(&clusters)
                    ),
                ));
            }
        }
    }
    if spec.steps.is_empty() {
        return Err(doc.error("spec.steps", "a scenario needs at least one step"));
    }
    let clients: BTreeSet<&str> = spec
        .topology
        .clients
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let users: BTreeSet<&str> = spec
        .topology
        .users
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    let mut steps: Vec<Step> = Vec::with_capacity(spec.steps.len());
    for (i, raw) in spec.steps.into_iter().enumerate() {
        let at = |field: &str| {
            if field.is_empty() {
                format!("spec.steps[{i}]")
            } else {
                format!("spec.steps[{i}].{field}")
            }
        };
        check_step_name(&raw.name).map_err(|r| doc.error(&at("name"), r))?;
        if steps.iter().any(|s| s.name == raw.name) {
            return Err(doc.error(
                &at("name"),
                format_args!(
                    "another step is named {:?}; step names are unique",
                    raw.name
                ),
            ));
        }
        let known = |c: &ClusterId, field: &str| -> Result<(), ConfigError> {
            if clusters.contains(c) {
                Ok(())
            } else {
                Err(doc.error(
                    &at(field),
                    format_args!(
                        "unknown cluster \"{c}\"; topology.clusters has {}",
                        names(&clusters)
                    ),
                ))
            }
        };
        let given = [
            raw.wait.is_some(),
            raw.fault.is_some(),
            raw.expect.is_some(),
            raw.measure.is_some(),
            raw.restore.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(doc.error(
                &at(""),
                "a step has a name and exactly one of wait, fault, restore, expect or measure",
            ));
        }
        let action = if let Some(w) = raw.wait {
            check_duration(w.0).map_err(|r| doc.error(&at("wait"), r))?;
            StepAction::Wait(w.0)
        } else if let Some(fault) = raw.fault {
            let fault = fault
                .into_fault()
                .map_err(|(field, reason)| doc.error(&at(field), reason))?;
            check_fault(doc, &fault, &spec.topology, &at, &known)?;
            if matches!(fault, Fault::HealthFailing(_)) && spec.install.zones.is_empty() {
                return Err(doc.error(
                    &at("fault.healthFailing"),
                    "needs install.zones (dns health-checks their GSLB targets)",
                ));
            }
            StepAction::Fault(fault)
        } else if let Some(e) = raw.expect {
            StepAction::Expect(check_expect(doc, e, &clients, &users, &at, &known)?)
        } else if let Some(m) = raw.measure {
            check_measure(doc, &m, &steps, &at)?;
            StepAction::Measure(m)
        } else if let Some(r) = raw.restore {
            check_restore(&r, &steps).map_err(|reason| doc.error(&at("restore"), reason))?;
            StepAction::Restore(r)
        } else {
            // Counted above: exactly one is set.
            return Err(doc.error(&at(""), "empty step"));
        };
        steps.push(Step {
            name: raw.name,
            action,
        });
    }
    Ok(Scenario {
        file: doc.file().to_path_buf(),
        name: doc.name().to_string(),
        description: spec.description.trim().to_string(),
        hypothesis: spec.hypothesis.trim().to_string(),
        topology: spec.topology,
        install: spec.install,
        steps,
    })
}

fn names(clusters: &BTreeSet<&ClusterId>) -> String {
    let v: Vec<&str> = clusters.iter().map(|c| c.as_str()).collect();
    v.join(", ")
}

fn check_topology(doc: &Document, t: &Topology) -> Result<(), ConfigError> {
    if t.clusters.is_empty() {
        return Err(doc.error("spec.topology.clusters", "at least one cluster"));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in t.clusters.iter().enumerate() {
        let at = |f: &str| format!("spec.topology.clusters[{i}].{f}");
        if !seen.insert(&c.name) {
            return Err(doc.error(
                &at("name"),
                format_args!("cluster {} is listed twice", c.name),
            ));
        }
        // Longer names do not fit the testbed's certificate and node names.
        if c.name.as_str().len() > 40 {
            return Err(doc.error(
                &at("name"),
                "sandbox cluster names are at most 40 characters",
            ));
        }
        if !(1..=100).contains(&c.nodes) {
            return Err(doc.error(&at("nodes"), "must be between 1 and 100"));
        }
        check_quantity(&c.cpu).map_err(|r| doc.error(&at("cpu"), r))?;
        if !(1..=4).contains(&c.agents) {
            return Err(doc.error(&at("agents"), "must be between 1 and 4"));
        }
    }
    let mut client_names = BTreeSet::new();
    for (i, n) in t.clients.iter().enumerate() {
        let at = |f: &str| format!("spec.topology.clients[{i}].{f}");
        if n.name.trim().is_empty() {
            return Err(doc.error(&at("name"), "must not be empty"));
        }
        if !client_names.insert(n.name.as_str()) {
            return Err(doc.error(
                &at("name"),
                format_args!("client network {:?} is listed twice", n.name),
            ));
        }
        for c in n.rtt_ms.keys() {
            if !seen.contains(c) {
                return Err(doc.error(
                    &format!("spec.topology.clients[{i}].rttMs.{c}"),
                    format_args!(
                        "unknown cluster \"{c}\"; topology.clusters has {}",
                        names(&seen)
                    ),
                ));
            }
        }
    }
    let mut user_names = BTreeSet::new();
    for (i, u) in t.users.iter().enumerate() {
        let at = |f: &str| format!("spec.topology.users[{i}].{f}");
        let plain = u
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if u.name.is_empty() || u.name.len() > 63 || !plain || u.name.starts_with('.') {
            return Err(doc.error(
                &at("name"),
                "1 to 63 letters, digits, '-', '_' or '.' (it names <work>/<name>.kubeconfig)",
            ));
        }
        if !user_names.insert(u.name.as_str()) {
            return Err(doc.error(
                &at("name"),
                format_args!("user {:?} is listed twice", u.name),
            ));
        }
        if u.group.trim().is_empty() {
            return Err(doc.error(&at("group"), "must not be empty"));
        }
        if u.clusters.trim().is_empty() {
            return Err(doc.error(&at("clusters"), "a glob (\"*\", \"idc-*\")"));
        }
    }
    if !(1..=2).contains(&t.stub.replicas) {
        return Err(doc.error(
            "spec.topology.stub.replicas",
            "1, or 2 for an active stub and a standby",
        ));
    }
    Ok(())
}

fn check_step_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("a step name is 1 to 63 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "step name {name:?}: letters, digits, '-', '_' and '.' only (measures refer to it)"
        ));
    }
    Ok(())
}

fn check_duration(d: Duration) -> Result<(), String> {
    if d.is_zero() {
        return Err("must be more than 0s".into());
    }
    if d > MAX_STEP_DURATION {
        return Err("must be at most 1h".into());
    }
    Ok(())
}

/// A Kubernetes CPU quantity as the sandbox takes it: a positive decimal, optionally
/// with `m` (milli-CPU).
fn check_quantity(q: &str) -> Result<(), String> {
    let digits = q.strip_suffix('m').unwrap_or(q);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let frac = parts.next();
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok =
        all_digits(whole) && frac.is_none_or(all_digits) && !(frac.is_some() && q.ends_with('m'));
    if !ok || digits.bytes().all(|b| b == b'0' || b == b'.') {
        return Err(format!(
            "invalid CPU quantity {q:?}; write e.g. \"2\", \"0.5\" or \"500m\" (more than 0)"
        ));
    }
    Ok(())
}

fn check_fault(
    doc: &Document,
    fault: &Fault,
    topology: &Topology,
    at: &dyn Fn(&str) -> String,
    known: &dyn Fn(&ClusterId, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    match fault {
        Fault::AgentKilled(c) => known(&c.cluster, "fault.agentKilled.cluster"),
        Fault::AgentsStopped(c) => known(&c.cluster, "fault.agentsStopped.cluster"),
        Fault::ApiServerStopped(c) => known(&c.cluster, "fault.apiServerStopped.cluster"),
        Fault::NetworkCut(c) => known(&c.cluster, "fault.networkCut.cluster"),
        Fault::HealthFailing(c) => known(&c.cluster, "fault.healthFailing.cluster"),
        Fault::StubKilled(_) => {
            if topology.stub.replicas < 2 {
                return Err(doc.error(
                    &at("fault.stubKilled"),
                    "needs a standby to take over: set topology.stub.replicas: 2",
                ));
            }
            Ok(())
        }
        Fault::LoadSurge(LoadSurge::Scale(s)) => {
            known(&s.cluster, "fault.loadSurge.scale.cluster")?;
            if s.replicas == 0 {
                return Err(doc.error(&at("fault.loadSurge.scale.replicas"), "must be at least 1"));
            }
            Ok(())
        }
        Fault::LoadSurge(LoadSurge::PodCpu(s)) => {
            known(&s.cluster, "fault.loadSurge.podCpu.cluster")?;
            check_quantity(&s.cpu).map_err(|r| doc.error(&at("fault.loadSurge.podCpu.cpu"), r))
        }
        Fault::LatencyChange(l) => check_latency_change(doc, l, topology, at, known),
        Fault::LoadSurge(LoadSurge::External(e)) => {
            if !e.value.is_finite() || e.value < 0.0 {
                return Err(doc.error(
                    &at("fault.loadSurge.external.value"),
                    "must be a finite number ≥ 0",
                ));
            }
            if e.policy.trim().is_empty() {
                return Err(doc.error(&at("fault.loadSurge.external.policy"), "must not be empty"));
            }
            Ok(())
        }
    }
}

fn check_latency_change(
    doc: &Document,
    l: &LatencyChange,
    topology: &Topology,
    at: &dyn Fn(&str) -> String,
    known: &dyn Fn(&ClusterId, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let Some(client) = topology.clients.iter().find(|c| c.name == l.client) else {
        let list: Vec<&str> = topology.clients.iter().map(|c| c.name.as_str()).collect();
        return Err(doc.error(
            &at("fault.latencyChange.client"),
            format_args!(
                "unknown client network {:?}; topology.clients has {}",
                l.client,
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            ),
        ));
    };
    if l.rtt_ms.is_empty() {
        return Err(doc.error(
            &at("fault.latencyChange.rttMs"),
            "name at least one cluster and its new RTT",
        ));
    }
    for c in l.rtt_ms.keys() {
        let field = format!("fault.latencyChange.rttMs.{c}");
        known(c, &field)?;
        if !client.rtt_ms.contains_key(c) {
            return Err(doc.error(
                &at(&field),
                format_args!(
                    "client network {:?} has no RTT to {c} in topology.clients (the fault is \
                     reverted to it)",
                    l.client
                ),
            ));
        }
    }
    Ok(())
}

/// `restore: STEP`: an earlier fault step, not restored already.
fn check_restore(name: &str, earlier: &[Step]) -> Result<(), String> {
    match earlier.iter().find(|s| s.name == name) {
        Some(s) if matches!(s.action, StepAction::Fault(_)) => {}
        Some(s) => {
            return Err(format!(
                "step {name:?} is a {}; restore names an earlier fault step",
                s.action.kind()
            ));
        }
        None => {
            let faults: Vec<&str> = earlier
                .iter()
                .filter(|s| matches!(s.action, StepAction::Fault(_)))
                .map(|s| s.name.as_str())
                .collect();
            return Err(format!(
                "no earlier fault step named {name:?} ({})",
                if faults.is_empty() {
                    "none".to_string()
                } else {
                    faults.join(", ")
                }
            ));
        }
    }
    if earlier
        .iter()
        .any(|s| matches!(&s.action, StepAction::Restore(r) if r == name))
    {
        return Err(format!(
            "fault {name:?} is restored by an earlier step already"
        ));
    }
    Ok(())
}

fn check_expect(
    doc: &Document,
    e: RawExpect,
    clients: &BTreeSet<&str>,
    users: &BTreeSet<&str>,
    at: &dyn Fn(&str) -> String,
    known: &dyn Fn(&ClusterId, &str) -> Result<(), ConfigError>,
) -> Result<Expect, ConfigError> {
    check_duration(e.within.0).map_err(|r| doc.error(&at("expect.within"), r))?;
    if let Some(h) = e.hold {
        check_duration(h.0).map_err(|r| doc.error(&at("expect.for"), r))?;
    }
    let given = [
        e.dns.is_some(),
        e.replicas_ready.is_some(),
        e.primary.is_some(),
        e.metric.is_some(),
        e.kubectl.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(doc.error(
            &at("expect"),
            "exactly one of dns, replicasReady, primary, metric or kubectl (with within and optional for)",
        ));
    }
    let condition = if let Some(d) = e.dns {
        if d.name.trim().is_empty() {
            return Err(doc.error(&at("expect.dns.name"), "must not be empty"));
        }
        if let Some(c) = &d.client
            && !clients.contains(c.as_str())
        {
            let list: Vec<&str> = clients.iter().copied().collect();
            return Err(doc.error(
                &at("expect.dns.client"),
                format_args!(
                    "unknown client network {c:?}; topology.clients has {}",
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                ),
            ));
        }
        let (word, answer) = match (d.equals, d.contains, d.excludes) {
            (Some(l), None, None) => ("equals", DnsMatch::Equals(l)),
            (None, Some(l), None) => ("contains", DnsMatch::Contains(l)),
            (None, None, Some(l)) => ("excludes", DnsMatch::Excludes(l)),
            _ => {
                return Err(doc.error(
                    &at("expect.dns"),
                    "exactly one of equals, contains or excludes (a list of clusters)",
                ));
            }
        };
        let (DnsMatch::Equals(list) | DnsMatch::Contains(list) | DnsMatch::Excludes(list)) =
            &answer;
        if list.is_empty() && word != "equals" {
            return Err(doc.error(
                &at(&format!("expect.dns.{word}")),
                "list at least one cluster (equals: [] means no answer)",
            ));
        }
        for (j, c) in list.iter().enumerate() {
            known(c, &format!("expect.dns.{word}[{j}]"))?;
        }
        Condition::Dns(DnsExpect {
            name: d.name,
            client: d.client,
            answer,
        })
    } else if let Some(r) = e.replicas_ready {
        known(&r.cluster, "expect.replicasReady.cluster")?;
        Condition::ReplicasReady(r)
    } else if let Some(p) = e.primary {
        known(&p.cluster, "expect.primary.cluster")?;
        if p.policy.trim().is_empty() {
            return Err(doc.error(&at("expect.primary.policy"), "must not be empty"));
        }
        Condition::Primary(p)
    } else if let Some(m) = e.metric {
        if !m.name.starts_with("causeway_") {
            return Err(doc.error(
                &at("expect.metric.name"),
                format_args!("{:?} is not a Causeway metric (causeway_…)", m.name),
            ));
        }
        if !m.value.is_finite() {
            return Err(doc.error(&at("expect.metric.value"), "must be a finite number"));
        }
        Condition::Metric(m)
    } else if let Some(k) = e.kubectl {
        if !users.contains(k.user.as_str()) {
            let list: Vec<&str> = users.iter().copied().collect();
            return Err(doc.error(
                &at("expect.kubectl.user"),
                format_args!(
                    "unknown user {:?}; topology.users has {}",
                    k.user,
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                ),
            ));
        }
        known(&k.cluster, "expect.kubectl.cluster")?;
        if k.succeeds.is_some() && k.outcome.is_some() {
            return Err(doc.error(
                &at("expect.kubectl.outcome"),
                "either succeeds or outcome, not both",
            ));
        }
        if k.args.is_empty() || k.args.iter().any(|a| a.is_empty()) {
            return Err(doc.error(
                &at("expect.kubectl.args"),
                "kubectl's arguments, none empty (e.g. [get, pods, -n, shop])",
            ));
        }
        Condition::Kubectl(k)
    } else {
        return Err(doc.error(&at("expect"), "no condition"));
    };
    Ok(Expect {
        condition,
        within: e.within.0,
        hold: e.hold.map(|h| h.0),
    })
}

fn check_measure(
    doc: &Document,
    m: &Measure,
    earlier: &[Step],
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let find = |name: &str, field: &str| -> Result<usize, ConfigError> {
        match earlier.iter().position(|s| s.name == name) {
            Some(i) if matches!(earlier[i].action, StepAction::Measure(_)) => Err(doc.error(
                &at(field),
                format_args!("step {name:?} is a measure; name a wait, fault or expect step"),
            )),
            Some(i) => Ok(i),
            None => {
                let list: Vec<&str> = earlier
                    .iter()
                    .filter(|s| !matches!(s.action, StepAction::Measure(_)))
                    .map(|s| s.name.as_str())
                    .collect();
                Err(doc.error(
                    &at(field),
                    format_args!(
                        "no earlier step named {name:?}; a measure names steps before it ({})",
                        if list.is_empty() {
                            "none".to_string()
                        } else {
                            list.join(", ")
                        }
                    ),
                ))
            }
        }
    };
    let from = find(&m.from, "measure.from")?;
    let to = find(&m.to, "measure.to")?;
    if from >= to {
        return Err(doc.error(
            &at("measure.to"),
            format_args!("step {:?} must come after {:?}", m.to, m.from),
        ));
    }
    if let Some(max) = m.at_most {
        check_duration(max.0).map_err(|r| doc.error(&at("measure.atMost"), r))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
