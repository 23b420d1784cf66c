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

/// Most client networks in one [`Measured`] answer (as many as a config may have beacons).
pub const MAX_MEASURED: usize = crate::config::MAX_BEACONS;

/// A prober's current smoothed RTTs without a cluster: what the agent's prober mode
/// answers the stub (`{"prober": NAME, "measurements": [{prefix, rttMs}, …]}`). The stub
/// adds the cluster from the agent's certificate before it reports to dns.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Measured {
    /// The prober's `metadata.name`.
    pub prober: String,
    /// Rounds measured so far.
    #[serde(default)]
    pub rounds: u64,
    /// One row per client network with enough samples.
    pub measurements: Vec<MeasuredRtt>,
}

/// One row of [`Measured`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeasuredRtt {
    /// The client network.
    pub prefix: IpNet,
    /// Smoothed RTT, milliseconds.
    pub rtt_ms: f64,
}

/// Why a [`Measured`] answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum MeasuredError {
    /// Not the expected JSON.
    #[error("not a measurements answer: {0}")]
    Json(#[from] serde_json::Error),
    /// The prober's name is not a DNS label.
    #[error("prober name {0:?} is not a name (a-z, 0-9, '-', '.', at most 63)")]
    Name(String),
    /// Too many rows.
    #[error("{0} client networks, at most {MAX_MEASURED}")]
    TooMany(usize),
    /// An RTT that is not a finite number in [0, 60000] ms.
    #[error("rttMs {1} of {0} is not in [0, 60000]")]
    Rtt(IpNet, f64),
}

impl Measured {
    /// The answer for `name`'s `snapshot`.
    pub fn new(name: &str, snapshot: &crate::Snapshot) -> Self {
        Measured {
            prober: name.to_string(),
            rounds: snapshot.rounds,
            measurements: snapshot
                .rtts
                .iter()
                .map(|(prefix, ms)| MeasuredRtt {
                    prefix: *prefix,
                    rtt_ms: (ms * 1000.0).round() / 1000.0,
                })
                .collect(),
        }
    }

    /// Reads and checks an answer (it crossed the network: every field is checked).
    pub fn parse(body: &[u8]) -> Result<Self, MeasuredError> {
        let m: Measured = serde_json::from_slice(body)?;
        let n = &m.prober;
        let label = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if !label {
            return Err(MeasuredError::Name(m.prober));
        }
        if m.measurements.len() > MAX_MEASURED {
            return Err(MeasuredError::TooMany(m.measurements.len()));
        }
        for r in &m.measurements {
            if !(r.rtt_ms.is_finite() && (0.0..=60_000.0).contains(&r.rtt_ms)) {
                return Err(MeasuredError::Rtt(r.prefix, r.rtt_ms));
            }
        }
        Ok(m)
    }

    /// The RTTs by client network (host bits cleared).
    pub fn rtts(&self) -> BTreeMap<IpNet, f64> {
        self.measurements
            .iter()
            .map(|r| (r.prefix.trunc(), r.rtt_ms))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_round_trips_and_is_checked() {
        let mut snap = crate::Snapshot::default();
        snap.rtts.insert("10.1.0.0/24".parse().unwrap(), 12.345_678);
        snap.rounds = 7;
        let m = Measured::new("edge", &snap);
        let json = serde_json::to_vec(&m).unwrap();
        let back = Measured::parse(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.rtts().values().next(), Some(&12.346));

        let bad = |s: &str| Measured::parse(s.as_bytes()).unwrap_err().to_string();
        assert!(bad(r#"{"prober":"Edge/x","measurements":[]}"#).contains("prober name"));
        assert!(
            bad(r#"{"prober":"edge","measurements":[{"prefix":"10.1.0.0/24","rttMs":-1}]}"#)
                .contains("rttMs")
        );
        assert!(bad(r#"{"prober":"edge","measurements":[],"cluster":"x"}"#).contains("cluster"));
    }
}
