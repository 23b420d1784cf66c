//! Measured latency through the tunnel (`causeway stub --dns-url URL`): every interval
//! the active stub asks one session of each connected cluster for its agent prober's
//! smoothed RTTs (one small internal request, [`crate::agent::prober`]) and posts them
//! to each dns API's `POST /v1/latency` as prober `CLUSTER/NAME`. The cluster is the one
//! bound into the agent's certificate, so an agent cannot report for another cluster;
//! `NAME` is its prober's `metadata.name`.
//!
//! dns being down is tolerated: each post is tried twice, then counted as failed
//! ([`crate::metrics::LATENCY_REPORTS_TOTAL`]) and logged once per outage; dns ages the
//! entries out when reports stop, as for `causeway probe`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_model::cluster::ClusterId;
use causeway_probe::report::{self, Measured};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio_util::sync::CancellationToken;

use super::state::StubState;
use crate::body;
pub use crate::config::{DnsUrl, DnsUrlError, LatencyReports};
use crate::mux::session::Sent;
use crate::protocol::{self, LATENCY_PATH};

/// How long an agent has to answer the poll.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one post to dns may take.
const POST_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per post to one dns API in one round.
const POST_ATTEMPTS: u32 = 2;
/// Pause between the attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Largest answer read from an agent (a config holds at most 10 000 client networks).
const MAX_ANSWER: usize = 2 << 20;

/// Polls and reports until `shutdown`; only while the stub is active (the lease holder),
/// so HA stubs do not report twice.
pub async fn run(shared: Arc<StubState>, config: LatencyReports, shutdown: CancellationToken) {
    tracing::info!(
        dns = ?config.dns.iter().map(ToString::to_string).collect::<Vec<_>>(),
        interval = ?config.interval,
        "reporting agents' measured latency"
    );
    let config = Arc::new(config);
    let failing: Arc<Vec<AtomicBool>> =
        Arc::new(config.dns.iter().map(|_| AtomicBool::new(false)).collect());
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !shared.is_active() {
            continue;
        }
        let mut round = tokio::task::JoinSet::new();
        for (cluster, _) in shared.registry.clusters() {
            let (shared, config, failing) = (shared.clone(), config.clone(), failing.clone());
            round.spawn(async move {
                if let Some(m) = poll(&shared, &cluster).await {
                    report_cluster(&shared, &config, &failing, &cluster, &m).await;
                }
            });
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = async { while round.join_next().await.is_some() {} } => {}
        }
    }
}

/// Asks one session of `cluster` for its prober's measurements; `None` when there is
/// no prober, no answer, or nothing measured yet.
async fn poll(shared: &StubState, cluster: &ClusterId) -> Option<Measured> {
    let session = shared
        .registry
        .pick(cluster, &super::registry::Avoid::none())?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("https://{cluster}{LATENCY_PATH}"))
        .header(&protocol::HDR_INTERNAL, protocol::INTERNAL_LATENCY)
        .body(body::empty())
        .ok()?;
    let _counted = session.begin(true);
    let exchange = async {
        let resp = match session.send(req).await {
            Sent::Response(r) => r,
            Sent::NotSent(_) => return Err("the session was closing".to_string()),
            Sent::Failed(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    };
    let (status, bytes) = match tokio::time::timeout(POLL_TIMEOUT, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(%cluster, error = %e, "latency poll failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%cluster, "latency poll: no answer within {POLL_TIMEOUT:?}");
            return None;
        }
    };
    if status == StatusCode::NOT_FOUND {
        tracing::trace!(%cluster, "no prober in this cluster's agent");
        return None;
    }
    if status != StatusCode::OK {
        tracing::debug!(%cluster, %status, "latency poll refused");
        return None;
    }
    match Measured::parse(&bytes) {
        Ok(m) if m.measurements.is_empty() => None,
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(%cluster, error = %e, "the agent's latency answer is refused");
            None
        }
    }
}

/// Posts `m` for `cluster` to every dns API.
async fn report_cluster(
    shared: &StubState,
    config: &LatencyReports,
    failing: &[AtomicBool],
    cluster: &ClusterId,
    m: &Measured,
) {
    let prober = format!("{cluster}/{}", m.prober);
    let body = report::body(&prober, cluster, &m.rtts());
    for (dns, was_failing) in config.dns.iter().zip(failing) {
        let mut last = String::new();
        let mut ok = false;
        for attempt in 0..POST_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            match post(dns, &body).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => last = e,
            }
        }
        let metrics = &shared.metrics;
        if ok {
            metrics.latency_reports.with_label_values(&["ok"]).inc();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            metrics
                .latency_last_report
                .set(i64::try_from(now).unwrap_or(i64::MAX));
            if was_failing.swap(false, Ordering::Relaxed) {
                tracing::info!(%dns, "latency reports to dns work again");
            }
            tracing::debug!(%dns, %prober, prefixes = m.measurements.len(), "reported");
        } else {
            metrics.latency_reports.with_label_values(&["failed"]).inc();
            if was_failing.swap(true, Ordering::Relaxed) {
                tracing::debug!(%dns, %prober, error = %last, "latency report failed");
            } else {
                tracing::warn!(%dns, %prober, error = %last, "latency report failed (logged once until it works again)");
            }
        }
    }
}

/// One post to `dns` (resolving its host first).
async fn post(dns: &DnsUrl, body: &str) -> Result<(), String> {
    let addr: SocketAddr = tokio::time::timeout(
        POST_TIMEOUT,
        tokio::net::lookup_host(dns.authority.as_str()),
    )
    .await
    .map_err(|_| "no address within the timeout".to_string())?
    .map_err(|e| format!("resolve: {e}"))?
    .next()
    .ok_or_else(|| "no address".to_string())?;
    report::post(addr, body, POST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dns_urls() {
        for (s, want) in [
            ("http://10.0.0.53:8053", "10.0.0.53:8053"),
            ("10.0.0.53:8053", "10.0.0.53:8053"),
            (
                "http://causeway-dns.causeway-system:8053/",
                "causeway-dns.causeway-system:8053",
            ),
            ("http://[::1]:8053", "[::1]:8053"),
        ] {
            assert_eq!(s.parse::<DnsUrl>().expect(s).authority, want);
        }
        for s in [
            "",
            "http://",
            "http://host",
            "http://host:0",
            "http://h:1/v1",
            "https://h:1",
        ] {
            assert!(s.parse::<DnsUrl>().is_err(), "{s}");
        }
    }
}
