//! What to start: clusters, their fake nodes, and where.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use causeway_model::ClusterId;

use crate::TestbedError;
use crate::quantity::check_quantity;

/// One cluster of the testbed and the fake nodes kwok runs for it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterSpec {
    /// Cluster ID, a DNS label (`idc-bj`).
    pub name: String,
    /// Number of kwok nodes.
    pub nodes: u32,
    /// CPU capacity of each node, a Kubernetes quantity (`32`).
    pub node_cpu: String,
    /// Memory capacity of each node, a Kubernetes quantity (`128Gi`).
    pub node_memory: String,
    /// Maximum pods on each node.
    pub node_pods: u32,
}

impl ClusterSpec {
    /// Default node count.
    pub const DEFAULT_NODES: u32 = 2;
    /// Default CPU per node.
    pub const DEFAULT_CPU: &str = "32";
    /// Default memory per node.
    pub const DEFAULT_MEMORY: &str = "128Gi";
    /// Default pods per node.
    pub const DEFAULT_PODS: u32 = 110;

    /// A cluster with the default node shape (2 nodes of 32 CPU, 128Gi, 110 pods).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            nodes: Self::DEFAULT_NODES,
            node_cpu: Self::DEFAULT_CPU.to_owned(),
            node_memory: Self::DEFAULT_MEMORY.to_owned(),
            node_pods: Self::DEFAULT_PODS,
        }
    }

    /// Checks the name and the node shape; errors name the CLI option at fault.
    pub fn validate(&self) -> Result<(), TestbedError> {
        ClusterId::new(self.name.as_str()).map_err(|source| TestbedError::ClusterName {
            name: self.name.clone(),
            source,
        })?;
        // Longer names would not fit the certificate and node names we derive from them.
        if self.name.len() > 40 {
            return Err(TestbedError::BadOption {
                option: "--clusters",
                value: self.name.clone(),
                reason: "testbed cluster names are at most 40 characters".into(),
            });
        }
        if !(1..=100).contains(&self.nodes) {
            return Err(TestbedError::BadOption {
                option: "--nodes",
                value: self.nodes.to_string(),
                reason: "must be between 1 and 100".into(),
            });
        }
        if !(1..=10_000).contains(&self.node_pods) {
            return Err(TestbedError::BadOption {
                option: "--node-pods",
                value: self.node_pods.to_string(),
                reason: "must be between 1 and 10000".into(),
            });
        }
        for (option, value) in [
            ("--node-cpu", &self.node_cpu),
            ("--node-memory", &self.node_memory),
        ] {
            check_quantity(value).map_err(|reason| TestbedError::BadOption {
                option,
                value: value.clone(),
                reason,
            })?;
        }
        Ok(())
    }
}

/// Splits `idc-bj,ali-hz,aws-sg` into cluster names, rejecting empty and duplicate ones.
pub fn parse_cluster_names(list: &str) -> Result<Vec<String>, TestbedError> {
    let mut names: Vec<String> = Vec::new();
    for raw in list.split(',') {
        let name = raw.trim();
        ClusterId::new(name).map_err(|source| TestbedError::ClusterName {
            name: name.to_owned(),
            source,
        })?;
        if names.iter().any(|n| n == name) {
            return Err(TestbedError::BadOption {
                option: "--clusters",
                value: list.to_owned(),
                reason: format!("cluster {name:?} is listed twice"),
            });
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// How to run a testbed: which clusters, where, and how long to wait for them.
#[derive(Clone, Debug)]
pub struct TestbedOptions {
    /// The clusters, in order; cluster `i` gets address `base_address + i`.
    pub clusters: Vec<ClusterSpec>,
    /// Directory for certificates, data, logs, kubeconfigs and `state.json`.
    pub state_dir: PathBuf,
    /// Where the binaries are; `None` means [`crate::bin_dir`].
    pub bin_dir: Option<PathBuf>,
    /// Address of the first cluster; must be in 127.0.0.0/8.
    pub base_address: Ipv4Addr,
    /// `true`: children are detached (own session, survive this process; stop them with
    /// [`crate::down_state_dir`]). `false`: children die with this process and on drop.
    pub detached: bool,
    /// How long to wait for every cluster to be Ready.
    pub ready_timeout: Duration,
    /// The resource-metrics pipeline (metrics-server, simulated pod CPU) and the HPA
    /// controller's timing.
    pub metrics: MetricsOptions,
}

/// The resource-metrics pipeline of every cluster: kwok simulates each pod's CPU and memory
/// (from the pod annotations [`crate::SIMULATED_CPU_ANNOTATION`] and
/// [`crate::SIMULATED_MEMORY_ANNOTATION`]), metrics-server scrapes kwok and serves
/// `metrics.k8s.io` through the kube-apiserver's aggregation layer, and the HPA controller of
/// kube-controller-manager scales on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsOptions {
    /// Run metrics-server and register `v1beta1.metrics.k8s.io`. Without it, HPAs exist but
    /// report `FailedGetResourceMetric`, and `kubectl top` fails.
    pub enabled: bool,
    /// How often metrics-server scrapes kwok (`--metric-resolution`, at least 10 s). A CPU
    /// value needs two scrapes: it is a rate over the last two.
    pub resolution: Duration,
    /// How often the HPA controller re-evaluates every HPA
    /// (`--horizontal-pod-autoscaler-sync-period`; Kubernetes' default is 15 s).
    pub hpa_sync_period: Duration,
}

impl MetricsOptions {
    /// Default scrape interval: the smallest metrics-server accepts.
    pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(10);
    /// Default HPA sync period.
    pub const DEFAULT_HPA_SYNC: Duration = Duration::from_secs(5);

    /// The pipeline on, with the default timings.
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(), TestbedError> {
        if self.resolution < Duration::from_secs(10) || self.resolution > Duration::from_secs(600) {
            return Err(TestbedError::BadOption {
                option: "--metric-resolution",
                value: format!("{:?}", self.resolution),
                reason: "metrics-server accepts 10 s to 10 min".into(),
            });
        }
        if self.hpa_sync_period < Duration::from_secs(1)
            || self.hpa_sync_period > Duration::from_secs(600)
        {
            return Err(TestbedError::BadOption {
                option: "--hpa-sync-period",
                value: format!("{:?}", self.hpa_sync_period),
                reason: "must be between 1 s and 10 min".into(),
            });
        }
        Ok(())
    }
}

impl Default for MetricsOptions {
    /// Off; when turned on, 10 s resolution and a 5 s HPA sync period.
    fn default() -> Self {
        Self {
            enabled: false,
            resolution: Self::DEFAULT_RESOLUTION,
            hpa_sync_period: Self::DEFAULT_HPA_SYNC,
        }
    }
}

impl TestbedOptions {
    /// Default first address of `causeway testbed up`.
    pub const DEFAULT_BASE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);

    /// Options for the given clusters in `state_dir`, attached, base 127.0.0.10.
    pub fn new(clusters: Vec<ClusterSpec>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            clusters,
            state_dir: state_dir.into(),
            bin_dir: None,
            base_address: Self::DEFAULT_BASE,
            detached: false,
            ready_timeout: Duration::from_secs(180),
            metrics: MetricsOptions::default(),
        }
    }

    /// Checks every cluster, unique names, and that all addresses stay in 127.0.0.0/8.
    pub fn validate(&self) -> Result<(), TestbedError> {
        if self.clusters.is_empty() {
            return Err(TestbedError::BadOption {
                option: "--clusters",
                value: String::new(),
                reason: "name at least one cluster".into(),
            });
        }
        for (i, c) in self.clusters.iter().enumerate() {
            c.validate()?;
            if self.clusters[..i].iter().any(|o| o.name == c.name) {
                return Err(TestbedError::BadOption {
                    option: "--clusters",
                    value: c.name.clone(),
                    reason: "listed twice".into(),
                });
            }
        }
        self.metrics.validate()?;
        let base = self.base_address;
        let last = u32::from(base).checked_add(self.clusters.len() as u32 - 1);
        let in_loopback = |a: u32| Ipv4Addr::from(a).octets()[0] == 127 && (a & 0xff) != 0xff;
        if base.octets()[0] != 127 || base.octets()[3] == 0 || !last.is_some_and(in_loopback) {
            return Err(TestbedError::BadOption {
                option: "--base-address",
                value: base.to_string(),
                reason: format!(
                    "{} clusters need {} consecutive addresses in 127.0.0.0/8 starting there \
                     (not .0, not .255), e.g. 127.0.0.10",
                    self.clusters.len(),
                    self.clusters.len()
                ),
            });
        }
        Ok(())
    }

    /// Address of cluster `index`.
    pub(crate) fn address(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base_address) + index as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_lists() {
        assert_eq!(
            parse_cluster_names("idc-bj,ali-hz, aws-sg").unwrap(),
            ["idc-bj", "ali-hz", "aws-sg"]
        );
        let err = parse_cluster_names("a,B").unwrap_err().to_string();
        assert!(err.contains("\"B\"") && err.contains("--clusters"), "{err}");
        assert!(parse_cluster_names("a,,b").is_err());
        let err = parse_cluster_names("a,b,a").unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn bad_capacity_names_the_option() {
        let mut spec = ClusterSpec::new("a");
        spec.node_memory = "12XB".into();
        let err = spec.validate().unwrap_err().to_string();
        assert!(
            err.contains("--node-memory") && err.contains("12XB"),
            "{err}"
        );
        let mut spec = ClusterSpec::new("a");
        spec.node_cpu = "lots".into();
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .contains("--node-cpu")
        );
        let mut spec = ClusterSpec::new("a");
        spec.nodes = 0;
        assert!(spec.validate().unwrap_err().to_string().contains("--nodes"));
        assert!(ClusterSpec::new("a").validate().is_ok());
    }

    #[test]
    fn addresses_stay_in_loopback() {
        let specs = vec![ClusterSpec::new("a"), ClusterSpec::new("b")];
        let mut opts = TestbedOptions::new(specs, "/tmp/x");
        assert!(opts.validate().is_ok());
        assert_eq!(opts.address(1), Ipv4Addr::new(127, 0, 0, 11));
        opts.base_address = Ipv4Addr::new(10, 0, 0, 1);
        assert!(
            opts.validate()
                .unwrap_err()
                .to_string()
                .contains("--base-address")
        );
        opts.base_address = Ipv4Addr::new(127, 0, 0, 254);
        assert!(opts.validate().is_err(), "second cluster would be .255");
        opts.base_address = Ipv4Addr::new(127, 0, 1, 10);
        assert!(opts.validate().is_ok());
    }

    #[test]
    fn metrics_timings_are_checked() {
        let mut opts = TestbedOptions::new(vec![ClusterSpec::new("a")], "/tmp/x");
        assert!(!opts.metrics.enabled, "off unless asked for");
        opts.metrics = MetricsOptions::enabled();
        assert!(opts.validate().is_ok());
        opts.metrics.resolution = Duration::from_secs(5);
        let err = opts.validate().unwrap_err().to_string();
        assert!(err.contains("--metric-resolution"), "{err}");
        opts.metrics = MetricsOptions::enabled();
        opts.metrics.hpa_sync_period = Duration::ZERO;
        let err = opts.validate().unwrap_err().to_string();
        assert!(err.contains("--hpa-sync-period"), "{err}");
    }

    #[test]
    fn duplicate_clusters_are_rejected() {
        let opts =
            TestbedOptions::new(vec![ClusterSpec::new("a"), ClusterSpec::new("a")], "/tmp/x");
        assert!(opts.validate().unwrap_err().to_string().contains("twice"));
    }
}
