//! Publish: tell dns which clusters serve each policy's GSLB name.
//!
//! Through dns's HTTP API (`POST /v1/health`, a list of `causeway_model::HealthReport`):
//! a cluster is healthy for the name only while it serves (reachable, ready replicas,
//! not draining, and for a spread policy in the split); a draining cluster leaves the
//! answers one TTL before its replicas go. Reports are sent when they change, and every
//! 30 s again so that a restarted dns learns them.
//!
//! Weights: each decision's [`crate::plan::Decision::dns_weight`] (its ready replicas
//! while it serves) is what a `weighted` GSLB name should use. dns takes no weights
//! over its API yet (its targets' weights are static, from its config), so only health
//! is sent and the weight is written in the report's reason.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use causeway_model::{ClusterId, Health, HealthReport};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::plan::{Plan, Traffic};
use crate::policy::{Policies, PolicyRef};

/// Why dns did not take the reports.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The `dnsApi` URL is not `http://host:port`.
    #[error("dnsApi {0:?} is not an http://host:port URL")]
    Url(String),
    /// Connection or HTTP failure.
    #[error("dns API {url}: {message}")]
    Http {
        /// The API.
        url: String,
        /// Why.
        message: String,
    },
}

/// The reports of a plan: one per policy with a DNS name and cluster. `policies` is
/// `&SchedulerConfig` or a slice of one kind.
pub fn reports<'a>(policies: impl Into<Policies<'a>>, plan: &Plan) -> Vec<HealthReport> {
    let policies = policies.into();
    let names: BTreeMap<&str, PolicyRef<'_>> = policies.iter().map(|p| (p.name(), p)).collect();
    let mut out = Vec::new();
    for d in &plan.decisions {
        let Some(name) = names
            .get(d.policy.as_str())
            .and_then(|p| p.dns())
            .map(|b| b.name.clone())
        else {
            continue;
        };
        let (health, reason) = match d.traffic {
            Traffic::Serve => (
                Health::Healthy,
                format!("{} ready replicas (weight {})", d.ready, d.dns_weight()),
            ),
            Traffic::Drain => (Health::Unhealthy, "draining before scale-down".to_string()),
            Traffic::Out => (
                Health::Unhealthy,
                "no ready replicas, unreachable or not in the split".to_string(),
            ),
        };
        out.push(HealthReport {
            service: Some(name),
            cluster: d.cluster.clone(),
            health,
            reason,
        });
    }
    out
}

/// Sends reports to dns when they change (and every 30 s).
pub struct Publisher {
    url: String,
    authority: String,
    last: BTreeMap<(Option<String>, ClusterId), Health>,
    last_sent: Option<Instant>,
}

const REFRESH: Duration = Duration::from_secs(30);

impl Publisher {
    /// For dns's API at `url` (`http://127.0.0.1:8053`).
    pub fn new(url: &str) -> Result<Self, PublishError> {
        let authority = url
            .strip_prefix("http://")
            .map(|r| r.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| PublishError::Url(url.to_string()))?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            authority: authority.to_string(),
            last: BTreeMap::new(),
            last_sent: None,
        })
    }

    /// Posts `reports` if they differ from the last ones sent (or 30 s passed).
    /// Returns whether anything was sent.
    pub async fn publish(&mut self, reports: &[HealthReport]) -> Result<bool, PublishError> {
        let now: BTreeMap<_, _> = reports
            .iter()
            .map(|r| ((r.service.clone(), r.cluster.clone()), r.health))
            .collect();
        let fresh = self.last_sent.is_some_and(|t| t.elapsed() < REFRESH);
        if now == self.last && fresh {
            return Ok(false);
        }
        let body = serde_json::json!({ "reports": reports }).to_string();
        self.post("/v1/health", body).await?;
        self.last = now;
        self.last_sent = Some(Instant::now());
        Ok(true)
    }

    async fn post(&self, path: &str, body: String) -> Result<(), PublishError> {
        let err = |message: String| PublishError::Http {
            url: self.url.clone(),
            message,
        };
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| err("connect timed out".into()))?
        .map_err(|e| err(format!("connect: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| err(format!("handshake: {e}")))?;
        tokio::spawn(conn);
        let req = http::Request::post(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
            .await
            .map_err(|_| err("no answer within 5 s".into()))?
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(err(format!("{status}: {}", body.trim())));
        }
        Ok(())
    }
}
