//! Measured latency (`causeway probe`): a prober runs in (or for) one cluster, times
//! application-level round trips to the beacons of each client network, smooths them
//! and reports them to `causeway dns`'s `POST /v1/latency` with its identity, so dns
//! ages them out when the reports stop.
//!
//! Module map:
//! * [`config`]: the `kind: Prober` document.
//! * [`smooth`]: EWMA with a minimum-sample rule, per beacon.
//! * [`measure`]: one TCP round trip (`tcp-echo`) or connect time (`tcp-connect`).
//! * [`report`]: the POST to dns.
//! * [`measure()`]: the measuring loop alone (what `causeway agent --probe-config` runs;
//!   the stub polls it and reports for the agent's cluster).
//! * [`run`]: measuring plus reporting (`causeway probe`); [`beacon`]: a TCP echo beacon
//!   for client networks.

pub mod beacon;
pub mod config;
pub mod icmp;
pub mod measure;
pub mod report;
pub mod smooth;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use causeway_model::ClusterId;
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use config::{Method, ProberConfig};
pub use smooth::Smoothed;

/// Errors of the prober.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The config file.
    #[error(transparent)]
    Config(#[from] causeway_config::ConfigError),
    /// A request to dns's API failed.
    #[error("dns API {0}: {1}")]
    Report(SocketAddr, String),
    /// A socket could not be bound.
    #[error("bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// What [`run`] needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The cluster this prober measures from.
    pub cluster: ClusterId,
    /// The loaded config.
    pub config: ProberConfig,
    /// dns API addresses (each gets every report).
    pub dns: Vec<SocketAddr>,
}

impl RunOptions {
    /// The identity sent with each report: `cluster/metadata.name`.
    pub fn prober_id(&self) -> String {
        format!("{}/{}", self.cluster.as_str(), self.config.name)
    }
}

/// One beacon's state.
struct Beacon {
    prefix: IpNet,
    addr: SocketAddr,
    rtt: Smoothed,
}

/// What a measuring loop has now: the lowest smoothed RTT of each client network that
/// has enough samples, after round `rounds`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Milliseconds by client network.
    pub rtts: BTreeMap<IpNet, f64>,
    /// Rounds measured so far (0: none yet).
    pub rounds: u64,
}

/// Probes every beacon of `config` each interval and publishes a [`Snapshot`] on `out`
/// after every round, until `shutdown` (or until every receiver is gone). Only measures:
/// [`run`] reports what it publishes, the agent's prober mode answers the stub with it.
pub async fn measure(
    config: ProberConfig,
    out: tokio::sync::watch::Sender<Snapshot>,
    shutdown: CancellationToken,
) {
    let cfg = &config;
    let mut beacons: Vec<Beacon> = cfg
        .beacons
        .iter()
        .flat_map(|b| {
            b.addresses.iter().map(|a| Beacon {
                prefix: b.prefix,
                addr: *a,
                rtt: Smoothed::new(cfg.alpha, cfg.min_samples, cfg.fall),
            })
        })
        .collect();
    info!(
        prober = %cfg.name,
        beacons = beacons.len(),
        interval = ?cfg.interval,
        "probing"
    );
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds = 0u64;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = out.closed() => return,
            _ = tick.tick() => {}
        }
        let round = beacons
            .iter()
            .map(|b| measure::once(b.addr, cfg.method, cfg.timeout));
        let results = tokio::select! {
            () = shutdown.cancelled() => return,
            r = futures_join_all(round) => r,
        };
        for (b, r) in beacons.iter_mut().zip(results) {
            match r {
                Ok(d) => b.rtt.sample(d.as_secs_f64() * 1000.0),
                Err(e) => {
                    debug!(beacon = %b.addr, error = %e, "probe failed");
                    b.rtt.failure();
                }
            }
        }
        let mut best: BTreeMap<IpNet, f64> = BTreeMap::new();
        for b in &beacons {
            if let Some(ms) = b.rtt.value() {
                let e = best.entry(b.prefix).or_insert(ms);
                *e = e.min(ms);
            }
        }
        rounds += 1;
        out.send_replace(Snapshot { rtts: best, rounds });
    }
}

/// Probes every beacon each interval ([`measure`]), and after every round reports every
/// prefix that has enough samples to every dns, until `shutdown`. A prefix is reported
/// with the lowest smoothed RTT of its beacons.
pub async fn run(opts: RunOptions, shutdown: CancellationToken) -> Result<(), ProbeError> {
    let id = opts.prober_id();
    let timeout = opts.config.timeout.max(Duration::from_secs(1));
    let (tx, mut rx) = tokio::sync::watch::channel(Snapshot::default());
    let measuring = tokio::spawn(measure(opts.config, tx, shutdown.clone()));
    info!(prober = %id, "reporting to {} dns API(s)", opts.dns.len());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            r = rx.changed() => if r.is_err() { break },
        }
        let best = rx.borrow_and_update().rtts.clone();
        if best.is_empty() {
            continue;
        }
        let body = report::body(&id, &opts.cluster, &best);
        for dns in &opts.dns {
            match report::post(*dns, &body, timeout).await {
                Ok(()) => debug!(%dns, prefixes = best.len(), "reported"),
                Err(e) => warn!(%dns, error = %e, "report failed"),
            }
        }
    }
    let _ = measuring.await;
    Ok(())
}

/// Runs `futs` concurrently and returns their outputs in order (no `futures` dependency
/// for one join).
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}
