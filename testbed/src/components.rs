//! Command lines of the control-plane components of one cluster.
//!
//! Memory is kept low on purpose: etcd with a small backend quota, the apiserver without
//! priority-and-fairness and profiling, only the controllers a testbed needs, and a Go
//! soft memory limit on each process.

use std::path::Path;
use std::time::Duration;

use crate::bins::Binaries;
use crate::layout::{
    APISERVER_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, KWOK_PORT, Layout, METRICS_SERVER_PORT,
};
use crate::pki::{ClusterPki, FRONT_PROXY_CLIENT_CN};
use crate::process::Launch;
use crate::spec::MetricsOptions;

/// Service range of every cluster (clusters are separate, so they may share it).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Pod IP range kwok hands out.
pub const POD_CIDR: &str = "10.244.0.1/16";

/// Controllers kube-controller-manager runs: enough for workloads, autoscaling,
/// ServiceAccounts, namespaces, garbage collection, Services and node health.
pub const CONTROLLERS: &[&str] = &[
    "deployment-controller",
    "replicaset-controller",
    // HPAs; they read pod CPU and memory from metrics.k8s.io (metrics-server).
    "horizontal-pod-autoscaler-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "disruption-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "clusterrole-aggregation-controller",
    // Removes the not-ready taint from new nodes, and taints nodes whose kwok stopped.
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
];

/// kwok resources served as CRDs, so tests can add Exec/Logs/PortForward rules at run time.
pub const KWOK_CRDS: &[&str] = &[
    "ClusterExec",
    "Exec",
    "ClusterLogs",
    "Logs",
    "ClusterPortForward",
    "PortForward",
];

/// kwok resources for simulated resource usage, served as CRDs when metrics are on: the
/// `Metric` that renders kubelet-style `/metrics/resource` per node, and the usages (CEL
/// over each pod) it reads.
pub const KWOK_METRICS_CRDS: &[&str] = &["Metric", "ClusterResourceUsage", "ResourceUsage"];

/// A duration as a Go flag value (`5s`, `1500ms`).
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn go_env(limit_mib: u32) -> Vec<(&'static str, String)> {
    vec![
        ("GOMEMLIMIT", format!("{limit_mib}MiB")),
        ("GOGC", "50".into()),
    ]
}

fn flags(pairs: &[(&str, String)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// What the command lines of one cluster's components are made from.
#[derive(Clone, Copy)]
pub(crate) struct Components<'a> {
    /// The cluster's address, directories and log files.
    pub layout: &'a Layout,
    /// The component binaries.
    pub bins: &'a Binaries,
    /// The cluster's certificates and keys.
    pub pki: &'a ClusterPki,
    /// Whether the resource-metrics pipeline runs, and its timings.
    pub metrics: &'a MetricsOptions,
}

impl<'a> Components<'a> {
    /// `component` of this cluster: `binary` with `args` as `--name=value` flags and `env`,
    /// its output in the cluster's log file named for the component.
    fn launch(
        &self,
        component: &'static str,
        binary: &'a Path,
        args: &[(&str, String)],
        env: Vec<(&'static str, String)>,
    ) -> Launch<'a> {
        Launch {
            cluster: &self.layout.name,
            component,
            binary,
            args: flags(args),
            env,
            log: self.layout.log(component),
        }
    }

    /// etcd, one per cluster, plain HTTP on the cluster's address.
    pub(crate) fn etcd(&self) -> Launch<'a> {
        let l = self.layout;
        let client = format!("http://{}", l.addr(ETCD_CLIENT_PORT));
        let peer = format!("http://{}", l.addr(ETCD_PEER_PORT));
        let args = [
            ("name", l.name.clone()),
            ("data-dir", path(&l.etcd_data())),
            ("listen-client-urls", client.clone()),
            ("advertise-client-urls", client),
            ("listen-peer-urls", peer.clone()),
            ("initial-advertise-peer-urls", peer.clone()),
            ("initial-cluster", format!("{}={peer}", l.name)),
            ("initial-cluster-state", "new".into()),
            ("quota-backend-bytes", (512u64 << 20).to_string()),
            ("snapshot-count", "5000".into()),
            ("auto-compaction-mode", "periodic".into()),
            ("auto-compaction-retention", "5m".into()),
            ("unsafe-no-fsync", "true".into()),
            ("log-level", "warn".into()),
        ];
        self.launch("etcd", &self.bins.etcd, &args, go_env(150))
    }

    /// kube-apiserver with TLS, RBAC, ServiceAccount tokens and client-cert admin access.
    pub(crate) fn apiserver(&self) -> Launch<'a> {
        let (l, pki) = (self.layout, self.pki);
        let args = [
            ("advertise-address", l.address.to_string()),
            ("bind-address", l.address.to_string()),
            ("secure-port", APISERVER_PORT.to_string()),
            (
                "etcd-servers",
                format!("http://{}", l.addr(ETCD_CLIENT_PORT)),
            ),
            ("authorization-mode", "Node,RBAC".into()),
            ("client-ca-file", path(&pki.ca_cert)),
            ("tls-cert-file", path(&pki.apiserver.cert)),
            ("tls-private-key-file", path(&pki.apiserver.key)),
            (
                "service-account-issuer",
                "https://kubernetes.default.svc.cluster.local".into(),
            ),
            ("service-account-key-file", path(&pki.sa_pub)),
            ("service-account-signing-key-file", path(&pki.sa_key)),
            ("service-cluster-ip-range", SERVICE_CIDR.into()),
            ("kubelet-client-certificate", path(&pki.kubelet_client.cert)),
            ("kubelet-client-key", path(&pki.kubelet_client.key)),
            ("kubelet-certificate-authority", path(&pki.ca_cert)),
            ("kubelet-preferred-address-types", "InternalIP".into()),
            ("allow-privileged", "true".into()),
            ("enable-priority-and-fairness", "false".into()),
            ("profiling", "false".into()),
            ("event-ttl", "15m".into()),
            ("default-watch-cache-size", "50".into()),
            // The aggregation layer: requests for extension APIs (metrics.k8s.io) are proxied
            // with the front-proxy client certificate and the user in X-Remote-* headers.
            ("requestheader-client-ca-file", path(&pki.front_proxy_ca)),
            ("requestheader-allowed-names", FRONT_PROXY_CLIENT_CN.into()),
            ("requestheader-username-headers", "X-Remote-User".into()),
            ("requestheader-group-headers", "X-Remote-Group".into()),
            (
                "requestheader-extra-headers-prefix",
                "X-Remote-Extra-".into(),
            ),
            ("proxy-client-cert-file", path(&pki.front_proxy_client.cert)),
            ("proxy-client-key-file", path(&pki.front_proxy_client.key)),
        ];
        self.launch("kube-apiserver", &self.bins.apiserver, &args, go_env(450))
    }

    /// A control loop (kube-controller-manager, kube-scheduler): watches the API server
    /// through `kubeconfig`, serves no port, runs as the only replica (no leader election),
    /// without profiling; then `more` flags.
    fn control_loop(
        &self,
        component: &'static str,
        binary: &'a Path,
        kubeconfig: &Path,
        more: &[(&str, String)],
        limit_mib: u32,
    ) -> Launch<'a> {
        let mut args = vec![
            ("kubeconfig", path(kubeconfig)),
            ("secure-port", "0".into()),
            ("leader-elect", "false".into()),
            ("profiling", "false".into()),
        ];
        args.extend_from_slice(more);
        self.launch(component, binary, &args, go_env(limit_mib))
    }

    /// kube-controller-manager with only [`CONTROLLERS`], no serving port.
    pub(crate) fn controller_manager(&self, kubeconfig: &Path) -> Launch<'a> {
        let pki = self.pki;
        let more = [
            ("controllers", CONTROLLERS.join(",")),
            ("service-account-private-key-file", path(&pki.sa_key)),
            ("root-ca-file", path(&pki.ca_cert)),
            ("use-service-account-credentials", "true".into()),
            ("service-cluster-ip-range", SERVICE_CIDR.into()),
            (
                "horizontal-pod-autoscaler-sync-period",
                go_duration(self.metrics.hpa_sync_period),
            ),
        ];
        let binary = &self.bins.controller_manager;
        self.control_loop("kube-controller-manager", binary, kubeconfig, &more, 150)
    }

    /// kube-scheduler, no serving port.
    pub(crate) fn scheduler(&self, kubeconfig: &Path) -> Launch<'a> {
        let binary = &self.bins.scheduler;
        self.control_loop("kube-scheduler", binary, kubeconfig, &[], 100)
    }

    /// kwok managing every node of the cluster, serving logs/exec/port-forward on the
    /// cluster's address (that address and port go into each node's status).
    pub(crate) fn kwok(&self, kubeconfig: &Path) -> Launch<'a> {
        let (l, pki) = (self.layout, self.pki);
        let mut env = go_env(100);
        let mut crds = KWOK_CRDS.to_vec();
        if self.metrics.enabled {
            crds.extend_from_slice(KWOK_METRICS_CRDS);
        }
        // kwok also reads ~/.kwok/kwok.yaml: keep a user's own kwok config out of the testbed.
        env.push(("HOME", path(&l.kwok_home())));
        let args = [
            ("kubeconfig", path(kubeconfig)),
            ("config", path(&self.bins.kwok_stages)),
            ("manage-all-nodes", "true".into()),
            ("node-ip", l.address.to_string()),
            ("node-port", KWOK_PORT.to_string()),
            ("server-address", l.addr(KWOK_PORT).to_string()),
            ("tls-cert-file", path(&pki.kwok_serving.cert)),
            ("tls-private-key-file", path(&pki.kwok_serving.key)),
            ("cidr", POD_CIDR.into()),
            ("node-lease-duration-seconds", "40".into()),
            ("enable-crds", crds.join(",")),
        ];
        self.launch("kwok", &self.bins.kwok, &args, env)
    }

    /// metrics-server on the cluster's address: scrapes every node's simulated
    /// `/metrics/resource` from kwok (the path in the node's
    /// `metrics.k8s.io/resource-metrics-path` annotation, kwok's certificate checked against
    /// the cluster CA) and serves `metrics.k8s.io` to the aggregation layer, trusting its
    /// front-proxy headers.
    pub(crate) fn metrics_server(&self, kubeconfig: &Path) -> Launch<'a> {
        let (l, pki) = (self.layout, self.pki);
        let kubeconfig = path(kubeconfig);
        let args = [
            ("bind-address", l.address.to_string()),
            ("secure-port", METRICS_SERVER_PORT.to_string()),
            ("tls-cert-file", path(&pki.metrics_server_serving.cert)),
            (
                "tls-private-key-file",
                path(&pki.metrics_server_serving.key),
            ),
            ("kubeconfig", kubeconfig.clone()),
            ("authentication-kubeconfig", kubeconfig.clone()),
            ("authorization-kubeconfig", kubeconfig),
            ("kubelet-preferred-address-types", "InternalIP".into()),
            ("kubelet-use-node-status-port", "true".into()),
            ("kubelet-certificate-authority", path(&pki.ca_cert)),
            ("metric-resolution", go_duration(self.metrics.resolution)),
            // Must stay below 90 % of the resolution (metrics-server checks).
            ("kubelet-request-timeout", "5s".into()),
            ("profiling", "false".into()),
        ];
        let binary = &self.bins.metrics_server;
        self.launch("metrics-server", binary, &args, go_env(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn each_component_logs_under_its_name_and_gives_each_flag_once() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), "c1", std::net::Ipv4Addr::new(127, 0, 0, 9));
        let bin = |name: &str| dir.path().join("bin").join(name);
        let bins = Binaries {
            etcd: bin("etcd"),
            apiserver: bin("kube-apiserver"),
            controller_manager: bin("kube-controller-manager"),
            scheduler: bin("kube-scheduler"),
            kubectl: bin("kubectl"),
            kwok: bin("kwok"),
            kwok_stages: bin("kwok-stages.yaml"),
            metrics_server: bin("metrics-server"),
        };
        let pki = ClusterPki::generate(&layout.pki(), "c1", layout.address).unwrap();
        let metrics = MetricsOptions::default();
        let parts = Components {
            layout: &layout,
            bins: &bins,
            pki: &pki,
            metrics: &metrics,
        };
        let kc = dir.path().join("component.kubeconfig");
        let launches = [
            parts.etcd(),
            parts.apiserver(),
            parts.controller_manager(&kc),
            parts.scheduler(&kc),
            parts.kwok(&kc),
            parts.metrics_server(&kc),
        ];
        for l in &launches {
            assert_eq!(l.cluster, "c1");
            assert_eq!(l.log, layout.log(l.component), "{}", l.component);
            assert_eq!(l.binary.file_name().unwrap(), l.component);
            let mut names: Vec<&str> = l
                .args
                .iter()
                .map(|a| a.split('=').next().unwrap())
                .collect();
            names.sort_unstable();
            let given = names.len();
            names.dedup();
            assert_eq!(
                names.len(),
                given,
                "{}: a flag given twice: {:?}",
                l.component,
                l.args
            );
        }
        // The control loops: the kubeconfig handed in, no port, one replica, no profiling.
        for l in &launches[2..4] {
            for flag in [
                format!("--kubeconfig={}", kc.display()),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--profiling=false".into(),
            ] {
                assert!(l.args.contains(&flag), "{}: no {flag}", l.component);
            }
        }
        let kcm = &launches[2].args;
        assert!(kcm.contains(&format!("--controllers={}", CONTROLLERS.join(","))));
        let sync = go_duration(metrics.hpa_sync_period);
        assert!(kcm.contains(&format!("--horizontal-pod-autoscaler-sync-period={sync}")));
    }
}
