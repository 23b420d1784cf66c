//! `causeway probe`: measured latency from one cluster to its client networks' beacons,
//! reported to `causeway dns`; `causeway probe beacon`: a TCP echo beacon.
//!
//! Thin: parse → load the config → `causeway_probe::run`. Everything else is in `probe/`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use causeway_model::ClusterId;

const LONG_ABOUT: &str = "\
Measure latency from this cluster to client networks and report it to causeway dns.

Every spec.interval the prober times one round trip to each beacon of each client
network (tcp-echo: one byte echoed on a fresh connection; tcp-connect: the connect),
smooths each beacon's RTT (EWMA with weight spec.alpha; reported only after
spec.minSamples samples; spec.fall failures in a row forget it), and POSTs the lowest
smoothed RTT of each prefix to every dns API (POST /v1/latency, with
\"prober\": \"CLUSTER/NAME\"). dns keeps a measurement latency.maxAge after its last
report, so a prober that stops loses its entries there (health is not affected).
GET /v1/latency on the dns API shows each entry's prober and age.

Config: one `kind: Prober` document (docs/dns.md, \"Measured latency\").

Examples:
  causeway probe --cluster idc-bj --config prober.yaml
  causeway probe --cluster idc-bj --config prober.yaml --dns 10.0.0.53:8053
  causeway probe beacon --listen 0.0.0.0:7007";

/// Options of `causeway probe`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, long_about = LONG_ABOUT, after_long_help = LONG_ABOUT)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// The cluster this prober measures from (as the GSLB targets name it).
    #[arg(long, value_name = "ID", env = "CAUSEWAY_CLUSTER")]
    cluster: Option<String>,

    /// The config file (one `kind: Prober` document).
    #[arg(long, short = 'c', value_name = "FILE", env = "CAUSEWAY_PROBE_CONFIG")]
    config: Option<PathBuf>,

    /// dns API address to report to; repeatable. Replaces spec.dns.
    #[arg(long, value_name = "ADDR:PORT")]
    dns: Vec<SocketAddr>,

    /// Only validate the config file, print a summary and exit (0 = valid).
    #[arg(long)]
    validate: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// A TCP echo beacon for a client network (what `method: tcp-echo` times).
    Beacon(BeaconArgs),
}

#[derive(clap::Args, Debug)]
struct BeaconArgs {
    /// Listen here.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
}

/// Runs `causeway probe`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::Beacon(b)) = args.command {
        let shutdown = super::shutdown::shutdown_on_signal();
        causeway_probe::beacon::serve(b.listen, shutdown).await?;
        return Ok(());
    }
    let Some(path) = args.config else {
        bail!("--config FILE is required (see `causeway probe --help`)");
    };
    let config = causeway_probe::ProberConfig::load(&path)?;
    let Some(cluster) = args.cluster else {
        bail!("--cluster ID is required");
    };
    let cluster = ClusterId::new(&cluster).with_context(|| format!("--cluster {cluster:?}"))?;
    let dns = if args.dns.is_empty() {
        config.dns.clone()
    } else {
        args.dns
    };
    if args.validate {
        let beacons: usize = config.beacons.iter().map(|b| b.addresses.len()).sum();
        #[allow(clippy::print_stdout)]
        {
            println!(
                "{}: ok ({} client network(s), {} beacon(s), {} dns API(s))",
                path.display(),
                config.beacons.len(),
                beacons,
                dns.len()
            );
        }
        return Ok(());
    }
    if dns.is_empty() {
        bail!("no dns API to report to: set spec.dns or --dns ADDR:PORT");
    }
    let shutdown = super::shutdown::shutdown_on_signal();
    causeway_probe::run(
        causeway_probe::RunOptions {
            cluster,
            config,
            dns,
        },
        shutdown,
    )
    .await?;
    Ok(())
}
