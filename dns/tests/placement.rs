//! Placement end to end in process: a real server on loopback (UDP, TCP, HTTP API), fed
//! over `POST /v1/placement` and through the in-process [`causeway_dns::Inputs`] handle,
//! queried over real UDP with EDNS Client Subnet from thousands of client networks.
//!
//! * weights 3:1:0 from a placement → answer shares about 75/25, weight 0 never answered;
//! * draining out of the answers, standby only once the active target is unhealthy;
//! * placement addresses replace the zone's;
//! * unknown service / cluster, duplicates, bad addresses, too many, too big: 4xx naming it;
//! * `GET /v1/explain` says where each weight came from; metrics count inputs and roles;
//! * a config reload keeps the last placement.
// The helpers below are part of the test: a panic there is the failed test, located.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_dns::{CancellationToken, LoadedConfig, RunOptions};
use causeway_model::{ClusterId, Health, Placement, PlacementTarget, Role};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

fn config(ttl: u32) -> String {
    format!(
        r#"apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {{name: t}}
spec:
  listen: ["127.0.0.1:0"]
  api: "127.0.0.1:0"
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: z}}
spec:
  origin: svc.example.
  soa: {{rname: hostmaster.svc.example.}}
  nameservers: [{{name: ns1, addresses: [127.0.0.53]}}]
  gslb:
    - name: w
      ttl: {ttl}
      policy: weighted
      targets:
        - {{cluster: a, addresses: [192.0.2.1]}}
        - {{cluster: b, addresses: [192.0.2.2]}}
        - {{cluster: c, addresses: [192.0.2.3]}}
    - name: all
      policy: all-healthy
      targets:
        - {{cluster: a, addresses: [192.0.2.1]}}
        - {{cluster: b, addresses: [192.0.2.2]}}
        - {{cluster: c, addresses: [192.0.2.3]}}
"#
    )
}

fn target(cluster: &str, weight: u32, role: Role, health: Health) -> PlacementTarget {
    PlacementTarget {
        cluster: ClusterId::new(cluster).unwrap(),
        addresses: Vec::new(),
        weight,
        role,
        health,
    }
}

/// One HTTP/1.1 request; returns (status, body).
fn http(api: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading everything: ignore a broken pipe.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The A answers (addresses, TTLs) for `name` asked with ECS `client`/24.
fn query(sock: &UdpSocket, dns: SocketAddr, name: &str, client: IpAddr) -> (Vec<String>, u32) {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.options_mut()
        .insert(EdnsOption::Subnet(ClientSubnet::new(client, 24, 0)));
    m.edns = Some(e);
    let id = m.metadata.id;
    sock.send_to(&m.to_vec().unwrap(), dns).unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("a reply within 2 s");
        let r = Message::from_vec(&buf[..n]).unwrap();
        if r.metadata.id != id {
            continue;
        }
        let ttl = r.answers.first().map_or(0, |a| a.ttl);
        let mut a: Vec<String> = r
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        a.sort();
        return (a, ttl);
    }
}

/// Answer counts of `name` over `n` client /24s (10.x.y.0/24).
fn shares(sock: &UdpSocket, dns: SocketAddr, name: &str, n: u32) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let client = IpAddr::from([10, (i / 256) as u8, (i % 256) as u8, 0]);
        for a in query(sock, dns, name, client).0 {
            *counts.entry(a).or_insert(0) += 1;
        }
    }
    counts
}

fn metric(api: SocketAddr, series: &str) -> f64 {
    let (_, body) = http(api, "GET", "/metrics", b"");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// (cluster, weight, weightFrom, role, healthy) of every candidate of `name`.
fn explain(api: SocketAddr, name: &str) -> Vec<(String, u64, String, String, bool)> {
    let (status, body) = http(
        api,
        "GET",
        &format!("/v1/explain?name={name}&client=10.0.0.0/24"),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cluster"].as_str().unwrap().to_string(),
                c["weight"].as_u64().unwrap(),
                c["weightFrom"].as_str().unwrap().to_string(),
                c["role"].as_str().unwrap().to_string(),
                c["healthy"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match ok() {
            Ok(()) => return,
            Err(e) if start.elapsed() > within => panic!("{what}: not within {within:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn placement_weights_roles_and_addresses_reach_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dns.yaml");
    std::fs::write(&file, config(30)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let server = rt
        .block_on(causeway_dns::start(
            RunOptions {
                config: LoadedConfig::load(Path::new(&file)).unwrap(),
                listen: Vec::new(),
                api: None,
            },
            shutdown.clone(),
        ))
        .unwrap();
    let (dns, api, inputs) = (
        server.dns_addrs()[0],
        server.api_addr().unwrap(),
        server.inputs(),
    );
    let running = rt.spawn(server.run());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();

    // Zone weights (100 each): about a third each.
    let before = shares(&sock, dns, "w.svc.example.", 1500);
    assert_eq!(before.len(), 3, "{before:?}");

    // Over HTTP: 3:1:0.
    let p = serde_json::json!({"placements": [{
    "service": "W.svc.example",
    "targets": [
        {"cluster": "a", "addresses": [], "weight": 3, "role": "active", "health": "healthy"},
        {"cluster": "b", "addresses": [], "weight": 1, "role": "active", "health": "healthy"},
        {"cluster": "c", "addresses": [], "weight": 0, "role": "active", "health": "healthy"},
    ]}]});
    let (status, body) = http(api, "POST", "/v1/placement", p.to_string().as_bytes());
    assert_eq!(
        (status, body.contains("\"accepted\": 1")),
        (200, true),
        "{body}"
    );
    let n = 2000;
    // Applied asynchronously (the builder publishes a new snapshot at once).
    wait("the placement applied", Duration::from_secs(5), || {
        let x = explain(api, "w.svc.example.");
        (x[0].1 == 3).then_some(()).ok_or(format!("{x:?}"))
    });
    let counts = shares(&sock, dns, "w.svc.example.", n);
    assert!(!counts.contains_key("192.0.2.3"), "weight 0: {counts:?}");
    let a = counts.get("192.0.2.1").copied().unwrap_or(0);
    let b = counts.get("192.0.2.2").copied().unwrap_or(0);
    println!("weights 3:1:0 over {n} client /24s: a {a}, b {b}, c 0");
    assert_eq!(a + b, n, "{counts:?}");
    let share = f64::from(a) / f64::from(n);
    assert!(
        (0.65..0.85).contains(&share),
        "a's share {share:.3}: {counts:?}"
    );
    assert_eq!(
        explain(api, "w.svc.example."),
        [
            ("a".into(), 3, "placement".into(), "active".into(), true),
            ("b".into(), 1, "placement".into(), "active".into(), true),
            ("c".into(), 0, "placement".into(), "active".into(), true),
        ]
    );

    // In process: draining and weight 0 are out of the all-healthy answers; b's
    // placement addresses replace the zone's.
    let mut b_moved = target("b", 1, Role::Active, Health::Healthy);
    b_moved.addresses = vec!["198.51.100.2".parse().unwrap()];
    let accepted = inputs
        .placements(vec![Placement {
            service: "all.svc.example.".into(),
            targets: vec![
                target("a", 0, Role::Active, Health::Healthy),
                b_moved,
                target("c", 5, Role::Draining, Health::Healthy),
            ],
        }])
        .unwrap();
    assert_eq!(accepted, 1);
    let client = IpAddr::from([198, 51, 100, 0]);
    wait(
        "only b, at its placed address",
        Duration::from_secs(5),
        || {
            let got = query(&sock, dns, "all.svc.example.", client).0;
            (got == ["198.51.100.2"])
                .then_some(())
                .ok_or(format!("{got:?}"))
        },
    );
    // Standby: only when no active target is healthy.
    inputs
        .placements(vec![Placement {
            service: "all.svc.example.".into(),
            targets: vec![
                target("a", 1, Role::Active, Health::Healthy),
                target("b", 1, Role::Standby, Health::Healthy),
                target("c", 1, Role::Standby, Health::Healthy),
            ],
        }])
        .unwrap();
    wait("active a only", Duration::from_secs(5), || {
        let got = query(&sock, dns, "all.svc.example.", client).0;
        (got == ["192.0.2.1"])
            .then_some(())
            .ok_or(format!("{got:?}"))
    });
    inputs
        .placements(vec![Placement {
            service: "all.svc.example.".into(),
            targets: vec![
                target("a", 1, Role::Active, Health::Unhealthy),
                target("b", 1, Role::Standby, Health::Healthy),
                target("c", 1, Role::Draining, Health::Healthy),
            ],
        }])
        .unwrap();
    wait("a unhealthy: standby b", Duration::from_secs(5), || {
        let got = query(&sock, dns, "all.svc.example.", client).0;
        (got == ["192.0.2.2"])
            .then_some(())
            .ok_or(format!("{got:?}"))
    });
    assert_eq!(
        metric(api, "causeway_dns_placement_targets{role=\"draining\"}"),
        1.0
    );
    assert_eq!(
        metric(api, "causeway_dns_placement_targets{role=\"standby\"}"),
        1.0
    );
    assert_eq!(
        metric(api, "causeway_dns_placement_targets{role=\"active\"}"),
        4.0
    );

    // Refusals name what is wrong; nothing of a refused input applies.
    let refused: &[(&str, Vec<u8>, u16, &str)] = &[
        (
            "unknown service",
            br#"{"service":"nope.svc.example.","targets":[]}"#.to_vec(),
            400,
            "placement.service: \"nope.svc.example.\" is not a GSLB name",
        ),
        (
            "duplicate cluster",
            br#"{"service":"w.svc.example.","targets":[{"cluster":"a"},{"cluster":"a"}]}"#.to_vec(),
            400,
            "cluster a appears twice",
        ),
        (
            "unspecified address",
            br#"{"service":"w.svc.example.","targets":[{"cluster":"a","addresses":["0.0.0.0"]}]}"#
                .to_vec(),
            400,
            "targets[0].addresses[0]",
        ),
        (
            "negative weight",
            br#"{"service":"w.svc.example.","targets":[{"cluster":"a","weight":-1}]}"#.to_vec(),
            400,
            "body:",
        ),
        (
            "unknown field",
            br#"{"service":"w.svc.example.","targets":[],"colour":"red"}"#.to_vec(),
            400,
            "unknown field",
        ),
        ("not JSON", b"{\"placements\": [".to_vec(), 400, "body:"),
        (
            "too many",
            format!(
                "{{\"placements\":[{}]}}",
                vec![r#"{"service":"w.svc.example.","targets":[]}"#; 10_001].join(",")
            )
            .into_bytes(),
            400,
            "at most 10000",
        ),
        ("too big", vec![b' '; 17 << 20], 413, ""),
    ];
    for (what, body, want, says) in refused {
        let (status, text) = http(api, "POST", "/v1/placement", body);
        assert_eq!(status, *want, "{what}: {text}");
        let text = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or(text);
        assert!(text.contains(says), "{what}: {text}");
    }
    assert_eq!(http(api, "GET", "/v1/placement", b"").0, 405);
    assert_eq!(
        explain(api, "w.svc.example.")[0].1,
        3,
        "refused inputs change nothing"
    );
    assert_eq!(
        metric(api, "causeway_dns_placement_updates_total{result=\"ok\"}"),
        4.0
    );
    // A reload (TTL 30 → 7) keeps the last placement.
    std::fs::write(&file, config(7)).unwrap();
    wait("reloaded", Duration::from_secs(10), || {
        let (_, ttl) = query(&sock, dns, "w.svc.example.", IpAddr::from([10, 0, 0, 0]));
        (ttl == 7).then_some(()).ok_or(format!("ttl {ttl}"))
    });
    assert_eq!(
        metric(api, "causeway_dns_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    let after = shares(&sock, dns, "w.svc.example.", n);
    assert_eq!(
        after, counts,
        "same placement, same answers after the reload"
    );
    assert_eq!(explain(api, "w.svc.example.")[2].2, "placement");

    // An empty placement gives the name back to its zone weights.
    inputs
        .placements(vec![Placement {
            service: "w.svc.example.".into(),
            targets: Vec::new(),
        }])
        .unwrap();
    wait("zone weights again", Duration::from_secs(5), || {
        let x = explain(api, "w.svc.example.");
        x.iter()
            .all(|c| c.1 == 100 && c.2 == "zone")
            .then_some(())
            .ok_or(format!("{x:?}"))
    });

    // A target that is not a cluster of the name is ignored, not a refusal: the other
    // targets apply, and the answer says what was left out.
    let (status, text) = http(
        api,
        "POST",
        "/v1/placement",
        br#"{"placements":[{"service":"w.svc.example.","targets":[{"cluster":"a","weight":3},{"cluster":"zz","weight":9}]}]}"#,
    );
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["accepted"], 1, "{text}");
    assert_eq!(
        v["ignored"][0],
        "placements[0].targets[1].cluster: cluster zz is not a target of w.svc.example.",
        "{text}"
    );
    assert_eq!(
        inputs
            .placements(vec![Placement {
                service: "w.svc.example.".into(),
                targets: vec![
                    target("a", 3, Role::Active, Health::Healthy),
                    target("d", 1, Role::Active, Health::Healthy),
                ],
            }])
            .unwrap(),
        1
    );
    assert_eq!(
        metric(
            api,
            "causeway_dns_placement_updates_total{result=\"ignored_target\"}"
        ),
        2.0
    );
    wait("the known target's weight", Duration::from_secs(5), || {
        let x = explain(api, "w.svc.example.");
        x.iter()
            .any(|c| c.0 == "a" && c.1 == 3 && c.2 == "placement")
            .then_some(())
            .ok_or(format!("{x:?}"))
    });

    shutdown.cancel();
    rt.block_on(running).unwrap();
}
