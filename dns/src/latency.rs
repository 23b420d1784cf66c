//! The latency map: client network prefix → RTT per cluster, longest-prefix match.
//!
//! Three parts: [`LatencyStore`] keeps measurements posted to the API in a moka cache
//! that ages them out; [`LatencyTable`] ([`table`]) is the compact, immutable, merged
//! (static map + posted) table that a [`crate::state::Snapshot`] holds and queries read
//! without locks; [`lines`] reads big maps in a line format, from a file or an upload.

mod lines;
mod table;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_model::ClusterId;
use ipnet::IpNet;

pub use lines::{MAX_LINE, MAX_RTT_MS, MapError, MapParser, read_file};
pub use table::{
    DuplicatePrefix, Duplicates, LatencyEntry, LatencyTable, MAX_ROWS, TableBuilder, TooManyRows,
};

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
        assert_eq!(t.rtt(&e, &c("a")), Some(7.0));
    }

    fn parse(text: &str, chunk: usize) -> Result<LatencyTable, MapError> {
        let mut p = MapParser::new("map.txt");
        for part in text.as_bytes().chunks(chunk) {
            p.feed(part)?;
        }
        p.finish()
    }

    #[test]
    fn line_format_in_any_chunking() {
        let text = "# a map\n\nprefix a b c\r\n10.1.2.0/24 12.5 40 -\n10.1.0.0/16\t1 - 3\n\
                    10.1.2.7 9 9 9\n2001:db8::/32 - 5 -\n0.0.0.0/0 100 100 100";
        for chunk in [1, 3, 7, 64, 4096] {
            let t = parse(text, chunk).unwrap();
            assert_eq!(t.len(), 5);
            let e = t.lookup("10.1.2.9".parse().unwrap(), 32).unwrap();
            assert_eq!(e.prefix.to_string(), "10.1.2.0/24");
            assert!(e.has_nested, "10.1.2.7/32 lies inside");
            assert_eq!(t.rtt(&e, &c("a")), Some(12.5));
            assert_eq!(t.rtt(&e, &c("b")), Some(40.0));
            assert_eq!(t.rtt(&e, &c("c")), None);
            let e = t.lookup("10.1.2.7".parse().unwrap(), 32).unwrap();
            assert_eq!(e.prefix.prefix_len(), 32);
            assert!(!e.has_nested);
            let e = t.lookup("10.1.9.9".parse().unwrap(), 32).unwrap();
            assert_eq!(e.prefix.to_string(), "10.1.0.0/16");
            assert!(e.has_nested);
            assert_eq!(t.rtt(&e, &c("c")), Some(3.0));
            let e = t.lookup("192.0.2.1".parse().unwrap(), 32).unwrap();
            assert_eq!(e.prefix.prefix_len(), 0);
            assert!(e.has_nested);
            let e = t.lookup("2001:db8::1".parse().unwrap(), 128).unwrap();
            assert_eq!(t.rtt(&e, &c("b")), Some(5.0));
        }
    }

    #[test]
    fn line_format_errors_name_the_line() {
        for (text, line, needle) in [
            ("", 0, "no header"),
            ("10.0.0.0/8 1\n", 1, "header"),
            ("prefix a a\n", 1, "twice"),
            ("prefix a\n10.0.0.0/8 1 2\n", 2, "more RTT"),
            ("prefix a b\n\n10.0.0.0/8 1\n", 3, "1 RTT"),
            ("prefix a\n10.0.0.0/33 1\n", 2, "not a prefix"),
            ("prefix a\n10.0.0.0/8 -1\n", 2, "column 2"),
            ("prefix a\n10.0.0.0/8 NaN\n", 2, "not an RTT"),
            (
                "prefix a\n10.0.0.0/8 1\n#\n10.0.0.9/8 2\n",
                4,
                "lines 2 and 4",
            ),
            ("prefix a\n::/0 1\n::1/0 2\n", 3, "lines 2 and 3"),
        ] {
            let e = parse(text, 5).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
            assert!(
                e.to_string().starts_with(&format!("map.txt:{line}: ")),
                "{e}"
            );
        }
        let long = format!("prefix a\n{}", "x".repeat(MAX_LINE + 1));
        assert!(parse(&long, 4096).unwrap_err().reason.contains("longer"));
    }

    #[test]
    fn merge_lets_later_layers_win_per_cluster() {
        let base = Arc::new(parse("prefix a b\n10.0.0.0/8 1 2\n10.1.0.0/16 3 4\n", 64).unwrap());
        let posted = Arc::new(LatencyTable::build([
            ("10.0.0.0/8".parse().unwrap(), c("b"), 20.0),
            ("10.1.2.0/24".parse().unwrap(), c("z"), 9.0),
        ]));
        let m = LatencyTable::merge(&[&base, &posted]);
        assert_eq!(m.len(), 3);
        let e = m.lookup("10.9.0.1".parse().unwrap(), 32).unwrap();
        assert_eq!(
            (m.rtt(&e, &c("a")), m.rtt(&e, &c("b"))),
            (Some(1.0), Some(20.0))
        );
        let e = m.lookup("10.1.2.1".parse().unwrap(), 32).unwrap();
        assert_eq!(m.rtt(&e, &c("z")), Some(9.0));
        assert_eq!(m.rtt(&e, &c("a")), None);
        assert!(
            m.lookup("10.1.0.0".parse().unwrap(), 16)
                .unwrap()
                .has_nested
        );
        // One layer: the same table, no copy.
        let empty = Arc::new(LatencyTable::default());
        assert!(Arc::ptr_eq(&LatencyTable::merge(&[&empty, &base]), &base));
    }

    #[test]
    fn big_shuffled_table_matches_a_plain_map() {
        // Rows in a scrambled order, several lengths: every lookup agrees with a
        // straightforward map of the same rows.
        let mut text = String::from("prefix a b\n");
        let mut want = std::collections::HashMap::new();
        for i in 0..60_000u32 {
            let x = i.wrapping_mul(2_654_435_761);
            let (len, addr) = match i % 3 {
                0 => (24, x & 0xffff_ff00),
                1 => (16, x & 0xffff_0000),
                _ => (20, x & 0xffff_f000),
            };
            let p = IpNet::new(std::net::Ipv4Addr::from(addr).into(), len).unwrap();
            if want.insert(p, i).is_none() {
                text.push_str(&format!("{p} {i} -\n"));
            } else {
                want.remove(&p);
                want.insert(p, u32::MAX);
            }
        }
        want.retain(|_, v| *v != u32::MAX);
        let text: String = text
            .lines()
            .filter(|l| {
                l.starts_with("prefix")
                    || want.contains_key(&l.split(' ').next().unwrap().parse::<IpNet>().unwrap())
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let t = parse(&text, 1000).unwrap();
        assert_eq!(t.len(), want.len());
        assert!(
            t.v4_bucketed(),
            "the /24 level is big enough to be bucketed"
        );
        // Addresses in no prefix: none of the levels matches.
        for i in 0..2_000u32 {
            let a = std::net::Ipv4Addr::from(i.wrapping_mul(2_246_822_519) | 0x8000_0000);
            let hit = t.lookup(a.into(), 32).map(|e| e.prefix);
            let want_hit = [24u8, 20, 16].into_iter().find_map(|len| {
                let p = IpNet::new(a.into(), len).unwrap().trunc();
                want.contains_key(&p).then_some(p)
            });
            assert_eq!(hit, want_hit, "{a}");
        }
        for (p, i) in &want {
            let e = t.lookup(p.addr(), p.prefix_len()).unwrap();
            assert_eq!(e.prefix, *p);
            assert_eq!(t.rtt(&e, &c("a")), Some(*i as f32));
        }
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
