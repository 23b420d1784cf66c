//! Routing: an impersonated request to a live connection of its cluster. A short
//! request goes over an idle [`super::data`] connection while the cluster's sessions
//! are not busy; anything else (and a short request when no data connection can take
//! it) goes on a stream of a session the [`super::registry`] picks (two random
//! choices), and is tried on another session when it never left.
//!
//! A request lost with its agent's connection (closed, reset, `GOAWAY`, stream
//! refused) before any response header came back is sent once more when
//! [`retriable`]: an idempotent `GET` or `HEAD` (a watch start too) with an empty body,
//! never an upgrade (exec, attach, port-forward) nor a write. The retry keeps away from
//! every connection of the agent that lost it (its certificate serial,
//! [`AgentId`]); when the cluster has no other agent, it goes to another connection
//! than the lost one. Once the user has response headers nothing is retried: this
//! all happens before [`route`] returns. The [`Exchange`] records the retry.

use causeway_model::cluster::ClusterId;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::body::{Body, Incoming};
use tracing::Instrument;

use super::data::{DataSent, Returning};
use super::exchange::Exchange;
use super::gate::Refusal;
use super::registry::Avoid;
use super::state::StubState;
use crate::body::{self, TunnelBody};
use crate::mux::InFlight;
use crate::mux::session::{AgentId, Sent};
use crate::protocol::HDR_UPGRADE;

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

/// Whether a request may be sent again after its agent's connection died before any
/// response header: `GET` or `HEAD` (a watch start included), with an empty body, not
/// an upgrade and not an exec, attach or port-forward. Anything else may have changed
/// the cluster, or cannot be replayed.
pub fn retriable(method: &Method, path: &str, upgrade: bool, body_empty: bool) -> bool {
    let streaming = path
        .rsplit('/')
        .next()
        .is_some_and(|last| matches!(last, "exec" | "attach" | "portforward"));
    (method == Method::GET || method == Method::HEAD) && body_empty && !upgrade && !streaming
}

/// Whether a failed request's connection died under it: closed or reset, `GOAWAY`, a
/// refused stream, or the response cut off before its headers. A stream the agent
/// answered or reset for any other reason is not.
pub fn connection_died(e: &hyper::Error) -> bool {
    if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_io()
                || h2.is_go_away()
                || h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// What one attempt at sending a request came to.
enum Attempt {
    /// Answered (response headers are here) by a connection of this agent.
    Answered(Routed, AgentId),
    /// No connection allowed could take it; the request is intact. `tried`: some
    /// session was tried (and closed before the request left).
    NoConnection(Request<TunnelBody>, bool),
    /// Every session refused it before it left.
    Refused(Refusal),
    /// Sent on connection `conn` of `agent`, then failed before any response header;
    /// `died`: because that connection died.
    Lost {
        refusal: Refusal,
        conn: u64,
        agent: AgentId,
        died: bool,
    },
}

/// The head of a request that may be sent again (its body is empty).
struct Replay {
    method: Method,
    uri: http::Uri,
    version: Version,
    headers: http::HeaderMap,
}

impl Replay {
    fn of(req: &Request<TunnelBody>) -> Self {
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        }
    }

    fn request(self) -> Request<TunnelBody> {
        let mut req = Request::new(body::empty());
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        req
    }
}

/// Sends `req` to `cluster`: over an idle data connection if it is `short` (not an
/// upgrade, not long-running) and the sessions are not busy, else on one of the
/// cluster's sessions. A [`retriable`] request lost with its agent's connection is sent
/// once more, away from that agent; `ex` records it.
pub async fn route(
    shared: &StubState,
    cluster: &ClusterId,
    req: Request<TunnelBody>,
    short: bool,
    ex: &mut Exchange,
) -> Result<Routed, Refusal> {
    let body_empty = req.body().is_end_stream() || req.body().size_hint().exact() == Some(0);
    let replay = retriable(
        req.method(),
        req.uri().path(),
        req.headers().contains_key(&HDR_UPGRADE),
        body_empty,
    )
    .then(|| Replay::of(&req));
    let (refusal, conn, lost_by) = match attempt(shared, cluster, req, short, Avoid::none()).await {
        Attempt::Answered(routed, _) => return Ok(routed),
        Attempt::NoConnection(_, tried) => return Err(no_connection(cluster, tried)),
        Attempt::Refused(r) => return Err(r),
        Attempt::Lost {
            refusal,
            conn,
            agent,
            died,
        } => match replay {
            // Headers never reached the user (they are only sent after `route`).
            Some(replay) if died && !ex.headers_sent() => (refusal, conn, (agent, replay)),
            _ => return Err(refusal),
        },
    };
    let (lost_agent, replay) = lost_by;
    let outcome = |o: &str| {
        shared
            .metrics
            .retries
            .with_label_values(&[cluster.as_str(), o])
            .inc();
    };
    // Once more, on another agent; with none, on another connection than the lost one.
    let mut again = attempt(
        shared,
        cluster,
        replay.request(),
        short,
        Avoid::agent(lost_agent.clone()),
    )
    .await;
    if let Attempt::NoConnection(req, _) = again {
        again = attempt(shared, cluster, req, short, Avoid::conn(conn)).await;
    }
    match again {
        Attempt::Answered(routed, on) => {
            tracing::debug!(from = %lost_agent, %on, "retried on another connection");
            ex.set_retried(&lost_agent, Some(&on));
            outcome("answered");
            Ok(routed)
        }
        Attempt::Lost {
            refusal, agent: on, ..
        } => {
            ex.set_retried(&lost_agent, Some(&on));
            outcome("failed");
            Err(refusal)
        }
        Attempt::Refused(r) => {
            ex.set_retried(&lost_agent, None);
            outcome("failed");
            Err(r)
        }
        Attempt::NoConnection(..) => {
            ex.set_retried(&lost_agent, None);
            outcome("no_connection");
            Err(refusal)
        }
    }
}

fn no_connection(cluster: &ClusterId, tried: bool) -> Refusal {
    let msg = if tried {
        format!(
            "every live agent of cluster {:?} closed before the request could be sent",
            cluster.as_str()
        )
    } else {
        format!("cluster {:?} has no live agent", cluster.as_str())
    };
    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, msg)
}

/// One try at `req` on a connection of `cluster` that `avoid` allows: a data connection
/// if `short` and the sessions are not busy, else a session stream (another session if
/// one closed before the request left).
async fn attempt(
    shared: &StubState,
    cluster: &ClusterId,
    mut req: Request<TunnelBody>,
    short: bool,
    mut avoid: Avoid,
) -> Attempt {
    if short && shared.registry.short_in_flight(cluster) < DATA_MAX_IN_FLIGHT {
        *req.version_mut() = Version::HTTP_11;
        // HTTP/1.1 needs a Host (a user on HTTP/2 sent :authority instead).
        let add_host = !req.headers().contains_key(header::HOST);
        if add_host && let Ok(host) = HeaderValue::from_str(cluster.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
        match shared.data.send(cluster, req, &avoid).await {
            DataSent::Response(resp, tag) => {
                shared.metrics.data_requests.inc();
                return Attempt::Answered(Routed::Data(resp), tag.agent);
            }
            DataSent::NotSent(r) => {
                req = r;
                *req.version_mut() = Version::HTTP_2;
                if add_host {
                    req.headers_mut().remove(header::HOST);
                }
            }
            DataSent::Failed(e, tag) => {
                tracing::debug!(error = %e, conn = tag.id, agent = %tag.agent, "data connection failed");
                return Attempt::Lost {
                    refusal: Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        format!("the agent's data connection failed: {e}"),
                    ),
                    conn: tag.id,
                    agent: tag.agent,
                    died: connection_died(&e),
                };
            }
        }
    }

    let mut tries = 0;
    loop {
        let Some(session) = shared.registry.pick(cluster, &avoid) else {
            return Attempt::NoConnection(req, tries > 0);
        };
        tries += 1;
        avoid.conns.push(session.id);
        let in_flight = session.begin(short);
        let span = tracing::debug_span!("tunnel.stream", session = session.id, cluster = %session.cluster, agent = %session.agent);
        match session.send(req).instrument(span).await {
            Sent::Response(resp) => {
                return Attempt::Answered(Routed::Session(resp, in_flight), session.agent.clone());
            }
            Sent::NotSent(r) if tries < MAX_TRIES => {
                shared
                    .metrics
                    .retries
                    .with_label_values(&[cluster.as_str(), "not_sent"])
                    .inc();
                req = r;
            }
            Sent::NotSent(_) => {
                return Attempt::Refused(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no agent session could take the request",
                ));
            }
            Sent::Failed(e) => {
                tracing::debug!(error = %e, "stream failed");
                return Attempt::Lost {
                    died: connection_died(&e) || session.is_closed(),
                    refusal: Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        format!("the agent's stream failed: {e}"),
                    ),
                    conn: session.id,
                    agent: session.agent.clone(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_replayable_requests_are_retriable() {
        let (get, head) = (Method::GET, Method::HEAD);
        let pods = "/api/v1/namespaces/a/pods";
        // (method, path, upgrade, body empty) → retriable
        let table: &[(&Method, &str, bool, bool, bool)] = &[
            (&get, pods, false, true, true),
            (&head, pods, false, true, true),
            // a watch start is a GET too (`?watch=true` is in the query, not the path)
            (&get, "/api/v1/pods", false, true, true),
            (&get, "/api/v1/namespaces/a/pods/p/log", false, true, true),
            (&get, "/version", false, true, true),
            // a GET with a body cannot be replayed
            (&get, pods, false, false, false),
            // upgrades and streaming subresources, whatever the method
            (&get, "/api/v1/namespaces/a/pods/p/exec", true, true, false),
            (&get, "/api/v1/namespaces/a/pods/p/exec", false, true, false),
            (
                &get,
                "/api/v1/namespaces/a/pods/p/attach",
                false,
                true,
                false,
            ),
            (
                &get,
                "/api/v1/namespaces/a/pods/p/portforward",
                false,
                true,
                false,
            ),
            (&get, pods, true, true, false),
            // writes
            (&Method::POST, pods, false, true, false),
            (
                &Method::PUT,
                "/api/v1/namespaces/a/pods/p",
                false,
                true,
                false,
            ),
            (
                &Method::PATCH,
                "/api/v1/namespaces/a/pods/p",
                false,
                true,
                false,
            ),
            (
                &Method::DELETE,
                "/api/v1/namespaces/a/pods/p",
                false,
                true,
                false,
            ),
            (
                &Method::POST,
                "/api/v1/namespaces/a/pods/p/exec",
                true,
                true,
                false,
            ),
            (&Method::OPTIONS, pods, false, true, false),
        ];
        for (method, path, upgrade, empty, want) in table {
            assert_eq!(
                retriable(method, path, *upgrade, *empty),
                *want,
                "{method} {path} upgrade={upgrade} empty={empty}"
            );
        }
    }

    #[test]
    fn replay_keeps_the_head_and_has_an_empty_body() {
        let req = Request::builder()
            .method(Method::GET)
            .uri("https://tb-a/api/v1/pods?watch=true")
            .version(Version::HTTP_2)
            .header("audit-id", "x")
            .body(body::empty())
            .unwrap();
        let again = Replay::of(&req).request();
        assert_eq!(again.method(), Method::GET);
        assert_eq!(again.uri(), req.uri());
        assert_eq!(again.version(), Version::HTTP_2);
        assert_eq!(again.headers(), req.headers());
        assert!(again.body().is_end_stream());
    }

    /// How an HTTP/2 peer ends a stream, and whether the stub counts that as its
    /// connection dying (a real h2 server on loopback, hyper as the stub's client).
    async fn h2_failure(end: &'static str) -> bool {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(tcp).await.unwrap();
            if let Some(Ok((_req, mut respond))) = conn.accept().await {
                match end {
                    "refused" => respond.send_reset(h2::Reason::REFUSED_STREAM),
                    "internal" => respond.send_reset(h2::Reason::INTERNAL_ERROR),
                    "goaway" => conn.abrupt_shutdown(h2::Reason::NO_ERROR),
                    _ => return, // "closed": drop the connection
                }
            }
            // Keep the connection up until the client is done with it.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn.accept()).await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, TunnelBody>(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("https://tb-a/api")
            .body(body::empty())
            .unwrap();
        let e = send
            .send_request(req)
            .await
            .expect_err("the stream must fail");
        connection_died(&e)
    }

    #[tokio::test]
    async fn a_dead_connection_or_refused_stream_is_told_from_a_reset() {
        assert!(h2_failure("closed").await, "connection closed");
        assert!(h2_failure("goaway").await, "GOAWAY");
        assert!(h2_failure("refused").await, "REFUSED_STREAM");
        assert!(
            !h2_failure("internal").await,
            "a stream reset for another reason"
        );
    }

    #[tokio::test]
    async fn a_data_connection_closed_before_the_response_died() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            // Closed with the request read and no answer: the agent died.
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake::<_, TunnelBody>(
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/api")
            .header(header::HOST, "tb-a")
            .body(body::empty())
            .unwrap();
        let e = send.send_request(req).await.expect_err("no answer");
        assert!(connection_died(&e), "{e:?}");
    }
}
