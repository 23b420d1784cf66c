//! The agent's client for its own API server: a small pool of HTTP/2 connections
//! for ordinary requests and a fresh HTTP/1.1 connection per upgrade.
//!
//! A plain `http://` server is accepted only on a loopback address (a sidecar proxy,
//! a test server): ordinary requests then use a keep-alive pool of HTTP/1.1
//! connections. The agent's ServiceAccount token never crosses a network in clear.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use crate::body::TunnelBody;
use crate::transport::{self, TransportError};

/// The stream limit assumed for an HTTP/2 connection to the API server until its
/// SETTINGS frame arrives, and when that frame sets no limit (RFC 9113 §6.5.2: then
/// unlimited). It is kube-apiserver's default (`--http2-max-streams-per-connection`
/// unset: 100, measured on the testbed's kube-apiserver 1.36).
pub const DEFAULT_MAX_STREAMS: usize = 100;

/// Streams the pool puts on one HTTP/2 connection before it opens another, for a
/// server that allows `advertised` concurrent streams (its
/// SETTINGS_MAX_CONCURRENT_STREAMS, read by h2 and followed when it changes).
///
/// It stays a tenth below the limit (at least one stream): the pool counts a stream
/// until its response body ends, h2 until both directions are closed and any reset is
/// sent, so at the very limit a new stream could wait in h2's pending-open queue
/// behind watches that hold theirs for minutes. 100 gives 90, as before the limit was
/// read.
pub fn streams_per_connection(advertised: usize) -> usize {
    // h2 reports usize::MAX when the server's SETTINGS carry no limit.
    let limit = if advertised > u32::MAX as usize {
        DEFAULT_MAX_STREAMS
    } else {
        advertised
    };
    limit.saturating_sub((limit / 10).max(1)).max(1)
}

/// Where the local API server is and how to reach it.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// `host:port` to dial.
    pub addr: String,
    /// TLS server name to verify.
    pub server_name: String,
    /// `https://host:port` (or `http://` on loopback) used as scheme and authority of
    /// forwarded requests.
    pub base: Uri,
    /// CA certificates that sign the API server's serving certificate (empty for a
    /// plain-HTTP loopback server).
    pub roots: Arc<RootCertStore>,
}

impl UpstreamConfig {
    /// Whether the server is plain HTTP (loopback only).
    pub fn is_plain(&self) -> bool {
        self.base.scheme_str() == Some("http")
    }
}

/// Why the API server's address or CA could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    /// The kubeconfig could not be read or resolved.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: kube::config::KubeconfigError,
    },
    /// In-cluster configuration is missing.
    #[error("in-cluster configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    /// The server URL is unusable.
    #[error("{source_name}: server URL {url:?}: {reason}")]
    Server {
        /// Where the URL came from.
        source_name: String,
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A CA certificate could not be used.
    #[error("{source_name}: certificate-authority: {reason}")]
    Ca {
        /// Where the CA came from.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

impl UpstreamConfig {
    /// Reads the server and CA of the current context of a kubeconfig file.
    pub async fn from_kubeconfig(path: &Path) -> Result<Self, UpstreamConfigError> {
        let err = |source| UpstreamConfigError::Kubeconfig {
            path: path.to_owned(),
            source,
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(err)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(err)?;
        Self::from_kube(&cfg, &path.display().to_string())
    }

    /// Reads the in-cluster configuration (service-account CA, `KUBERNETES_SERVICE_*`).
    pub fn in_cluster() -> Result<Self, UpstreamConfigError> {
        let cfg = kube::Config::incluster()?;
        Self::from_kube(&cfg, "in-cluster config")
    }

    fn from_kube(cfg: &kube::Config, source_name: &str) -> Result<Self, UpstreamConfigError> {
        let url = cfg.cluster_url.clone();
        let bad = |reason: &str| UpstreamConfigError::Server {
            source_name: source_name.to_owned(),
            url: url.to_string(),
            reason: reason.to_owned(),
        };
        let plain = match url.scheme_str() {
            Some("https") => false,
            Some("http") => true,
            _ => return Err(bad("must be https")),
        };
        let host = url.host().ok_or_else(|| bad("has no host"))?;
        let host_plain = host.trim_start_matches('[').trim_end_matches(']');
        if plain && !is_loopback(host_plain) {
            return Err(bad(
                "must be https: plain http is accepted only for a loopback address \
                 (127.0.0.0/8, ::1, localhost), as the agent's token would cross the network in clear",
            ));
        }
        let port = url.port_u16().unwrap_or(if plain { 80 } else { 443 });
        let addr = if host_plain.contains(':') {
            format!("[{host_plain}]:{port}")
        } else {
            format!("{host_plain}:{port}")
        };
        let server_name = cfg
            .tls_server_name
            .clone()
            .unwrap_or_else(|| host_plain.to_owned());
        let base: Uri = format!("{}://{addr}", if plain { "http" } else { "https" })
            .parse()
            .map_err(|_| bad("is not a valid URL"))?;
        if plain {
            return Ok(UpstreamConfig {
                addr,
                server_name,
                base,
                roots: Arc::new(RootCertStore::empty()),
            });
        }
        let ca_err = |reason: String| UpstreamConfigError::Ca {
            source_name: source_name.to_owned(),
            reason,
        };
        let mut roots = RootCertStore::empty();
        let mut ders: Vec<Vec<u8>> = cfg.root_cert.clone().unwrap_or_default();
        if let Some(file) = &cfg.root_cert_file {
            let pem =
                std::fs::read(file).map_err(|e| ca_err(format!("{}: {e}", file.display())))?;
            for c in rustls_pemfile::certs(&mut &pem[..]) {
                ders.push(c.map_err(|e| ca_err(e.to_string()))?.to_vec());
            }
        }
        if ders.is_empty() {
            return Err(ca_err(
                "no CA certificate given; the agent never skips verification".into(),
            ));
        }
        for d in ders {
            roots
                .add(CertificateDer::from(d))
                .map_err(|e| ca_err(e.to_string()))?;
        }
        Ok(UpstreamConfig {
            addr,
            server_name,
            base,
            roots: Arc::new(roots),
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a request could not reach the API server.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Could not connect.
    #[error("cannot connect to the API server: {0}")]
    Connect(#[from] TransportError),
    /// HTTP failed.
    #[error("API server request failed: {0}")]
    Http(#[from] hyper::Error),
    /// TLS set-up failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A request to a plain-HTTP loopback server failed.
    #[error("API server request failed: {0}")]
    Plain(hyper_util::client::legacy::Error),
}

struct Conn {
    sender: SendRequest<TunnelBody>,
    in_flight: Arc<AtomicUsize>,
    /// The server's current SETTINGS_MAX_CONCURRENT_STREAMS for this connection,
    /// stored by the task driving it after each poll.
    max_streams: Arc<AtomicUsize>,
}

impl Conn {
    fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed)
            < streams_per_connection(self.max_streams.load(Ordering::Relaxed))
    }
}

/// Releases one stream slot of an upstream connection when dropped.
pub struct Slot(Option<Arc<AtomicUsize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The keep-alive HTTP/1.1 pool used for a plain-HTTP loopback server.
type PlainClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    TunnelBody,
>;

/// The API-server client.
pub struct Upstream {
    config: UpstreamConfig,
    h2_tls: Arc<rustls::ClientConfig>,
    h1_tls: Arc<rustls::ClientConfig>,
    pool: Mutex<Vec<Conn>>,
    dialing: tokio::sync::Mutex<()>,
    plain: Option<PlainClient>,
}

impl Upstream {
    /// A client for `config`.
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        let tls = |alpn: &[u8]| -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
            let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamError::Tls(e.to_string()))?
            .with_root_certificates(config.roots.clone())
            .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        let plain = config.is_plain().then(|| {
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
            http.set_nodelay(true);
            http.set_connect_timeout(Some(transport::CONNECT_TIMEOUT));
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(std::time::Duration::from_secs(60))
                .build(http)
        });
        Ok(Upstream {
            h2_tls: tls(b"h2")?,
            h1_tls: tls(b"http/1.1")?,
            config,
            pool: Mutex::new(Vec::new()),
            dialing: tokio::sync::Mutex::new(()),
            plain,
        })
    }

    /// The `https://host:port` of the API server.
    pub fn base(&self) -> &Uri {
        &self.config.base
    }

    /// HTTP/2 connections currently pooled.
    pub fn connections(&self) -> usize {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn pick(&self) -> Option<(SendRequest<TunnelBody>, Slot)> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        pool.retain(|c| !c.sender.is_closed());
        let best = pool
            .iter()
            .filter(|c| c.has_room())
            .min_by_key(|c| c.in_flight.load(Ordering::Relaxed))?;
        best.in_flight.fetch_add(1, Ordering::Relaxed);
        Some((best.sender.clone(), Slot(Some(best.in_flight.clone()))))
    }

    async fn sender(&self) -> Result<(SendRequest<TunnelBody>, Slot), UpstreamError> {
        if let Some(s) = self.pick() {
            return Ok(s);
        }
        // Boxed: dialling is rare and its future (TLS handshake) is large.
        Box::pin(self.dial()).await
    }

    /// A TLS connection to the API server, offering `tls`'s ALPN.
    async fn connect_tls(
        &self,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<tokio_rustls::client::TlsStream<transport::BufTcp>, UpstreamError> {
        Ok(transport::connect_tls(
            &self.config.addr,
            &self.config.server_name,
            tls,
            transport::BULK_READ_BUFFER,
        )
        .await?)
    }

    async fn dial(&self) -> Result<(SendRequest<TunnelBody>, Slot), UpstreamError> {
        let _dialing = self.dialing.lock().await;
        if let Some(s) = self.pick() {
            return Ok(s);
        }
        let tls = self.connect_tls(self.h2_tls.clone()).await?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(crate::protocol::STREAM_WINDOW)
            .initial_connection_window_size(crate::protocol::SESSION_WINDOW)
            .keep_alive_interval(std::time::Duration::from_secs(30))
            .keep_alive_timeout(std::time::Duration::from_secs(20))
            .initial_max_send_streams(DEFAULT_MAX_STREAMS)
            .handshake(TokioIo::new(tls))
            .await?;
        // hyper exposes the server's SETTINGS_MAX_CONCURRENT_STREAMS on the connection
        // future only (`Connection::current_max_send_streams`, h2's count): the task
        // driving it copies it out after every poll, which is when a SETTINGS frame
        // can have been read. Until the first one arrives it reads DEFAULT_MAX_STREAMS.
        let max_streams = Arc::new(AtomicUsize::new(DEFAULT_MAX_STREAMS));
        let seen = max_streams.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = std::future::poll_fn(|cx| {
                let polled = conn.as_mut().poll(cx);
                let now = conn.current_max_send_streams();
                if seen.swap(now, Ordering::Relaxed) != now {
                    tracing::debug!(
                        max_concurrent_streams = now,
                        "API server stream limit for this connection"
                    );
                }
                polled
            })
            .await;
            if let Err(e) = ended {
                tracing::debug!(error = %e, "API server connection ended");
            }
        });
        let in_flight = Arc::new(AtomicUsize::new(1));
        let slot = Slot(Some(in_flight.clone()));
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Conn {
                sender: sender.clone(),
                in_flight,
                max_streams,
            });
        Ok((sender, slot))
    }

    /// Sends an ordinary request over a pooled HTTP/2 connection (HTTP/1.1 for a
    /// plain loopback server). `req`'s URI must be absolute (built from
    /// [`Upstream::base`]). The returned [`Slot`] must live as long as the response body.
    pub async fn send(
        &self,
        mut req: Request<TunnelBody>,
    ) -> Result<(Response<Incoming>, Slot), UpstreamError> {
        if let Some(client) = &self.plain {
            *req.version_mut() = http::Version::HTTP_11;
            let resp = client.request(req).await.map_err(UpstreamError::Plain)?;
            return Ok((resp, Slot(None)));
        }
        let (mut sender, slot) = self.sender().await?;
        let resp = sender.send_request(req).await?;
        Ok((resp, slot))
    }

    /// Sends an upgrade request over a fresh HTTP/1.1 connection. `req`'s URI must be
    /// origin-form, with `Host`, `Connection: Upgrade` and `Upgrade` set. Redirects are
    /// never followed: the caller gets whatever the API server answered.
    pub async fn send_upgrade(
        &self,
        req: Request<TunnelBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        if self.plain.is_some() {
            let tcp = transport::connect_tcp(&self.config.addr).await?;
            return upgrade_over(tcp, req).await;
        }
        let tls = self.connect_tls(self.h1_tls.clone()).await?;
        upgrade_over(tls, req).await
    }
}

/// Sends an upgrade request as the only request of a new HTTP/1.1 connection over `io`.
async fn upgrade_over<I>(
    io: I,
    req: Request<TunnelBody>,
) -> Result<Response<Incoming>, UpstreamError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "API server upgrade connection ended");
        }
    });
    Ok(sender.send_request(req).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::ChannelBody;
    use crate::pki::{self, Ca};
    use bytes::Bytes;
    use std::time::Duration;

    #[test]
    fn streams_per_connection_stays_a_tenth_below_the_advertised_limit() {
        for (advertised, per_connection) in [
            (100, 90),
            (250, 225),
            (1000, 900),
            (20, 18),
            (10, 9),
            (4, 3),
            (2, 1),
            (1, 1),
            // A server that allows no streams now still gets one try (it refuses it).
            (0, 1),
            // No limit in the server's SETTINGS (h2 reports usize::MAX): the default.
            (usize::MAX, 90),
        ] {
            assert_eq!(
                streams_per_connection(advertised),
                per_connection,
                "{advertised}"
            );
        }
    }

    /// A TLS HTTP/2 server advertising `max_streams`, whose responses stay open (their
    /// body senders are kept) until the returned senders are dropped.
    async fn holding_server(
        max_streams: u32,
    ) -> (
        UpstreamConfig,
        Arc<Mutex<Vec<tokio::sync::mpsc::Sender<Bytes>>>>,
    ) {
        let ca = Ca::generate().expect("a fresh CA generates");
        let cert = ca
            .issue_server(&["localhost".into()], Duration::from_secs(3600))
            .expect("the CA issues a server certificate");
        let mut tls = rustls::ServerConfig::builder_with_provider(pki::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                pki::parse_cert_pem(&cert.cert_pem).expect("the issued certificate parses"),
                pki::parse_key_pem(cert.key_pem.expose()).expect("the issued key parses"),
            )
            .expect("the issued certificate matches its key");
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let held = Arc::new(Mutex::new(Vec::new()));
        let held2 = held.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, held) = (acceptor.clone(), held2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |_req| {
                        let (tx, body) = ChannelBody::new(1);
                        held.lock().unwrap_or_else(PoisonError::into_inner).push(tx);
                        async move { Ok::<_, std::convert::Infallible>(Response::new(body)) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .max_concurrent_streams(max_streams)
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.cert_der().clone())
            .expect("the CA's own certificate is a valid root");
        let config = UpstreamConfig {
            addr: addr.to_string(),
            server_name: "localhost".into(),
            base: format!("https://{addr}")
                .parse()
                .expect("an https URL of a socket address parses"),
            roots: Arc::new(roots),
        };
        (config, held)
    }

    /// Opens `n` streams that stay open; returns them with the connection count after
    /// each.
    async fn open_streams(
        up: &Upstream,
        n: usize,
        open: &mut Vec<(Response<Incoming>, Slot)>,
    ) -> Vec<usize> {
        let mut conns = Vec::new();
        for _ in 0..n {
            let req = Request::get(format!("{}/watch", up.base()))
                .version(http::Version::HTTP_2)
                .body(crate::body::empty())
                .expect("a GET with an absolute URI builds");
            let sent = tokio::time::timeout(Duration::from_secs(10), up.send(req))
                .await
                .expect("the server answers within 10 s (no stream waits for a slot)")
                .expect("the request reaches the server");
            open.push(sent);
            conns.push(up.connections());
        }
        conns
    }

    #[tokio::test]
    async fn a_connection_carries_what_the_server_advertises_less_a_tenth() {
        for (advertised, per_connection) in [(4u32, 3usize), (20, 18), (150, 135)] {
            let (config, _held) = holding_server(advertised).await;
            let up = Upstream::new(config).expect("the client builds");
            let mut open = Vec::new();
            let conns = open_streams(&up, per_connection, &mut open).await;
            assert!(
                conns.iter().all(|&c| c == 1),
                "{advertised}: first {per_connection} streams on one connection: {conns:?}"
            );
            let conns = open_streams(&up, per_connection, &mut open).await;
            assert_eq!(
                conns[0],
                2,
                "{advertised}: stream {} opens a second connection",
                per_connection + 1
            );
            assert!(
                conns.iter().all(|&c| c == 2),
                "{advertised}: the second connection fills up too: {conns:?}"
            );
            // A stream that ends gives its slot back: the next one reuses it, the one
            // after opens a third connection.
            drop(open.swap_remove(0));
            let conns = open_streams(&up, 2, &mut open).await;
            assert_eq!(conns, vec![2, 3], "{advertised}: a freed slot is reused");
        }
    }

    async fn config_for(server: &str) -> Result<UpstreamConfig, UpstreamConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\"}}}}]\n\
                 users: [{{name: u, user: {{token: t}}}}]\n\
                 contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
            ),
        )
        .unwrap();
        UpstreamConfig::from_kubeconfig(&path).await
    }

    #[tokio::test]
    async fn plain_http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:8001",
            "http://localhost:8001",
        ] {
            let c = config_for(ok).await.unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(c.is_plain(), "{ok}");
            assert_eq!(c.base.scheme_str(), Some("http"), "{ok}");
        }
        assert_eq!(
            config_for("http://127.0.0.1").await.unwrap().addr,
            "127.0.0.1:80"
        );
        for bad in [
            "http://10.0.0.1:8080",
            "http://api.example.com",
            "ftp://127.0.0.1",
        ] {
            let e = config_for(bad)
                .await
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.to_string().contains("must be https"), "{bad}: {e}");
        }
        // https without a CA is still refused: the agent never skips verification.
        let e = config_for("https://127.0.0.1:6443").await.err().unwrap();
        assert!(e.to_string().contains("no CA certificate"), "{e}");
    }
}
