//! A tiny HTTP(S) client for readiness checks and bootstrap objects, with client-cert auth.
//!
//! One connection per request: these calls are few, and a fresh connection also tells us
//! the server still accepts new ones.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a request failed; a string, as these only end up in messages.
pub(crate) type ApiError = String;

/// A client for one server address.
#[derive(Clone)]
pub(crate) struct ApiClient {
    addr: SocketAddr,
    tls: Option<TlsConnector>,
}

impl ApiClient {
    /// Plain HTTP (etcd's client port).
    pub fn http(addr: SocketAddr) -> Self {
        Self { addr, tls: None }
    }

    /// HTTPS trusting `ca`, authenticating with the client certificate `cert`/`key`.
    pub fn https(addr: SocketAddr, ca: &Path, cert: &Path, key: &Path) -> Result<Self, ApiError> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&read(ca)?) {
            let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        let key = PrivateKeyDer::from_pem_slice(&read(key)?)
            .map_err(|e| format!("{}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            addr,
            tls: Some(TlsConnector::from(Arc::new(config))),
        })
    }

    /// Sends one request; returns the status and body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        self.request_as(method, path, body, "application/json")
            .await
    }

    /// [`ApiClient::request`] with a body of `content_type` (e.g. a merge patch); gives up
    /// after 10 s.
    pub async fn request_as(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        content_type: &str,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let exchange = async {
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            let body = match body {
                Some(v) => Bytes::from(serde_json::to_vec(v).map_err(|e| e.to_string())?),
                None => Bytes::new(),
            };
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, self.addr.to_string())
                .header(http::header::CONTENT_TYPE, content_type)
                .header(http::header::ACCEPT, "application/json")
                .body(Full::new(body))
                .map_err(|e| e.to_string())?;
            match &self.tls {
                Some(tls) => {
                    let name = ServerName::IpAddress(self.addr.ip().into());
                    let stream = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS with {}: {e}", self.addr))?;
                    send(TokioIo::new(stream), req).await
                }
                None => send(TokioIo::new(tcp), req).await,
            }
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| format!("{path}: no answer in 10 s"))?
    }

    /// GET returning parsed JSON, failing on any non-2xx status.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ApiError> {
        let (status, body) = self.request(Method::GET, path, None).await?;
        if !status.is_success() {
            return Err(format!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {path}: bad JSON: {e}"))
    }

    /// PATCH with a JSON merge patch (RFC 7386), failing on any non-2xx status.
    pub async fn merge_patch(&self, path: &str, patch: &serde_json::Value) -> Result<(), ApiError> {
        let (status, body) = self
            .request_as(
                Method::PATCH,
                path,
                Some(patch),
                "application/merge-patch+json",
            )
            .await?;
        if status.is_success() {
            return Ok(());
        }
        Err(format!(
            "PATCH {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    }

    /// POST creating an object; an existing object (409) counts as success.
    pub async fn create(&self, path: &str, obj: &serde_json::Value) -> Result<(), ApiError> {
        let (status, body) = self.request(Method::POST, path, Some(obj)).await?;
        if status.is_success() || status == StatusCode::CONFLICT {
            return Ok(());
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or("?");
        Err(format!(
            "create {path} {name}: {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), ApiError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}
