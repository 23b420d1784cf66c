//! The answer back to the user: internal and hop-by-hop headers stripped, the body
//! counted and carrying the request's [`Exchange`] (and the stream's in-flight count)
//! until it ends; an upgrade is spliced only after the agent reports a real `101` from
//! the API server.

use http::{HeaderValue, Response, StatusCode, Version, header};
use prometheus::IntCounter;
use tracing::Instrument;

use super::exchange::Exchange;
use super::gate::ClientUpgrade;
use super::route::Routed;
use crate::body::{self, Tracked, TunnelBody};
use crate::protocol::{self, HDR_STATUS, HDR_UPGRADE};
use crate::upgrade;

/// The user's response to a routed request. `ex` moves into the response body (or the
/// upgraded stream's pump task), so the request is accounted for when it really ends.
pub fn respond(
    routed: Routed,
    upgrade: Option<ClientUpgrade>,
    mut ex: Exchange,
    bytes_up: IntCounter,
    bytes_down: IntCounter,
) -> Response<TunnelBody> {
    let (resp, in_flight) = match routed {
        Routed::Data(resp) => {
            let (mut rparts, rbody) = resp.into_parts();
            protocol::strip_internal(&mut rparts.headers);
            protocol::strip_hop_by_hop(&mut rparts.headers);
            ex.respond(rparts.status);
            let body = Tracked::new(rbody, ex, move |n| bytes_down.inc_by(n as u64));
            return Response::from_parts(rparts, body::boxed(body));
        }
        Routed::Session(resp, in_flight) => (resp, in_flight),
    };
    let (mut rparts, rbody) = resp.into_parts();
    let switched = rparts
        .headers
        .get(&HDR_STATUS)
        .is_some_and(|v| v.as_bytes() == b"101");
    match (switched, upgrade) {
        (true, Some(ClientUpgrade { on_upgrade, pipe })) => {
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
                    match upgrade::splice(on_upgrade, rbody, pipe).await {
                        Ok(n) => {
                            bytes_down.inc_by(n.into_io);
                            bytes_up.inc_by(n.from_io);
                        }
                        Err(upgrade::SpliceError::Upgrade(e)) => {
                            tracing::debug!(error = %e, "client upgrade failed")
                        }
                        Err(e) => tracing::debug!(error = %e, "upgraded stream failed"),
                    }
                }
                .in_current_span(),
            );
            Response::from_parts(rparts, body::empty())
        }
        _ => {
            // Not switched (or not asked): an ordinary response, nothing spliced.
            protocol::strip_internal(&mut rparts.headers);
            protocol::strip_hop_by_hop(&mut rparts.headers);
            rparts.version = Version::HTTP_11;
            ex.respond(rparts.status);
            let body = Tracked::new(rbody, (ex, in_flight), move |n| bytes_down.inc_by(n as u64));
            Response::from_parts(rparts, body::boxed(body))
        }
    }
}
