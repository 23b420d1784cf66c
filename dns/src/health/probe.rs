//! One health check: an HTTP `GET` expecting a status, or a TCP connect.
//!
//! The HTTP client is deliberately tiny (HTTP/1.1, `Connection: close`, only the
//! status line is read, at most 1 KiB): a probe must not be able to make us buffer
//! much or wait long, whatever the target sends. The caller bounds the time.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{HealthCheckSpec, ProbeProtocol};

/// Where and how to probe one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Protocol.
    pub protocol: ProbeProtocol,
    /// Address to connect to.
    pub addr: SocketAddr,
    /// HTTP path.
    pub path: String,
    /// HTTP Host header.
    pub host: String,
    /// Expected status.
    pub expect_status: u16,
}

impl ProbeTarget {
    /// The probe of a target's check; `first` is the target's first address.
    pub fn new(spec: &HealthCheckSpec, first: std::net::IpAddr) -> Self {
        let addr = spec
            .address
            .unwrap_or_else(|| SocketAddr::new(first, spec.port.unwrap_or(80)));
        Self {
            protocol: spec.protocol,
            addr,
            path: spec.path.clone(),
            host: spec.host.clone().unwrap_or_else(|| addr.to_string()),
            expect_status: spec.expect_status,
        }
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
    /// Protocol not available in this build.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Runs one probe (no timeout here: the caller bounds it).
pub async fn probe(t: &ProbeTarget) -> Result<(), ProbeError> {
    let addr = t.addr;
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect { addr, source })?;
    match t.protocol {
        ProbeProtocol::Tcp => Ok(()),
        ProbeProtocol::Https => Err(ProbeError::Unsupported("https probes are not built yet")),
        ProbeProtocol::Http => {
            let _ = stream.set_nodelay(true);
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
                if r == 0 || buf[..n + r].contains(&b'\n') {
                    n += r;
                    break;
                }
                n += r;
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
            protocol: ProbeProtocol::Http,
            addr,
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
