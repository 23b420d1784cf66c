//! The scheduler's Prometheus metrics (`causeway_scheduler_*`), built once.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the scheduler.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Rounds done, by result (`ok`, `config_error`).
    pub rounds: IntCounterVec,
    /// Replicas per policy, cluster and kind (`current`, `ready`, `planned`).
    pub replicas: IntGaugeVec,
    /// Writes attempted by cluster, action and result (`ok` or the error label).
    pub writes: IntCounterVec,
    /// Policy files that failed to reload (the last good ones kept running).
    pub config_errors: IntCounter,
    /// Seconds from the overflow first appearing to the burst replicas all Ready.
    pub burst_ready_seconds: HistogramVec,
    /// Seconds per round (observe, plan, apply, publish).
    pub round_seconds: HistogramVec,
    /// 1 while this replica is the leader (or runs alone), else 0.
    pub leader: IntGauge,
    /// Failovers completed (the promoted cluster serving), by policy.
    pub failovers: IntCounterVec,
    /// The last failover's RTO per policy: loss first seen → promoted cluster serving.
    pub failover_rto_seconds: GaugeVec,
    /// 1 for the cluster holding each failover policy's primary role.
    pub primary: IntGaugeVec,
    /// Production mode: `status` writes to the hub's policy objects, by what was written
    /// (`verdict`: Accepted or not; `decision`: the plan) and result (`ok`, `error`).
    pub status_writes: IntCounterVec,
}

impl Metrics {
    /// Creates and registers them.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let rounds = IntCounterVec::new(
            Opts::new(
                "causeway_scheduler_rounds_total",
                "Rounds of observe-plan-apply-publish.",
            ),
            &["result"],
        )?;
        let replicas = IntGaugeVec::new(
            Opts::new(
                "causeway_scheduler_replicas",
                "Replicas per policy and cluster.",
            ),
            &["policy", "cluster", "kind"],
        )?;
        let writes = IntCounterVec::new(
            Opts::new(
                "causeway_scheduler_writes_total",
                "Writes into member clusters.",
            ),
            &["cluster", "action", "result"],
        )?;
        let config_errors = IntCounter::new(
            "causeway_scheduler_config_errors_total",
            "Policy reloads refused; the last good policies keep running.",
        )?;
        let burst_ready_seconds = HistogramVec::new(
            HistogramOpts::new(
                "causeway_scheduler_burst_ready_seconds",
                "From overflow appearing to every planned burst replica Ready.",
            )
            .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]),
            &["policy"],
        )?;
        let round_seconds = HistogramVec::new(
            HistogramOpts::new("causeway_scheduler_round_seconds", "Duration of one round.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["stage"],
        )?;
        registry.register(Box::new(rounds.clone()))?;
        registry.register(Box::new(replicas.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(config_errors.clone()))?;
        registry.register(Box::new(burst_ready_seconds.clone()))?;
        let leader = IntGauge::new(
            "causeway_scheduler_leader",
            "1 while this replica writes (the Lease holder, or the only replica).",
        )?;
        registry.register(Box::new(round_seconds.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        let failovers = IntCounterVec::new(
            Opts::new(
                "causeway_scheduler_failovers_total",
                "Failovers completed (the promoted cluster serving).",
            ),
            &["policy"],
        )?;
        let failover_rto_seconds = GaugeVec::new(
            Opts::new(
                "causeway_scheduler_failover_rto_seconds",
                "The last failover's RTO: primary lost first seen to the promoted cluster serving.",
            ),
            &["policy"],
        )?;
        let primary = IntGaugeVec::new(
            Opts::new(
                "causeway_scheduler_primary",
                "1 for the cluster holding a failover policy's primary role.",
            ),
            &["policy", "cluster"],
        )?;
        registry.register(Box::new(failovers.clone()))?;
        registry.register(Box::new(failover_rto_seconds.clone()))?;
        registry.register(Box::new(primary.clone()))?;
        let status_writes = IntCounterVec::new(
            Opts::new(
                "causeway_scheduler_status_writes_total",
                "Status writes to the hub's policy objects (production mode).",
            ),
            &["what", "result"],
        )?;
        registry.register(Box::new(status_writes.clone()))?;
        Ok(Self {
            registry,
            rounds,
            replicas,
            writes,
            config_errors,
            burst_ready_seconds,
            round_seconds,
            leader,
            failovers,
            failover_rto_seconds,
            primary,
            status_writes,
        })
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
