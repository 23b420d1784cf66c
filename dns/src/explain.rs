//! `explain`: why a GSLB name answers what it does for a client network.
//!
//! Used by `causeway dns explain` (offline, from the config file) and by
//! `GET /v1/explain` (live health and latency).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::policy::{self, Candidate, Client, Family};
use crate::state::Snapshot;

/// The explanation of one answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The GSLB name.
    pub name: String,
    /// The zone.
    pub zone: String,
    /// Policy.
    pub policy: String,
    /// Record type explained (`A` or `AAAA`).
    pub qtype: String,
    /// The client network used.
    pub client: String,
    /// Latency-map prefix that matched, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_prefix: Option<String>,
    /// Every target, with health, RTT and whether it was chosen.
    pub candidates: Vec<Candidate>,
    /// Addresses answered.
    pub answer: Vec<IpAddr>,
    /// ECS scope prefix length in the reply.
    pub ecs_scope: u8,
    /// Every target was unhealthy.
    pub fail_open: bool,
    /// One line on why.
    pub reason: String,
    /// Snapshot generation explained.
    pub generation: u64,
}

/// Why there is nothing to explain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// Not a valid name.
    #[error("{0:?} is not a valid domain name")]
    BadName(String),
    /// Not a GSLB name.
    #[error("{0} is not a GSLB name in any zone")]
    NotGslb(String),
}

/// Explains the `qtype` answer for `name` to client network `client`.
pub fn explain(
    snap: &Snapshot,
    name: &str,
    client: IpNet,
    family: Family,
) -> Result<Explanation, ExplainError> {
    let fq = crate::builder::normalize_service(name);
    let parsed = hickory_proto::rr::Name::from_ascii(&fq)
        .map_err(|_| ExplainError::BadName(name.to_string()))?;
    let id = snap
        .zones
        .gslb_by_name(&parsed.to_lowercase().to_ascii())
        .ok_or_else(|| ExplainError::NotGslb(fq.clone()))?;
    let g = &snap.zones.gslb[id];
    let client = Client::new(client.addr(), client.prefix_len());
    let choice = policy::choose(snap, id, &client, family);
    let answer = choice
        .targets
        .iter()
        .flat_map(|t| match family {
            Family::V4 => snap
                .v4(id, *t)
                .iter()
                .map(|a| IpAddr::V4(*a))
                .collect::<Vec<_>>(),
            Family::V6 => snap.v6(id, *t).iter().map(|a| IpAddr::V6(*a)).collect(),
        })
        .collect();
    Ok(Explanation {
        name: g.fqdn.clone(),
        zone: snap
            .zones
            .zones
            .get(g.zone)
            .map(|z| z.label.clone())
            .unwrap_or_default(),
        policy: g.policy.as_str().to_string(),
        qtype: match family {
            Family::V4 => "A".into(),
            Family::V6 => "AAAA".into(),
        },
        client: client.net().to_string(),
        latency_prefix: choice.latency_prefix.map(|p| p.to_string()),
        candidates: policy::candidates(snap, id, &choice),
        answer,
        ecs_scope: choice.scope,
        fail_open: choice.fail_open,
        reason: choice.reason.clone(),
        generation: snap.generation,
    })
}

impl Explanation {
    /// Human-readable rendering for the CLI.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "name:      {} ({}) in zone {}",
            self.name, self.qtype, self.zone
        );
        let _ = writeln!(s, "policy:    {}", self.policy);
        let _ = writeln!(s, "client:    {}", self.client);
        if let Some(p) = &self.latency_prefix {
            let _ = writeln!(s, "latency:   matched prefix {p}");
        }
        let _ = writeln!(s, "candidates:");
        for c in &self.candidates {
            let _ = writeln!(
                s,
                "  {} {:<16} healthy={:<5} probe={:<9} rtt={:<8} weight={:<4} ({}) role={} tier={}{}{}",
                if c.chosen { "*" } else { " " },
                c.cluster.as_str(),
                c.healthy,
                c.probe,
                c.rtt_ms
                    .map(|r| format!("{r}ms"))
                    .unwrap_or_else(|| "-".into()),
                c.weight,
                c.weight_from,
                format!("{:?}", c.role).to_lowercase(),
                c.tier,
                c.placement
                    .as_ref()
                    .map(|p| format!(" placement={p} addresses-from={}", c.addresses_from))
                    .unwrap_or_default(),
                c.external
                    .as_ref()
                    .map(|e| format!(" external={e}"))
                    .unwrap_or_default(),
            );
        }
        let answer: Vec<String> = self.answer.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "answer:    {}", answer.join(", "));
        let _ = writeln!(s, "ecs scope: /{}", self.ecs_scope);
        if self.fail_open {
            let _ = writeln!(s, "FAIL OPEN: every target is unhealthy");
        }
        let _ = writeln!(s, "why:       {}", self.reason);
        s
    }
}

/// Explains from a config file alone: static latency map, no probe has run (every
/// target counts as healthy), no external report.
pub fn offline(
    loaded: &crate::LoadedConfig,
    name: &str,
    client: IpNet,
    family: Family,
) -> Result<Explanation, ExplainError> {
    let server = crate::state::ServerState::serving(loaded);
    explain(&server.state.load(), name, client, family)
}

/// JSON of an explanation.
pub fn to_json(x: &Explanation) -> String {
    let mut s = serde_json::to_string_pretty(x).unwrap_or_default();
    s.push('\n');
    s
}

/// Renders the JSON an API returned for people.
pub fn render_json(body: &str) -> Result<String, String> {
    serde_json::from_str::<Explanation>(body)
        .map(|x| x.render())
        .map_err(|e| e.to_string())
}
