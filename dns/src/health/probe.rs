//! One health check: an HTTP `GET` expecting a status, or a TCP connect.
//!
//! The HTTP client is deliberately tiny (HTTP/1.1, `Connection: close`, only the
//! status line is read, at most 1 KiB): a probe must not be able to make us buffer
//! much or wait long, whatever the target sends. The caller bounds the time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::DigitallySignedStruct as Signed;
use rustls::client::danger::HandshakeSignatureValid as SignatureValid;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::zone::{Check, CheckProtocol, GslbId, Trust, Zones};

/// Where and how to probe one target.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// TCP, HTTP, or HTTPS with its TLS client settings.
    pub scheme: Scheme,
    /// HTTP path.
    pub path: String,
    /// HTTP Host header.
    pub host: String,
    /// Expected status.
    pub expect_status: u16,
}

/// How a probe talks to the target.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// A TCP connect.
    Tcp,
    /// `GET` over HTTP/1.1.
    Http,
    /// `GET` over TLS with these settings.
    Https(Arc<rustls::ClientConfig>),
}

/// Default CA bundle for `https` probes (Debian's `ca-certificates`).
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be read.
    #[error("cannot read CA file {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// No usable certificate in it.
    #[error("no usable CA certificate in {0}")]
    Empty(String),
    /// rustls refused the settings.
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// rustls client settings of an `https` check: roots from the CA file (the system
/// bundle unless `caFile` names one), or no verification (`insecureSkipVerify`).
pub fn tls_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let path = match trust {
        Trust::AnyCertificate => {
            return Ok(Arc::new(
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                    .with_no_client_auth(),
            ));
        }
        Trust::SystemRoots => Path::new(SYSTEM_CA_FILE),
        Trust::CaFile(path) => path.as_path(),
    };
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(TlsSetupError::Empty(shown));
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// Accepts any certificate (signatures are still checked). `insecureSkipVerify` only.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

/// A signature check's result.
type Verified = Result<SignatureValid, rustls::Error>;

/// `rustls::crypto::verify_tls12_signature` or `…13…`.
type VerifySignature =
    fn(&[u8], &CertificateDer<'_>, &Signed, &rustls::crypto::WebPkiSupportedAlgorithms) -> Verified;

impl NoVerify {
    fn verify(
        &self,
        check: VerifySignature,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &Signed,
    ) -> Verified {
        check(m, c, d, &self.0.signature_verification_algorithms)
    }
}

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &Signed) -> Verified {
        self.verify(rustls::crypto::verify_tls12_signature, m, c, d)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &Signed) -> Verified {
        self.verify(rustls::crypto::verify_tls13_signature, m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ProbeTarget {
    /// The probe of a compiled check; reads the CA file of an `https` check.
    pub fn new(check: &Check) -> Result<Self, TlsSetupError> {
        Ok(Self {
            addr: check.addr,
            scheme: match &check.protocol {
                CheckProtocol::Tcp => Scheme::Tcp,
                CheckProtocol::Http => Scheme::Http,
                CheckProtocol::Https(trust) => Scheme::Https(tls_config(trust)?),
            },
            path: check.path.clone(),
            host: check.host.clone(),
            expect_status: check.expect_status,
        })
    }
}

/// The probe of every checked target, `[gslb id][target index]`, built once per
/// configuration (this is where CA files are read).
#[derive(Debug, Default)]
pub struct ProbeTargets(Vec<Vec<Option<Arc<ProbeTarget>>>>);

/// A check whose probe cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct ProbeSetupError {
    /// The GSLB name.
    pub gslb: GslbId,
    /// The target's index in it.
    pub target: usize,
    /// Why.
    #[source]
    pub source: TlsSetupError,
}

impl ProbeTargets {
    /// The probes of every check in `zones`.
    pub fn build(zones: &Zones) -> Result<Self, ProbeSetupError> {
        let mut out = Vec::with_capacity(zones.gslb.len());
        for (gslb, g) in zones.gslb.iter().enumerate() {
            let mut probes = Vec::with_capacity(g.targets.len());
            for (target, t) in g.targets.iter().enumerate() {
                probes.push(match &t.check {
                    Some(c) => Some(Arc::new(ProbeTarget::new(c).map_err(|source| {
                        ProbeSetupError {
                            gslb,
                            target,
                            source,
                        }
                    })?)),
                    None => None,
                });
            }
            out.push(probes);
        }
        Ok(Self(out))
    }

    /// The probe of target `target` of GSLB name `gslb`, if it has a check.
    pub fn get(&self, gslb: GslbId, target: usize) -> Option<&Arc<ProbeTarget>> {
        self.0.get(gslb)?.get(target)?.as_ref()
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Could not connect.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("i/o with {addr}: {source}")]
    Io {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Not an HTTP response.
    #[error("{addr} did not answer with an HTTP status line")]
    NotHttp {
        /// Address.
        addr: SocketAddr,
    },
    /// Wrong status.
    #[error("{addr} answered {got}, expected {want}")]
    Status {
        /// Address.
        addr: SocketAddr,
        /// Received.
        got: u16,
        /// Expected.
        want: u16,
    },
    /// TLS failed (handshake, certificate, name).
    #[error("tls with {addr}: {source}")]
    Tls {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Runs one probe (no timeout here: the caller bounds it).
pub async fn probe(t: &ProbeTarget) -> Result<(), ProbeError> {
    let addr = t.addr;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    match &t.scheme {
        Scheme::Tcp => Ok(()),
        Scheme::Http => http_get(t, stream).await,
        Scheme::Https(tls) => {
            let host = t.host.rsplit_once(':').map_or(t.host.as_str(), |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    t.host.as_str()
                }
            });
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_string())
                .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, stream)
                .await
                .map_err(|source| ProbeError::Tls { addr, source })?;
            http_get(t, stream).await
        }
    }
}

async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    t: &ProbeTarget,
    mut stream: S,
) -> Result<(), ProbeError> {
    let addr = t.addr;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: causeway-dns-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        t.path, t.host
    );
    let io = |source| ProbeError::Io { addr, source };
    stream.write_all(req.as_bytes()).await.map_err(io)?;
    let mut buf = [0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        let r = stream.read(&mut buf[n..]).await.map_err(io)?;
        n += r;
        if r == 0 || buf[..n].contains(&b'\n') {
            break;
        }
    }
    let got = parse_status(&buf[..n]).ok_or(ProbeError::NotHttp { addr })?;
    if got == t.expect_status {
        Ok(())
    } else {
        Err(ProbeError::Status {
            addr,
            got,
            want: t.expect_status,
        })
    }
}

/// Status code from `HTTP/1.x NNN ...`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[tokio::test]
    async fn probes_a_real_http_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let t = ProbeTarget {
            addr,
            scheme: Scheme::Http,
            path: "/healthz".into(),
            host: "x".into(),
            expect_status: 200,
        };
        assert!(probe(&t).await.is_ok());
        assert!(matches!(
            probe(&t).await,
            Err(ProbeError::Status { got: 503, .. })
        ));
        assert!(matches!(probe(&t).await, Err(ProbeError::Connect { .. })));
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    /// An `https` check of `localhost` at `addr`, trusting `trust`.
    fn check(addr: SocketAddr, trust: Trust) -> Check {
        Check {
            protocol: CheckProtocol::Https(trust),
            addr,
            path: "/healthz".into(),
            host: "localhost".into(),
            expect_status: 200,
            interval: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(1),
            rise: 1,
            fall: 1,
        }
    }

    /// A real TLS server on loopback with a fresh self-signed certificate for `localhost`.
    async fn tls_server() -> (SocketAddr, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_pem = ck.cert.pem();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(s).await {
                        let mut buf = [0u8; 512];
                        let _ = tls.read(&mut buf).await;
                        let _ = tls
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        (addr, cert_pem)
    }

    #[tokio::test]
    async fn https_probe_verifies_the_certificate() {
        let (addr, pem) = tls_server().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let trusted = ProbeTarget::new(&check(addr, Trust::CaFile(ca))).unwrap();
        assert!(probe(&trusted).await.is_ok(), "trusted CA");

        // Another CA: the handshake fails.
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let other_ca = dir.path().join("other.pem");
        std::fs::write(&other_ca, other.cert.pem()).unwrap();
        let untrusted = ProbeTarget::new(&check(addr, Trust::CaFile(other_ca))).unwrap();
        assert!(matches!(
            probe(&untrusted).await,
            Err(ProbeError::Tls { .. })
        ));

        // insecureSkipVerify accepts it.
        let any = ProbeTarget::new(&check(addr, Trust::AnyCertificate)).unwrap();
        assert!(probe(&any).await.is_ok());

        // An unreadable CA file is a setup error, found when the probe is built.
        let missing = Trust::CaFile(dir.path().join("missing.pem"));
        assert!(matches!(
            ProbeTarget::new(&check(addr, missing)),
            Err(TlsSetupError::Read { .. })
        ));
    }
}
