//! The latency map: client network prefix → RTT per cluster, longest-prefix match.
//!
//! Two parts: [`LatencyStore`] keeps measurements posted to the API in a moka cache
//! that ages them out; [`LatencyTable`] is the immutable, merged (static config +
//! posted) table that a [`crate::state::Snapshot`] holds and queries read without locks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_model::ClusterId;
use ipnet::IpNet;

/// One prefix's measurements.
#[derive(Debug, Clone)]
pub struct LatencyEntry {
    /// The client network.
    pub prefix: IpNet,
    /// (cluster index into [`LatencyTable::clusters`], RTT in ms).
    pub rtts: Box<[(u16, f32)]>,
    /// Whether a longer prefix lies inside this one (then the answer for a client in
    /// this prefix is not valid for the whole prefix: see the ECS scope in `policy`).
    pub has_nested: bool,
}

#[derive(Debug, Default)]
struct Family {
    /// Prefix lengths present, longest first, each with masked address → entry index.
    levels: Vec<(u8, HashMap<u128, u32>)>,
}

/// Immutable longest-prefix-match table for IPv4 and IPv6.
#[derive(Debug, Default)]
pub struct LatencyTable {
    clusters: Vec<ClusterId>,
    entries: Vec<LatencyEntry>,
    v4: Family,
    v6: Family,
}

fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn mask(v: u128, width: u8, len: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let keep = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    let drop = u32::from(width - len);
    let m = if drop >= 128 {
        0
    } else {
        (keep >> drop) << drop
    };
    v & m
}

impl LatencyTable {
    /// Builds a table from (prefix, cluster, RTT ms) triples; later triples for the same
    /// (prefix, cluster) win.
    pub fn build(items: impl IntoIterator<Item = (IpNet, ClusterId, f32)>) -> Self {
        let mut table = Self::default();
        let mut interned: HashMap<ClusterId, u16> = HashMap::new();
        let mut by_prefix: HashMap<IpNet, Vec<(u16, f32)>> = HashMap::new();
        for (prefix, cluster, rtt) in items {
            let idx = match interned.get(&cluster) {
                Some(i) => *i,
                None => {
                    let Ok(i) = u16::try_from(table.clusters.len()) else {
                        continue; // more than 65535 clusters: ignore the rest
                    };
                    table.clusters.push(cluster.clone());
                    interned.insert(cluster, i);
                    i
                }
            };
            let v = by_prefix.entry(prefix.trunc()).or_default();
            match v.iter_mut().find(|(c, _)| *c == idx) {
                Some(slot) => slot.1 = rtt,
                None => v.push((idx, rtt)),
            }
        }
        let mut v4: HashMap<u8, HashMap<u128, u32>> = HashMap::new();
        let mut v6: HashMap<u8, HashMap<u128, u32>> = HashMap::new();
        for (prefix, mut rtts) in by_prefix {
            rtts.sort_by_key(|r| r.0);
            let idx = table.entries.len() as u32;
            let (v, _) = bits(prefix.addr());
            let fam = if prefix.addr().is_ipv4() {
                &mut v4
            } else {
                &mut v6
            };
            fam.entry(prefix.prefix_len()).or_default().insert(v, idx);
            table.entries.push(LatencyEntry {
                prefix,
                rtts: rtts.into_boxed_slice(),
                has_nested: false,
            });
        }
        let into_levels = |m: HashMap<u8, HashMap<u128, u32>>| {
            let mut levels: Vec<_> = m.into_iter().collect();
            levels.sort_by_key(|l| std::cmp::Reverse(l.0));
            for (_, map) in &mut levels {
                map.shrink_to_fit();
            }
            Family { levels }
        };
        table.v4 = into_levels(v4);
        table.v6 = into_levels(v6);
        // Mark every entry that has a longer entry inside it.
        let mut nested = Vec::new();
        for e in &table.entries {
            let (v, width) = bits(e.prefix.addr());
            let fam = if width == 32 { &table.v4 } else { &table.v6 };
            for (len, map) in &fam.levels {
                if *len < e.prefix.prefix_len()
                    && let Some(i) = map.get(&mask(v, width, *len))
                {
                    nested.push(*i);
                }
            }
        }
        for i in nested {
            table.entries[i as usize].has_nested = true;
        }
        table
    }

    /// RTT of `cluster` in entry `e`, if measured.
    pub fn rtt(&self, e: &LatencyEntry, cluster: &ClusterId) -> Option<f32> {
        let idx = self.clusters.iter().position(|c| c == cluster)?;
        e.rtts
            .iter()
            .find(|(c, _)| usize::from(*c) == idx)
            .map(|(_, r)| *r)
    }

    /// The longest prefix of at most `max_len` bits containing `addr`, with its length.
    pub fn lookup(&self, addr: IpAddr, max_len: u8) -> Option<&LatencyEntry> {
        let (v, width) = bits(addr);
        let fam = if width == 32 { &self.v4 } else { &self.v6 };
        fam.levels
            .iter()
            .filter(|(len, _)| *len <= max_len)
            .find_map(|(len, map)| map.get(&mask(v, width, *len)))
            .map(|i| &self.entries[*i as usize])
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any prefix of `addr`'s family is present.
    pub fn has_family(&self, addr: IpAddr) -> bool {
        if addr.is_ipv4() {
            !self.v4.levels.is_empty()
        } else {
            !self.v6.levels.is_empty()
        }
    }
}

/// One posted measurement as the store keeps it: who measured it and when it arrived.
#[derive(Debug, Clone)]
pub struct Posted {
    /// RTT in milliseconds.
    pub rtt_ms: f32,
    /// The prober that reported it (`prober` in the POST), if it said.
    pub prober: Option<Arc<str>>,
    /// When it was posted.
    pub at: SystemTime,
}

/// Measurements posted through the API, aged out by moka.
#[derive(Clone)]
pub struct LatencyStore {
    cache: moka::sync::Cache<(IpNet, ClusterId), Posted>,
}

impl LatencyStore {
    /// A store whose entries live `max_age` and number at most `max_entries`.
    pub fn new(max_age: Duration, max_entries: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(max_age)
                .build(),
        }
    }

    /// Records one measurement (no prober named).
    pub fn insert(&self, prefix: IpNet, cluster: ClusterId, rtt_ms: f32) {
        self.insert_from(prefix, cluster, rtt_ms, None);
    }

    /// Records one measurement reported by `prober`; it lives `max_age` from now.
    pub fn insert_from(
        &self,
        prefix: IpNet,
        cluster: ClusterId,
        rtt_ms: f32,
        prober: Option<Arc<str>>,
    ) {
        let posted = Posted {
            rtt_ms,
            prober,
            at: SystemTime::now(),
        };
        self.cache.insert((prefix.trunc(), cluster), posted);
    }

    /// Live measurements.
    pub fn items(&self) -> Vec<(IpNet, ClusterId, f32)> {
        self.cache.run_pending_tasks();
        self.cache
            .iter()
            .map(|(k, v)| (k.0, k.1.clone(), v.rtt_ms))
            .collect()
    }

    /// Live measurements with who posted them and when.
    pub fn posted(&self) -> Vec<(IpNet, ClusterId, Posted)> {
        self.cache.run_pending_tasks();
        self.cache
            .iter()
            .map(|(k, v)| (k.0, k.1.clone(), v))
            .collect()
    }

    /// Number of live measurements (approximate until pending tasks run).
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    #[test]
    fn longest_prefix_wins_v4_and_v6() {
        let t = LatencyTable::build([
            ("10.0.0.0/8".parse().unwrap(), c("a"), 50.0),
            ("10.1.0.0/16".parse().unwrap(), c("b"), 5.0),
            ("2001:db8::/32".parse().unwrap(), c("a"), 9.0),
            ("2001:db8:1::/48".parse().unwrap(), c("b"), 1.0),
        ]);
        let e = t.lookup("10.1.2.3".parse().unwrap(), 32).unwrap();
        assert_eq!(e.prefix.to_string(), "10.1.0.0/16");
        assert!(!e.has_nested);
        let e = t.lookup("10.2.2.3".parse().unwrap(), 32).unwrap();
        assert_eq!(e.prefix.to_string(), "10.0.0.0/8");
        assert!(e.has_nested);
        // A /12 client network cannot use the /16 entry.
        let e = t.lookup("10.1.0.0".parse().unwrap(), 12).unwrap();
        assert_eq!(e.prefix.prefix_len(), 8);
        let e = t.lookup("2001:db8:1::5".parse().unwrap(), 128).unwrap();
        assert_eq!(e.prefix.prefix_len(), 48);
        assert!(t.lookup("192.0.2.1".parse().unwrap(), 32).is_none());
        assert!(t.lookup("2001:db9::1".parse().unwrap(), 128).is_none());
    }

    #[test]
    fn later_values_win_and_default_route_matches() {
        let t = LatencyTable::build([
            ("0.0.0.0/0".parse().unwrap(), c("a"), 50.0),
            ("0.0.0.0/0".parse().unwrap(), c("a"), 7.0),
        ]);
        let e = t.lookup("203.0.113.9".parse().unwrap(), 32).unwrap();
        assert_eq!(t.rtt(e, &c("a")), Some(7.0));
    }

    #[test]
    fn store_ages_out() {
        let s = LatencyStore::new(Duration::from_millis(50), 100);
        s.insert("10.0.0.0/8".parse().unwrap(), c("a"), 1.0);
        s.insert_from(
            "10.1.0.0/16".parse().unwrap(),
            c("b"),
            2.0,
            Some("p-b".into()),
        );
        assert_eq!(s.items().len(), 2);
        let posted = s.posted();
        let b = posted.iter().find(|p| p.1 == c("b")).unwrap();
        assert_eq!(b.2.prober.as_deref(), Some("p-b"));
        assert_eq!(b.2.rtt_ms, 2.0);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(s.items().len(), 0);
    }
}
