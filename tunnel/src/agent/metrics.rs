//! The agent's Prometheus metrics and its metrics listener (plain HTTP): `/metrics`,
//! `/healthz`, `/readyz` (ready while at least one session to a stub is up).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::TunnelBody;
use crate::metrics::MetricRegistry;
use crate::transport;

/// Sessions to stubs that are up.
pub const SESSIONS: &str = "causeway_agent_sessions";
/// Session attempts that failed or sessions that broke.
pub const SESSION_FAILURES: &str = "causeway_agent_session_failures_total";
/// Streams from stubs answered, by HTTP status code.
pub const REQUESTS: &str = "causeway_agent_requests_total";
/// Time from a stream's arrival to the API server's response headers, seconds.
pub const RESPONSE_HEADERS: &str = "causeway_agent_response_headers_seconds";
/// Streams whose response has not ended (watches, logs -f and exec count while open).
pub const OPEN_STREAMS: &str = "causeway_agent_open_streams";
/// Self-fences written, by result (`fenced`, `failed`: retried next round).
pub const FENCES: &str = "causeway_agent_fences_total";
/// Role Leases seen at the last successful list, by state (`valid`, `expired`, `invalid`).
pub const ROLE_LEASES: &str = "causeway_agent_role_leases";

/// The agent's metric handles.
pub struct AgentMetrics {
    registry: MetricRegistry,
    /// See [`SESSIONS`].
    pub sessions: IntGauge,
    /// See [`SESSION_FAILURES`].
    pub session_failures: IntCounter,
    /// See [`REQUESTS`].
    pub requests: IntCounterVec,
    /// See [`RESPONSE_HEADERS`].
    pub response_headers: Histogram,
    /// See [`OPEN_STREAMS`].
    pub open_streams: IntGauge,
    /// See [`FENCES`].
    pub fences: IntCounterVec,
    /// See [`ROLE_LEASES`].
    pub role_leases: IntGaugeVec,
}

impl AgentMetrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> AgentMetrics {
        let r = MetricRegistry::new();
        AgentMetrics {
            sessions: r.gauge(SESSIONS, "Sessions to stubs that are up."),
            session_failures: r.counter(
                SESSION_FAILURES,
                "Session attempts that failed or sessions that broke.",
            ),
            requests: r.counter_vec(
                REQUESTS,
                "Streams answered, by HTTP status code.",
                &["code"],
            ),
            response_headers: r.histogram(
                RESPONSE_HEADERS,
                "Time from a stream's arrival to the API server's response headers.",
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ],
            ),
            open_streams: r.gauge(OPEN_STREAMS, "Streams whose response has not ended."),
            fences: r.counter_vec(
                FENCES,
                "Self-fences written (fenced) or failed and retried (failed).",
                &["result"],
            ),
            role_leases: r.gauge_vec(
                ROLE_LEASES,
                "Role leases at the last successful list, by state (valid, expired, invalid).",
                &["state"],
            ),
            registry: r,
        }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        self.registry.encode()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics::new()
    }
}

/// Counts one open stream until dropped.
pub struct OpenStream(IntGauge);

impl OpenStream {
    /// Counts a stream as open.
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        OpenStream(gauge.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves the agent's metrics listener until `shutdown`.
pub async fn serve(metrics: Arc<AgentMetrics>, listener: TcpListener, shutdown: CancellationToken) {
    transport::serve_plain_http(listener, shutdown, move |req| answer(&metrics, req)).await;
}

fn answer(metrics: &AgentMetrics, req: &Request<Incoming>) -> Response<TunnelBody> {
    let path = req.uri().path();
    if let Some(r) = transport::common_endpoint(path, || metrics.encode()) {
        return r;
    }
    let text = transport::text_response;
    match path {
        "/readyz" if metrics.sessions.get() > 0 => text(StatusCode::OK, "connected\n".into()),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no session to any stub\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}
