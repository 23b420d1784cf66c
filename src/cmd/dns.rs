//! `causeway dns`: the authoritative GSLB DNS server, and `causeway dns explain`.
//!
//! Thin: parse → load the config → `causeway_dns::run`. Everything else is in `dns/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use causeway_dns::policy::Family;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG_ABOUT: &str = "\
Authoritative DNS for service domains delegated to Causeway (GSLB).

Each query for a GSLB name is answered with the healthy cluster that suits the
asking client best, by the name's policy: latency (lowest measured RTT for the
client network: the EDNS Client Subnet if present, else the resolver's address),
failover (first tier with a healthy target), weighted (one target by weight,
consistent per client network) or all-healthy. When every target is unhealthy all
of them are answered (fail open).

Serves UDP and TCP on every --listen address (IPv4 and IPv6), and an HTTP API
(--api-listen) for latency measurements (POST /v1/latency), health reports
(POST /v1/health), GET /v1/explain, /metrics, /healthz and /readyz.

The config file is Kubernetes-style YAML (apiVersion causeway.dev/v1alpha1, kinds
DnsServer, Zone, LatencyMap); see docs/dns.md and examples/dns/. It is reloaded on
SIGHUP and when it changes; an invalid file is logged as
`file:line:column: Kind/name: field: reason` and the last good configuration keeps
serving.

Production mode (--hub-kubeconfig FILE or --hub-in-cluster, --hub-namespace NS): the
file's documents are the base and the hub namespace's Zone and LatencyMap objects are
added; Placement objects are applied as POST /v1/placement is. Each change reloads the
server; an object that does not load keeps its last good version. The replica holding
the Lease causeway-dns writes each object's status. /readyz is 200 once the first hub
snapshot is loaded.

Every bound socket is logged once as `listening on <dns|api> <udp|tcp|http>://ADDR`.

Examples:
  causeway dns --config examples/dns/causeway-dns.yaml
  causeway dns --config examples/dns/causeway-dns.yaml --listen 127.0.0.1:0 --api-listen 127.0.0.1:0
  causeway dns --config examples/dns/causeway-dns.yaml --validate
  causeway dns explain --config examples/dns/causeway-dns.yaml --name app.svc.example. --client 198.51.100.0/24";

/// Options of `causeway dns`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, long_about = LONG_ABOUT, after_long_help = LONG_ABOUT)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// The config file (YAML: DnsServer, Zone and LatencyMap documents).
    #[arg(long, short = 'c', value_name = "FILE", env = "CAUSEWAY_DNS_CONFIG")]
    config: Option<PathBuf>,

    /// Serve DNS (UDP and TCP) here; repeatable. Replaces spec.listen. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,

    /// Serve the HTTP API here. Replaces spec.api.
    #[arg(long, value_name = "ADDR:PORT")]
    api_listen: Option<SocketAddr>,

    /// Only validate the config file, print a summary and exit (0 = valid).
    // `--check` is the old name, kept (hidden) so existing scripts keep working.
    #[arg(long, alias = "check")]
    validate: bool,

    #[command(flatten)]
    hub: super::hub_args::HubArgs,

    /// Production mode: the Lease electing the one replica that writes status, in the
    /// hub namespace.
    #[arg(long, value_name = "NAME", default_value = "causeway-dns")]
    lease_name: String,

    /// Production mode: the Lease's duration; the holder renews every third of it, another
    /// replica takes over status writing after it.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,

    /// Production mode: this replica's holder identity [default: hostname-pid].
    #[arg(long, value_name = "ID")]
    lease_identity: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Show why a GSLB name answers what it does for a client network: policy,
    /// candidates, health, latency used, ECS scope.
    ///
    /// Without --server it reads only the config file (static latency map, every
    /// target assumed healthy); with --server it asks a running server's API for
    /// live health and latency.
    Explain(ExplainArgs),
    /// Print the DS record of a signed zone (its KSK or CSK, SHA-256) for the parent.
    Ds(DsArgs),
    /// Write a new DNSSEC key (ECDSA P-256, algorithm 13; PEM PKCS#8) for `spec.dnssec`.
    Keygen(KeygenArgs),
}

#[derive(clap::Args, Debug)]
struct DsArgs {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE", env = "CAUSEWAY_DNS_CONFIG")]
    config: PathBuf,
    /// The zone apex, e.g. svc.example.
    zone: String,
}

#[derive(clap::Args, Debug)]
struct KeygenArgs {
    /// Where to write the key (created with mode 0600; an existing file is not replaced).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `causeway dns ds`.
fn ds(args: DsArgs) -> anyhow::Result<()> {
    let loaded = causeway_dns::LoadedConfig::load_isolated(&args.config)?;
    let want = args.zone.trim_end_matches('.').to_ascii_lowercase() + ".";
    let Some(zone) = loaded
        .config
        .zones
        .iter()
        .find(|z| z.origin.to_ascii().to_ascii_lowercase() == want)
    else {
        bail!("{}: no zone {want}", args.config.display());
    };
    let Some(d) = &zone.spec.dnssec else {
        bail!("zone {want} has no spec.dnssec");
    };
    let (ksk, zsk) = match (&d.csk, &d.ksk) {
        (Some(c), _) => (c, None),
        (None, Some(k)) => (k, d.zsk.as_deref()),
        _ => bail!("zone {want}: spec.dnssec has no csk or ksk"),
    };
    let keys = causeway_dns::dnssec::ZoneKeys::load(
        zone.origin.clone(),
        ksk,
        zsk,
        d.ttl.unwrap_or(zone.spec.ttl),
    )?;
    #[allow(clippy::print_stdout)]
    {
        print!("{}", keys.ds_text());
    }
    Ok(())
}

/// `causeway dns keygen`.
fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pem = causeway_dns::dnssec::generate_pem()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    f.write_all(pem.as_bytes())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(())
}

#[derive(clap::Args, Debug)]
struct ExplainArgs {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE", env = "CAUSEWAY_DNS_CONFIG")]
    config: Option<PathBuf>,
    /// The GSLB name, e.g. app.svc.example.
    #[arg(long)]
    name: String,
    /// Client network or address, e.g. 198.51.100.0/24.
    #[arg(long)]
    client: String,
    /// Record type: A or AAAA.
    #[arg(long = "type", default_value = "A")]
    qtype: String,
    /// Ask the running server's HTTP API at ADDR:PORT (live health and latency).
    #[arg(long, value_name = "ADDR:PORT")]
    server: Option<SocketAddr>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `causeway dns`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Explain(e)) => return explain(e).await,
        Some(Command::Ds(d)) => return ds(d),
        Some(Command::Keygen(k)) => return keygen(k),
        None => {}
    }
    let Some(path) = args.config.clone() else {
        bail!("--config FILE is required (see `causeway dns --help`)");
    };
    if args.hub.enabled() && !args.validate {
        return production(args, path).await;
    }
    let loaded = if args.hub.enabled() {
        // Production mode's file may hold only the DnsServer: the zones are the hub's.
        causeway_dns::LoadedConfig::from_documents_allowing_no_zone(
            &path,
            &causeway_config::read_file(&path)?,
        )?
    } else {
        causeway_dns::LoadedConfig::load_isolated(&path)?
    };
    if args.validate {
        let config = &loaded.config;
        let names: usize = config
            .zones
            .iter()
            .map(|z| z.spec.records.len() + z.spec.gslb.len())
            .sum();
        #[allow(clippy::print_stdout)]
        {
            println!(
                "{}: ok ({} zone(s), {} record set(s) and GSLB name(s), {} latency entries)",
                path.display(),
                config.zones.len(),
                names,
                config.latency.len()
            );
        }
        return Ok(());
    }
    let shutdown = super::shutdown::shutdown_on_signal();
    causeway_dns::run(
        causeway_dns::RunOptions {
            config: loaded,
            listen: args.listen,
            api: args.api_listen,
        },
        shutdown,
    )
    .await?;
    Ok(())
}

/// Production mode: the file is the base, the hub's Zones, LatencyMaps and Placements
/// are added (`causeway_dns::hub`).
async fn production(args: Args, file: PathBuf) -> anyhow::Result<()> {
    let Some(hub) = args.hub.connect().await? else {
        bail!("production mode needs --hub-kubeconfig or --hub-in-cluster");
    };
    let identity = args.lease_identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let shutdown = super::shutdown::shutdown_on_signal();
    causeway_dns::hub::run(
        causeway_dns::hub::HubOptions {
            file,
            listen: args.listen,
            api: args.api_listen,
            hub,
            lease: causeway_dns::hub::LeaseSettings {
                name: args.lease_name,
                duration: args.lease_duration,
                identity,
            },
        },
        shutdown,
    )
    .await?;
    Ok(())
}

async fn explain(e: ExplainArgs) -> anyhow::Result<()> {
    let family = match e.qtype.to_ascii_uppercase().as_str() {
        "A" => Family::V4,
        "AAAA" => Family::V6,
        other => bail!("--type {other:?}: must be A or AAAA"),
    };
    let client =
        causeway_dns::api::parse_client(&e.client).map_err(|r| anyhow::anyhow!("--client: {r}"))?;
    let out = if let Some(server) = e.server {
        let path = causeway_dns::api::explain_path(&e.name, &client.to_string(), &e.qtype);
        let body = http_get(server, &path).await?;
        if e.json {
            body
        } else {
            causeway_dns::explain::render_json(&body)
                .map_err(|r| anyhow::anyhow!("bad explain reply: {r}"))?
        }
    } else {
        let Some(path) = e.config else {
            bail!("--config FILE (or --server ADDR:PORT) is required");
        };
        let loaded = causeway_dns::LoadedConfig::load(&path)?;
        let x = causeway_dns::explain::offline(&loaded, &e.name, client, family)?;
        if e.json {
            causeway_dns::explain::to_json(&x)
        } else {
            format!(
                "{}(offline: from {}, every target assumed healthy)\n",
                x.render(),
                path.display()
            )
        }
    };
    #[allow(clippy::print_stdout)]
    {
        print!("{out}");
    }
    Ok(())
}

/// A bounded HTTP/1.1 GET to the server's API (no client library needed for one call).
async fn http_get(server: SocketAddr, path: &str) -> anyhow::Result<String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(server)
            .await
            .with_context(|| format!("cannot connect to the API at {server}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.take(4 << 20).read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let ok = head.lines().next().is_some_and(|l| l.contains(" 200 "));
        if !ok {
            bail!(
                "{server} answered: {} {}",
                head.lines().next().unwrap_or(""),
                body.trim()
            );
        }
        Ok(body.to_string())
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), fut)
        .await
        .context("the API did not answer within 10 s")?
}
