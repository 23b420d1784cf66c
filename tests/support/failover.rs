//! Support for `tests/scheduler_failover.rs`: three clusters whose agents run the fencer,
//! the first one's agent reaching the stub through a [`Relay`] (`causeway_testbed::relay`)
//! that can cut the network between them, the workload of a `FailoverPolicy` in every
//! cluster, and dns.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use causeway_testbed::relay::Relay;
use causeway_testbed::testing::{Kubectl, Process, Spawn};
use causeway_testbed::{ClusterInfo, Testbed};

use super::scheduler_support::{BIN, IDC, dig_name, gslb_config};
use super::tunnel_support::*;

/// Namespace `ns` with Deployment `web` (`replicas`, image per site). The role ConfigMap
/// is the scheduler's to create.
pub fn db_workload(ns: &str, replicas: u32) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
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
      containers: [{{name: db, image: registry.local/db:1}}]
"
    )
}

/// Everything one failover drill needs, its processes held.
pub struct FailoverBed {
    pub tb: Testbed,
    pub dir: tempfile::TempDir,
    pub stub: Stub,
    pub state: PathBuf,
    pub relay: Relay,
    /// Agents by cluster (IDC's through the relay).
    pub agents: Vec<(String, Option<Process>)>,
    pub tokens: Vec<(String, PathBuf)>,
    pub kubeconfig: PathBuf,
}

impl FailoverBed {
    /// The testbed of [`super::scheduler_support::testbed`], a stub, member and fencer
    /// RBAC everywhere, agents with sessions (IDC's through a relay), the scheduler's
    /// stub identity.
    pub async fn start() -> Self {
        let (tb, dir) = super::scheduler_support::testbed(false).await;
        let state = dir.path().join("stub-state");
        let stub = start_stub(dir.path(), "stub", &state, None);
        let relay = Relay::start(stub.agents).expect("relay to the stub");
        let rbac = [
            "examples/scheduler/member-rbac.yaml",
            "examples/tunnel/fencer-rbac.yaml",
        ]
        .map(|f| std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(f)).unwrap());
        let mut bed = FailoverBed {
            tb,
            stub,
            state,
            relay,
            agents: Vec::new(),
            tokens: Vec::new(),
            kubeconfig: PathBuf::new(),
            dir,
        };
        let names: Vec<String> = bed.tb.clusters().iter().map(|c| c.name.clone()).collect();
        for name in &names {
            let c = bed.c(name).clone();
            let token = member_token(&c, bed.dir.path());
            for r in &rbac {
                Kubectl::admin(&c).apply(r);
            }
            let join = cluster_add(&bed.state, name, &bed.agents_url(name));
            bed.tokens.push((name.clone(), token));
            let agent = bed.spawn_agent(name, Some(&join));
            bed.agents.push((name.clone(), Some(agent)));
        }
        for (_, a) in &bed.agents {
            if let Some(a) = a {
                a.wait_line("session established", Duration::from_secs(60));
            }
        }
        bed.kubeconfig = user_add(
            &bed.state,
            bed.dir.path(),
            "causeway-scheduler",
            "causeway:schedulers",
            "sb-*",
            &format!("https://{}", bed.stub.users),
        );
        for c in bed.tb.clusters() {
            wait_authenticated(c, &bed.kubeconfig, &c.name);
        }
        bed
    }

    pub fn c(&self, name: &str) -> &ClusterInfo {
        self.tb.cluster(name).unwrap()
    }

    pub fn admin(&self, name: &str) -> Kubectl {
        Kubectl::admin(self.c(name))
    }

    /// IDC's agent dials the relay; the others the stub.
    fn agents_url(&self, cluster: &str) -> String {
        if cluster == IDC {
            format!("https://{}", self.relay.addr)
        } else {
            format!("https://{}", self.stub.agents)
        }
    }

    fn spawn_agent(&self, cluster: &str, join: Option<&(String, String)>) -> Process {
        let token = &self.tokens.iter().find(|(c, _)| c == cluster).unwrap().1;
        let mut s = Spawn::causeway(BIN)
            .args([
                "agent",
                "--stub",
                &self.agents_url(cluster),
                "--cluster",
                cluster,
            ])
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("agent-{cluster}")))
            .arg("--kubeconfig")
            .arg(&self.c(cluster).kubeconfig)
            .arg("--token-file")
            .arg(token)
            .name(format!("agent-{cluster}"))
            .log_file(self.dir.path().join(format!("agent-{cluster}.log")));
        if let Some((t, h)) = join {
            s = s.args(["--token", t, "--ca-hash", h]);
        }
        s.start()
    }

    /// Kills `cluster`'s agent (SIGKILL: it cannot fence on the way out).
    pub fn kill_agent(&mut self, cluster: &str) {
        let slot = self.agents.iter_mut().find(|(c, _)| c == cluster).unwrap();
        slot.1 = None;
    }

    /// Starts `cluster`'s agent again (enrolled already).
    pub fn restart_agent(&mut self, cluster: &str) -> &Process {
        let p = self.spawn_agent(cluster, None);
        let slot = self.agents.iter_mut().find(|(c, _)| c == cluster).unwrap();
        slot.1 = Some(p);
        slot.1.as_ref().unwrap()
    }

    pub fn agent(&self, cluster: &str) -> Option<&Process> {
        self.agents
            .iter()
            .find(|(c, _)| c == cluster)
            .and_then(|(_, p)| p.as_ref())
    }

    /// Sends `signal` (`STOP`, `CONT`) to `cluster`'s kube-apiserver.
    pub fn signal_apiserver(&self, cluster: &str, signal: &str) {
        let p = self
            .tb
            .processes()
            .into_iter()
            .find(|p| p.cluster == cluster && p.component == "kube-apiserver")
            .expect("a kube-apiserver process");
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &p.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {}", p.pid);
    }
}

/// dns for `web.svc.example.`: every cluster a target, `all-healthy`, and no fail-open:
/// with no primary serving, the name answers nothing rather than every site.
pub fn failover_dns_config(dir: &Path) -> PathBuf {
    gslb_config(dir, "127.0.0.1:0", "web", "      failOpen: false\n")
}

/// The addresses dig gets for web.svc.example.
pub fn dig_web(dns: SocketAddr) -> Vec<String> {
    dig_name(dns, "web.svc.example.")
}
