//! `causeway testbed`: real Kubernetes control planes on loopback.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use causeway_testbed::{ClusterSpec, Testbed, TestbedOptions};

/// Options of `causeway testbed`.
#[derive(clap::Args, Debug)]
#[command(
    after_long_help = "Each cluster gets its own 127.0.0.x address (from --base-address on) and runs etcd (:2379,
:2380), kube-apiserver (:6443, TLS, RBAC, ServiceAccount tokens, client-cert admin),
kube-controller-manager, kube-scheduler and kwok (:10250) with fake nodes whose pods go
Running and serve `kubectl logs`, `exec` (runs on this machine) and `port-forward`.

The binaries are pinned and built once with `testbed/build-bins.sh` into .cache/bin
(or $CAUSEWAY_BIN_DIR).

  causeway testbed up --clusters idc-bj,ali-hz,aws-sg
  kubectl --kubeconfig $(causeway testbed kubeconfig idc-bj) get nodes
  causeway testbed status
  causeway testbed down"
)]
pub struct Args {
    /// Directory for certificates, etcd data, logs, kubeconfigs and state.json
    /// [default: <repo>/.testbed inside the repository, else ~/.causeway/testbed]
    #[arg(long, global = true, env = "CAUSEWAY_TESTBED_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Start the clusters (detached), wait until every one is Ready, write kubeconfigs.
    ///
    /// Processes run in their own session and keep running after this command returns;
    /// their PIDs go to <state-dir>/state.json and their logs to <state-dir>/<cluster>/logs.
    /// Leftovers of an earlier testbed in the same state directory are stopped first.
    Up(UpArgs),
    /// Show, per cluster, whether its processes are alive, /readyz, and Ready nodes.
    ///
    /// Exits non-zero when a cluster is not healthy.
    Status {
        /// Print JSON (with PIDs and paths) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the path of a cluster's admin kubeconfig, for scripts:
    /// `kubectl --kubeconfig $(causeway testbed kubeconfig idc-bj) get nodes`.
    Kubeconfig {
        /// Cluster name.
        name: String,
    },
    /// Stop every process the testbed started (by PID: SIGTERM, then SIGKILL after 10 s)
    /// and remove its state. Works after a crash or Ctrl-C.
    Down,
}

#[derive(clap::Args, Debug)]
struct UpArgs {
    /// Comma-separated cluster names, each a DNS label (lower-case letters, digits, '-').
    #[arg(long, value_name = "NAMES", required = true)]
    clusters: String,
    /// kwok nodes per cluster.
    #[arg(long, default_value_t = ClusterSpec::DEFAULT_NODES, value_name = "N")]
    nodes: u32,
    /// CPU capacity of each node, a Kubernetes quantity (32, 500m).
    #[arg(long, default_value = ClusterSpec::DEFAULT_CPU, value_name = "QUANTITY")]
    node_cpu: String,
    /// Memory capacity of each node, a Kubernetes quantity (128Gi, 512Mi, 64G).
    #[arg(long, default_value = ClusterSpec::DEFAULT_MEMORY, value_name = "QUANTITY")]
    node_memory: String,
    /// Maximum pods per node.
    #[arg(long, default_value_t = ClusterSpec::DEFAULT_PODS, value_name = "N")]
    node_pods: u32,
    /// Address of the first cluster; the next ones get the following addresses.
    #[arg(long, default_value_t = TestbedOptions::DEFAULT_BASE, value_name = "IPV4")]
    base_address: Ipv4Addr,
    /// Directory holding the binaries [default: $CAUSEWAY_BIN_DIR, <repo>/.cache/bin, $PATH].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Give up when the clusters are not Ready after this many seconds.
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    timeout: u64,
    /// Also run metrics-server and kwok's simulated pod usage, so `kubectl top pods` and real
    /// HPAs work (annotate a pod `causeway.dev/simulated-cpu=800m` to set its CPU; about
    /// 70 MiB more per cluster). See docs/testbed.md.
    #[arg(long)]
    metrics: bool,
}

/// Runs `causeway testbed`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let state_dir = match args.state_dir {
        Some(d) => d,
        None => default_state_dir()?,
    };
    match args.command {
        Command::Up(up) => run_up(up, state_dir).await,
        Command::Status { json } => run_status(&state_dir, json).await,
        Command::Kubeconfig { name } => {
            let state = causeway_testbed::state::TestbedState::load(&state_dir)?;
            let known = state
                .clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let cluster = state
                .clusters
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| causeway_testbed::TestbedError::UnknownCluster {
                    name: name.clone(),
                    known,
                })?;
            println!("{}", cluster.kubeconfig.display());
            Ok(())
        }
        Command::Down => {
            match causeway_testbed::down_state_dir(&state_dir).await {
                Ok(n) => println!(
                    "stopped {n} processes; removed the testbed in {}",
                    state_dir.display()
                ),
                Err(causeway_testbed::TestbedError::NotUp { dir }) => {
                    println!("no testbed in {}: nothing to stop", dir.display());
                }
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
    }
}

fn default_state_dir() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    if let Some(repo) = causeway_testbed::bins::repo_root_from(&cwd) {
        return Ok(repo.join(".testbed"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set: pass --state-dir")?;
    Ok(PathBuf::from(home).join(".causeway/testbed"))
}

async fn run_up(up: UpArgs, state_dir: PathBuf) -> anyhow::Result<()> {
    let names = causeway_testbed::parse_cluster_names(&up.clusters)?;
    let clusters = names
        .into_iter()
        .map(|name| ClusterSpec {
            name,
            nodes: up.nodes,
            node_cpu: up.node_cpu.clone(),
            node_memory: up.node_memory.clone(),
            node_pods: up.node_pods,
        })
        .collect();
    let mut opts = TestbedOptions::new(clusters, state_dir.clone());
    opts.base_address = up.base_address;
    opts.bin_dir = up.bin_dir;
    opts.detached = true;
    opts.ready_timeout = Duration::from_secs(up.timeout);
    if up.metrics {
        opts.metrics = causeway_testbed::MetricsOptions::enabled();
    }
    opts.validate()?;
    eprintln!(
        "starting {} clusters in {} …",
        opts.clusters.len(),
        state_dir.display()
    );
    // Registered before anything starts, so Ctrl-C or SIGTERM never leaves children behind.
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let tb = tokio::select! {
        r = Testbed::up(opts) => r?,
        _ = interrupt.recv() => return stop_interrupted(&state_dir).await,
        _ = terminate.recv() => return stop_interrupted(&state_dir).await,
    };
    println!(
        "{:<16} {:<14} {:<26} {:<6} KUBECONFIG",
        "CLUSTER", "ADDRESS", "SERVER", "NODES"
    );
    for c in tb.clusters() {
        println!(
            "{:<16} {:<14} {:<26} {:<6} {}",
            c.name,
            c.address,
            c.server,
            c.nodes.len(),
            c.kubeconfig.display()
        );
    }
    println!(
        "{} clusters Ready in {:.1} s",
        tb.clusters().len(),
        tb.startup().as_secs_f64()
    );
    if let Some(c) = tb.clusters().first() {
        println!(
            "try: kubectl --kubeconfig $(causeway testbed kubeconfig {}) get nodes",
            c.name
        );
        println!("(the testbed's kubectl is {})", c.kubectl.display());
    }
    tb.detach();
    Ok(())
}

/// After Ctrl-C or SIGTERM during `up`: dropping the bring-up killed what it had started;
/// clear the state too.
async fn stop_interrupted(state_dir: &std::path::Path) -> anyhow::Result<()> {
    let _ = causeway_testbed::down_state_dir(state_dir).await;
    anyhow::bail!("interrupted: stopped what was started")
}

async fn run_status(state_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let statuses = causeway_testbed::status(state_dir).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        println!(
            "{:<16} {:<14} {:<10} {:<8} NODES READY",
            "CLUSTER", "ADDRESS", "PROCESSES", "READYZ"
        );
        for s in &statuses {
            let alive = s.processes.iter().filter(|p| p.alive).count();
            let nodes = s
                .nodes_ready
                .map_or("?".to_owned(), |(r, t)| format!("{r}/{t}"));
            let readyz = if s.readyz.is_ok() { "ok" } else { "failing" };
            println!(
                "{:<16} {:<14} {:<10} {:<8} {}",
                s.cluster.name,
                s.cluster.address,
                format!("{alive}/{}", s.processes.len()),
                readyz,
                nodes
            );
            for p in s.processes.iter().filter(|p| !p.alive) {
                println!(
                    "  {} (pid {}) is not running; log: {}",
                    p.record.component,
                    p.record.pid,
                    p.record.log.display()
                );
            }
            if let Err(e) = &s.readyz {
                println!("  /readyz: {e}");
            }
        }
    }
    if statuses
        .iter()
        .all(causeway_testbed::ClusterStatus::healthy)
    {
        Ok(())
    } else {
        anyhow::bail!(
            "not every cluster is healthy (logs in {}/<cluster>/logs)",
            state_dir.display()
        )
    }
}
