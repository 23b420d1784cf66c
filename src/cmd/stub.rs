//! `causeway stub`: the hub side of the cluster tunnel.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use causeway_tunnel::config::{OneDocumentFile as _, StubConfig};

/// Options of `causeway stub`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Hub side of the cluster tunnel. Users (kubectl, the kube crate, the scheduler) \
reach every cluster's Kubernetes API at https://STUB/clusters/<id>/…; agents inside the clusters \
dial in to the agents' listener and hold multiplexed sessions open. The stub authenticates \
(client certificates from its CA, bearer tokens), authorizes (access policy), audits \
(audit.k8s.io/v1 JSON lines) and forwards; the agent impersonates the user on its cluster.",
    after_long_help = "Example (see examples/tunnel/stub.yaml and docs/tunnel.md):

  causeway stub --config examples/tunnel/stub.yaml
  causeway cluster add idc-bj --stub-url https://127.0.0.1:7443
  causeway user add alice --group dev --clusters 'idc-*' --out alice.kubeconfig

Each bound listener is logged once as `listening on <users|agents|metrics> <url>`."
)]
pub struct Args {
    /// The stub configuration (YAML, kind StubConfig).
    #[arg(long, env = "CAUSEWAY_STUB_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Override spec.stateDir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Override spec.listen.users (port 0 picks a free port).
    #[arg(long, value_name = "IP:PORT")]
    listen_users: Option<SocketAddr>,
    /// Override spec.listen.agents.
    #[arg(long, value_name = "IP:PORT")]
    listen_agents: Option<SocketAddr>,
    /// Override spec.listen.metrics.
    #[arg(long, value_name = "IP:PORT")]
    listen_metrics: Option<SocketAddr>,
    /// Validate the configuration and exit.
    #[arg(long)]
    validate: bool,
    /// Production mode: the state (CA, users, clusters, join tokens) lives in the Secret
    /// causeway-stub-state of the hub namespace (spec.stateDir is then this replica's
    /// private copy), AccessPolicy objects add to spec.accessPolicy, and the active stub
    /// makes the Secret causeway-scheduler-identity.
    #[command(flatten)]
    hub: super::hub_args::HubArgs,
    /// Override spec.lease.identity (each replica needs its own; in a pod, its name).
    #[arg(long, env = "CAUSEWAY_LEASE_IDENTITY", value_name = "ID")]
    lease_identity: Option<String>,
    /// Production mode: the users' listener as the scheduler reaches it, for the
    /// kubeconfig in causeway-scheduler-identity [default: https://<first spec.serverNames>:<users port>].
    #[arg(long, value_name = "URL")]
    users_url: Option<String>,
    /// Override spec.handshakes.timeoutSeconds: how long a TLS handshake on the users'
    /// or the agents' listener may take [default: 10].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=300))]
    handshake_timeout_seconds: Option<u64>,
    /// Override spec.handshakes.maxPending: TLS handshakes in progress per listener, all
    /// sources; at the cap the oldest is closed [default: 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_pending_handshakes: Option<u64>,
    /// Override spec.handshakes.maxPendingPerSource: TLS handshakes in progress per
    /// listener from one IPv4 address or IPv6 /64; at the cap new connections from it
    /// are reset [default: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_pending_handshakes_per_source: Option<u64>,
    /// Measured latency: the active stub polls every agent run with --probe-config and
    /// posts its smoothed RTTs to this causeway dns API (`POST /v1/latency`) as prober
    /// CLUSTER/NAME, the cluster from the agent's certificate. http://HOST:PORT;
    /// repeatable.
    #[arg(long = "dns-url", value_name = "URL")]
    dns_url: Vec<causeway_tunnel::stub::latency::DnsUrl>,
    /// Time between two polls of the agents' probers (one small request per cluster).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = report_interval)]
    dns_report_interval: std::time::Duration,
}

fn report_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(d)
}

/// Runs `causeway stub`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = StubConfig::load(&args.config)?;
    if let Some(d) = args.state_dir {
        config.state_dir = d;
    }
    if let Some(a) = args.listen_users {
        config.listen_users = a;
    }
    if let Some(a) = args.listen_agents {
        config.listen_agents = a;
    }
    if let Some(a) = args.listen_metrics {
        config.listen_metrics = a;
    }
    let limits = &mut config.handshakes;
    if let Some(t) = args.handshake_timeout_seconds {
        limits.timeout = std::time::Duration::from_secs(t);
    }
    if let Some(n) = args.max_pending_handshakes {
        limits.max_pending = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = args.max_pending_handshakes_per_source {
        limits.max_pending_per_source = usize::try_from(n).unwrap_or(usize::MAX);
    }
    limits.max_pending_per_source = limits.max_pending_per_source.min(limits.max_pending);
    if let Some(id) = args.lease_identity {
        match config.lease.as_mut() {
            Some(l) if !id.is_empty() && !id.chars().any(char::is_control) => l.identity = id,
            Some(_) => anyhow::bail!("--lease-identity must be a non-empty printable string"),
            None => anyhow::bail!(
                "--lease-identity needs spec.lease in {}",
                args.config.display()
            ),
        }
    }
    if !args.dns_url.is_empty() {
        config.latency_reports = Some(causeway_tunnel::stub::latency::LatencyReports {
            dns: args.dns_url,
            interval: args.dns_report_interval,
        });
    }
    if args.validate {
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    let hub = match args.hub.connect().await? {
        Some(hub) => {
            let users_url = args.users_url.or_else(|| default_users_url(&config));
            if users_url.is_none() {
                tracing::warn!(
                    "no --users-url and the users' listener has no fixed port: the scheduler's identity Secret is not made"
                );
            }
            Some(causeway_tunnel::stub::HubMode { hub, users_url })
        }
        None => None,
    };
    let shutdown = super::shutdown::shutdown_on_signal();
    causeway_tunnel::stub::run_with_hub(config, hub, shutdown)
        .await
        .with_context(|| format!("stub {}", args.config.display()))
}

/// `https://<first server name>:<users port>`, when the port is fixed.
fn default_users_url(config: &StubConfig) -> Option<String> {
    let port = config.listen_users.port();
    let host = config.server_names.first()?;
    if port == 0 {
        return None;
    }
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]"),
        Err(_) => host.clone(),
    };
    Some(format!("https://{host}:{port}"))
}
