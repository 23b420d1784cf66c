//! A small async HTTPS client (hyper over rustls) for load through the stub, with the
//! client certificate from a kubeconfig written by `causeway user add`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// TLS for a user: trusts the stub CA, presents the kubeconfig's client certificate.
pub fn user_tls(kubeconfig: &Path, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let (cert, key, ca) = super::fixture::kubeconfig_creds(kubeconfig);
    let mut roots = rustls::RootCertStore::empty();
    for c in causeway_tunnel::pki::parse_cert_pem(&ca).unwrap() {
        roots.add(c).unwrap();
    }
    let mut c = rustls::ClientConfig::builder_with_provider(causeway_tunnel::pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            causeway_tunnel::pki::parse_cert_pem(&cert).unwrap(),
            causeway_tunnel::pki::parse_key_pem(&key).unwrap(),
        )
        .unwrap();
    c.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(c)
}

/// An HTTP/2 connection to `addr`.
pub async fn h2(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let io = tokio_rustls::TlsConnector::from(tls)
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// GET `path` on `send`; (status, body length).
pub async fn get(send: &mut SendRequest<Empty<Bytes>>, path: &str) -> Result<(u16, usize), String> {
    let req = http::Request::get(format!("https://127.0.0.1{path}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, body.to_bytes().len()))
}
