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
    PerClient(PerClient),
}

/// The replies of one key that depend on the client network. A GSLB name's A/AAAA
/// reply depends on the client only through the policy's decision (the targets, in
/// order, and fail-open), so clients with the same decision share one reply: a new
/// client network costs the decision and a map insert, not an encoding. Other
/// per-client replies (signed, through CNAMEs, ANY) get one reply each.
struct PerClient {
    replies: Vec<Prepared>,
    /// (targets, fail open) → index in `replies`, for the shared replies.
    shared: Vec<(Box<[usize]>, bool, u32)>,
    /// Client network → (index in `replies`, ECS scope for this client).
    clients: HashMap<(u128, u8), (u32, u8), Seeded>,
}

impl PerClient {
    fn new(seed: Seeded) -> Self {
        Self {
            replies: Vec::new(),
            shared: Vec::new(),
            clients: HashMap::with_hasher(seed),
        }
    }

    /// The shared reply of decision (`targets`, `fail_open`), if there is one.
    fn find_shared(&self, targets: &[usize], fail_open: bool) -> Option<u32> {
        self.shared
            .iter()
            .find(|s| *s.0 == *targets && s.1 == fail_open)
            .map(|s| s.2)
    }

    fn get(&self, client: &(u128, u8)) -> Option<(&Prepared, u8)> {
        let &(i, scope) = self.clients.get(client)?;
        Some((self.replies.get(i as usize)?, scope))
    }

    /// Stores `p` as `client`'s own reply, replacing the one it had unless shared.
    fn insert_own(&mut self, client: (u128, u8), p: Prepared) {
        let scope = p.scope;
        if let Some(&(i, _)) = self.clients.get(&client)
            && !self.shared.iter().any(|s| s.2 == i)
            && let Some(old) = self.replies.get_mut(i as usize)
        {
            // A signed reply prepared again: count the old one's uses.
            old.flush();
            *old = p;
            self.clients.insert(client, (i, scope));
            return;
        }
        let Ok(i) = u32::try_from(self.replies.len()) else {
            return;
        };
        self.replies.push(p);
        self.clients.insert(client, (i, scope));
    }
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
                Slot::PerClient(m) => m.replies.iter().for_each(Prepared::flush),
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

    /// The per-client slot of the current key, made (or made from a static one, whose
    /// uses are counted first) when there is none.
    fn per_client_slot(&mut self) -> Option<&mut PerClient> {
        let seed = self.seed;
        if !self.cache.contains_key(self.key.as_slice()) {
            // The key is copied only for a new slot, not on every miss.
            self.cache
                .insert(self.key.clone(), Slot::PerClient(PerClient::new(seed)));
        }
        let slot = self.cache.get_mut(self.key.as_slice())?;
        if let Slot::Static(old) = slot {
            old.flush();
            *slot = Slot::PerClient(PerClient::new(seed));
        }
        match slot {
            Slot::PerClient(m) => Some(m),
            Slot::Static(_) => None,
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

        let fresh = |p: &Prepared| p.resign_at.is_none_or(|t| std::time::Instant::now() < t);
        let hit = match self.cache.get(self.key.as_slice()) {
            Some(Slot::Static(p)) => fresh(p),
            Some(Slot::PerClient(m)) => m.get(&client_key).is_some_and(|(p, _)| fresh(p)),
            None => false,
        };
        if !hit {
            self.entries += 1;
            let decided =
                answer::decide_gslb(&snap, &self.lower, q.qtype, q.qclass, client, dnssec_ok)
                    .filter(|d| d.choice.per_client);
            let mut done = false;
            if let Some(d) = decided {
                let (targets, fail_open, scope) =
                    (&d.choice.targets, d.choice.fail_open, d.choice.scope);
                if let Some(m) = self.per_client_slot()
                    && let Some(i) = m.find_shared(targets, fail_open)
                {
                    m.clients.insert(client_key, (i, scope));
                    done = true;
                } else if let Some(p) = answer::encode_gslb(
                    &snap,
                    &self.shared.metrics,
                    &mut self.labels,
                    &self.lower,
                    q.qtype,
                    q.qclass,
                    &d,
                ) && let Some(m) = self.per_client_slot()
                    && let Ok(i) = u32::try_from(m.replies.len())
                {
                    m.replies.push(p);
                    m.shared
                        .push((targets.clone().into_boxed_slice(), fail_open, i));
                    m.clients.insert(client_key, (i, scope));
                    done = true;
                }
            }
            if !done {
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
                if p.per_client {
                    if let Some(m) = self.per_client_slot() {
                        m.insert_own(client_key, p);
                    }
                } else {
                    match self.cache.insert(self.key.clone(), Slot::Static(p)) {
                        Some(Slot::Static(old)) => old.flush(),
                        Some(Slot::PerClient(m)) => m.replies.iter().for_each(Prepared::flush),
                        None => {}
                    }
                }
            }
        }
        let (prepared, scope): (&Prepared, u8) = match self.cache.get(self.key.as_slice()) {
            Some(Slot::Static(p)) => (p, p.scope),
            Some(Slot::PerClient(m)) => match m.get(&client_key) {
                Some(found) => found,
                None => return false,
            },
            None => return false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadedConfig;
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
    use hickory_proto::rr::{Name, RData, RecordType};

    const CONFIG: &str = "apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {name: z}
spec:
  origin: svc.example.
  soa: {rname: hostmaster.svc.example.}
  nameservers: [{name: ns1, addresses: [127.0.0.53]}]
  gslb:
    - {name: near, policy: latency, ttl: 17, targets: [
        {cluster: a, addresses: [192.0.2.1, 192.0.2.9]},
        {cluster: b, addresses: [192.0.2.2]}]}
---
apiVersion: causeway.dev/v1alpha1
kind: LatencyMap
metadata: {name: m}
spec:
  entries:
    - {prefix: 10.0.0.0/8, rttMs: {a: 5, b: 50}}
    - {prefix: 10.1.0.0/16, rttMs: {a: 50, b: 5}}
    - {prefix: 192.0.2.0/24, rttMs: {a: 5, b: 50}}
";

    fn query(id: u16, addr: &str, len: u8) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = id;
        m.add_query(Query::query(
            Name::from_ascii("near.svc.example.").unwrap(),
            RecordType::A,
        ));
        let mut e = Edns::new();
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            addr.parse().unwrap(),
            len,
            0,
        )));
        m.edns = Some(e);
        m.to_vec().unwrap()
    }

    /// Client networks with the same decision share one reply, each with its own
    /// ECS scope (RFC 7871): the cached replies equal fresh ones, and say what the
    /// latency map says.
    #[test]
    fn shared_replies_keep_each_clients_scope() {
        let loaded = LoadedConfig::parse(std::path::Path::new("t.yaml"), CONFIG).unwrap();
        let shared = Arc::new(ServerState::serving(&loaded));
        let mut warm = Handler::new(shared.clone());
        let cases: [(&str, u8, &[&str], u8); 7] = [
            ("10.2.3.0", 24, &["192.0.2.1", "192.0.2.9"], 24),
            ("10.5.0.0", 16, &["192.0.2.1", "192.0.2.9"], 16),
            ("10.1.7.0", 24, &["192.0.2.2"], 16),
            ("192.0.2.0", 24, &["192.0.2.1", "192.0.2.9"], 24),
            ("192.0.2.128", 25, &["192.0.2.1", "192.0.2.9"], 24),
            ("10.1.0.0", 16, &["192.0.2.2"], 16),
            ("198.51.100.0", 24, &["192.0.2.1", "192.0.2.9"], 24),
        ];
        let src: IpAddr = "127.0.0.1".parse().unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..2u16 {
            for (i, (addr, len, want, scope)) in cases.iter().enumerate() {
                let q = query(round * 100 + i as u16, addr, *len);
                assert!(warm.handle(&q, src, Transport::Udp, &mut a));
                let mut cold = Handler::new(shared.clone());
                assert!(cold.handle(&q, src, Transport::Udp, &mut b));
                assert_eq!(a, b, "{addr}/{len} round {round}");
                let m = Message::from_vec(&a).unwrap();
                let got: Vec<String> = m
                    .answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(x) => Some(x.0.to_string()),
                        _ => None,
                    })
                    .collect();
                assert_eq!(got, *want, "{addr}/{len}");
                let Some(EdnsOption::Subnet(ecs)) =
                    m.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet))
                else {
                    panic!("no ECS in the reply to {addr}/{len}");
                };
                assert_eq!(ecs.scope_prefix(), *scope, "{addr}/{len}");
            }
        }
        // Two decisions, two encodings, seven client networks.
        let Some(Slot::PerClient(m)) = warm.cache.values().next() else {
            panic!("no per-client slot");
        };
        assert_eq!((m.replies.len(), m.clients.len()), (2, 7));
    }
}
