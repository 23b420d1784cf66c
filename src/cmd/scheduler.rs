//! `causeway scheduler` and `causeway scheduler plan`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use causeway_scheduler::observe::{self, Clusters};
use causeway_scheduler::plan::{self, Memory};
use causeway_scheduler::policy::SchedulerConfig;
use causeway_scheduler::whatif::WhatIf;

use super::hub_args::HubArgs;

/// Options of `causeway scheduler`.
#[derive(clap::Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    long_about = "Places workloads across clusters: fills the home (IDC) clusters first, \
    bursts the overflow to public clusters through the tunnel's stub, scales back in reverse \
    order after the scale-down window (DNS drained one TTL before replicas go); spreads \
    active-active workloads by weight or free capacity; fails a single-writer workload over \
    to a backup cluster, fencing the old primary first (a role lease its agent watches); and \
    tells dns which clusters serve each name.\n\n\
    Every round: observe every member through the stub as the scheduler's own stub identity \
    → plan (a pure function; every number has a reason) → server-side apply of copies → \
    publish health to dns. Every decision is logged with its reason.\n\n\
    Files: one `Scheduler` document (stubKubeconfig, dnsApi, interval, listen) and any \
    number of `BurstPolicy`, `SpreadPolicy` and `FailoverPolicy` documents, across one or \
    more files; changed files are \
    reloaded, and a file with an error leaves the last good policies running. Reference: \
    docs/scheduler.md.\n\n\
    Several replicas: give each --lease-kubeconfig (a hub cluster) and they elect one leader \
    with a coordination.k8s.io/v1 Lease; standbys observe and plan (GET /v1/plan, metrics) but \
    never write.\n\n\
    Production mode (--hub-kubeconfig FILE or --hub-in-cluster): the BurstPolicy, \
    SpreadPolicy and FailoverPolicy objects of the hub namespace are added to the files' \
    documents (a refused object keeps its last good version, the others apply); the Lease is \
    taken in the hub namespace through the same connection (unless --lease-kubeconfig is \
    given); the leader writes each object's status (Accepted, and the decision) and publishes \
    placements as Placement objects, which every dns replica watches.",
    after_help = "Examples:\n  causeway scheduler --config examples/scheduler/scheduler.yaml\n  \
    causeway scheduler --config examples/scheduler/scheduler.yaml --validate\n  \
    causeway scheduler --config scheduler.yaml --hub-kubeconfig hub.kubeconfig --hub-namespace causeway-system\n  \
    causeway scheduler plan --config examples/scheduler/scheduler.yaml --what-if 'load x3'"
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Configuration files (a Scheduler document and the policies).
    #[arg(long = "config", value_name = "FILE", num_args = 1.., required = true)]
    config: Vec<PathBuf>,
    /// Only check the files, print a summary and exit.
    #[arg(long, alias = "check")]
    validate: bool,
    #[command(flatten)]
    lease: LeaseArgs,
    #[command(flatten)]
    hub: HubArgs,
}

/// Leader election between scheduler replicas.
#[derive(clap::Args, Debug)]
struct LeaseArgs {
    /// Kubeconfig of the hub cluster holding the Lease. Without it this replica runs
    /// alone and always writes; with it, only the Lease holder writes and publishes.
    #[arg(long, value_name = "FILE")]
    lease_kubeconfig: Option<PathBuf>,
    /// Namespace of the Lease [default: causeway-system; in production mode without
    /// --lease-kubeconfig, the hub namespace].
    #[arg(long, value_name = "NS")]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, value_name = "NAME", default_value = "causeway-scheduler")]
    lease_name: String,
    /// Lease duration; the holder renews every third of it, a standby takes over after it.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// This replica's holder identity (default: hostname-pid).
    #[arg(long, value_name = "ID")]
    lease_identity: Option<String>,
}

impl LeaseArgs {
    /// The Lease of `--lease-kubeconfig`, if given.
    fn config(&self) -> Option<causeway_election::LeaseConfig> {
        let kubeconfig = self.lease_kubeconfig.clone()?;
        let namespace = self
            .lease_namespace
            .clone()
            .unwrap_or_else(|| "causeway-system".into());
        Some(self.with(kubeconfig, namespace))
    }

    /// The Lease in the hub namespace, taken through the hub connection (production mode).
    fn in_hub(
        &self,
        hub: &causeway_hubstore::Hub,
        args: &HubArgs,
    ) -> (
        causeway_election::LeaseConfig,
        kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    ) {
        let namespace = self
            .lease_namespace
            .clone()
            .unwrap_or_else(|| hub.namespace().to_string());
        let source = args
            .hub_kubeconfig
            .clone()
            .unwrap_or_else(|| PathBuf::from("in-cluster"));
        let api = kube::Api::namespaced(hub.client(), &namespace);
        (self.with(source, namespace), api)
    }

    fn with(&self, kubeconfig: PathBuf, namespace: String) -> causeway_election::LeaseConfig {
        let identity = self.lease_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        causeway_election::LeaseConfig {
            kubeconfig,
            namespace,
            name: self.lease_name.clone(),
            duration: self.lease_duration,
            identity,
        }
    }
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Observe the clusters once, plan, and print the decision table; applies nothing.
    Plan(PlanArgs),
}

/// Options of `causeway scheduler plan`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Observes every member once through the stub, then prints what the \
    scheduler would do: for each policy and cluster, replicas now → planned, DNS, the action, \
    and why. Nothing is written.\n\n\
    --what-if changes the observed state first (repeatable, applied in order):\n  \
    'CLUSTER down' | 'CLUSTER up'   the cluster is unreachable / reachable\n  \
    'load xN'                       N times the demand (replicas, CPU or external value)\n  \
    'external POLICY=VALUE'         an external demand value\n  \
    'after DURATION'                plan DURATION later (with the windows of this run)"
)]
struct PlanArgs {
    /// Configuration files (a Scheduler document and the policies).
    #[arg(long = "config", value_name = "FILE", num_args = 1.., required = true)]
    config: Vec<PathBuf>,
    /// A change to the observed state before planning.
    #[arg(long = "what-if", value_name = "WHAT")]
    what_if: Vec<WhatIf>,
}

/// Runs `causeway scheduler`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Sub::Plan(p)) = args.command {
        return plan(p).await;
    }
    let config = SchedulerConfig::load(&args.config)?;
    if args.validate {
        println!(
            "ok: {} BurstPolicy, {} SpreadPolicy, {} FailoverPolicy, {} clusters ({})",
            config.burst.len(),
            config.spread.len(),
            config.failover.len(),
            config.clusters().len(),
            config
                .clusters()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    let hub = args.hub.connect().await?;
    let shutdown = super::shutdown::shutdown_on_signal();
    let mut options = causeway_scheduler::run::RunOptions {
        lease: args.lease.config(),
        hub: hub.clone(),
        ..Default::default()
    };
    if let (Some(hub), None) = (&hub, &options.lease) {
        let (lease, api) = args.lease.in_hub(hub, &args.hub);
        options.lease = Some(lease);
        options.lease_api = Some(api);
    }
    causeway_scheduler::run::run(args.config, options, shutdown).await?;
    Ok(())
}

async fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let config = SchedulerConfig::load(&args.config)?;
    let clusters =
        Clusters::from_stub_kubeconfig(&config.scheduler.stub_kubeconfig, &config.clusters())
            .await
            .context("cannot reach the members")?;
    let mut observed = observe::observe(&clusters, &config, Duration::from_secs(10)).await;
    let mut now = Duration::ZERO;
    // The live memory is not shared: the plan starts with empty windows, so scale-up
    // matches the live scheduler and scale-down shows the recommendation before its window.
    let (base, memory) = plan::compute(&config, &observed, &Memory::default(), now);
    if args.what_if.is_empty() {
        print!("{}", base.table());
        return Ok(());
    }
    println!("# now");
    print!("{}", base.table());
    let mut memory = memory;
    for w in &args.what_if {
        // `after D`: plan once with what the earlier what-ifs changed (that is when the
        // planner first sees them, e.g. a cluster lost), then move the clock on.
        if let WhatIf::After(_) = w {
            let (_, m) = plan::compute(&config, &observed, &memory, now);
            memory = m;
        }
        w.apply(&mut observed, &mut now);
    }
    let names: Vec<String> = args.what_if.iter().map(|w| format!("{w:?}")).collect();
    let (planned, _) = plan::compute(&config, &observed, &memory, now);
    println!("\n# what if: {}", names.join(", "));
    print!("{}", planned.table());
    Ok(())
}
