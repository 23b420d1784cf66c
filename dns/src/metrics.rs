//! Prometheus metrics. Names are constants; labels are bounded (zone, qtype, rcode,
//! cluster, policy, reason enums from the config or the code), never a client address.
//!
//! Handles used per query are resolved once, when an answer is prepared, and kept in
//! the prepared answer, so a query costs a few atomic increments.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Queries answered, by zone, qtype and rcode.
pub const QUERIES_TOTAL: &str = "causeway_dns_queries_total";
/// GSLB answers, by cluster and policy.
pub const ANSWERS_TOTAL: &str = "causeway_dns_answers_total";
/// GSLB answers given with every target unhealthy, by policy.
pub const FAIL_OPEN_TOTAL: &str = "causeway_dns_fail_open_total";
/// Health transitions of targets, by cluster and new state.
pub const HEALTH_TRANSITIONS_TOTAL: &str = "causeway_dns_health_transitions_total";
/// Prefixes in the latency map.
pub const LATENCY_MAP_PREFIXES: &str = "causeway_dns_latency_map_prefixes";
/// Packets not answered normally, by reason.
pub const DROPPED_TOTAL: &str = "causeway_dns_dropped_total";
/// Replies sent truncated (TC), by reason (`size`, `rate_limit`).
pub const TRUNCATED_TOTAL: &str = "causeway_dns_truncated_total";
/// Config reloads, by result.
pub const RELOADS_TOTAL: &str = "causeway_dns_config_reloads_total";
/// Generation of the snapshot serving now.
pub const SNAPSHOT_GENERATION: &str = "causeway_dns_snapshot_generation";
/// Open TCP connections.
pub const TCP_CONNECTIONS: &str = "causeway_dns_tcp_connections";
/// Placement inputs (HTTP or in process), by result (`ok` or the error's reason).
pub const PLACEMENT_UPDATES_TOTAL: &str = "causeway_dns_placement_updates_total";
/// GSLB targets whose weight, role and health a placement sets, by role.
pub const PLACEMENT_TARGETS: &str = "causeway_dns_placement_targets";

/// Every metric of the DNS server.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    queries: IntCounterVec,
    answers: IntCounterVec,
    fail_open: IntCounterVec,
    transitions: IntCounterVec,
    /// Latency map size.
    pub latency_prefixes: IntGauge,
    dropped: IntCounterVec,
    truncated: IntCounterVec,
    reloads: IntCounterVec,
    /// Snapshot generation.
    pub generation: IntGauge,
    /// Open TCP connections.
    pub tcp_connections: IntGauge,
    placement_updates: IntCounterVec,
    placement_targets: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    // Registration only fails on duplicate names, which are constants above.
    let _ = r.register(Box::new(c.clone()));
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            queries: counter_vec(
                &r,
                QUERIES_TOTAL,
                "DNS queries answered.",
                &["zone", "qtype", "rcode"],
            ),
            answers: counter_vec(
                &r,
                ANSWERS_TOTAL,
                "GSLB answers by cluster and policy.",
                &["cluster", "policy"],
            ),
            fail_open: counter_vec(
                &r,
                FAIL_OPEN_TOTAL,
                "GSLB answers given with every target unhealthy (all targets answered).",
                &["policy"],
            ),
            transitions: counter_vec(
                &r,
                HEALTH_TRANSITIONS_TOTAL,
                "Target health transitions.",
                &["cluster", "to"],
            ),
            latency_prefixes: gauge(&r, LATENCY_MAP_PREFIXES, "Prefixes in the latency map."),
            dropped: counter_vec(&r, DROPPED_TOTAL, "Packets not answered.", &["reason"]),
            truncated: counter_vec(
                &r,
                TRUNCATED_TOTAL,
                "Replies sent with TC set.",
                &["reason"],
            ),
            reloads: counter_vec(&r, RELOADS_TOTAL, "Config reloads.", &["result"]),
            generation: gauge(
                &r,
                SNAPSHOT_GENERATION,
                "Generation of the serving snapshot.",
            ),
            tcp_connections: gauge(&r, TCP_CONNECTIONS, "Open TCP connections."),
            placement_updates: counter_vec(
                &r,
                PLACEMENT_UPDATES_TOTAL,
                "Placement inputs, by result.",
                &["result"],
            ),
            placement_targets: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        PLACEMENT_TARGETS,
                        "GSLB targets whose weight, role and health a placement sets.",
                    ),
                    &["role"],
                )
                .unwrap_or_else(|e| unreachable!("metric {PLACEMENT_TARGETS}: {e}"));
                let _ = r.register(Box::new(g.clone()));
                g
            },
            registry: r,
        }
    }

    /// Counter of queries for (zone, qtype, rcode).
    pub fn queries(&self, zone: &str, qtype: &str, rcode: &str) -> IntCounter {
        self.queries.with_label_values(&[zone, qtype, rcode])
    }

    /// Counter of answers for (cluster, policy).
    pub fn answers(&self, cluster: &str, policy: &str) -> IntCounter {
        self.answers.with_label_values(&[cluster, policy])
    }

    /// Fail-open counter of a policy.
    pub fn fail_open(&self, policy: &str) -> IntCounter {
        self.fail_open.with_label_values(&[policy])
    }

    /// Counts a health transition.
    pub fn transition(&self, cluster: &str, to: &str) {
        self.transitions.with_label_values(&[cluster, to]).inc();
    }

    /// Counter of dropped packets for a reason.
    pub fn dropped(&self, reason: &'static str) -> IntCounter {
        self.dropped.with_label_values(&[reason])
    }

    /// Counter of truncated replies for a reason.
    pub fn truncated(&self, reason: &'static str) -> IntCounter {
        self.truncated.with_label_values(&[reason])
    }

    /// Counts a placement input with its result (`ok` or an error reason).
    pub fn placement_update(&self, result: &'static str) {
        self.placement_updates.with_label_values(&[result]).inc();
    }

    /// Gauge of targets under a placement with `role`.
    pub fn placement_targets(&self, role: &'static str) -> IntGauge {
        self.placement_targets.with_label_values(&[role])
    }

    /// Counts a reload.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Label for a query type (bounded: known types, else `other`).
pub fn qtype_label(qtype: u16) -> &'static str {
    match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        43 => "DS",
        65 => "HTTPS",
        255 => "ANY",
        257 => "CAA",
        _ => "other",
    }
}
