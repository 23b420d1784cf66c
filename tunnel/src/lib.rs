//! Causeway's cluster tunnel: an agent in each cluster dials out to the stub;
//! users reach every cluster's Kubernetes API through the stub.
//!
//! Start here: [`stub::run`] (a stub from its [`config`]) and [`agent::run`]; then
//! `handle` in `stub/listener.rs`, which takes one request through the steps below, in
//! this order. `docs/tunnel.md` walks through both sides.
//!
//! # Modules, in the order a user's request meets them
//! - [`stub`]: the stub's listeners and the request path, one file per step
//!   (listener → gate: authn, authz, impersonate → route → forward → exchange).
//! - [`transport`]: TCP/TLS accept with a handshake deadline (and the agent's dial).
//! - [`authn`]: who sent the request: a client certificate or a bearer token.
//! - [`users`]: the users authn checks against: records, kubeconfigs, token files, the
//!   reloading store.
//! - [`pki`]: the stub CA, the certificates it issues, the TLS configurations.
//! - [`identity`]: the authenticated principal; secrets masked in logs.
//! - [`authz`]: what the request does (verb, object), path safety, the access policy
//!   and the allow/deny decision.
//! - [`impersonate`]: client impersonation refused; the agent's `Impersonate-*` headers.
//! - [`protocol`]: the stub⇄agent wire (HTTP/2 with reversed roles over mutual TLS).
//! - [`mux`]: a session (one agent connection) and its streams.
//! - [`body`]: the body types every hop carries.
//! - [`upgrade`]: exec/attach/port-forward: splice after a real `101` only.
//! - [`agent`]: the cluster side: dial out with backoff, forward each stream to the
//!   API server as the impersonated user.
//! - [`status`]: refusals as `metav1.Status`, as kubectl prints them.
//! - [`audit`]: the `audit.k8s.io/v1` event every request ends in, and its log file.
//! - [`metrics`]: Prometheus metrics of the stub.
//!
//! # Around the request path
//! - [`config`]: the stub's YAML configuration.
//! - [`state`]: the stub's state directory.
//! - [`enrol`]: join tokens become agent certificates.
//! - [`lease`]: one active stub among several, via a `coordination.k8s.io/v1` Lease.
#![warn(missing_docs)]

/// Shutdown signal for every long-running `run` here.
pub use tokio_util::sync::CancellationToken;

pub mod agent;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod body;
pub mod identity;
pub mod impersonate;
pub mod metrics;
pub mod mux;
pub mod pki;
pub mod protocol;
pub mod status;
pub mod stub;
pub mod transport;
pub mod upgrade;
pub mod users;

pub mod config;
pub mod enrol;
/// The Lease election of several stubs (its own crate; the scheduler uses it too).
pub use causeway_election as lease;
/// Production mode: the state directory kept in a Secret of the hub cluster.
pub mod hub_state;
pub mod state;
