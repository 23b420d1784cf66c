//! TCP + TLS plumbing for the tunnel: dialling out (agent → stub, agent → API
//! server), accepting with a handshake deadline, and reading the peer certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// A TCP stream read through a buffer: rustls asks for at most one TLS record
/// (≤ 16 KiB) per read, so without it a large body costs one `recv(2)` per record.
pub type BufTcp = BufReader<TcpStream>;

/// Read buffer of a stub⇄agent session and of an agent's API-server connection:
/// bulk bodies arrive here, many records per `recv(2)`.
pub const BULK_READ_BUFFER: usize = 256 * 1024;

/// Read buffer of a user's connection and of short exchanges (enrolment): requests
/// are small, and there can be many such connections.
pub const SMALL_READ_BUFFER: usize = 16 * 1024;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let tcp = BufReader::with_capacity(read_buffer, connect_tcp(addr).await?);
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| TransportError::ServerName(server_name.to_owned()))?;
    let tls = TlsConnector::from(config).connect(name, tcp);
    handshake(tls, || addr.to_owned()).await
}

/// Runs a TLS handshake within [`HANDSHAKE_TIMEOUT`]; `peer` names the other side in
/// errors.
async fn handshake<S>(
    tls: impl Future<Output = std::io::Result<S>>,
    peer: impl FnOnce() -> String,
) -> Result<S, TransportError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls).await {
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

/// Accepts TLS on one already-accepted TCP connection, within [`HANDSHAKE_TIMEOUT`],
/// reading through a buffer of `read_buffer` bytes.
pub async fn accept_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    read_buffer: usize,
) -> Result<server::TlsStream<BufTcp>, TransportError> {
    let _ = tcp.set_nodelay(true);
    let tcp = BufReader::with_capacity(read_buffer, tcp);
    handshake(acceptor.accept(tcp), || peer.to_string()).await
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

/// Accepts connections on `listener` until `shutdown`; each one completes its TLS
/// handshake on its own task (within [`HANDSHAKE_TIMEOUT`]) and is then handed to
/// `serve` with the peer's address and the shutdown token. Failed handshakes are logged (at info level when
/// `log_failures` is set, e.g. for agents, whose failures an operator wants to see).
pub async fn serve_tls<F, Fut>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
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
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            p = accept_tcp(&listener) => p,
            () = shutdown.cancelled() => return,
        };
        let acceptor = acceptor.clone();
        let (serve, shutdown) = (serve.clone(), shutdown.clone());
        tokio::spawn(async move {
            match accept_tls(tcp, peer, &acceptor, read_buffer).await {
                Ok(tls) => serve(tls, peer, shutdown).await,
                Err(e) if log_failures => tracing::info!(error = %e, %peer, "TLS handshake failed"),
                Err(e) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
            }
        });
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
