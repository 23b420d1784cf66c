//! [`Testbed::up`]: bring every cluster to Ready; [`Testbed::down`]: stop it all.
//!
//! Per cluster, in order: certificates and kubeconfigs → etcd (until `/health`) →
//! kube-apiserver (until `/readyz`) → kube-controller-manager and kube-scheduler → kwok's
//! CRDs, the fake nodes and the default exec/logs rules (with metrics: kwok's `Metric` and
//! `ClusterResourceUsage`) → kwok → (with metrics: metrics-server's RBAC, Service and
//! `APIService`, then metrics-server) → every node Ready, the `default` ServiceAccount
//! present and (with metrics) the `APIService` Available. Clusters come up in parallel.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::TestbedError;
use crate::bins::Binaries;
use crate::files::create_dir;
use crate::layout::{Layout, PORTS};
use crate::manifests;
use crate::process::{Lifetime, Proc, ProcRecord, stop_records};
use crate::spec::{ClusterSpec, TestbedOptions};
use crate::state::{Recorder, STATE_FILE, TestbedState};
use bring_up::{ProcGroup, UpContext};

mod bring_up;

/// One running cluster: where it is and how to reach it as admin.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster name (a DNS label).
    pub name: String,
    /// The loopback address every component of this cluster binds.
    pub address: Ipv4Addr,
    /// kube-apiserver URL, `https://127.0.0.x:6443`.
    pub server: String,
    /// Admin kubeconfig (client certificate in `system:masters`, certificates embedded).
    pub kubeconfig: PathBuf,
    /// The cluster CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// Admin client certificate (PEM).
    pub admin_cert: PathBuf,
    /// Admin client key (PEM, PKCS#8).
    pub admin_key: PathBuf,
    /// The kubectl binary of the testbed.
    pub kubectl: PathBuf,
    /// The shape asked for.
    pub spec: ClusterSpec,
    /// Names of the kwok nodes.
    pub nodes: Vec<String>,
    /// The file `kubectl logs` shows for every pod, in the CRI log format; append lines
    /// made with [`crate::pod_log::cri_line`].
    pub pod_log: PathBuf,
    /// Working directory of `kubectl exec` commands, which run on this machine.
    pub exec_dir: PathBuf,
    /// Directory of the component logs.
    pub logs_dir: PathBuf,
    /// Whether metrics-server serves `metrics.k8s.io` here, from the simulated usage of
    /// [`crate::set_simulated_cpu`].
    #[serde(default)]
    pub metrics: bool,
}

impl ClusterInfo {
    /// `kubectl --kubeconfig <admin kubeconfig>`, ready for more arguments.
    pub fn kubectl(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }
}

/// A running testbed. Attached testbeds kill their processes on drop (and when this
/// process dies); detached ones (see [`TestbedOptions::detached`]) leave them running
/// once [`Testbed::detach`] is called.
#[derive(Debug)]
pub struct Testbed {
    clusters: Vec<ClusterInfo>,
    procs: Vec<Proc>,
    state_dir: PathBuf,
    startup: Duration,
}

impl Testbed {
    /// Starts every cluster of `opts` and waits until all are Ready.
    ///
    /// Leftovers of an earlier testbed in the same state directory (processes recorded in
    /// its `state.json`) are stopped first. On error, whatever was started is killed and the
    /// logs stay in the state directory.
    pub async fn up(opts: TestbedOptions) -> Result<Testbed, TestbedError> {
        let started = Instant::now();
        opts.validate()?;
        let bins = Binaries::locate(opts.bin_dir.as_deref())?;
        if opts.metrics.enabled {
            bins.check_metrics_server()?;
        }
        create_dir(&opts.state_dir)?;
        let state_dir = std::fs::canonicalize(&opts.state_dir)
            .map_err(TestbedError::io("resolve", &opts.state_dir))?;
        clean_leftovers(&state_dir).await?;
        create_dir(&state_dir)?;

        let layouts: Vec<Layout> = opts
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| Layout::new(&state_dir, &c.name, opts.address(i)))
            .collect();
        for l in &layouts {
            for port in PORTS {
                let addr = l.addr(port);
                if TcpListener::bind(addr).is_err() {
                    return Err(TestbedError::PortInUse { addr });
                }
            }
            if l.dir.exists() {
                std::fs::remove_dir_all(&l.dir).map_err(TestbedError::io("remove", &l.dir))?;
            }
        }
        let clusters: Vec<ClusterInfo> = opts
            .clusters
            .iter()
            .zip(&layouts)
            .map(|(spec, l)| cluster_info(spec, l, &bins, opts.metrics.enabled))
            .collect();
        let lifetime = if opts.detached {
            Lifetime::Detached
        } else {
            Lifetime::Attached
        };
        let recorder = Recorder::new(
            &state_dir,
            TestbedState {
                complete: false,
                detached: opts.detached,
                clusters: clusters.clone(),
                processes: Vec::new(),
            },
        )?;
        let deadline = started + opts.ready_timeout;
        let ups = opts.clusters.iter().zip(&layouts).map(|(spec, layout)| {
            let ctx = UpContext {
                spec,
                layout,
                bins: &bins,
                lifetime,
                recorder: &recorder,
                deadline,
                timeout: opts.ready_timeout,
                metrics: &opts.metrics,
            };
            let span = tracing::info_span!("testbed.cluster", cluster = %spec.name);
            ctx.run().instrument(span)
        });
        let groups = futures::future::try_join_all(ups).await?;
        recorder.update(|s| s.complete = true)?;
        let startup = started.elapsed();
        tracing::info!(clusters = clusters.len(), ?startup, "testbed is ready");
        Ok(Testbed {
            clusters,
            procs: groups.into_iter().flat_map(ProcGroup::into_procs).collect(),
            state_dir,
            startup,
        })
    }

    /// Every cluster, in the order they were asked for.
    pub fn clusters(&self) -> &[ClusterInfo] {
        &self.clusters
    }

    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterInfo> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// How long [`Testbed::up`] took.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// The state directory (certificates, data, logs, `state.json`).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// PID records of every process of this testbed.
    pub fn processes(&self) -> Vec<ProcRecord> {
        self.procs.iter().map(|p| p.record.clone()).collect()
    }

    /// Stops every process (SIGTERM, SIGKILL after 10 s) and removes the state directory.
    pub async fn down(mut self) -> Result<(), TestbedError> {
        let records = self.processes();
        let left = stop_records(&records, Duration::from_secs(10)).await;
        for p in &mut self.procs {
            p.kill_now();
        }
        self.procs.clear();
        if let Some(r) = left.first() {
            tracing::warn!(
                pid = r.pid,
                component = r.component,
                "process survived SIGKILL"
            );
        }
        remove_state(&self.state_dir, &self.clusters)
    }

    /// Leaves the processes running after this value is dropped (for detached testbeds,
    /// stopped later with [`down_state_dir`]).
    pub fn detach(mut self) {
        for p in std::mem::take(&mut self.procs) {
            p.forget();
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.kill_now();
        }
    }
}

/// Stops the testbed recorded in `state_dir` (by PID, SIGTERM then SIGKILL) and removes
/// its files. Works after a crash or Ctrl-C. Returns the number of processes stopped.
pub async fn down_state_dir(state_dir: &Path) -> Result<usize, TestbedError> {
    let state = TestbedState::load(state_dir)?;
    let alive = state.processes.iter().filter(|r| r.alive()).count();
    let left = stop_records(&state.processes, Duration::from_secs(10)).await;
    if let Some(r) = left.first() {
        return Err(TestbedError::State {
            path: state_dir.join(STATE_FILE),
            reason: format!(
                "{} (pid {}) of {} survived SIGKILL",
                r.component, r.pid, r.cluster
            ),
        });
    }
    remove_state(state_dir, &state.clusters)?;
    Ok(alive)
}

async fn clean_leftovers(state_dir: &Path) -> Result<(), TestbedError> {
    match TestbedState::load(state_dir) {
        Ok(old) => {
            let alive = old.processes.iter().filter(|r| r.alive()).count();
            if alive > 0 {
                tracing::warn!(
                    alive,
                    dir = %state_dir.display(),
                    "stopping processes of an earlier testbed in this state directory"
                );
            }
            down_state_dir(state_dir).await.map(|_| ())
        }
        Err(TestbedError::NotUp { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn remove_state(state_dir: &Path, clusters: &[ClusterInfo]) -> Result<(), TestbedError> {
    for c in clusters {
        let dir = state_dir.join(&c.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(TestbedError::io("remove", &dir))?;
        }
    }
    let file = state_dir.join(STATE_FILE);
    if file.exists() {
        std::fs::remove_file(&file).map_err(TestbedError::io("remove", &file))?;
    }
    // Only remove the directory itself when nothing else is in it.
    let _ = std::fs::remove_dir(state_dir);
    Ok(())
}

fn cluster_info(spec: &ClusterSpec, l: &Layout, bins: &Binaries, metrics: bool) -> ClusterInfo {
    let pki = l.pki();
    ClusterInfo {
        name: spec.name.clone(),
        address: l.address,
        server: l.server(),
        kubeconfig: l.kubeconfig(),
        ca_cert: pki.join("ca.crt"),
        admin_cert: pki.join("admin.crt"),
        admin_key: pki.join("admin.key"),
        kubectl: bins.kubectl.clone(),
        spec: spec.clone(),
        nodes: (0..spec.nodes)
            .map(|i| manifests::node_name(&spec.name, i))
            .collect(),
        pod_log: l.pod_log(),
        exec_dir: l.exec_dir(),
        logs_dir: l.logs(),
        metrics,
    }
}
