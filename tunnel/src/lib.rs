//! Causeway's cluster tunnel: an agent in each cluster dials out to the stub;
//! users reach every cluster's Kubernetes API through the stub.
//!
//! Start here: [`stub::run`] and [`agent::run`]; `docs/tunnel.md` for the walk-through.
//!
//! # Layout
//! - [`protocol`]: the stub⇄agent wire (HTTP/2 with reversed roles over mutual TLS).
//! - [`transport`]: TCP/TLS dial and accept.
//! - [`mux`]: a session (one agent connection) and its streams.
//! - [`body`]: the body types every hop carries.
//! - [`stub`]: listeners, the request path (authn → authz → route → stream), the registry of sessions.
//! - [`agent`]: dialling out with backoff, forwarding to the local API server.
//! - [`upgrade`]: exec/attach/port-forward: splice after a real `101` only.
//! - [`metrics`]: Prometheus metrics.
//! - [`config`]: the stub's YAML configuration.
//! - [`lease`]: one active stub among several, via a `coordination.k8s.io/v1` Lease.
#![warn(missing_docs)]

/// Shutdown signal for every long-running `run` here.
pub use tokio_util::sync::CancellationToken;

pub mod agent;
pub mod body;
pub mod config;
pub mod lease;
pub mod metrics;
pub mod mux;
pub mod protocol;
pub mod stub;
pub mod transport;
pub mod upgrade;

pub mod audit;
pub mod authn;
pub mod authz;
pub mod enrol;
pub mod identity;
pub mod impersonate;
pub mod pki;
pub mod state;
pub mod status;
pub mod users;
