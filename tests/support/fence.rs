//! Support for `tests/agent_fence.rs`: a one-cluster testbed with an enrolled agent,
//! the workload of the fence protocol (Deployment `web`, ConfigMap `web-role`) and its
//! role Lease written as the scheduler would, and readers of what the agent wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use causeway_testbed::testing::{Kubectl, Process, Spawn};
use causeway_testbed::{ClusterInfo, ClusterSpec, Testbed, TestbedOptions, reserve_addresses};

use super::tunnel_support::*;

/// The member cluster.
pub const CLUSTER: &str = "fe-a";
/// The policy of every role Lease (`causeway-role-web`).
pub const POLICY: &str = "web";
/// The Lease's name for [`POLICY`].
pub const LEASE: &str = "causeway-role-web";

/// One cluster, a stub and the cluster enrolled (the agent's state directory holds its
/// certificate after the first start).
pub struct FenceBed {
    pub tb: Testbed,
    pub dir: tempfile::TempDir,
    pub stub: Option<Stub>,
    pub agents_url: String,
    pub join: (String, String),
    pub token: PathBuf,
    pub agent_state: PathBuf,
}

impl FenceBed {
    /// Brings the cluster up, gives the agent its impersonation-only RBAC and token,
    /// starts the stub and makes a join token. No fencer RBAC yet.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = ClusterSpec::new(CLUSTER);
        spec.nodes = 1;
        let mut opts = TestbedOptions::new(vec![spec], dir.path().join("testbed"));
        opts.base_address = reserve_addresses(1);
        let tb = Testbed::up(opts).await.expect("testbed up");
        let token = member_token(tb.cluster(CLUSTER).unwrap(), dir.path());
        let state = dir.path().join("stub-state");
        let stub = start_stub(dir.path(), "stub", &state, None);
        let agents_url = format!("https://{}", stub.agents);
        let join = cluster_add(&state, CLUSTER, &agents_url);
        let agent_state = dir.path().join("agent-state");
        FenceBed {
            tb,
            dir,
            stub: Some(stub),
            agents_url,
            join,
            token,
            agent_state,
        }
    }

    /// The member cluster.
    pub fn c(&self) -> &ClusterInfo {
        self.tb.cluster(CLUSTER).unwrap()
    }

    /// kubectl as the member's admin.
    pub fn admin(&self) -> Kubectl {
        Kubectl::admin(self.c())
    }

    /// Starts `causeway agent` (enrolling on its first start) with `extra` flags and
    /// its metrics on a free port, its output in `dir/NAME.log`; waits for the metrics
    /// listener. Needs no session to the stub after the enrolment.
    pub fn agent(&self, name: &str, extra: &[&str]) -> (Process, std::net::SocketAddr) {
        let mut s = Spawn::causeway(BIN)
            .args(["agent", "--stub", &self.agents_url, "--cluster", CLUSTER])
            .arg("--state-dir")
            .arg(&self.agent_state)
            .arg("--kubeconfig")
            .arg(&self.c().kubeconfig)
            .arg("--token-file")
            .arg(&self.token)
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .name(name)
            .log_file(self.dir.path().join(format!("{name}.log")));
        if !self.agent_state.join("agent.crt").exists() {
            s = s.args(["--token", &self.join.0, "--ca-hash", &self.join.1]);
        }
        let p = s.start();
        let l = p.wait_listening(&["metrics"], Duration::from_secs(30));
        (p, l.addr("metrics"))
    }
}

/// Path of the fencer RBAC example.
pub fn fencer_rbac() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tunnel/fencer-rbac.yaml"),
    )
    .unwrap()
}

/// Namespace `ns` with Deployment `web` (`replicas`) and ConfigMap `web-role` saying
/// `primary`.
pub fn workload(ns: &str, replicas: u32) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: web-role, namespace: {ns}}}
data: {{role: primary}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: registry.local/web:1}}]
"
    )
}

/// RFC 3339 with microseconds, as a MicroTime.
pub fn micro(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// A role Lease `name` in `ns` as the scheduler writes it, renewed at `renew`, with
/// `spec` lines (`leaseDurationSeconds: 3`) and annotation lines (indented by 4).
pub fn lease_with(
    ns: &str,
    name: &str,
    renew: SystemTime,
    spec: &str,
    annotations: &str,
) -> String {
    format!(
        "apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: {name}
  namespace: {ns}
  labels:
    causeway.dev/role-lease: \"true\"
    app.kubernetes.io/managed-by: causeway
    causeway.dev/policy: {POLICY}
  annotations:
{annotations}
spec:
  holderIdentity: causeway-scheduler
  acquireTime: \"{t}\"
  renewTime: \"{t}\"
{spec}
",
        t = micro(renew)
    )
}

/// The well-formed role Lease of [`POLICY`] in `ns`: `l` seconds, scale-to-zero.
pub fn role_lease(ns: &str, l: u32, renew: SystemTime) -> String {
    lease_with(
        ns,
        LEASE,
        renew,
        &format!("  leaseDurationSeconds: {l}"),
        "    causeway.dev/fence-deployment: web
    causeway.dev/fence-configmap: web-role
    causeway.dev/fence-mode: scale-to-zero",
    )
}

/// Renews the role Lease in `ns` now, as the scheduler would; the renewTime written.
pub fn renew(k: &Kubectl, ns: &str) -> SystemTime {
    let now = SystemTime::now();
    let patch = format!("{{\"spec\":{{\"renewTime\":\"{}\"}}}}", micro(now));
    k.run(&[
        "patch", "lease", LEASE, "-n", ns, "--type", "merge", "-p", &patch,
    ]);
    // Round to what was written (microseconds).
    humantime::parse_rfc3339(&micro(now)).unwrap()
}

/// The role ConfigMap of `ns`: (role, role-changed-at, role-changed-by).
pub fn role(k: &Kubectl, ns: &str) -> (String, Option<SystemTime>, String) {
    let cm = k.json(&["get", "configmap", "web-role", "-n", ns]).unwrap();
    let a = &cm["metadata"]["annotations"];
    (
        cm["data"]["role"].as_str().unwrap_or("").to_owned(),
        a["causeway.dev/role-changed-at"]
            .as_str()
            .map(|t| humantime::parse_rfc3339(t).unwrap()),
        a["causeway.dev/role-changed-by"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

/// Deployment `web` of `ns`: (spec.replicas, replicas-before-fence annotation).
pub fn replicas(k: &Kubectl, ns: &str) -> (i64, Option<String>) {
    let d = k.json(&["get", "deployment", "web", "-n", ns]).unwrap();
    (
        d["spec"]["replicas"].as_i64().unwrap_or(-1),
        d["metadata"]["annotations"]["causeway.dev/replicas-before-fence"]
            .as_str()
            .map(str::to_owned),
    )
}

/// The role Lease of `ns`: (fenced-at, fenced-by).
pub fn fenced_mark(k: &Kubectl, ns: &str) -> (Option<SystemTime>, String) {
    let l = k.json(&["get", "lease", LEASE, "-n", ns]).unwrap();
    let a = &l["metadata"]["annotations"];
    (
        a["causeway.dev/fenced-at"]
            .as_str()
            .map(|t| humantime::parse_rfc3339(t).unwrap()),
        a["causeway.dev/fenced-by"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}
