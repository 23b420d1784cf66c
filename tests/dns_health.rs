//! Health flips against real HTTP and TCP endpoints on loopback that the test starts
//! and stops; measured failover time; fail open.

#[path = "support/dns.rs"]
mod dns_support;

use std::time::{Duration, Instant};

use causeway_testbed::testing::wait_for;
use dns_support::*;
use hickory_proto::rr::RecordType;

fn config(checks: &[(&str, std::net::SocketAddr, &str)]) -> String {
    let mut targets = String::new();
    for (i, (cluster, addr, proto)) in checks.iter().enumerate() {
        targets.push_str(&format!(
            "        - cluster: {cluster}\n          addresses: [192.0.2.{}]\n          healthCheck: {{protocol: {proto}, address: \"{addr}\", path: /healthz, interval: 1s, timeout: 500ms, rise: 2, fall: 3}}\n",
            i + 1
        ));
    }
    format!(
        r#"apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: z}}
spec:
  origin: svc.example.
  soa: {{rname: hostmaster.svc.example.}}
  nameservers: [{{name: ns1, addresses: [127.0.0.53]}}]
  gslb:
    - name: all
      policy: all-healthy
      targets:
{targets}    - name: near
      policy: latency
      targets:
{targets}---
apiVersion: causeway.dev/v1alpha1
kind: LatencyMap
metadata: {{name: m}}
spec:
  entries:
    - prefix: 198.51.100.0/24
      rttMs: {{a: 5, b: 50, c: 90}}
"#
    )
}

/// Three health endpoints (clusters a, b, c, checked over `protocols`), the server
/// probing them, and its config directory.
fn start(protocols: [&str; 3]) -> ([HealthEndpoint; 3], Server, tempfile::TempDir) {
    let endpoints = [(); 3].map(|()| HealthEndpoint::start());
    let dir = tempfile::tempdir().unwrap();
    let checks: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .zip(&endpoints)
        .zip(protocols)
        .map(|((cluster, e), proto)| (cluster, e.addr, proto))
        .collect();
    let path = write_config(dir.path(), "h.yaml", &config(&checks));
    (endpoints, Server::start(&path), dir)
}

/// `near.svc.example.` for a client in 198.51.100.0/24 (a 5 ms, b 50 ms, c 90 ms).
fn near(s: &Server) -> Vec<String> {
    addrs(&s.udp(
        "near.svc.example.",
        RecordType::A,
        true,
        Some(("198.51.100.0", 24)),
    ))
}

#[test]
fn failover_time_and_recovery_with_real_http_endpoints() {
    let ([mut a, _b, _c], s, _dir) = start(["http", "http", "tcp"]);
    let near = || near(&s);
    let all = || addrs(&s.udp("all.svc.example.", RecordType::A, true, None));

    // All healthy after `rise`.
    assert!(
        s.wait_log("to=\"healthy\"", Duration::from_secs(10))
            || s.wait_log("to=healthy", Duration::from_secs(1)),
        "probes came up:\n{}",
        s.logs()
    );
    assert_eq!(all(), vec!["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    assert_eq!(near(), vec!["192.0.2.1"], "a has the lowest RTT");

    // a's endpoint goes away: measure until answers stop containing it.
    let a_addr = a.addr;
    a.stop();
    let down = Instant::now();
    wait_for("a removed", Duration::from_secs(15), POLL, || {
        !all().contains(&"192.0.2.1".to_string())
    });
    let took = down.elapsed();
    eprintln!(
        "measured failover time: {:.3} s (limit interval 1 s x fall 3 + 1 s = 4 s)",
        took.as_secs_f64()
    );
    assert!(
        took <= Duration::from_secs(4),
        "failover took {took:?}, limit 4 s"
    );
    assert!(
        down.elapsed() >= Duration::from_millis(1500),
        "not before fall probes could fail"
    );
    assert_eq!(
        near(),
        vec!["192.0.2.2"],
        "latency policy moves to the next lowest RTT"
    );
    assert!(s.logs().contains("target health changed"));

    // a comes back on the same port: answered again after `rise` (2 × 1 s).
    let _a2 = HealthEndpoint::start_on(a_addr);
    let restarted = Instant::now();
    wait_for("a back", Duration::from_secs(10), POLL, || {
        near() == vec!["192.0.2.1"]
    });
    let back = restarted.elapsed();
    eprintln!(
        "measured recovery time: {:.3} s (rise 2 x interval 1 s)",
        back.as_secs_f64()
    );
    let (_, m) = s.http("GET", "/metrics", "");
    assert!(
        m.contains(r#"causeway_dns_health_transitions_total{cluster="a",to="unhealthy"}"#),
        "{m}"
    );
}

#[test]
fn fail_open_when_every_target_is_down() {
    let ([mut a, mut b, mut c], s, _dir) = start(["http", "http", "http"]);
    let near = || near(&s);
    wait_for("a healthy", Duration::from_secs(10), POLL, || {
        near() == vec!["192.0.2.1"]
    });
    a.stop();
    b.stop();
    wait_for("only c is left", Duration::from_secs(10), POLL, || {
        near() == vec!["192.0.2.3"]
    });
    c.stop();
    // Every target down: all of them are answered (fail open), scope 0.
    wait_for("fail open", Duration::from_secs(10), POLL, || {
        let n = near();
        if n.len() == 3 {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    });
    let r = s.udp(
        "near.svc.example.",
        RecordType::A,
        true,
        Some(("198.51.100.0", 24)),
    );
    assert_eq!(ecs_of(&r), Some((24, 0)));
    let fail_open = wait_metric(&s, r#"causeway_dns_fail_open_total{policy="latency"}"#, 1.0);
    assert!(fail_open >= 1.0, "fail-open counted: {fail_open}");
    let (_, body) = s.http(
        "GET",
        "/v1/explain?name=near.svc.example.&client=198.51.100.0/24",
        "",
    );
    assert!(body.contains("\"failOpen\": true"), "{body}");
}
