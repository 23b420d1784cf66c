//! Routing: an impersonated request to a live connection of its cluster. A short
//! request goes over an idle [`super::data`] connection while the cluster's sessions
//! are not busy; anything else (and a short request when no data connection can take
//! it) goes on a stream of a session the [`super::registry`] picks (two random
//! choices), and is tried on another session when it never left.

use causeway_model::cluster::ClusterId;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use tracing::Instrument;

use super::data::{DataSent, Returning};
use super::gate::Refusal;
use super::state::StubState;
use crate::body::TunnelBody;
use crate::mux::InFlight;
use crate::mux::session::Sent;

/// Most sessions tried for one request.
const MAX_TRIES: usize = 3;

/// A data connection is used only while fewer short streams than this are in flight on
/// the cluster's sessions (open watches do not count). A lone request is faster over
/// HTTP/1.1; under load a busy HTTP/2 session carries many streams per TLS record and
/// system call, which costs less per request than one connection each (measured,
/// bench/tunnel/README.md).
pub const DATA_MAX_IN_FLIGHT: usize = 4;

/// Where a request was answered.
pub enum Routed {
    /// Over a data connection, which returns to the pool when the body ends cleanly.
    Data(Response<Returning>),
    /// On a session stream, counted in flight until the body ends.
    Session(Response<Incoming>, InFlight),
}

/// Sends `req` to `cluster`: over an idle data connection if it is `short` (not an
/// upgrade, not long-running) and the sessions are not busy, else on one of the
/// cluster's sessions.
pub async fn route(
    shared: &StubState,
    cluster: &ClusterId,
    mut req: Request<TunnelBody>,
    short: bool,
) -> Result<Routed, Refusal> {
    if short && shared.registry.short_in_flight(cluster) < DATA_MAX_IN_FLIGHT {
        *req.version_mut() = Version::HTTP_11;
        // HTTP/1.1 needs a Host (a user on HTTP/2 sent :authority instead).
        let add_host = !req.headers().contains_key(header::HOST);
        if add_host && let Ok(host) = HeaderValue::from_str(cluster.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
        match shared.data.send(cluster, req).await {
            DataSent::Response(resp) => {
                shared.metrics.data_requests.inc();
                return Ok(Routed::Data(resp));
            }
            DataSent::NotSent(r) => {
                req = r;
                *req.version_mut() = Version::HTTP_2;
                if add_host {
                    req.headers_mut().remove(header::HOST);
                }
            }
            DataSent::Failed(e) => {
                tracing::debug!(error = %e, "data connection failed");
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    format!("the agent's data connection failed: {e}"),
                ));
            }
        }
    }

    let mut tried = Vec::with_capacity(MAX_TRIES);
    loop {
        let Some(session) = shared.registry.pick(cluster, &tried) else {
            let msg = if tried.is_empty() {
                format!("cluster {:?} has no live agent", cluster.as_str())
            } else {
                format!(
                    "every live agent of cluster {:?} closed before the request could be sent",
                    cluster.as_str()
                )
            };
            return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, msg));
        };
        tried.push(session.id);
        let in_flight = session.begin(short);
        let span =
            tracing::debug_span!("tunnel.stream", session = session.id, cluster = %session.cluster);
        match session.send(req).instrument(span).await {
            Sent::Response(resp) => return Ok(Routed::Session(resp, in_flight)),
            Sent::NotSent(r) if tried.len() < MAX_TRIES => {
                shared
                    .metrics
                    .retries
                    .with_label_values(&[cluster.as_str()])
                    .inc();
                req = r;
            }
            Sent::NotSent(_) => {
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no agent session could take the request",
                ));
            }
            Sent::Failed(e) => {
                tracing::debug!(error = %e, "stream failed");
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    format!("the agent's stream failed: {e}"),
                ));
            }
        }
    }
}
