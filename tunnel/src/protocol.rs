//! The stub⇄agent wire, every convention in one file.
//!
//! A **session** is one TLS connection (mutual auth) that the agent dials to the
//! stub's agent listener. Inside it the roles reverse: the stub is the HTTP/2
//! *client* and the agent the HTTP/2 *server*. Each proxied Kubernetes request is
//! one HTTP/2 **stream**, so per-stream flow control, stream reset on cancel and
//! keep-alive pings come from HTTP/2 itself (RFC 9113 §5.2, §6.4, §6.7).
//!
//! What the stub adds to a request on a stream (all client-sent `x-causeway-*`
//! headers are removed first, so none can be forged):
//!
//! | header | meaning |
//! |---|---|
//! | `x-causeway-identity` | the authenticated [`Identity`], base64url(JSON) |
//! | `x-causeway-upgrade` | the client asked for `Upgrade: <value>` (exec, attach, port-forward) |
//! | `x-causeway-internal` | `latency`: the stub's own `GET` of the agent prober's measurements ([`LATENCY_PATH`]); the agent answers it itself and never forwards it |
//!
//! HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2), so an upgrade is
//! carried as an ordinary request whose body is the client→server byte stream. The
//! agent re-issues it over HTTP/1.1 with `Connection: Upgrade`; when (and only when)
//! the API server answers `101`, the agent replies `200` with
//! `x-causeway-status: 101` and `x-causeway-upgrade: <value>`, and the response body
//! becomes the server→client byte stream. Any other answer is passed back as is,
//! and nothing is spliced.

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::identity::Identity;

/// ALPN protocol id of a tunnel session.
pub const ALPN_TUNNEL: &[u8] = b"causeway-tunnel/1";

/// ALPN protocol id of a **data connection**: another mTLS connection the agent dials
/// while its session is up, over which the roles reverse as on a session but the
/// protocol is HTTP/1.1, one request at a time. The stub sends ordinary short requests
/// on an idle data connection when it has one (no HTTP/2 stream state, HPACK or
/// per-stream task on either side: about a third less latency for a lone request) and
/// falls back to a session stream otherwise. Long-running requests (watch, logs,
/// proxy) and upgrades always use session streams, whose flow control keeps a
/// stalled reader from holding a connection. A data connection is returned to the
/// pool only after a response body ended cleanly; any other ending closes it and the
/// agent dials a new one.
pub const ALPN_DATA: &[u8] = b"causeway-data/1";

/// Prefix of every internal header; removed from all client input.
pub const INTERNAL_PREFIX: &str = "x-causeway-";

/// The authenticated identity, stub → agent.
pub const HDR_IDENTITY: HeaderName = HeaderName::from_static("x-causeway-identity");

/// The requested (stub → agent) or accepted (agent → stub) `Upgrade` protocol.
pub const HDR_UPGRADE: HeaderName = HeaderName::from_static("x-causeway-upgrade");

/// Stub → agent: a request the agent answers itself (value [`INTERNAL_LATENCY`]), never
/// forwarded to the API server. Users cannot send it: the stub strips `x-causeway-*`.
pub const HDR_INTERNAL: HeaderName = HeaderName::from_static("x-causeway-internal");

/// [`HDR_INTERNAL`]'s value for the prober's measurements.
pub const INTERNAL_LATENCY: &str = "latency";

/// Path of the stub's poll of the agent prober's measurements (with
/// [`HDR_INTERNAL`]: [`INTERNAL_LATENCY`]).
pub const LATENCY_PATH: &str = "/causeway.dev/v1/latency";

/// Agent → stub: `101` when the API server switched protocols.
pub const HDR_STATUS: HeaderName = HeaderName::from_static("x-causeway-status");

/// Per-stream receive window, bytes. Bounds what one stalled reader can hold.
pub const STREAM_WINDOW: u32 = 1024 * 1024;

/// Per-session receive window, bytes: room for 64 stalled streams before others slow.
pub const SESSION_WINDOW: u32 = 64 * 1024 * 1024;

/// Largest HTTP/2 frame we send.
pub const MAX_FRAME: u32 = 64 * 1024;

/// Most concurrent streams an agent accepts on one session.
pub const MAX_STREAMS: u32 = 20_000;

/// Why a tunnel header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The identity header is missing.
    #[error("the stream has no {HDR_IDENTITY} header")]
    MissingIdentity,
    /// The identity header is not base64url JSON of a valid identity.
    #[error("the {HDR_IDENTITY} header is invalid: {0}")]
    BadIdentity(String),
}

/// Encodes `id` for [`HDR_IDENTITY`].
pub fn encode_identity(id: &Identity) -> HeaderValue {
    // Serializing a struct of strings cannot fail; base64url is always a valid header value.
    let json = serde_json::to_vec(id).unwrap_or_default();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    HeaderValue::from_str(&b64).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Decodes [`HDR_IDENTITY`] from `headers`, running every identity check again.
pub fn decode_identity(headers: &HeaderMap) -> Result<Identity, ProtocolError> {
    let v = headers
        .get(&HDR_IDENTITY)
        .ok_or(ProtocolError::MissingIdentity)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.as_bytes())
        .map_err(|e| ProtocolError::BadIdentity(e.to_string()))?;
    serde_json::from_slice(&raw).map_err(|e| ProtocolError::BadIdentity(e.to_string()))
}

/// Removes every `x-causeway-*` header.
pub fn strip_internal(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with(INTERNAL_PREFIX))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every header it
/// names, plus `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`,
/// `Upgrade`, `Host`.
///
/// `Host` goes too: the agent talks to its own API server, and HTTP/2 uses `:authority`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        headers.remove(n);
    }
    for n in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HOST,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(n);
    }
}

/// The `Upgrade` value of an HTTP/1.1 upgrade request, if it is one.
pub fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    headers.get(header::UPGRADE).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_is_checked() {
        let id = Identity::user("alice", vec!["dev".into()]).unwrap();
        let mut h = HeaderMap::new();
        h.insert(HDR_IDENTITY, encode_identity(&id));
        assert_eq!(decode_identity(&h).unwrap(), id);

        let forged =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"user":"a\r\nb"}"#);
        h.insert(HDR_IDENTITY, HeaderValue::from_str(&forged).unwrap());
        assert!(decode_identity(&h).is_err());
        h.remove(HDR_IDENTITY);
        assert!(matches!(
            decode_identity(&h),
            Err(ProtocolError::MissingIdentity)
        ));
    }

    #[test]
    fn strips_internal_headers_by_prefix() {
        let mut h = HeaderMap::new();
        h.insert("x-causeway-identity", HeaderValue::from_static("x"));
        h.insert("X-Causeway-Whatever", HeaderValue::from_static("x"));
        h.insert("accept", HeaderValue::from_static("json"));
        strip_internal(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade, X-Foo"));
        h.insert("upgrade", HeaderValue::from_static("SPDY/3.1"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("1"));
        h.insert("x-stream-protocol-version", HeaderValue::from_static("v4"));
        assert_eq!(
            requested_upgrade(&h),
            Some(HeaderValue::from_static("SPDY/3.1"))
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-stream-protocol-version"));
    }

    #[test]
    fn upgrade_needs_connection_upgrade() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(requested_upgrade(&h), None);
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, upgrade"),
        );
        assert!(requested_upgrade(&h).is_some());
    }
}
