//! `causeway hub`: the embedded default — stub, dns and scheduler in one process.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use causeway_model::ClusterId;
use causeway_scheduler::policy::SchedulerConfig;
use causeway_scheduler::publish::PlacementSink;
use causeway_scheduler::run::RunOptions;
use causeway_tunnel::config::{OneDocumentFile as _, StubConfig};
use causeway_tunnel::{pki::Ca, state, users};
use tokio_util::sync::CancellationToken;

/// What `causeway hub --help` explains (clap shows the subcommand's one-line doc as its
/// about, so the long text goes after the options too, as `causeway dns` does).
const LONG_ABOUT: &str = "Runs everything on the hub side in one process: the tunnel's stub, \
the GSLB DNS server and the scheduler, with state in memory and YAML files (the embedded mode).

Each --config file is given to the part whose kinds it holds: StubConfig → stub; DnsServer, \
Zone, LatencyMap → dns; Scheduler, BurstPolicy, SpreadPolicy, FailoverPolicy → scheduler. A file may not mix \
parts.

On first start the hub creates the scheduler's stub identity (user causeway-scheduler, group \
causeway:schedulers, every cluster) and writes its kubeconfig where the Scheduler document's \
stubKubeconfig says; the stub's users listener must then have a fixed port. Members still need \
examples/scheduler/member-rbac.yaml.

The scheduler hands its placements (which clusters serve each policy's dns name, with weights = \
ready replicas, draining, health) to the hub's dns in process, not over HTTP: \
Scheduler.spec.dnsApi is not needed. If set, it must name this hub's own dns API (DnsServer \
spec.api) and is then ignored; any other address is refused at start and by --validate. dns's \
HTTP API, when configured, still serves explain, metrics and the other inputs.

Example:
  causeway hub --config stub.yaml --config dns.yaml --config scheduler.yaml";

/// Options of `causeway hub`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = LONG_ABOUT,
    after_long_help = LONG_ABOUT,
    after_help = "Example:\n  causeway hub --config stub.yaml --config dns.yaml --config scheduler.yaml"
)]
pub struct Args {
    /// Configuration files of the three parts.
    #[arg(long = "config", value_name = "FILE", num_args = 1.., required = true)]
    config: Vec<PathBuf>,
    /// Only check the files, print a summary and exit.
    #[arg(long, alias = "check")]
    validate: bool,
}

/// Which part a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Stub,
    Dns,
    Scheduler,
}

fn part_of(kind: &str) -> Option<Part> {
    match kind {
        "StubConfig" => Some(Part::Stub),
        "DnsServer" | "Zone" | "LatencyMap" => Some(Part::Dns),
        "Scheduler" | "BurstPolicy" | "SpreadPolicy" | "FailoverPolicy" => Some(Part::Scheduler),
        _ => None,
    }
}

/// The files by part.
struct Files {
    stub: PathBuf,
    dns: PathBuf,
    scheduler: Vec<PathBuf>,
}

fn classify(files: &[PathBuf]) -> anyhow::Result<Files> {
    let (mut stub, mut dns, mut scheduler) = (Vec::new(), Vec::new(), Vec::new());
    for f in files {
        let docs = causeway_config::read_file(f)?;
        let mut parts = BTreeSet::new();
        for d in &docs {
            match part_of(&d.kind) {
                Some(p) => {
                    parts.insert(p);
                }
                None => {
                    return Err(d
                        .unknown_kind(&[
                            "StubConfig",
                            "DnsServer",
                            "Zone",
                            "LatencyMap",
                            "Scheduler",
                            "BurstPolicy",
                            "SpreadPolicy",
                            "FailoverPolicy",
                        ])
                        .into());
                }
            }
        }
        match parts.iter().collect::<Vec<_>>().as_slice() {
            [Part::Stub] => stub.push(f.clone()),
            [Part::Dns] => dns.push(f.clone()),
            [Part::Scheduler] => scheduler.push(f.clone()),
            [] => bail!("{}: no document", f.display()),
            many => bail!(
                "{}: holds documents of several parts ({many:?}); give each part its own file",
                f.display()
            ),
        }
    }
    let one = |mut v: Vec<PathBuf>, what: &str| -> anyhow::Result<PathBuf> {
        match v.len() {
            1 => Ok(v.remove(0)),
            0 => bail!("no {what} file among --config"),
            _ => bail!("{} {what} files among --config; give one", v.len()),
        }
    };
    if scheduler.is_empty() {
        bail!("no Scheduler file among --config");
    }
    Ok(Files {
        stub: one(stub, "StubConfig")?,
        dns: one(dns, "dns (DnsServer/Zone)")?,
        scheduler,
    })
}

/// Runs `causeway hub`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let files = classify(&args.config)?;
    let stub = StubConfig::load(&files.stub)?;
    let dns = causeway_dns::LoadedConfig::load_isolated(&files.dns)?;
    let sched = SchedulerConfig::load(&files.scheduler)?;
    check_dns_api(&sched, dns.config.server.api)?;
    if args.validate {
        println!(
            "ok: stub {}, dns {} zone(s), scheduler {} policies over {} clusters",
            files.stub.display(),
            dns.config.zones.len(),
            sched.policies().len(),
            sched.clusters().len()
        );
        return Ok(());
    }
    ensure_scheduler_identity(&stub, &sched)?;

    let shutdown = super::shutdown::shutdown_on_signal();
    // The first part to fail stops the others.
    let stop_all = |r: anyhow::Result<()>, token: &CancellationToken| {
        if r.is_err() {
            token.cancel();
        }
        r
    };
    // dns first: the scheduler publishes to it in process.
    let dns = causeway_dns::start(
        causeway_dns::RunOptions {
            config: dns,
            listen: Vec::new(),
            api: None,
        },
        shutdown.clone(),
    )
    .await
    .context("dns")?;
    let sink: Arc<dyn PlacementSink> = Arc::new(DnsSink(dns.inputs()));
    tracing::info!("the scheduler publishes placements to dns in process");
    let (s, (), c) = tokio::join!(
        async {
            let r = causeway_tunnel::stub::run(stub, shutdown.clone())
                .await
                .context("stub");
            stop_all(r.map(|_| ()), &shutdown)
        },
        dns.run(),
        async {
            let options = RunOptions {
                lease: None,
                dns: Some(sink),
                ..Default::default()
            };
            let r =
                causeway_scheduler::run::run(files.scheduler.clone(), options, shutdown.clone())
                    .await
                    .context("scheduler");
            stop_all(r, &shutdown)
        },
    );
    s.and(c)
}

/// The hub's dns, as the scheduler's placement destination.
struct DnsSink(causeway_dns::Inputs);

impl PlacementSink for DnsSink {
    fn send(&self, placements: Vec<causeway_model::Placement>) -> Result<(), String> {
        self.0
            .placements(placements)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// In the hub the scheduler publishes to the hub's dns in process: `dnsApi` may only
/// name that dns's own API (`own`, its `spec.api`), and is then ignored.
fn check_dns_api(sched: &SchedulerConfig, own: Option<SocketAddr>) -> anyhow::Result<()> {
    let Some(url) = sched.scheduler.dns_api.as_deref() else {
        return Ok(());
    };
    let named = url
        .strip_prefix("http://")
        .map(|r| r.trim_end_matches('/'))
        .and_then(|a| a.parse::<SocketAddr>().ok());
    if named.is_some() && named == own {
        tracing::info!(
            dns_api = url,
            "Scheduler.spec.dnsApi names this hub's own dns: ignored, placements go to it in process"
        );
        return Ok(());
    }
    bail!(
        "Scheduler.spec.dnsApi is {url}, but in the hub the scheduler publishes to the hub's own \
         dns in process; remove dnsApi (it may only name this hub's dns API{})",
        own.map(|a| format!(", http://{a}")).unwrap_or_default()
    )
}

/// Creates user `causeway-scheduler` in the stub's state and writes its kubeconfig at the
/// Scheduler document's `stubKubeconfig`, unless that file exists.
fn ensure_scheduler_identity(stub: &StubConfig, sched: &SchedulerConfig) -> anyhow::Result<()> {
    let out: &Path = &sched.scheduler.stub_kubeconfig;
    if out.exists() {
        return Ok(());
    }
    if stub.listen_users.port() == 0 {
        bail!(
            "{} does not exist and the stub's users listener has no fixed port: give \
             spec.listen.users a port, or create it with `causeway user add causeway-scheduler`",
            out.display()
        );
    }
    let state = state::StateDir::open(&stub.state_dir)?;
    let ca = Ca::load_or_create(&stub.state_dir)?;
    let clusters: Vec<ClusterId> = sched.clusters().into_iter().collect();
    let url = format!("https://{}", stub.listen_users);
    let yaml = users::scheduler_identity(&state, &ca, &url, &clusters)
        .context("creating the scheduler's stub identity")?;
    state::write_atomic(out, yaml.as_bytes(), 0o600)?;
    tracing::info!(kubeconfig = %out.display(), "created the scheduler's stub identity causeway-scheduler");
    Ok(())
}
