//! Measured latency, end to end: client networks and cluster probers in their own
//! network namespaces, distance put in by delaying relays, dns fed only by the probers.
//!
//! ```text
//!  netns cwm-cl (client network 10.201.1.0/24)      root namespace ("the internet")
//!   10.201.1.2: causeway probe beacon :7007  <---- Relay A on 10.201.2.1 (delay dA)
//!               unbound 127.0.0.1:5353     <---- Relay B on 10.201.3.1 (delay dB)
//!               dig @127.0.0.1                     causeway dns on 10.201.1.1 (DNS + API)
//!  netns cwm-a: causeway probe --cluster cl-a  -> beacon via Relay A, reports to dns
//!  netns cwm-b: causeway probe --cluster cl-b  -> beacon via Relay B, reports to dns
//! ```
//!
//! This kernel has no `netem`, so the distance is a userspace relay on the path
//! (`causeway_testbed::relay::Relay::set_delay`); the probers time a one-byte TCP echo
//! (application-level RTT), as probers behind NAT do. No RTT is typed in anywhere.
//! unbound in the client namespace asks causeway dns from 10.201.1.2, so the client
//! network is unbound's own address (no ECS). Checked: the nearest cluster is answered
//! (its `defaultOrder` puts the other one first, so without measurements the answer
//! would be wrong); a delay change moves the answer within the configured window
//! (measured and printed); `GET /v1/latency` names the prober and the age of each
//! entry; a prober that stops loses its entries after `latency.maxAge`, its cluster
//! stays healthy.
//!
//! Needs root (`ip netns add`), `unbound` and `dig`; skipped with a message when
//! `ip netns add` is not permitted.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use causeway_testbed::relay::Relay;
use causeway_testbed::testing::{self, HttpClient, Process, Spawn, wait_for};
use gslb_netns::{Netns, in_ns, sa, with_args, write};
use http::Method;

#[path = "support/gslb_netns.rs"]
mod gslb_netns;

/// The client network and its host.
const CLIENT_NET: &str = "10.201.1.0/24";
const CLIENT: &str = "10.201.1.2";
/// The root namespace's address on the client's link: dns listens here.
const HOST_ON_CLIENT: &str = "10.201.1.1";
/// The root namespace's addresses on the clusters' links: the relays listen here.
const HOST_ON_A: &str = "10.201.2.1";
const HOST_ON_B: &str = "10.201.3.1";
const BEACON_PORT: u16 = 7007;
const UNBOUND_PORT: u16 = 5353;

const A: (&str, &str) = ("cl-a", "192.0.2.1");
const B: (&str, &str) = ("cl-b", "192.0.2.2");

/// Prober settings: a round every 200 ms, EWMA weight 0.5, three samples before a report.
const INTERVAL_MS: u64 = 200;
const ALPHA: f64 = 0.5;
const MIN_SAMPLES: u32 = 3;
/// dns keeps a measurement this long after its last report.
const MAX_AGE: Duration = Duration::from_secs(3);
/// GSLB TTL and unbound's cache-max-ttl.
const TTL_SECS: u64 = 1;
/// The window within which the answer must follow a delay change: the smoothing needs
/// at most 3 rounds here (0.6 s), dns applies a report within ~1 s, unbound caches 1 s,
/// plus slack for a loaded 2-core machine.
const FOLLOW_WINDOW: Duration = Duration::from_secs(6);

#[test]
fn probers_in_namespaces_steer_unbound_to_the_measured_nearest_cluster() {
    testing::require_tools(&[
        ("unbound", "unbound"),
        ("dig", "dnsutils"),
        ("ip", "iproute2"),
    ]);
    // Permission first: without it, skip (and say why).
    let probe_ns = format!("cwm-perm-{}", std::process::id());
    if let Err(e) = Netns::ip(&["netns", "add", &probe_ns]) {
        eprintln!("SKIPPED dns_measured_latency: `ip netns add` is not permitted here ({e})");
        return;
    }
    let _ = Netns::ip(&["netns", "del", &probe_ns]);

    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let exe = env!("CARGO_BIN_EXE_causeway");

    // Declared first: dropped last, after every process inside it is killed.
    let mut netns = Netns { names: Vec::new() };
    let (cl, na, nb) = ("cwm-cl", "cwm-a", "cwm-b");
    netns
        .add(cl, HOST_ON_CLIENT, CLIENT)
        .expect("client namespace");
    netns
        .add(na, HOST_ON_A, "10.201.2.2")
        .expect("cluster A namespace");
    netns
        .add(nb, HOST_ON_B, "10.201.3.2")
        .expect("cluster B namespace");

    // The client network's beacon.
    let beacon = Spawn::new(
        "beacon",
        with_args(
            in_ns(cl, exe),
            &[
                "probe",
                "beacon",
                "--listen",
                &format!("{CLIENT}:{BEACON_PORT}"),
            ],
        ),
    )
    .log_file(d.join("beacon.log"))
    .start();
    beacon.wait_line("listening on beacon", Duration::from_secs(20));
    let beacon_addr: SocketAddr = format!("{CLIENT}:{BEACON_PORT}").parse().expect("addr");

    // The paths: A near (5 ms each way), B farther (25 ms each way).
    let relay_a = Relay::start_on(sa(HOST_ON_A, 0), beacon_addr).expect("relay A");
    let relay_b = Relay::start_on(sa(HOST_ON_B, 0), beacon_addr).expect("relay B");
    relay_a.set_delay(Duration::from_millis(5));
    relay_b.set_delay(Duration::from_millis(25));

    // dns: the GSLB name with B first in defaultOrder, no latency map at all.
    let dns_conf = d.join("dns.yaml");
    write(&dns_conf, &dns_config());
    let dns = Spawn::causeway(exe)
        .args(["dns", "--config"])
        .arg(&dns_conf)
        .args([
            "--listen",
            &format!("{HOST_ON_CLIENT}:0"),
            "--api-listen",
            &format!("{HOST_ON_CLIENT}:0"),
        ])
        .log_file(d.join("dns.log"))
        .start();
    dns.wait_line(" ready", Duration::from_secs(60));
    let listening = dns.wait_listening(&["dns", "api"], Duration::from_secs(5));
    let dns_addr = listening.addr_of("dns", "udp");
    let api = listening.addr_of("api", "http");

    // unbound in the client namespace, stub zone svc.example. → causeway dns.
    let unbound_conf = d.join("unbound.conf");
    write(
        &unbound_conf,
        &gslb_netns::unbound_config(d, UNBOUND_PORT, CLIENT, TTL_SECS, "svc.example.", dns_addr),
    );
    let unbound = Spawn::new(
        "unbound",
        with_args(
            in_ns(cl, "unbound"),
            &["-d", "-c", &unbound_conf.to_string_lossy()],
        ),
    )
    .log_file(d.join("unbound.log"))
    .start();

    // Before any prober reports, the answer is defaultOrder's first: B.
    let first = wait_for(
        "unbound answers",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || resolve(cl).ok(),
    );
    assert_eq!(
        first, B.1,
        "without measurements the answer is defaultOrder's first (B)"
    );

    // The probers, one per cluster namespace, each reaching the beacon through its relay.
    let prober = |ns: &str, cluster: &str, relay: &Relay| -> Process {
        let conf = d.join(format!("prober-{cluster}.yaml"));
        write(&conf, &prober_config(relay.addr, api));
        let p = Spawn::new(
            cluster,
            with_args(
                in_ns(ns, exe),
                &[
                    "probe",
                    "--cluster",
                    cluster,
                    "--config",
                    &conf.to_string_lossy(),
                ],
            ),
        )
        .env("RUST_LOG", "causeway_probe=debug")
        .log_file(d.join(format!("prober-{cluster}.log")))
        .start();
        p.wait_line("probing", Duration::from_secs(20));
        p
    };
    let started = Instant::now();
    let prober_a = prober(na, A.0, &relay_a);
    let _prober_b = prober(nb, B.0, &relay_b);

    // 1. The measured nearest cluster (A) is answered.
    follow(
        cl,
        A.1,
        Duration::from_secs(15),
        "the first measurements (A near)",
    );
    println!(
        "measured: unbound answers the measured nearest (A) {:?} after the probers started",
        started.elapsed()
    );
    let rows = measurements(api, "");
    println!("GET /v1/latency: {rows}");
    let (rtt_a, prober_id_a) = row(&rows, A.0).expect("A measured");
    let (rtt_b, prober_id_b) = row(&rows, B.0).expect("B measured");
    assert_eq!(prober_id_a, "cl-a/edge");
    // A report with an empty prober identity is refused, naming the field.
    let r = HttpClient::new(api)
        .send_blocking(
            Method::POST,
            "/v1/latency",
            format!(
                "{{\"prober\":\"\",\"measurements\":[{{\"prefix\":\"{CLIENT_NET}\",\"cluster\":\"cl-a\",\"rttMs\":1}}]}}"
            ),
        )
        .expect("POST");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("prober"), "{}", r.text());
    // The same as a table from the command line.
    let out = Command::new(exe)
        .args([
            "probe",
            "measured",
            "--dns",
            &api.to_string(),
            "--client",
            CLIENT,
        ])
        .output()
        .expect("causeway probe measured");
    let table = String::from_utf8_lossy(&out.stdout);
    println!("causeway probe measured --client {CLIENT}:\n{table}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("cl-a/edge") && table.contains("cl-b/edge"),
        "{table}"
    );
    // The API's explain names who measured the matched prefix, and when.
    let explain: serde_json::Value = serde_json::from_str(&get(
        api,
        &format!("/v1/explain?name=app.svc.example.&client={CLIENT}&type=A"),
    ))
    .expect("explain JSON");
    println!("GET /v1/explain measured: {}", explain["measured"]);
    let probers: Vec<&str> = explain["measured"]
        .as_array()
        .expect("explain.measured")
        .iter()
        .filter_map(|m| m["prober"].as_str())
        .collect();
    assert_eq!(probers.len(), 2, "{explain}");
    assert!(
        probers.contains(&"cl-a/edge") && probers.contains(&"cl-b/edge"),
        "{explain}"
    );
    assert_eq!(prober_id_b, "cl-b/edge");
    assert!(
        rtt_a >= 10.0 && rtt_a < rtt_b,
        "A's RTT through a 5 ms relay (each way) is at least 10 ms and below B's: {rtt_a} ms"
    );
    assert!(
        rtt_b >= 50.0,
        "B's RTT through a 25 ms relay (each way) is at least 50 ms: {rtt_b} ms"
    );

    // 2. A moves away (60 ms each way): the answer follows to B.
    relay_a.set_delay(Duration::from_millis(60));
    let took = follow(cl, B.1, FOLLOW_WINDOW, "A moved away (B nearest now)");
    println!("measured: answer followed A 5→60 ms to B in {took:?} (window {FOLLOW_WINDOW:?})");
    // 3. And back.
    relay_a.set_delay(Duration::from_millis(5));
    let took = follow(cl, A.1, FOLLOW_WINDOW, "A near again");
    println!(
        "measured: answer followed A 60→5 ms back to A in {took:?} (window {FOLLOW_WINDOW:?})"
    );

    // 4. A's prober stops: its entries age out after maxAge, its health is untouched.
    drop(prober_a);
    let t = Instant::now();
    wait_for(
        "A's measurements to age out",
        MAX_AGE + Duration::from_secs(5),
        Duration::from_millis(100),
        || row(&measurements(api, ""), A.0).is_none(),
    );
    let aged = t.elapsed();
    println!("measured: A's entry gone {aged:?} after its prober stopped (maxAge {MAX_AGE:?})");
    assert!(
        row(&measurements(api, ""), B.0).is_some(),
        "B still reported"
    );
    // The answering table is rebuilt from the store at most every second.
    let a = wait_for(
        "A's RTT to leave the answering table",
        Duration::from_secs(3),
        Duration::from_millis(100),
        || {
            let explain = get(
                api,
                &format!("/v1/explain?name=app.svc.example.&client={CLIENT}&type=A"),
            );
            let v: serde_json::Value = serde_json::from_str(&explain).ok()?;
            let a = v["candidates"]
                .as_array()?
                .iter()
                .find(|c| c["cluster"] == A.0)?
                .clone();
            a["rttMs"].is_null().then_some(a)
        },
    );
    println!(
        "measured: A's RTT out of the answers {:?} after its prober stopped",
        t.elapsed()
    );
    assert_eq!(
        a["healthy"], true,
        "A lost its measurements, not its health: {a}"
    );
    drop(unbound);
    drop(dns);
    drop(beacon);
}

/// Polls unbound from the client namespace until it answers `want` for the GSLB name;
/// how long it took.
fn follow(ns: &str, want: &str, within: Duration, what: &str) -> Duration {
    gslb_netns::follow_a(ns, UNBOUND_PORT, "app.svc.example.", want, within, what)
}

/// The one A record unbound returns for `app.svc.example.`, asked from inside `ns`.
fn resolve(ns: &str) -> Result<String, String> {
    gslb_netns::dig_a(ns, UNBOUND_PORT, "app.svc.example.")
}

fn get(api: SocketAddr, path: &str) -> String {
    let r = HttpClient::new(api)
        .send_blocking(Method::GET, path, String::new())
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.text()
}

fn measurements(api: SocketAddr, query: &str) -> serde_json::Value {
    serde_json::from_str(&get(api, &format!("/v1/latency{query}"))).expect("JSON")
}

/// (rttMs, prober) of `cluster`'s entry for the client network.
fn row(v: &serde_json::Value, cluster: &str) -> Option<(f64, String)> {
    v["measurements"].as_array()?.iter().find_map(|m| {
        (m["cluster"] == cluster && m["prefix"] == CLIENT_NET).then(|| {
            (
                m["rttMs"].as_f64().unwrap_or(f64::NAN),
                m["prober"].as_str().unwrap_or("").to_string(),
            )
        })
    })
}

fn dns_config() -> String {
    gslb_netns::latency_dns_config(HOST_ON_CLIENT, MAX_AGE, TTL_SECS, A, B)
}

fn prober_config(beacon: SocketAddr, dns: SocketAddr) -> String {
    gslb_netns::prober_config(
        "edge",
        Some(dns),
        CLIENT_NET,
        beacon,
        (INTERVAL_MS, ALPHA, MIN_SAMPLES),
    )
}
