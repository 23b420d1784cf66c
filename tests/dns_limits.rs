//! Limits of the built binary: response rate limiting per client prefix with slip
//! (TC), the TCP idle timeout and the TCP connection cap.

#[path = "support/dns.rs"]
mod dns_support;

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use causeway_testbed::testing::wait_for;
use dns_support::*;
use hickory_proto::rr::RecordType;

const CONFIG: &str = r#"apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {name: limits}
spec:
  tcp: {idleTimeout: 1s, maxConnections: 2}
  rateLimit: {responsesPerSecond: 5, burst: 5, slip: 2, exempt: ["127.0.0.2/32"]}
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {name: z}
spec:
  origin: svc.example.
  soa: {rname: hostmaster.svc.example.}
  nameservers: [{name: ns1, addresses: [127.0.0.53]}]
  records:
    - {name: www, type: A, data: [192.0.2.10]}
"#;

/// Sends `n` queries from `bind` as fast as possible and counts (answers, TC, silent).
fn burst(s: &Server, bind: &str, n: usize) -> (usize, usize, usize) {
    let sock = UdpSocket::bind(bind).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let q = build_query("www.svc.example.", RecordType::A, true, None);
    for _ in 0..n {
        sock.send_to(&q, s.dns).unwrap();
    }
    let (mut ok, mut tc) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Ok((len, _)) = sock.recv_from(&mut buf) {
        let m = hickory_proto::op::Message::from_vec(&buf[..len]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty());
            tc += 1;
        } else {
            ok += 1;
        }
    }
    (ok, tc, n - ok - tc)
}

#[test]
fn rate_limit_slips_to_tc_per_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&write_config(dir.path(), "l.yaml", CONFIG));
    let (ok, tc, dropped) = burst(&s, "127.0.0.1:0", 40);
    eprintln!("limited client: {ok} answered, {tc} truncated, {dropped} dropped");
    assert!((5..=8).contains(&ok), "about the burst is answered: {ok}");
    assert!(
        tc >= 10 && dropped >= 10,
        "slip 2: half truncated, half dropped ({tc}/{dropped})"
    );
    // Limited clients still get full answers over TCP.
    assert_eq!(
        addrs(&s.tcp("www.svc.example.", RecordType::A, None)),
        vec!["192.0.2.10"]
    );
    // An exempt address is never limited.
    let (ok, tc, dropped) = burst(&s, "127.0.0.2:0", 40);
    assert_eq!((ok, tc, dropped), (40, 0, 0));
    let (_, m) = s.http("GET", "/metrics", "");
    assert!(
        m.contains(r#"causeway_dns_truncated_total{reason="rate_limit"}"#),
        "{m}"
    );
}

#[test]
fn tcp_idle_timeout_and_connection_cap() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&write_config(dir.path(), "l.yaml", CONFIG));
    // Idle for longer than 1 s: the server closes the connection.
    let mut idle = TcpStream::connect(s.dns).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without data");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
    // Two connections open: a third is closed at once.
    let a = TcpStream::connect(s.dns).unwrap();
    let b = TcpStream::connect(s.dns).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut c = TcpStream::connect(s.dns).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = build_query("www.svc.example.", RecordType::A, true, None);
    // The server may already have closed it: a failed write is fine too.
    let _ = std::io::Write::write_all(&mut c, &[&(q.len() as u16).to_be_bytes()[..], &q].concat());
    assert!(read_tcp(&mut c).is_none(), "over the cap: no answer");
    drop((a, b));
    // Below the cap again (after the idle ones are gone): answered.
    wait_for(
        "an answer below the cap",
        Duration::from_secs(5),
        POLL,
        || {
            let mut d = TcpStream::connect(s.dns).unwrap();
            d.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            write_tcp(&mut d, &q);
            read_tcp(&mut d).is_some()
        },
    );
}
