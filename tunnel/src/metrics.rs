//! Prometheus metrics of the tunnel. Names are constants; handles are built once;
//! labels are bounded (cluster IDs of enrolled clusters, verbs, status codes).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Requests finished, by cluster, verb and HTTP status code.
pub const REQUESTS_TOTAL: &str = "causeway_tunnel_requests_total";
/// Request duration until the response body ended, seconds, by cluster and verb.
pub const REQUEST_DURATION: &str = "causeway_tunnel_request_duration_seconds";
/// Time to response headers, seconds, by cluster and verb.
pub const RESPONSE_HEADERS: &str = "causeway_tunnel_response_headers_seconds";
/// Live agent sessions, by cluster.
pub const AGENT_SESSIONS: &str = "causeway_tunnel_agent_sessions";
/// Streams open through the stub (requests whose response has not ended).
pub const OPEN_STREAMS: &str = "causeway_tunnel_open_streams";
/// Body bytes carried, by cluster and direction (`up` = to the cluster, `down`).
pub const BYTES_TOTAL: &str = "causeway_tunnel_bytes_total";
/// Requests retried on another session because the first never left.
pub const RETRIES_TOTAL: &str = "causeway_tunnel_retries_total";
/// Requests sent over a data connection instead of a session stream.
pub const DATA_REQUESTS_TOTAL: &str = "causeway_tunnel_data_connection_requests_total";
/// Idle data connections, all clusters.
pub const DATA_IDLE: &str = "causeway_tunnel_data_connections_idle";
/// 1 while this stub holds the lease (or runs without one), else 0.
pub const ACTIVE: &str = "causeway_tunnel_stub_active";

/// The stub's metric handles.
pub struct Metrics {
    registry: Registry,
    /// See [`REQUESTS_TOTAL`].
    pub requests: IntCounterVec,
    /// See [`REQUEST_DURATION`].
    pub duration: HistogramVec,
    /// See [`RESPONSE_HEADERS`].
    pub headers: HistogramVec,
    /// See [`AGENT_SESSIONS`].
    pub sessions: IntGaugeVec,
    /// See [`OPEN_STREAMS`].
    pub open_streams: IntGauge,
    /// See [`BYTES_TOTAL`].
    pub bytes: IntCounterVec,
    /// See [`RETRIES_TOTAL`].
    pub retries: IntCounterVec,
    /// See [`ACTIVE`].
    pub active: IntGauge,
    /// See [`DATA_REQUESTS_TOTAL`].
    pub data_requests: IntCounter,
    /// See [`DATA_IDLE`].
    pub data_idle: IntGauge,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Registration fails only on duplicate or malformed names, which are constants here.
        let requests = IntCounterVec::new(
            Opts::new(
                REQUESTS_TOTAL,
                "Requests through the stub, by cluster, verb and code.",
            ),
            &["cluster", "verb", "code"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                REQUEST_DURATION,
                "Request duration until the response ended.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["cluster", "verb"],
        )
        .expect("valid metric");
        let headers = HistogramVec::new(
            HistogramOpts::new(
                RESPONSE_HEADERS,
                "Time until the response headers were sent.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["cluster", "verb"],
        )
        .expect("valid metric");
        let sessions = IntGaugeVec::new(
            Opts::new(AGENT_SESSIONS, "Live agent sessions, by cluster."),
            &["cluster"],
        )
        .expect("valid metric");
        let open_streams =
            IntGauge::new(OPEN_STREAMS, "Streams open through the stub.").expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new(BYTES_TOTAL, "Body bytes carried, by cluster and direction."),
            &["cluster", "direction"],
        )
        .expect("valid metric");
        let retries = IntCounterVec::new(
            Opts::new(RETRIES_TOTAL, "Requests retried on another agent session."),
            &["cluster"],
        )
        .expect("valid metric");
        let active =
            IntGauge::new(ACTIVE, "1 while this stub serves users.").expect("valid metric");
        let data_requests = IntCounter::new(
            DATA_REQUESTS_TOTAL,
            "Requests sent over an agent's HTTP/1.1 data connection instead of a session stream.",
        )
        .expect("valid metric");
        let data_idle = IntGauge::new(DATA_IDLE, "Idle agent data connections, all clusters.")
            .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(headers.clone()),
            Box::new(sessions.clone()),
            Box::new(open_streams.clone()),
            Box::new(bytes.clone()),
            Box::new(retries.clone()),
            Box::new(active.clone()),
            Box::new(data_requests.clone()),
            Box::new(data_idle.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Metrics {
            registry,
            requests,
            duration,
            headers,
            sessions,
            open_streams,
            bytes,
            retries,
            active,
            data_requests,
            data_idle,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family() {
        let m = Metrics::new();
        m.requests.with_label_values(&["a", "get", "200"]).inc();
        m.sessions.with_label_values(&["a"]).set(2);
        m.open_streams.set(1);
        let text = m.encode();
        for name in [REQUESTS_TOTAL, AGENT_SESSIONS, OPEN_STREAMS] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}
