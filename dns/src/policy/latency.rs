//! `latency`: the healthy target with the lowest RTT for the client network.
//!
//! The client network's longest matching prefix in the latency map gives an RTT per
//! cluster; the healthy target with the lowest RTT wins (ties: `defaultOrder`). Without
//! data for the client, the first healthy target in `defaultOrder` wins.

use super::{Choice, Client, cluster, single, why};
use crate::state::Snapshot;
use crate::zone::Gslb;

pub(super) fn choose(
    snap: &Snapshot,
    g: &Gslb,
    healthy: &[usize],
    client: &Client,
    explain: bool,
) -> Choice {
    let entry = if client.source_len == 0 {
        None
    } else {
        snap.latency.lookup(client.addr, client.source_len)
    };
    let ordered = || {
        g.default_order
            .iter()
            .copied()
            .filter(|t| healthy.contains(t))
    };
    if let Some(e) = entry {
        let best = ordered()
            .filter_map(|t| snap.latency.rtt(&e, &g.targets[t].cluster).map(|r| (t, r)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((t, rtt)) = best {
            // The answer holds for the whole matched prefix, unless a longer prefix
            // inside it could answer differently: then only for the client's network.
            let scope = if e.has_nested {
                client.source_len
            } else {
                e.prefix.prefix_len()
            };
            return single(
                t,
                scope,
                true,
                Some(e.prefix),
                why(explain, || {
                    format!("lowest RTT for {}: {} at {rtt} ms", e.prefix, cluster(g, t))
                }),
            );
        }
    }
    // No usable measurement: the default order. The answer still depends on the
    // client when the map has data for its family (another client may match).
    let depends = client.source_len > 0 && snap.latency.has_family(client.addr);
    let scope = if depends { client.source_len } else { 0 };
    let t = ordered().next().unwrap_or(healthy[0]);
    single(
        t,
        scope,
        depends,
        entry.map(|e| e.prefix),
        why(explain, || {
            format!(
                "no latency data for {} among healthy targets: default order picks {}",
                client.net(),
                cluster(g, t)
            )
        }),
    )
}
