//! Command lines of the control-plane components of one cluster.
//!
//! Memory is kept low on purpose: etcd with a small backend quota, the apiserver without
//! priority-and-fairness and profiling, only the controllers a testbed needs, and a Go
//! soft memory limit on each process.

use std::path::{Path, PathBuf};
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

/// etcd, one per cluster, plain HTTP on the cluster's address.
pub(crate) fn etcd<'a>(l: &'a Layout, bins: &'a Binaries) -> Launch<'a> {
    let client = format!("http://{}", l.addr(ETCD_CLIENT_PORT));
    let peer = format!("http://{}", l.addr(ETCD_PEER_PORT));
    Launch {
        cluster: &l.name,
        component: "etcd",
        binary: &bins.etcd,
        args: flags(&[
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
        ]),
        env: go_env(150),
        log: l.log("etcd"),
    }
}

/// kube-apiserver with TLS, RBAC, ServiceAccount tokens and client-cert admin access.
pub(crate) fn apiserver<'a>(l: &'a Layout, bins: &'a Binaries, pki: &ClusterPki) -> Launch<'a> {
    Launch {
        cluster: &l.name,
        component: "kube-apiserver",
        binary: &bins.apiserver,
        args: flags(&[
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
        ]),
        env: go_env(450),
        log: l.log("kube-apiserver"),
    }
}

/// A control loop (kube-controller-manager, kube-scheduler): watches the API server
/// through `kubeconfig`, serves no port, runs as the only replica (no leader election),
/// without profiling; then `more` flags.
fn control_loop<'a>(
    l: &'a Layout,
    component: &'static str,
    binary: &'a Path,
    kubeconfig: &Path,
    more: &[(&str, String)],
    limit_mib: u32,
) -> Launch<'a> {
    let mut args = flags(&[
        ("kubeconfig", path(kubeconfig)),
        ("secure-port", "0".into()),
        ("leader-elect", "false".into()),
        ("profiling", "false".into()),
    ]);
    args.extend(flags(more));
    Launch {
        cluster: &l.name,
        component,
        binary,
        args,
        env: go_env(limit_mib),
        log: l.log(component),
    }
}

/// kube-controller-manager with only [`CONTROLLERS`], no serving port.
pub(crate) fn controller_manager<'a>(
    l: &'a Layout,
    bins: &'a Binaries,
    pki: &ClusterPki,
    kubeconfig: PathBuf,
    metrics: &MetricsOptions,
) -> Launch<'a> {
    let more = [
        ("controllers", CONTROLLERS.join(",")),
        ("service-account-private-key-file", path(&pki.sa_key)),
        ("root-ca-file", path(&pki.ca_cert)),
        ("use-service-account-credentials", "true".into()),
        ("service-cluster-ip-range", SERVICE_CIDR.into()),
        (
            "horizontal-pod-autoscaler-sync-period",
            go_duration(metrics.hpa_sync_period),
        ),
    ];
    control_loop(
        l,
        "kube-controller-manager",
        &bins.controller_manager,
        &kubeconfig,
        &more,
        150,
    )
}

/// kube-scheduler, no serving port.
pub(crate) fn scheduler<'a>(l: &'a Layout, bins: &'a Binaries, kubeconfig: PathBuf) -> Launch<'a> {
    control_loop(l, "kube-scheduler", &bins.scheduler, &kubeconfig, &[], 100)
}

/// kwok managing every node of the cluster, serving logs/exec/port-forward on the
/// cluster's address (that address and port go into each node's status).
pub(crate) fn kwok<'a>(
    l: &'a Layout,
    bins: &'a Binaries,
    pki: &ClusterPki,
    kubeconfig: PathBuf,
    metrics: &MetricsOptions,
) -> Launch<'a> {
    let mut env = go_env(100);
    let mut crds = KWOK_CRDS.to_vec();
    if metrics.enabled {
        crds.extend_from_slice(KWOK_METRICS_CRDS);
    }
    // kwok also reads ~/.kwok/kwok.yaml: keep a user's own kwok config out of the testbed.
    env.push(("HOME", path(&l.kwok_home())));
    Launch {
        cluster: &l.name,
        component: "kwok",
        binary: &bins.kwok,
        args: flags(&[
            ("kubeconfig", path(&kubeconfig)),
            ("config", path(&bins.kwok_stages)),
            ("manage-all-nodes", "true".into()),
            ("node-ip", l.address.to_string()),
            ("node-port", KWOK_PORT.to_string()),
            ("server-address", l.addr(KWOK_PORT).to_string()),
            ("tls-cert-file", path(&pki.kwok_serving.cert)),
            ("tls-private-key-file", path(&pki.kwok_serving.key)),
            ("cidr", POD_CIDR.into()),
            ("node-lease-duration-seconds", "40".into()),
            ("enable-crds", crds.join(",")),
        ]),
        env,
        log: l.log("kwok"),
    }
}

/// metrics-server on the cluster's address: scrapes every node's simulated
/// `/metrics/resource` from kwok (the path in the node's `metrics.k8s.io/resource-metrics-path`
/// annotation, kwok's certificate checked against the cluster CA) and serves
/// `metrics.k8s.io` to the aggregation layer, trusting its front-proxy headers.
pub(crate) fn metrics_server<'a>(
    l: &'a Layout,
    binary: &'a Path,
    pki: &ClusterPki,
    kubeconfig: PathBuf,
    metrics: &MetricsOptions,
) -> Launch<'a> {
    let kubeconfig = path(&kubeconfig);
    Launch {
        cluster: &l.name,
        component: "metrics-server",
        binary,
        args: flags(&[
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
            ("metric-resolution", go_duration(metrics.resolution)),
            // Must stay below 90 % of the resolution (metrics-server checks).
            ("kubelet-request-timeout", "5s".into()),
            ("profiling", "false".into()),
        ]),
        env: go_env(100),
        log: l.log("metrics-server"),
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
}
