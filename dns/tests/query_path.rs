//! Component tests of the query path ([`Handler`]) in process: a bounded
//! random/mutated-packet run on stable (the cargo-fuzz target does the same without
//! bounds), and cached replies byte-equal to freshly prepared ones.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use causeway_dns::LoadedConfig;
use causeway_dns::handler::{Handler, Transport};
use causeway_dns::state::ServerState;
use causeway_testbed::testing::Rng;
use causeway_testbed::testing::mutate::mutate;
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

fn shared() -> Arc<ServerState> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dns/causeway-dns.yaml");
    Arc::new(ServerState::serving(
        &LoadedConfig::load(&path).expect("the example config loads"),
    ))
}

const NAMES: &[&str] = &[
    "app.svc.example.",
    "APP.Svc.Example.",
    "www.svc.example.",
    "api.svc.example.",
    "canary.svc.example.",
    "primary.svc.example.",
    "all.svc.example.",
    "nx.svc.example.",
    "_tcp.svc.example.",
    "a.team.svc.example.",
    "svc.example.",
    "example.com.",
];
const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::NS,
    RecordType::SOA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::ANY,
    RecordType::CAA,
    RecordType::SRV,
    RecordType::DS,
];

fn query(rng: &mut Rng) -> Vec<u8> {
    let mut m = Message::query();
    let name = NAMES[rng.below(NAMES.len())];
    m.add_query(Query::query(
        Name::from_ascii(name).expect("NAMES are valid names"),
        TYPES[rng.below(TYPES.len())],
    ));
    match rng.below(3) {
        0 => {}
        1 => m.edns = Some(Edns::new()),
        _ => {
            let mut e = Edns::new();
            let (addr, len): (IpAddr, u8) = if rng.below(2) == 0 {
                (IpAddr::from([198, 51, rng.below(256) as u8, 0]), 24)
            } else {
                (IpAddr::from([0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0]), 48)
            };
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(addr, len, 0)));
            m.edns = Some(e);
        }
    }
    m.to_vec().expect("a query encodes")
}

#[test]
fn mutated_packets_get_well_formed_replies_or_none() {
    let shared = shared();
    let mut h = Handler::new(shared);
    let mut rng = Rng::new(0xdead_beef_1234_5678);
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    let (mut replies, mut total) = (0, 0);
    for i in 0..200_000u32 {
        if start.elapsed().as_secs() > 60 {
            break;
        }
        total += 1;
        let mut p = if i % 7 == 0 {
            {
                let n = rng.below(200);
                rng.bytes(n)
            }
        } else {
            let mut q = query(&mut rng);
            if i % 3 != 0 {
                mutate(&mut rng, &mut q);
            }
            q
        };
        if i % 11 == 0 && p.len() > 2 {
            p[2] &= 0x7f;
        }
        let src: IpAddr = if i % 2 == 0 {
            "127.0.0.1".parse().unwrap()
        } else {
            "::1".parse().unwrap()
        };
        let transport = if i % 4 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        if !h.handle(&p, src, transport, &mut out) {
            continue;
        }
        replies += 1;
        assert_eq!(out[..2], p[..2], "reply ID = query ID");
        let m = Message::from_vec(&out).unwrap_or_else(|e| {
            panic!("reply does not parse ({e}) for query {p:02x?}: {out:02x?}")
        });
        assert_eq!(m.metadata.message_type, MessageType::Response);
        if transport == Transport::Udp {
            assert!(out.len() <= 1232, "UDP reply of {} bytes", out.len());
        }
    }
    eprintln!("{total} packets, {replies} replies");
    assert!(replies > total / 3);
}

#[test]
fn cached_replies_equal_fresh_ones() {
    let shared = shared();
    let mut warm = Handler::new(shared.clone());
    let mut rng = Rng::new(7);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5_000 {
        let q = query(&mut rng);
        let src: IpAddr = "127.0.0.1".parse().unwrap();
        let mut cold = Handler::new(shared.clone());
        let sent_a = warm.handle(&q, src, Transport::Udp, &mut a);
        let sent_b = cold.handle(&q, src, Transport::Udp, &mut b);
        assert_eq!(sent_a, sent_b);
        assert_eq!(
            a,
            b,
            "cached reply differs for {:?}",
            Message::from_vec(&q).map(|m| m.queries)
        );
        let m = Message::from_vec(&a).unwrap();
        assert_ne!(m.metadata.response_code, ResponseCode::ServFail);
    }
}
