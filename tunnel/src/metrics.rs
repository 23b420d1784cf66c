//! Prometheus metrics of the tunnel. Names are constants; handles are built once;
//! labels are bounded (cluster IDs of enrolled clusters, verbs, status codes).

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
/// Requests sent again, by cluster and outcome: `not_sent` (the session closed before
/// the request left; another session took it), `answered` / `failed` (an idempotent
/// request lost with its agent's connection before any response header, sent once more
/// away from that agent), `no_connection` (no other connection to send it to).
pub const RETRIES_TOTAL: &str = "causeway_tunnel_retries_total";
/// Requests sent over a data connection instead of a session stream.
pub const DATA_REQUESTS_TOTAL: &str = "causeway_tunnel_data_connection_requests_total";
/// Idle data connections, all clusters.
pub const DATA_IDLE: &str = "causeway_tunnel_data_connections_idle";
/// 1 while this stub holds the lease (or runs without one), else 0.
pub const ACTIVE: &str = "causeway_tunnel_stub_active";
/// Connections closed by the handshake caps, by listener (`users`, `agents`) and reason
/// (`source_limit`: refused at accept; `evicted`: the oldest handshake, at the global cap).
pub const HANDSHAKES_REFUSED: &str = "causeway_tunnel_handshakes_refused_total";
/// TLS handshakes in progress, by listener.
pub const HANDSHAKES_IN_PROGRESS: &str = "causeway_tunnel_handshakes_in_progress";
/// Reports of agents' measured latency to dns, by result (`ok`, `failed`).
pub const LATENCY_REPORTS_TOTAL: &str = "causeway_tunnel_latency_reports_total";
/// When the last latency report to dns succeeded, seconds since the epoch.
pub const LATENCY_LAST_REPORT: &str = "causeway_tunnel_latency_last_report_timestamp_seconds";

/// The stub's metric handles.
pub struct Metrics {
    registry: MetricRegistry,
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
    /// See [`HANDSHAKES_REFUSED`].
    pub handshakes_refused: IntCounterVec,
    /// See [`HANDSHAKES_IN_PROGRESS`].
    pub handshakes_in_progress: IntGaugeVec,
    /// See [`LATENCY_REPORTS_TOTAL`].
    pub latency_reports: IntCounterVec,
    /// See [`LATENCY_LAST_REPORT`].
    pub latency_last_report: IntGauge,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let r = MetricRegistry::new();
        Metrics {
            requests: r.counter_vec(
                REQUESTS_TOTAL,
                "Requests through the stub, by cluster, verb and code.",
                &["cluster", "verb", "code"],
            ),
            duration: r.histogram_vec(
                REQUEST_DURATION,
                "Request duration until the response ended.",
                &["cluster", "verb"],
                LATENCY_BUCKETS,
            ),
            headers: r.histogram_vec(
                RESPONSE_HEADERS,
                "Time until the response headers were sent.",
                &["cluster", "verb"],
                LATENCY_BUCKETS,
            ),
            sessions: r.gauge_vec(
                AGENT_SESSIONS,
                "Live agent sessions, by cluster.",
                &["cluster"],
            ),
            open_streams: r.gauge(OPEN_STREAMS, "Streams open through the stub."),
            bytes: r.counter_vec(
                BYTES_TOTAL,
                "Body bytes carried, by cluster and direction.",
                &["cluster", "direction"],
            ),
            retries: r.counter_vec(
                RETRIES_TOTAL,
                "Requests sent again on another connection, by cluster and outcome.",
                &["cluster", "outcome"],
            ),
            active: r.gauge(ACTIVE, "1 while this stub serves users."),
            data_requests: r.counter(
                DATA_REQUESTS_TOTAL,
                "Requests sent over an agent's HTTP/1.1 data connection instead of a session stream.",
            ),
            data_idle: r.gauge(DATA_IDLE, "Idle agent data connections, all clusters."),
            handshakes_refused: r.counter_vec(
                HANDSHAKES_REFUSED,
                "Connections closed by the handshake caps, by listener and reason.",
                &["listener", "reason"],
            ),
            handshakes_in_progress: r.gauge_vec(
                HANDSHAKES_IN_PROGRESS,
                "TLS handshakes in progress, by listener.",
                &["listener"],
            ),
            latency_reports: r.counter_vec(
                LATENCY_REPORTS_TOTAL,
                "Reports of agents' measured latency to dns, by result.",
                &["result"],
            ),
            latency_last_report: r.gauge(
                LATENCY_LAST_REPORT,
                "When the last latency report to dns succeeded, seconds since the epoch.",
            ),
            registry: r,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        self.registry.encode()
    }
}

/// A Prometheus registry that registers each metric as it is made. Names are
/// constants, so making or registering one fails only on a programming error.
pub struct MetricRegistry(Registry);

impl MetricRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        MetricRegistry(Registry::new())
    }

    fn register<C: Collector + Clone + 'static>(&self, metric: C) -> C {
        self.0
            .register(Box::new(metric.clone()))
            .expect("unique metric name");
        metric
    }

    /// A counter.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("valid metric"))
    }

    /// A counter with labels.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A gauge.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("valid metric"))
    }

    /// A gauge with labels.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A histogram.
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(Histogram::with_opts(opts).expect("valid metric"))
    }

    /// A histogram with labels.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(HistogramVec::new(opts, labels).expect("valid metric"))
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.0.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for MetricRegistry {
    fn default() -> Self {
        Self::new()
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
