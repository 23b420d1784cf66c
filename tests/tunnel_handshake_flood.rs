//! Pre-authentication exposure of the built stub: thousands of TCP connections that
//! never finish their TLS handshake (silent, or half a ClientHello) are held only up to
//! the handshake caps (64 per source address, 1024 per listener, the defaults), the
//! rest reset at accept or evicted oldest first; while the flood is held, a real user's
//! request through the stub to a real kube-apiserver succeeds, the connected agent keeps
//! serving, a new agent connects, and the stub's RSS stays bounded. The flood comes from
//! 127.0.1.1 (one source) and 127.0.2.1–40 (many); the user and agents from 127.0.0.1.
//!
//! Needs the testbed binaries (`testbed/build-bins.sh`). Opens 3,000 sockets at a time
//! (the soft RLIMIT_NOFILE is raised to the hard limit if it is lower than that).

#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_testbed::testing::{Process, rss_kib, wait_for_async};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tunnel_support::*;

/// The defaults the stub runs with (not set in its config).
const MAX_PENDING: f64 = 1024.0;
const MAX_PENDING_PER_SOURCE: usize = 64;

/// Connections from the one flooding source, and from the many.
const FROM_ONE: usize = 1000;
const MANY_SOURCES: u8 = 40;
const PER_MANY: usize = 50;

/// A GET alice may make on `tb-a` through the stub.
const GET: &str = "/clusters/tb-a/api/v1/namespaces/default/configmaps?limit=1";

/// The start of a TLS record carrying a ClientHello of 508 bytes, of which only these
/// few arrive.
const PARTIAL_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, // handshake record, 512 bytes
    0x01, 0x00, 0x01, 0xfc, // ClientHello, 508 bytes
    0x03, 0x03, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, // TLS 1.2, random…
];

/// Raises the soft limit on open files to the hard limit if it is below `need`.
fn ensure_nofile(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < need {
            lim.rlim_cur = lim.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= need,
        "RLIMIT_NOFILE {} < {need}: raise the hard limit (ulimit -Hn)",
        lim.rlim_cur
    );
}

/// What a flood left the test holding.
struct Flood {
    /// Connections the stub had not reset by the time `connect` returned.
    held: Vec<TcpStream>,
    /// Connections reset before `connect` returned (refused at accept).
    reset_at_connect: usize,
}

/// Opens `n` connections from `from` to `to`; every other one sends half a ClientHello.
async fn flood_from(from: Ipv4Addr, to: SocketAddr, n: usize, flood: &mut Flood) {
    for i in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
        match socket.connect(to).await {
            Ok(mut c) => {
                if i % 2 == 1 {
                    // A reset connection may fail the write: that is a refusal too.
                    let _ = c.write_all(PARTIAL_CLIENT_HELLO).await;
                }
                flood.held.push(c);
            }
            Err(_) => flood.reset_at_connect += 1,
        }
    }
}

/// 1,000 connections from one source and 40 × 50 from 40 others, to `to`.
async fn flood(to: SocketAddr) -> Flood {
    let mut f = Flood {
        held: Vec::new(),
        reset_at_connect: 0,
    };
    flood_from(Ipv4Addr::new(127, 0, 1, 1), to, FROM_ONE, &mut f).await;
    for s in 1..=MANY_SOURCES {
        flood_from(Ipv4Addr::new(127, 0, 2, s), to, PER_MANY, &mut f).await;
    }
    f
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The stub's handshake series for `listener`: (in progress, refused at a source's cap,
/// evicted).
fn handshake_metrics(stub: &Stub, listener: &str) -> (f64, f64, f64) {
    let m = |s: &str| stub.metric(s).unwrap_or(-1.0);
    (
        m(&format!(
            "causeway_tunnel_handshakes_in_progress{{listener=\"{listener}\"}}"
        )),
        m(&format!(
            "causeway_tunnel_handshakes_refused_total{{listener=\"{listener}\",reason=\"source_limit\"}}"
        )),
        m(&format!(
            "causeway_tunnel_handshakes_refused_total{{listener=\"{listener}\",reason=\"evicted\"}}"
        )),
    )
}

/// Waits until `listener` has `n` handshakes in progress.
async fn wait_in_progress(stub: &Stub, listener: &str, n: f64) {
    wait_for_async(
        &format!("{n} handshakes in progress on the {listener} listener"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let (p, _, _) = handshake_metrics(stub, listener);
            if p == n { Ok(()) } else { Err(format!("{p}")) }
        },
    )
    .await;
}

/// Alice's GET through the stub: its status and how long it took.
async fn alice_get(alice: &Path, users: SocketAddr) -> (u16, Duration) {
    let client = user_client(alice, users, b"http/1.1").timeout(Duration::from_secs(30));
    let t = Instant::now();
    let r = client
        .send(http::Method::GET, GET, "")
        .await
        .unwrap_or_else(|e| panic!("alice's GET during the flood: {e}"));
    (r.status, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_floods_are_bounded_and_real_clients_get_through() {
    ensure_nofile(2 * (FROM_ONE + PER_MANY * usize::from(MANY_SOURCES)) as u64 + 1000);
    let tb = causeway_testbed::shared().await;
    let member = tb.cluster("tb-a").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = member_token(member, d);
    let state = d.join("stub-state");
    // Only the deadline is set (long enough for the flood to stay held while this test
    // measures); the caps are the defaults.
    let config = stub_config(d, "stub", &state, "  handshakes: {timeoutSeconds: 120}\n");
    let stub = Stub::start(&config, &state, &[], &d.join("stub.log"));
    let agents_url = format!("https://{}", stub.agents);
    let join = cluster_add(&state, "tb-a", &agents_url);
    let a_state = d.join("agent-a");
    let agent_a = start_agent(
        d,
        "agent-a",
        &agents_url,
        member,
        &token,
        &a_state,
        Some(&join),
    );
    agent_a.wait_lines("session established", 2, Duration::from_secs(30));
    let alice = add_alice(&state, d, stub.users, member);

    // Warm up (connections to the API server, allocator arenas), then the baseline.
    for _ in 0..20 {
        assert_eq!(alice_get(&alice, stub.users).await.0, 200);
    }
    let pid = stub.proc.pid();
    let rss0 = rss_kib(pid).expect("the stub's VmRSS");
    let (_, refused0, evicted0) = handshake_metrics(&stub, "users");
    assert_eq!((refused0, evicted0), (0.0, 0.0));

    // --- the users' listener -----------------------------------------------------------
    let t = Instant::now();
    let users_flood = flood(stub.users).await;
    let opened = t.elapsed();
    wait_in_progress(&stub, "users", MAX_PENDING).await;
    let rss_users = rss_kib(pid).expect("the stub's VmRSS");
    let (status, took) = alice_get(&alice, stub.users).await;
    let (pending, refused, evicted) = handshake_metrics(&stub, "users");
    println!(
        "users' listener: {} connections opened in {opened:.1?} ({} held by the test, {} reset at connect); \
         stub: {pending} handshakes in progress, {refused} refused at the source cap, {evicted} evicted; \
         VmRSS {:.1} MiB before, {:.1} MiB during (+{:.1} MiB); alice's GET: {status} in {took:.0?}",
        FROM_ONE + PER_MANY * usize::from(MANY_SOURCES),
        users_flood.held.len(),
        users_flood.reset_at_connect,
        mib(rss0),
        mib(rss_users),
        mib(rss_users.saturating_sub(rss0)),
    );
    assert_eq!(status, 200, "alice's GET during the flood");
    assert!(took < Duration::from_secs(5), "alice's GET took {took:?}");
    // Alice's connection took (evicted) a place, then gave it back.
    assert!(
        (MAX_PENDING - 1.0..=MAX_PENDING).contains(&pending),
        "the global cap: {pending}"
    );
    // 127.0.1.1 held its 64, the rest of its 1,000 refused.
    assert!(
        refused >= (FROM_ONE - MAX_PENDING_PER_SOURCE) as f64,
        "refused at the source cap: {refused}"
    );
    // 64 + 2,000 admitted for 1,024 places (+ alice's connection).
    let admitted = (MAX_PENDING_PER_SOURCE + PER_MANY * usize::from(MANY_SOURCES)) as f64;
    assert!(
        evicted >= admitted - MAX_PENDING,
        "evicted at the global cap: {evicted}"
    );
    assert!(
        rss_users.saturating_sub(rss0) < 30 * 1024,
        "the stub grew by {:.1} MiB",
        mib(rss_users.saturating_sub(rss0))
    );

    // --- the agents' listener, the users' flood still held -------------------------------
    let agents_flood = flood(stub.agents).await;
    wait_in_progress(&stub, "agents", MAX_PENDING).await;
    let rss_both = rss_kib(pid).expect("the stub's VmRSS");
    // The connected agent still serves…
    let (status, took) = alice_get(&alice, stub.users).await;
    assert_eq!(status, 200, "through agent-a during the agents' flood");
    // …and a new agent (agent-a's enrolled certificate, another process) connects.
    let b_state = d.join("agent-b");
    std::fs::create_dir_all(&b_state).unwrap();
    for f in ["agent.crt", "agent.key", "ca.crt"] {
        std::fs::copy(a_state.join(f), b_state.join(f)).unwrap();
    }
    let t = Instant::now();
    let agent_b: Process = start_agent(d, "agent-b", &agents_url, member, &token, &b_state, None);
    agent_b.wait_lines("session established", 2, Duration::from_secs(30));
    let b_took = t.elapsed();
    let (pending, refused, evicted) = handshake_metrics(&stub, "agents");
    println!(
        "agents' listener: {} held by the test, {} reset at connect; stub: {pending} in progress, \
         {refused} refused at the source cap, {evicted} evicted; VmRSS {:.1} MiB with both floods held \
         (+{:.1} MiB); alice's GET via agent-a: {status} in {took:.0?}; agent-b's two sessions up in {b_took:.1?}",
        agents_flood.held.len(),
        agents_flood.reset_at_connect,
        mib(rss_both),
        mib(rss_both.saturating_sub(rss0)),
    );
    assert!(took < Duration::from_secs(5), "alice's GET took {took:?}");
    assert!(
        refused >= (FROM_ONE - MAX_PENDING_PER_SOURCE) as f64,
        "refused at the source cap: {refused}"
    );
    assert!(
        evicted >= admitted - MAX_PENDING,
        "evicted at the global cap: {evicted}"
    );
    assert!(
        rss_both.saturating_sub(rss0) < 60 * 1024,
        "the stub grew by {:.1} MiB with both floods",
        mib(rss_both.saturating_sub(rss0))
    );

    // --- the flood ends: every place is given back ---------------------------------------
    drop(users_flood);
    drop(agents_flood);
    wait_in_progress(&stub, "users", 0.0).await;
    wait_in_progress(&stub, "agents", 0.0).await;
    let rss_after = rss_kib(pid).expect("the stub's VmRSS");
    println!("after the floods: VmRSS {:.1} MiB", mib(rss_after));
    assert_eq!(alice_get(&alice, stub.users).await.0, 200);
    drop((agent_a, agent_b));
}
