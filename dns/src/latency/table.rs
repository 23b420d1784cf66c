//! The compact, immutable longest-prefix-match table and the builder that makes one.
//!
//! Layout (one table, whatever its size): per address family, one sorted key array per
//! prefix length (`u32` for IPv4, `u128` for IPv6), searched by binary search, longest
//! length first; the RTTs of every entry in one flat `f32` array (`clusters.len()` per
//! entry, NaN = not measured); one bit per entry for "a longer prefix lies inside".
//! For 1,000,000 IPv4 prefixes and three clusters that is 16 bytes per prefix.
//!
//! [`TableBuilder`] takes rows in any order and sorts them in place: IPv4 rows are
//! packed into one `u64` each (length, address, row number), and the RTTs are moved to
//! their sorted place by following the permutation's cycles, so the build needs about
//! one and a half times the finished table, not a copy per step.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use causeway_model::ClusterId;
use ipnet::IpNet;

/// Most rows one table takes (the row number has 26 bits in a packed IPv4 key).
pub const MAX_ROWS: usize = 1 << 26;
const ROW_MASK: u64 = (1 << 26) - 1;

/// One prefix's measurements, as a lookup returns it.
#[derive(Debug, Clone, Copy)]
pub struct LatencyEntry<'a> {
    /// The client network.
    pub prefix: IpNet,
    /// Whether a longer prefix lies inside this one (then the answer for a client in
    /// this prefix is not valid for the whole prefix: see the ECS scope in `policy`).
    pub has_nested: bool,
    /// RTT per cluster of the table (NaN: not measured).
    rtts: &'a [f32],
}

impl LatencyEntry<'_> {
    /// RTT of the table's cluster number `i`, if measured.
    pub fn rtt_at(&self, i: usize) -> Option<f32> {
        self.rtts.get(i).copied().filter(|r| !r.is_nan())
    }
}

#[derive(Debug, Default)]
struct Level<K> {
    len: u8,
    /// Entry number of `keys[0]`.
    start: u32,
    keys: Box<[K]>,
    /// For a big IPv4 level: `buckets[h]` is the first key whose top 16 bits are at
    /// least `h` (65,537 of them), so a search looks at one bucket's keys only (a few
    /// cache lines rather than ~20 for a million keys). Empty otherwise.
    buckets: Box<[u32]>,
}

/// IPv4 levels with more keys than this get [`Level::buckets`] (256 KiB each).
const BUCKETED: usize = 16_384;

impl Level<u32> {
    fn with_buckets(mut self) -> Self {
        if self.keys.len() > BUCKETED {
            let mut b = Vec::with_capacity(65_537);
            let mut i = 0usize;
            for h in 0..=65_536u32 {
                while i < self.keys.len() && self.keys[i] >> 16 < h {
                    i += 1;
                }
                b.push(i as u32);
            }
            self.buckets = b.into_boxed_slice();
        }
        self
    }

    fn search(&self, key: u32) -> Option<usize> {
        if self.buckets.is_empty() {
            return self.keys.binary_search(&key).ok();
        }
        let h = (key >> 16) as usize;
        let (lo, hi) = (self.buckets[h] as usize, self.buckets[h + 1] as usize);
        let i = self.keys.get(lo..hi)?.binary_search(&key).ok()?;
        Some(lo + i)
    }
}

impl Level<u128> {
    fn search(&self, key: u128) -> Option<usize> {
        self.keys.binary_search(&key).ok()
    }
}

/// Immutable longest-prefix-match table for IPv4 and IPv6.
#[derive(Debug, Default)]
pub struct LatencyTable {
    clusters: Vec<ClusterId>,
    rtts: Box<[f32]>,
    nested: Box<[u64]>,
    /// Longest first.
    v4: Vec<Level<u32>>,
    /// Longest first.
    v6: Vec<Level<u128>>,
    entries: usize,
}

fn mask4(v: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        v & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(v: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        v & (u128::MAX << (128 - u32::from(len)))
    }
}

fn find<K: Ord + Copy>(
    levels: &[Level<K>],
    max_len: u8,
    key: impl Fn(u8) -> K,
    search: impl Fn(&Level<K>, K) -> Option<usize>,
) -> Option<(u8, u32)> {
    levels
        .iter()
        .filter(|l| l.len <= max_len)
        .find_map(|l| search(l, key(l.len)).map(|i| (l.len, l.start + i as u32)))
}

impl LatencyTable {
    /// Builds a table from (prefix, cluster, RTT ms) triples; later triples for the same
    /// (prefix, cluster) win.
    pub fn build(items: impl IntoIterator<Item = (IpNet, ClusterId, f32)>) -> Self {
        let mut index: HashMap<ClusterId, usize> = HashMap::new();
        let mut clusters = Vec::new();
        let mut rows = Vec::new();
        for (prefix, cluster, rtt) in items {
            let i = *index.entry(cluster).or_insert_with_key(|c| {
                clusters.push(c.clone());
                clusters.len() - 1
            });
            rows.push((prefix, i, rtt));
        }
        let n = clusters.len();
        let mut b = TableBuilder::new(clusters, Duplicates::Merge);
        let mut row = vec![f32::NAN; n];
        for (prefix, i, rtt) in rows.into_iter().take(MAX_ROWS) {
            row.fill(f32::NAN);
            row[i] = rtt;
            let _ = b.push(prefix, &row, 0);
        }
        b.finish().unwrap_or_default()
    }

    /// One table of every prefix of `layers`; for a prefix in several, each cluster's
    /// RTT is the last layer's that has one. A single non-empty layer is returned as it
    /// is, without a copy.
    pub fn merge(layers: &[&std::sync::Arc<LatencyTable>]) -> std::sync::Arc<LatencyTable> {
        let mut non_empty = layers.iter().filter(|l| !l.is_empty());
        match (non_empty.next(), non_empty.next()) {
            (None, _) => return std::sync::Arc::default(),
            (Some(one), None) => return std::sync::Arc::clone(one),
            _ => {}
        }
        let mut clusters: Vec<ClusterId> = Vec::new();
        for l in layers {
            for c in &l.clusters {
                if !clusters.contains(c) {
                    clusters.push(c.clone());
                }
            }
        }
        let n = clusters.len();
        let total: usize = layers.iter().map(|l| l.len()).sum();
        let mut b = TableBuilder::new(clusters.clone(), Duplicates::Merge);
        b.reserve(total);
        let mut row = vec![f32::NAN; n];
        for l in layers {
            let map: Vec<usize> = l
                .clusters
                .iter()
                .map(|c| clusters.iter().position(|x| x == c).unwrap_or(0))
                .collect();
            for (prefix, rtts) in l.rows() {
                row.fill(f32::NAN);
                for (j, r) in rtts.iter().enumerate() {
                    row[map[j]] = *r;
                }
                if b.push(prefix, &row, 0).is_err() {
                    break;
                }
            }
        }
        std::sync::Arc::new(b.finish().unwrap_or_default())
    }

    /// Every entry: (prefix, RTT per cluster, NaN = none), IPv4 then IPv6.
    fn rows(&self) -> impl Iterator<Item = (IpNet, &[f32])> + '_ {
        let n = self.clusters.len();
        let v4 = self.v4.iter().flat_map(move |l| {
            l.keys.iter().enumerate().map(move |(i, k)| {
                let e = l.start as usize + i;
                let p = IpNet::new(IpAddr::V4(Ipv4Addr::from(*k)), l.len).unwrap_or_default();
                (p, &self.rtts[e * n..(e + 1) * n])
            })
        });
        let v6 = self.v6.iter().flat_map(move |l| {
            l.keys.iter().enumerate().map(move |(i, k)| {
                let e = l.start as usize + i;
                let p = IpNet::new(IpAddr::V6(Ipv6Addr::from(*k)), l.len).unwrap_or_default();
                (p, &self.rtts[e * n..(e + 1) * n])
            })
        });
        v4.chain(v6)
    }

    /// The clusters the table has RTTs for.
    pub fn clusters(&self) -> &[ClusterId] {
        &self.clusters
    }

    /// RTT of `cluster` in entry `e`, if measured.
    pub fn rtt(&self, e: &LatencyEntry<'_>, cluster: &ClusterId) -> Option<f32> {
        let idx = self.clusters.iter().position(|c| c == cluster)?;
        e.rtt_at(idx)
    }

    fn entry(&self, e: u32, prefix: IpNet) -> LatencyEntry<'_> {
        let e = e as usize;
        let n = self.clusters.len();
        LatencyEntry {
            prefix,
            has_nested: self
                .nested
                .get(e / 64)
                .is_some_and(|w| w >> (e % 64) & 1 == 1),
            rtts: self.rtts.get(e * n..(e + 1) * n).unwrap_or_default(),
        }
    }

    /// The longest prefix of at most `max_len` bits containing `addr`.
    pub fn lookup(&self, addr: IpAddr, max_len: u8) -> Option<LatencyEntry<'_>> {
        match addr {
            IpAddr::V4(a) => {
                let v = u32::from(a);
                let (len, e) = find(&self.v4, max_len, |len| mask4(v, len), Level::<u32>::search)?;
                let p = IpNet::new(IpAddr::V4(Ipv4Addr::from(mask4(v, len))), len).ok()?;
                Some(self.entry(e, p))
            }
            IpAddr::V6(a) => {
                let v = u128::from(a);
                let (len, e) = find(
                    &self.v6,
                    max_len,
                    |len| mask6(v, len),
                    Level::<u128>::search,
                )?;
                let p = IpNet::new(IpAddr::V6(Ipv6Addr::from(mask6(v, len))), len).ok()?;
                Some(self.entry(e, p))
            }
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Whether any prefix of `addr`'s family is present.
    pub fn has_family(&self, addr: IpAddr) -> bool {
        if addr.is_ipv4() {
            !self.v4.is_empty()
        } else {
            !self.v6.is_empty()
        }
    }

    /// Whether an IPv4 level is bucketed (for tests).
    #[cfg(test)]
    pub(crate) fn v4_bucketed(&self) -> bool {
        self.v4.iter().any(|l| !l.buckets.is_empty())
    }

    /// Heap bytes the table holds (for logs and tests).
    pub fn heap_bytes(&self) -> usize {
        self.rtts.len() * 4
            + self.nested.len() * 8
            + self
                .v4
                .iter()
                .map(|l| l.keys.len() * 4 + l.buckets.len() * 4)
                .sum::<usize>()
            + self.v6.iter().map(|l| l.keys.len() * 16).sum::<usize>()
    }
}

/// What [`TableBuilder::finish`] does with a prefix given more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    /// Refuse it, naming both lines (map files and uploads).
    Refuse,
    /// Merge: per cluster, the last row with an RTT wins.
    Merge,
}

/// A prefix given twice to a [`Duplicates::Refuse`] builder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{prefix} is listed twice (lines {first} and {second})")]
pub struct DuplicatePrefix {
    /// The prefix.
    pub prefix: IpNet,
    /// Line of the first.
    pub first: u32,
    /// Line of the second.
    pub second: u32,
}

/// More rows than [`MAX_ROWS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_ROWS} prefixes")]
pub struct TooManyRows;

/// Collects rows `(prefix, RTT per cluster)` and sorts them into a [`LatencyTable`].
#[derive(Debug)]
pub struct TableBuilder {
    clusters: Vec<ClusterId>,
    dup: Duplicates,
    rtts: Vec<f32>,
    /// `len << 58 | addr << 26 | row`.
    v4: Vec<u64>,
    v6: Vec<(u8, u128, u32)>,
    /// Line of each row (refusing builders only).
    lines: Vec<u32>,
    rows: usize,
}

impl TableBuilder {
    /// A builder for rows of one RTT per cluster of `clusters`.
    pub fn new(clusters: Vec<ClusterId>, dup: Duplicates) -> Self {
        Self {
            clusters,
            dup,
            rtts: Vec::new(),
            v4: Vec::new(),
            v6: Vec::new(),
            lines: Vec::new(),
            rows: 0,
        }
    }

    fn reserve(&mut self, rows: usize) {
        self.rtts.reserve(rows * self.clusters.len());
        self.v4.reserve(rows);
    }

    /// Number of clusters (RTTs per row).
    pub fn width(&self) -> usize {
        self.clusters.len()
    }

    /// Adds a row; `rtts` has one value per cluster (NaN: none), `line` names it in a
    /// duplicate error.
    pub fn push(&mut self, prefix: IpNet, rtts: &[f32], line: u32) -> Result<(), TooManyRows> {
        if self.rows >= MAX_ROWS {
            return Err(TooManyRows);
        }
        let row = self.rows as u32;
        match prefix.trunc() {
            IpNet::V4(p) => self.v4.push(
                u64::from(p.prefix_len()) << 58
                    | u64::from(u32::from(p.network())) << 26
                    | u64::from(row),
            ),
            IpNet::V6(p) => self.v6.push((p.prefix_len(), u128::from(p.network()), row)),
        }
        let n = self.clusters.len();
        self.rtts.extend(
            rtts.iter()
                .copied()
                .chain(std::iter::repeat(f32::NAN))
                .take(n),
        );
        if self.dup == Duplicates::Refuse {
            self.lines.push(line);
        }
        self.rows += 1;
        Ok(())
    }

    /// Sorts the rows into a table.
    pub fn finish(mut self) -> Result<LatencyTable, DuplicatePrefix> {
        let n = self.clusters.len();
        self.v4.sort_unstable();
        self.v6.sort_unstable();
        // Duplicates: refuse, or merge into the group's first row and drop the others.
        let mut dropped: Vec<u32> = Vec::new();
        let same4 = |a: u64, b: u64| a >> 26 == b >> 26;
        let mut i = 0;
        while i < self.v4.len() {
            let mut j = i + 1;
            while j < self.v4.len() && same4(self.v4[i], self.v4[j]) {
                j += 1;
            }
            if j > i + 1 {
                let first = (self.v4[i] & ROW_MASK) as usize;
                let second = (self.v4[i + 1] & ROW_MASK) as usize;
                if self.dup == Duplicates::Refuse {
                    let len = (self.v4[i] >> 58) as u8;
                    let addr = Ipv4Addr::from((self.v4[i] >> 26) as u32);
                    return Err(DuplicatePrefix {
                        prefix: IpNet::new(IpAddr::V4(addr), len).unwrap_or_default(),
                        first: self.lines.get(first).copied().unwrap_or(0),
                        second: self.lines.get(second).copied().unwrap_or(0),
                    });
                }
                for k in i + 1..j {
                    let other = (self.v4[k] & ROW_MASK) as usize;
                    merge_row(&mut self.rtts, n, first, other);
                    dropped.push(other as u32);
                }
            }
            i = j;
        }
        let mut i = 0;
        while i < self.v6.len() {
            let mut j = i + 1;
            while j < self.v6.len() && self.v6[j].0 == self.v6[i].0 && self.v6[j].1 == self.v6[i].1
            {
                j += 1;
            }
            if j > i + 1 {
                let (len, addr, first) = self.v6[i];
                if self.dup == Duplicates::Refuse {
                    return Err(DuplicatePrefix {
                        prefix: IpNet::new(IpAddr::V6(Ipv6Addr::from(addr)), len)
                            .unwrap_or_default(),
                        first: self.lines.get(first as usize).copied().unwrap_or(0),
                        second: self
                            .lines
                            .get(self.v6[i + 1].2 as usize)
                            .copied()
                            .unwrap_or(0),
                    });
                }
                for k in i + 1..j {
                    let other = self.v6[k].2;
                    merge_row(&mut self.rtts, n, first as usize, other as usize);
                    dropped.push(other);
                }
            }
            i = j;
        }
        self.lines = Vec::new();
        self.v4.dedup_by(|b, a| same4(*a, *b));
        self.v6.dedup_by(|b, a| a.0 == b.0 && a.1 == b.1);
        let kept4 = self.v4.len();
        let kept = kept4 + self.v6.len();
        // Entry p takes the RTTs of row src(p); dropped rows fill the places after the
        // kept ones, so that src is a permutation of the rows.
        let v4 = &self.v4;
        let v6 = &self.v6;
        let src = |p: usize| -> usize {
            if p < kept4 {
                (v4[p] & ROW_MASK) as usize
            } else if p < kept {
                v6[p - kept4].2 as usize
            } else {
                dropped[p - kept] as usize
            }
        };
        if n > 0 {
            permute(&mut self.rtts, n, self.rows, src);
        }
        self.rtts.truncate(kept * n);
        let rtts = std::mem::take(&mut self.rtts).into_boxed_slice();
        // Levels, longest first.
        let mut levels4: Vec<Level<u32>> = Vec::new();
        let mut start = 0usize;
        while start < kept4 {
            let len = (v4[start] >> 58) as u8;
            let end = start + v4[start..].partition_point(|k| (k >> 58) as u8 == len);
            let keys: Box<[u32]> = v4[start..end].iter().map(|k| (k >> 26) as u32).collect();
            levels4.push(
                Level {
                    len,
                    start: start as u32,
                    keys,
                    buckets: Box::default(),
                }
                .with_buckets(),
            );
            start = end;
        }
        drop(std::mem::take(&mut self.v4));
        let mut levels6: Vec<Level<u128>> = Vec::new();
        let v6 = std::mem::take(&mut self.v6);
        let mut start = 0usize;
        while start < v6.len() {
            let len = v6[start].0;
            let end = start + v6[start..].partition_point(|k| k.0 == len);
            let keys: Box<[u128]> = v6[start..end].iter().map(|k| k.1).collect();
            levels6.push(Level {
                len,
                start: (kept4 + start) as u32,
                keys,
                buckets: Box::default(),
            });
            start = end;
        }
        drop(v6);
        // Mark every entry with a longer entry inside it.
        let mut nested = vec![0u64; kept.div_ceil(64)].into_boxed_slice();
        let mut mark = |e: u32| nested[e as usize / 64] |= 1 << (e % 64);
        for (i, long) in levels4.iter().enumerate() {
            for short in &levels4[..i] {
                for k in long.keys.iter() {
                    if let Some(x) = short.search(mask4(*k, short.len)) {
                        mark(short.start + x as u32);
                    }
                }
            }
        }
        for (i, long) in levels6.iter().enumerate() {
            for short in &levels6[..i] {
                for k in long.keys.iter() {
                    if let Ok(x) = short.keys.binary_search(&mask6(*k, short.len)) {
                        mark(short.start + x as u32);
                    }
                }
            }
        }
        levels4.reverse();
        levels6.reverse();
        Ok(LatencyTable {
            clusters: self.clusters,
            rtts,
            nested,
            v4: levels4,
            v6: levels6,
            entries: kept,
        })
    }
}

/// Per cluster, `other`'s RTT (when it has one) replaces `first`'s.
fn merge_row(rtts: &mut [f32], n: usize, first: usize, other: usize) {
    for c in 0..n {
        let r = rtts[other * n + c];
        if !r.is_nan() {
            rtts[first * n + c] = r;
        }
    }
}

/// Moves chunk `src(p)` of `n` values to place `p` for every `p < rows`, in place
/// (`src` is a permutation), by following its cycles.
fn permute(rtts: &mut [f32], n: usize, rows: usize, src: impl Fn(usize) -> usize) {
    let mut done = vec![0u64; rows.div_ceil(64)];
    let mut tmp = vec![0f32; n];
    for i in 0..rows {
        if done[i / 64] >> (i % 64) & 1 == 1 {
            continue;
        }
        tmp.copy_from_slice(&rtts[i * n..(i + 1) * n]);
        let mut j = i;
        loop {
            done[j / 64] |= 1 << (j % 64);
            let k = src(j);
            if k == i {
                rtts[j * n..(j + 1) * n].copy_from_slice(&tmp);
                break;
            }
            rtts.copy_within(k * n..(k + 1) * n, j * n);
            j = k;
        }
    }
}
