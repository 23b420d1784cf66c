//! The query path: bytes in, bytes out. One [`Handler`] per socket worker.
//!
//! 1. [`wire::parse`] the query (no allocation; malformed → FORMERR or drop).
//! 2. Work out the client network: the ECS source prefix, else the sender's address.
//! 3. Rate-limit UDP replies per client prefix ([`crate::ratelimit`]).
//! 4. Look the reply up in this worker's cache of [`Prepared`] replies, keyed by
//!    (QTYPE, QCLASS, client class, lower-case QNAME) and, for replies that depend on
//!    the client, by client network too. The cache is dropped when the snapshot's
//!    generation changes, so it never serves stale health or latency.
//! 5. On a miss, [`answer::prepare`] builds and encodes the reply once.
//! 6. Copy the prepared bytes, patch ID, flags and the client's spelling of QNAME,
//!    append OPT (the query's DO bit, the ECS scope, NSID when asked and configured)
//!    when the query had EDNS, truncate if too big.
//!
//! No lock and no IO on this path: the snapshot is one `ArcSwap::load`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use prometheus::IntCounter;

use crate::answer::{self, Prepared};
use crate::policy::Client;
use crate::ratelimit::Verdict;
use crate::state::ServerState;
use crate::wire::{self, Reject};

/// How often a worker adds its query counts to the shared metrics.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Most prepared replies one worker keeps before starting over.
const CACHE_LIMIT: usize = 50_000;

/// The transport a query came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: size limits and rate limiting apply.
    Udp,
    /// TCP.
    Tcp,
}

enum Slot {
    Static(Prepared),
    PerClient(HashMap<(u128, u8), Prepared, Seeded>),
}

/// The hasher of the worker's caches: a multiply-xorshift over the key's words with a
/// per-worker random seed. SipHash (std's default) was a tenth of the miss path's own
/// time; the keys (names, client networks) come from queries, hence the secret seed.
#[derive(Clone, Copy)]
struct Seeded(u64);

impl Seeded {
    fn new() -> Self {
        use std::hash::BuildHasher;
        Self(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1)
    }
}

impl std::hash::BuildHasher for Seeded {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

/// [`Seeded`]'s hasher.
struct SeededHasher(u64);

impl SeededHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

impl std::hash::Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(w) ^ (bytes.len() as u64) << 56);
    }
    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn write_u128(&mut self, v: u128) {
        self.add(v as u64);
        self.add((v >> 64) as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Counters resolved once per worker.
struct Counters {
    formerr: IntCounter,
    dropped: IntCounter,
    rate_dropped: IntCounter,
    truncated_size: IntCounter,
    truncated_rate: IntCounter,
}

/// One worker's query handler with its private cache.
pub struct Handler {
    shared: Arc<ServerState>,
    generation: u64,
    cache: HashMap<Vec<u8>, Slot, Seeded>,
    seed: Seeded,
    entries: usize,
    lower: Vec<u8>,
    key: Vec<u8>,
    limited: u32,
    counters: Counters,
    sigs: crate::dnssec::SigCache,
    labels: answer::CounterCache,
    last_flush: std::time::Instant,
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.flush_metrics();
    }
}

impl Handler {
    /// A handler with an empty cache.
    pub fn new(shared: Arc<ServerState>) -> Self {
        let m = &shared.metrics;
        let counters = Counters {
            formerr: m.dropped("formerr"),
            dropped: m.dropped("malformed"),
            rate_dropped: m.dropped("rate_limit"),
            truncated_size: m.truncated("size"),
            truncated_rate: m.truncated("rate_limit"),
        };
        let seed = Seeded::new();
        Self {
            shared,
            generation: 0,
            cache: HashMap::with_hasher(seed),
            seed,
            entries: 0,
            lower: Vec::with_capacity(256),
            key: Vec::with_capacity(264),
            limited: 0,
            counters,
            sigs: crate::dnssec::SigCache::default(),
            labels: answer::CounterCache::default(),
            last_flush: std::time::Instant::now(),
        }
    }

    /// Adds the per-reply use counts of this worker to the shared metrics.
    pub fn flush_metrics(&mut self) {
        for slot in self.cache.values() {
            match slot {
                Slot::Static(p) => p.flush(),
                Slot::PerClient(m) => m.values().for_each(Prepared::flush),
            }
        }
        self.last_flush = std::time::Instant::now();
    }

    /// [`Self::flush_metrics`] if the last flush is older than [`FLUSH_EVERY`].
    pub fn maybe_flush_metrics(&mut self) {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush_metrics();
        }
    }

    /// Answers `packet` from `src` into `out`. Returns false when nothing is to be sent.
    pub fn handle(
        &mut self,
        packet: &[u8],
        src: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> bool {
        let q = match wire::parse(packet, &mut self.lower) {
            Ok(q) => q,
            Err(reject) => {
                match reject {
                    Reject::Drop => self.counters.dropped.inc(),
                    _ => self.counters.formerr.inc(),
                }
                let identity = self.shared.identity.load();
                return wire::write_reject(packet, reject, identity.nsid(), out);
            }
        };
        let src = src.to_canonical();
        let client = match q.edns.and_then(|e| e.ecs) {
            Some(ecs) => Client::new(ecs.addr, ecs.source_len),
            None => Client::new(src, if src.is_ipv4() { 32 } else { 128 }),
        };

        let mut slip = false;
        if transport == Transport::Udp
            && let Some(limiter) = &*self.shared.limiter.load()
        {
            match limiter.check(src, &mut self.limited) {
                Verdict::Allow => {}
                Verdict::Slip => slip = true,
                Verdict::Drop => {
                    self.counters.rate_dropped.inc();
                    return false;
                }
            }
        }

        let snap = self.shared.state.load();
        if snap.generation != self.generation || self.entries >= CACHE_LIMIT {
            self.flush_metrics();
            self.cache.clear();
            self.entries = 0;
            self.generation = snap.generation;
        }

        // Static key: qtype, qclass, client class (family, ECS /0, and DO when a zone
        // is signed), lower-case name.
        let dnssec_ok = snap.zones.any_signed && q.edns.is_some_and(|e| e.dnssec_ok);
        self.key.clear();
        self.key.extend_from_slice(&q.qtype.to_be_bytes());
        self.key.extend_from_slice(&q.qclass.to_be_bytes());
        self.key.push(
            u8::from(dnssec_ok) << 2
                | u8::from(client.addr.is_ipv6()) << 1
                | u8::from(client.source_len == 0),
        );
        self.key.extend_from_slice(&self.lower);
        let client_key = (
            match client.addr {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            },
            client.source_len,
        );

        let prepared: &Prepared = {
            // Two lookups keep the borrow checker happy without cloning on a hit.
            let fresh = |p: &Prepared| p.resign_at.is_none_or(|t| std::time::Instant::now() < t);
            let hit = match self.cache.get(self.key.as_slice()) {
                Some(Slot::Static(p)) => fresh(p),
                Some(Slot::PerClient(m)) => m.get(&client_key).is_some_and(fresh),
                None => false,
            };
            if !hit {
                let p = answer::prepare(
                    &snap,
                    &self.shared.metrics,
                    &mut self.labels,
                    &self.shared.identity.load(),
                    &self.lower,
                    q.qtype,
                    q.qclass,
                    client,
                    dnssec_ok.then_some(&mut self.sigs),
                );
                self.entries += 1;
                if p.per_client {
                    // The key is copied only for a new slot, not on every miss.
                    if !self.cache.contains_key(self.key.as_slice()) {
                        self.cache.insert(
                            self.key.clone(),
                            Slot::PerClient(HashMap::with_hasher(self.seed)),
                        );
                    }
                    let Some(slot) = self.cache.get_mut(self.key.as_slice()) else {
                        return false;
                    };
                    match slot {
                        Slot::PerClient(m) => {
                            // A signed reply prepared again: count the old one's uses.
                            if let Some(old) = m.insert(client_key, p) {
                                old.flush();
                            }
                        }
                        slot @ Slot::Static(_) => {
                            let mut m = HashMap::with_hasher(self.seed);
                            m.insert(client_key, p);
                            *slot = Slot::PerClient(m);
                        }
                    }
                } else {
                    match self.cache.insert(self.key.clone(), Slot::Static(p)) {
                        Some(Slot::Static(old)) => old.flush(),
                        Some(Slot::PerClient(m)) => m.values().for_each(Prepared::flush),
                        None => {}
                    }
                }
            }
            match self.cache.get(self.key.as_slice()) {
                Some(Slot::Static(p)) => p,
                Some(Slot::PerClient(m)) => match m.get(&client_key) {
                    Some(p) => p,
                    None => return false,
                },
                None => return false,
            }
        };

        prepared.pending.set(prepared.pending.get() + 1);

        // Assemble: prepared bytes + per-query patches + OPT.
        let ecs = q.edns.and_then(|e| e.ecs);
        let identity = q
            .edns
            .is_some_and(|e| e.nsid)
            .then(|| self.shared.identity.load_full());
        let nsid = identity.as_deref().and_then(|i| i.nsid());
        let opt_len = match (&q.edns, &ecs) {
            (None, _) => 0,
            (Some(_), None) => 11,
            (Some(_), Some(e)) => 11 + 8 + usize::from(e.source_len.div_ceil(8)),
        } + nsid.map_or(0, |n| 4 + n.len())
            + prepared.ede.map_or(0, |_| 6);
        let limit = match transport {
            Transport::Udp => q.udp_limit(),
            Transport::Tcp => usize::from(u16::MAX),
        };
        let qend = q.question_end();
        out.clear();
        // Too big: drop optional additional RRsets from the end, then truncate.
        let mut bytes: &[u8] = &prepared.bytes;
        let mut arcount = None;
        if bytes.len() + opt_len > limit
            && let Some(&(len, ar)) = prepared
                .cuts
                .iter()
                .rev()
                .find(|(len, _)| len + opt_len <= limit)
        {
            bytes = &prepared.bytes[..len];
            arcount = Some(ar);
        }
        let truncate = slip || bytes.len() + opt_len > limit;
        if truncate {
            let Some(head) = prepared.bytes.get(..qend) else {
                return false;
            };
            out.extend_from_slice(head);
            wire::set_counts(out, 1, 0, 0, 0);
            if slip {
                self.counters.truncated_rate.inc();
            } else {
                self.counters.truncated_size.inc();
            }
        } else {
            out.extend_from_slice(bytes);
            if let Some(ar) = arcount {
                out[10..12].copy_from_slice(&ar.to_be_bytes());
            }
        }
        if out.len() < qend {
            return false;
        }
        out[0..2].copy_from_slice(&q.id.to_be_bytes());
        let flags = wire::reply_flags(q.flags, prepared.aa, truncate, prepared.rcode as u8);
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        out[wire::HEADER_LEN..wire::HEADER_LEN + q.qname.len()].copy_from_slice(q.qname);
        if let Some(edns) = q.edns {
            let scope = prepared.scope;
            wire::write_opt(
                out,
                wire::OptReply {
                    ext_rcode: 0,
                    dnssec_ok: edns.dnssec_ok,
                    ecs: ecs.as_ref().map(|e| (e, scope)),
                    nsid,
                    ede: prepared.ede,
                },
            );
            let ar = u16::from_be_bytes([out[10], out[11]]).saturating_add(1);
            out[10..12].copy_from_slice(&ar.to_be_bytes());
        }
        true
    }
}
