//! Real Kubernetes control planes on loopback, for `causeway testbed` and end-to-end tests.
//!
//! Each cluster runs etcd, kube-apiserver (TLS, RBAC, ServiceAccount tokens, client-cert
//! admin), kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods go
//! Running and serve `kubectl logs`, `exec` and `port-forward`) on its own 127.0.0.x
//! address. The binaries are pinned and built by `testbed/build-bins.sh`.
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
//! - [`manifests`]: kwok CRDs, fake nodes, exec/logs/port-forward rules.
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
pub mod reserve;
pub mod shared;
pub mod spec;
pub mod state;
pub mod status;
pub mod testbed;
pub mod testing;

pub use bins::{Binaries, bin_dir, repo_root};
pub use error::TestbedError;
pub use manifests::{cluster_port_forward_rule, port_forward_rule};
pub use process::ProcRecord;
pub use reserve::reserve_addresses;
pub use shared::shared;
pub use spec::{ClusterSpec, TestbedOptions, parse_cluster_names};
pub use status::{ClusterStatus, status};
pub use testbed::{ClusterInfo, Testbed, down_state_dir};
