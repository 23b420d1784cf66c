//! `spec.steps`: waits, faults, restores, expectations and measures.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use causeway_config::HumanDuration;
use causeway_model::ClusterId;
use serde::Deserialize;

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
