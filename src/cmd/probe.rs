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
network (tcp-echo: one byte echoed on a fresh connection; tcp-connect: the connect;
icmp: one echo request, where ping sockets or CAP_NET_RAW permit it),
smooths each beacon's RTT (EWMA with weight spec.alpha; reported only after
spec.minSamples samples; spec.fall failures in a row forget it), and POSTs the lowest
smoothed RTT of each prefix to every dns API (POST /v1/latency, with
\"prober\": \"CLUSTER/NAME\"). dns keeps a measurement latency.maxAge after its last
report, so a prober that stops loses its entries there (health is not affected).
GET /v1/latency on the dns API shows each entry's prober and age.

In a cluster that runs `causeway agent`, the agent can measure instead:
`causeway agent --probe-config FILE` (the same document), reported by the stub
(`causeway stub --dns-url URL`) as CLUSTER/NAME from the agent's certificate.

Config: one `kind: Prober` document (docs/dns.md, \"Measured latency\").

Examples:
  causeway probe --cluster idc-bj --config prober.yaml
  causeway probe --cluster idc-bj --config prober.yaml --dns 10.0.0.53:8053
  causeway probe beacon --listen 0.0.0.0:7007
  causeway probe measured --dns 10.0.0.53:8053 --client 198.51.100.0/24";

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
    /// What a dns server holds from probers: prefix, cluster, RTT, prober, age
    /// (`GET /v1/latency`).
    Measured(MeasuredArgs),
}

#[derive(clap::Args, Debug)]
struct MeasuredArgs {
    /// The dns API.
    #[arg(long, value_name = "ADDR:PORT")]
    dns: SocketAddr,
    /// Only prefixes containing this address or prefix.
    #[arg(long)]
    client: Option<String>,
    /// Only this cluster's.
    #[arg(long)]
    cluster: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct BeaconArgs {
    /// Listen here.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
}

/// Runs `causeway probe`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Beacon(b)) => {
            let shutdown = super::shutdown::shutdown_on_signal();
            causeway_probe::beacon::serve(b.listen, shutdown).await?;
            return Ok(());
        }
        Some(Command::Measured(m)) => return measured(m).await,
        None => {}
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

/// `causeway probe measured`: `GET /v1/latency` as a table (or JSON).
async fn measured(m: MeasuredArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(c) = &m.client {
        query.push(format!("client={}", c.replace('/', "%2F")));
    }
    if let Some(c) = &m.cluster {
        ClusterId::new(c).with_context(|| format!("--cluster {c:?}"))?;
        query.push(format!("cluster={c}"));
    }
    let path = if query.is_empty() {
        "/v1/latency".to_string()
    } else {
        format!("/v1/latency?{}", query.join("&"))
    };
    let body =
        causeway_probe::report::get(m.dns, &path, std::time::Duration::from_secs(10)).await?;
    let out = if m.json {
        body
    } else {
        let v: serde_json::Value = serde_json::from_str(&body).context("bad reply")?;
        let mut s = format!(
            "{:<20} {:<16} {:>10} {:>8}  {}\n",
            "PREFIX", "CLUSTER", "RTT(ms)", "AGE(s)", "PROBER"
        );
        for r in v["measurements"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "{:<20} {:<16} {:>10.3} {:>8.1}  {}\n",
                r["prefix"].as_str().unwrap_or("?"),
                r["cluster"].as_str().unwrap_or("?"),
                r["rttMs"].as_f64().unwrap_or(f64::NAN),
                r["ageMs"].as_f64().unwrap_or(f64::NAN) / 1000.0,
                r["prober"].as_str().unwrap_or("-"),
            ));
        }
        s
    };
    #[allow(clippy::print_stdout)]
    {
        print!("{out}");
    }
    Ok(())
}
