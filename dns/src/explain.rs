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

/// One live posted measurement of the matched prefix, as `GET /v1/explain` lists it in
/// `measured` (and `GET /v1/latency` in `measurements`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasuredRow {
    /// The prefix.
    pub prefix: String,
    /// The cluster measured from.
    pub cluster: String,
    /// Posted RTT, milliseconds.
    pub rtt_ms: f64,
    /// Who measured (`CLUSTER/NAME` for `causeway probe` and agent probers), if it said.
    #[serde(default)]
    pub prober: Option<String>,
    /// When it was posted, milliseconds since the epoch.
    pub posted_at_unix_ms: u64,
    /// How long ago, milliseconds.
    pub age_ms: u64,
}

/// What `GET /v1/explain` answers: the [`Explanation`] plus `measured`.
#[derive(serde::Deserialize)]
struct Live {
    #[serde(flatten)]
    explanation: Explanation,
    #[serde(default)]
    measured: Option<Vec<MeasuredRow>>,
}

impl Explanation {
    /// Human-readable rendering for the CLI (from a config file alone: every RTT is the
    /// static latency map's).
    pub fn render(&self) -> String {
        let mut s = self.render_candidates();
        s.push_str(&self.render_sources(None));
        s
    }

    /// Human-readable rendering of a live explanation with the matched prefix's posted
    /// measurements: per cluster, where its RTT comes from (the static latency map, or
    /// measured by which prober, when, how long ago), and what is not used.
    pub fn render_live(&self, measured: &[MeasuredRow]) -> String {
        let mut s = self.render_candidates();
        s.push_str(&self.render_sources(Some(measured)));
        s
    }

    /// The `latency sources` section: nothing unless a latency prefix matched.
    fn render_sources(&self, measured: Option<&[MeasuredRow]>) -> String {
        use std::fmt::Write;
        let Some(prefix) = &self.latency_prefix else {
            return String::new();
        };
        let mut s = format!("latency sources for {prefix}:\n");
        let rows = measured.unwrap_or_default();
        for c in &self.candidates {
            let cluster = c.cluster.as_str();
            let rtt = c
                .rtt_ms
                .map(|r| format!("{r}ms"))
                .unwrap_or_else(|| "-".into());
            let source = match rows.iter().find(|r| r.cluster == cluster) {
                Some(r) => {
                    let at = std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(r.posted_at_unix_ms);
                    let mut m = format!(
                        "measured {:.3}ms by {} at {} ({:.1}s ago)",
                        r.rtt_ms,
                        r.prober.as_deref().unwrap_or("an unnamed prober"),
                        causeway_hubstore::status::rfc3339(at),
                        r.age_ms as f64 / 1000.0
                    );
                    match c.rtt_ms {
                        Some(t) if (f64::from(t) - r.rtt_ms).abs() > 0.01 => {
                            let _ = write!(m, "; answers use {t}ms until the next rebuild");
                        }
                        None => m.push_str("; not in the answers until the next rebuild"),
                        Some(_) => {}
                    }
                    m
                }
                None if c.rtt_ms.is_some() && measured.is_none() => "static (latency map)".into(),
                None if c.rtt_ms.is_some() => "static (latency map; no live measurement)".into(),
                None if measured.is_none() => "none (not in the latency map)".into(),
                None => "none: not in the latency map and no live measurement \
                         (never posted, or aged out after latency.maxAge)"
                    .into(),
            };
            let _ = writeln!(s, "  {cluster:<16} rtt={rtt:<10} {source}");
        }
        for r in rows {
            if !self
                .candidates
                .iter()
                .any(|c| c.cluster.as_str() == r.cluster)
            {
                let _ = writeln!(
                    s,
                    "  ignored: {} {:.3}ms by {} ({:.1}s ago): not a target of this name",
                    r.cluster,
                    r.rtt_ms,
                    r.prober.as_deref().unwrap_or("an unnamed prober"),
                    r.age_ms as f64 / 1000.0
                );
            }
        }
        s
    }

    /// Name, policy, client, candidates, answer and why.
    fn render_candidates(&self) -> String {
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

/// Renders the JSON an API returned (`GET /v1/explain`, with its `measured`) for people.
pub fn render_json(body: &str) -> Result<String, String> {
    let live = serde_json::from_str::<Live>(body).map_err(|e| e.to_string())?;
    Ok(live
        .explanation
        .render_live(live.measured.as_deref().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live answer as `GET /v1/explain` gives it: A measured (and the answering table
    /// agrees), B measured but the table still has an older value, C static, D nothing,
    /// and a measurement of a cluster that is no target.
    const LIVE: &str = r#"{
      "name": "app.svc.example.", "zone": "svc", "policy": "latency", "qtype": "A",
      "client": "10.201.1.2/32", "latencyPrefix": "10.201.1.0/24",
      "candidates": [
        {"cluster": "cl-a", "healthy": true, "probe": "up", "rttMs": 12.5, "weight": 1, "tier": 0, "chosen": true},
        {"cluster": "cl-b", "healthy": true, "probe": "up", "rttMs": 40.0, "weight": 1, "tier": 0, "chosen": false},
        {"cluster": "cl-c", "healthy": true, "probe": "up", "rttMs": 70.0, "weight": 1, "tier": 0, "chosen": false},
        {"cluster": "cl-d", "healthy": true, "probe": "up", "weight": 1, "tier": 0, "chosen": false}
      ],
      "answer": ["192.0.2.1"], "ecsScope": 24, "failOpen": false,
      "reason": "lowest RTT", "generation": 3,
      "measured": [
        {"prefix": "10.201.1.0/24", "cluster": "cl-a", "rttMs": 12.5, "prober": "cl-a/edge",
         "postedAtUnixMs": 1795000000000, "ageMs": 400},
        {"prefix": "10.201.1.0/24", "cluster": "cl-b", "rttMs": 55.25, "prober": "cl-b/edge",
         "postedAtUnixMs": 1795000001000, "ageMs": 1500},
        {"prefix": "10.201.1.0/24", "cluster": "cl-x", "rttMs": 3.0, "prober": "cl-x/edge",
         "postedAtUnixMs": 1795000000000, "ageMs": 100}
      ]
    }"#;

    /// The line of the `latency sources` section that starts with `start`.
    fn line<'a>(text: &'a str, start: &str) -> &'a str {
        let sources = text.split_once("latency sources").map_or("", |x| x.1);
        sources
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in\n{text}"))
    }

    #[test]
    fn live_rendering_names_each_rtt_source() {
        let text = render_json(LIVE).expect("valid");
        assert!(
            text.contains("latency sources for 10.201.1.0/24:"),
            "{text}"
        );
        let a = line(&text, "cl-a  ");
        assert!(
            a.contains("rtt=12.5ms")
                && a.contains("measured 12.500ms by cl-a/edge at 2026-11-18T")
                && a.contains("(0.4s ago)")
                && !a.contains("rebuild"),
            "{a}"
        );
        let b = line(&text, "cl-b  ");
        assert!(
            b.contains("by cl-b/edge") && b.contains("answers use 40ms until the next rebuild"),
            "{b}"
        );
        let c = line(&text, "cl-c  ");
        assert!(
            c.contains("static (latency map; no live measurement)"),
            "{c}"
        );
        let d = line(&text, "cl-d  ");
        assert!(
            d.contains("rtt=-") && d.contains("aged out after latency.maxAge"),
            "{d}"
        );
        let x = line(&text, "ignored:");
        assert!(x.contains("cl-x") && x.contains("not a target"), "{x}");
    }

    #[test]
    fn offline_rendering_calls_every_rtt_static() {
        let live: Live = serde_json::from_str(LIVE).expect("valid");
        let text = live.explanation.render();
        assert!(
            line(&text, "cl-a  ").ends_with("static (latency map)"),
            "{text}"
        );
        assert!(
            line(&text, "cl-d  ").contains("none (not in the latency map)"),
            "{text}"
        );
        assert!(!text.contains("measured"), "{text}");
        // No matched prefix: no sources section.
        let mut x = live.explanation;
        x.latency_prefix = None;
        assert!(!x.render().contains("latency sources"));
    }
}
