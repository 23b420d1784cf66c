//! The DNS wire format on the query path: parse a query without allocating, and
//! write the parts of a reply that change per query (ID, flags, the client's case of
//! the name, the OPT record with ECS, truncation).
//!
//! Every byte here comes from the network: every read is bounds-checked and every
//! malformed query becomes FORMERR (or is dropped when not even a header is there).

use crate::ecs::{ClientSubnet, EcsError};

/// The UDP payload size we advertise and honour (DNS Flag Day 2020).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Largest UDP reply to a query without EDNS (RFC 1035 §4.2.1).
pub const PLAIN_UDP_SIZE: usize = 512;
/// Header length.
pub const HEADER_LEN: usize = 12;

/// Record type OPT.
const TYPE_OPT: u16 = 41;

/// Response codes we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// Format error.
    FormErr = 1,
    /// Server failure.
    ServFail = 2,
    /// Name does not exist.
    NxDomain = 3,
    /// Not implemented.
    NotImp = 4,
    /// Refused.
    Refused = 5,
}

impl Rcode {
    /// Name for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoError => "NOERROR",
            Self::FormErr => "FORMERR",
            Self::ServFail => "SERVFAIL",
            Self::NxDomain => "NXDOMAIN",
            Self::NotImp => "NOTIMP",
            Self::Refused => "REFUSED",
        }
    }
}

/// EDNS of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size.
    pub udp_size: u16,
    /// EDNS version.
    pub version: u8,
    /// ECS option, if any.
    pub ecs: Option<ClientSubnet>,
    /// The DO bit (RFC 3225); copied into the reply's OPT.
    pub dnssec_ok: bool,
    /// The query carried an NSID option (RFC 5001).
    pub nsid: bool,
}

/// A parsed query, borrowing the packet.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// Transaction ID.
    pub id: u16,
    /// Header flags word (opcode, RD, CD... as received).
    pub flags: u16,
    /// QNAME as sent (case preserved), wire form.
    pub qname: &'a [u8],
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// EDNS, if the query had an OPT record.
    pub edns: Option<Edns>,
}

impl Query<'_> {
    /// Length of header + question.
    pub fn question_end(&self) -> usize {
        HEADER_LEN + self.qname.len() + 4
    }

    /// Largest reply allowed over UDP.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.udp_size.min(EDNS_UDP_SIZE)).max(PLAIN_UDP_SIZE),
            None => PLAIN_UDP_SIZE,
        }
    }
}

/// Why a packet got no normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not worth a reply: shorter than a header, or itself a response.
    Drop,
    /// Reply with this code; `question_len` = bytes of a valid question to echo.
    Error {
        /// The code.
        rcode: Rcode,
        /// Length of the QNAME + 4 when the question is echoed.
        question_len: Option<usize>,
    },
    /// EDNS version we do not speak: BADVERS (RFC 6891 §6.1.3).
    BadVers {
        /// Length of the QNAME + 4 when the question is echoed.
        question_len: usize,
        /// The query's DO bit, copied into the reply (RFC 3225).
        dnssec_ok: bool,
        /// The query asked for NSID.
        nsid: bool,
    },
}

fn u16_at(p: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]))
}

/// Reads an uncompressed name at `pos`, appending its lower-case form to `lower`.
/// Returns the end offset.
fn read_qname(p: &[u8], mut pos: usize, lower: &mut Vec<u8>) -> Option<usize> {
    let start = pos;
    loop {
        let len = usize::from(*p.get(pos)?);
        if len == 0 {
            lower.push(0);
            pos += 1;
            break;
        }
        if len > 63 {
            return None; // a compression pointer or reserved label type in QNAME
        }
        let label = p.get(pos + 1..pos + 1 + len)?;
        lower.push(len as u8);
        lower.extend(label.iter().map(u8::to_ascii_lowercase));
        pos += 1 + len;
        if pos - start > 255 {
            return None;
        }
    }
    (pos - start <= 255).then_some(pos)
}

/// Skips a possibly compressed name; returns the end offset.
fn skip_name(p: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *p.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            1..=63 => pos += 1 + usize::from(len),
            0xc0..=0xff => {
                p.get(pos + 1)?;
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
}

/// Parses a query. `lower` receives the lower-case QNAME (cleared first).
pub fn parse<'a>(p: &'a [u8], lower: &mut Vec<u8>) -> Result<Query<'a>, Reject> {
    lower.clear();
    if p.len() < HEADER_LEN {
        return Err(Reject::Drop);
    }
    let flags = u16_at(p, 2).ok_or(Reject::Drop)?;
    if flags & 0x8000 != 0 {
        return Err(Reject::Drop); // QR set: a response, never answer it (loops)
    }
    let opcode = (flags >> 11) & 0xf;
    let form = |question_len| Reject::Error {
        rcode: Rcode::FormErr,
        question_len,
    };
    if opcode != 0 {
        // Echo a well-formed single question, as Knot does.
        let question_len = (u16_at(p, 4) == Some(1))
            .then(|| read_qname(p, HEADER_LEN, lower))
            .flatten()
            .filter(|end| end + 4 <= p.len())
            .map(|end| end - HEADER_LEN + 4);
        lower.clear();
        return Err(Reject::Error {
            rcode: Rcode::NotImp,
            question_len,
        });
    }
    let qd = u16_at(p, 4).ok_or(Reject::Drop)?;
    let an = u16_at(p, 6).ok_or(Reject::Drop)?;
    let ns = u16_at(p, 8).ok_or(Reject::Drop)?;
    let ar = u16_at(p, 10).ok_or(Reject::Drop)?;
    if qd != 1 {
        return Err(form(None));
    }
    let name_end = read_qname(p, HEADER_LEN, lower).ok_or(form(None))?;
    let qtype = u16_at(p, name_end).ok_or(form(None))?;
    let qclass = u16_at(p, name_end + 2).ok_or(form(None))?;
    let qname = &p[HEADER_LEN..name_end];
    let question_len = Some(qname.len() + 4);
    let mut pos = name_end + 4;
    // Skip answer and authority records (a query should have none; be lenient).
    for _ in 0..(u32::from(an) + u32::from(ns)) {
        pos = skip_rr(p, pos).ok_or(form(question_len))?.0;
    }
    let mut edns = None;
    for _ in 0..ar {
        let name_start = pos;
        let (end, rtype, rdata) = skip_rr(p, pos).ok_or(form(question_len))?;
        if rtype == TYPE_OPT {
            // RFC 6891 §6.1.1: one OPT only, owned by the root.
            if edns.is_some() || p[name_start] != 0 {
                return Err(form(question_len));
            }
            let udp_size = u16_at(p, name_start + 3).ok_or(form(question_len))?;
            let version = *p.get(name_start + 6).ok_or(form(question_len))?;
            let flags = *p.get(name_start + 7).ok_or(form(question_len))?;
            let (ecs, nsid) = parse_options(rdata).map_err(|_| form(question_len))?;
            edns = Some(Edns {
                udp_size: udp_size.max(512),
                version,
                ecs,
                dnssec_ok: flags & 0x80 != 0,
                nsid,
            });
        }
        pos = end;
    }
    if let Some(e) = edns
        && e.version != 0
    {
        return Err(Reject::BadVers {
            question_len: qname.len() + 4,
            dnssec_ok: e.dnssec_ok,
            nsid: e.nsid,
        });
    }
    Ok(Query {
        id: u16::from_be_bytes([p[0], p[1]]),
        flags,
        qname,
        qtype,
        qclass,
        edns,
    })
}

/// Skips one RR at `pos`: (end, type, rdata).
fn skip_rr(p: &[u8], pos: usize) -> Option<(usize, u16, &[u8])> {
    let n = skip_name(p, pos)?;
    let rtype = u16_at(p, n)?;
    let rdlen = usize::from(u16_at(p, n + 8)?);
    let start = n + 10;
    let rdata = p.get(start..start + rdlen)?;
    Some((start + rdlen, rtype, rdata))
}

/// Option code of NSID (RFC 5001).
const OPTION_NSID: u16 = 3;
/// Option code of Extended DNS Errors (RFC 8914).
const OPTION_EDE: u16 = 15;

/// The options of an OPT record: (ECS, whether NSID was asked for).
fn parse_options(mut rdata: &[u8]) -> Result<(Option<ClientSubnet>, bool), EcsError> {
    let mut ecs = None;
    let mut nsid = false;
    while !rdata.is_empty() {
        let [c0, c1, l0, l1, rest @ ..] = rdata else {
            return Err(EcsError::Short);
        };
        let code = u16::from_be_bytes([*c0, *c1]);
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let data = rest.get(..len).ok_or(EcsError::Short)?;
        if code == crate::ecs::OPTION_CODE {
            if ecs.is_some() {
                return Err(EcsError::Short);
            }
            ecs = Some(ClientSubnet::parse(data)?);
        } else if code == OPTION_NSID {
            nsid = true; // a query's NSID option is empty (RFC 5001 §2.1); ignore any data
        }
        rdata = &rest[len..];
    }
    Ok((ecs, nsid))
}

/// What goes into a reply's OPT record besides our UDP size.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptReply<'a> {
    /// Upper 8 bits of the extended rcode (1 = BADVERS).
    pub ext_rcode: u8,
    /// The DO bit, copied from the query (RFC 3225 §3).
    pub dnssec_ok: bool,
    /// ECS reply: the query's option and the scope.
    pub ecs: Option<(&'a ClientSubnet, u8)>,
    /// NSID payload, when the query asked and the server has one (RFC 5001).
    pub nsid: Option<&'a [u8]>,
    /// Extended DNS Error info code, no extra text (RFC 8914).
    pub ede: Option<u16>,
}

/// Appends an OPT record (our UDP size, extended rcode, DO, ECS and NSID as given).
pub fn write_opt(out: &mut Vec<u8>, opt: OptReply<'_>) {
    out.push(0); // root
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
    // ext rcode, version 0, flags (DO is the top bit), Z
    out.extend_from_slice(&[opt.ext_rcode, 0, u8::from(opt.dnssec_ok) << 7, 0]);
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    if let Some((e, scope)) = opt.ecs {
        e.write_reply(scope, out);
    }
    if let Some(id) = opt.nsid {
        // `config` keeps it at most 255 bytes.
        let len = u16::try_from(id.len()).unwrap_or(0);
        out.extend_from_slice(&OPTION_NSID.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&id[..usize::from(len)]);
    }
    if let Some(code) = opt.ede {
        out.extend_from_slice(&OPTION_EDE.to_be_bytes());
        out.extend_from_slice(&2u16.to_be_bytes());
        out.extend_from_slice(&code.to_be_bytes());
    }
    let rdlen = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
}

/// Sets the header counts of `out`.
pub fn set_counts(out: &mut [u8], qd: u16, an: u16, ns: u16, ar: u16) {
    out[4..6].copy_from_slice(&qd.to_be_bytes());
    out[6..8].copy_from_slice(&an.to_be_bytes());
    out[8..10].copy_from_slice(&ns.to_be_bytes());
    out[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Header flags of a reply: QR, the query's opcode, RD and CD copied, AA as given,
/// `rcode` (low 4 bits).
pub fn reply_flags(query_flags: u16, aa: bool, tc: bool, rcode: u8) -> u16 {
    let mut f = 0x8000 | (query_flags & 0x7800) | (query_flags & 0x0100) | (query_flags & 0x0010);
    if aa {
        f |= 0x0400;
    }
    if tc {
        f |= 0x0200;
    }
    f | u16::from(rcode & 0x0f)
}

/// Writes an error reply for a rejected packet into `out` (cleared first); `nsid` is
/// the server's NSID, sent in a BADVERS reply when the query asked for it.
/// Returns false when nothing should be sent.
pub fn write_reject(p: &[u8], reject: Reject, nsid: Option<&[u8]>, out: &mut Vec<u8>) -> bool {
    out.clear();
    let (rcode, question_len, badvers) = match reject {
        Reject::Drop => return false,
        Reject::Error {
            rcode,
            question_len,
        } => (rcode as u8, question_len, None),
        Reject::BadVers {
            question_len,
            dnssec_ok,
            nsid: asked,
        } => (
            0,
            Some(question_len),
            Some(OptReply {
                ext_rcode: 1,
                dnssec_ok,
                ecs: None,
                nsid: nsid.filter(|_| asked),
                ede: None,
            }),
        ),
    };
    let flags = u16_at(p, 2).unwrap_or(0);
    out.extend_from_slice(&p[..2]);
    out.extend_from_slice(&reply_flags(flags, false, false, rcode).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    let qd = match question_len.and_then(|l| p.get(HEADER_LEN..HEADER_LEN + l)) {
        Some(q) => {
            out.extend_from_slice(q);
            1
        }
        None => 0,
    };
    let ar = if let Some(opt) = badvers {
        // BADVERS = 16: upper 8 bits (1) in the OPT TTL, lower 4 bits (0) in the header.
        write_opt(out, opt);
        1
    } else {
        0
    };
    set_counts(out, qd, 0, 0, ar);
    true
}

/// Lower-case wire form of a name (length-prefixed labels, ending in 0).
pub type WireName = Box<[u8]>;

/// Encodes `name` as lower-case wire bytes.
pub fn wire_name(name: &hickory_proto::rr::Name) -> WireName {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut p = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        if let Some(o) = opt {
            p.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0]);
            p.extend_from_slice(&(o.len() as u16).to_be_bytes());
            p.extend_from_slice(o);
        }
        p
    }

    #[test]
    fn parses_plain_and_ecs_queries() {
        let mut lower = Vec::new();
        let p = query(b"\x03App\x03svc\x07example\x00", 1, None);
        let q = parse(&p, &mut lower).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.qname, b"\x03App\x03svc\x07example\x00");
        assert_eq!(lower, b"\x03app\x03svc\x07example\x00");
        assert_eq!(q.udp_limit(), 512);
        let p = query(
            b"\x01a\x00",
            28,
            Some(&[0, 8, 0, 7, 0, 1, 24, 0, 198, 51, 100]),
        );
        let q = parse(&p, &mut lower).unwrap();
        let e = q.edns.unwrap();
        assert_eq!(e.udp_size, 4096);
        assert_eq!(e.ecs.unwrap().source_len, 24);
        assert!(!e.dnssec_ok && !e.nsid);
        // DO set (top bit of the OPT flags) and an empty NSID option.
        let mut p = query(b"\x01a\x00", 1, Some(&[0, 3, 0, 0]));
        let n = p.len();
        p[n - 4 - 4] = 0x80;
        let e = parse(&p, &mut lower).unwrap().edns.unwrap();
        assert!(e.dnssec_ok && e.nsid && e.ecs.is_none());
        assert_eq!(q.udp_limit(), 1232);
    }

    #[test]
    fn rejects_bad_packets() {
        let mut lower = Vec::new();
        assert_eq!(parse(&[0; 5], &mut lower).unwrap_err(), Reject::Drop);
        let mut p = query(b"\x01a\x00", 1, None);
        p[2] |= 0x80;
        assert_eq!(parse(&p, &mut lower).unwrap_err(), Reject::Drop);
        let p = query(b"\xc0\x0c", 1, None);
        assert!(matches!(
            parse(&p, &mut lower),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        let p = query(b"\x01a\x00", 1, Some(&[0, 8, 0, 3, 0, 1, 24]));
        assert!(matches!(
            parse(&p, &mut lower),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                question_len: Some(7)
            })
        ));
        let mut p = query(b"\x01a\x00", 6, None);
        p[2] |= 4 << 3; // NOTIFY: NOTIMP with the question echoed
        assert_eq!(
            parse(&p, &mut lower).unwrap_err(),
            Reject::Error {
                rcode: Rcode::NotImp,
                question_len: Some(7)
            }
        );
        p.truncate(p.len() - 1);
        assert!(matches!(
            parse(&p, &mut lower),
            Err(Reject::Error {
                rcode: Rcode::NotImp,
                question_len: None
            })
        ));
        let mut p = query(b"\x01a\x00", 1, Some(&[]));
        let n = p.len();
        p[n - 5] = 1; // EDNS version 1
        assert!(matches!(parse(&p, &mut lower), Err(Reject::BadVers { .. })));
        let mut out = Vec::new();
        assert!(write_reject(
            &p,
            Reject::BadVers {
                question_len: 7,
                dnssec_ok: true,
                nsid: true
            },
            Some(b"ns-a"),
            &mut out
        ));
        assert_eq!(out[3] & 0x0f, 0);
        // OPT: root, type, size, ext rcode 1, version 0, DO, Z, rdlen 8, NSID "ns-a".
        assert_eq!(
            &out[out.len() - 19..],
            &[
                0, 0, 41, 0x04, 0xd0, 1, 0, 0x80, 0, 0, 8, 0, 3, 0, 4, b'n', b's', b'-', b'a'
            ]
        );
    }

    #[test]
    fn truncated_packets_never_panic() {
        let p = query(
            b"\x03app\x03svc\x07example\x00",
            1,
            Some(&[0, 8, 0, 7, 0, 1, 24, 0, 198, 51, 100]),
        );
        let mut lower = Vec::new();
        for n in 0..p.len() {
            let _ = parse(&p[..n], &mut lower);
        }
    }
}
