//! The tests' one HTTP(S) client: hyper over rustls, trusting a given CA, optionally
//! with a client certificate and a bearer token. One-shot requests (async or from
//! synchronous tests), or a raw HTTP/1.1 (upgrades allowed) or HTTP/2 connection for
//! tests that drive hyper themselves. Plus reading one sample from a `/metrics` page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a test request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connection failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        /// With whom.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The CA, client certificate or key could not be used.
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// HTTP failed (handshake, request or body).
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a bad path or header).
    #[error("request: {0}")]
    Request(#[from] http::Error),
    /// No whole answer in time.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// From whom.
        addr: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// A runtime for a blocking request could not be built.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// TLS for a test client: trusts the CA certificates in `ca_pem`, presents the client
/// certificate chain `cert_pem` with `key_pem` if given, and offers `alpn` (e.g.
/// `[b"h2"]`; empty offers none).
pub fn client_tls(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, HttpError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| HttpError::TlsSetup(format!("{what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| bad("CA PEM", &e))?;
        roots.add(cert).map_err(|e| bad("CA certificate", &e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("protocol versions", &e))?
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("client certificate PEM", &e))?;
            let key =
                PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("client key PEM", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client certificate", &e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A whole response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// Reads the whole body of `resp`.
    pub async fn read(resp: Response<Incoming>) -> Result<Self, HttpError> {
        let (parts, body) = resp.into_parts();
        Ok(Self {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        })
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client of one server: plain HTTP or HTTPS, with an optional bearer token.
#[derive(Clone)]
pub struct HttpClient {
    addr: SocketAddr,
    tls: Option<TlsConnector>,
    /// SNI and `Host`/`:authority`.
    host: String,
    bearer: Option<String>,
    timeout: Duration,
    h2_windows: Option<(u32, u32)>,
}

impl HttpClient {
    /// Plain HTTP to `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            tls: None,
            host: addr.to_string(),
            bearer: None,
            timeout: Duration::from_secs(10),
            h2_windows: None,
        }
    }

    /// HTTPS to `addr` with `tls` (see [`client_tls`]), naming the server `host` (SNI
    /// and `Host`; an IP address is checked against the certificate's IP SANs).
    pub fn https(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, host: &str) -> Self {
        Self {
            tls: Some(TlsConnector::from(tls)),
            host: host.to_owned(),
            ..Self::new(addr)
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request this client builds.
    pub fn bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// How long a one-shot request may take in all (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// HTTP/2 flow-control windows (stream, connection) of [`HttpClient::http2`]
    /// connections, instead of hyper's defaults; for load tests.
    pub fn h2_windows(mut self, stream: u32, connection: u32) -> Self {
        self.h2_windows = Some((stream, connection));
        self
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn tcp(&self) -> Result<TcpStream, HttpError> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|source| HttpError::Connect {
                addr: self.addr,
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    async fn tls_stream(
        &self,
        tls: &TlsConnector,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HttpError> {
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| HttpError::TlsSetup(format!("server name {:?}: {e}", self.host)))?;
        tls.connect(name, tcp)
            .await
            .map_err(|source| HttpError::Tls {
                addr: self.addr,
                source,
            })
    }

    /// A new HTTP/1.1 connection (upgrades allowed); build its requests with
    /// [`HttpClient::http1_request`].
    pub async fn http1<B>(&self) -> Result<http1::SendRequest<B>, HttpError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        async fn handshake<I, B>(io: I) -> Result<http1::SendRequest<B>, HttpError>
        where
            I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
            B: Body + Send + 'static,
            B::Data: Send,
            B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        {
            let (send, conn) = http1::handshake(io).await?;
            tokio::spawn(conn.with_upgrades());
            Ok(send)
        }
        let tcp = self.tcp().await?;
        match &self.tls {
            Some(tls) => handshake(TokioIo::new(self.tls_stream(tls, tcp).await?)).await,
            None => handshake(TokioIo::new(tcp)).await,
        }
    }

    /// A new HTTP/2 connection (the TLS config must offer ALPN `h2`); build its
    /// requests with [`HttpClient::http2_request`]. The sender can be cloned.
    pub async fn http2<B>(&self) -> Result<http2::SendRequest<B>, HttpError>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        if let Some((stream, connection)) = self.h2_windows {
            builder
                .initial_stream_window_size(stream)
                .initial_connection_window_size(connection);
        }
        let tcp = self.tcp().await?;
        let send = match &self.tls {
            Some(tls) => {
                let io = TokioIo::new(self.tls_stream(tls, tcp).await?);
                let (send, conn) = builder.handshake(io).await?;
                tokio::spawn(conn);
                send
            }
            None => {
                let (send, conn) = builder.handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                send
            }
        };
        Ok(send)
    }

    fn with_bearer(&self, builder: http::request::Builder) -> http::request::Builder {
        match &self.bearer {
            Some(token) => builder.header(header::AUTHORIZATION, format!("Bearer {token}")),
            None => builder,
        }
    }

    /// A request for an HTTP/1.1 connection: `path` as the target, `Host`, and the
    /// bearer token if set.
    pub fn http1_request(&self, method: Method, path: &str) -> http::request::Builder {
        let b = http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        self.with_bearer(b)
    }

    /// A request for an HTTP/2 connection: an absolute URI (HTTP/2 sends its scheme
    /// and authority as `:scheme` and `:authority`), and the bearer token if set.
    pub fn http2_request(&self, method: Method, path: &str) -> http::request::Builder {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let b = http::Request::builder()
            .method(method)
            .uri(format!("{scheme}://{}{path}", self.host));
        self.with_bearer(b)
    }

    /// One request on a new HTTP/1.1 connection; a non-empty `body` is sent as
    /// `application/json`. The whole response, or an error after the client's timeout.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<HttpResponse, HttpError> {
        let body: Bytes = body.into();
        let exchange = async {
            let mut conn = self.http1::<Full<Bytes>>().await?;
            let mut req = self.http1_request(method, path);
            if !body.is_empty() {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            let resp = conn.send_request(req.body(Full::new(body))?).await?;
            HttpResponse::read(resp).await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                addr: self.addr,
                timeout: self.timeout,
            })?
    }

    /// [`HttpClient::send`] from synchronous code (also inside an async test): runs on
    /// its own thread with its own runtime. It blocks the calling thread, so a server
    /// running on the caller's single-threaded runtime cannot answer meanwhile.
    pub fn send_blocking(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes> + Send,
    ) -> Result<HttpResponse, HttpError> {
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(HttpError::Runtime)?
                    .block_on(self.send(method, path, body))
            });
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// The value of the sample `series` (name and labels exactly as exposed, e.g.
/// `causeway_dns_answers_total{cluster="a",policy="latency"}`) in a Prometheus text page.
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers every request on a connection with its request head as the body.
    async fn echo_head<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let reply = format!(
            "HTTP/1.1 201 Created\r\ncontent-length: {}\r\nx-test: yes\r\n\r\n",
            head.len()
        );
        let _ = s.write_all(reply.as_bytes()).await;
        let _ = s.write_all(&head).await;
    }

    // Two threads: the server below keeps answering while send_blocking waits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_request_async_and_blocking() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(echo_head(s));
            }
        });
        let c = HttpClient::new(addr).bearer("t0k");
        let r = c.send(Method::POST, "/v1/x?a=b", "{}").await.unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.headers["x-test"], "yes");
        let head = r.text().to_ascii_lowercase();
        assert!(head.starts_with("post /v1/x?a=b http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {addr}")), "{head}");
        assert!(head.contains("authorization: bearer t0k"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        // From synchronous code inside a runtime, too.
        let r = c.send_blocking(Method::GET, "/metrics", "").unwrap();
        assert!(r.text().starts_with("GET /metrics"), "{}", r.text());
    }

    #[tokio::test]
    async fn tls_with_a_client_certificate_and_timeouts() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let issue = |names: Vec<String>| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (cert, key)
        };
        let (server_cert, server_key) = issue(vec!["localhost".into()]);
        let (client_cert, client_key) = issue(vec!["alice".into()]);

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        echo_head(tls).await;
                    }
                });
            }
        });

        let ca_pem = ca.pem();
        let tls = client_tls(
            ca_pem.as_bytes(),
            Some((
                client_cert.pem().as_bytes(),
                client_key.serialize_pem().as_bytes(),
            )),
            &[b"http/1.1"],
        )
        .unwrap();
        let c = HttpClient::https(addr, tls, "localhost");
        let r = c.send(Method::GET, "/version", "").await.unwrap();
        assert_eq!(r.status, 201);
        assert!(r.text().contains("host: localhost"), "{}", r.text());

        // Without a client certificate the server refuses the handshake.
        let anonymous = client_tls(ca_pem.as_bytes(), None, &[]).unwrap();
        let err = HttpClient::https(addr, anonymous, "localhost")
            .send(Method::GET, "/", "")
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpError::Tls { .. } | HttpError::Http(_)),
            "{err}"
        );
        // A server that never answers: a timeout error naming it.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = HttpClient::new(silent.local_addr().unwrap())
            .timeout(Duration::from_millis(100))
            .send(Method::GET, "/", "")
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
        assert!(client_tls(ca_pem.as_bytes(), Some((b"x", b"y")), &[]).is_err());
    }

    #[test]
    fn metric_values_by_exact_series() {
        let page = "# HELP x\nx_total{a=\"1\"} 3\nx_total 7\nx_total_more 9\n";
        assert_eq!(metric_value(page, "x_total{a=\"1\"}"), Some(3.0));
        assert_eq!(metric_value(page, "x_total"), Some(7.0));
        assert_eq!(metric_value(page, "x"), None);
    }
}
