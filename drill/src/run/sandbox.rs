//! The sandbox of a drill: testbed clusters, the stub, one agent per cluster (through a
//! relay when a `networkCut` names the cluster), the scheduler's stub identity, member
//! and fencer RBAC, dns and the scheduler — every child the same `causeway` binary,
//! each logging to `<work>/<name>.log`, every PID appended to `<work>/pids`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use causeway_testbed::relay::{Backend, Relay};
use causeway_testbed::testing::{HttpClient, Listening, Process, Spawn};
use causeway_testbed::{ClusterInfo, ClusterSpec, MetricsOptions, Testbed, TestbedOptions};

use super::health::{HealthEndpoint, zones_with_health_checks};
use super::kube::{Api, Kubectl, kubectl, kubectl_with};
use super::progress::{Progress, secs};
use crate::scenario::{Fault, LoadSurge, Scenario, StepAction, UserRbac, WorkloadRef};
use crate::target::DrillTarget;

/// The agent's RBAC on its own cluster (impersonation only).
const AGENT_RBAC: &str = include_str!("../../../examples/tunnel/agent-rbac.yaml");
/// What the scheduler may do in a member cluster.
const MEMBER_RBAC: &str = include_str!("../../../examples/scheduler/member-rbac.yaml");
/// What the agent's fencer may do.
const FENCER_RBAC: &str = include_str!("../../../examples/tunnel/fencer-rbac.yaml");

/// How long a child may take to log its listeners or its first session.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The testbed cluster holding the stubs' Lease (only with `topology.stub.replicas: 2`).
pub(crate) const HUB: &str = "drill-hub";
/// The stubs' Lease duration: a SIGKILLed active stub is replaced after at most this.
pub(crate) const STUB_LEASE_SECONDS: u64 = 4;

/// Where the stub listens.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StubAddrs {
    pub users: SocketAddr,
    pub agents: SocketAddr,
    pub metrics: SocketAddr,
}

/// One stub of the sandbox (two, active and standby, with `topology.stub.replicas: 2`).
pub(crate) struct StubSlot {
    /// `stub`, or `stub-0`/`stub-1` (also its Lease identity and log name).
    pub name: String,
    /// `None` while killed by a `stubKilled` fault.
    pub proc: Option<Process>,
    /// Its listeners (a restarted stub listens on the same ports).
    pub addrs: StubAddrs,
    config: PathBuf,
}

/// Everything a drill started; [`Sandbox::teardown`] stops it all.
pub(crate) struct Sandbox {
    pub work: PathBuf,
    exe: PathBuf,
    pub testbed: Option<Testbed>,
    /// The scenario's clusters (the testbed's, without [`HUB`]).
    members: Vec<ClusterInfo>,
    /// The stubs: one, or an active and a standby sharing the state directory.
    pub stubs: Vec<StubSlot>,
    /// With two stubs: what a Service with a readiness probe does in production — users
    /// (and the scheduler) dial this relay, which forwards to the stub whose `/readyz`
    /// says ready.
    pub users_service: Option<Relay>,
    pub relays: BTreeMap<String, Relay>,
    /// Agents by cluster (`None`: stopped by a fault).
    pub agents: BTreeMap<String, Vec<Option<Process>>>,
    agent_tokens: BTreeMap<String, PathBuf>,
    /// The health endpoints dns probes, by cluster (only with a `healthFailing` step).
    pub health: BTreeMap<String, HealthEndpoint>,
    pub dns: Option<Process>,
    pub dns_udp: Option<SocketAddr>,
    pub dns_api: Option<SocketAddr>,
    pub scheduler: Option<Process>,
    pub scheduler_addr: Option<SocketAddr>,
    /// Kubeconfigs of `topology.users`, by name.
    pub users: BTreeMap<String, PathBuf>,
    /// Against an existing deployment (`--target`): nothing is started, the clusters
    /// and endpoints are the target's.
    pub target: Option<DrillTarget>,
}

impl Sandbox {
    /// Nothing started yet; children are `exe`, files go to `work`.
    pub(crate) fn new(exe: &Path, work: &Path) -> Self {
        Self {
            work: work.to_path_buf(),
            exe: exe.to_path_buf(),
            testbed: None,
            members: Vec::new(),
            stubs: Vec::new(),
            users_service: None,
            relays: BTreeMap::new(),
            agents: BTreeMap::new(),
            agent_tokens: BTreeMap::new(),
            health: BTreeMap::new(),
            dns: None,
            dns_udp: None,
            dns_api: None,
            scheduler: None,
            scheduler_addr: None,
            users: BTreeMap::new(),
            target: None,
        }
    }

    /// Against `target` instead of a sandbox: takes its users, dns, scheduler and stub
    /// metrics, and checks that every cluster answers and that the workloads the
    /// scenario scales and the agents' Deployments the target names exist. Nothing is
    /// installed.
    pub(crate) async fn attach(
        &mut self,
        target: &DrillTarget,
        scenario: &Scenario,
        progress: &mut Progress,
    ) -> Result<(), String> {
        std::fs::create_dir_all(&self.work).map_err(|e| format!("{}: {e}", self.work.display()))?;
        self.target = Some(target.clone());
        progress.line(&format!(
            "target {} ({}): an existing deployment; nothing is installed (install: is not applied)",
            target.name,
            target.file.display()
        ));
        for c in &scenario.topology.clusters {
            let k = self.member_kubectl(c.name.as_str())?;
            k.run(&["get", "--raw", "/version", "--request-timeout", "5s"])
                .await
                .map_err(|e| format!("target cluster {}: {e}", c.name))?;
        }
        let mut need: Vec<(String, WorkloadRef, &str)> = Vec::new();
        for s in &scenario.steps {
            if let StepAction::Fault(Fault::LoadSurge(LoadSurge::Scale(x))) = &s.action {
                need.push((
                    x.cluster.to_string(),
                    x.workload.clone(),
                    "the workload of step",
                ));
            }
        }
        for c in &target.clusters {
            if let Some(a) = &c.agents {
                need.push((c.name.clone(), a.clone(), "the agents' Deployment named by"));
            }
        }
        for (cluster, w, what) in need {
            if !scenario
                .topology
                .clusters
                .iter()
                .any(|c| c.name.as_str() == cluster)
            {
                continue;
            }
            let k = self.member_kubectl(&cluster)?;
            k.run(&[
                "get",
                "deployment",
                &w.deployment,
                "-n",
                &w.namespace,
                "-o",
                "name",
            ])
            .await
            .map_err(|e| {
                format!(
                    "{what} the scenario/target: Deployment {w} not found in {cluster} \
                         (the drill installs nothing in a target): {e}"
                )
            })?;
        }
        self.users = target.users.iter().cloned().collect();
        self.dns_udp = target.dns.map(|d| d.server);
        self.dns_api = target.dns.and_then(|d| d.api);
        self.scheduler_addr = target.scheduler;
        progress.line(&format!(
            "target: {} cluster(s) answer; every named workload exists",
            scenario.topology.clusters.len()
        ));
        Ok(())
    }

    /// kubectl as admin of cluster `name` (the sandbox's, or the target's context).
    pub(crate) fn member_kubectl(&self, name: &str) -> Result<Kubectl, String> {
        if let Some(t) = &self.target {
            let c = t
                .cluster(name)
                .ok_or_else(|| format!("no cluster {name} in the target"))?;
            return Ok(Kubectl {
                bin: t.kubectl.clone(),
                kubeconfig: c.kubeconfig.clone(),
                context: Some(c.context.clone()),
            });
        }
        let c = self.cluster(name)?;
        Ok(Kubectl {
            bin: c.kubectl.clone(),
            kubeconfig: c.kubeconfig.clone(),
            context: None,
        })
    }

    /// The kubectl binary users' commands run with.
    pub(crate) fn kubectl_bin(&self) -> Option<PathBuf> {
        match &self.target {
            Some(t) => Some(t.kubectl.clone()),
            None => self.members.first().map(|c| c.kubectl.clone()),
        }
    }

    /// Every cluster's name and admin API (`scenario`'s clusters for a target).
    pub(crate) fn member_apis(&self, scenario: &Scenario) -> Result<Vec<(String, Api)>, String> {
        if self.target.is_some() {
            return scenario
                .topology
                .clusters
                .iter()
                .map(|c| {
                    let k = self.member_kubectl(c.name.as_str())?;
                    Ok((c.name.to_string(), Api::Kubectl(k)))
                })
                .collect();
        }
        self.members
            .iter()
            .map(|c| Ok((c.name.clone(), Api::admin(c)?)))
            .collect()
    }

    /// The sandbox's clusters (empty before the testbed is up).
    pub(crate) fn clusters(&self) -> &[ClusterInfo] {
        &self.members
    }

    /// Where users and the scheduler reach the stub: the stand-in Service with two
    /// stubs, else the stub's users listener.
    pub(crate) fn users_addr(&self) -> Result<SocketAddr, String> {
        match (&self.users_service, self.stubs.first()) {
            (Some(r), _) => Ok(r.addr),
            (None, Some(s)) => Ok(s.addrs.users),
            (None, None) => Err("no stub".into()),
        }
    }

    /// The metrics listeners of every stub.
    pub(crate) fn stub_metrics(&self) -> Vec<SocketAddr> {
        if let Some(t) = &self.target {
            return t.stub_metrics.into_iter().collect();
        }
        self.stubs.iter().map(|s| s.addrs.metrics).collect()
    }

    /// The cluster `name`.
    pub(crate) fn cluster(&self, name: &str) -> Result<&ClusterInfo, String> {
        self.clusters()
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("no cluster {name} in the sandbox"))
    }

    /// Brings everything up for `scenario`, in order; progress lines on the way.
    pub(crate) async fn bring_up(
        &mut self,
        scenario: &Scenario,
        progress: &mut Progress,
    ) -> Result<(), String> {
        std::fs::create_dir_all(&self.work).map_err(|e| format!("{}: {e}", self.work.display()))?;
        let t = Instant::now();
        let mut specs: Vec<ClusterSpec> = scenario
            .topology
            .clusters
            .iter()
            .map(|c| {
                let mut s = ClusterSpec::new(c.name.as_str());
                s.nodes = c.nodes;
                s.node_cpu = c.cpu.clone();
                s
            })
            .collect();
        let ha = scenario.topology.stub.replicas > 1;
        if ha {
            if specs.iter().any(|s| s.name == HUB) {
                return Err(format!(
                    "a cluster is named {HUB}, the drill's hub cluster for the stubs' Lease"
                ));
            }
            let mut hub = ClusterSpec::new(HUB);
            hub.nodes = 1;
            specs.push(hub);
        }
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        progress.line(&format!(
            "sandbox: starting clusters {} (testbed in {})",
            names.join(", "),
            self.work.join("testbed").display()
        ));
        let mut opts = TestbedOptions::new(specs.clone(), self.work.join("testbed"));
        opts.base_address = causeway_testbed::reserve_addresses(specs.len());
        if uses_pod_cpu(scenario) {
            opts.metrics = MetricsOptions::enabled();
        }
        let tb = Testbed::up(opts)
            .await
            .map_err(|e| format!("testbed: {e}"))?;
        for p in tb.processes() {
            self.record_pid(p.pid, &format!("{} {}", p.cluster, p.component));
        }
        self.members = tb
            .clusters()
            .iter()
            .filter(|c| c.name != HUB)
            .cloned()
            .collect();
        let hub = tb.clusters().iter().find(|c| c.name == HUB).cloned();
        self.testbed = Some(tb);
        progress.line(&format!("sandbox: clusters up in {}", secs(t.elapsed())));

        match hub {
            Some(hub) => self.start_stub_pair(&hub).await?,
            None => {
                let s = self.start_stub("stub", None, &[]).await?;
                self.stubs.push(s);
            }
        }
        let stub = self.stubs.first().map(|s| s.addrs).ok_or("no stub")?;
        for step in &scenario.steps {
            if let StepAction::Fault(Fault::NetworkCut(c)) = &step.action
                && !self.relays.contains_key(c.cluster.as_str())
            {
                let relay = Relay::start(stub.agents).map_err(|e| format!("relay: {e}"))?;
                self.relays.insert(c.cluster.to_string(), relay);
            }
        }
        self.prepare_members().await?;
        for c in &scenario.topology.clusters {
            self.enrol(c.name.as_str(), c.agents).await?;
        }
        if ha {
            self.wait_standby_sessions(scenario).await?;
        }
        let kubeconfig = self.scheduler_identity().await?;
        self.add_users(scenario).await?;
        progress.line(&format!(
            "sandbox: {}, {} agent(s) with sessions, scheduler identity ({})",
            if ha {
                "2 stubs (active, standby; Lease in drill-hub) behind a ready-following relay"
            } else {
                "stub"
            },
            self.agents.values().map(Vec::len).sum::<usize>(),
            secs(t.elapsed())
        ));
        // dns needs a zone, the scheduler a policy: without them, neither runs.
        if !scenario.install.zones.is_empty() {
            if uses_health_failing(scenario) {
                for c in &scenario.topology.clusters {
                    let h = HealthEndpoint::start()
                        .await
                        .map_err(|e| format!("health endpoint: {e}"))?;
                    self.health.insert(c.name.to_string(), h);
                }
            }
            self.start_dns(scenario).await?;
        }
        for w in &scenario.install.workloads {
            let file = scenario.resolve(&w.file);
            let file_s = file.to_string_lossy().into_owned();
            for c in scenario.workload_clusters(w) {
                let info = self.cluster(c.as_str())?.clone();
                kubectl(&info, &["apply", "-f", &file_s]).await?;
            }
        }
        if !scenario.install.policies.is_empty() {
            self.start_scheduler(scenario, &kubeconfig).await?;
        }
        let mut started = vec!["workloads applied"];
        if self.dns.is_some() {
            started.push("dns");
        }
        if self.scheduler.is_some() {
            started.push("scheduler");
        }
        progress.line(&format!(
            "sandbox: {}; ready in {}",
            started.join(", "),
            secs(t.elapsed())
        ));
        Ok(())
    }

    /// Appends `pid name` to `<work>/pids` (what the drill started, for a check after).
    fn record_pid(&self, pid: u32, name: &str) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.join("pids"))
        {
            let _ = writeln!(f, "{pid} {name}");
        }
    }

    /// Starts `causeway ARGS…` logging to `<work>/<name>.log`.
    pub(crate) fn spawn(&self, name: &str, args: &[String]) -> Result<Process, String> {
        let spawn = Spawn::causeway(&self.exe)
            .args(args)
            .name(name)
            .log_file(self.work.join(format!("{name}.log")));
        let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| spawn.start()))
            .map_err(|_| format!("cannot start {name} ({})", self.exe.display()))?;
        self.record_pid(p.pid(), name);
        Ok(p)
    }

    /// Runs `causeway ARGS…` to completion; its stdout.
    async fn causeway(&self, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new(&self.exe)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("causeway {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "causeway {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts stub `name` (with `lease`, a `spec.lease` block) and waits for its
    /// listeners; `extra` are command-line flags (a restart's fixed ports).
    async fn start_stub(
        &self,
        name: &str,
        lease: Option<&str>,
        extra: &[String],
    ) -> Result<StubSlot, String> {
        let state = self.work.join("stub-state");
        let config = self.work.join(format!("{name}.yaml"));
        let audit = self.work.join(format!("{name}-audit.log"));
        let mut yaml = format!(
            "apiVersion: causeway.dev/v1alpha1
kind: StubConfig
metadata: {{name: drill}}
spec:
  stateDir: {}
  listen: {{users: \"127.0.0.1:0\", agents: \"127.0.0.1:0\", metrics: \"127.0.0.1:0\"}}
  audit: {{path: {}}}
",
            state.display(),
            audit.display()
        );
        if let Some(l) = lease {
            yaml.push_str(l);
        }
        write(&config, &yaml)?;
        let slot = StubSlot {
            name: name.to_string(),
            proc: None,
            addrs: StubAddrs {
                users: ([127, 0, 0, 1], 0).into(),
                agents: ([127, 0, 0, 1], 0).into(),
                metrics: ([127, 0, 0, 1], 0).into(),
            },
            config,
        };
        self.run_stub(slot, extra).await
    }

    /// Starts the stub of `slot` from its config (plus `extra` flags); its listeners.
    async fn run_stub(&self, mut slot: StubSlot, extra: &[String]) -> Result<StubSlot, String> {
        let mut args = vec!["stub".into(), "--config".into(), path_arg(&slot.config)];
        args.extend(extra.iter().cloned());
        let log = if extra.is_empty() {
            slot.name.clone()
        } else {
            format!("{}-restarted", slot.name)
        };
        let p = self.spawn(&log, &args)?;
        let l = wait_listening(&p, &["users", "agents", "metrics"]).await?;
        slot.addrs = StubAddrs {
            users: l.addr("users"),
            agents: l.addr("agents"),
            metrics: l.addr("metrics"),
        };
        slot.proc = Some(p);
        Ok(slot)
    }

    /// Starts stub `index` again on its old ports (after a `stubKilled`).
    pub(crate) async fn restart_stub(&mut self, index: usize) -> Result<(), String> {
        let slot = self.stubs.get_mut(index).ok_or("no such stub")?;
        let a = slot.addrs;
        let taken = StubSlot {
            name: slot.name.clone(),
            proc: None,
            addrs: a,
            config: slot.config.clone(),
        };
        let extra: Vec<String> = [
            ("--listen-users", a.users),
            ("--listen-agents", a.agents),
            ("--listen-metrics", a.metrics),
        ]
        .iter()
        .flat_map(|(flag, addr)| [flag.to_string(), addr.to_string()])
        .collect();
        let started = self.run_stub(taken, &extra).await?;
        self.stubs[index] = started;
        Ok(())
    }

    /// Two stubs sharing the state directory, one Lease in the hub cluster: `stub-0`
    /// waited for until active, then `stub-1` (standby); the ready-following relay in
    /// front of their users' ports.
    async fn start_stub_pair(&mut self, hub: &ClusterInfo) -> Result<(), String> {
        for name in ["stub-0", "stub-1"] {
            let lease = format!(
                "  lease:\n    kubeconfig: {}\n    namespace: default\n    name: causeway-drill-stub\n    durationSeconds: {STUB_LEASE_SECONDS}\n    identity: {name}\n",
                hub.kubeconfig.display()
            );
            let slot = self.start_stub(name, Some(&lease), &[]).await?;
            if name == "stub-0" {
                let deadline = Instant::now() + START_TIMEOUT;
                while !stub_ready(slot.addrs.metrics).await {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "stub-0 did not become active within {}",
                            secs(START_TIMEOUT)
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            self.stubs.push(slot);
        }
        let backends = self
            .stubs
            .iter()
            .map(|s| Backend {
                target: s.addrs.users,
                readyz: s.addrs.metrics,
            })
            .collect();
        self.users_service =
            Some(Relay::follow_ready(backends).map_err(|e| format!("users relay: {e}"))?);
        Ok(())
    }

    /// With two stubs: waits until every cluster has a session on each, so the standby
    /// has its agents before it takes over.
    async fn wait_standby_sessions(&self, scenario: &Scenario) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for s in &self.stubs {
            for c in &scenario.topology.clusters {
                while stub_sessions(s.addrs.metrics, c.name.as_str()).await < 1 {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "{} has no session of {}'s agents after 30s",
                            s.name, c.name
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Ok(())
    }

    /// Agent, member and fencer RBAC in every cluster, and a token for its agents.
    async fn prepare_members(&mut self) -> Result<(), String> {
        let rbac = self.work.join("member-rbac.yaml");
        write(
            &rbac,
            &format!("{AGENT_RBAC}\n---\n{MEMBER_RBAC}\n---\n{FENCER_RBAC}\n"),
        )?;
        let rbac_s = path_arg(&rbac);
        let clusters = self.clusters().to_vec();
        let jobs = clusters.iter().map(|c| {
            let rbac_s = rbac_s.clone();
            async move {
                kubectl(c, &["apply", "-f", &rbac_s]).await?;
                let token = kubectl(
                    c,
                    &[
                        "create",
                        "token",
                        "causeway-agent",
                        "-n",
                        "causeway-system",
                        "--duration",
                        "24h",
                    ],
                )
                .await?;
                Ok::<_, String>((c.name.clone(), token.trim().to_string()))
            }
        });
        for r in futures::future::join_all(jobs).await {
            let (name, token) = r?;
            let file = self.work.join(format!("agent-{name}.token"));
            write(&file, &token)?;
            self.agent_tokens.insert(name, file);
        }
        Ok(())
    }

    /// Where `cluster`'s agents dial: its relay, or the stub.
    /// (Every stub's URL, comma-separated, with two stubs: agents hold sessions to both.)
    fn agents_url(&self, cluster: &str) -> Result<String, String> {
        if let Some(r) = self.relays.get(cluster) {
            return Ok(format!("https://{}", r.addr));
        }
        if self.stubs.is_empty() {
            return Err("no stub".into());
        }
        Ok(self
            .stubs
            .iter()
            .map(|s| format!("https://{}", s.addrs.agents))
            .collect::<Vec<_>>()
            .join(","))
    }

    /// `causeway cluster add`, then `count` agents, each waited for until its session.
    async fn enrol(&mut self, cluster: &str, count: u32) -> Result<(), String> {
        let url = self.agents_url(cluster)?;
        let state = path_arg(&self.work.join("stub-state"));
        let mut agents = Vec::new();
        for i in 0..count {
            // A join token is for one enrolment: one per agent.
            let out = self
                .causeway(&[
                    "cluster",
                    "add",
                    cluster,
                    "--state-dir",
                    &state,
                    "--stub-url",
                    &url,
                ])
                .await?;
            let field = |name: &str| {
                out.lines()
                    .find_map(|l| l.trim().strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .ok_or_else(|| format!("causeway cluster add {cluster}: no {name} in {out}"))
            };
            let join = (field("token:")?, field("ca-hash:")?);
            let p = self.spawn_agent(cluster, i as usize, Some(&join))?;
            agents.push(Some(p));
        }
        for a in agents.iter().flatten() {
            wait_line(a, "session established").await?;
        }
        self.agents.insert(cluster.to_string(), agents);
        Ok(())
    }

    /// Starts agent `index` of `cluster` (enrolling with `join` the first time).
    pub(crate) fn spawn_agent(
        &self,
        cluster: &str,
        index: usize,
        join: Option<&(String, String)>,
    ) -> Result<Process, String> {
        let c = self.cluster(cluster)?;
        let token = self
            .agent_tokens
            .get(cluster)
            .ok_or_else(|| format!("no agent token for {cluster}"))?;
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--stub".into(),
            self.agents_url(cluster)?,
            "--cluster".into(),
            cluster.into(),
            "--state-dir".into(),
            path_arg(&self.work.join(format!("agent-{cluster}-{index}"))),
            "--kubeconfig".into(),
            path_arg(&c.kubeconfig),
            "--token-file".into(),
            path_arg(token),
        ];
        if let Some((t, h)) = join {
            args.extend(["--token".into(), t.clone(), "--ca-hash".into(), h.clone()]);
        }
        self.spawn(&format!("agent-{cluster}-{index}"), &args)
    }

    /// The scheduler's stub user (`causeway:schedulers`, every cluster); waits until the
    /// stub authenticates it for every cluster. Returns its kubeconfig.
    async fn scheduler_identity(&self) -> Result<PathBuf, String> {
        let users = self.users_addr()?;
        let out = self.work.join("scheduler.kubeconfig");
        self.causeway(&[
            "user",
            "add",
            "causeway-scheduler",
            "--group",
            "causeway:schedulers",
            "--clusters",
            "*",
            "--state-dir",
            &path_arg(&self.work.join("stub-state")),
            "--stub-url",
            &format!("https://{users}"),
            "--out",
            &path_arg(&out),
        ])
        .await?;
        for c in self.clusters() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let r = kubectl_with(
                    c,
                    &out,
                    &[
                        "--context",
                        &c.name,
                        "--request-timeout",
                        "5s",
                        "auth",
                        "whoami",
                    ],
                )
                .await;
                match r {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!(
                            "the scheduler's identity is not accepted for {} through the stub: {e}",
                            c.name
                        ));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
        Ok(out)
    }

    /// `topology.users`: `causeway user add` each (`<work>/<name>.kubeconfig`), and for
    /// `rbac: view` a ClusterRoleBinding of its group to `view` in every cluster.
    async fn add_users(&mut self, scenario: &Scenario) -> Result<(), String> {
        let state = path_arg(&self.work.join("stub-state"));
        let users_url = format!("https://{}", self.users_addr()?);
        for u in &scenario.topology.users {
            let out = self.work.join(format!("{}.kubeconfig", u.name));
            self.causeway(&[
                "user",
                "add",
                &u.name,
                "--group",
                &u.group,
                "--clusters",
                &u.clusters,
                "--state-dir",
                &state,
                "--stub-url",
                &users_url,
                "--out",
                &path_arg(&out),
            ])
            .await?;
            if u.rbac == UserRbac::View {
                let binding = format!("causeway-drill-{}-view", u.name.to_ascii_lowercase());
                for c in self.clusters() {
                    kubectl(
                        c,
                        &[
                            "create",
                            "clusterrolebinding",
                            &binding,
                            "--clusterrole=view",
                            &format!("--group={}", u.group),
                        ],
                    )
                    .await?;
                }
            }
            self.users.insert(u.name.clone(), out);
        }
        Ok(())
    }

    async fn start_dns(&mut self, scenario: &Scenario) -> Result<(), String> {
        let mut yaml = String::from(
            "apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {name: drill}
spec:
  listen: [\"127.0.0.1:0\"]
  api: \"127.0.0.1:0\"
",
        );
        for z in &scenario.install.zones {
            let path = scenario.resolve(z);
            if !self.health.is_empty() {
                // dns probes the drill's health endpoint of each target's cluster.
                let docs = causeway_config::read_file(&path).map_err(|e| e.to_string())?;
                let endpoints = self
                    .health
                    .iter()
                    .map(|(c, h)| (c.clone(), h.addr))
                    .collect();
                for doc in zones_with_health_checks(&docs, &endpoints)? {
                    let _ = write!(yaml, "---\n{doc}\n");
                }
                continue;
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for doc in documents_except(&text, "DnsServer") {
                let _ = write!(yaml, "---\n{doc}\n");
            }
        }
        if !scenario.topology.clients.is_empty() {
            yaml.push_str(
                "---\napiVersion: causeway.dev/v1alpha1\nkind: LatencyMap\n\
                 metadata: {name: drill-clients}\nspec:\n  entries:\n",
            );
            for n in &scenario.topology.clients {
                let rtt: Vec<String> = n
                    .rtt_ms
                    .iter()
                    .map(|(c, ms)| format!("{c}: {ms}"))
                    .collect();
                let _ = writeln!(
                    yaml,
                    "    - {{prefix: {}, rttMs: {{{}}}}}",
                    n.subnet,
                    rtt.join(", ")
                );
            }
        }
        let config = self.work.join("dns.yaml");
        write(&config, &yaml)?;
        let p = self.spawn("dns", &["dns".into(), "--config".into(), path_arg(&config)])?;
        let mut l = wait_listening(&p, &["dns", "api"]).await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while l.all("dns", "udp").is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            l = Listening::parse(&p.logs());
        }
        let udp = l.all("dns", "udp");
        self.dns_udp = Some(*udp.first().ok_or("dns logged no UDP listener")?);
        self.dns_api = Some(l.addr("api"));
        self.dns = Some(p);
        Ok(())
    }

    async fn start_scheduler(
        &mut self,
        scenario: &Scenario,
        kubeconfig: &Path,
    ) -> Result<(), String> {
        let dns_api = self
            .dns_api
            .map(|a| format!("  dnsApi: http://{a}\n"))
            .unwrap_or_default();
        let main = self.work.join("scheduler.yaml");
        write(
            &main,
            &format!(
                "apiVersion: causeway.dev/v1alpha1
kind: Scheduler
metadata: {{name: drill}}
spec:
  stubKubeconfig: {}
{dns_api}  interval: 1s
  listen: 127.0.0.1:0
",
                kubeconfig.display()
            ),
        )?;
        let mut args: Vec<String> = vec!["scheduler".into(), "--config".into(), path_arg(&main)];
        for (i, p) in scenario.install.policies.iter().enumerate() {
            let path = scenario.resolve(p);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let docs = documents_except(&text, "Scheduler");
            if docs.is_empty() {
                continue;
            }
            let copy = self.work.join(format!("policies-{i}.yaml"));
            write(&copy, &docs.join("\n---\n"))?;
            args.push(path_arg(&copy));
        }
        let p = self.spawn("scheduler", &args)?;
        let l = wait_listening(&p, &["scheduler"]).await?;
        self.scheduler_addr = Some(l.addr("scheduler"));
        self.scheduler = Some(p);
        Ok(())
    }

    /// Stops every child (SIGTERM, SIGKILL after 5 s), drops the relays and takes the
    /// testbed down. Safe to call twice. Returns what could not be cleaned up.
    pub(crate) async fn teardown(&mut self) -> Option<String> {
        let mut procs: Vec<Process> = Vec::new();
        procs.extend(self.scheduler.take());
        procs.extend(self.dns.take());
        for (_, list) in std::mem::take(&mut self.agents) {
            procs.extend(list.into_iter().flatten());
        }
        for s in &mut self.stubs {
            procs.extend(s.proc.take());
        }
        for p in &procs {
            p.signal(libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while procs.iter().any(Process::alive) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for p in &procs {
            p.kill();
        }
        drop(procs);
        self.relays.clear();
        self.users_service = None;
        self.health.clear();
        if let Some(tb) = self.testbed.take() {
            // A stopped kube-apiserver would not see SIGTERM.
            for p in tb.processes() {
                signal_pid(p.pid, libc::SIGCONT);
            }
            if let Err(e) = tb.down().await {
                return Some(format!("testbed down: {e}"));
            }
        } else if self.work.join("testbed").join("state.json").exists() {
            // Interrupted while the testbed came up: stop what its state file records.
            if let Err(e) = causeway_testbed::down_state_dir(&self.work.join("testbed")).await {
                return Some(format!("testbed down: {e}"));
            }
        }
        None
    }
}

/// Whether a step makes a cluster's health check fail (the drill then serves them).
fn uses_health_failing(s: &Scenario) -> bool {
    s.steps
        .iter()
        .any(|st| matches!(&st.action, StepAction::Fault(Fault::HealthFailing(_))))
}

/// Whether a step surges load by simulated pod CPU (the testbed then runs metrics-server).
fn uses_pod_cpu(s: &Scenario) -> bool {
    s.steps.iter().any(|st| {
        matches!(
            &st.action,
            StepAction::Fault(Fault::LoadSurge(LoadSurge::PodCpu(_)))
        )
    })
}

/// `GET /readyz` on a stub's metrics listener says ready (the active stub).
pub(crate) async fn stub_ready(metrics: SocketAddr) -> bool {
    HttpClient::new(metrics)
        .timeout(Duration::from_millis(500))
        .send(http::Method::GET, "/readyz", "")
        .await
        .is_ok_and(|r| r.status == 200)
}

/// Sessions of `cluster`'s agents on a stub (its `/sessions`), 0 when unknown.
async fn stub_sessions(metrics: SocketAddr, cluster: &str) -> u64 {
    let Ok(r) = HttpClient::new(metrics)
        .timeout(Duration::from_millis(500))
        .send(http::Method::GET, "/sessions", "")
        .await
    else {
        return 0;
    };
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v[cluster].as_u64())
        .unwrap_or(0)
}

/// Sends `signal` to `pid` (a process this drill started).
pub(crate) fn signal_pid(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with a PID of a process the drill started and still records.
    unsafe { libc::kill(pid, signal) == 0 }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The YAML documents of `text` (split at `---` lines), without those of kind `kind`.
fn documents_except(text: &str, kind: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut flush = |cur: &mut String| {
        let is_kind = cur.lines().any(|l| l.trim_end() == format!("kind: {kind}"));
        let empty = cur
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        if !is_kind && !empty {
            docs.push(std::mem::take(cur));
        }
        cur.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            flush(&mut cur);
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    flush(&mut cur);
    docs
}

/// Waits until `p` logged a listener for each of `roles`.
async fn wait_listening(p: &Process, roles: &[&str]) -> Result<Listening, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let l = Listening::parse(&p.logs());
        if roles.iter().all(|r| l.has(r)) {
            return Ok(l);
        }
        if !p.alive() {
            return Err(format!("{} exited\n{}", p.name(), p.log_tail(20)));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not listen on {roles:?} within {}\n{}",
                p.name(),
                secs(START_TIMEOUT),
                p.log_tail(20)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `p` logged a line containing `needle`.
pub(crate) async fn wait_line(p: &Process, needle: &str) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if p.logs().contains(needle) {
            return Ok(());
        }
        if !p.alive() {
            return Err(format!("{} exited\n{}", p.name(), p.log_tail(20)));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not log {needle:?} within {}\n{}",
                p.name(),
                secs(START_TIMEOUT),
                p.log_tail(20)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_and_filtered_by_kind() {
        let text = "# head\napiVersion: v1\nkind: Scheduler\nspec: {}\n---\nkind: BurstPolicy\nmetadata: {name: a}\n---\n# only a comment\n";
        let docs = documents_except(text, "Scheduler");
        assert_eq!(docs, vec!["kind: BurstPolicy\nmetadata: {name: a}\n"]);
        assert_eq!(documents_except(text, "DnsServer").len(), 2);
    }
}
