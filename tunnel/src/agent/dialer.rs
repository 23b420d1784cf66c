//! Dialling the stub forever: one loop per session slot, with capped exponential
//! backoff and jitter between attempts. While a session is up, its data connections
//! (HTTP/1.1, [`crate::protocol::ALPN_DATA`]) are held open beside it and closed
//! with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::forward::{Carrier, Forwarder};
use crate::transport::{HttpsUrl, HttpsUrlError};
use crate::{mux, transport};

/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay (before jitter).
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A session that lived this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);
/// Least time between two dials of one data connection slot: cancelled requests close
/// data connections, and must not turn into a storm of TLS handshakes.
const DATA_REDIAL_MIN: Duration = Duration::from_millis(50);
/// Most request headers the agent reads on a data connection.
const DATA_MAX_HEADERS: usize = 512;

/// One stub to dial.
#[derive(Clone, Debug)]
pub struct StubTarget {
    /// `host:port` of the stub's agent listener.
    pub addr: String,
    /// The TLS name the stub's certificate must carry.
    pub server_name: String,
}

/// A `--stub` URL that is not `https://HOST[:PORT]`.
#[derive(Debug, thiserror::Error)]
#[error("--stub {url:?}: {reason}")]
pub struct StubUrlError {
    /// The URL.
    pub url: String,
    /// What is wrong.
    pub reason: String,
}

impl StubTarget {
    /// Parses `https://HOST[:PORT]` (port 443 by default).
    pub fn from_url(url: &str) -> Result<StubTarget, StubUrlError> {
        let target: HttpsUrl = url.parse().map_err(|e: HttpsUrlError| StubUrlError {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(StubTarget {
            addr: target.addr,
            server_name: target.host,
        })
    }
}

/// The delay before attempt `failures + 1`: `min(MAX, MIN·2^failures)`, then a
/// uniform draw from its upper half (jitter keeps a fleet of agents from
/// reconnecting in lock-step after a stub restart).
pub fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1u32 << failures.min(16));
    let cap = exp.min(BACKOFF_MAX);
    let half = cap / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

/// What every dial loop of one agent shares.
pub struct Dialer {
    /// Client TLS for sessions (ALPN [`crate::protocol::ALPN_TUNNEL`]).
    pub tls: Arc<rustls::ClientConfig>,
    /// Client TLS for data connections (ALPN [`crate::protocol::ALPN_DATA`]).
    pub data_tls: Arc<rustls::ClientConfig>,
    /// Data connections held beside each session (0: none).
    pub data_connections: usize,
    /// Where requests go.
    pub forwarder: Arc<Forwarder>,
    /// Counters.
    pub metrics: Arc<super::metrics::AgentMetrics>,
    /// The prober whose measurements internal requests read (none: no prober).
    pub prober: Option<Arc<super::prober::Prober>>,
}

/// Keeps one session to `target` open until `shutdown`, with its data connections.
pub async fn hold(
    dialer: Arc<Dialer>,
    target: StubTarget,
    slot: usize,
    shutdown: CancellationToken,
) {
    let Dialer {
        tls,
        forwarder,
        metrics,
        ..
    } = &*dialer;
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let span = tracing::info_span!("tunnel.agent.session", stub = %target.addr, slot);
        let attempt = async {
            let tls_stream = transport::connect_tls(
                &target.addr,
                &target.server_name,
                tls.clone(),
                transport::BULK_READ_BUFFER,
            )
            .await?;
            tracing::info!(stub = %target.addr, slot, "session established");
            let _up = super::metrics::OpenStream::new(&metrics.sessions);
            // The data connections live exactly as long as this session.
            let session_up = shutdown.child_token();
            let _close_data = session_up.clone().drop_guard();
            for i in 0..dialer.data_connections {
                tokio::spawn(
                    hold_data(dialer.clone(), target.clone(), session_up.clone())
                        .instrument(tracing::debug_span!("tunnel.agent.data", slot, i)),
                );
            }
            let (fwd, prober) = (forwarder.clone(), dialer.prober.clone());
            let svc = service_fn(move |req| {
                let (fwd, prober) = (fwd.clone(), prober.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        super::prober::dispatch(prober, fwd, req, Carrier::Stream).await,
                    )
                }
            });
            mux::session::serve(tls_stream, svc)
                .await
                .map_err(DialError::Session)
        }
        .instrument(span.clone());
        let result = tokio::select! {
            r = attempt => r,
            () = shutdown.cancelled() => return,
        };
        match result {
            Ok(()) => span.in_scope(|| tracing::info!("session closed by the stub")),
            Err(e) => {
                metrics.session_failures.inc();
                span.in_scope(|| tracing::warn!(error = %e, "session failed"))
            }
        }
        if started.elapsed() >= STABLE {
            failures = 0;
        }
        let delay = backoff(failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Keeps one data connection to `target` open until `stop` (its session ended).
///
/// A connection that carried requests is replaced when it closes (the stub closes one
/// whenever a response did not end cleanly, e.g. a cancelled request), at most every
/// [`DATA_REDIAL_MIN`]; one that failed before carrying any waits with backoff.
async fn hold_data(dialer: Arc<Dialer>, target: StubTarget, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let dialled = Instant::now();
        let used = Arc::new(AtomicBool::new(false));
        let attempt = async {
            let tls_stream = transport::connect_tls(
                &target.addr,
                &target.server_name,
                dialer.data_tls.clone(),
                // What the agent reads here are requests: mostly small.
                transport::SMALL_READ_BUFFER,
            )
            .await?;
            transport::watch_liveness(tls_stream.get_ref().0.get_ref());
            let (fwd, used) = (dialer.forwarder.clone(), used.clone());
            let prober = dialer.prober.clone();
            let svc = service_fn(move |req| {
                used.store(true, Ordering::Relaxed);
                let (fwd, prober) = (fwd.clone(), prober.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        super::prober::dispatch(prober, fwd, req, Carrier::DataConnection).await,
                    )
                }
            });
            hyper::server::conn::http1::Builder::new()
                // An idle data connection waits for its next request indefinitely;
                // TCP keep-alive (`watch_liveness`) notices a dead stub.
                .header_read_timeout(None)
                // As many headers as a user's HTTP/2 request can bring to the stub
                // (16 KiB of header list), not HTTP/1.1's default 100.
                .max_headers(DATA_MAX_HEADERS)
                .serve_connection(hyper_util::rt::TokioIo::new(tls_stream), svc)
                .await
                .map_err(DialError::Session)
        };
        let result = tokio::select! {
            r = attempt => r,
            () = stop.cancelled() => return,
        };
        if let Err(e) = &result {
            tracing::debug!(error = %e, "data connection ended");
        }
        let delay = if used.load(Ordering::Relaxed) {
            failures = 0;
            DATA_REDIAL_MIN.saturating_sub(dialled.elapsed())
        } else {
            failures = failures.saturating_add(1);
            backoff(failures - 1)
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Why a session attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Could not connect.
    #[error("{0}")]
    Connect(#[from] transport::TransportError),
    /// The session (or data connection) broke.
    #[error("session: {0}")]
    Session(hyper::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stub_urls() {
        let t = StubTarget::from_url("https://127.0.0.1:7443").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.server_name.as_str()),
            ("127.0.0.1:7443", "127.0.0.1")
        );
        let t = StubTarget::from_url("https://stub.example").unwrap();
        assert_eq!(t.addr, "stub.example:443");
        assert!(StubTarget::from_url("http://x:1").is_err());
        assert!(StubTarget::from_url("nonsense url").is_err());
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for f in 0..40 {
            let d = backoff(f);
            let exp = BACKOFF_MIN
                .saturating_mul(1u32 << f.min(16))
                .min(BACKOFF_MAX);
            assert!(d >= exp / 2 && d <= exp, "failures {f}: {d:?}");
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| backoff(5)).collect();
        assert!(draws.len() > 1, "no jitter");
    }
}
