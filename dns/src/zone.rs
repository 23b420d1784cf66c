//! Compiled zones: static RRsets and GSLB names by lower-case wire name, and lookup.
//!
//! [`Zones::compile`] turns validated [`ZoneConfig`]s into hash maps keyed by the
//! lower-case wire form of each owner name, so the query path looks names up with the
//! bytes it already has. [`Zones::find`] walks a name's suffixes to the zone, a
//! delegation, a node, an empty non-terminal or nothing (NXDOMAIN).
//!
//! Compiling checks what only the whole zone shows (names inside the zone, record
//! data, CNAME and delegation rules, clashes); [`crate::config`] has checked every
//! value on its own. A [`CompileError`] names the zone and the field, so the loader
//! can point at the line.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use causeway_model::ClusterId;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, NULL, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::config::{
    GslbSpec, HealthCheckSpec, PolicyKind, ProbeProtocol, StaticType, TargetSpec, ZoneConfig,
};

pub use crate::wire::{WireName, wire_name};

/// Every zone, plus every GSLB name (indexed by [`GslbId`]).
#[derive(Debug, Default)]
pub struct Zones {
    /// The zones.
    pub zones: Vec<Zone>,
    by_origin: HashMap<WireName, usize>,
    /// GSLB names of all zones.
    pub gslb: Vec<Gslb>,
    by_fqdn: HashMap<String, usize>,
    /// Whether any zone is signed (then the DO bit is part of the reply cache key).
    pub any_signed: bool,
}

/// Index into [`Zones::gslb`].
pub type GslbId = usize;

/// One authoritative zone.
#[derive(Debug)]
pub struct Zone {
    /// Apex, lower-case.
    pub origin: Name,
    /// Apex as text, for metric labels and logs.
    pub label: String,
    /// The SOA record (TTL already the RFC 2308 negative TTL when used in authority).
    pub soa: Record,
    /// The SOA record as placed in negative answers (TTL = min(SOA TTL, MINIMUM)).
    pub negative_soa: Record,
    /// Apex NS records.
    pub apex_ns: Vec<Record>,
    /// Signing keys, when the zone is signed (`spec.dnssec`).
    pub dnssec: Option<std::sync::Arc<crate::dnssec::ZoneKeys>>,
    nodes: HashMap<WireName, Node>,
    ents: HashSet<WireName>,
    delegations: HashSet<WireName>,
}

/// Data at one owner name.
#[derive(Debug, Default)]
pub struct Node {
    /// Owner name.
    pub name: Name,
    /// Static RRsets, in config order.
    pub rrsets: Vec<(RecordType, Vec<Record>)>,
    /// A GSLB name here.
    pub gslb: Option<GslbId>,
}

impl Node {
    /// The RRset of `rtype`, if any.
    pub fn rrset(&self, rtype: RecordType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(t, _)| *t == rtype)
            .map(|(_, r)| r.as_slice())
    }
}

/// A GSLB name.
#[derive(Debug)]
pub struct Gslb {
    /// Owner name, lower-case.
    pub name: Name,
    /// Owner name as text (`app.svc.example.`).
    pub fqdn: String,
    /// Zone index.
    pub zone: usize,
    /// Answer TTL.
    pub ttl: u32,
    /// Policy.
    pub policy: PolicyKind,
    /// `all-healthy` limit.
    pub max_answers: usize,
    /// Answer every target when none is healthy (else answer none).
    pub fail_open: bool,
    /// `latency` order without data, as target indexes.
    pub default_order: Vec<usize>,
    /// Targets.
    pub targets: Vec<Target>,
}

/// One cluster behind a GSLB name.
#[derive(Debug)]
pub struct Target {
    /// The cluster.
    pub cluster: ClusterId,
    /// IPv4 addresses.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub v6: Vec<Ipv6Addr>,
    /// Weight.
    pub weight: u32,
    /// Tier.
    pub tier: u32,
    /// Active check.
    pub check: Option<Check>,
}

/// An active health check, compiled: where to connect, what to ask, how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// TCP connect, HTTP or HTTPS.
    pub protocol: CheckProtocol,
    /// Where to connect (`address`, else the target's first address with `port`).
    pub addr: SocketAddr,
    /// HTTP path.
    pub path: String,
    /// HTTP Host header and TLS server name (`host`, else the address).
    pub host: String,
    /// Expected HTTP status.
    pub expect_status: u16,
    /// Time between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
}

/// How a [`Check`] talks to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckProtocol {
    /// A TCP connect.
    Tcp,
    /// `GET path` over HTTP/1.1.
    Http,
    /// The same over TLS, trusting these certificates.
    Https(Trust),
}

/// Which server certificates an `https` check accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Those signed by the system's CA bundle (`caFile` not given).
    SystemRoots,
    /// Those signed by a CA in this PEM file (`caFile`).
    CaFile(PathBuf),
    /// Any certificate (`insecureSkipVerify`, testing only).
    AnyCertificate,
}

/// Where a name falls.
#[derive(Debug)]
pub enum Found<'a> {
    /// Not in any zone: REFUSED.
    Refused,
    /// At or below a delegation: referral to the child's name servers.
    Referral(&'a Zone, &'a Node),
    /// The name has data.
    Node(&'a Zone, &'a Node),
    /// The name exists only as an ancestor of other names: NODATA.
    EmptyNonTerminal(&'a Zone),
    /// No such name: NXDOMAIN.
    NxDomain(&'a Zone),
}

impl Zones {
    /// Compiles validated zones.
    pub fn compile(configs: &[ZoneConfig]) -> Result<Self, CompileError> {
        let mut zones = Self::default();
        for (i, z) in configs.iter().enumerate() {
            let zone = compile_zone(z, i, &mut zones.gslb).map_err(|e| CompileError {
                zone: i,
                field: e.field,
                reason: e.reason,
            })?;
            zones.by_origin.insert(wire_name(&zone.origin), i);
            zones.any_signed |= zone.dnssec.is_some();
            zones.zones.push(zone);
        }
        zones.by_fqdn = zones
            .gslb
            .iter()
            .enumerate()
            .map(|(i, g)| (g.fqdn.clone(), i))
            .collect();
        Ok(zones)
    }

    /// The GSLB name `fqdn` (lower-case, trailing dot), if any.
    pub fn gslb_by_name(&self, fqdn: &str) -> Option<GslbId> {
        self.by_fqdn.get(fqdn).copied()
    }

    /// Looks up a lower-case wire name.
    pub fn find(&self, qname: &[u8], qtype: RecordType) -> Found<'_> {
        // Offsets of each suffix of qname, longest first.
        let mut offsets = [0usize; 128];
        let mut n = 0;
        let mut pos = 0;
        while pos < qname.len() && n < offsets.len() {
            offsets[n] = pos;
            n += 1;
            let len = qname[pos] as usize;
            if len == 0 {
                break;
            }
            pos += len + 1;
        }
        // The longest suffix that is a zone origin.
        let Some((zi, zone_idx)) =
            (0..n).find_map(|i| self.by_origin.get(&qname[offsets[i]..]).map(|z| (i, *z)))
        else {
            return Found::Refused;
        };
        let zone = &self.zones[zone_idx];
        // The highest delegation point strictly below the apex.
        for i in (0..zi).rev() {
            let suffix = &qname[offsets[i]..];
            if zone.delegations.contains(suffix)
                && let Some(node) = zone.nodes.get(suffix)
            {
                // The parent side answers DS at the cut itself (we hold none: NODATA).
                if i == 0 && qtype == RecordType::DS {
                    return Found::EmptyNonTerminal(zone);
                }
                return Found::Referral(zone, node);
            }
        }
        match zone.nodes.get(qname) {
            Some(node) => Found::Node(zone, node),
            None if zone.ents.contains(qname) => Found::EmptyNonTerminal(zone),
            None => Found::NxDomain(zone),
        }
    }

    /// The node at `name` inside `zone` (for CNAME chains and glue).
    pub fn node<'a>(&self, zone: &'a Zone, name: &Name) -> Option<&'a Node> {
        zone.nodes.get(&wire_name(name))
    }

    /// Number of names in all zones (static and GSLB).
    pub fn name_count(&self) -> usize {
        self.zones.iter().map(|z| z.nodes.len()).sum()
    }
}

/// Why a zone does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CompileError {
    /// Index of the zone in [`crate::config::Config::zones`].
    pub zone: usize,
    /// Path of the field from the root of the zone's document (`spec.records[2].data[0]`).
    pub field: String,
    /// Why.
    pub reason: String,
}

/// A [`CompileError`] before the zone's index is known.
struct FieldError {
    field: String,
    reason: String,
}

fn field_error(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

fn abs_name(origin: &Name, s: &str) -> Result<Name, String> {
    let s = s.trim();
    if s == "@" {
        return Ok(origin.clone());
    }
    if s.is_empty() {
        return Err("empty name".into());
    }
    let name = if s.ends_with('.') {
        Name::from_ascii(s)
    } else {
        Name::from_ascii(s).and_then(|n| n.append_domain(origin))
    };
    name.map(|n| n.to_lowercase())
        .map_err(|e| format!("{s:?} is not a valid name: {e}"))
}

/// Where an owner name is first written in a zone's spec, for errors found later.
#[derive(Debug, Clone, Copy)]
enum Source {
    Nameserver(usize),
    Record(usize),
    Gslb(usize),
}

impl Source {
    fn field(self) -> String {
        match self {
            Self::Nameserver(i) => format!("spec.nameservers[{i}].name"),
            Self::Record(i) => format!("spec.records[{i}].name"),
            Self::Gslb(i) => format!("spec.gslb[{i}].name"),
        }
    }
}

/// Nodes by owner name, remembering where each name is first written.
#[derive(Default)]
struct Nodes {
    nodes: HashMap<WireName, Node>,
    written: HashMap<WireName, Source>,
}

impl Nodes {
    fn at(&mut self, name: &Name, source: Source) -> &mut Node {
        let key = wire_name(name);
        self.written.entry(key.clone()).or_insert(source);
        self.nodes.entry(key).or_insert_with(|| Node {
            name: name.clone(),
            ..Node::default()
        })
    }

    /// The field that first wrote `name`.
    fn field_of(&self, name: &Name) -> String {
        self.written
            .get(&wire_name(name))
            .map_or_else(|| "spec.records".into(), |s| s.field())
    }
}

fn record_type(t: StaticType) -> RecordType {
    match t {
        StaticType::A => RecordType::A,
        StaticType::AAAA => RecordType::AAAA,
        StaticType::CNAME => RecordType::CNAME,
        StaticType::TXT => RecordType::TXT,
        StaticType::MX => RecordType::MX,
        StaticType::SRV => RecordType::SRV,
        StaticType::CAA => RecordType::CAA,
        StaticType::NS => RecordType::NS,
    }
}

/// SOA timer seconds as the wire wants them (`config` keeps them at most `i32::MAX`).
fn soa_seconds(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn compile_zone(
    z: &ZoneConfig,
    zone_idx: usize,
    gslb_out: &mut Vec<Gslb>,
) -> Result<Zone, FieldError> {
    let spec = &z.spec;
    let origin = z.origin.clone();
    let mut nodes = Nodes::default();
    let in_zone = |n: &Name| origin.zone_of(n);

    // Apex NS and glue.
    let mut apex_ns = Vec::new();
    let mut glue: Vec<(Name, IpAddr, usize, usize)> = Vec::new();
    for (i, ns) in spec.nameservers.iter().enumerate() {
        let field = format!("spec.nameservers[{i}]");
        let name =
            abs_name(&origin, &ns.name).map_err(|r| field_error(format!("{field}.name"), r))?;
        if in_zone(&name) {
            if ns.addresses.is_empty() {
                return Err(field_error(
                    format!("{field}.addresses"),
                    format!("{name} is inside the zone, so it needs glue addresses"),
                ));
            }
            glue.extend(
                ns.addresses
                    .iter()
                    .enumerate()
                    .map(|(j, a)| (name.clone(), *a, i, j)),
            );
        }
        apex_ns.push(Record::from_rdata(
            origin.clone(),
            spec.ttl,
            RData::NS(NS(name)),
        ));
    }
    let soa_spec = &spec.soa;
    let mname = match &soa_spec.mname {
        Some(m) => abs_name(&origin, m).map_err(|r| field_error("spec.soa.mname", r))?,
        None => match apex_ns.first().map(|r| &r.data) {
            Some(RData::NS(NS(n))) => n.clone(),
            _ => origin.clone(),
        },
    };
    let rname = abs_name(&origin, &soa_spec.rname).map_err(|r| field_error("spec.soa.rname", r))?;
    let soa_ttl = soa_spec.ttl.unwrap_or(spec.ttl);
    let soa_rdata = SOA::new(
        mname,
        rname,
        soa_spec.serial,
        soa_seconds(soa_spec.refresh),
        soa_seconds(soa_spec.retry),
        soa_seconds(soa_spec.expire),
        soa_spec.minimum,
    );
    let soa = Record::from_rdata(origin.clone(), soa_ttl, RData::SOA(soa_rdata.clone()));
    // RFC 2308 §3: "the TTL of this record is set from the minimum of the MINIMUM
    // field of the SOA record and the TTL of the SOA itself".
    let negative_soa = Record::from_rdata(
        origin.clone(),
        soa_ttl.min(soa_spec.minimum),
        RData::SOA(soa_rdata),
    );
    {
        let apex = nodes
            .nodes
            .entry(wire_name(&origin))
            .or_insert_with(|| Node {
                name: origin.clone(),
                ..Node::default()
            });
        apex.rrsets.push((RecordType::SOA, vec![soa.clone()]));
        apex.rrsets.push((RecordType::NS, apex_ns.clone()));
    }
    let dnssec = match &spec.dnssec {
        None => None,
        Some(d) => {
            let (ksk, zsk, field) = match (&d.csk, &d.ksk, &d.zsk) {
                (Some(csk), _, _) => (csk, None, "spec.dnssec.csk"),
                (None, Some(ksk), zsk) => (ksk, zsk.as_deref(), "spec.dnssec.ksk"),
                _ => return Err(field_error("spec.dnssec", "no key")),
            };
            let keys =
                crate::dnssec::ZoneKeys::load(origin.clone(), ksk, zsk, d.ttl.unwrap_or(spec.ttl))
                    .map_err(|e| field_error(field, e.to_string()))?;
            if let Some(apex) = nodes.nodes.get_mut(&wire_name(&origin)) {
                apex.rrsets.extend(keys.apex_rrsets());
            }
            Some(std::sync::Arc::new(keys))
        }
    };
    for (name, addr, i, j) in glue {
        let (rt, rdata) = match addr {
            IpAddr::V4(a) => (RecordType::A, RData::A(A(a))),
            IpAddr::V6(a) => (RecordType::AAAA, RData::AAAA(AAAA(a))),
        };
        let node = nodes.at(&name, Source::Nameserver(i));
        push_record(node, rt, Record::from_rdata(name.clone(), spec.ttl, rdata))
            .map_err(|r| field_error(format!("spec.nameservers[{i}].addresses[{j}]"), r))?;
    }

    // Static records.
    let mut delegations = HashSet::new();
    for (i, rec) in spec.records.iter().enumerate() {
        let field = format!("spec.records[{i}]");
        let name =
            abs_name(&origin, &rec.name).map_err(|r| field_error(format!("{field}.name"), r))?;
        if !in_zone(&name) {
            return Err(field_error(
                format!("{field}.name"),
                format!("{name} is outside the zone {origin}"),
            ));
        }
        let ttl = rec.ttl.unwrap_or(spec.ttl);
        let rt = record_type(rec.rtype);
        if rt == RecordType::NS {
            if name == origin {
                return Err(field_error(
                    format!("{field}.name"),
                    "apex NS records go in spec.nameservers",
                ));
            }
            delegations.insert(wire_name(&name));
        }
        if rt == RecordType::CNAME && (rec.data.len() != 1 || name == origin) {
            return Err(field_error(
                format!("{field}.data"),
                "a CNAME has exactly one target and cannot be at the apex",
            ));
        }
        let node = nodes.at(&name, Source::Record(i));
        for (j, value) in rec.data.iter().enumerate() {
            parse_rdata(rec.rtype, &origin, value)
                .and_then(|rdata| {
                    push_record(node, rt, Record::from_rdata(name.clone(), ttl, rdata))
                })
                .map_err(|r| field_error(format!("{field}.data[{j}]"), r))?;
        }
    }

    // GSLB names.
    for (i, g) in spec.gslb.iter().enumerate() {
        let field = format!("spec.gslb[{i}]");
        let gslb = compile_gslb(g, &origin, zone_idx, &field)?;
        if gslb.name == origin {
            return Err(field_error(
                format!("{field}.name"),
                "a GSLB name cannot be the zone apex",
            ));
        }
        let node = nodes.at(&gslb.name, Source::Gslb(i));
        if node.gslb.is_some() || !node.rrsets.is_empty() {
            return Err(field_error(
                format!("{field}.name"),
                format!(
                    "{} already has records; a GSLB name must have no static records",
                    gslb.name
                ),
            ));
        }
        node.gslb = Some(gslb_out.len());
        gslb_out.push(gslb);
    }

    // Records below a delegation other than glue are occluded: reject them.
    for node in nodes.nodes.values() {
        let mut n = node.name.clone();
        while n.num_labels() > origin.num_labels() {
            n = n.base_name();
            if delegations.contains(&wire_name(&n)) {
                let glue_only = node.gslb.is_none()
                    && node
                        .rrsets
                        .iter()
                        .all(|(t, _)| matches!(t, RecordType::A | RecordType::AAAA));
                if !glue_only {
                    return Err(field_error(
                        nodes.field_of(&node.name),
                        format!(
                            "{} is below the delegation {n}; only glue A/AAAA may be there",
                            node.name
                        ),
                    ));
                }
            }
        }
        if delegations.contains(&wire_name(&node.name))
            && (node.gslb.is_some()
                || node
                    .rrsets
                    .iter()
                    .any(|(t, _)| !matches!(t, RecordType::NS | RecordType::A | RecordType::AAAA)))
        {
            return Err(field_error(
                nodes.field_of(&node.name),
                format!(
                    "{} is a delegation point; it may hold only NS and glue",
                    node.name
                ),
            ));
        }
    }
    let nodes = nodes.nodes;

    // Empty non-terminals: every ancestor of a name, up to the apex, that has no node.
    let mut ents = HashSet::new();
    for node in nodes.values() {
        let mut n = node.name.clone();
        while n.num_labels() > origin.num_labels() + 1 {
            n = n.base_name();
            let w = wire_name(&n);
            if !nodes.contains_key(&w) {
                ents.insert(w);
            }
        }
    }

    Ok(Zone {
        label: origin.to_ascii(),
        origin,
        soa,
        negative_soa,
        apex_ns,
        dnssec,
        nodes,
        ents,
        delegations,
    })
}

fn push_record(node: &mut Node, rt: RecordType, record: Record) -> Result<(), String> {
    if node.gslb.is_some() {
        return Err(format!(
            "{} is a GSLB name; it cannot also have static records",
            node.name
        ));
    }
    let has_cname = node.rrset(RecordType::CNAME).is_some();
    let has_other = node.rrsets.iter().any(|(t, _)| *t != RecordType::CNAME);
    if has_cname || (rt == RecordType::CNAME && has_other) {
        return Err(format!(
            "{}: a CNAME cannot coexist with other data (RFC 1034 §3.6.2)",
            node.name
        ));
    }
    match node.rrsets.iter_mut().find(|(t, _)| *t == rt) {
        Some((_, rs)) => {
            if rs.iter().any(|r| r.data == record.data) {
                return Err(format!("duplicate {rt} record at {}", node.name));
            }
            rs.push(record);
        }
        None => node.rrsets.push((rt, vec![record])),
    }
    Ok(())
}

fn parse_rdata(t: StaticType, origin: &Name, v: &str) -> Result<RData, String> {
    let v = v.trim();
    let fields: Vec<&str> = v.split_whitespace().collect();
    let num = |s: &str, what: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("{what} {s:?} is not a number 0-65535"))
    };
    Ok(match t {
        StaticType::A => RData::A(A(v
            .parse()
            .map_err(|_| format!("{v:?} is not an IPv4 address"))?)),
        StaticType::AAAA => RData::AAAA(AAAA(
            v.parse()
                .map_err(|_| format!("{v:?} is not an IPv6 address"))?,
        )),
        StaticType::CNAME => RData::CNAME(CNAME(abs_name(origin, v)?)),
        StaticType::NS => RData::NS(NS(abs_name(origin, v)?)),
        StaticType::TXT => {
            let parts = parse_txt(v)?;
            RData::TXT(TXT::new(parts))
        }
        StaticType::MX => match fields.as_slice() {
            [pref, exch] => RData::MX(MX::new(num(pref, "preference")?, abs_name(origin, exch)?)),
            _ => return Err(format!("MX {v:?}: expected `PREFERENCE EXCHANGE`")),
        },
        StaticType::SRV => match fields.as_slice() {
            [p, w, port, target] => RData::SRV(SRV::new(
                num(p, "priority")?,
                num(w, "weight")?,
                num(port, "port")?,
                abs_name(origin, target)?,
            )),
            _ => return Err(format!("SRV {v:?}: expected `PRIORITY WEIGHT PORT TARGET`")),
        },
        StaticType::CAA => {
            let mut it = v.splitn(3, char::is_whitespace);
            let (Some(flags), Some(tag), Some(value)) = (it.next(), it.next(), it.next()) else {
                return Err(format!("CAA {v:?}: expected `FLAGS TAG \"VALUE\"`"));
            };
            let flags: u8 = flags
                .parse()
                .map_err(|_| format!("CAA flags {flags:?} is not 0-255"))?;
            if tag.is_empty() || tag.len() > 15 || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!(
                    "CAA tag {tag:?} must be 1-15 letters or digits (RFC 8659)"
                ));
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(value);
            // RFC 8659 §4.1: Flags (1 octet), Tag Length (1 octet), Tag, Value.
            let mut raw = vec![flags, tag.len() as u8];
            raw.extend(tag.to_ascii_lowercase().bytes());
            raw.extend(value.bytes());
            RData::Unknown {
                code: RecordType::CAA,
                rdata: NULL::with(raw),
            }
        }
    })
}

/// TXT data: `"a" "b"` → two strings; unquoted text → one string.
fn parse_txt(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    if !v.starts_with('"') {
        out.push(v.to_string());
    } else {
        let mut rest = v;
        while let Some(start) = rest.find('"') {
            let tail = &rest[start + 1..];
            let mut s = String::new();
            let mut chars = tail.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            s.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => s.push(c),
                }
            }
            let Some(end) = end else {
                return Err(format!("TXT {v:?}: unterminated quote"));
            };
            out.push(s);
            rest = &tail[end + 1..];
        }
    }
    if out.iter().any(|s| s.len() > 255) {
        return Err("TXT strings are at most 255 bytes each".into());
    }
    Ok(out)
}

fn compile_gslb(g: &GslbSpec, origin: &Name, zone: usize, field: &str) -> Result<Gslb, FieldError> {
    let name = abs_name(origin, &g.name).map_err(|r| field_error(format!("{field}.name"), r))?;
    if !origin.zone_of(&name) {
        return Err(field_error(
            format!("{field}.name"),
            format!("{name} is outside the zone {origin}"),
        ));
    }
    let targets: Vec<Target> = g.targets.iter().map(compile_target).collect();
    // `config` checked that every cluster named here is a target.
    let mut default_order: Vec<usize> = g
        .default_order
        .iter()
        .filter_map(|c| targets.iter().position(|t| &t.cluster == c))
        .collect();
    for i in 0..targets.len() {
        if !default_order.contains(&i) {
            default_order.push(i);
        }
    }
    Ok(Gslb {
        fqdn: name.to_ascii(),
        name,
        zone,
        ttl: g.ttl,
        policy: g.policy,
        max_answers: g.max_answers,
        fail_open: g.fail_open,
        default_order,
        targets,
    })
}

fn compile_target(t: &TargetSpec) -> Target {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for a in &t.addresses {
        match a {
            IpAddr::V4(a) => v4.push(*a),
            IpAddr::V6(a) => v6.push(*a),
        }
    }
    Target {
        cluster: t.cluster.clone(),
        v4,
        v6,
        weight: t.weight,
        tier: t.tier,
        // `config` requires an address; a target without one is never probed.
        check: t
            .health_check
            .as_ref()
            .zip(t.addresses.first())
            .map(|(c, first)| compile_check(c, *first)),
    }
}

fn compile_check(c: &HealthCheckSpec, first: IpAddr) -> Check {
    let addr = c
        .address
        .unwrap_or_else(|| SocketAddr::new(first, c.port.unwrap_or(80)));
    Check {
        protocol: match c.protocol {
            ProbeProtocol::Tcp => CheckProtocol::Tcp,
            ProbeProtocol::Http => CheckProtocol::Http,
            ProbeProtocol::Https if c.insecure_skip_verify => {
                CheckProtocol::Https(Trust::AnyCertificate)
            }
            ProbeProtocol::Https => {
                CheckProtocol::Https(c.ca_file.clone().map_or(Trust::SystemRoots, Trust::CaFile))
            }
        },
        addr,
        path: c.path.clone(),
        host: c.host.clone().unwrap_or_else(|| addr.to_string()),
        expect_status: c.expect_status,
        interval: c.interval.0,
        timeout: c.timeout.0,
        rise: c.rise,
        fall: c.fall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_parsing() {
        assert_eq!(parse_txt("hello world").unwrap(), vec!["hello world"]);
        assert_eq!(parse_txt(r#""a b" "c\"d""#).unwrap(), vec!["a b", "c\"d"]);
        assert!(parse_txt(r#""open"#).is_err());
    }

    #[test]
    fn wire_names_are_lower_case() {
        let n = Name::from_ascii("App.Svc.Example.").unwrap();
        assert_eq!(&*wire_name(&n), b"\x03app\x03svc\x07example\x00");
    }
}
