//! One measurement of one beacon.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Method;

/// Times one round trip to `addr` within `timeout` (a fresh connection each time).
///
/// `tcp-echo`: connect, then the time from writing one byte until it is read back.
/// `tcp-connect`: the time the connect takes. `icmp`: one echo ([`crate::icmp::once`]).
pub async fn once(
    addr: SocketAddr,
    method: Method,
    timeout: Duration,
) -> std::io::Result<Duration> {
    if method == Method::Icmp {
        return crate::icmp::once(addr.ip(), timeout).await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let fut = async {
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).await?;
        if method == Method::TcpConnect {
            return Ok(start.elapsed());
        }
        s.set_nodelay(true)?;
        let start = Instant::now();
        s.write_all(b"p").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        Ok(start.elapsed())
    };
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        )),
    }
}
