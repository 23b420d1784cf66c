//! Forwarding an authorized request: a short one over an idle data connection when
//! there is one, else on a stream of a live session, with a retry on another
//! session when the request never left; upgrades are spliced only after the agent
//! reports a real `101` from the API server.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use super::data::DataSent;
use super::exchange::Exchange;
use super::gate::{Authorized, Refusal};
use super::state::StubState;
use crate::body::{self, ChannelBody, Tracked, TunnelBody};
use crate::mux::session::Sent;
use crate::protocol::{self, HDR_IDENTITY, HDR_STATUS, HDR_UPGRADE};
use crate::upgrade;

/// Most sessions tried for one request.
const MAX_TRIES: usize = 3;

/// A data connection is used only while fewer short streams than this are in flight on
/// the cluster's sessions (open watches do not count). A lone request is faster over
/// HTTP/1.1; under load a busy HTTP/2 session carries many streams per TLS record and
/// system call, which costs less per request than one connection each (measured,
/// bench/tunnel/README.md).
pub const DATA_MAX_IN_FLIGHT: usize = 4;

/// Sends `a` to its cluster: over an idle data connection if it is short and the
/// sessions are not busy, else on one of the cluster's sessions. `ex` is moved into
/// the response so the request is accounted for when its body (or upgraded stream) ends.
pub async fn forward(
    shared: &Arc<StubState>,
    a: Authorized,
    mut ex: Exchange,
) -> Result<Response<TunnelBody>, (Refusal, Exchange)> {
    let Authorized {
        mut req,
        identity,
        target,
        verb: _,
    } = a;
    let (bytes_up, bytes_down) = (ex.byte_counter(true), ex.byte_counter(false));
    let upgrade_to = protocol::requested_upgrade(req.headers());
    let client_upgrade = upgrade_to.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, client_body) = req.into_parts();
    protocol::strip_internal(&mut parts.headers);
    protocol::strip_hop_by_hop(&mut parts.headers);
    // The user's credentials are for the stub only; the agent sets its own.
    parts.headers.remove(header::AUTHORIZATION);
    parts
        .headers
        .insert(HDR_IDENTITY, protocol::encode_identity(&identity));
    if let Ok(v) = HeaderValue::from_str(ex.audit_id()) {
        parts.headers.insert("audit-id", v);
    }
    let uri: Uri = match format!("https://{}{}", target.cluster, target.path_and_query).parse() {
        Ok(u) => u,
        Err(e) => {
            return Err((
                Refusal::new(StatusCode::BAD_REQUEST, format!("bad request URI: {e}")),
                ex,
            ));
        }
    };
    parts.uri = uri;
    parts.version = Version::HTTP_2;
    let mut pipe_tx = None;
    let body = match &upgrade_to {
        Some(proto) => {
            parts.headers.insert(HDR_UPGRADE, proto.clone());
            // The stream's body is the upgraded byte pipe, not the (empty) HTTP body:
            // a `Content-Length: 0` from the client would end it after zero bytes.
            parts.headers.remove(header::CONTENT_LENGTH);
            let (tx, ch) = ChannelBody::new(upgrade::PIPE_DEPTH);
            pipe_tx = Some(tx);
            body::boxed(ch)
        }
        None => {
            let up = bytes_up.clone();
            body::boxed(Tracked::new(client_body, (), move |n| up.inc_by(n as u64)))
        }
    };
    let mut req = Request::from_parts(parts, body);

    // A short request goes over an idle data connection if the cluster has one and its
    // sessions are not busy with other short requests.
    let short = upgrade_to.is_none() && !ex.is_long_running();
    if short && shared.registry.short_in_flight(&target.cluster) < DATA_MAX_IN_FLIGHT {
        *req.version_mut() = Version::HTTP_11;
        // HTTP/1.1 needs a Host (a user on HTTP/2 sent :authority instead).
        let add_host = !req.headers().contains_key(header::HOST);
        if add_host && let Ok(host) = HeaderValue::from_str(target.cluster.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
        match shared.data.send(&target.cluster, req).await {
            DataSent::Response(resp) => {
                shared.metrics.data_requests.inc();
                let (mut rparts, rbody) = resp.into_parts();
                protocol::strip_internal(&mut rparts.headers);
                protocol::strip_hop_by_hop(&mut rparts.headers);
                ex.respond(rparts.status);
                let body = Tracked::new(rbody, ex, move |n| bytes_down.inc_by(n as u64));
                return Ok(Response::from_parts(rparts, body::boxed(body)));
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
                return Err((
                    Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        format!("the agent's data connection failed: {e}"),
                    ),
                    ex,
                ));
            }
        }
    }

    let mut tried = Vec::with_capacity(MAX_TRIES);
    let (resp, in_flight) = loop {
        let Some(session) = shared.registry.pick(&target.cluster, &tried) else {
            let msg = if tried.is_empty() {
                format!("cluster {:?} has no live agent", target.cluster.as_str())
            } else {
                format!(
                    "every live agent of cluster {:?} closed before the request could be sent",
                    target.cluster.as_str()
                )
            };
            return Err((Refusal::new(StatusCode::SERVICE_UNAVAILABLE, msg), ex));
        };
        tried.push(session.id);
        let in_flight = session.begin(short);
        let span =
            tracing::debug_span!("tunnel.stream", session = session.id, cluster = %session.cluster);
        match session.send(req).instrument(span).await {
            Sent::Response(resp) => break (resp, in_flight),
            Sent::NotSent(r) if tried.len() < MAX_TRIES => {
                shared
                    .metrics
                    .retries
                    .with_label_values(&[target.cluster.as_str()])
                    .inc();
                req = r;
            }
            Sent::NotSent(_) => {
                return Err((
                    Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no agent session could take the request",
                    ),
                    ex,
                ));
            }
            Sent::Failed(e) => {
                tracing::debug!(error = %e, "stream failed");
                return Err((
                    Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        format!("the agent's stream failed: {e}"),
                    ),
                    ex,
                ));
            }
        }
    };

    let (mut rparts, rbody) = resp.into_parts();
    let switched = rparts
        .headers
        .get(&HDR_STATUS)
        .is_some_and(|v| v.as_bytes() == b"101");
    match (switched, client_upgrade, pipe_tx) {
        (true, Some(on_upgrade), Some(tx)) => {
            let accepted = rparts
                .headers
                .get(&HDR_UPGRADE)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static(""));
            protocol::strip_internal(&mut rparts.headers);
            protocol::strip_hop_by_hop(&mut rparts.headers);
            rparts.status = StatusCode::SWITCHING_PROTOCOLS;
            rparts.version = Version::HTTP_11;
            rparts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            rparts.headers.insert(header::UPGRADE, accepted);
            ex.respond(StatusCode::SWITCHING_PROTOCOLS);
            tokio::spawn(
                async move {
                    let _record = ex;
                    let _in_flight = in_flight;
                    let upgraded = match on_upgrade.await {
                        Ok(u) => u,
                        Err(e) => {
                            tracing::debug!(error = %e, "client upgrade failed");
                            return;
                        }
                    };
                    match upgrade::pump(TokioIo::new(upgraded), rbody, tx).await {
                        Ok(n) => {
                            bytes_down.inc_by(n.into_io);
                            bytes_up.inc_by(n.from_io);
                        }
                        Err(e) => tracing::debug!(error = %e, "upgraded stream failed"),
                    }
                }
                .in_current_span(),
            );
            Ok(Response::from_parts(rparts, body::empty()))
        }
        _ => {
            // Not switched (or not asked): an ordinary response, nothing spliced.
            protocol::strip_internal(&mut rparts.headers);
            protocol::strip_hop_by_hop(&mut rparts.headers);
            rparts.version = Version::HTTP_11;
            ex.respond(rparts.status);
            let body = Tracked::new(rbody, (ex, in_flight), move |n| bytes_down.inc_by(n as u64));
            Ok(Response::from_parts(rparts, body::boxed(body)))
        }
    }
}
