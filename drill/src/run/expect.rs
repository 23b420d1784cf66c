//! What the drill observes: DNS answers (`dig +subnet` against the drill's dns), ready
//! replicas and role ConfigMaps (each cluster's API server, as admin), and metrics
//! (`/metrics` of the scheduler, dns or stub). One condition is checked at a time
//! while an expectation is awaited; a [`Snapshot`] of everything the scenario talks
//! about is taken every second for the report's timeline and when an expectation fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_testbed::testing::HttpClient;
use serde::Deserialize;

use super::kube::{Api, run_kubectl};
use super::sandbox::Sandbox;
use crate::scenario::{
    Component, Condition, DnsExpect, DnsMatch, Fault, KubectlExpect, KubectlOutcome, LoadSurge,
    MetricExpect, Scenario, StepAction, WorkloadRef,
};

/// One role ConfigMap: `data.role` and its `causeway.dev/role-changed-at/-by`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoleState {
    pub role: String,
    pub changed_at: String,
    pub changed_by: String,
}

/// A `FailoverPolicy` as the drill reads it.
#[derive(Clone, Debug)]
struct Failover {
    namespace: String,
    configmap: String,
}

/// A check of one condition: whether it holds, what was seen, and the sample to record.
pub(crate) struct Seen {
    pub holds: bool,
    pub text: String,
    pub sample: Option<(String, String)>,
}

/// Reads the sandbox for the scenario's conditions.
pub(crate) struct Observer {
    apis: Vec<(String, Api)>,
    /// The kubectl users' commands run with.
    kubectl: Option<PathBuf>,
    /// Drill users' kubeconfigs, by name.
    users: BTreeMap<String, PathBuf>,
    dns: Option<SocketAddr>,
    dns_api: Option<SocketAddr>,
    scheduler: Option<SocketAddr>,
    /// Every stub's metrics listener (the ready one is scraped).
    stub_metrics: Vec<SocketAddr>,
    /// Address → cluster, from the zones' GSLB targets.
    addresses: BTreeMap<String, String>,
    failover: BTreeMap<String, Failover>,
    clients: BTreeMap<String, String>,
    /// (name, client) of every DNS expectation.
    dns_pairs: Vec<(String, Option<String>)>,
    /// Every workload a policy or step names.
    workloads: Vec<WorkloadRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicySpec {
    workload: Option<WorkloadRef>,
    role_config_map: Option<String>,
}

#[derive(Deserialize, Default)]
struct ZoneSpec {
    #[serde(default)]
    gslb: Vec<Gslb>,
}

#[derive(Deserialize)]
struct Gslb {
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    cluster: String,
    #[serde(default)]
    addresses: Vec<String>,
}

impl Observer {
    /// An observer of `sb` (up) for `scenario`.
    pub(crate) fn new(scenario: &Scenario, sb: &Sandbox) -> Result<Self, String> {
        let apis = sb.member_apis(scenario)?;
        let mut failover = BTreeMap::new();
        let mut workloads: Vec<WorkloadRef> = Vec::new();
        for p in &scenario.install.policies {
            for doc in read_docs(&scenario.resolve(p))? {
                if !matches!(
                    doc.kind.as_str(),
                    "FailoverPolicy" | "BurstPolicy" | "SpreadPolicy"
                ) {
                    continue;
                }
                let spec: PolicySpec = doc.spec().map_err(|e| e.to_string())?;
                let Some(w) = spec.workload else { continue };
                if doc.kind == "FailoverPolicy" {
                    failover.insert(
                        doc.name().to_string(),
                        Failover {
                            namespace: w.namespace.clone(),
                            configmap: spec
                                .role_config_map
                                .unwrap_or_else(|| format!("{}-role", w.deployment)),
                        },
                    );
                }
                if !workloads.contains(&w) {
                    workloads.push(w);
                }
            }
        }
        let mut addresses = BTreeMap::new();
        for z in &scenario.install.zones {
            for doc in read_docs(&scenario.resolve(z))? {
                if doc.kind != "Zone" {
                    continue;
                }
                let spec: ZoneSpec = doc.spec().map_err(|e| e.to_string())?;
                for g in spec.gslb {
                    for t in g.targets {
                        for a in t.addresses {
                            addresses.insert(a, t.cluster.clone());
                        }
                    }
                }
            }
        }
        let mut dns_pairs = Vec::new();
        for step in &scenario.steps {
            let w = match &step.action {
                StepAction::Expect(e) => match &e.condition {
                    Condition::Dns(d) => {
                        let pair = (d.name.clone(), d.client.clone());
                        if !dns_pairs.contains(&pair) {
                            dns_pairs.push(pair);
                        }
                        None
                    }
                    Condition::ReplicasReady(r) => Some(&r.workload),
                    _ => None,
                },
                StepAction::Fault(Fault::LoadSurge(LoadSurge::Scale(s))) => Some(&s.workload),
                StepAction::Fault(Fault::LoadSurge(LoadSurge::PodCpu(s))) => Some(&s.workload),
                _ => None,
            };
            if let Some(w) = w
                && !workloads.contains(w)
            {
                workloads.push(w.clone());
            }
        }
        Ok(Self {
            apis,
            kubectl: sb.kubectl_bin(),
            users: sb.users.clone(),
            dns: sb.dns_udp,
            dns_api: sb.dns_api,
            scheduler: sb.scheduler_addr,
            stub_metrics: sb.stub_metrics(),
            addresses,
            failover,
            clients: scenario
                .topology
                .clients
                .iter()
                .map(|c| (c.name.clone(), c.subnet.to_string()))
                .collect(),
            dns_pairs,
            workloads,
        })
    }

    /// Checks `condition` once.
    pub(crate) async fn check(&self, condition: &Condition) -> Seen {
        match condition {
            Condition::Dns(d) => self.check_dns(d).await,
            Condition::ReplicasReady(r) => {
                let series = format!("ready {} in {}", r.workload, r.cluster);
                match self.ready(r.cluster.as_str(), &r.workload).await {
                    Ok(n) => {
                        let seen = n.unwrap_or(0);
                        Seen {
                            holds: r.op.holds(f64::from(seen), f64::from(r.value)),
                            text: match n {
                                Some(n) => format!("{n} ready in {}", r.cluster),
                                None => format!("no Deployment {} in {}", r.workload, r.cluster),
                            },
                            sample: Some((series, seen.to_string())),
                        }
                    }
                    Err(e) => Seen {
                        holds: false,
                        text: format!("{}: {e}", r.cluster),
                        sample: None,
                    },
                }
            }
            Condition::Primary(p) => {
                let roles = self.roles(&p.policy).await;
                let primaries = primaries(&roles);
                Seen {
                    holds: primaries == [p.cluster.to_string()],
                    text: roles_text(&roles),
                    sample: Some((format!("primary {}", p.policy), primaries.join(","))),
                }
            }
            Condition::Metric(m) => self.check_metric(m).await,
            Condition::Kubectl(k) => self.check_kubectl(k).await,
        }
    }

    /// Runs kubectl as `k.user` with the context of `k.cluster` (through the stub, `-v=6`
    /// so the HTTP status of each response is logged) and classifies how it ended
    /// ([`classify_kubectl`]).
    async fn check_kubectl(&self, k: &KubectlExpect) -> Seen {
        let series = format!(
            "kubectl {} as {} in {}",
            k.args.join(" "),
            k.user,
            k.cluster
        );
        let Some(kubeconfig) = self.users.get(&k.user) else {
            return Seen {
                holds: false,
                text: format!("no kubeconfig for user {}", k.user),
                sample: None,
            };
        };
        let (Some(bin), true) = (
            &self.kubectl,
            self.apis.iter().any(|(c, _)| c == k.cluster.as_str()),
        ) else {
            return Seen {
                holds: false,
                text: format!("no cluster {}", k.cluster),
                sample: None,
            };
        };
        let mut args: Vec<&str> = vec![
            "--context",
            k.cluster.as_str(),
            "--request-timeout",
            "3s",
            "-v=6",
        ];
        args.extend(k.args.iter().map(String::as_str));
        let r = run_kubectl(bin, kubeconfig, &args, Some(k.cluster.as_str())).await;
        let (got, text) = match &r {
            Ok(_) => (Got::Ok, format!("{series}: ok")),
            Err(e) => {
                // kubectl_with's error is `kubectl ARGS (cluster): STDERR`.
                let stderr = e.split_once("): ").map_or(e.as_str(), |(_, w)| w);
                let got = classify_kubectl(stderr);
                let why = stderr
                    .lines()
                    .rev()
                    .find(|l| !is_klog(l) && !l.trim().is_empty())
                    .unwrap_or("")
                    .trim();
                (got, format!("{series}: {got} ({why})"))
            }
        };
        let holds = match k.wanted() {
            Some(KubectlOutcome::Ok) => got == Got::Ok,
            Some(KubectlOutcome::Refused) => got == Got::Refused,
            Some(KubectlOutcome::Unavailable) => got == Got::Unavailable,
            None => got != Got::Ok,
        };
        Seen {
            holds,
            text,
            sample: Some((series, got.to_string())),
        }
    }

    async fn check_dns(&self, d: &DnsExpect) -> Seen {
        let series = dns_series(&d.name, d.client.as_deref());
        match self.dns_answer(&d.name, d.client.as_deref()).await {
            Ok(clusters) => {
                let holds = match &d.answer {
                    DnsMatch::Equals(want) => {
                        let mut want: Vec<String> = want.iter().map(|c| c.to_string()).collect();
                        want.sort();
                        want.dedup();
                        want == clusters
                    }
                    DnsMatch::Contains(want) => want
                        .iter()
                        .all(|c| clusters.iter().any(|x| x == c.as_str())),
                    DnsMatch::Excludes(not) => {
                        !not.iter().any(|c| clusters.iter().any(|x| x == c.as_str()))
                    }
                };
                let value = clusters.join(",");
                Seen {
                    holds,
                    text: format!(
                        "{series} answered {}",
                        if value.is_empty() {
                            "nothing".to_string()
                        } else {
                            format!("[{value}]")
                        }
                    ),
                    sample: Some((series, value)),
                }
            }
            Err(e) => Seen {
                holds: false,
                text: format!("{series}: {e}"),
                sample: None,
            },
        }
    }

    async fn check_metric(&self, m: &MetricExpect) -> Seen {
        let mut labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        labels.sort();
        let series = format!("{} {}{{{}}}", m.component, m.name, labels.join(","));
        match self.metric(m).await {
            Ok(v) => Seen {
                holds: m.op.holds(v, m.value),
                text: format!("{series} = {v}"),
                sample: Some((series, v.to_string())),
            },
            Err(e) => Seen {
                holds: false,
                text: format!("{series}: {e}"),
                sample: None,
            },
        }
    }

    /// The clusters whose addresses the answer for `name` holds (sorted; an address of
    /// no target is shown as is), asked with `client`'s subnet as ECS.
    pub(crate) async fn dns_answer(
        &self,
        name: &str,
        client: Option<&str>,
    ) -> Result<Vec<String>, String> {
        let dns = self.dns.ok_or("no dns")?;
        let mut cmd = tokio::process::Command::new("dig");
        cmd.arg(format!("@{}", dns.ip()))
            .args(["-p", &dns.port().to_string(), name, "A", "+short"])
            .args(["+time=1", "+tries=1"])
            .kill_on_drop(true);
        if let Some(c) = client {
            let subnet = self
                .clients
                .get(c)
                .ok_or_else(|| format!("no client network {c}"))?;
            cmd.arg(format!("+subnet={subnet}"));
        }
        let out = tokio::time::timeout(Duration::from_secs(5), cmd.output())
            .await
            .map_err(|_| "dig timed out".to_string())?
            .map_err(|e| format!("dig (Debian package dnsutils): {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || text.contains(";;") {
            return Err(format!(
                "dig failed: {}",
                text.lines().next().unwrap_or("no output").trim()
            ));
        }
        let mut clusters: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|a| {
                self.addresses
                    .get(a)
                    .cloned()
                    .unwrap_or_else(|| a.to_string())
            })
            .collect();
        clusters.sort();
        clusters.dedup();
        Ok(clusters)
    }

    fn api(&self, cluster: &str) -> Result<&Api, String> {
        self.apis
            .iter()
            .find(|(c, _)| c == cluster)
            .map(|(_, a)| a)
            .ok_or_else(|| format!("no cluster {cluster}"))
    }

    /// Ready replicas of `w` in `cluster`; `None`: no such Deployment.
    pub(crate) async fn ready(
        &self,
        cluster: &str,
        w: &WorkloadRef,
    ) -> Result<Option<u32>, String> {
        let path = format!(
            "/apis/apps/v1/namespaces/{}/deployments/{}",
            w.namespace, w.deployment
        );
        let d = self.api(cluster)?.get(&path).await?;
        Ok(d.map(|d| ready_of(&d)))
    }

    /// The role ConfigMap of FailoverPolicy `policy` in every cluster.
    pub(crate) async fn roles(&self, policy: &str) -> PerCluster<RoleState> {
        let Some(f) = self.failover.get(policy) else {
            return Vec::new();
        };
        let path = format!(
            "/api/v1/namespaces/{}/configmaps/{}",
            f.namespace, f.configmap
        );
        let jobs = self.apis.iter().map(|(c, api)| {
            let path = path.clone();
            async move {
                let r = api.get(&path).await.map(|cm| cm.map(|cm| role_of(&cm)));
                (c.clone(), r)
            }
        });
        futures::future::join_all(jobs).await
    }

    async fn metric(&self, m: &MetricExpect) -> Result<f64, String> {
        let addr = match m.component {
            Component::Scheduler => self.scheduler,
            Component::Dns => self.dns_api,
            Component::Stub => self.active_stub().await,
        }
        .ok_or_else(|| format!("no {} to scrape", m.component))?;
        let r = HttpClient::new(addr)
            .timeout(Duration::from_secs(2))
            .send(http::Method::GET, "/metrics", "")
            .await
            .map_err(|e| format!("GET /metrics: {e}"))?;
        if r.status != 200 {
            return Err(format!("GET /metrics: HTTP {}", r.status));
        }
        Ok(sum_series(&r.text(), &m.name, &m.labels))
    }

    /// The metrics listener of the active stub (the only one with one stub).
    async fn active_stub(&self) -> Option<SocketAddr> {
        if let [one] = self.stub_metrics.as_slice() {
            return Some(*one);
        }
        for m in &self.stub_metrics {
            if super::sandbox::stub_ready(*m).await {
                return Some(*m);
            }
        }
        None
    }

    /// Everything the scenario talks about, now.
    pub(crate) async fn snapshot(&self) -> Snapshot {
        let dns = futures::future::join_all(self.dns_pairs.iter().map(|(n, c)| async move {
            (
                dns_series(n, c.as_deref()),
                self.dns_answer(n, c.as_deref()).await,
            )
        }))
        .await;
        let lists = futures::future::join_all(self.apis.iter().map(|(c, api)| async move {
            (c.clone(), api.get("/apis/apps/v1/deployments").await)
        }))
        .await;
        let mut ready = Vec::new();
        for w in &self.workloads {
            let per: PerCluster<u32> = lists
                .iter()
                .map(|(c, list)| {
                    let r = match list {
                        Ok(Some(list)) => Ok(find_deployment(list, w).map(ready_of)),
                        Ok(None) => Ok(None),
                        Err(e) => Err(e.clone()),
                    };
                    (c.clone(), r)
                })
                .collect();
            ready.push((w.to_string(), per));
        }
        let mut roles = Vec::new();
        for p in self.failover.keys() {
            roles.push((p.clone(), self.roles(p).await));
        }
        Snapshot { dns, ready, roles }
    }
}

/// Per cluster: the value read (`None`: no such object) or why it could not be read.
type PerCluster<T> = Vec<(String, Result<Option<T>, String>)>;

/// What [`Observer::snapshot`] saw.
pub(crate) struct Snapshot {
    dns: Vec<(String, Result<Vec<String>, String>)>,
    ready: Vec<(String, PerCluster<u32>)>,
    roles: Vec<(String, PerCluster<RoleState>)>,
}

impl Snapshot {
    /// The report samples of this snapshot (unreachable values are not sampled).
    pub(crate) fn samples(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (series, r) in &self.dns {
            if let Ok(clusters) = r {
                out.push((series.clone(), clusters.join(",")));
            }
        }
        for (w, per) in &self.ready {
            for (c, r) in per {
                // No Deployment there (yet): no ready replica.
                if let Ok(n) = r {
                    out.push((format!("ready {w} in {c}"), n.unwrap_or(0).to_string()));
                }
            }
        }
        for (p, roles) in &self.roles {
            out.push((format!("primary {p}"), primaries(roles).join(",")));
            for (c, r) in roles {
                if let Ok(Some(s)) = r {
                    out.push((format!("role {p} in {c}"), role_value(s)));
                }
            }
        }
        out
    }

    /// The account shown when an expectation failed: the last DNS answers, ready
    /// replicas per cluster, roles.
    pub(crate) fn account(&self) -> String {
        let mut s = String::new();
        for (series, r) in &self.dns {
            let v = match r {
                Ok(c) if c.is_empty() => "no answer".to_string(),
                Ok(c) => c.join(", "),
                Err(e) => e.clone(),
            };
            let _ = writeln!(s, "{series}: {v}");
        }
        for (w, per) in &self.ready {
            let list: Vec<String> = per
                .iter()
                .map(|(c, r)| match r {
                    Ok(Some(n)) => format!("{c} {n}"),
                    Ok(None) => format!("{c} -"),
                    Err(_) => format!("{c} unreachable"),
                })
                .collect();
            let _ = writeln!(s, "ready {w}: {}", list.join(", "));
        }
        for (p, roles) in &self.roles {
            let _ = writeln!(s, "roles {p}: {}", roles_text(roles));
        }
        s.trim_end().to_string()
    }
}

/// `role at <changed-at> by <changed-by>`, the sample value of a role series.
pub(crate) fn role_value(s: &RoleState) -> String {
    format!("{} at {} by {}", s.role, s.changed_at, s.changed_by)
}

fn dns_series(name: &str, client: Option<&str>) -> String {
    match client {
        Some(c) => format!("dns {name} from {c}"),
        None => format!("dns {name}"),
    }
}

fn read_docs(path: &Path) -> Result<Vec<causeway_config::Document>, String> {
    causeway_config::read_file(path).map_err(|e| e.to_string())
}

fn ready_of(d: &serde_json::Value) -> u32 {
    d["status"]["readyReplicas"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

fn find_deployment<'a>(
    list: &'a serde_json::Value,
    w: &WorkloadRef,
) -> Option<&'a serde_json::Value> {
    list["items"].as_array()?.iter().find(|d| {
        d["metadata"]["namespace"].as_str() == Some(w.namespace.as_str())
            && d["metadata"]["name"].as_str() == Some(w.deployment.as_str())
    })
}

fn role_of(cm: &serde_json::Value) -> RoleState {
    let a = &cm["metadata"]["annotations"];
    RoleState {
        role: cm["data"]["role"].as_str().unwrap_or_default().to_string(),
        changed_at: a["causeway.dev/role-changed-at"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        changed_by: a["causeway.dev/role-changed-by"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// The reachable clusters whose role is `primary`.
fn primaries(roles: &PerCluster<RoleState>) -> Vec<String> {
    roles
        .iter()
        .filter(|(_, r)| matches!(r, Ok(Some(s)) if s.role == "primary"))
        .map(|(c, _)| c.clone())
        .collect()
}

fn roles_text(roles: &PerCluster<RoleState>) -> String {
    let list: Vec<String> = roles
        .iter()
        .map(|(c, r)| match r {
            Ok(Some(s)) => format!("{c} says {}", s.role),
            Ok(None) => format!("{c} has no role ConfigMap"),
            Err(_) => format!("{c} unreachable"),
        })
        .collect();
    list.join(", ")
}

/// The sum of the samples of `name` carrying `labels` in a Prometheus text page.
fn sum_series(page: &str, name: &str, labels: &BTreeMap<String, String>) -> f64 {
    let mut sum = 0.0;
    for line in page.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(inner) = rest.strip_prefix('{') {
            let Some((l, v)) = inner.split_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // another metric whose name starts with `name`
        };
        let have: BTreeMap<&str, &str> = label_text
            .split("\",")
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        if labels
            .iter()
            .all(|(k, v)| have.get(k.as_str()) == Some(&v.as_str()))
            && let Some(v) = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        {
            sum += v;
        }
    }
    sum
}

/// How a kubectl command ended (the timeline's value of a `kubectl …` series).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Got {
    /// Exit 0.
    Ok,
    /// The last response was 401 or 403.
    Refused,
    /// The last response was a 5xx, or there was none.
    Unavailable,
    /// Another failure (e.g. 404 for a missing object).
    Failed,
}

impl std::fmt::Display for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Got::Ok => "ok",
            Got::Refused => "refused",
            Got::Unavailable => "unavailable",
            Got::Failed => "failed",
        })
    }
}

/// A klog line (`I1127 21:32:27.637365   28775 file.go:632] …`).
fn is_klog(line: &str) -> bool {
    let mut b = line.bytes();
    matches!(b.next(), Some(b'I' | b'W' | b'E' | b'F'))
        && line.len() > 5
        && line.as_bytes()[1..5].iter().all(u8::is_ascii_digit)
}

/// Classifies a failed kubectl (`-v=6`) by the HTTP status of the last response it
/// logged — `status="403 Forbidden"` (klog's structured form) or `URL 403 Forbidden in
/// N milliseconds` (older kubectl) —, or by its `Error from server (Reason)` line when
/// it logged none. No response at all (refused, reset, timeout) is unavailable.
pub(crate) fn classify_kubectl(stderr: &str) -> Got {
    let mut last: Option<u16> = None;
    for line in stderr.lines() {
        if let Some(rest) = line.split_once("status=\"").map(|(_, r)| r) {
            last = rest.get(..3).and_then(|c| c.parse().ok()).or(last);
        } else if line.contains("round_trippers") && line.ends_with("milliseconds") {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(i) = words.iter().position(|w| w.starts_with("http")) {
                last = words
                    .get(i + 1)
                    .and_then(|c| c.parse::<u16>().ok())
                    .filter(|c| (100..600).contains(c))
                    .or(last);
            }
        }
    }
    match last {
        Some(401 | 403) => Got::Refused,
        Some(500..=599) => Got::Unavailable,
        Some(_) => Got::Failed,
        None if stderr.contains("Error from server (Forbidden)")
            || stderr.contains("Error from server (Unauthorized)") =>
        {
            Got::Refused
        }
        None if stderr.contains("Error from server (") => Got::Failed,
        None => Got::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_failures_are_classified_by_the_last_status() {
        let resp = |code: &str| {
            format!(
                "I1127 21:32:27.637365   28775 round_trippers.go:632] \"Response\" verb=\"GET\" url=\"https://127.0.0.1:1/api\" status=\"{code}\" milliseconds=1\n"
            )
        };
        let forbidden = format!(
            "{}{}Error from server (Forbidden): pods is forbidden: User \"bob\" cannot list",
            resp("200 OK"),
            resp("403 Forbidden")
        );
        assert_eq!(classify_kubectl(&forbidden), Got::Refused);
        assert_eq!(
            classify_kubectl(&format!(
                "{}error: You must be logged in",
                resp("401 Unauthorized")
            )),
            Got::Refused
        );
        let no_agent = format!(
            "{}Error from server (ServiceUnavailable): no live agent",
            resp("503 Service Unavailable")
        );
        assert_eq!(classify_kubectl(&no_agent), Got::Unavailable);
        // A 503 earlier, then a 403: the last answer decides.
        assert_eq!(
            classify_kubectl(&format!(
                "{}{}",
                resp("503 Service Unavailable"),
                resp("403 Forbidden")
            )),
            Got::Refused
        );
        assert_eq!(
            classify_kubectl(&format!(
                "{}Error from server (NotFound)",
                resp("404 Not Found")
            )),
            Got::Failed
        );
        // No response at all.
        let refused = "E1127 21:32:19.372608   28457 memcache.go:265] \"Unhandled Error\" err=\"dial tcp 127.0.0.1:1: connect: connection refused\"\nThe connection to the server 127.0.0.1:1 was refused";
        assert_eq!(classify_kubectl(refused), Got::Unavailable);
        // Older kubectl's format, and no -v lines at all.
        let old = "I0101 00:00:00.000000 1 round_trippers.go:553] GET https://127.0.0.1:1/api/v1/pods 403 Forbidden in 3 milliseconds\n";
        assert_eq!(classify_kubectl(old), Got::Refused);
        assert_eq!(
            classify_kubectl("Error from server (Forbidden): nope"),
            Got::Refused
        );
        assert!(is_klog("I1127 21:32:27.6 x"));
        assert!(!is_klog("Error from server"));
    }

    #[test]
    fn metric_series_are_summed_by_labels() {
        let page = "# HELP x\n\
            causeway_x_total{policy=\"db\",cluster=\"a\"} 2\n\
            causeway_x_total{policy=\"db\",cluster=\"b\"} 3\n\
            causeway_x_total{policy=\"web\",cluster=\"a\"} 7\n\
            causeway_x_total_more 100\n\
            causeway_y 1\n";
        let mut l = BTreeMap::new();
        assert_eq!(sum_series(page, "causeway_x_total", &l), 12.0);
        l.insert("policy".to_string(), "db".to_string());
        assert_eq!(sum_series(page, "causeway_x_total", &l), 5.0);
        assert_eq!(sum_series(page, "causeway_y", &BTreeMap::new()), 1.0);
        assert_eq!(sum_series(page, "causeway_z", &BTreeMap::new()), 0.0);
    }
}
