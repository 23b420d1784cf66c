//! One session: the stub's HTTP/2 client handle over an agent's connection, tagged
//! with the [`AgentId`] that owns it, with the count of streams in flight used for
//! balancing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use causeway_model::cluster::ClusterId;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::TunnelBody;
use crate::protocol;

/// Interval between HTTP/2 keep-alive pings on a session.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// A session whose ping is not answered within this time is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent that owns a connection (a session or a data connection): the serial
/// number of its certificate, lower-case hex. Every connection one agent dials carries
/// the same one, so a request lost with one of them can be retried away from all of
/// them. Agents that share one enrolled certificate (an identity Secret) share it too.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AgentId(Arc<str>);

impl AgentId {
    /// The agent whose certificate has serial number `serial`.
    pub fn new(serial: &str) -> Self {
        AgentId(Arc::from(serial))
    }

    /// The serial number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stub's end of one agent connection.
pub struct Session {
    /// Unique within this stub process (shared with data connections' IDs).
    pub id: u64,
    /// The cluster the agent's certificate is bound to.
    pub cluster: ClusterId,
    /// The agent that dialled it.
    pub agent: AgentId,
    /// The agent's address, for logs.
    pub peer: SocketAddr,
    sender: SendRequest<TunnelBody>,
    in_flight: Arc<AtomicUsize>,
    short_in_flight: Arc<AtomicUsize>,
}

/// Counts one stream in flight on a session (and, for a short request, among the
/// short ones) until dropped.
pub struct InFlight {
    all: Arc<AtomicUsize>,
    short: Option<Arc<AtomicUsize>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.all.fetch_sub(1, Ordering::Relaxed);
        if let Some(s) = &self.short {
            s.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The future driving a session's connection; completes when the session ends.
pub type SessionConnection =
    std::pin::Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// What happened to a request sent on a session.
pub enum Sent {
    /// The agent answered.
    Response(Response<Incoming>),
    /// The request never left: the session was closing. Try another.
    NotSent(Request<TunnelBody>),
    /// The request was (maybe partly) sent and then failed.
    Failed(hyper::Error),
}

impl Session {
    /// Performs the HTTP/2 client handshake over an accepted agent connection.
    pub async fn handshake<I>(
        id: u64,
        cluster: ClusterId,
        agent: AgentId,
        peer: SocketAddr,
        io: I,
    ) -> Result<(Arc<Session>, SessionConnection), hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(protocol::STREAM_WINDOW)
            .initial_connection_window_size(protocol::SESSION_WINDOW)
            .max_frame_size(protocol::MAX_FRAME)
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .max_concurrent_reset_streams(10_000)
            .handshake(TokioIo::new(io))
            .await?;
        let session = Arc::new(Session {
            id,
            cluster,
            agent,
            peer,
            sender,
            in_flight: Arc::new(AtomicUsize::new(0)),
            short_in_flight: Arc::new(AtomicUsize::new(0)),
        });
        Ok((session, Box::pin(conn)))
    }

    /// Streams in flight on this session.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Short (not long-running) streams in flight on this session.
    pub fn short_in_flight(&self) -> usize {
        self.short_in_flight.load(Ordering::Relaxed)
    }

    /// Whether the session can no longer carry streams.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Counts a stream in flight until the returned guard drops; `short` for an
    /// ordinary request (not a watch, log, exec, …).
    pub fn begin(&self, short: bool) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let short = short.then(|| {
            self.short_in_flight.fetch_add(1, Ordering::Relaxed);
            self.short_in_flight.clone()
        });
        InFlight {
            all: self.in_flight.clone(),
            short,
        }
    }

    /// Opens a stream carrying `req`.
    pub async fn send(&self, req: Request<TunnelBody>) -> Sent {
        let mut sender = self.sender.clone();
        match sender.try_send_request(req).await {
            Ok(resp) => Sent::Response(resp),
            Err(mut e) => match e.take_message() {
                Some(req) => Sent::NotSent(req),
                None => Sent::Failed(e.into_error()),
            },
        }
    }
}

/// Serves a session on the agent side: every stream is handed to `service`.
///
/// Completes when the stub closes the session or the connection fails.
pub async fn serve<I, S>(io: I, service: S) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<TunnelBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(protocol::STREAM_WINDOW)
        .initial_connection_window_size(protocol::SESSION_WINDOW)
        .max_frame_size(protocol::MAX_FRAME)
        .max_concurrent_streams(protocol::MAX_STREAMS)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .max_pending_accept_reset_streams(10_000)
        .serve_connection(TokioIo::new(io), service)
        .await
}
