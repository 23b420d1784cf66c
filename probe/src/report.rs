//! Reports to `causeway dns`: `POST /v1/latency` with the prober's identity.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use causeway_model::ClusterId;
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ProbeError;

/// The JSON body: `{"prober": ID, "measurements": [{prefix, cluster, rttMs}, …]}`.
pub fn body(prober: &str, cluster: &ClusterId, rtts: &BTreeMap<IpNet, f64>) -> String {
    let measurements: Vec<serde_json::Value> = rtts
        .iter()
        .map(|(prefix, ms)| {
            serde_json::json!({
                "prefix": prefix.to_string(),
                "cluster": cluster.as_str(),
                // Whole microseconds are plenty.
                "rttMs": (ms * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    serde_json::json!({ "prober": prober, "measurements": measurements }).to_string()
}

/// Posts `body` to `dns`'s `/v1/latency` (HTTP/1.1, one connection), expecting 200.
pub async fn post(dns: SocketAddr, body: &str, timeout: Duration) -> Result<(), ProbeError> {
    let req = format!(
        "POST /v1/latency HTTP/1.1\r\nHost: {dns}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(dns, &req, timeout).await.map(|_| ())
}

/// `GET path` on `dns`'s API, expecting 200; returns the body.
pub async fn get(dns: SocketAddr, path: &str, timeout: Duration) -> Result<String, ProbeError> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {dns}\r\nConnection: close\r\n\r\n");
    exchange(dns, &req, timeout).await
}

/// Sends `req` on a new connection and reads the reply (at most 4 MiB): the body if 200.
async fn exchange(dns: SocketAddr, req: &str, timeout: Duration) -> Result<String, ProbeError> {
    let err = |m: String| ProbeError::Report(dns, m);
    let fut = async {
        let mut s = TcpStream::connect(dns)
            .await
            .map_err(|e| err(e.to_string()))?;
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut buf = Vec::new();
        (&mut s)
            .take(4 << 20)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8_lossy(&buf);
        let status = text.lines().next().unwrap_or("");
        let reply = text.split_once("\r\n\r\n").map_or("", |x| x.1);
        if status.split_whitespace().nth(1) == Some("200") {
            Ok(reply.to_string())
        } else {
            Err(err(format!("{status} {}", reply.trim())))
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| err(format!("no answer within {timeout:?}")))?
}
