//! TCP + TLS plumbing for the tunnel: dialling out (agent → stub, agent → API
//! server), accepting with a handshake deadline and [`HandshakeLimits`], and reading
//! the peer certificate.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// A TCP stream read through a buffer: rustls asks for at most one TLS record
/// (≤ 16 KiB) per read, so without it a large body costs one `recv(2)` per record.
///
/// The buffer exists only once it is useful: reads go straight to the socket until
/// [`BufTcp::buffer_reads`] (after the TLS handshake, which is a few small reads), and
/// it is allocated when the socket first has data after that. A peer stalling its
/// handshake thus holds no read buffer (256 KiB on the agents' listener).
pub struct BufTcp {
    tcp: TcpStream,
    capacity: usize,
    buffering: bool,
    /// Empty until allocated, then `capacity` bytes, of which `pos..filled` are unread.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
}

impl BufTcp {
    /// `tcp`, to be read through a buffer of `capacity` bytes after
    /// [`BufTcp::buffer_reads`].
    pub fn new(capacity: usize, tcp: TcpStream) -> Self {
        BufTcp {
            tcp,
            capacity,
            buffering: false,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
        }
    }

    /// Reads through the buffer from now on.
    pub fn buffer_reads(&mut self) {
        self.buffering = true;
    }

    /// The TCP stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.tcp
    }

    /// The TCP stream, mutably (reading from it directly skips what is buffered).
    pub fn get_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }
}

impl tokio::io::AsyncRead for BufTcp {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        dst: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.filled {
            // Nothing buffered: large reads (and every read until buffering starts) go
            // straight to the socket.
            if !this.buffering || dst.remaining() >= this.capacity {
                return std::pin::Pin::new(&mut this.tcp).poll_read(cx, dst);
            }
            if this.buf.is_empty() {
                std::task::ready!(this.tcp.poll_read_ready(cx))?;
                this.buf = vec![0; this.capacity];
            }
            let mut fill = tokio::io::ReadBuf::new(&mut this.buf);
            std::task::ready!(std::pin::Pin::new(&mut this.tcp).poll_read(cx, &mut fill))?;
            this.filled = fill.filled().len();
            this.pos = 0;
        }
        let n = dst.remaining().min(this.filled - this.pos);
        dst.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for BufTcp {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Read buffer of a stub⇄agent session and of an agent's API-server connection:
/// bulk bodies arrive here, many records per `recv(2)`.
pub const BULK_READ_BUFFER: usize = 256 * 1024;

/// Read buffer of a user's connection and of short exchanges (enrolment): requests
/// are small, and there can be many such connections.
pub const SMALL_READ_BUFFER: usize = 16 * 1024;

/// How long a TLS handshake may take before the connection is dropped (dialling out,
/// and the default of [`HandshakeLimits::timeout`]).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`HandshakeLimits::max_pending`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;

/// Default of [`HandshakeLimits::max_pending_per_source`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE: usize = 64;

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection could not be made or accepted.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {peer}: {source}")]
    Handshake {
        /// The peer.
        peer: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connect or handshake took too long.
    #[error("{what} with {peer} timed out")]
    Timeout {
        /// Which step.
        what: &'static str,
        /// The peer.
        peer: String,
    },
    /// The server name is not a valid DNS name or IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// The handshake was still in progress when the listener's cap on handshakes was
    /// reached and it was the oldest ([`HandshakeGate`]).
    #[error("TLS handshake with {peer} evicted: too many handshakes in progress")]
    Evicted {
        /// The peer.
        peer: String,
    },
}

/// Where an `https://HOST[:PORT]` URL points (port 443 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl {
    /// `HOST:PORT` to dial (`[v6]:PORT` for an IPv6 address).
    pub addr: String,
    /// The host, without IPv6 brackets (the TLS server name).
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Why a URL is not `https://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpsUrlError {
    /// Not a URL at all.
    #[error("not a URL: {0}")]
    NotUrl(String),
    /// Another scheme.
    #[error("must start with https://")]
    NotHttps,
    /// No host.
    #[error("has no host")]
    NoHost,
}

impl std::str::FromStr for HttpsUrl {
    type Err = HttpsUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| HttpsUrlError::NotUrl(e.to_string()))?;
        if uri.scheme_str() != Some("https") {
            return Err(HttpsUrlError::NotHttps);
        }
        let host = uri
            .host()
            .ok_or(HttpsUrlError::NoHost)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(HttpsUrl { addr, host, port })
    }
}

/// Dials `addr` (host:port) over TCP with `TCP_NODELAY`, then TLS as `server_name`,
/// reading through a buffer of `read_buffer` bytes.
pub async fn connect_tls(
    addr: &str,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
    read_buffer: usize,
) -> Result<client::TlsStream<BufTcp>, TransportError> {
    let tcp = BufTcp::new(read_buffer, connect_tcp(addr).await?);
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| TransportError::ServerName(server_name.to_owned()))?;
    let tls = TlsConnector::from(config).connect(name, tcp);
    let mut tls = handshake(tls, || addr.to_owned()).await?;
    tls.get_mut().0.buffer_reads();
    Ok(tls)
}

/// Runs a TLS handshake within [`HANDSHAKE_TIMEOUT`]; `peer` names the other side in
/// errors.
async fn handshake<S>(
    tls: impl Future<Output = std::io::Result<S>>,
    peer: impl FnOnce() -> String,
) -> Result<S, TransportError> {
    handshake_within(HANDSHAKE_TIMEOUT, tls, peer).await
}

/// Runs a TLS handshake within `timeout`; `peer` names the other side in errors.
async fn handshake_within<S>(
    timeout: Duration,
    tls: impl Future<Output = std::io::Result<S>>,
    peer: impl FnOnce() -> String,
) -> Result<S, TransportError> {
    match tokio::time::timeout(timeout, tls).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(source)) => Err(TransportError::Handshake {
            peer: peer(),
            source,
        }),
        Err(_) => Err(TransportError::Timeout {
            what: "TLS handshake",
            peer: peer(),
        }),
    }
}

/// Dials `addr` over TCP with `TCP_NODELAY`.
pub async fn connect_tcp(addr: &str) -> Result<TcpStream, TransportError> {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(TransportError::Connect {
                addr: addr.to_owned(),
                source,
            });
        }
        Err(_) => {
            return Err(TransportError::Timeout {
                what: "TCP connect",
                peer: addr.to_owned(),
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// TCP keep-alive idle time on a data connection.
const DATA_KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// TCP keep-alive probe interval on a data connection.
const DATA_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unacknowledged data older than this closes a data connection (`TCP_USER_TIMEOUT`).
const DATA_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Makes a silent peer of a data connection noticed: HTTP/1.1 has no ping, so TCP
/// keep-alive probes an idle connection (a dead peer is found in ~25 s) and
/// `TCP_USER_TIMEOUT` fails a request written to a peer that stopped acknowledging,
/// as a session's HTTP/2 pings do. Best effort: errors are ignored.
pub fn watch_liveness(tcp: &TcpStream) {
    let sock = socket2::SockRef::from(tcp);
    let ka = socket2::TcpKeepalive::new()
        .with_time(DATA_KEEPALIVE_IDLE)
        .with_interval(DATA_KEEPALIVE_INTERVAL)
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&ka);
    let _ = sock.set_tcp_user_timeout(Some(DATA_USER_TIMEOUT));
}

/// Accepts TLS on one already-accepted TCP connection within `timeout`, reading
/// through a buffer of `read_buffer` bytes after the handshake. Until the peer sends
/// anything the connection holds only its socket (the TLS state is allocated then),
/// and never a read buffer before the handshake ended ([`BufTcp`]).
pub async fn accept_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &Arc<rustls::ServerConfig>,
    read_buffer: usize,
    timeout: Duration,
) -> Result<server::TlsStream<BufTcp>, TransportError> {
    let _ = tcp.set_nodelay(true);
    let tls = async {
        tcp.readable().await?;
        // Boxed: the TLS state is allocated only now.
        Box::pin(TlsAcceptor::from(config.clone()).accept(BufTcp::new(read_buffer, tcp))).await
    };
    let mut tls = handshake_within(timeout, tls, || peer.to_string()).await?;
    tls.get_mut().0.buffer_reads();
    Ok(tls)
}

/// The peer's leaf certificate on a server-side TLS stream, if it sent one.
pub fn peer_leaf<IO>(tls: &server::TlsStream<IO>) -> Option<CertificateDer<'static>> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
}

/// The negotiated ALPN protocol on a server-side TLS stream.
pub fn alpn<IO>(tls: &server::TlsStream<IO>) -> Option<Vec<u8>> {
    tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// Accepts one TCP connection; errors such as EMFILE are logged and retried after a pause.
pub async fn accept_tcp(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What a TLS listener serves with: its rustls configuration and the gate that bounds
/// its handshakes in progress.
#[derive(Clone)]
pub struct TlsServer {
    /// The listener's TLS configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// Its handshakes in progress.
    pub handshakes: Arc<HandshakeGate>,
}

impl TlsServer {
    /// Serves `config` behind a gate of `limits` (without metrics).
    pub fn new(config: Arc<rustls::ServerConfig>, limits: HandshakeLimits) -> Self {
        TlsServer {
            config,
            handshakes: Arc::new(HandshakeGate::new(limits)),
        }
    }
}

/// Accepts connections on `listener` until `shutdown`; each one admitted by the
/// listener's [`HandshakeGate`] completes its TLS handshake on its own task (within
/// [`HandshakeLimits::timeout`]) and is then handed to `serve` with the peer's address
/// and the shutdown token. Failed handshakes are logged (at info level when
/// `log_failures` is set, e.g. for agents, whose failures an operator wants to see);
/// connections the gate refused or evicted only at debug level (a flood would flood the
/// log too): its metrics count them.
pub async fn serve_tls<F, Fut>(
    listener: TcpListener,
    tls: TlsServer,
    read_buffer: usize,
    shutdown: tokio_util::sync::CancellationToken,
    log_failures: bool,
    serve: F,
) where
    F: Fn(server::TlsStream<BufTcp>, SocketAddr, tokio_util::sync::CancellationToken) -> Fut
        + Clone
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let TlsServer { config, handshakes } = tls;
    let timeout = handshakes.limits().timeout;
    loop {
        let (tcp, peer) = tokio::select! {
            p = accept_tcp(&listener) => p,
            () = shutdown.cancelled() => return,
        };
        let Some(mut permit) = handshakes.admit(peer.ip()) else {
            // A reset rather than a close: no FIN exchange, no TIME_WAIT left here.
            let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            tracing::debug!(%peer, "refused a connection: its source has too many TLS handshakes in progress");
            continue;
        };
        let config = config.clone();
        let (serve, shutdown) = (serve.clone(), shutdown.clone());
        tokio::spawn(async move {
            let accepted = tokio::select! {
                r = accept_tls(tcp, peer, &config, read_buffer, timeout) => r,
                _ = &mut permit.evicted => Err(TransportError::Evicted { peer: peer.to_string() }),
            };
            drop(permit);
            match accepted {
                // Boxed: the task of a pending handshake is not sized for a served
                // connection.
                Ok(tls) => Box::pin(serve(tls, peer, shutdown)).await,
                Err(e @ TransportError::Evicted { .. }) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake evicted")
                }
                Err(e) if log_failures => tracing::info!(error = %e, %peer, "TLS handshake failed"),
                Err(e) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
            }
        });
    }
}

/// What peers that have not authenticated yet may hold on one listener. Every TCP
/// connection is such a peer until its TLS handshake ends (the client certificate or
/// the bearer token comes with or after it), so these bound the handshakes in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// How long a handshake may take, from the TCP accept to its end.
    pub timeout: Duration,
    /// Handshakes in progress on the listener, all sources together.
    pub max_pending: usize,
    /// Handshakes in progress from one source: an IPv4 address, or an IPv6 /64 (see
    /// [`HandshakeGate`]).
    pub max_pending_per_source: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            timeout: HANDSHAKE_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING_HANDSHAKES,
            max_pending_per_source: DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE,
        }
    }
}

/// Bounds the TLS handshakes one listener has in progress by [`HandshakeLimits`].
///
/// * **At a source's cap, the newcomer is refused.** Its connection is reset at accept,
///   before any task, buffer or TLS state exists for it: a flood from one source costs
///   an `accept(2)` per connection and holds at most `max_pending_per_source`
///   handshakes, so it cannot crowd other sources out of the global cap. Only whoever
///   shares the flooder's source is refused with it.
/// * **At the global cap, the oldest is evicted.** A flood spread over many sources,
///   each under its own cap, fills the global cap instead. Refusing newcomers then would
///   lock every real client out for as long as the flood keeps the table full
///   (re-opening each connection as it times out is enough). Evicting the oldest
///   pending handshake (closing its connection) bounds memory just the same, but a real
///   client, whose handshake ends a round trip or two after its connect, is never the
///   oldest unless the whole table turns over within that time, while an idle flood
///   connection soon is.
///
/// A source is an IPv4 address (/32), not its /24: behind NAT many real clients already
/// share one address, and a /24 would add all their neighbours to that bucket (one
/// flooding machine in a cloud /24 would lock out the other tenants there), while an
/// attacker holding a whole /24 is what the global cap is for. An IPv6 source is its
/// /64, the smallest prefix a site is normally given (one host may use every address
/// in it); an IPv4-mapped IPv6 address counts as its IPv4 address.
pub struct HandshakeGate {
    limits: HandshakeLimits,
    metrics: Option<HandshakeMetrics>,
    pending: Mutex<Pending>,
}

/// The metric handles a [`HandshakeGate`] keeps current.
struct HandshakeMetrics {
    in_progress: IntGauge,
    refused_source: IntCounter,
    evicted: IntCounter,
}

/// The handshakes in progress: by age (the admission number), and a count per source.
#[derive(Default)]
struct Pending {
    next: u64,
    by_age: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    per_source: HashMap<IpAddr, usize>,
}

impl Pending {
    /// Forgets handshake `id`; false if it was not pending (any more). Dropping its
    /// sender wakes a task waiting for its eviction.
    fn remove(&mut self, id: u64) -> bool {
        let Some((source, _)) = self.by_age.remove(&id) else {
            return false;
        };
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
        true
    }
}

/// A handshake admitted by a [`HandshakeGate`]; dropping it gives its place back.
pub struct HandshakePermit {
    gate: Arc<HandshakeGate>,
    id: u64,
    /// Resolves when the gate evicted this handshake.
    pub evicted: oneshot::Receiver<()>,
}

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        let mut pending = self.gate.lock();
        if pending.remove(self.id) {
            self.gate.report(&pending);
        }
    }
}

/// The source a peer's address counts as (see [`HandshakeGate`]).
pub fn handshake_source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !(u128::from(u64::MAX)))),
        },
    }
}

impl HandshakeGate {
    /// A gate of `limits`, without metrics; caps of 0 count as 1.
    pub fn new(limits: HandshakeLimits) -> Self {
        HandshakeGate {
            limits: HandshakeLimits {
                max_pending: limits.max_pending.max(1),
                max_pending_per_source: limits.max_pending_per_source.max(1),
                ..limits
            },
            metrics: None,
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Keeps `in_progress` at the number of handshakes in progress and counts the
    /// connections refused at a source's cap in `refused_source`, the handshakes
    /// evicted at the global cap in `evicted`.
    pub fn with_metrics(
        mut self,
        in_progress: IntGauge,
        refused_source: IntCounter,
        evicted: IntCounter,
    ) -> Self {
        self.metrics = Some(HandshakeMetrics {
            in_progress,
            refused_source,
            evicted,
        });
        self
    }

    /// Its limits.
    pub fn limits(&self) -> HandshakeLimits {
        self.limits
    }

    /// Handshakes in progress now.
    pub fn in_progress(&self) -> usize {
        self.lock().by_age.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, pending: &Pending) {
        if let Some(m) = &self.metrics {
            m.in_progress
                .set(i64::try_from(pending.by_age.len()).unwrap_or(i64::MAX));
        }
    }

    /// Admits a handshake from `peer`: `None` when its source is at its cap, else its
    /// permit, after evicting the oldest handshake in progress if the gate was full.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<HandshakePermit> {
        let source = handshake_source(peer);
        let mut pending = self.lock();
        if pending.per_source.get(&source).copied().unwrap_or(0)
            >= self.limits.max_pending_per_source
        {
            drop(pending);
            if let Some(m) = &self.metrics {
                m.refused_source.inc();
            }
            return None;
        }
        let mut evicted = 0;
        while pending.by_age.len() >= self.limits.max_pending {
            let Some(oldest) = pending.by_age.keys().next().copied() else {
                break;
            };
            pending.remove(oldest);
            evicted += 1;
        }
        let id = pending.next;
        pending.next += 1;
        let (tx, evicted_rx) = oneshot::channel();
        pending.by_age.insert(id, (source, tx));
        *pending.per_source.entry(source).or_insert(0) += 1;
        self.report(&pending);
        drop(pending);
        if let (Some(m), true) = (&self.metrics, evicted > 0) {
            m.evicted.inc_by(evicted);
        }
        Some(HandshakePermit {
            gate: self.clone(),
            id,
            evicted: evicted_rx,
        })
    }
}

/// A plain-text response.
pub fn text_response(
    code: http::StatusCode,
    text: String,
) -> http::Response<crate::body::TunnelBody> {
    let mut r = http::Response::new(crate::body::full(text));
    *r.status_mut() = code;
    r
}

/// The endpoints every metrics listener has: `/metrics` (Prometheus text from
/// `metrics`), `/healthz` and `/livez`; `None` for any other path.
pub fn common_endpoint(
    path: &str,
    metrics: impl FnOnce() -> String,
) -> Option<http::Response<crate::body::TunnelBody>> {
    match path {
        "/metrics" => {
            let mut r = text_response(http::StatusCode::OK, metrics());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Some(r)
        }
        "/healthz" | "/livez" => Some(text_response(http::StatusCode::OK, "ok\n".into())),
        _ => None,
    }
}

/// Serves small plain-HTTP/1.1 endpoints (metrics, health) on `listener` until
/// `shutdown`: every request is answered by `answer`.
pub async fn serve_plain_http<F>(
    listener: TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
    answer: F,
) where
    F: Fn(&http::Request<hyper::body::Incoming>) -> http::Response<crate::body::TunnelBody>
        + Clone
        + Send
        + Sync
        + 'static,
{
    loop {
        let (tcp, _) = tokio::select! {
            p = accept_tcp(&listener) => p,
            () = shutdown.cancelled() => return,
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let resp = answer(&req);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(max_pending: usize, max_pending_per_source: usize) -> HandshakeLimits {
        HandshakeLimits {
            timeout: Duration::from_secs(5),
            max_pending,
            max_pending_per_source,
        }
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64s() {
        assert_eq!(handshake_source(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_ne!(
            handshake_source(ip("10.1.2.3")),
            handshake_source(ip("10.1.2.4"))
        );
        assert_eq!(handshake_source(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(
            handshake_source(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(
            handshake_source(ip("2001:db8:1:2::1")),
            handshake_source(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn refuses_at_a_sources_cap_and_evicts_the_oldest_at_the_global_cap() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let refused = IntCounter::new("r", "r").unwrap();
        let evicted = IntCounter::new("e", "e").unwrap();
        let gate = Arc::new(HandshakeGate::new(limits(3, 2)).with_metrics(
            gauge.clone(),
            refused.clone(),
            evicted.clone(),
        ));
        let mut a1 = gate.admit(ip("127.0.0.2")).expect("a1");
        let mut a2 = gate.admit(ip("127.0.0.2")).expect("a2");
        assert!(gate.admit(ip("127.0.0.2")).is_none(), "source cap");
        assert_eq!(refused.get(), 1);
        let mut b1 = gate.admit(ip("127.0.0.3")).expect("b1");
        assert_eq!((gate.in_progress(), gauge.get(), evicted.get()), (3, 3, 0));
        // Full: the next one evicts the oldest, a1, and only a1.
        let c1 = gate.admit(ip("127.0.0.4")).expect("c1");
        assert!(a1.evicted.try_recv().is_err(), "a1 evicted");
        assert!(matches!(
            a2.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert_eq!((gate.in_progress(), gauge.get(), evicted.get()), (3, 3, 1));
        // a1's place at its source is free again; dropping the evicted permit changes
        // nothing.
        drop(a1);
        assert_eq!(gate.in_progress(), 3);
        let a3 = gate.admit(ip("127.0.0.2")).expect("a3");
        assert!(a2.evicted.try_recv().is_err(), "a2 evicted");
        assert_eq!(evicted.get(), 2);
        drop((a2, a3, c1));
        assert!(matches!(
            b1.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        drop(b1);
        assert_eq!((gate.in_progress(), gauge.get()), (0, 0));
        assert!(gate.lock().per_source.is_empty());
    }

    /// A TCP connection from `from`; `None` if it was reset before `connect` returned.
    async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(from.into(), 0)).unwrap();
        s.connect(to).await.ok()
    }

    /// [`BufTcp`] returns the bytes sent, in order, whatever the read sizes, before and
    /// after buffering starts, and allocates its buffer only when buffering.
    #[tokio::test]
    async fn buf_tcp_reads_everything_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            for chunk in sent.chunks(7_000) {
                tcp.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut r = BufTcp::new(4096, TcpStream::connect(addr).await.unwrap());
        let mut got = vec![0u8; 100];
        r.read_exact(&mut got).await.unwrap();
        assert!(r.buf.is_empty(), "no buffer before buffer_reads");
        r.buffer_reads();
        let sizes = [1usize, 10, 4095, 4096, 9000, 3, 50_000];
        let mut i = 0;
        loop {
            let mut b = vec![0u8; sizes[i % sizes.len()]];
            i += 1;
            let n = r.read(&mut b).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
        writer.await.unwrap();
        assert_eq!(r.buf.len(), 4096);
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
    }

    /// Waits (bounded) until `f` holds.
    async fn eventually(what: &str, f: impl Fn() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 2 s");
    }

    /// Over real sockets: idle connections and partial ClientHellos are held up to the
    /// caps (the rest reset or evicted), and a real client still completes its handshake.
    #[tokio::test]
    async fn serve_tls_bounds_pending_handshakes_and_still_serves() {
        let ca = crate::pki::Ca::generate().unwrap();
        let server = ca
            .issue_server(&["127.0.0.1".into()], Duration::from_secs(3600))
            .unwrap();
        let config = Arc::new(ca.user_server_config(&server).unwrap());
        let tls = TlsServer::new(config, limits(8, 4));
        let gate = tls.handshakes.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let serve = |mut tls: server::TlsStream<BufTcp>, _peer, _shutdown| async move {
            let _ = tls.write_all(b"k").await;
            let _ = tls.shutdown().await;
        };
        let server = tokio::spawn(serve_tls(
            listener,
            tls,
            SMALL_READ_BUFFER,
            shutdown.clone(),
            false,
            serve,
        ));

        // One source: 4 held, the other 2 reset at once.
        let mut one = Vec::new();
        let mut reset = 0;
        for _ in 0..6 {
            match connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).await {
                Some(c) => one.push(c),
                None => reset += 1,
            }
        }
        eventually("4 pending", || gate.in_progress() == 4).await;
        for c in &mut one {
            let mut b = [0u8; 1];
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), c.read(&mut b)).await {
                assert!(!matches!(r, Ok(n) if n > 0), "no data before a handshake");
                reset += 1;
            }
        }
        assert_eq!(reset, 2, "refused at the source's cap");
        // Two more sources, one sending half a ClientHello: the global cap of 8 evicts
        // the oldest (source 127.0.0.2's).
        let mut more = Vec::new();
        for i in 0..8u8 {
            let mut c = connect_from(Ipv4Addr::new(127, 0, 0, 3 + i % 2), addr)
                .await
                .expect("under the source's cap");
            if i % 2 == 0 {
                c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
                    .await
                    .unwrap();
            }
            more.push(c);
        }
        eventually("8 pending", || gate.in_progress() == 8).await;
        // The 4 of 127.0.0.2 were the oldest: evicted, their connections closed.
        for c in &mut one {
            let mut b = [0u8; 1];
            let r = tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await;
            assert!(matches!(r, Ok(Ok(0) | Err(_))), "evicted and closed: {r:?}");
        }
        // A real client completes (evicting one more idle one).
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(crate::pki::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut c = connect_tls(
            &addr.to_string(),
            "127.0.0.1",
            Arc::new(client),
            SMALL_READ_BUFFER,
        )
        .await
        .expect("a real client's handshake");
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"k");
        assert!(gate.in_progress() <= 8);
        shutdown.cancel();
        server.await.unwrap();
    }
}
