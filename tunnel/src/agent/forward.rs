//! The agent's handler for one stream: re-issue the request to the local API
//! server as the agent's ServiceAccount, impersonating the identity the stub
//! authenticated.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument;

use super::metrics::{AgentMetrics, OpenStream};
use super::upstream::Upstream;
use crate::body::{self, ChannelBody, Prefetched, Tracked, TunnelBody};
use crate::protocol::{self, HDR_STATUS, HDR_UPGRADE};
use crate::upgrade;

/// How often the token file is re-read (bound tokens are rotated by the kubelet).
const TOKEN_REFRESH: Duration = Duration::from_secs(30);

/// Where the agent's ServiceAccount token comes from.
pub struct TokenSource {
    path: PathBuf,
    cached: Mutex<Option<(Instant, Arc<str>)>>,
}

/// Why the token could not be read.
#[derive(Debug, thiserror::Error)]
#[error("token file {path}: {reason}")]
pub struct TokenError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl TokenSource {
    /// Reads tokens from `path`, failing now if it is unreadable or empty.
    pub fn new(path: PathBuf) -> Result<Self, TokenError> {
        let src = TokenSource {
            path,
            cached: Mutex::new(None),
        };
        src.get()?;
        Ok(src)
    }

    /// The current token.
    pub fn get(&self) -> Result<Arc<str>, TokenError> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, tok)) = cached.as_ref()
            && at.elapsed() < TOKEN_REFRESH
        {
            return Ok(tok.clone());
        }
        let err = |reason: String| TokenError {
            path: self.path.clone(),
            reason,
        };
        let raw = std::fs::read_to_string(&self.path).map_err(|e| err(e.to_string()))?;
        let tok = raw.trim();
        if tok.is_empty() {
            return Err(err("is empty".into()));
        }
        if tok.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(err("holds characters a bearer token cannot have".into()));
        }
        let tok: Arc<str> = Arc::from(tok);
        *cached = Some((Instant::now(), tok.clone()));
        Ok(tok)
    }
}

/// What carried a request from the stub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// A stream of the HTTP/2 session (any request).
    Stream,
    /// A data connection (HTTP/1.1, short requests only): the response headers wait
    /// for the body's first frame, so the API server's separately written headers and
    /// data cross to the stub in one write, and the stub wakes once, not twice.
    DataConnection,
}

/// Forwards streams to the API server.
pub struct Forwarder {
    upstream: Upstream,
    token: TokenSource,
    metrics: Arc<AgentMetrics>,
}

impl Forwarder {
    /// A forwarder using `upstream` and the token from `token`, counting in `metrics`.
    pub fn new(upstream: Upstream, token: TokenSource, metrics: Arc<AgentMetrics>) -> Self {
        Forwarder {
            upstream,
            token,
            metrics,
        }
    }

    /// The API-server client (shared with self-fencing).
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The agent's ServiceAccount token (shared with self-fencing).
    pub fn token(&self) -> &TokenSource {
        &self.token
    }

    /// Handles one request from the stub.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        carrier: Carrier,
    ) -> Response<TunnelBody> {
        let span = tracing::debug_span!(
            "tunnel.agent.forward",
            method = %req.method(),
            path = req.uri().path(),
            audit_id = req.headers().get("audit-id").and_then(|v| v.to_str().ok()).unwrap_or(""),
        );
        let started = Instant::now();
        // The stream stays open until its response body ends (or the stub resets it):
        // whichever path builds the body moves this guard into it, so each response
        // body is wrapped once.
        let mut open = Some(OpenStream::new(&self.metrics.open_streams));
        let resp = match self
            .forward(req, carrier, &mut open)
            .instrument(span.clone())
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "cannot forward to the API server"));
                // The error answer's body holds the guard the other paths did not take.
                e.into_response()
                    .map(|b| body::boxed(Tracked::new(b, open.take(), |_| {})))
            }
        };
        self.metrics
            .response_headers
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .requests
            .with_label_values(&[resp.status().as_str()])
            .inc();
        resp
    }

    /// Forwards `req`. Every response it returns holds `open` (taken out of the
    /// option) in its body; on an error `open` is left for the error answer.
    async fn forward(
        &self,
        req: Request<Incoming>,
        carrier: Carrier,
        open: &mut Option<OpenStream>,
    ) -> Result<Response<TunnelBody>, ForwardError> {
        let (mut parts, body) = req.into_parts();
        let identity = protocol::decode_identity(&parts.headers)?;
        let upgrade_to = parts.headers.get(&HDR_UPGRADE).cloned();
        protocol::strip_internal(&mut parts.headers);
        protocol::strip_hop_by_hop(&mut parts.headers);
        let token = self.token.get()?;
        crate::impersonate::rewrite_for_apiserver(&mut parts.headers, &identity, &token)
            .map_err(|e| ForwardError::Identity(e.to_string()))?;
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        match upgrade_to {
            None => {
                let base = self.upstream.base();
                let uri = Uri::builder()
                    .scheme(base.scheme_str().unwrap_or("https"))
                    .authority(base.authority().map(|a| a.as_str()).unwrap_or(""))
                    .path_and_query(path)
                    .build()
                    .map_err(|e| ForwardError::BadRequest(e.to_string()))?;
                let mut out = Request::from_parts(parts, body::boxed(body));
                *out.uri_mut() = uri;
                *out.version_mut() = http::Version::HTTP_2;
                let (resp, slot) = self.upstream.send(out).await?;
                let (mut rparts, rbody) = resp.into_parts();
                protocol::strip_hop_by_hop(&mut rparts.headers);
                // The one wrapper of the API server's body: it holds the connection
                // slot and the open-stream count until the body ends or is dropped.
                let rbody = Tracked::new(rbody, (slot, open.take()), |_| {});
                let rbody = match carrier {
                    Carrier::Stream => body::boxed(rbody),
                    // An error reading it is passed on as the body's, as on a stream.
                    Carrier::DataConnection => body::boxed(Prefetched::read(rbody).await),
                };
                Ok(Response::from_parts(rparts, rbody))
            }
            // Boxed: the rare upgrade path would otherwise double the size of every
            // stream's future, which is moved on each spawn.
            Some(proto) => Box::pin(self.forward_upgrade(parts, body, path, proto, open)).await,
        }
    }

    async fn forward_upgrade(
        &self,
        mut parts: http::request::Parts,
        from_stub: Incoming,
        path: String,
        proto: HeaderValue,
        open: &mut Option<OpenStream>,
    ) -> Result<Response<TunnelBody>, ForwardError> {
        let host = self
            .upstream
            .base()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        parts.headers.insert(
            header::HOST,
            HeaderValue::from_str(&host).map_err(|e| ForwardError::BadRequest(e.to_string()))?,
        );
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        parts.headers.insert(header::UPGRADE, proto);
        let mut up = Request::from_parts(parts, body::empty());
        *up.uri_mut() = path
            .parse()
            .map_err(|e: http::uri::InvalidUri| ForwardError::BadRequest(e.to_string()))?;
        *up.version_mut() = http::Version::HTTP_11;
        let mut resp = self.upstream.send_upgrade(up).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            // No 101: pass the answer back as it is and splice nothing.
            tracing::debug!(status = %resp.status(), "API server refused the upgrade");
            let (mut rparts, rbody) = resp.into_parts();
            protocol::strip_hop_by_hop(&mut rparts.headers);
            let rbody = Tracked::new(rbody, open.take(), |_| {});
            return Ok(Response::from_parts(rparts, body::boxed(rbody)));
        }
        let accepted = resp
            .headers()
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(""));
        let on_upgrade = hyper::upgrade::on(&mut resp);
        let (tx, channel) = ChannelBody::new(upgrade::PIPE_DEPTH);
        let (mut rparts, _) = resp.into_parts();
        protocol::strip_hop_by_hop(&mut rparts.headers);
        rparts.status = StatusCode::OK;
        rparts.version = http::Version::HTTP_2;
        rparts
            .headers
            .insert(HDR_STATUS, HeaderValue::from_static("101"));
        rparts.headers.insert(HDR_UPGRADE, accepted);
        tokio::spawn(
            async move {
                match upgrade::splice(on_upgrade, from_stub, tx).await {
                    Ok(n) => tracing::debug!(
                        to_apiserver = n.into_io,
                        from_apiserver = n.from_io,
                        "upgraded stream ended"
                    ),
                    Err(upgrade::SpliceError::Upgrade(e)) => {
                        tracing::warn!(error = %e, "API server upgrade failed after 101")
                    }
                    Err(e) => tracing::debug!(error = %e, "upgraded stream failed"),
                }
            }
            .in_current_span(),
        );
        // Open until the splice ends and drops the channel's sender.
        let channel = Tracked::new(channel, open.take(), |_| {});
        Ok(Response::from_parts(rparts, body::boxed(channel)))
    }
}

/// Why a stream could not be forwarded; becomes a `metav1.Status` answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The stub's stream lacked a valid identity.
    #[error("{0}")]
    Protocol(#[from] protocol::ProtocolError),
    /// The identity could not be put into impersonation headers.
    #[error("impersonation: {0}")]
    Identity(String),
    /// The agent's token is unreadable.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The request could not be rebuilt.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The API server could not be reached.
    #[error("{0}")]
    Upstream(#[from] super::upstream::UpstreamError),
}

impl ForwardError {
    fn into_response(self) -> Response<Full<Bytes>> {
        let code = match self {
            ForwardError::Protocol(_) | ForwardError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ForwardError::Identity(_) => StatusCode::FORBIDDEN,
            ForwardError::Token(_) | ForwardError::Upstream(_) => StatusCode::BAD_GATEWAY,
        };
        let msg = format!("causeway agent: {self}");
        crate::status::status_response(code, crate::status::reason_for(code), &msg)
    }
}
