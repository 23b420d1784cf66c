//! `causeway agent`: the cluster side of the tunnel.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use causeway_model::ClusterId;
use causeway_tunnel::agent::identity_secret::{self, Enrolment, IdentitySecret};
use causeway_tunnel::agent::{AgentConfig, FenceConfig, StubTarget, TokenSource, UpstreamConfig};
use causeway_tunnel::enrol::{self, AgentCredentials};
use causeway_tunnel::identity::Secret;
use causeway_tunnel::pki::CaPin;

/// Options of `causeway agent`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Cluster side of the tunnel. Dials out to the stub (no inbound port, no public IP), \
holds sessions open with backoff and jitter forever, and re-issues every request it receives to the \
local Kubernetes API server with its own ServiceAccount token plus Impersonate-* headers for the user \
the stub authenticated.

On first start it enrols: it exchanges the one-time join token from `causeway cluster add` for a \
certificate bound to --cluster, trusting the stub only if its CA matches --ca-hash, and stores it in \
--state-dir; later starts reuse it.

With --identity-secret NAME the identity lives in Secret NAME of the agent's own namespace, \
so every replica shares what one join token bought: each replica reads it at start (as its \
ServiceAccount), the one that enrols creates it, and a replica refused with `token already \
used` waits for it (at most 5 minutes).",
    after_long_help = "Example:

  causeway agent --stub https://127.0.0.1:7443 --cluster idc-bj \\
      --token cwj_… --ca-hash sha256:… --state-dir /var/lib/causeway-agent \\
      --kubeconfig apiserver.kubeconfig --token-file sa.token

Several --stub URLs (comma-separated) for HA stubs: the agent holds sessions to all of them."
)]
pub struct Args {
    /// The stub's agent listener, https://HOST:PORT (comma-separated for several stubs).
    #[arg(long, env = "CAUSEWAY_STUB", value_delimiter = ',', required = true)]
    stub: Vec<String>,
    /// This cluster's ID.
    #[arg(long, env = "CAUSEWAY_CLUSTER")]
    cluster: ClusterId,
    /// One-time join token (only needed until the agent has enrolled).
    #[arg(long, env = "CAUSEWAY_JOIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The stub CA's hash, sha256:<hex>, as printed by `causeway cluster add`.
    #[arg(long, env = "CAUSEWAY_CA_HASH")]
    ca_hash: Option<String>,
    /// Where the agent keeps its certificate, key and the stub CA.
    #[arg(
        long,
        env = "CAUSEWAY_AGENT_STATE_DIR",
        default_value = "/var/lib/causeway-agent"
    )]
    state_dir: PathBuf,
    /// Keep the enrolled identity in this Secret of the agent's own cluster and share it
    /// with every replica: read it at start, enrol and create it when absent (the
    /// ServiceAccount needs get, create and update on it; docs/tunnel.md).
    #[arg(long, env = "CAUSEWAY_IDENTITY_SECRET", value_name = "NAME")]
    identity_secret: Option<String>,
    /// Namespace of --identity-secret (default: the pod's own, or the kubeconfig
    /// context's).
    #[arg(
        long,
        env = "CAUSEWAY_IDENTITY_NAMESPACE",
        value_name = "NAMESPACE",
        requires = "identity_secret"
    )]
    identity_namespace: Option<String>,
    /// Kubeconfig naming the local API server and its CA (default: in-cluster config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The agent's ServiceAccount token (re-read every 30 s).
    #[arg(
        long,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    token_file: PathBuf,
    /// Sessions held open to each stub.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    sessions: u16,
    /// HTTP/1.1 data connections held beside each session. The stub sends a short
    /// request (not a watch, log, exec or port-forward) over an idle one: about a third
    /// less latency than a stream of the HTTP/2 session. 0 sends everything as streams.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=64))]
    data_connections: u16,
    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` (ready while a session to a
    /// stub is up) on this address, e.g. 0.0.0.0:9444 in a pod. Off by default.
    #[arg(long, env = "CAUSEWAY_AGENT_METRICS", value_name = "ADDR:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Self-fencing: how often the agent lists the role Leases of its cluster (label
    /// causeway.dev/role-lease=true, impersonating user causeway:fencer; RBAC in
    /// examples/tunnel/fencer-rbac.yaml). When the scheduler stops renewing one for its
    /// duration, the agent sets the role ConfigMap to `fenced` and scales the Deployment
    /// to 0, so a promoted backup never runs beside this primary (docs/tunnel.md).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = fence_interval)]
    fence_interval: std::time::Duration,
    /// Turn self-fencing off (the agent then never demotes a primary on its own).
    #[arg(long)]
    no_fence: bool,
    /// Measured latency: run a prober from this cluster (one `kind: Prober` document, as
    /// for `causeway probe`; its spec.dns is ignored). The stub polls the smoothed RTTs
    /// over the session and reports them to `causeway stub --dns-url` as prober
    /// CLUSTER/NAME, the cluster from this agent's certificate (docs/dns.md).
    #[arg(long, env = "CAUSEWAY_PROBE_CONFIG", value_name = "FILE")]
    probe_config: Option<PathBuf>,
}

fn fence_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(d)
}

/// Runs `causeway agent`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let stubs = args
        .stub
        .iter()
        .map(|u| StubTarget::from_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let upstream = match &args.kubeconfig {
        Some(p) => UpstreamConfig::from_kubeconfig(p).await?,
        None => UpstreamConfig::in_cluster()?,
    };
    let token = TokenSource::new(args.token_file.clone())?;
    let prober = match &args.probe_config {
        Some(p) => Some(causeway_probe::ProberConfig::load(p)?),
        None => None,
    };
    let creds = match &args.identity_secret {
        Some(name) => {
            let namespace = match &args.identity_namespace {
                Some(ns) => ns.clone(),
                None => identity_secret::default_namespace(args.kubeconfig.as_deref()).await?,
            };
            let secret = IdentitySecret {
                namespace,
                name: name.clone(),
            };
            let enrolment = match (&args.token, &args.ca_hash) {
                (Some(t), Some(hash)) => Some(Enrolment {
                    stub_url: args.stub[0].clone(),
                    token: Secret::new(t.clone()),
                    pin: ca_pin(hash)?,
                }),
                _ => None,
            };
            identity_secret::obtain(
                &secret,
                &args.cluster,
                &args.state_dir,
                enrolment.as_ref(),
                upstream.clone(),
                &token,
            )
            .await
            .with_context(|| format!("--identity-secret {}/{}", secret.namespace, secret.name))?
        }
        None => local_identity(&args).await?,
    };
    if creds.cluster != args.cluster {
        bail!(
            "the certificate in {} is bound to cluster {}, not --cluster {}",
            args.state_dir.display(),
            creds.cluster,
            args.cluster
        );
    }
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?,
        ),
        None => None,
    };
    let config = AgentConfig {
        metrics_listener,
        cluster: args.cluster,
        stubs,
        sessions_per_stub: usize::from(args.sessions),
        data_connections: usize::from(args.data_connections),
        tls: std::sync::Arc::new(creds.client_config()?),
        upstream,
        token,
        fence: (!args.no_fence).then(|| FenceConfig {
            interval: args.fence_interval,
            ..FenceConfig::default()
        }),
        prober,
    };
    let shutdown = super::shutdown::shutdown_on_signal();
    causeway_tunnel::agent::run(config, shutdown).await?;
    Ok(())
}

/// The identity in --state-dir, or a new one enrolled with the join token.
async fn local_identity(args: &Args) -> anyhow::Result<AgentCredentials> {
    if let Some(c) = AgentCredentials::load(&args.state_dir)
        .with_context(|| format!("--state-dir {}", args.state_dir.display()))?
    {
        return Ok(c);
    }
    let (Some(token), Some(hash)) = (&args.token, &args.ca_hash) else {
        bail!(
            "no agent certificate in {}: pass --token and --ca-hash from `causeway cluster add {}` to enrol",
            args.state_dir.display(),
            args.cluster
        );
    };
    let creds = enrol::enrol_agent(
        &args.stub[0],
        &args.cluster,
        &Secret::new(token.clone()),
        &ca_pin(hash)?,
        &args.state_dir,
    )
    .await
    .context("enrolment")?;
    tracing::info!(cluster = %creds.cluster, dir = %args.state_dir.display(), "enrolled");
    Ok(creds)
}

/// The stub CA's pin from --ca-hash.
fn ca_pin(hash: &str) -> anyhow::Result<CaPin> {
    hash.parse()
        .map_err(|e| anyhow::anyhow!("--ca-hash {hash:?}: {e}"))
}
