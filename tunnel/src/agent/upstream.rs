//! The agent's client for its own API server: a small pool of HTTP/2 connections
//! for ordinary requests and a fresh HTTP/1.1 connection per upgrade.
//!
//! A plain `http://` server is accepted only on a loopback address (a sidecar proxy,
//! a test server): ordinary requests then use a keep-alive pool of HTTP/1.1
//! connections. The agent's ServiceAccount token never crosses a network in clear.

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

/// Streams per HTTP/2 connection to the API server before another is opened. It must
/// stay below the server's SETTINGS_MAX_CONCURRENT_STREAMS (measured: 100 on the
/// testbed's kube-apiserver 1.36 with default flags): beyond it, new streams queue
/// behind watches that hold theirs for minutes.
pub const STREAMS_PER_CONNECTION: usize = 90;

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
            .filter(|c| c.in_flight.load(Ordering::Relaxed) < STREAMS_PER_CONNECTION)
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
            .handshake(TokioIo::new(tls))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
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
