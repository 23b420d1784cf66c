//! Measured latency through the tunnel, end to end: the agents measure (`causeway agent
//! --probe-config`), the stub polls them over their sessions and reports to dns
//! (`causeway stub --dns-url`) as prober `CLUSTER/NAME`, the cluster from each agent's
//! certificate. Client network and clusters in their own network namespaces, distance
//! put in by delaying relays, dns fed only through the stub.
//!
//! ```text
//!  netns cwpPIDc (client network 10.203.N.0/24)     root namespace ("the internet")
//!   10.203.N.2: causeway probe beacon :7007  <---- Relay A on 10.204.N.1 (delay dA)
//!               unbound 127.0.0.1:5353     <---- Relay B on 10.205.N.1 (delay dB)
//!               dig @127.0.0.1                     causeway dns on 10.203.N.1 (DNS + API)
//!  netns cwpPIDa: causeway agent --cluster cl-a     causeway stub (agents on 10.204.N.1)
//!                 --probe-config -> beacon via A      --dns-url http://dns-api
//!  netns cwpPIDb: causeway agent --cluster cl-b
//!                 --probe-config -> beacon via B
//! ```
//!
//! Namespace names and subnets carry this run's pid, so two runs do not clash. No RTT is
//! typed in anywhere. Checked: the measured nearest cluster is answered (`defaultOrder`
//! puts the other first); a delay change moves the answer (time printed); dns names the
//! probers `cl-a/in-agent`, `cl-b/in-agent`, and `causeway dns explain` says which
//! measured what and when; a user cannot reach the agent's internal answer by sending
//! the internal header (the stub strips it; the agent forwards the request to its API
//! server like any other); a stopped agent's entries age out after `latency.maxAge`
//! (time printed); dns down is counted by the stub, which keeps running.
//!
//! Needs root (`ip netns add`), `unbound` and `dig`; skipped with a message when
//! `ip netns add` is not permitted.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use causeway_testbed::relay::Relay;
use causeway_testbed::testing::{self, HttpClient, HttpResponse, Process, Spawn, wait_for};
use gslb_netns::{Netns, in_ns, sa, with_args, write};
use http::Method;
use http_body_util::Full;

#[path = "support/gslb_netns.rs"]
mod gslb_netns;
#[path = "support/tunnel.rs"]
mod tunnel;

const BEACON_PORT: u16 = 7007;
const UNBOUND_PORT: u16 = 5353;
const NAME: &str = "app.svc.example.";

const A: (&str, &str) = ("cl-a", "192.0.2.1");
const B: (&str, &str) = ("cl-b", "192.0.2.2");
/// The agents' prober `metadata.name`.
const PROBER: &str = "in-agent";

/// Prober: a round every 200 ms, EWMA weight 0.5, three samples before a report. The
/// stub polls the agents as often.
const INTERVAL_MS: u64 = 200;
const ALPHA: f64 = 0.5;
const MIN_SAMPLES: u32 = 3;
/// dns keeps a measurement this long after its last report.
const MAX_AGE: Duration = Duration::from_secs(3);
/// GSLB TTL and unbound's cache-max-ttl.
const TTL_SECS: u64 = 1;
/// The window within which the answer must follow a delay change: smoothing (at most 3
/// rounds, 0.6 s), the stub's poll (0.2 s), dns's rebuild (~1 s), unbound's cache (1 s),
/// plus slack for a loaded 2-core machine.
const FOLLOW_WINDOW: Duration = Duration::from_secs(6);

/// This run's addresses: subnets 10.203.N/24 (client), 10.204.N/24 (A), 10.205.N/24 (B)
/// with N from the pid.
struct Net {
    n: u32,
}

impl Net {
    fn client_net(&self) -> String {
        format!("10.203.{}.0/24", self.n)
    }
    fn client(&self) -> String {
        format!("10.203.{}.2", self.n)
    }
    /// The root namespace's address on the client's link: dns listens here.
    fn host_on_client(&self) -> String {
        format!("10.203.{}.1", self.n)
    }
    /// The root namespace's address on cluster A's link: relay A and the stub's agents'
    /// listener.
    fn host_on_a(&self) -> String {
        format!("10.204.{}.1", self.n)
    }
    fn host_on_b(&self) -> String {
        format!("10.205.{}.1", self.n)
    }
}

#[test]
fn agent_probers_through_the_stub_steer_unbound_to_the_measured_nearest_cluster() {
    testing::require_tools(&[
        ("unbound", "unbound"),
        ("dig", "dnsutils"),
        ("ip", "iproute2"),
    ]);
    if let Err(e) = Netns::permitted("cwp") {
        eprintln!("SKIPPED dns_agent_prober: `ip netns add` is not permitted here ({e})");
        return;
    }
    let pid = std::process::id();
    let net = Net { n: 20 + pid % 200 };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let exe = tunnel::BIN;

    // Declared first: dropped last, after every process inside it is killed.
    let mut netns = Netns::new();
    let (cl, na, nb) = (
        format!("cwp{pid}c"),
        format!("cwp{pid}a"),
        format!("cwp{pid}b"),
    );
    netns
        .add(&cl, &net.host_on_client(), &net.client())
        .expect("client namespace");
    netns
        .add(&na, &net.host_on_a(), &format!("10.204.{}.2", net.n))
        .expect("cluster A namespace");
    netns
        .add(&nb, &net.host_on_b(), &format!("10.205.{}.2", net.n))
        .expect("cluster B namespace");

    // The client network's beacon.
    let beacon_addr = sa(&net.client(), BEACON_PORT);
    let beacon = Spawn::new(
        "beacon",
        with_args(
            in_ns(&cl, exe),
            &["probe", "beacon", "--listen", &beacon_addr.to_string()],
        ),
    )
    .log_file(d.join("beacon.log"))
    .start();
    beacon.wait_line("listening on beacon", Duration::from_secs(20));

    // The paths: A near (5 ms each way), B farther (25 ms each way).
    let relay_a = Relay::start_on(sa(&net.host_on_a(), 0), beacon_addr).expect("relay A");
    let relay_b = Relay::start_on(sa(&net.host_on_b(), 0), beacon_addr).expect("relay B");
    relay_a.set_delay(Duration::from_millis(5));
    relay_b.set_delay(Duration::from_millis(25));

    // dns: the GSLB name with B first in defaultOrder, no latency map at all.
    let dns_conf = d.join("dns.yaml");
    write(&dns_conf, &dns_config(&net.host_on_client()));
    let on_client = format!("{}:0", net.host_on_client());
    let dns = Spawn::causeway(exe)
        .args(["dns", "--config"])
        .arg(&dns_conf)
        .args(["--listen", &on_client, "--api-listen", &on_client])
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
        &gslb_netns::unbound_config(
            d,
            UNBOUND_PORT,
            &net.client(),
            TTL_SECS,
            "svc.example.",
            dns_addr,
        ),
    );
    let _unbound = Spawn::new(
        "unbound",
        with_args(
            in_ns(&cl, "unbound"),
            &["-d", "-c", &unbound_conf.to_string_lossy()],
        ),
    )
    .log_file(d.join("unbound.log"))
    .start();
    let first = wait_for(
        "unbound answers",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || resolve(&cl).ok(),
    );
    assert_eq!(
        first, B.1,
        "without measurements the answer is defaultOrder's first (B)"
    );

    // The stub in the root namespace: agents reach it on the root's address of A's link.
    let state = d.join("stub-state");
    let stub_conf = d.join("stub.yaml");
    write(&stub_conf, &stub_config(&state, &net.host_on_a()));
    let stub = tunnel::Stub::start(
        &stub_conf,
        &state,
        &[
            "--dns-url".into(),
            format!("http://{api}"),
            "--dns-report-interval".into(),
            format!("{INTERVAL_MS}ms"),
        ],
        &d.join("stub.log"),
    );
    let stub_url = format!("https://{}", stub.agents);
    stub.proc.wait_line(
        "reporting agents' measured latency",
        Duration::from_secs(10),
    );

    // The agents, one per cluster namespace, each measuring the beacon through its relay.
    // Nothing listens at their API server: this test needs only their probers.
    let kubeconfig = d.join("nowhere.kubeconfig");
    write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"http://127.0.0.1:9\"}}]\n\
         users: [{name: u, user: {token: t}}]\n\
         contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    );
    let sa_token = d.join("sa.token");
    write(&sa_token, "not-a-real-token\n");
    let agent = |ns: &str, cluster: &str, relay: &Relay| -> Process {
        let (token, hash) = tunnel::cluster_add(&state, cluster, &stub_url);
        let conf = d.join(format!("prober-{cluster}.yaml"));
        write(&conf, &prober_config(&net.client_net(), relay.addr));
        let p = Spawn::new(
            cluster,
            with_args(
                in_ns(ns, exe),
                &[
                    "agent",
                    "--stub",
                    &stub_url,
                    "--cluster",
                    cluster,
                    "--token",
                    &token,
                    "--ca-hash",
                    &hash,
                    "--state-dir",
                    &d.join(format!("agent-{cluster}")).to_string_lossy(),
                    "--kubeconfig",
                    &kubeconfig.to_string_lossy(),
                    "--token-file",
                    &sa_token.to_string_lossy(),
                    "--sessions",
                    "1",
                    "--data-connections",
                    "0",
                    "--no-fence",
                    "--probe-config",
                    &conf.to_string_lossy(),
                ],
            ),
        )
        .log_file(d.join(format!("agent-{cluster}.log")))
        .start();
        p.wait_line("probing", Duration::from_secs(20));
        p.wait_line("session established", Duration::from_secs(20));
        p
    };
    let started = Instant::now();
    let agent_a = agent(&na, A.0, &relay_a);
    let _agent_b = agent(&nb, B.0, &relay_b);

    // 1. The measured nearest cluster (A) is answered.
    follow(
        &cl,
        A.1,
        Duration::from_secs(15),
        "the first measurements (A near)",
    );
    println!(
        "agent prober: unbound answers the measured nearest (A) {:?} after the agents started",
        started.elapsed()
    );
    let rows = measurements(api);
    println!("GET /v1/latency: {rows}");
    let client_net = net.client_net();
    let (rtt_a, prober_a) = row(&rows, A.0, &client_net).expect("A measured");
    let (rtt_b, prober_b) = row(&rows, B.0, &client_net).expect("B measured");
    assert_eq!(
        prober_a,
        format!("{}/{PROBER}", A.0),
        "cluster from A's cert"
    );
    assert_eq!(
        prober_b,
        format!("{}/{PROBER}", B.0),
        "cluster from B's cert"
    );
    assert!(
        rtt_a >= 10.0 && rtt_a < rtt_b,
        "A's RTT through a 5 ms relay (each way) is at least 10 ms and below B's: {rtt_a} ms"
    );
    assert!(
        rtt_b >= 50.0,
        "B's RTT through a 25 ms relay (each way) is at least 50 ms: {rtt_b} ms"
    );
    assert!(
        stub.metric("causeway_tunnel_latency_reports_total{result=\"ok\"}")
            .unwrap_or(0.0)
            >= 2.0,
        "the stub counts its reports"
    );
    assert!(
        stub.metric("causeway_tunnel_latency_last_report_timestamp_seconds")
            .unwrap_or(0.0)
            > 1.7e9,
        "the stub says when it last reported"
    );

    // `causeway dns explain` (text) names who measured each cluster's RTT, and when.
    let out = Command::new(exe)
        .args(["dns", "explain", "--server", &api.to_string()])
        .args(["--name", NAME, "--client", &net.client()])
        .output()
        .expect("causeway dns explain");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("causeway dns explain --client {}:\n{text}", net.client());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("latency sources for {client_net}:")),
        "{text}"
    );
    for c in [A.0, B.0] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(c) && l.contains("measured"))
            .unwrap_or_else(|| panic!("no source line for {c}:\n{text}"));
        assert!(
            line.contains(&format!("by {c}/{PROBER} at 20")) && line.contains("s ago)"),
            "{line}"
        );
    }

    // A user cannot read (or forge) the internal answer: the stub strips the header, so
    // the agent forwards the request to its API server, which is not there.
    user_cannot_reach_the_internal_answer(&stub, &state, d);

    // 2. A moves away (60 ms each way): the answer follows to B.
    relay_a.set_delay(Duration::from_millis(60));
    let took = follow(&cl, B.1, FOLLOW_WINDOW, "A moved away (B nearest now)");
    println!("agent prober: answer followed A 5→60 ms to B in {took:?} (window {FOLLOW_WINDOW:?})");
    // 3. And back.
    relay_a.set_delay(Duration::from_millis(5));
    let took = follow(&cl, A.1, FOLLOW_WINDOW, "A near again");
    println!(
        "agent prober: answer followed A 60→5 ms back to A in {took:?} (window {FOLLOW_WINDOW:?})"
    );

    // 4. A's agent stops: its entries age out after maxAge; B's stay.
    agent_a.kill();
    let t = Instant::now();
    wait_for(
        "A's measurements to age out",
        MAX_AGE + Duration::from_secs(5),
        Duration::from_millis(100),
        || row(&measurements(api), A.0, &client_net).is_none(),
    );
    let aged = t.elapsed();
    println!("agent prober: A's entry gone {aged:?} after its agent stopped (maxAge {MAX_AGE:?})");
    assert!(
        aged >= MAX_AGE - Duration::from_secs(1),
        "A's entry lived its maxAge after the last report: {aged:?}"
    );
    assert!(
        row(&measurements(api), B.0, &client_net).is_some(),
        "B still reported"
    );

    // 5. dns down: the stub counts failed reports and keeps running.
    let failed_before = stub
        .metric("causeway_tunnel_latency_reports_total{result=\"failed\"}")
        .unwrap_or(0.0);
    drop(dns);
    wait_for(
        "the stub to count failed reports",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            (stub
                .metric("causeway_tunnel_latency_reports_total{result=\"failed\"}")
                .unwrap_or(0.0)
                > failed_before)
                .then_some(())
        },
    );
    stub.proc
        .wait_line("latency report failed", Duration::from_secs(5));
    assert!(stub.proc.alive(), "the stub survives dns being down");
    drop(beacon);
}

/// Adds user alice and sends `GET /clusters/cl-a/causeway.dev/v1/latency` with the
/// internal header: the answer must come from cluster A's API server path (here: no
/// server, so an error from the agent), never the prober's measurements.
fn user_cannot_reach_the_internal_answer(stub: &tunnel::Stub, state: &Path, d: &Path) {
    let users_url = format!("https://{}", stub.users);
    let kubeconfig = tunnel::user_add(state, d, "alice", "dev", "cl-*", &users_url);
    let client = tunnel::user_client(&kubeconfig, stub.users, b"http/1.1");
    let path = format!("/clusters/{}/causeway.dev/v1/latency", A.0);
    let send = || -> Result<HttpResponse, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let mut conn = client
                .http1::<Full<Bytes>>()
                .await
                .map_err(|e| e.to_string())?;
            let req = client
                .http1_request(Method::GET, &path)
                .header("x-causeway-internal", "latency")
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(Duration::from_secs(10), conn.send_request(req))
                .await
                .map_err(|_| "no answer within 10 s".to_string())?
                .map_err(|e| e.to_string())?;
            HttpResponse::read(resp).await.map_err(|e| e.to_string())
        })
    };
    // The stub reloads its users every 2 s.
    let r = wait_for(
        "alice authenticated by the stub",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || send().ok().filter(|r| r.status != 401),
    );
    println!(
        "user GET {path} with x-causeway-internal: {} {}",
        r.status,
        r.text().trim()
    );
    assert!(
        r.status >= 500 && !r.text().contains("measurements"),
        "the request went to the API server path, not the prober: {} {}",
        r.status,
        r.text()
    );
}

/// Polls unbound from the client namespace until it answers `want`; how long it took.
fn follow(ns: &str, want: &str, within: Duration, what: &str) -> Duration {
    gslb_netns::follow_a(ns, UNBOUND_PORT, NAME, want, within, what)
}

fn resolve(ns: &str) -> Result<String, String> {
    gslb_netns::dig_a(ns, UNBOUND_PORT, NAME)
}

fn measurements(api: SocketAddr) -> serde_json::Value {
    let r = HttpClient::new(api)
        .send_blocking(Method::GET, "/v1/latency", String::new())
        .unwrap_or_else(|e| panic!("GET /v1/latency: {e}"));
    assert_eq!(r.status, 200, "GET /v1/latency: {}", r.text());
    serde_json::from_str(&r.text()).expect("JSON")
}

/// (rttMs, prober) of `cluster`'s entry for `prefix`.
fn row(v: &serde_json::Value, cluster: &str, prefix: &str) -> Option<(f64, String)> {
    v["measurements"].as_array()?.iter().find_map(|m| {
        (m["cluster"] == cluster && m["prefix"] == prefix).then(|| {
            (
                m["rttMs"].as_f64().unwrap_or(f64::NAN),
                m["prober"].as_str().unwrap_or("").to_string(),
            )
        })
    })
}

fn stub_config(state: &Path, agents_ip: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: StubConfig
metadata: {{name: stub}}
spec:
  stateDir: {}
  serverNames: [\"127.0.0.1\", \"{agents_ip}\"]
  listen: {{users: \"127.0.0.1:0\", agents: \"{agents_ip}:0\", metrics: \"127.0.0.1:0\"}}
",
        state.display()
    )
}

fn dns_config(ns_addr: &str) -> String {
    gslb_netns::latency_dns_config(ns_addr, MAX_AGE, TTL_SECS, A, B)
}

/// The agents' prober for `client_net`, timing `beacon` (a relay); no `dns` (the stub
/// reports).
fn prober_config(client_net: &str, beacon: SocketAddr) -> String {
    gslb_netns::prober_config(
        PROBER,
        None,
        client_net,
        beacon,
        (INTERVAL_MS, ALPHA, MIN_SAMPLES),
    )
}
