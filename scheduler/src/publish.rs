//! Publish: tell dns which clusters serve each policy's GSLB name, with which weights.
//!
//! One [`causeway_model::Placement`] per policy with a `dns` name ([`placements`]): a
//! target per decision, with
//!
//! * `weight` = [`crate::plan::Decision::dns_weight`] (its ready replicas while it
//!   serves, else 0): dns's `weighted` names split new clients by it, and every policy
//!   sends no new client to a weight of 0;
//! * `role` = `draining` while the cluster drains before a scale-down, else `active`;
//! * `health` = `healthy` while it serves (reachable, ready replicas, not draining, in
//!   the split), else `unhealthy`;
//! * no addresses: dns keeps the ones its zone configures.
//!
//! A draining cluster thus leaves the answers one TTL before its replicas go.
//! Placements are sent when they change, and every 30 s again so that a restarted dns
//! learns them. Where they go is a [`Destination`]: dns's HTTP API
//! (`POST /v1/placement` at `dnsApi`), a [`PlacementSink`] in the same process —
//! `causeway hub` passes its dns as `RunOptions::dns` and [`Publisher::for_config`] then
//! picks that sink whatever `dnsApi` says — or, in production mode, `Placement` objects
//! in the hub cluster that every dns replica watches ([`Publisher::to_hub`]; the ones it
//! wrote earlier for names no longer placed are deleted).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use causeway_hubstore::Hub;
use causeway_model::{Health, Placement, PlacementTarget, Role};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::plan::{Decision, Plan, Traffic};
use crate::policy::{Policies, PolicyRef};

/// Why dns did not take the placements.
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
    /// The in-process dns refused them.
    #[error("dns (in process): {0}")]
    InProcess(String),
    /// The hub cluster did not take a `Placement` object.
    #[error(transparent)]
    Hub(#[from] causeway_hubstore::HubError),
}

/// A dns in the same process that takes placements (the hub adapts
/// `causeway_dns::Inputs` to it; this crate does not depend on causeway-dns).
pub trait PlacementSink: Send + Sync {
    /// Applies `placements`, each replacing the last one of its service; an error says
    /// why they were refused.
    fn send(&self, placements: Vec<Placement>) -> Result<(), String>;
}

/// The placements of a plan: one per GSLB name of the policies (`&SchedulerConfig` or a
/// slice of one kind), a target per decision, in plan order. Two policies naming the
/// same GSLB name share one placement (a cluster in both: the first decision).
pub fn placements<'a>(policies: impl Into<Policies<'a>>, plan: &Plan) -> Vec<Placement> {
    let policies = policies.into();
    let names: BTreeMap<&str, PolicyRef<'_>> = policies.iter().map(|p| (p.name(), p)).collect();
    let mut out: Vec<Placement> = Vec::new();
    for d in &plan.decisions {
        let Some(name) = names
            .get(d.policy.as_str())
            .and_then(|p| p.dns())
            .map(|b| b.name.as_str())
        else {
            continue;
        };
        let i = match out
            .iter()
            .position(|p| p.service.eq_ignore_ascii_case(name))
        {
            Some(i) => i,
            None => {
                out.push(Placement {
                    service: name.to_string(),
                    targets: Vec::new(),
                });
                out.len() - 1
            }
        };
        if !out[i].targets.iter().any(|t| t.cluster == d.cluster) {
            out[i].targets.push(target(d));
        }
    }
    out
}

/// The placement target of one decision.
fn target(d: &Decision) -> PlacementTarget {
    let (role, health) = match d.traffic {
        Traffic::Serve => (Role::Active, Health::Healthy),
        Traffic::Drain => (Role::Draining, Health::Unhealthy),
        Traffic::Out => (Role::Active, Health::Unhealthy),
    };
    PlacementTarget {
        cluster: d.cluster.clone(),
        addresses: Vec::new(),
        weight: d.dns_weight(),
        role,
        health,
    }
}

/// Where placements go.
#[derive(Clone)]
pub enum Destination {
    /// dns's HTTP API: `POST {url}/v1/placement`.
    Http {
        /// `http://host:port`, no trailing slash.
        url: String,
        /// `host:port`.
        authority: String,
    },
    /// A dns in the same process.
    InProcess(Arc<dyn PlacementSink>),
    /// `Placement` objects in the hub cluster (production mode), written by `manager`.
    Hub {
        /// The hub namespace.
        hub: Hub,
        /// The field manager and `app.kubernetes.io/managed-by` label of the objects.
        manager: String,
    },
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { url, .. } => write!(f, "Http({url})"),
            Self::InProcess(_) => f.write_str("InProcess"),
            Self::Hub { hub, manager } => write!(f, "Hub({}, {manager})", hub.namespace()),
        }
    }
}

/// Sends placements to dns when they change (and every 30 s).
pub struct Publisher {
    to: Destination,
    last: Vec<Placement>,
    last_sent: Option<Instant>,
    refresh: Duration,
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
        Ok(Self::to(Destination::Http {
            url: url.trim_end_matches('/').to_string(),
            authority: authority.to_string(),
        }))
    }

    /// For `to`.
    pub fn to(to: Destination) -> Self {
        Self {
            to,
            last: Vec::new(),
            last_sent: None,
            refresh: REFRESH,
        }
    }

    /// `Placement` objects in `hub`, written (and deleted) as `manager`.
    pub fn to_hub(hub: Hub, manager: &str) -> Self {
        Self::to(Destination::Hub {
            hub,
            manager: manager.to_string(),
        })
    }

    /// Forgets what was sent: the next [`Self::publish`] sends everything (a replica
    /// that just became the leader does not know what the last one wrote).
    pub fn forget(&mut self) {
        self.last.clear();
        self.last_sent = None;
    }

    /// The scheduler's publisher: the in-process dns `in_process` when given (`dns_api`
    /// is then not used), else dns's API at `dns_api`, else none.
    pub fn for_config(
        dns_api: Option<&str>,
        in_process: Option<&Arc<dyn PlacementSink>>,
    ) -> Result<Option<Self>, PublishError> {
        if let Some(sink) = in_process {
            return Ok(Some(Self::to(Destination::InProcess(sink.clone()))));
        }
        dns_api.map(Self::new).transpose()
    }

    /// Where it sends.
    pub fn destination(&self) -> &Destination {
        &self.to
    }

    /// Sends `placements` if they differ from the last ones sent (or 30 s passed).
    /// Returns whether anything was sent.
    pub async fn publish(&mut self, placements: &[Placement]) -> Result<bool, PublishError> {
        let fresh = self.last_sent.is_some_and(|t| t.elapsed() < self.refresh);
        if placements == self.last.as_slice() && fresh {
            return Ok(false);
        }
        match &self.to {
            Destination::InProcess(sink) => sink
                .send(placements.to_vec())
                .map_err(PublishError::InProcess)?,
            Destination::Http { url, authority } => {
                let body = serde_json::json!({ "placements": placements }).to_string();
                post(url, authority, "/v1/placement", body).await?;
            }
            Destination::Hub { hub, manager } => {
                apply_in_hub(hub, manager, placements).await?;
            }
        }
        self.last = placements.to_vec();
        self.last_sent = Some(Instant::now());
        Ok(true)
    }
}

/// Applies every placement as its `Placement` object and deletes the objects `manager`
/// wrote before whose name is not among them. Unchanged objects are not rewritten
/// (server-side apply of the same content is a no-op in the API server).
async fn apply_in_hub(
    hub: &Hub,
    manager: &str,
    placements: &[Placement],
) -> Result<(), PublishError> {
    for p in placements {
        hub.apply_placement(p, manager).await?;
    }
    let keep: BTreeSet<String> = placements
        .iter()
        .map(|p| causeway_hubstore::placement_name(&p.service))
        .collect();
    for name in hub.placement_names(manager).await? {
        if !keep.contains(&name) {
            hub.delete_placement(&name).await?;
            tracing::info!(placement = %name, "deleted: no policy places this name any more");
        }
    }
    Ok(())
}

async fn post(url: &str, authority: &str, path: &str, body: String) -> Result<(), PublishError> {
    let err = |message: String| PublishError::Http {
        url: url.to_string(),
        message,
    };
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    .map_err(|_| err("connect timed out".into()))?
    .map_err(|e| err(format!("connect: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| err(format!("handshake: {e}")))?;
    tokio::spawn(conn);
    let req = http::Request::post(path)
        .header(http::header::HOST, authority)
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

#[cfg(test)]
mod tests;
