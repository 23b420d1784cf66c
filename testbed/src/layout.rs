//! Where each cluster's files live and which ports it uses on its own address.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// kube-apiserver's HTTPS port.
pub const APISERVER_PORT: u16 = 6443;
/// etcd's client port.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port.
pub const ETCD_PEER_PORT: u16 = 2380;
/// kwok's kubelet-like server (logs, exec, port-forward), put in each node's status.
pub const KWOK_PORT: u16 = 10250;
/// metrics-server's HTTPS port (only with [`crate::spec::MetricsOptions::enabled`]); the
/// kube-apiserver's aggregation layer proxies `metrics.k8s.io` here.
pub const METRICS_SERVER_PORT: u16 = 4443;
/// Every port a cluster binds on its address (reserved even when metrics-server is off).
pub const PORTS: [u16; 5] = [
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    APISERVER_PORT,
    KWOK_PORT,
    METRICS_SERVER_PORT,
];

/// Paths and addresses of one cluster.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub name: String,
    pub address: Ipv4Addr,
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(state_dir: &Path, name: &str, address: Ipv4Addr) -> Self {
        Self {
            name: name.to_owned(),
            address,
            dir: state_dir.join(name),
        }
    }
    pub fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }
    pub fn etcd_data(&self) -> PathBuf {
        self.dir.join("etcd")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs().join(format!("{component}.log"))
    }
    pub fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }
    pub fn kwok_home(&self) -> PathBuf {
        self.dir.join("kwok")
    }
    /// The admin kubeconfig users and tests take.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    /// The file `kubectl logs` shows for every pod (kwok ClusterLogs).
    pub fn pod_log(&self) -> PathBuf {
        self.kwok_home().join("pod.log")
    }
    /// Working directory of `kubectl exec` commands (kwok ClusterExec).
    pub fn exec_dir(&self) -> PathBuf {
        self.kwok_home().join("exec")
    }
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.address, port))
    }
    pub fn server(&self) -> String {
        format!("https://{}:{APISERVER_PORT}", self.address)
    }
}
