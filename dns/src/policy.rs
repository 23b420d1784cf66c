//! GSLB policies: pure functions `(&Snapshot, GSLB name, client) -> Choice`.
//!
//! Each policy picks targets among the healthy ones that have an address of the
//! asked family. When none is healthy, every such target is answered ("fail open")
//! and [`Choice::fail_open`] says so. [`Choice::scope`] is the ECS scope prefix length
//! (RFC 7871): the number of client address bits the answer depends on, 0 when it
//! does not depend on the client.

mod all_healthy;
mod failover;
mod latency;
mod weighted;

use std::net::IpAddr;

use causeway_model::{ClusterId, Role};
use ipnet::IpNet;

use crate::config::PolicyKind;
use crate::state::Snapshot;
use crate::zone::{Gslb, GslbId};

/// The client network a query is answered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    /// Address, masked to `source_len` bits.
    pub addr: IpAddr,
    /// Significant bits: the ECS source prefix length, or the full width without ECS.
    pub source_len: u8,
}

impl Client {
    /// A client network from an address and a prefix length (masked here).
    pub fn new(addr: IpAddr, source_len: u8) -> Self {
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let source_len = source_len.min(width);
        let addr = IpNet::new(addr, source_len)
            .map(|n| n.network())
            .unwrap_or(addr);
        Self { addr, source_len }
    }

    /// The client network as a prefix.
    pub fn net(&self) -> IpNet {
        IpNet::new(self.addr, self.source_len).unwrap_or_else(|_| IpNet::from(self.addr))
    }
}

/// Address family asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

/// One candidate as the policy saw it (for `explain` and logs).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// Cluster.
    pub cluster: ClusterId,
    /// Whether it was healthy.
    pub healthy: bool,
    /// Active probe state.
    pub probe: String,
    /// External report, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    /// RTT used (latency policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f32>,
    /// Weight in effect.
    pub weight: u32,
    /// Where the weight, role and addresses come from: `zone` or `placement`.
    #[serde(default = "zone_source")]
    pub weight_from: String,
    /// Role (`active` unless a placement says `standby` or `draining`).
    #[serde(default)]
    pub role: Role,
    /// The placement's health for this target, if a placement named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// Where the addresses come from: `zone` or `placement`.
    #[serde(default = "zone_source")]
    pub addresses_from: String,
    /// Tier.
    pub tier: u32,
    /// Whether it was answered.
    pub chosen: bool,
}

fn zone_source() -> String {
    "zone".into()
}

/// A policy's decision.
#[derive(Debug, Clone)]
pub struct Choice {
    /// Target indexes to answer, in order.
    pub targets: Vec<usize>,
    /// ECS scope prefix length.
    pub scope: u8,
    /// Whether the answer depends on the client network (cache per client).
    pub per_client: bool,
    /// Every candidate was unhealthy, so all were answered.
    pub fail_open: bool,
    /// The latency-map prefix used, if any.
    pub latency_prefix: Option<IpNet>,
    /// One line on why.
    pub reason: String,
}

impl Choice {
    /// No target, the same for every client, because of `reason`.
    fn nothing(reason: &str) -> Self {
        Self {
            targets: Vec::new(),
            scope: 0,
            per_client: false,
            fail_open: false,
            latency_prefix: None,
            reason: reason.into(),
        }
    }
}

/// Chooses the targets of GSLB name `id` for `client`, among targets with an address
/// of `family`.
///
/// The policy runs over the targets that take new clients: healthy, not draining, not
/// at placement weight 0, and active — standby targets only when no active one
/// qualifies. When none is healthy, every target of the family is answered (fail
/// open); when some are healthy but none takes new clients, the healthy ones are.
pub fn choose(snap: &Snapshot, id: GslbId, client: &Client, family: Family) -> Choice {
    choose_with(snap, id, client, family, true)
}

/// [`choose`] without [`Choice::reason`] (left empty): the query path's, which
/// formats no text.
pub fn decide(snap: &Snapshot, id: GslbId, client: &Client, family: Family) -> Choice {
    choose_with(snap, id, client, family, false)
}

/// `reason()` when `explain`, else an empty string (no allocation).
fn why(explain: bool, reason: impl FnOnce() -> String) -> String {
    if explain { reason() } else { String::new() }
}

fn choose_with(
    snap: &Snapshot,
    id: GslbId,
    client: &Client,
    family: Family,
    explain: bool,
) -> Choice {
    let Some(g) = snap.zones.gslb.get(id) else {
        return Choice::nothing("no such GSLB name");
    };
    let has_family = |t: usize| match family {
        Family::V4 => !snap.v4(id, t).is_empty(),
        Family::V6 => !snap.v6(id, t).is_empty(),
    };
    let n = g.targets.len();
    let healthy = |t: usize| has_family(t) && snap.is_healthy(id, t);
    if !(0..n).any(has_family) {
        return Choice::nothing("no target has an address of this family");
    }
    if !(0..n).any(healthy) {
        if !g.fail_open {
            return Choice::nothing("every target is unhealthy and failOpen is false: no answer");
        }
        return Choice {
            targets: (0..n).filter(|t| has_family(*t)).collect(),
            scope: 0,
            per_client: false,
            fail_open: true,
            latency_prefix: None,
            reason: "every target is unhealthy: answering all of them (fail open)".into(),
        };
    }
    // The pool on the stack for up to `INLINE` targets: the query path runs this on
    // every reply-cache miss.
    const INLINE: usize = 16;
    let taking = |role: Role| {
        (0..n).filter(move |t| {
            healthy(*t) && snap.role(id, *t) == role && snap.takes_new_clients(id, *t)
        })
    };
    let mut inline = [0usize; INLINE];
    let mut heap = Vec::new();
    let mut collect = |role: Role| -> usize {
        if n <= INLINE {
            let mut k = 0;
            for t in taking(role) {
                inline[k] = t;
                k += 1;
            }
            k
        } else {
            heap = taking(role).collect();
            heap.len()
        }
    };
    let mut k = collect(Role::Active);
    let mut standby = false;
    if k == 0 {
        k = collect(Role::Standby);
        standby = k > 0;
    }
    if k == 0 {
        if !g.fail_open {
            return Choice::nothing(
                "no healthy target takes new clients and failOpen is false: no answer",
            );
        }
        return Choice {
            targets: (0..n)
                .filter(|t| healthy(*t))
                .take(g.max_answers.max(1))
                .collect(),
            scope: 0,
            per_client: false,
            fail_open: true,
            latency_prefix: None,
            reason: "no healthy target takes new clients (draining or placement weight 0): \
                     answering the healthy ones (fail open)"
                .into(),
        };
    }
    let pool: &[usize] = if n <= INLINE { &inline[..k] } else { &heap };
    let mut choice = match g.policy {
        PolicyKind::Latency => latency::choose(snap, g, pool, client, explain),
        PolicyKind::Failover => failover::choose(g, pool, explain),
        PolicyKind::Weighted => weighted::choose(snap, id, pool, client, explain),
        PolicyKind::AllHealthy => all_healthy::choose(g, pool, explain),
    };
    if standby && explain {
        choice.reason = format!(
            "no active target is healthy: standby only; {}",
            choice.reason
        );
    }
    choice
}

/// The candidates of `id` with their health and RTTs, marking those in `choice`.
pub fn candidates(snap: &Snapshot, id: GslbId, choice: &Choice) -> Vec<Candidate> {
    let Some(g) = snap.zones.gslb.get(id) else {
        return Vec::new();
    };
    let entry = choice
        .latency_prefix
        .and_then(|p| snap.latency.lookup(p.addr(), p.prefix_len()));
    g.targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let h = snap.target_health(id, i);
            let from = |placement: bool| if placement { "placement" } else { "zone" }.to_string();
            Candidate {
                cluster: t.cluster.clone(),
                healthy: h.healthy,
                probe: format!("{:?}", h.probe).to_lowercase(),
                external: h
                    .external
                    .map(|(s, r)| format!("{}: {r}", format!("{s:?}").to_lowercase())),
                rtt_ms: entry.and_then(|e| snap.latency.rtt(&e, &t.cluster)),
                weight: snap.weight(id, i),
                weight_from: from(h.placement.is_some()),
                role: snap.role(id, i),
                placement: h
                    .placement
                    .as_ref()
                    .map(|p| format!("{:?}", p.health).to_lowercase()),
                addresses_from: from(h.placement.as_ref().is_some_and(|p| p.has_addresses())),
                tier: t.tier,
                chosen: choice.targets.contains(&i),
            }
        })
        .collect()
}

fn single(
    target: usize,
    scope: u8,
    per_client: bool,
    latency_prefix: Option<IpNet>,
    reason: String,
) -> Choice {
    Choice {
        targets: vec![target],
        scope,
        per_client,
        fail_open: false,
        latency_prefix,
        reason,
    }
}

fn cluster(g: &Gslb, t: usize) -> &str {
    g.targets[t].cluster.as_str()
}

#[cfg(test)]
mod tests;
