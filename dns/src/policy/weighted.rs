//! `weighted`: ONE target per query, chosen by weight with consistent hashing on the
//! client network, so a network keeps its cluster and few networks move when weights
//! or health change.
//!
//! Weighted rendezvous hashing (highest random weight): each target scores
//! `-weight / ln(u)`, `u` a uniform number in (0, 1) hashed from (client network,
//! cluster); the highest score wins. A target's weight change only moves clients to or
//! from that target, and removing a target only moves its own clients.
//!
//! Weights are the zone's, or a placement's where one set them
//! ([`crate::state::Snapshot::weight`]).
//!
//! The client network is the client address cut to /24 (IPv4) or /56 (IPv6), or to
//! the ECS source prefix if shorter; that length is the ECS scope.

use super::{Choice, Client, cluster, single, why};
use crate::state::Snapshot;
use crate::zone::GslbId;

/// Client network length used for IPv4.
pub const V4_NETWORK: u8 = 24;
/// Client network length used for IPv6.
pub const V6_NETWORK: u8 = 56;

pub(super) fn choose(
    snap: &Snapshot,
    id: GslbId,
    healthy: &[usize],
    client: &Client,
    explain: bool,
) -> Choice {
    let g = &snap.zones.gslb[id];
    let max = if client.addr.is_ipv4() {
        V4_NETWORK
    } else {
        V6_NETWORK
    };
    let net = Client::new(client.addr, client.source_len.min(max));
    let weighted: Vec<usize> = healthy
        .iter()
        .copied()
        .filter(|t| snap.weight(id, *t) > 0)
        .collect();
    // Healthy targets all at weight 0: share equally rather than answer nothing.
    let (pool, equal) = if weighted.is_empty() {
        (healthy.to_vec(), true)
    } else {
        (weighted, false)
    };
    let key = network_key(&net);
    let best = pool
        .iter()
        .copied()
        .map(|t| {
            let w = if equal {
                1.0
            } else {
                f64::from(snap.weight(id, t))
            };
            (t, score(key, g.targets[t].cluster.as_str(), w))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let t = best.map(|b| b.0).unwrap_or(healthy[0]);
    single(
        t,
        net.source_len,
        true,
        None,
        why(explain, || {
            format!(
                "weighted rendezvous hash of client network {} picks {}",
                net.net(),
                cluster(g, t)
            )
        }),
    )
}

fn network_key(net: &Client) -> u64 {
    let v = match net.addr {
        std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
        std::net::IpAddr::V6(a) => u128::from(a) ^ (1 << 127),
    };
    mix(mix(v as u64 ^ u64::from(net.source_len)) ^ (v >> 64) as u64)
}

/// splitmix64 finaliser: a fixed, well-mixed hash (stable across processes).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn score(key: u64, cluster: &str, weight: f64) -> f64 {
    let mut h = key;
    for b in cluster.bytes() {
        h = mix(h ^ u64::from(b));
    }
    // u in (0, 1): 53 random bits, never 0.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -weight / u.ln()
}
