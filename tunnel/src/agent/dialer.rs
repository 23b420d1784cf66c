//! Dialling the stub forever: one loop per session slot, with capped exponential
//! backoff and jitter between attempts.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::forward::Forwarder;
use crate::{mux, transport};

/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay (before jitter).
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A session that lived this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

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
        let err = |reason: &str| StubUrlError {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| err("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(err("must start with https://"));
        }
        let host = uri
            .host()
            .ok_or_else(|| err("has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(StubTarget {
            addr,
            server_name: host,
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

/// Keeps one session to `target` open until `shutdown`.
pub async fn hold(
    target: StubTarget,
    slot: usize,
    tls: Arc<rustls::ClientConfig>,
    forwarder: Arc<Forwarder>,
    metrics: Arc<super::metrics::AgentMetrics>,
    shutdown: CancellationToken,
) {
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
            let fwd = forwarder.clone();
            let svc = service_fn(move |req| {
                let fwd = fwd.clone();
                async move { Ok::<_, std::convert::Infallible>(fwd.handle(req).await) }
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

/// Why a session attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Could not connect.
    #[error("{0}")]
    Connect(#[from] transport::TransportError),
    /// The session broke.
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
