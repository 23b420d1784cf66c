//! Real Kubernetes control planes on loopback, for `causeway testbed` and end-to-end tests.
//!
//! Each cluster runs etcd, kube-apiserver (TLS, RBAC, ServiceAccount tokens, client-cert
//! admin, the aggregation layer), kube-controller-manager (with the HPA controller),
//! kube-scheduler and kwok (fake nodes whose pods go Running and serve `kubectl logs`,
//! `exec` and `port-forward`) on its own 127.0.0.x address; with
//! [`MetricsOptions::enabled`], also metrics-server, so HPAs scale on simulated pod CPU
//! ([`set_simulated_cpu`]). The binaries are pinned and built by `testbed/build-bins.sh`.
//!
//! Start here: [`Testbed::up`] with [`TestbedOptions`], or [`shared()`] in a test.
//!
//! Layout:
//! - [`spec`]: what to start ([`ClusterSpec`], [`TestbedOptions`]) and input checks.
//! - [`testbed`]: bring-up order, [`Testbed`], [`ClusterInfo`], [`down_state_dir`].
//! - [`shared`](mod@shared): one testbed per test process; [`reserve`]: address blocks
//!   for tests running side by side.
//! - [`status`](mod@status): health of a running testbed.
//! - [`pod_log`]: the log format of `ClusterInfo::pod_log`.
//! - [`manifests`]: kwok CRDs, fake nodes, exec/logs/port-forward rules, simulated usage,
//!   metrics-server's registration.
//! - [`simulate`]: set a pod's simulated CPU/memory; read what metrics-server serves.
//! - `components`: the command line of each process; `process`: spawning and stopping;
//!   `pki`: certificates; `kubeconfig`; `api`: a small HTTPS client; `state`: `state.json`.
#![warn(missing_docs)]

mod api;
pub mod bins;
mod components;
mod error;
mod files;
mod kubeconfig;
pub mod layout;
pub mod manifests;
mod pki;
pub mod pod_log;
mod process;
pub mod quantity;
pub mod relay;
pub mod reserve;
pub mod shared;
pub mod simulate;
pub mod spec;
pub mod state;
pub mod status;
pub mod testbed;
pub mod testing;

pub use bins::{Binaries, bin_dir, repo_root};
pub use error::TestbedError;
pub use manifests::{
    SIMULATED_CPU_ANNOTATION, SIMULATED_MEMORY_ANNOTATION, cluster_port_forward_rule,
    port_forward_rule,
};
pub use process::ProcRecord;
pub use reserve::reserve_addresses;
pub use shared::shared;
pub use simulate::{PodUsage, pod_usage, set_simulated_cpu, set_simulated_memory};
pub use spec::{ClusterSpec, MetricsOptions, TestbedOptions, parse_cluster_names};
pub use status::{ClusterStatus, status};
pub use testbed::{ClusterInfo, Testbed, down_state_dir};
