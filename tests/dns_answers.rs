//! The built `causeway dns` binary with the shipped example config, over real UDP and
//! TCP on loopback: static data, negative answers, referrals, every policy, ECS
//! scope, truncation, the HTTP API and explain.

#[path = "support/dns.rs"]
mod dns_support;

use std::net::TcpStream;
use std::time::Duration;

use causeway_testbed::testing::{run_fails, run_ok, wait_for};
use dns_support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

#[test]
fn static_data_soa_ns_and_negative_answers() {
    let s = Server::start(&example_config());

    let r = s.udp("www.svc.example.", RecordType::A, true, None);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative, "AA on authoritative data");
    assert_eq!(addrs(&r), vec!["192.0.2.10"]);
    assert_eq!(ecs_of(&r), None, "no ECS in a reply to a query without it");

    let r = s.udp("www.svc.example.", RecordType::AAAA, false, None);
    assert_eq!(addrs(&r), vec!["2001:db8::10"]);
    assert!(
        r.edns.is_none(),
        "no OPT in a reply to a query without EDNS"
    );

    // NXDOMAIN with the SOA in authority at the negative TTL (min(300, 60)).
    let r = s.udp("nope.svc.example.", RecordType::A, true, None);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities.len(), 1);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(r.authorities[0].ttl, 60);

    // NODATA: the name exists, the type does not.
    let r = s.udp("www.svc.example.", RecordType::TXT, true, None);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);

    // Empty non-terminal (_tcp exists only as the parent of _https._tcp): NODATA.
    let r = s.udp("_tcp.svc.example.", RecordType::A, true, None);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);

    // SOA and NS at the apex, NS with glue.
    let r = s.udp("svc.example.", RecordType::SOA, true, None);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].record_type(), RecordType::SOA);
    let r = s.udp("svc.example.", RecordType::NS, true, None);
    assert_eq!(r.answers.len(), 1);
    assert!(matches!(&r.answers[0].data, RData::NS(n) if n.0.to_ascii() == "ns1.svc.example."));
    assert!(
        r.additionals
            .iter()
            .any(|a| matches!(&a.data, RData::A(a) if a.0.to_string() == "127.0.0.53"))
    );

    // MX, SRV, CAA, TXT.
    for t in [RecordType::MX, RecordType::TXT, RecordType::CAA] {
        let r = s.udp("svc.example.", t, true, None);
        assert_eq!(r.answers.len(), 1, "{t}");
        assert_eq!(r.answers[0].record_type(), t);
    }
    let r = s.udp("_https._tcp.svc.example.", RecordType::SRV, true, None);
    assert_eq!(r.answers.len(), 1);

    // CNAME chain into a GSLB name: CNAME + the chosen A.
    let r = s.udp(
        "api.svc.example.",
        RecordType::A,
        true,
        Some(("198.51.100.0", 24)),
    );
    assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addrs(&r), vec!["192.0.2.11"]);
    assert_eq!(
        ecs_of(&r),
        Some((24, 24)),
        "the scope of the GSLB answer in the chain"
    );

    // Referral for the delegated child: not authoritative, NS in authority, glue.
    let r = s.udp("host.team.svc.example.", RecordType::A, true, None);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.metadata.authoritative);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::NS);
    assert!(
        r.additionals
            .iter()
            .any(|a| matches!(&a.data, RData::A(a) if a.0.to_string() == "127.0.0.54"))
    );

    // Outside our zones: REFUSED.
    let r = s.udp("example.com.", RecordType::A, true, None);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);

    // Minimal ANY (RFC 8482): one RRset.
    let r = s.udp("svc.example.", RecordType::ANY, true, None);
    let types: std::collections::HashSet<_> = r.answers.iter().map(|a| a.record_type()).collect();
    assert_eq!(types.len(), 1, "{types:?}");

    // Case-insensitive, with the query's spelling echoed.
    let r = s.udp("WwW.SvC.ExAmPlE.", RecordType::A, true, None);
    assert_eq!(addrs(&r), vec!["192.0.2.10"]);
    assert_eq!(r.queries[0].name().to_ascii(), "WwW.SvC.ExAmPlE.");
}

#[test]
fn tcp_answers_and_pipelining() {
    let s = Server::start(&example_config());
    let r = s.tcp("www.svc.example.", RecordType::AAAA, None);
    assert_eq!(addrs(&r), vec!["2001:db8::10"]);
    let r = s.tcp("app.svc.example.", RecordType::A, Some(("203.0.113.0", 24)));
    assert_eq!(addrs(&r), vec!["192.0.2.21"]);
    assert_eq!(ecs_of(&r), Some((24, 24)));

    // Three queries written before reading anything: three answers, IDs matched.
    let mut c = TcpStream::connect(s.dns).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let names = ["www.svc.example.", "mail.svc.example.", "nope.svc.example."];
    let mut ids = Vec::new();
    for n in names {
        let q = build_query(n, RecordType::A, true, None);
        ids.push(u16::from_be_bytes([q[0], q[1]]));
        write_tcp(&mut c, &q);
    }
    for (i, id) in ids.iter().enumerate() {
        let m = Message::from_vec(&read_tcp(&mut c).expect("pipelined reply")).unwrap();
        assert_eq!(m.metadata.id, *id, "reply {i} in order");
    }
}

#[test]
fn ipv6_listener() {
    let s = Server::start_with(&example_config(), &["--listen", "[::1]:0"]);
    let v6 = s
        .listening
        .all("dns", "udp")
        .into_iter()
        .find(|a| a.ip() == std::net::Ipv6Addr::LOCALHOST)
        .unwrap_or_else(|| panic!("an IPv6 listener in the log: {}", s.listening));
    let sock = std::net::UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = build_query(
        "app.svc.example.",
        RecordType::AAAA,
        true,
        Some(("2001:db8:100::", 48)),
    );
    sock.send_to(&q, v6).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        addrs(&r),
        vec!["2001:db8::11"],
        "IPv6 latency entry picks idc-bj"
    );
    assert_eq!(ecs_of(&r), Some((48, 48)));
}

#[test]
fn ecs_scope_cases() {
    let s = Server::start(&example_config());
    // (name, qtype, ECS, expected addresses, expected (source, scope))
    type Case<'a> = (&'a str, RecordType, (&'a str, u8), &'a [&'a str], (u8, u8));
    let cases: &[Case] = &[
        // latency: matched /24 → scope 24
        (
            "app.svc.example.",
            RecordType::A,
            ("198.51.100.0", 24),
            &["192.0.2.11"],
            (24, 24),
        ),
        (
            "app.svc.example.",
            RecordType::A,
            ("203.0.113.0", 24),
            &["192.0.2.21"],
            (24, 24),
        ),
        // a /32 source inside a /24 entry: scope 24 (the prefix that decided)
        (
            "app.svc.example.",
            RecordType::A,
            ("198.51.100.77", 32),
            &["192.0.2.11"],
            (32, 24),
        ),
        // no data for the client: default order, scope = source (another client may differ)
        (
            "app.svc.example.",
            RecordType::A,
            ("192.0.2.0", 24),
            &["192.0.2.11"],
            (24, 24),
        ),
        // ECS /0: the resolver asks for no tailoring → scope 0
        (
            "app.svc.example.",
            RecordType::A,
            ("0.0.0.0", 0),
            &["192.0.2.11"],
            (0, 0),
        ),
        // IPv6 entry /48
        (
            "app.svc.example.",
            RecordType::AAAA,
            ("2001:db8:100::", 56),
            &["2001:db8::11"],
            (56, 48),
        ),
        // static data: does not depend on the client → scope 0
        (
            "www.svc.example.",
            RecordType::A,
            ("198.51.100.0", 24),
            &["192.0.2.10"],
            (24, 0),
        ),
        // failover and all-healthy: scope 0
        (
            "primary.svc.example.",
            RecordType::A,
            ("198.51.100.0", 24),
            &["192.0.2.11"],
            (24, 0),
        ),
        (
            "all.svc.example.",
            RecordType::A,
            ("198.51.100.0", 24),
            &["192.0.2.11", "192.0.2.21"],
            (24, 0),
        ),
        // NXDOMAIN: scope 0
        (
            "nope.svc.example.",
            RecordType::A,
            ("198.51.100.0", 24),
            &[],
            (24, 0),
        ),
    ];
    for (name, t, ecs, want, want_ecs) in cases {
        for transport in ["udp", "tcp"] {
            let r = if transport == "udp" {
                s.udp(name, *t, true, Some(*ecs))
            } else {
                s.tcp(name, *t, Some(*ecs))
            };
            assert_eq!(addrs(&r), want.to_vec(), "{transport} {name} {t} {ecs:?}");
            assert_eq!(
                ecs_of(&r),
                Some(*want_ecs),
                "{transport} {name} {t} {ecs:?}"
            );
        }
    }
    // Without ECS: the resolver's address (127.0.0.1 → the 127.0.0.0/8 entry: gcp-us).
    let r = s.udp("app.svc.example.", RecordType::A, true, None);
    assert_eq!(addrs(&r), vec!["192.0.2.31"]);
    assert_eq!(ecs_of(&r), None);

    // Weighted: one answer, scope 24, the same for every host of a /24.
    let r = s.udp(
        "canary.svc.example.",
        RecordType::A,
        true,
        Some(("10.1.2.0", 24)),
    );
    assert_eq!(r.answers.len(), 1);
    assert_eq!(ecs_of(&r), Some((24, 24)));
    let r32 = s.udp(
        "canary.svc.example.",
        RecordType::A,
        true,
        Some(("10.1.2.99", 32)),
    );
    assert_eq!(addrs(&r32), addrs(&r));
    assert_eq!(ecs_of(&r32), Some((32, 24)));

    // Malformed ECS (bits beyond the source prefix): FORMERR.
    let mut q = build_query(
        "app.svc.example.",
        RecordType::A,
        true,
        Some(("198.51.100.0", 24)),
    );
    let n = q.len();
    q[n - 1] = 0x65; // 198.51.100 → 198.51.101 with /23 below
    q[n - 5] = 23;
    let r = Message::from_vec(&s.udp_raw(&q).expect("a reply")).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn every_policy_over_the_wire() {
    let s = Server::start(&example_config());
    // failover: tier 0 only
    let r = s.udp("primary.svc.example.", RecordType::A, true, None);
    assert_eq!(addrs(&r), vec!["192.0.2.11"]);
    // all-healthy: maxAnswers 2 of 3
    let r = s.udp("all.svc.example.", RecordType::A, true, None);
    assert_eq!(r.answers.len(), 2);
    // weighted 90/10 over 300 client networks: one answer each, both clusters used,
    // idc-bj most, and stable on repeat.
    let mut idc = 0;
    let mut aws = 0;
    for i in 0..300u32 {
        let net = format!("10.{}.{}.0", i / 200, i % 200);
        let a = addrs(&s.udp("canary.svc.example.", RecordType::A, true, Some((&net, 24))));
        assert_eq!(a.len(), 1);
        match a[0].as_str() {
            "192.0.2.11" => idc += 1,
            "192.0.2.21" => aws += 1,
            other => panic!("unexpected {other}"),
        }
        if i % 50 == 0 {
            let again = addrs(&s.udp("canary.svc.example.", RecordType::A, true, Some((&net, 24))));
            assert_eq!(again, a, "consistent for {net}/24");
        }
    }
    assert!(
        idc > 220 && aws > 5,
        "90/10 split: idc-bj {idc}, aws-sg {aws}"
    );
    // latency: explained above and in ecs_scope_cases; here via the API measurements.
    let r = s.udp(
        "app.svc.example.",
        RecordType::A,
        true,
        Some(("198.51.100.0", 24)),
    );
    assert_eq!(addrs(&r), vec!["192.0.2.11"]);
    let (code, body) = s.http(
        "POST",
        "/v1/latency",
        r#"{"measurements":[{"prefix":"198.51.100.0/24","cluster":"gcp-us","rttMs":1.5}]}"#,
    );
    assert_eq!(code, 200, "{body}");
    wait_for(
        "a posted measurement changes the latency answer",
        Duration::from_secs(10),
        POLL,
        || {
            addrs(&s.udp(
                "app.svc.example.",
                RecordType::A,
                true,
                Some(("198.51.100.0", 24)),
            )) == vec!["192.0.2.31"]
        },
    );
    // A longer posted prefix narrows the scope for clients inside it.
    let (code, _) = s.http(
        "POST",
        "/v1/latency",
        r#"{"measurements":[{"prefix":"198.51.100.128/25","cluster":"aws-sg","rttMs":0.5}]}"#,
    );
    assert_eq!(code, 200);
    wait_for(
        "the /25 entry wins for its clients",
        Duration::from_secs(10),
        POLL,
        || {
            let r = s.udp(
                "app.svc.example.",
                RecordType::A,
                true,
                Some(("198.51.100.128", 25)),
            );
            addrs(&r) == vec!["192.0.2.21"] && ecs_of(&r) == Some((25, 25))
        },
    );
    let r = s.udp(
        "app.svc.example.",
        RecordType::A,
        true,
        Some(("198.51.100.0", 24)),
    );
    assert_eq!(addrs(&r), vec!["192.0.2.31"]);
    assert_eq!(
        ecs_of(&r),
        Some((24, 24)),
        "the /24 has a /25 inside: scope = source"
    );
}

#[test]
fn external_health_reports_and_explain() {
    let s = Server::start(&example_config());
    let ask = || {
        addrs(&s.udp(
            "app.svc.example.",
            RecordType::A,
            true,
            Some(("198.51.100.0", 24)),
        ))
    };
    assert_eq!(ask(), vec!["192.0.2.11"]);
    let (code, body) = s.http(
        "POST",
        "/v1/health",
        r#"{"service":"app.svc.example.","cluster":"idc-bj","health":"unhealthy","reason":"0 ready replicas"}"#,
    );
    assert_eq!(code, 200, "{body}");
    wait_for("next lowest RTT", Duration::from_secs(5), POLL, || {
        ask() == vec!["192.0.2.21"]
    });
    let (code, body) = s.http(
        "GET",
        "/v1/explain?name=app.svc.example.&client=198.51.100.0%2F24",
        "",
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["policy"], "latency");
    assert_eq!(v["ecsScope"], 24);
    assert_eq!(v["latencyPrefix"], "198.51.100.0/24");
    let idc = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"] == "idc-bj")
        .unwrap();
    assert_eq!(idc["healthy"], false);
    assert!(
        idc["external"]
            .as_str()
            .unwrap()
            .contains("0 ready replicas")
    );

    // Bad input: 400 naming the field; the server keeps going.
    let (code, body) = s.http(
        "POST",
        "/v1/health",
        r#"{"cluster":"Bad/ID","health":"unhealthy"}"#,
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = s.http(
        "POST",
        "/v1/latency",
        r#"{"measurements":[{"prefix":"10.0.0.0/8","cluster":"a","rttMs":-1}]}"#,
    );
    assert_eq!(code, 400);
    assert!(body.contains("rttMs"), "{body}");
    let (code, _) = s.http("POST", "/v1/latency", "not json");
    assert_eq!(code, 400);

    // Clearing the report brings idc-bj back.
    let (code, _) = s.http("POST", "/v1/health", r#"{"reports":[{"cluster":"idc-bj","health":"unknown"},{"service":"app.svc.example.","cluster":"idc-bj","health":"unknown"}]}"#);
    assert_eq!(code, 200);
    wait_for("idc-bj back", Duration::from_secs(5), POLL, || {
        ask() == vec!["192.0.2.11"]
    });

    // The CLI asks the running server.
    let text = run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "dns",
            "explain",
            "--server",
            &s.api.to_string(),
            "--name",
            "app.svc.example.",
            "--client",
            "203.0.113.5/24",
        ]),
    );
    assert!(text.contains("* aws-sg"), "{text}");
    assert!(text.contains("ecs scope: /24"), "{text}");
}

#[test]
fn explain_offline_from_the_config() {
    let out = run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["dns", "explain", "--config"])
            .arg(example_config())
            .args([
                "--name",
                "app.svc.example.",
                "--client",
                "198.51.100.0/24",
                "--json",
            ]),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["answer"][0], "192.0.2.11");
    assert_eq!(v["ecsScope"], 24);
    // www is not a GSLB name.
    let err = run_fails(
        std::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["dns", "explain", "--config"])
            .arg(example_config())
            .args(["--name", "www.svc.example.", "--client", "198.51.100.0/24"]),
    );
    assert!(err.contains("not a GSLB name"), "{err}");
}

#[test]
fn truncation_and_tcp_retry() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<String> = (0..12)
        .map(|i| format!("\"{i:02}{}\"", "x".repeat(150)))
        .collect();
    let mid: Vec<String> = (0..4)
        .map(|i| format!("\"{i:02}{}\"", "y".repeat(150)))
        .collect();
    let cfg = format!(
        r#"apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: z}}
spec:
  origin: big.example.
  soa: {{rname: h.big.example.}}
  nameservers: [{{name: ns1, addresses: [127.0.0.53]}}]
  records:
    - name: big
      type: TXT
      data: {big:?}
    - name: mid
      type: TXT
      data: {mid:?}
"#
    );
    let path = write_config(dir.path(), "big.yaml", &cfg);
    let s = Server::start(&path);
    // > 1232 bytes: TC over UDP even with EDNS, no records; full over TCP.
    let r = s.udp("big.big.example.", RecordType::TXT, true, None);
    assert!(r.metadata.truncation, "TC set");
    assert!(r.answers.is_empty());
    assert!(r.edns.is_some(), "OPT kept in a truncated reply");
    let r = s.tcp("big.big.example.", RecordType::TXT, None);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 12);
    // ~650 bytes: TC without EDNS (512), whole with EDNS (1232).
    let r = s.udp("mid.big.example.", RecordType::TXT, false, None);
    assert!(r.metadata.truncation);
    let r = s.udp("mid.big.example.", RecordType::TXT, true, None);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 4);
}

#[test]
fn protocol_edge_cases() {
    let s = Server::start(&example_config());
    // EDNS version 1: BADVERS (extended rcode 16), with an OPT.
    let mut q = build_query("www.svc.example.", RecordType::A, true, None);
    let n = q.len();
    q[n - 5] = 1; // OPT TTL: ext-rcode, VERSION, flags
    let raw = s.udp_raw(&q).expect("a reply");
    let r = Message::from_vec(&raw).unwrap();
    assert_eq!(
        r.edns.as_ref().map(|e| e.rcode_high()),
        Some(1),
        "BADVERS = 16 = 1 << 4"
    );
    // Opcode NOTIFY (4): NOTIMP.
    let mut q = build_query("www.svc.example.", RecordType::A, false, None);
    q[2] = (q[2] & 0x87) | (4 << 3);
    let r = Message::from_vec(&s.udp_raw(&q).expect("a reply")).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    // Two questions: FORMERR.
    let mut q = build_query("www.svc.example.", RecordType::A, false, None);
    q[5] = 2;
    let r = s.udp_raw(&q).expect("a reply");
    assert_eq!(r[3] & 0x0f, 1);
    // A response (QR set) is never answered.
    let mut q = build_query("www.svc.example.", RecordType::A, false, None);
    q[2] |= 0x80;
    assert!(s.udp_raw(&q).is_none());
    // AXFR: not implemented.
    let r = s.tcp("svc.example.", RecordType::AXFR, None);
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    // CHAOS class: REFUSED.
    let mut q = build_query("version.bind.", RecordType::TXT, false, None);
    let n = q.len();
    q[n - 1] = 3;
    let r = s.udp_raw(&q).expect("a reply");
    assert_eq!(r[3] & 0x0f, 5);
}

#[test]
fn ops_endpoints_and_metrics() {
    let s = Server::start(&example_config());
    assert_eq!(s.http("GET", "/healthz", "").0, 200);
    assert_eq!(s.http("GET", "/readyz", "").0, 200);
    assert_eq!(s.http("GET", "/nope", "").0, 404);
    for _ in 0..3 {
        s.udp(
            "app.svc.example.",
            RecordType::A,
            true,
            Some(("198.51.100.0", 24)),
        );
        s.udp("nope.svc.example.", RecordType::A, true, None);
    }
    let q = wait_metric(
        &s,
        r#"causeway_dns_queries_total{qtype="A",rcode="NXDOMAIN",zone="svc.example."}"#,
        3.0,
    );
    assert!(q >= 3.0, "{q}");
    let a = wait_metric(
        &s,
        r#"causeway_dns_answers_total{cluster="idc-bj",policy="latency"}"#,
        3.0,
    );
    assert!(a >= 3.0, "{a}");
    assert_eq!(metric(&s, "causeway_dns_latency_map_prefixes"), 4.0);
    let (code, m) = s.http("GET", "/metrics", "");
    assert_eq!(code, 200);
    assert!(!m.contains("198.51.100"), "no client address in metrics");
}
