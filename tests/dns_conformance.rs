//! Differential test: Knot DNS (`knotd`, Debian package `knot`) and the built
//! `causeway dns` serve the same zone; every question below goes to both, over UDP and
//! over TCP, and every part of the two replies is compared: header flags (QR, opcode,
//! AA, TC, RD, RA, AD, CD), the full rcode (with the OPT's extended bits), the
//! question, the answer, authority and additional sections (each sorted: the order of
//! records in a section carries no meaning), and the OPT record (UDP size, version, DO
//! and every option).
//!
//! Both zones are written from one table ([`RECORDS`]), so they hold the same data.
//! Knot has no GSLB: it serves the GSLB names as static records.
//! * `app` (policy all-healthy, one target without a health check) has only one
//!   possible answer, so it is compared in full like static data.
//! * `lat` (policy latency, two clusters, a latency map) is compared on **shape only**:
//!   the A/AAAA data of the answer and the ECS option are masked (causeway picks the
//!   nearest cluster and echoes ECS; Knot serves the first cluster's address and does
//!   not speak ECS). Everything else (rcode, flags, owner, TTL, counts, other
//!   sections, DO, NSID) must match.
//!
//! Every difference that remains is listed at its question as an [`Accepted`]
//! difference with the reason, and only that part of the reply is masked: the rest
//! must still match. Wildcards are not tested: causeway's zones have none (the config
//! cannot express them), so a name a wildcard would cover is an NXDOMAIN case here.

#[path = "support/dns.rs"]
mod dns_support;

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use causeway_testbed::testing::{Process, Spawn, require_tools, wait_for};
use dns_support::{Server, read_tcp, write_config, write_tcp};
use hickory_proto::op::Message;
use hickory_proto::rr::{Record, RecordType};

const ORIGIN: &str = "svc.example.";
/// The server's identity on both servers (CHAOS TXT and NSID).
const IDENTITY: &str = "conformance-1";
const VERSION: &str = "conformance-version";

/// Static records of the zone: (owner relative to the origin, type, TTL, data).
/// Written as YAML for causeway and as a zone file for Knot.
const RECORDS: &[(&str, &str, Option<u32>, &[&str])] = &[
    ("@", "MX", None, &["10 mail", "20 mx.other.example."]),
    ("@", "TXT", None, &[r#""v=spf1 -all""#]),
    ("@", "CAA", None, &[r#"0 issue "letsencrypt.org""#]),
    ("www", "A", None, &["192.0.2.10"]),
    ("www", "AAAA", None, &["2001:db8::10"]),
    ("mail", "A", None, &["192.0.2.25"]),
    ("mail", "AAAA", None, &["2001:db8::25"]),
    ("mxhost", "MX", Some(120), &["10 www", "20 mail"]),
    ("mxdup", "MX", None, &["10 mail", "20 mail"]),
    (
        "manymx",
        "MX",
        None,
        &[
            "10 mx0", "10 mx1", "10 mx2", "10 mx3", "10 mx4", "10 mx5", "10 mx6", "10 mx7",
        ],
    ),
    ("mx0", "A", None, &["192.0.2.100"]),
    ("mx0", "AAAA", None, &["2001:db8::100"]),
    ("mx1", "A", None, &["192.0.2.101"]),
    ("mx1", "AAAA", None, &["2001:db8::101"]),
    ("mx2", "A", None, &["192.0.2.102"]),
    ("mx2", "AAAA", None, &["2001:db8::102"]),
    ("mx3", "A", None, &["192.0.2.103"]),
    ("mx3", "AAAA", None, &["2001:db8::103"]),
    ("mx4", "A", None, &["192.0.2.104"]),
    ("mx4", "AAAA", None, &["2001:db8::104"]),
    ("mx5", "A", None, &["192.0.2.105"]),
    ("mx5", "AAAA", None, &["2001:db8::105"]),
    ("mx6", "A", None, &["192.0.2.106"]),
    ("mx6", "AAAA", None, &["2001:db8::106"]),
    ("mx7", "A", None, &["192.0.2.107"]),
    ("mx7", "AAAA", None, &["2001:db8::107"]),
    ("mxgslb", "MX", None, &["10 app"]),
    ("txt", "TXT", Some(60), &[r#""part one" "part two""#]),
    (
        "_sip._tcp",
        "SRV",
        None,
        &["10 5 5060 www", "20 5 5060 sip2.other.example."],
    ),
    ("_gslb._tcp", "SRV", None, &["0 0 443 app"]),
    ("alias", "CNAME", None, &["www"]),
    ("chain", "CNAME", None, &["alias"]),
    ("ext", "CNAME", None, &["www.other.example."]),
    ("dangling", "CNAME", None, &["nothere"]),
    ("toapp", "CNAME", None, &["app"]),
    ("child", "NS", None, &["ns.child"]),
    ("ns.child", "A", None, &["192.0.2.53"]),
    ("extchild", "NS", None, &["ns.other.example."]),
    ("deep.a.b", "A", None, &["192.0.2.99"]),
];

/// Four TXT records of 200 bytes each: more than 512 bytes (TC without EDNS).
fn big_txt() -> Vec<String> {
    (0..4)
        .map(|i| format!("\"{}\"", char::from(b'a' + i).to_string().repeat(200)))
        .collect()
}

fn causeway_config() -> String {
    let mut y = format!(
        r#"apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {{name: conformance}}
spec:
  identity: {{id: {IDENTITY}, version: {VERSION}, nsid: true}}
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: svc}}
spec:
  origin: {ORIGIN}
  ttl: 300
  soa: {{rname: hostmaster.{ORIGIN}, serial: 2026112701, refresh: 3600, retry: 900, expire: 604800, minimum: 60}}
  nameservers:
    - {{name: ns1, addresses: [127.0.0.53, "2001:db8::53"]}}
    - {{name: ns2.other.example.}}
  records:
"#
    );
    let big = big_txt();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    for (name, t, ttl, data) in RECORDS.iter().chain([&("big", "TXT", None, &big[..])]) {
        let data: Vec<String> = data
            .iter()
            .map(|d| format!("'{}'", d.replace('\'', "''")))
            .collect();
        let ttl = ttl.map(|t| format!(", ttl: {t}")).unwrap_or_default();
        writeln!(
            y,
            "    - {{name: \"{name}\", type: {t}{ttl}, data: [{}]}}",
            data.join(", ")
        )
        .unwrap();
    }
    y.push_str(
        r#"  gslb:
    - name: app
      policy: all-healthy
      targets: [{cluster: idc-bj, addresses: [192.0.2.80, "2001:db8::80"]}]
    - name: lat
      policy: latency
      targets:
        - {cluster: idc-bj, addresses: [192.0.2.81]}
        - {cluster: aws-sg, addresses: [192.0.2.82]}
---
apiVersion: causeway.dev/v1alpha1
kind: LatencyMap
metadata: {name: static}
spec:
  entries:
    - {prefix: 198.51.100.0/24, rttMs: {idc-bj: 50, aws-sg: 5}}
"#,
    );
    y
}

fn knot_zone() -> String {
    let mut z = format!(
        "$ORIGIN {ORIGIN}\n$TTL 300\n\
         @ 300 IN SOA ns1.{ORIGIN} hostmaster.{ORIGIN} 2026112701 3600 900 604800 60\n\
         @ IN NS ns1\n@ IN NS ns2.other.example.\n\
         ns1 IN A 127.0.0.53\nns1 IN AAAA 2001:db8::53\n"
    );
    let big = big_txt();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    for (name, t, ttl, data) in RECORDS.iter().chain([&("big", "TXT", None, &big[..])]) {
        let ttl = ttl.map(|t| t.to_string()).unwrap_or_default();
        for d in *data {
            writeln!(z, "{name} {ttl} IN {t} {d}").unwrap();
        }
    }
    // The GSLB names as Knot serves them: static, the first target, the GSLB TTL (30).
    z.push_str("app 30 IN A 192.0.2.80\napp 30 IN AAAA 2001:db8::80\nlat 30 IN A 192.0.2.81\n");
    z
}

fn knot_conf(dir: &Path, addr: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"server:
  listen: {ip}@{port}
  rundir: {d}
  identity: {IDENTITY}
  version: {VERSION}
  nsid: {IDENTITY}
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
log:
  - target: stderr
    any: warning
database:
  storage: {d}
template:
  - id: default
    storage: {d}
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: {ORIGIN}
    file: svc.example.zone
"#,
        ip = addr.ip(),
        port = addr.port()
    )
}

/// A port free for UDP and TCP on 127.0.0.1 (for Knot, which cannot take port 0).
fn free_addr() -> SocketAddr {
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = u.local_addr().unwrap();
        if TcpListener::bind(a).is_ok() {
            return a;
        }
    }
    panic!("no free port on 127.0.0.1");
}

// === queries ===

const IN: u16 = 1;
const CH: u16 = 3;

/// EDNS of a question.
#[derive(Clone, Copy)]
struct Opt {
    version: u8,
    dnssec_ok: bool,
    nsid: bool,
    /// ECS source /24 (IPv4 only here).
    ecs: Option<[u8; 3]>,
}

const EDNS: Opt = Opt {
    version: 0,
    dnssec_ok: false,
    nsid: false,
    ecs: None,
};
const DO: Opt = Opt {
    dnssec_ok: true,
    ..EDNS
};
const NSID: Opt = Opt { nsid: true, ..EDNS };

/// What may differ between the two replies to a question, and why.
#[derive(Clone, Copy, Debug)]
enum Accepted {
    /// Both must be equal in every part.
    None,
    /// A GSLB name computed by causeway: A/AAAA data and ECS masked (shape only).
    GslbShape,
    /// This documented difference; `mask` names what is masked.
    Differs { mask: Mask, reason: &'static str },
}

impl Accepted {
    /// Why the replies may differ.
    fn reason(self) -> &'static str {
        match self {
            Self::None => "",
            Self::GslbShape => "GSLB name computed by causeway, static in Knot: shape only",
            Self::Differs { reason, .. } => reason,
        }
    }
}

/// The part of a reply an accepted difference masks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mask {
    /// The answer section.
    Answer,
    /// The additional section.
    Additional,
    /// The rcode and the header flags.
    RcodeAndFlags,
    /// Repeated records of the additional section (compared once each).
    Repeats,
    /// The ECS option (RFC 7871) of the OPT.
    Ecs,
}

struct Question {
    opcode: u8,
    name: &'static str,
    qtype: RecordType,
    class: u16,
    rd: bool,
    edns: Option<Opt>,
    accepted: Accepted,
}

fn q(name: &'static str, qtype: RecordType, edns: Option<Opt>) -> Question {
    Question {
        opcode: 0,
        name,
        qtype,
        class: IN,
        rd: false,
        edns,
        accepted: Accepted::None,
    }
}

impl Question {
    fn class(mut self, class: u16) -> Self {
        self.class = class;
        self
    }
    fn opcode(mut self, opcode: u8) -> Self {
        self.opcode = opcode;
        self
    }
    fn rd(mut self) -> Self {
        self.rd = true;
        self
    }
    fn gslb(mut self) -> Self {
        self.accepted = Accepted::GslbShape;
        self
    }
    fn differs(mut self, mask: Mask, reason: &'static str) -> Self {
        self.accepted = Accepted::Differs { mask, reason };
        self
    }

    fn wire(&self, id: u16) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&[
            (self.opcode << 3) | u8::from(self.rd),
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
        ]);
        p.push(u8::from(self.edns.is_some()));
        for label in self.name.trim_end_matches('.').split('.') {
            if !label.is_empty() {
                p.push(label.len() as u8);
                p.extend_from_slice(label.as_bytes());
            }
        }
        p.push(0);
        p.extend_from_slice(&u16::from(self.qtype).to_be_bytes());
        p.extend_from_slice(&self.class.to_be_bytes());
        if let Some(o) = self.edns {
            let mut rdata = Vec::new();
            if o.nsid {
                rdata.extend_from_slice(&[0, 3, 0, 0]);
            }
            if let Some(net) = o.ecs {
                rdata.extend_from_slice(&[0, 8, 0, 7, 0, 1, 24, 0]);
                rdata.extend_from_slice(&net);
            }
            p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, o.version]);
            p.extend_from_slice(&[if o.dnssec_ok { 0x80 } else { 0 }, 0]);
            p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            p.extend_from_slice(&rdata);
        }
        p
    }

    fn describe(&self) -> String {
        let class = match self.class {
            IN => "IN".to_string(),
            CH => "CH".to_string(),
            c => format!("CLASS{c}"),
        };
        let edns = match self.edns {
            None => "no EDNS".to_string(),
            Some(o) => {
                let mut s = format!("EDNS{}", o.version);
                if o.dnssec_ok {
                    s += " DO";
                }
                if o.nsid {
                    s += " NSID";
                }
                if let Some(n) = o.ecs {
                    s += &format!(" ECS {}.{}.{}.0/24", n[0], n[1], n[2]);
                }
                s
            }
        };
        format!(
            "{}{} {class} {}{} ({edns})",
            if self.opcode == 0 {
                String::new()
            } else {
                format!("opcode {} ", self.opcode)
            },
            self.name,
            self.qtype,
            if self.rd { " RD" } else { "" }
        )
    }
}

fn questions() -> Vec<Question> {
    use RecordType::*;
    let ecs = |net| {
        Some(Opt {
            ecs: Some(net),
            ..EDNS
        })
    };
    vec![
        // apex
        q("svc.example.", SOA, Some(EDNS)),
        q("svc.example.", NS, Some(EDNS)),
        q("svc.example.", NS, None),
        q("svc.example.", MX, Some(EDNS)),
        q("svc.example.", TXT, Some(EDNS)),
        q("svc.example.", CAA, Some(EDNS)),
        q("svc.example.", A, Some(EDNS)),
        q("svc.example.", AAAA, Some(DO)),
        q("svc.example.", ANY, Some(EDNS)).differs(
            Mask::Answer,
            "RFC 8482 minimal ANY: both answer with one RRset of the name, but not the \
             same one (causeway: the first in its table, SOA; Knot: NS, with its glue in the \
             additional section, so that section is masked too)",
        ),
        // names
        q("www.svc.example.", A, Some(EDNS)),
        q("www.svc.example.", A, None).rd(),
        q("www.svc.example.", AAAA, Some(EDNS)),
        q("WwW.SvC.ExAmPlE.", A, Some(EDNS)),
        q("www.svc.example.", TXT, Some(EDNS)),
        q("www.svc.example.", MX, Some(DO)),
        q("www.svc.example.", ANY, Some(EDNS)),
        q("mail.svc.example.", AAAA, Some(EDNS)),
        q("ns1.svc.example.", A, Some(EDNS)),
        q("ns1.svc.example.", AAAA, None),
        q("txt.svc.example.", TXT, Some(EDNS)),
        q("big.svc.example.", TXT, None),
        q("big.svc.example.", TXT, Some(EDNS)),
        // MX / SRV with additional addresses
        q("mxhost.svc.example.", MX, Some(EDNS)),
        q("mxhost.svc.example.", MX, None),
        q("mxdup.svc.example.", MX, Some(EDNS)).differs(
            Mask::Repeats,
            "two MX records name the same host: Knot adds its A and AAAA once per MX \
             record (the same records twice); causeway adds them once (RFC 2181 §5: \
             duplicate records should be suppressed)",
        ),
        q("_sip._tcp.svc.example.", SRV, Some(EDNS)),
        q("manymx.svc.example.", MX, Some(EDNS)),
        q("manymx.svc.example.", MX, None),
        q("mxgslb.svc.example.", MX, Some(EDNS)).differs(
            Mask::Additional,
            "the MX target is a GSLB name: its addresses depend on the client, so causeway \
             leaves them out of the additional section (resolvers ask for them); Knot serves \
             the name statically and adds them",
        ),
        q("_gslb._tcp.svc.example.", SRV, Some(EDNS)).differs(
            Mask::Additional,
            "the SRV target is a GSLB name (as for mxgslb's MX)",
        ),
        // CNAME
        q("alias.svc.example.", A, Some(EDNS)),
        q("alias.svc.example.", CNAME, Some(EDNS)),
        q("chain.svc.example.", AAAA, Some(EDNS)),
        q("ext.svc.example.", A, Some(EDNS)),
        q("dangling.svc.example.", A, Some(EDNS)),
        q("toapp.svc.example.", A, Some(EDNS)),
        // NXDOMAIN, NODATA, empty non-terminals; a name a wildcard would cover
        q("nx.svc.example.", A, Some(EDNS)),
        q("nx.svc.example.", A, None),
        q("nx.svc.example.", A, Some(DO)),
        q("x.www.svc.example.", A, Some(EDNS)),
        q("b.svc.example.", A, Some(EDNS)),
        q("a.b.svc.example.", TXT, Some(EDNS)),
        q("deep.a.b.svc.example.", A, Some(EDNS)),
        q("anything.wild.svc.example.", A, Some(EDNS)),
        // delegations
        q("child.svc.example.", NS, Some(EDNS)),
        q("host.child.svc.example.", A, Some(EDNS)),
        q("ns.child.svc.example.", A, Some(EDNS)),
        q("child.svc.example.", DS, Some(EDNS)),
        q("x.extchild.svc.example.", AAAA, Some(EDNS)),
        // out of zone
        q("www.other.example.", A, Some(EDNS)),
        q("www.other.example.", A, None),
        q("example.", SOA, None),
        q(".", NS, None),
        // CHAOS class
        q("id.server.", TXT, None).class(CH),
        q("hostname.bind.", TXT, Some(EDNS)).class(CH),
        q("version.bind.", TXT, None).class(CH),
        q("version.server.", TXT, Some(EDNS)).class(CH),
        q("id.server.", TXT, Some(NSID)).class(CH),
        q("id.server.", A, None).class(CH),
        q("authors.bind.", TXT, None).class(CH),
        q("www.svc.example.", A, None).class(CH),
        // DO, NSID, EDNS version 1 (BADVERS)
        q("www.svc.example.", A, Some(DO)),
        q("www.svc.example.", A, Some(NSID)),
        q(
            "www.svc.example.",
            A,
            Some(Opt {
                dnssec_ok: true,
                nsid: true,
                ..EDNS
            }),
        ),
        q("www.svc.example.", A, Some(Opt { version: 1, ..EDNS })),
        q(
            "www.svc.example.",
            A,
            Some(Opt {
                version: 1,
                dnssec_ok: true,
                nsid: true,
                ecs: None,
            }),
        ),
        q("nx.svc.example.", A, Some(Opt { version: 1, ..DO })),
        // other classes and opcodes, ECS on static data
        q("www.svc.example.", A, Some(EDNS)).class(4),
        q("www.svc.example.", A, Some(EDNS)).class(255),
        q("www.svc.example.", A, None).class(254),
        q("svc.example.", SOA, None).opcode(4).differs(
            Mask::RcodeAndFlags,
            "NOTIFY: causeway takes no zone from a primary and answers NOTIMP (RFC 1996 \
             §3.3); Knot NOTAUTH (no ACL allows it). Both echo the question",
        ),
        q("svc.example.", SOA, None).opcode(5).differs(
            Mask::RcodeAndFlags,
            "UPDATE: causeway NOTIMP (RFC 2136 §3.8: not supported); Knot NOTAUTH (no ACL \
             allows it). Both echo the question",
        ),
        q("svc.example.", SOA, None).opcode(2),
        q("www.svc.example.", A, ecs([198, 51, 100])).differs(
            Mask::Ecs,
            "causeway speaks ECS and echoes it with SCOPE 0 for an answer that does not \
             depend on the client (RFC 7871 §7.2.1); Knot without its geoip module does not \
             speak ECS and leaves it out",
        ),
        // GSLB
        q("app.svc.example.", A, Some(EDNS)),
        q("app.svc.example.", AAAA, None),
        q("lat.svc.example.", A, Some(EDNS)).gslb(),
        q("lat.svc.example.", A, ecs([198, 51, 100])).gslb(),
        q("lat.svc.example.", A, ecs([203, 0, 113])).gslb(),
        q("lat.svc.example.", AAAA, Some(DO)).gslb(),
        q("lat.svc.example.", TXT, Some(EDNS)).gslb(),
        // zone transfer
        q("svc.example.", AXFR, Some(EDNS)).differs(
            Mask::RcodeAndFlags,
            "no zone transfers from causeway: NOTIMP over UDP and TCP; Knot answers NOTIMP \
             over UDP (equal) and, over TCP, NOTAUTH (transfers not allowed by its ACL)",
        ),
    ]
}

// === replies, normalised ===

#[derive(Debug, Clone, PartialEq)]
struct OptRr {
    udp_size: u16,
    version: u8,
    dnssec_ok: bool,
    /// (code, data), as sent.
    options: Vec<(u16, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Reply {
    /// `qr opcode aa tc rd ra ad cd`, as text.
    flags: String,
    /// Full rcode: header bits and the OPT's extended bits.
    rcode: u16,
    question: Vec<String>,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
    opt: Option<OptRr>,
}

fn u16_at(p: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]))
}

fn skip_name(p: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *p.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            1..=63 => pos += 1 + usize::from(len),
            0xc0..=0xff => return Some(pos + 2),
            _ => return None,
        }
    }
}

/// The OPT record of a reply, read from the wire.
fn raw_opt(p: &[u8]) -> Option<OptRr> {
    let counts: Vec<u16> = (0..4)
        .map(|i| u16_at(p, 4 + 2 * i))
        .collect::<Option<_>>()?;
    let mut pos = 12;
    for _ in 0..counts[0] {
        pos = skip_name(p, pos)? + 4;
    }
    for i in 0..(u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3])) {
        let start = pos;
        let n = skip_name(p, pos)?;
        let rtype = u16_at(p, n)?;
        let rdlen = usize::from(u16_at(p, n + 8)?);
        let rdata = p.get(n + 10..n + 10 + rdlen)?;
        pos = n + 10 + rdlen;
        if rtype == 41 && i >= u32::from(counts[1]) + u32::from(counts[2]) {
            assert_eq!(p[start], 0, "OPT owner is the root");
            let mut options = Vec::new();
            let mut o = rdata;
            while o.len() >= 4 {
                let code = u16::from_be_bytes([o[0], o[1]]);
                let len = usize::from(u16::from_be_bytes([o[2], o[3]]));
                options.push((code, o.get(4..4 + len)?.to_vec()));
                o = &o[(4 + len).min(o.len())..];
            }
            options.sort();
            return Some(OptRr {
                udp_size: u16_at(p, n + 2)?,
                version: *p.get(n + 5)?,
                dnssec_ok: p.get(n + 6)? & 0x80 != 0,
                options,
            });
        }
    }
    None
}

fn record_text(r: &Record) -> String {
    r.to_string()
}

fn section(rs: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = rs
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(record_text)
        .collect();
    v.sort();
    v
}

fn normalise(p: &[u8]) -> Reply {
    let m = Message::from_vec(p).unwrap_or_else(|e| panic!("undecodable reply {p:02x?}: {e}"));
    let f = u16_at(p, 2).unwrap_or(0);
    let bits = [
        (0x8000, "qr"),
        (0x0400, "aa"),
        (0x0200, "tc"),
        (0x0100, "rd"),
        (0x0080, "ra"),
        (0x0020, "ad"),
        (0x0010, "cd"),
    ];
    let mut flags = format!("opcode{}", (f >> 11) & 0xf);
    for (b, n) in bits {
        if f & b != 0 {
            flags += " ";
            flags += n;
        }
    }
    let opt = raw_opt(p);
    // The extended rcode: upper 8 bits in the first byte of the OPT's TTL.
    let ext = find_opt_ttl(p).map_or(0, u16::from);
    Reply {
        flags,
        rcode: (ext << 4) | (f & 0xf),
        question: m
            .queries
            .iter()
            .map(|q| format!("{} {} {}", q.name(), q.query_class(), q.query_type()))
            .collect(),
        answer: section(&m.answers),
        authority: section(&m.authorities),
        additional: section(&m.additionals),
        opt,
    }
}

/// The extended-rcode byte of the reply's OPT, if it has one.
fn find_opt_ttl(p: &[u8]) -> Option<u8> {
    let counts: Vec<u16> = (0..4)
        .map(|i| u16_at(p, 4 + 2 * i))
        .collect::<Option<_>>()?;
    let mut pos = 12;
    for _ in 0..counts[0] {
        pos = skip_name(p, pos)? + 4;
    }
    let total = u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3]);
    for _ in 0..total {
        let n = skip_name(p, pos)?;
        let rtype = u16_at(p, n)?;
        let rdlen = usize::from(u16_at(p, n + 8)?);
        if rtype == 41 {
            return p.get(n + 4).copied();
        }
        pos = n + 10 + rdlen;
    }
    None
}

/// `reply` with the parts `accepted` lets differ replaced by a marker.
fn masked(mut r: Reply, accepted: Accepted) -> Reply {
    let gone = || vec!["<masked>".to_string()];
    match accepted {
        Accepted::None => {}
        Accepted::GslbShape => {
            r.answer = r
                .answer
                .iter()
                .map(|l| {
                    let mut parts: Vec<&str> = l.split_whitespace().collect();
                    if matches!(parts.get(3), Some(&"A") | Some(&"AAAA")) {
                        parts.truncate(4);
                        parts.push("<address>");
                    }
                    parts.join(" ")
                })
                .collect();
            if let Some(o) = &mut r.opt {
                o.options.retain(|(c, _)| *c != 8);
            }
        }
        Accepted::Differs { mask, .. } => match mask {
            Mask::Answer => {
                r.answer = gone();
                r.additional = gone();
            }
            Mask::Additional => r.additional = gone(),
            Mask::Repeats => r.additional.dedup(),
            Mask::Ecs => {
                if let Some(o) = &mut r.opt {
                    o.options.retain(|(c, _)| *c != 8);
                }
            }
            Mask::RcodeAndFlags => {
                r.rcode = 0;
                r.flags = "<masked>".into();
            }
        },
    }
    r
}

fn ask_udp(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut buf = vec![0u8; 65535];
    for _ in 0..3 {
        sock.send_to(packet, server).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return buf[..n].to_vec();
        }
    }
    panic!("no UDP reply from {server}");
}

fn ask_tcp(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write_tcp(&mut s, packet);
    read_tcp(&mut s).unwrap_or_else(|| panic!("no TCP reply from {server}"))
}

fn start_knot(dir: &Path) -> (Process, SocketAddr) {
    let addr = free_addr();
    std::fs::write(dir.join("svc.example.zone"), knot_zone()).unwrap();
    std::fs::write(dir.join("knot.conf"), knot_conf(dir, addr)).unwrap();
    let mut cmd = Command::new("knotd");
    cmd.arg("-c").arg(dir.join("knot.conf"));
    let knot = Spawn::new("knotd", cmd)
        .log_file(dir.join("knotd.log"))
        .start();
    let soa = q(ORIGIN, RecordType::SOA, None).wire(1);
    wait_for(
        "knotd answers",
        Duration::from_secs(15),
        dns_support::POLL,
        || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let _ = sock.send_to(&soa, addr);
            let mut buf = [0u8; 512];
            match sock.recv_from(&mut buf) {
                Ok((n, _)) if n > 12 && buf[3] & 0xf == 0 && buf[7] == 1 => Ok(()),
                _ => Err(knot.log_tail(5)),
            }
        },
    );
    (knot, addr)
}

#[test]
fn causeway_answers_like_knot() {
    require_tools(&[("knotd", "knot")]);
    let dir = tempfile::tempdir().unwrap();
    let knot_dir = dir.path().join("knot");
    std::fs::create_dir(&knot_dir).unwrap();
    let (_knot, knot) = start_knot(&knot_dir);
    let cw = Server::start(&write_config(dir.path(), "dns.yaml", &causeway_config()));

    let mut compared = 0;
    let mut failures = Vec::new();
    let mut accepted = Vec::new();
    for (i, question) in questions().iter().enumerate() {
        let packet = question.wire(0x4000 + i as u16);
        for (transport, ask) in [
            ("UDP", ask_udp as fn(SocketAddr, &[u8]) -> Vec<u8>),
            ("TCP", ask_tcp),
        ] {
            let k = normalise(&ask(knot, &packet));
            let c = normalise(&ask(cw.dns, &packet));
            compared += 1;
            let what = format!("{} over {transport}", question.describe());
            if masked(k.clone(), question.accepted) != masked(c.clone(), question.accepted) {
                failures.push(format!("{what}\n  knot:     {k:?}\n  causeway: {c:?}"));
            } else if k != c {
                accepted.push(format!(
                    "{what}: {}\n    knot:     {k:?}\n    causeway: {c:?}",
                    question.accepted.reason()
                ));
            }
        }
    }
    eprintln!(
        "{compared} replies compared ({} questions over UDP and TCP); {} differ only as documented:",
        compared / 2,
        accepted.len()
    );
    for a in &accepted {
        eprintln!("  {a}");
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} replies differ from Knot's:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Without `spec.identity` (the default) every CHAOS query is REFUSED, with the
/// question and its class echoed, and no NSID is sent, as Knot does with an empty
/// `identity`, `version` and `nsid`.
#[test]
fn chaos_is_refused_without_identity() {
    let dir = tempfile::tempdir().unwrap();
    let config = causeway_config();
    let start = config.find("---").unwrap();
    let cw = Server::start(&write_config(dir.path(), "dns.yaml", &config[start + 4..]));
    for name in [
        "id.server.",
        "hostname.bind.",
        "version.bind.",
        "version.server.",
    ] {
        let question = q(name, RecordType::TXT, Some(NSID)).class(CH);
        for reply in [
            ask_udp(cw.dns, &question.wire(7)),
            ask_tcp(cw.dns, &question.wire(7)),
        ] {
            let r = normalise(&reply);
            assert_eq!(r.rcode, 5, "{name}: {r:?}");
            assert_eq!(r.question, vec![format!("{name} CH TXT")]);
            assert!(r.answer.is_empty(), "{r:?}");
            let opt = r.opt.expect("an OPT");
            assert!(opt.options.is_empty(), "no NSID: {opt:?}");
        }
    }
    // NSID is not sent to IN queries either.
    let r = normalise(&ask_udp(
        cw.dns,
        &q("www.svc.example.", RecordType::A, Some(NSID)).wire(8),
    ));
    assert_eq!(r.rcode, 0);
    assert!(r.opt.expect("an OPT").options.is_empty());
}
