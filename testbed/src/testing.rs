//! The test kit every test crate shares (it lives here because every test crate
//! already depends on `causeway-testbed`). One of each thing, so new tests build on it
//! rather than on a copy:
//!
//! - [`process`]: start the built `causeway` binary or a peer ([`Spawn`]), wait for a
//!   log line or its listeners ([`Process::wait_listening`]), signal it; it is killed
//!   on drop. Also `/proc` readings ([`process_alive`], [`fd_count`], [`rss_kib`]).
//! - [`listening`]: the one parser of `listening on <role> <scheme>://<addr>`.
//! - [`wait`]: [`wait_for`] / [`wait_for_async`], polling with a clear failure message.
//! - [`command`]: run a command expecting success or failure, with stdin, and
//!   [`require_tools`].
//! - [`kubectl`]: [`Kubectl`] as admin or through a kubeconfig, with the kubectl
//!   version chosen ([`KubectlVersion`]); apply, get, wait, Running pods, a
//!   port-forward round trip, a kubeconfig's credentials.
//! - [`http`]: the one HTTP(S) client ([`HttpClient`]: rustls with a given CA, client
//!   certificate and bearer token; one-shot or raw HTTP/1.1 and HTTP/2 connections)
//!   and [`metric_value`] for `/metrics` pages.
//! - [`curl`]: curl as an independent client, for the security tests.
//! - [`mutate`]: a seeded [`Rng`] and the packet [`mutate`](mutate::mutate)or.
//! - [`net`]: a TCP echo server and a byte round trip through it.
//!
//! What needs another part's types stays with that part's tests: DNS queries and
//! answers (hickory-proto) in `tests/support/dns.rs`, the stub/agent fixture (the
//! `causeway` CLI's flags and the tunnel's config) in `tests/support/tunnel.rs`. A test
//! file includes such a module one way only, `#[path = "support/dns.rs"] mod
//! dns_support;` (no `mod.rs`).

pub mod command;
pub mod curl;
pub mod http;
pub mod kubectl;
pub mod listening;
pub mod mutate;
pub mod net;
pub mod process;
pub mod wait;

pub use command::{on_path, require_tools, run, run_fails, run_ok, run_with_stdin};
pub use curl::{Curl, CurlResponse};
pub use http::{HttpClient, HttpError, HttpResponse, client_tls, metric_value};
pub use kubectl::{
    KubeconfigCredentials, Kubectl, KubectlVersion, kubectl_1_29, port_forward_round_trip,
    write_identity,
};
pub use listening::{Listener, Listening, parse_listening};
pub use mutate::Rng;
pub use net::{echo_round_trip, echo_server};
pub use process::{Process, Spawn, fd_count, process_alive, rss_kib};
pub use wait::{Outcome, wait_for, wait_for_async};
