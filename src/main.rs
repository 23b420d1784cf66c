//! `causeway`: one binary for the GSLB DNS, the cluster tunnel and the scheduler.
//!
//! Each subcommand lives in `src/cmd/<name>.rs` with an `Args` struct and a `run`
//! function; this file only parses the command line, sets up logging and dispatches.

use clap::{Parser, Subcommand};

mod cmd;
mod logging;

/// Run one service across your own data centre and public clouds as one fleet of
/// Kubernetes clusters.
#[derive(Parser)]
#[command(name = "causeway", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,

    /// Worker threads of the async runtime (default: one per CPU; `agent`: 1). 1 runs
    /// everything on a single-threaded scheduler: no work-stealing and no cross-thread
    /// wake-ups, measured ~30 % less CPU per proxied request than two threads.
    #[arg(long, global = true, env = "CAUSEWAY_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Authoritative GSLB DNS: answer with the lowest-latency healthy cluster.
    Dns(cmd::dns::Args),
    /// Hub side of the cluster tunnel: users and agents connect here.
    Stub(cmd::stub::Args),
    /// Cluster side of the tunnel: dials out to the stub and forwards to the local API server.
    Agent(cmd::agent::Args),
    /// Enrol clusters with the stub (join tokens).
    Cluster(cmd::cluster::Args),
    /// Add users to the stub (client certificates, kubeconfigs).
    User(cmd::user::Args),
    /// Place workloads: fill the IDC first, burst to public clusters, DR failover.
    Scheduler(cmd::scheduler::Args),
    /// Everything on the hub side (stub + dns + scheduler) in one process.
    Hub(cmd::hub::Args),
    /// CustomResourceDefinitions of Causeway's kinds, from the Rust spec types.
    Crds(cmd::crds::Args),
    /// Run a failover drill from a scenario file.
    Drill(cmd::drill::Args),
    /// Measure latency from a cluster to client networks' beacons; report it to dns.
    Probe(cmd::probe::Args),
    /// Real Kubernetes control planes on loopback, for trying Causeway and for tests.
    Testbed(cmd::testbed::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(&cli.log) {
        eprintln!("causeway: {e:#}");
        return std::process::ExitCode::from(2);
    }
    // One thread: the current-thread scheduler (no work-stealing, no cross-thread
    // wake-ups); more: the multi-thread scheduler.
    // The agent forwards one cluster's API traffic: one thread by default, as
    // single-cluster proxies such as linkerd2-proxy do.
    let threads = cli
        .threads
        .or(matches!(cli.command, Command::Agent(_)).then_some(1));
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("causeway: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Dns(args) => cmd::dns::run(args).await,
            Command::Stub(args) => cmd::stub::run(args).await,
            Command::Agent(args) => cmd::agent::run(args).await,
            Command::Cluster(args) => cmd::cluster::run(args).await,
            Command::User(args) => cmd::user::run(args).await,
            Command::Scheduler(args) => cmd::scheduler::run(args).await,
            Command::Hub(args) => cmd::hub::run(args).await,
            Command::Crds(args) => cmd::crds::run(args).await,
            Command::Drill(args) => cmd::drill::run(args).await,
            Command::Probe(args) => cmd::probe::run(args).await,
            Command::Testbed(args) => cmd::testbed::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
