//! Hostile packets against the built binary: random and mutated UDP packets, and
//! garbage over TCP. The server must keep answering. Bounded in count and time.

#[path = "support/dns.rs"]
mod dns_support;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use causeway_testbed::testing::Rng;
use causeway_testbed::testing::mutate::mutate;
use dns_support::*;
use hickory_proto::rr::RecordType;

#[test]
fn random_and_mutated_packets_do_not_stop_the_server() {
    let s = Server::start(&example_config());
    let seeds: Vec<Vec<u8>> = vec![
        build_query(
            "app.svc.example.",
            RecordType::A,
            true,
            Some(("198.51.100.0", 24)),
        ),
        build_query("www.svc.example.", RecordType::AAAA, false, None),
        build_query("x.team.svc.example.", RecordType::NS, true, None),
        build_query(
            "svc.example.",
            RecordType::ANY,
            true,
            Some(("2001:db8::", 32)),
        ),
    ];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    // A fixed seed, so failures reproduce.
    let mut rng = Rng::new(0x5eed_1234_abcd_ef01);
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let mut sent = 0;
    let mut replies = 0;
    for i in 0..20_000 {
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
        let mut p = if i % 5 == 0 {
            let n = rng.below(300);
            rng.bytes(n)
        } else {
            let mut p = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &mut p);
            p
        };
        if let Some(b) = p.get_mut(2) {
            *b &= 0x7f; // keep QR clear so most get parsed
        }
        let _ = sock.send_to(&p, s.dns);
        sent += 1;
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            replies += 1;
            // Whatever comes back must be a response header.
            assert!(n >= 12 && buf[2] & 0x80 != 0, "a reply is a DNS response");
        }
        if i % 200 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    eprintln!("sent {sent} hostile packets, {replies} replies read");
    assert!(sent > 1000);
    assert!(s.alive(), "server survived");
    assert_eq!(
        addrs(&s.udp("www.svc.example.", RecordType::A, true, None)),
        vec!["192.0.2.10"]
    );
}

#[test]
fn tcp_garbage_and_idle_connections_are_closed_safely() {
    let s = Server::start(&example_config());
    let mut rng = Rng::new(42);
    for i in 0..200 {
        let mut c = TcpStream::connect(s.dns).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = rng.below(600);
        let mut junk = rng.bytes(n);
        if i % 3 == 0 {
            // A plausible length prefix with a short or garbage body.
            let len = (rng.below(70_000) as u16).to_be_bytes();
            junk.splice(0..0, len);
        }
        let _ = c.write_all(&junk);
    }
    // Zero-length message closes the connection; then a normal query still works.
    let mut c = TcpStream::connect(s.dns).unwrap();
    c.write_all(&[0, 0]).unwrap();
    assert!(s.alive());
    let r = s.tcp("www.svc.example.", RecordType::A, None);
    assert_eq!(addrs(&r), vec!["192.0.2.10"]);
}
