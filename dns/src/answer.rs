//! Builds a prepared reply for (name, type, client class) from a [`Snapshot`].
//!
//! This is the slow path: it runs on a cache miss and encodes the whole message with
//! hickory-proto once. [`crate::handler`] then patches the ID, flags and the client's
//! spelling of the name into the cached bytes and appends the OPT record per query.
//!
//! What it implements: AA on authoritative data; SOA and NS at the apex; NXDOMAIN vs
//! NODATA with the SOA in the authority section at the RFC 2308 negative TTL; CNAME
//! chains inside the zone (RFC 6604: the rcode is that of the last name); REFUSED
//! outside our zones; minimal ANY (RFC 8482: one RRset); referrals with glue for
//! delegated children; A/AAAA of in-zone MX and SRV targets in the additional section
//! (as Knot, NSD and BIND add them); CHAOS-class identity (`id.server.`,
//! `hostname.bind.`, `version.bind.`, `version.server.`) when configured, else REFUSED.

use std::collections::HashMap;

use hickory_proto::op::{Message, OpCode, Query as HQuery, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use prometheus::IntCounter;

use crate::config::IdentitySpec;
use crate::metrics::{Metrics, qtype_label};
use crate::policy::{self, Client, Family};
use crate::state::Snapshot;
use crate::wire::Rcode;
use crate::zone::{Found, Zone, Zones};

/// Longest CNAME chain followed inside our zones.
const MAX_CHAIN: usize = 8;

/// A reply encoded once, reused for every query with the same key.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Reply bytes without the OPT record; ID, flags and QNAME are patched per query.
    pub bytes: Box<[u8]>,
    /// Where `bytes` may be cut when it does not fit: (length, ARCOUNT) after each
    /// optional additional RRset (MX/SRV target addresses), shortest first. The
    /// longest cut that fits is sent without TC, as Knot does: additional data is
    /// dropped before a reply is truncated (RFC 2181 §9). Names are compressed
    /// against earlier bytes only, so a cut at a record boundary is a whole message.
    pub cuts: Box<[(usize, u16)]>,
    /// Authoritative answer.
    pub aa: bool,
    /// Response code.
    pub rcode: Rcode,
    /// ECS scope prefix length.
    pub scope: u8,
    /// Whether the reply depends on the client network.
    pub per_client: bool,
    /// Extended DNS Error (RFC 8914) info code sent in the OPT, when the query has EDNS:
    /// 20 (Not Authoritative) for a name outside our zones, as Knot sends.
    pub ede: Option<u16>,
    /// Counter of this (zone, qtype, rcode).
    pub query_counter: IntCounter,
    /// Counters of answered (cluster, policy), and fail-open.
    pub answer_counters: Box<[IntCounter]>,
    /// Uses of this reply not yet added to the counters (the worker adds them in
    /// batches, so the hot path touches no shared cache line).
    pub pending: std::cell::Cell<u64>,
    /// For a signed reply: when to prepare it again, so signatures stay fresh.
    pub resign_at: Option<std::time::Instant>,
}

impl Prepared {
    /// Adds the pending uses to the shared counters.
    pub fn flush(&self) {
        let n = self.pending.replace(0);
        if n > 0 {
            self.query_counter.inc_by(n);
            for c in self.answer_counters.iter() {
                c.inc_by(n);
            }
        }
    }
}

/// The counters prepared replies count into, looked up once per worker and snapshot
/// generation rather than once per reply (`with_label_values` hashes every label).
#[derive(Default)]
pub struct CounterCache {
    generation: u64,
    /// (GSLB id, QTYPE) → the NOERROR query counter of the name's zone.
    gslb_queries: HashMap<(usize, u16), IntCounter>,
    /// (GSLB id, target index) → answers of the target's cluster under the name's policy.
    answers: HashMap<(usize, usize), IntCounter>,
}

impl CounterCache {
    /// Forgets the counters when `generation` is not the one they were looked up for
    /// (GSLB ids and target indexes are a snapshot's).
    pub fn reset_for(&mut self, generation: u64) {
        if self.generation != generation {
            self.gslb_queries.clear();
            self.answers.clear();
            self.generation = generation;
        }
    }
}

/// Name from lower-case wire bytes.
fn name_from_wire(w: &[u8]) -> Option<Name> {
    let mut labels = Vec::new();
    let mut pos = 0;
    while let Some(&len) = w.get(pos) {
        if len == 0 {
            break;
        }
        labels.push(w.get(pos + 1..pos + 1 + usize::from(len))?);
        pos += 1 + usize::from(len);
    }
    let mut n = Name::from_labels(labels).ok()?;
    n.set_fqdn(true);
    Some(n)
}

struct Builder<'a> {
    snap: &'a Snapshot,
    /// The zone that answered (for signing).
    zone: Option<&'a Zone>,
    /// Compact denials to add when signing: (owner, types present).
    denials: Vec<(Name, Vec<u16>)>,
    metrics: &'a Metrics,
    client: Client,
    msg: Message,
    scope: u8,
    per_client: bool,
    counters: Vec<IntCounter>,
    ede: Option<u16>,
    /// Sizes of the optional RRsets at the end of the additional section, in order.
    optional: Vec<usize>,
}

/// The cut points of `full` (the encoding of `msg`) after each optional additional
/// RRset but the last; checked against `full` so that only true prefixes are kept.
fn cuts(msg: &Message, optional: &[usize], full: &[u8]) -> Box<[(usize, u16)]> {
    let total: usize = optional.iter().sum();
    let Some(first) = msg.additionals.len().checked_sub(total) else {
        return Box::default();
    };
    let mut out = Vec::new();
    let mut keep = first;
    let mut m = msg.clone();
    for n in std::iter::once(0).chain(optional.iter().copied()) {
        keep += n;
        if keep >= msg.additionals.len() {
            break;
        }
        m.additionals = msg.additionals[..keep].to_vec();
        let (Ok(bytes), Ok(ar)) = (m.to_vec(), u16::try_from(keep)) else {
            continue;
        };
        let same = bytes.len() <= full.len()
            && bytes.len() >= crate::wire::HEADER_LEN
            && bytes[..10] == full[..10]
            && bytes[crate::wire::HEADER_LEN..] == full[crate::wire::HEADER_LEN..bytes.len()];
        if same {
            out.push((bytes.len(), ar));
        }
    }
    out.into_boxed_slice()
}

/// EDE info code 20, Not Authoritative (RFC 8914 §4.21).
const EDE_NOT_AUTHORITATIVE: u16 = 20;

/// Class IN.
const CLASS_IN: u16 = 1;
/// Class CH (CHAOS).
const CLASS_CH: u16 = 3;
/// QCLASS `*` (any class, RFC 1035 §3.2.5): answered from our IN data, as Knot does.
const CLASS_ANY: u16 = 255;

/// Prepares the reply to (`qname` lower-case wire, `qtype`, `qclass`) for `client`;
/// `identity` answers CHAOS-class queries. `sigs` is given when the query has the DO
/// bit: in a signed zone the reply then carries RRSIGs and compact denial (RFC 9824).
///
/// A GSLB name's A or AAAA answer without signatures, the one that depends on the
/// client and so misses the reply cache most, is encoded directly ([`gslb_reply`]);
/// everything else through a hickory-proto `Message`.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    snap: &Snapshot,
    metrics: &Metrics,
    counters: &mut CounterCache,
    identity: &IdentitySpec,
    qname: &[u8],
    qtype: u16,
    qclass: u16,
    client: Client,
    sigs: Option<&mut crate::dnssec::SigCache>,
) -> Prepared {
    counters.reset_for(snap.generation);
    if let Some(p) = gslb_reply(snap, metrics, counters, qname, qtype, qclass, client, &sigs) {
        return p;
    }
    prepare_message(snap, metrics, identity, qname, qtype, qclass, client, sigs)
}

/// [`prepare`] through a hickory-proto `Message`: every kind of reply.
#[allow(clippy::too_many_arguments)]
fn prepare_message(
    snap: &Snapshot,
    metrics: &Metrics,
    identity: &IdentitySpec,
    qname: &[u8],
    qtype: u16,
    qclass: u16,
    client: Client,
    sigs: Option<&mut crate::dnssec::SigCache>,
) -> Prepared {
    let rtype = RecordType::from(qtype);
    let mut b = Builder {
        snap,
        zone: None,
        denials: Vec::new(),
        metrics,
        client,
        msg: Message::response(0, OpCode::Query),
        scope: 0,
        per_client: false,
        ede: None,
        optional: Vec::new(),
        counters: Vec::new(),
    };
    let name = name_from_wire(qname).unwrap_or_else(Name::root);
    let mut question = HQuery::query(name.clone(), rtype);
    // Echo the query's class: a reply whose question differs is dropped by resolvers.
    question.set_query_class(DNSClass::from(qclass));
    b.msg.add_query(question);
    let (zone_label, rcode, aa) = if qclass == CLASS_CH {
        b.chaos(identity, qname, name, rtype)
    } else if qclass != CLASS_IN && qclass != CLASS_ANY {
        ("-".to_string(), Rcode::Refused, false)
    } else if matches!(qtype, 251 | 252) {
        // IXFR/AXFR: no zone transfers.
        ("-".to_string(), Rcode::NotImp, false)
    } else {
        b.resolve(qname, name, rtype)
    };
    let mut rcode = rcode;
    let mut resign_at = None;
    if let (Some(sigs), Some(keys)) = (sigs, b.zone.and_then(|z| z.dnssec.clone()))
        && qclass != CLASS_CH
    {
        if b.sign(&keys, sigs, aa) && rcode == Rcode::NxDomain {
            // RFC 9824 §3.2: compact denial answers NOERROR.
            rcode = Rcode::NoError;
        }
        resign_at = Some(std::time::Instant::now() + crate::dnssec::REFRESH);
    }
    b.msg.metadata.authoritative = aa;
    b.msg.metadata.response_code = ResponseCode::from(0, rcode as u8);
    let bytes = match b.msg.to_vec() {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a reply; answering SERVFAIL");
            let mut m = Message::response(0, OpCode::Query);
            m.add_queries(b.msg.queries.clone());
            m.metadata.response_code = ResponseCode::ServFail;
            m.to_vec().unwrap_or_default()
        }
    };
    let cuts = cuts(&b.msg, &b.optional, &bytes);
    Prepared {
        bytes: bytes.into_boxed_slice(),
        cuts,
        aa,
        rcode,
        scope: b.scope,
        per_client: b.per_client,
        ede: b.ede,
        query_counter: metrics.queries(&zone_label, qtype_label(qtype), rcode.as_str()),
        answer_counters: b.counters.into_boxed_slice(),
        pending: std::cell::Cell::new(0),
        resign_at,
    }
}

/// The policy decision behind a GSLB name's A or AAAA reply that [`encode_gslb`]
/// writes by hand: the reply's bytes and counters depend on the client only through
/// [`Choice::targets`] and [`Choice::fail_open`], so one encoding serves every client
/// network with the same decision ([`Choice::scope`] is patched per query).
pub struct GslbDecision<'a> {
    zone: &'a Zone,
    id: usize,
    family: Family,
    /// The policy's choice (non-empty targets).
    pub choice: policy::Choice,
}

/// The decision for an A or AAAA query (class IN or ANY) for a GSLB name when the
/// policy answers at least one address and no signature is asked for (`signed`: the
/// query has DO and some zone is signed). `None`: not such a query.
pub fn decide_gslb<'a>(
    snap: &'a Snapshot,
    qname: &[u8],
    qtype: u16,
    qclass: u16,
    client: Client,
    signed: bool,
) -> Option<GslbDecision<'a>> {
    let family = match qtype {
        1 => Family::V4,
        28 => Family::V6,
        _ => return None,
    };
    if qclass != CLASS_IN && qclass != CLASS_ANY {
        return None;
    }
    let Found::Node(zone, node) = snap.zones.find(qname, RecordType::from(qtype)) else {
        return None;
    };
    let id = node.gslb?;
    if signed && zone.dnssec.is_some() {
        return None;
    }
    let choice = policy::decide(snap, id, &client, family);
    if choice.targets.is_empty() {
        return None;
    }
    Some(GslbDecision {
        zone,
        id,
        family,
        choice,
    })
}

/// The reply to an A or AAAA query (class IN or ANY) for a GSLB name, when the policy
/// answers at least one address and no signature is asked for, encoded by hand: the
/// bytes hickory-proto writes for the same message (header, the question, then one
/// record per address owned by a pointer to the question name). `None`: not such a
/// query; [`prepare`] builds it the general way.
#[allow(clippy::too_many_arguments)]
fn gslb_reply(
    snap: &Snapshot,
    metrics: &Metrics,
    counters: &mut CounterCache,
    qname: &[u8],
    qtype: u16,
    qclass: u16,
    client: Client,
    sigs: &Option<&mut crate::dnssec::SigCache>,
) -> Option<Prepared> {
    let d = decide_gslb(snap, qname, qtype, qclass, client, sigs.is_some())?;
    encode_gslb(snap, metrics, counters, qname, qtype, qclass, &d)
}

/// Encodes the reply of decision `d` (from [`decide_gslb`] for the same query) by hand.
/// `None` only when the answer has more records than a message can count.
pub fn encode_gslb(
    snap: &Snapshot,
    metrics: &Metrics,
    counters: &mut CounterCache,
    qname: &[u8],
    qtype: u16,
    qclass: u16,
    d: &GslbDecision<'_>,
) -> Option<Prepared> {
    const A: u16 = 1;
    const AAAA: u16 = 28;
    counters.reset_for(snap.generation);
    let (zone, id, family, choice) = (d.zone, d.id, d.family, &d.choice);
    let g = snap.zones.gslb.get(id)?;
    let (rtype, rdlen): (u16, u16) = match family {
        Family::V4 => (A, 4),
        Family::V6 => (AAAA, 16),
    };
    let count: usize = choice
        .targets
        .iter()
        .map(|t| match family {
            Family::V4 => snap.v4(id, *t).len(),
            Family::V6 => snap.v6(id, *t).len(),
        })
        .sum();
    let ancount = u16::try_from(count).ok()?;
    let mut b = Vec::with_capacity(
        crate::wire::HEADER_LEN + qname.len() + 4 + count * (12 + usize::from(rdlen)),
    );
    b.extend_from_slice(&[0, 0, 0x84, 0, 0, 1]);
    b.extend_from_slice(&ancount.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(qname);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&qclass.to_be_bytes());
    let mut record = |rdata: &[u8]| {
        b.extend_from_slice(&[0xc0, crate::wire::HEADER_LEN as u8]);
        b.extend_from_slice(&rtype.to_be_bytes());
        b.extend_from_slice(&CLASS_IN.to_be_bytes());
        b.extend_from_slice(&g.ttl.to_be_bytes());
        b.extend_from_slice(&rdlen.to_be_bytes());
        b.extend_from_slice(rdata);
    };
    for t in &choice.targets {
        match family {
            Family::V4 => snap.v4(id, *t).iter().for_each(|a| record(&a.octets())),
            Family::V6 => snap.v6(id, *t).iter().for_each(|a| record(&a.octets())),
        }
    }
    let policy = g.policy.as_str();
    let mut answer_counters = Vec::with_capacity(choice.targets.len() + 1);
    if choice.fail_open {
        answer_counters.push(metrics.fail_open(policy));
    }
    for t in &choice.targets {
        let c = counters
            .answers
            .entry((id, *t))
            .or_insert_with(|| metrics.answers(g.targets[*t].cluster.as_str(), policy));
        answer_counters.push(c.clone());
    }
    let query_counter = counters
        .gslb_queries
        .entry((id, qtype))
        .or_insert_with(|| {
            metrics.queries(&zone.label, qtype_label(qtype), Rcode::NoError.as_str())
        })
        .clone();
    Some(Prepared {
        bytes: b.into_boxed_slice(),
        cuts: Box::default(),
        aa: true,
        rcode: Rcode::NoError,
        scope: choice.scope,
        per_client: choice.per_client,
        ede: None,
        query_counter,
        answer_counters: answer_counters.into_boxed_slice(),
        pending: std::cell::Cell::new(0),
        resign_at: None,
    })
}

impl Builder<'_> {
    /// A CHAOS-class query: the configured identity or version as TXT (TTL 0, not
    /// authoritative, as Knot answers), anything else REFUSED.
    fn chaos(
        &mut self,
        identity: &IdentitySpec,
        qname: &[u8],
        name: Name,
        rtype: RecordType,
    ) -> (String, Rcode, bool) {
        let text = match qname {
            b"\x02id\x06server\x00" | b"\x08hostname\x04bind\x00" => identity.id.as_deref(),
            b"\x07version\x04bind\x00" | b"\x07version\x06server\x00" => identity.version(),
            _ => None,
        };
        match text {
            Some(t) if rtype == RecordType::TXT => {
                let mut r = Record::from_rdata(name, 0, RData::TXT(TXT::new(vec![t.to_string()])));
                r.dns_class = DNSClass::CH;
                self.msg.answers.push(r);
                ("-".into(), Rcode::NoError, false)
            }
            _ => ("-".into(), Rcode::Refused, false),
        }
    }

    /// Fills the message; returns (zone label, rcode, AA).
    fn resolve(&mut self, qname: &[u8], name: Name, rtype: RecordType) -> (String, Rcode, bool) {
        let snap = self.snap;
        let zones: &Zones = &snap.zones;
        let found = zones.find(qname, rtype);
        self.zone = match &found {
            Found::Refused => None,
            Found::Referral(z, _)
            | Found::Node(z, _)
            | Found::EmptyNonTerminal(z)
            | Found::NxDomain(z) => Some(*z),
        };
        match found {
            Found::Refused => {
                self.ede = Some(EDE_NOT_AUTHORITATIVE);
                ("-".into(), Rcode::Refused, false)
            }
            Found::Referral(zone, node) => {
                let ns = node.rrset(RecordType::NS).unwrap_or_default();
                self.msg.authorities.extend(ns.iter().cloned());
                // No DS here (RFC 4035 §3.1.4): an NSEC at the cut showing NS only.
                self.denials
                    .push((node.name.clone(), vec![u16::from(RecordType::NS)]));
                self.add_glue(zones, zone, ns);
                (zone.label.clone(), Rcode::NoError, false)
            }
            Found::EmptyNonTerminal(zone) => {
                self.msg.authorities.push(zone.negative_soa.clone());
                // An empty non-terminal, or DS at a delegation (the cut shows NS).
                let types = match zones.node(zone, &name) {
                    Some(node) => self.node_types(zone, node, rtype),
                    None => Vec::new(),
                };
                self.denials.push((name, types));
                (zone.label.clone(), Rcode::NoError, true)
            }
            Found::NxDomain(zone) => {
                self.msg.authorities.push(zone.negative_soa.clone());
                self.denials.push((name, vec![crate::dnssec::NXNAME]));
                (zone.label.clone(), Rcode::NxDomain, true)
            }
            Found::Node(zone, _) => {
                let rcode = self.answer_chain(zones, zone, name, rtype);
                (zone.label.clone(), rcode, true)
            }
        }
    }

    /// Answers `name` in `zone`, following CNAMEs inside the zone.
    fn answer_chain(
        &mut self,
        zones: &Zones,
        zone: &Zone,
        mut name: Name,
        rtype: RecordType,
    ) -> Rcode {
        for _ in 0..MAX_CHAIN {
            let Some(node) = zones.node(zone, &name) else {
                // A CNAME target that does not exist (RFC 6604 §2.1: NXDOMAIN).
                self.msg.authorities.push(zone.negative_soa.clone());
                self.denials.push((name, vec![crate::dnssec::NXNAME]));
                return Rcode::NxDomain;
            };
            if let Some(g) = node.gslb {
                let family = match rtype {
                    RecordType::A => Some(Family::V4),
                    RecordType::AAAA => Some(Family::V6),
                    RecordType::ANY => Some(if self.gslb_has_v4(g) {
                        Family::V4
                    } else {
                        Family::V6
                    }),
                    _ => None,
                };
                let added = match family {
                    Some(f) => self.add_gslb(g, f, &name),
                    None => false,
                };
                if !added {
                    self.msg.authorities.push(zone.negative_soa.clone());
                    let types = self.node_types(zone, node, rtype);
                    self.denials.push((name, types));
                }
                return Rcode::NoError;
            }
            if rtype == RecordType::ANY {
                // RFC 8482 §4.1: answer with one RRset rather than all of them.
                if let Some((_, rs)) = node.rrsets.first() {
                    self.msg.answers.extend(rs.iter().cloned());
                }
                return Rcode::NoError;
            }
            if let Some(rs) = node.rrset(rtype) {
                self.msg.answers.extend(rs.iter().cloned());
                if rtype == RecordType::NS && name == zone.origin {
                    self.add_glue(zones, zone, rs);
                }
                if matches!(rtype, RecordType::MX | RecordType::SRV) {
                    self.add_target_addresses(zones, zone, rs);
                }
                return Rcode::NoError;
            }
            if let Some(cname) = node.rrset(RecordType::CNAME) {
                self.msg.answers.extend(cname.iter().cloned());
                let Some(RData::CNAME(target)) = cname.first().map(|r| &r.data) else {
                    return Rcode::NoError;
                };
                if !zone.origin.zone_of(&target.0) {
                    return Rcode::NoError; // the resolver follows it elsewhere
                }
                name = target.0.clone();
                continue;
            }
            self.msg.authorities.push(zone.negative_soa.clone());
            let types = self.node_types(zone, node, rtype);
            self.denials.push((name, types));
            return Rcode::NoError;
        }
        Rcode::NoError
    }

    /// The types an NSEC at `node` shows for a NODATA answer to `rtype` (which is
    /// left out, as are the glue addresses at a delegation).
    fn node_types(&self, zone: &Zone, node: &crate::zone::Node, rtype: RecordType) -> Vec<u16> {
        let cut = node.name != zone.origin && node.rrset(RecordType::NS).is_some();
        let mut types: Vec<u16> = if cut {
            vec![u16::from(RecordType::NS)]
        } else {
            node.rrsets.iter().map(|(t, _)| u16::from(*t)).collect()
        };
        if let Some(g) = node.gslb.and_then(|g| self.snap.zones.gslb.get(g)) {
            if g.targets.iter().any(|t| !t.v4.is_empty()) {
                types.push(u16::from(RecordType::A));
            }
            if g.targets.iter().any(|t| !t.v6.is_empty()) {
                types.push(u16::from(RecordType::AAAA));
            }
        }
        types.retain(|t| *t != u16::from(rtype));
        types
    }

    /// Adds the compact-denial NSECs and an RRSIG after every authoritative RRset in
    /// the answer and authority sections. Returns whether a denial was added.
    fn sign(
        &mut self,
        keys: &crate::dnssec::ZoneKeys,
        sigs: &mut crate::dnssec::SigCache,
        aa: bool,
    ) -> bool {
        let Some(zone) = self.zone else {
            return false;
        };
        let denied = !self.denials.is_empty();
        let ttl = zone.negative_soa.ttl;
        for (owner, types) in self.denials.drain(..) {
            self.msg
                .authorities
                .push(crate::dnssec::nsec_record(&owner, ttl, &types));
        }
        let referral = !aa
            && self
                .msg
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::NS);
        for (section, skip_ns) in [(0, false), (1, referral)] {
            let records = std::mem::take(if section == 0 {
                &mut self.msg.answers
            } else {
                &mut self.msg.authorities
            });
            let mut out = Vec::with_capacity(records.len() * 2);
            let mut i = 0;
            while i < records.len() {
                let (name, rt) = (&records[i].name, records[i].record_type());
                let mut j = i + 1;
                while j < records.len()
                    && records[j].record_type() == rt
                    && &records[j].name == name
                {
                    j += 1;
                }
                let set = &records[i..j];
                out.extend_from_slice(set);
                let ours = zone.origin.zone_of(name) && !(skip_ns && rt == RecordType::NS);
                if ours && let Some(sig) = keys.sign(set, sigs) {
                    out.push(sig);
                }
                i = j;
            }
            if section == 0 {
                self.msg.answers = out;
            } else {
                self.msg.authorities = out;
            }
        }
        denied
    }

    fn gslb_has_v4(&self, g: usize) -> bool {
        self.snap
            .zones
            .gslb
            .get(g)
            .is_some_and(|gs| (0..gs.targets.len()).any(|t| !self.snap.v4(g, t).is_empty()))
    }

    /// Adds the chosen targets' addresses; false when there is none of this family.
    fn add_gslb(&mut self, id: usize, family: Family, owner: &Name) -> bool {
        let Some(g) = self.snap.zones.gslb.get(id) else {
            return false;
        };
        let choice = policy::decide(self.snap, id, &self.client, family);
        self.scope = self.scope.max(choice.scope);
        self.per_client |= choice.per_client;
        let policy = g.policy.as_str();
        if choice.fail_open {
            self.counters.push(self.metrics.fail_open(policy));
        }
        for t in &choice.targets {
            let target = &g.targets[*t];
            self.counters
                .push(self.metrics.answers(target.cluster.as_str(), policy));
            match family {
                Family::V4 => self.msg.answers.extend(
                    self.snap
                        .v4(id, *t)
                        .iter()
                        .map(|a| Record::from_rdata(owner.clone(), g.ttl, RData::A(A(*a)))),
                ),
                Family::V6 => self.msg.answers.extend(
                    self.snap
                        .v6(id, *t)
                        .iter()
                        .map(|a| Record::from_rdata(owner.clone(), g.ttl, RData::AAAA(AAAA(*a)))),
                ),
            }
        }
        !choice.targets.is_empty()
    }

    /// Additional section of an MX or SRV answer: the A/AAAA RRsets of each target
    /// that has static addresses in this zone (RFC 1035 §3.3.9, RFC 2782), once each.
    /// A GSLB target is left out: its addresses depend on the client, and resolvers
    /// ask for them anyway; a target below a delegation is left out too (not ours).
    fn add_target_addresses(&mut self, zones: &Zones, zone: &Zone, rs: &[Record]) {
        let mut seen: Vec<&Name> = Vec::new();
        for r in rs {
            let target = match &r.data {
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            if seen.contains(&target) || !zone.origin.zone_of(target) {
                continue;
            }
            seen.push(target);
            let wire = crate::zone::wire_name(target);
            let Found::Node(z, node) = zones.find(&wire, RecordType::A) else {
                continue;
            };
            if !std::ptr::eq(z, zone) || node.gslb.is_some() {
                continue;
            }
            for t in [RecordType::A, RecordType::AAAA] {
                if let Some(addrs) = node.rrset(t) {
                    self.msg.additionals.extend(addrs.iter().cloned());
                    self.optional.push(addrs.len());
                }
            }
        }
    }

    /// Glue: A/AAAA of in-zone name servers.
    fn add_glue(&mut self, zones: &Zones, zone: &Zone, ns: &[Record]) {
        for r in ns {
            if let RData::NS(n) = &r.data
                && let Some(node) = zones.node(zone, &n.0)
            {
                for t in [RecordType::A, RecordType::AAAA] {
                    if let Some(rs) = node.rrset(t) {
                        self.msg.additionals.extend(rs.iter().cloned());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadedConfig;
    use crate::state::ServerState;

    const CONFIG: &str = "apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {name: z}
spec:
  origin: svc.example.
  soa: {rname: hostmaster.svc.example.}
  nameservers: [{name: ns1, addresses: [127.0.0.53]}]
  gslb:
    - {name: near, policy: latency, ttl: 17, targets: [
        {cluster: a, addresses: [192.0.2.1, 192.0.2.9, 2001:db8::1]},
        {cluster: b, addresses: [192.0.2.2, 2001:db8::2, 2001:db8::3]}]}
    - {name: all, policy: all-healthy, maxAnswers: 2, targets: [
        {cluster: a, addresses: [192.0.2.1]}, {cluster: b, addresses: [192.0.2.2]}]}
    - {name: v4only, policy: failover, targets: [{cluster: a, addresses: [192.0.2.1]}]}
---
apiVersion: causeway.dev/v1alpha1
kind: LatencyMap
metadata: {name: m}
spec:
  entries:
    - {prefix: 198.51.100.0/24, rttMs: {a: 50, b: 5}}
";

    fn wire(name: &str) -> Vec<u8> {
        crate::wire::wire_name(&Name::from_ascii(name).unwrap()).to_vec()
    }

    #[test]
    fn gslb_replies_encoded_by_hand_equal_hickory_s() {
        let loaded = LoadedConfig::parse(std::path::Path::new("t.yaml"), CONFIG).unwrap();
        let shared = ServerState::serving(&loaded);
        let snap = shared.state.load_full();
        let metrics = Metrics::new();
        let identity = IdentitySpec::default();
        let mut counters = CounterCache::default();
        let clients = [
            Client::new("198.51.100.7".parse().unwrap(), 24),
            Client::new("203.0.113.1".parse().unwrap(), 32),
            Client::new("2001:db8:9::".parse().unwrap(), 48),
        ];
        let mut fast = 0;
        for name in [
            "near.svc.example.",
            "all.svc.example.",
            "v4only.svc.example.",
        ] {
            for qtype in [1u16, 28] {
                for qclass in [CLASS_IN, CLASS_ANY] {
                    for client in clients {
                        let q = wire(name);
                        let by_hand = gslb_reply(
                            &snap,
                            &metrics,
                            &mut counters,
                            &q,
                            qtype,
                            qclass,
                            client,
                            &None,
                        );
                        let general = prepare_message(
                            &snap, &metrics, &identity, &q, qtype, qclass, client, None,
                        );
                        let Some(p) = by_hand else {
                            // No IPv6 address: NODATA, left to the general path.
                            assert!(!name.starts_with("near") && qtype == 28, "{name} {qtype}");
                            continue;
                        };
                        fast += 1;
                        assert_eq!(p.bytes, general.bytes, "{name} {qtype} {qclass} {client:?}");
                        assert_eq!(
                            (p.scope, p.per_client, p.aa, p.rcode as u8),
                            (
                                general.scope,
                                general.per_client,
                                general.aa,
                                general.rcode as u8
                            )
                        );
                        assert_eq!(p.answer_counters.len(), general.answer_counters.len());
                    }
                }
            }
        }
        assert_eq!(fast, 24);
        // Neither for other types nor a name without GSLB.
        let q = wire("near.svc.example.");
        assert!(
            gslb_reply(
                &snap,
                &metrics,
                &mut counters,
                &q,
                16,
                CLASS_IN,
                clients[0],
                &None
            )
            .is_none()
        );
        let q = wire("ns1.svc.example.");
        assert!(
            gslb_reply(
                &snap,
                &metrics,
                &mut counters,
                &q,
                1,
                CLASS_IN,
                clients[0],
                &None
            )
            .is_none()
        );
    }
}
