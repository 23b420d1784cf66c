//! Support for the scheduler's end-to-end tests: a dedicated testbed of three clusters
//! (`sb-idc` with room for 4 pods of 500m, `sb-ali`, `sb-aws`), the real stub with one
//! agent per cluster, the scheduler's stub identity and member RBAC
//! (`examples/scheduler/member-rbac.yaml`), and readers of the workload's state.
#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway_testbed::testing::{Kubectl, Process, Spawn};
use causeway_testbed::{ClusterInfo, ClusterSpec, Testbed, TestbedOptions, reserve_addresses};

use super::tunnel_support::*;

/// Addresses dns answers for each cluster's GSLB target of `app.svc.example.`.
pub const ADDR: [(&str, &str); 3] = [(IDC, "192.0.2.1"), (ALI, "192.0.2.2"), (AWS, "192.0.2.3")];

/// The built binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_causeway");
/// The home cluster: one node of 2 CPUs.
pub const IDC: &str = "sb-idc";
/// The first burst cluster: one node of 4 CPUs.
pub const ALI: &str = "sb-ali";
/// The second burst cluster: one node of 8 CPUs.
pub const AWS: &str = "sb-aws";

pub fn spec(name: &str, cpu: &str) -> ClusterSpec {
    let mut c = ClusterSpec::new(name);
    c.nodes = 1;
    c.node_cpu = cpu.into();
    c
}

/// The source Deployment `shop/web` in its namespace, pods of 500m.
pub fn source_deployment(replicas: u32) -> String {
    source_deployment_with(replicas, "500m")
}

/// [`source_deployment`] with pods requesting `cpu`.
pub fn source_deployment_with(replicas: u32, cpu: &str) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop, labels: {{app: web}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: web
          image: registry.idc.local/shop/web:1
          resources: {{requests: {{cpu: {cpu}}}}}
"
    )
}

/// `spec.replicas/readyReplicas` of shop/web in `c`, or None when there is none.
pub fn deployment(c: &ClusterInfo) -> Option<(u32, u32)> {
    let out = Kubectl::admin(c).output(&[
        "get",
        "deployment",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.replicas}/{.status.readyReplicas}",
    ]);
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let (r, ready) = s.split_once('/')?;
    Some((r.parse().ok()?, ready.parse().unwrap_or(0)))
}

pub struct Bed {
    pub tb: Testbed,
    pub dir: tempfile::TempDir,
    pub _stub: Option<Stub>,
    pub _agents: Vec<Process>,
    pub kubeconfig: std::path::PathBuf,
}

impl Bed {
    pub fn c(&self, name: &str) -> &ClusterInfo {
        self.tb.cluster(name).unwrap()
    }
}

pub async fn bring_up() -> Bed {
    bring_up_with(false).await
}

pub async fn bring_up_with(metrics: bool) -> Bed {
    let (tb, dir) = testbed(metrics).await;
    bring_up_on(tb, dir, &[IDC, ALI, AWS])
}

/// The hub cluster of production mode (not a member: no agent, not placed to).
pub const HUB: &str = "hub";
/// The hub namespace holding Causeway's objects.
pub const HUB_NS: &str = "causeway-system";

/// [`bring_up`] plus a fourth cluster, [`HUB`] (its CRDs: `tests/support/crds.rs`).
pub async fn bring_up_with_hub() -> Bed {
    let (tb, dir) = testbed_of(
        vec![
            spec(IDC, "2"),
            spec(ALI, "4"),
            spec(AWS, "8"),
            spec(HUB, "2"),
        ],
        false,
    )
    .await;
    bring_up_on(tb, dir, &[IDC, ALI, AWS])
}

/// The stub, an agent in each of `members`, and the scheduler's stub identity.
fn bring_up_on(tb: Testbed, dir: tempfile::TempDir, members: &[&str]) -> Bed {
    let state = dir.path().join("stub-state");
    let stub = start_stub(dir.path(), "stub", &state, None);
    let members: Vec<&ClusterInfo> = members
        .iter()
        .map(|m| tb.cluster(m).expect("a member cluster"))
        .collect();
    let agents = enrol_members(
        &members,
        dir.path(),
        &state,
        &format!("https://{}", stub.agents),
    );
    let kubeconfig = user_add(
        &state,
        dir.path(),
        "causeway-scheduler",
        "causeway:schedulers",
        "sb-*",
        &format!("https://{}", stub.users),
    );
    for c in &members {
        wait_authenticated(c, &kubeconfig, &c.name);
    }
    Bed {
        tb,
        dir,
        _stub: Some(stub),
        _agents: agents,
        kubeconfig,
    }
}

/// The three clusters, in a new temporary directory.
pub async fn testbed(metrics: bool) -> (Testbed, tempfile::TempDir) {
    testbed_of(
        vec![spec(IDC, "2"), spec(ALI, "4"), spec(AWS, "8")],
        metrics,
    )
    .await
}

/// A testbed of `clusters`, in a new temporary directory.
pub async fn testbed_of(clusters: Vec<ClusterSpec>, metrics: bool) -> (Testbed, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let n = clusters.len();
    let mut opts = TestbedOptions::new(clusters, dir.path().join("testbed"));
    opts.base_address = reserve_addresses(n);
    if metrics {
        opts.metrics = causeway_testbed::MetricsOptions::enabled();
    }
    (Testbed::up(opts).await.expect("testbed up"), dir)
}

/// In every cluster: agent RBAC and token, the scheduler's member RBAC, enrolment with the
/// stub whose state is `state`, and an agent with a session to `agents_url`.
pub fn enrol_agents(tb: &Testbed, dir: &Path, state: &Path, agents_url: &str) -> Vec<Process> {
    let all: Vec<&ClusterInfo> = tb.clusters().iter().collect();
    enrol_members(&all, dir, state, agents_url)
}

/// [`enrol_agents`] for `members` only.
pub fn enrol_members(
    members: &[&ClusterInfo],
    dir: &Path,
    state: &Path,
    agents_url: &str,
) -> Vec<Process> {
    let rbac = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scheduler/member-rbac.yaml"),
    )
    .unwrap();
    let mut agents = Vec::new();
    for c in members {
        let token = member_token(c, dir);
        Kubectl::admin(c).apply(&rbac);
        let join = cluster_add(state, &c.name, agents_url);
        agents.push(start_agent(
            dir,
            &format!("agent-{}", c.name),
            agents_url,
            c,
            &token,
            &dir.join(format!("agent-{}", c.name)),
            Some(&join),
        ));
    }
    for a in &agents {
        a.wait_line("session established", Duration::from_secs(60));
    }
    agents
}

/// A `Scheduler` document (stub kubeconfig `kubeconfig`, 1 s rounds, its listener on a free
/// port, `extra` lines appended under `spec:`) followed by `policies`.
pub fn scheduler_yaml(kubeconfig: &Path, extra: &str, policies: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: Scheduler
metadata: {{name: main}}
spec:
  stubKubeconfig: {}
  interval: 1s
  listen: 127.0.0.1:0
{extra}---
{policies}",
        kubeconfig.display()
    )
}

/// Writes [`scheduler_yaml`] with `bed`'s stub kubeconfig to `bed`'s directory; returns its path.
pub fn scheduler_file(bed: &Bed, name: &str, extra: &str, policies: &str) -> PathBuf {
    let path = bed.dir.path().join(name);
    std::fs::write(&path, scheduler_yaml(&bed.kubeconfig, extra, policies)).unwrap();
    path
}

/// A `BurstPolicy` `web` for `shop/web`: home `sb-idc`, then `sb-ali` and `sb-aws` with the
/// given entry fields (`maxReplicas: 2, …`), then `rest` (lines under `spec:`: demand, …).
pub fn burst_policy(ali: &str, aws: &str, rest: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: BurstPolicy
metadata: {{name: web}}
spec:
  workload: {{namespace: shop, deployment: web}}
  home: [{IDC}]
  burst:
    - {{cluster: {ALI}, {ali}}}
    - {{cluster: {AWS}, {aws}}}
{rest}"
    )
}

/// Starts `causeway dns` on [`dns_config`]; returns it with its UDP and API addresses.
pub fn start_dns(dir: &Path) -> (Process, SocketAddr, SocketAddr) {
    start_dns_with(dir, "dns", &dns_config(dir), &[])
}

/// Starts `causeway dns --config CONFIG EXTRA…` logging to `dir/NAME.log`; returns it with
/// its UDP and API addresses.
pub fn start_dns_with(
    dir: &Path,
    name: &str,
    config: &Path,
    extra: &[&str],
) -> (Process, SocketAddr, SocketAddr) {
    let dns = Spawn::causeway(BIN)
        .args(["dns", "--config"])
        .arg(config)
        .args(extra)
        .name(name)
        .log_file(dir.join(format!("{name}.log")))
        .start();
    let l = dns.wait_listening(&["dns", "api"], Duration::from_secs(20));
    let (udp, api) = (l.addr_of("dns", "udp"), l.addr("api"));
    (dns, udp, api)
}

/// Starts `causeway scheduler --config FILES…`, logging to `dir/NAME.log`, and waits
/// for its metrics listener.
pub fn start_scheduler(dir: &Path, name: &str, files: &[&Path]) -> Process {
    let mut s = Spawn::causeway(BIN).args(["scheduler", "--config"]);
    for f in files {
        s = s.arg(f);
    }
    let p = s
        .name(name)
        .log_file(dir.join(format!("{name}.log")))
        .start();
    p.wait_listening(&["scheduler"], Duration::from_secs(20));
    p
}

pub fn dns_config(dir: &Path) -> std::path::PathBuf {
    dns_config_at(dir, "127.0.0.1:0")
}

/// [`dns_config`] with its HTTP API on `api`.
pub fn dns_config_at(dir: &Path, api: &str) -> std::path::PathBuf {
    gslb_config(dir, api, "app", "")
}

/// A dns configuration in `dir/dns.yaml`: its API on `api`, and one `all-healthy` GSLB
/// name `NAME.svc.example.` (TTL 1, a target per cluster of [`ADDR`]) with `extra` lines
/// (indented by 6) under it.
pub fn gslb_config(dir: &Path, api: &str, name: &str, extra: &str) -> std::path::PathBuf {
    let targets: String = ADDR
        .iter()
        .map(|(c, a)| format!("        - {{cluster: {c}, addresses: [{a}]}}\n"))
        .collect();
    let yaml = format!(
        "apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {{name: t}}
spec:
  listen: [\"127.0.0.1:0\"]
  api: \"{api}\"
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: z}}
spec:
  origin: svc.example.
  soa: {{rname: hostmaster.svc.example.}}
  nameservers: [{{name: ns1, addresses: [127.0.0.53]}}]
  gslb:
    - name: {name}
      ttl: 1
      policy: all-healthy
{extra}      maxAnswers: 8
      targets:
{targets}"
    );
    let path = dir.join("dns.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The addresses dig gets for app.svc.example.
pub fn dig(dns: SocketAddr) -> Vec<String> {
    dig_name(dns, "app.svc.example.")
}

/// The A records dig gets for `name`, sorted.
pub fn dig_name(dns: SocketAddr, name: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            &format!("@{}", dns.ip()),
            "-p",
            &dns.port().to_string(),
            name,
            "A",
            "+short",
            "+time=2",
            "+tries=1",
        ])
        .output()
        .expect("dig (Debian package dnsutils) must be installed");
    let mut a: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    a.sort();
    a
}

pub fn addr_of(cluster: &str) -> String {
    ADDR.iter()
        .find(|(c, _)| *c == cluster)
        .unwrap()
        .1
        .to_string()
}

/// What dns's `GET /v1/explain` (at `api`) says of each target of app.svc.example.:
/// `(cluster, weight, where the weight comes from, healthy, role)`, in zone order.
pub fn dns_weights(api: SocketAddr) -> Vec<(String, u64, String, bool, String)> {
    let r = causeway_testbed::testing::Curl::get(&format!(
        "http://{api}/v1/explain?name=app.svc.example.&client=10.0.0.0/24"
    ))
    .send();
    assert_eq!(r.code, 200, "explain: {r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("explain JSON");
    v["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| {
            (
                c["cluster"].as_str().unwrap_or_default().to_string(),
                c["weight"].as_u64().unwrap_or_default(),
                c["weightFrom"].as_str().unwrap_or_default().to_string(),
                c["healthy"].as_bool().unwrap_or_default(),
                c["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Waits until [`dns_weights`] gives each cluster of `want` `(weight, healthy)` from a
/// placement.
pub fn wait_dns_weights(api: SocketAddr, want: &[(&str, u64, bool)], within: Duration) {
    causeway_testbed::testing::wait_for(
        "dns weights from the placement",
        within,
        Duration::from_millis(300),
        || {
            let now = dns_weights(api);
            let ok = want.iter().all(|(c, w, h)| {
                now.iter()
                    .any(|n| n.0 == *c && n.1 == *w && n.2 == "placement" && n.3 == *h)
            });
            if ok { Ok(()) } else { Err(format!("{now:?}")) }
        },
    );
}
