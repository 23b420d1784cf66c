//! Load through the built stub and agents against a real kube-apiserver: 10,000
//! requests with random cancellations leave streams, file descriptors and memory at
//! baseline; an agent killed under load fails only its in-flight requests.

#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use causeway_testbed::testing::{HttpClient, Process, fd_count, rss_kib};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use rand::Rng;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;
use tunnel_support::*;

struct Load {
    bed: TunnelBed,
    agents: Mutex<Vec<Process>>,
    alice: PathBuf,
}

/// One load test at a time: they share the agents.
static SERIAL: Mutex<()> = Mutex::const_new(());

async fn load() -> &'static Load {
    static L: OnceCell<Load> = OnceCell::const_new();
    L.get_or_init(|| async {
        let bed = TunnelBed::start().await;
        let a_state = bed.dir.path().join("agent-a");
        let a = bed.agent("agent-a", &a_state, true);
        // A second agent of the same cluster with the same enrolled certificate.
        let b_state = bed.dir.path().join("agent-b");
        std::fs::create_dir_all(&b_state).unwrap();
        for f in ["agent.crt", "agent.key", "ca.crt"] {
            std::fs::copy(a_state.join(f), b_state.join(f)).unwrap();
        }
        let b = bed.agent("agent-b", &b_state, false);
        let alice = bed.add_alice();
        Load {
            bed,
            agents: Mutex::new(vec![a, b]),
            alice,
        }
    })
    .await
}

const SMALL_GET: &str = "/clusters/tb-a/api/v1/namespaces/default/configmaps?limit=1";

async fn open_streams(l: &Load) -> f64 {
    l.bed
        .stub
        .metric("causeway_tunnel_open_streams")
        .unwrap_or(-1.0)
}

/// Alice's HTTP/2 client of the stub, with large flow-control windows for load.
fn alice_h2(l: &Load) -> HttpClient {
    user_client(&l.alice, l.bed.stub.users, b"h2").h2_windows(1 << 20, 16 << 20)
}

/// An HTTP/2 connection of `client`.
async fn h2(client: &HttpClient) -> SendRequest<Empty<Bytes>> {
    client.http2().await.unwrap()
}

/// GET `path` on `send`; (status, body length).
async fn get(
    client: &HttpClient,
    send: &mut SendRequest<Empty<Bytes>>,
    path: &str,
) -> Result<(u16, usize), String> {
    let req = client
        .http2_request(http::Method::GET, path)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, body.to_bytes().len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_with_cancellations_leave_no_leak() {
    let l = load().await;
    let _serial = SERIAL.lock().await;
    let client = alice_h2(l);
    // Warm up: connections to the API server, allocator arenas.
    {
        let mut c = h2(&client).await;
        for _ in 0..300 {
            let (code, _) = get(&client, &mut c, SMALL_GET).await.unwrap();
            assert_eq!(code, 200);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The stub and every live agent (the kill test may have run first).
    let pids: Vec<u32> = {
        let agents = l.agents.lock().await;
        std::iter::once(l.bed.stub.proc.pid())
            .chain(agents.iter().map(Process::pid))
            .filter(|p| std::path::Path::new(&format!("/proc/{p}/fd")).exists())
            .collect()
    };
    assert!(
        pids.len() >= 2,
        "the stub and at least one agent must be running: {pids:?}"
    );
    let fds0: Vec<usize> = pids.iter().map(|p| fd_count(*p)).collect();
    let rss0: Vec<u64> = pids.iter().map(|p| rss_kib(*p).unwrap_or(0)).collect();
    assert_eq!(open_streams(l).await, 0.0);

    const TOTAL: usize = 10_000;
    const CONNS: usize = 8;
    const PER_CONN: usize = 16;
    let next = Arc::new(AtomicUsize::new(0));
    let (ok, cancelled, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNS {
        let c = h2(&client).await;
        for _ in 0..PER_CONN {
            let (client, mut c, next, ok, cancelled, failed) = (
                client.clone(),
                c.clone(),
                next.clone(),
                ok.clone(),
                cancelled.clone(),
                failed.clone(),
            );
            tasks.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < TOTAL {
                    if started.elapsed() > Duration::from_secs(240) {
                        break;
                    }
                    let (path, cancel_after) = {
                        let mut rng = rand::rng();
                        match rng.random_range(0..10) {
                            // a watch, always cancelled after a moment
                            0..=1 => (
                                "/clusters/tb-a/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=60",
                                Some(Duration::from_millis(rng.random_range(0..40))),
                            ),
                            // a GET cancelled at a random point
                            2..=4 => (SMALL_GET, Some(Duration::from_micros(rng.random_range(0..3000)))),
                            _ => (SMALL_GET, None),
                        }
                    };
                    let fut = get(&client, &mut c, path);
                    match cancel_after {
                        Some(d) => match tokio::time::timeout(d, fut).await {
                            Ok(Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(Err(e)) => {
                                eprintln!("request {path} failed: {e}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(_) => cancelled.fetch_add(1, Ordering::Relaxed),
                        },
                        None => match fut.await {
                            Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                            other => {
                                eprintln!("request {path} failed: {other:?}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        },
                    };
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let took = started.elapsed();
    let (ok, cancelled, failed) = (
        ok.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!("10k: {ok} ok, {cancelled} cancelled, {failed} failed in {took:?}");
    assert_eq!(
        ok + cancelled + failed,
        TOTAL,
        "not every request ran (time bound hit?)"
    );
    assert_eq!(failed, 0, "requests failed");
    assert!(
        cancelled > 1000,
        "too few cancellations to mean anything: {cancelled}"
    );

    // Everything the clients opened is gone: streams, fds, memory back to baseline.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let streams = open_streams(l).await;
        let fds: Vec<usize> = pids.iter().map(|p| fd_count(*p)).collect();
        let settled = streams == 0.0 && fds.iter().zip(&fds0).all(|(now, base)| *now <= base + 2);
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not back to baseline: open streams {streams}, fds {fds:?} vs {fds0:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss: Vec<u64> = pids.iter().map(|p| rss_kib(*p).unwrap_or(0)).collect();
    eprintln!("RSS KiB before {rss0:?} after {rss:?}");
    for (now, base) in rss.iter().zip(&rss0) {
        assert!(
            *now <= base + 16 * 1024,
            "RSS grew from {base} KiB to {now} KiB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_under_load_fails_only_its_in_flight_requests() {
    let l = load().await;
    let _serial = SERIAL.lock().await;
    let client = alice_h2(l);
    const WORKERS: usize = 16;
    let kill_at = Duration::from_secs(2);
    let run_for = Duration::from_secs(6);
    let started = Instant::now();
    let failures = Arc::new(std::sync::Mutex::new(Vec::<(Duration, String)>::new()));
    let after_kill_ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let mut c = h2(&client).await;
        let (client, failures, after_kill_ok) =
            (client.clone(), failures.clone(), after_kill_ok.clone());
        tasks.spawn(async move {
            let mut n = 0;
            while started.elapsed() < run_for && n < 100_000 {
                n += 1;
                let at = started.elapsed();
                match get(&client, &mut c, SMALL_GET).await {
                    Ok((200, _)) if at > kill_at => {
                        after_kill_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((200, _)) => {}
                    Ok((code, _)) => failures.lock().unwrap().push((at, format!("HTTP {code}"))),
                    Err(e) => failures.lock().unwrap().push((at, e)),
                }
            }
        });
    }
    tokio::time::sleep(kill_at).await;
    let killed_at = started.elapsed();
    {
        let agents = l.agents.lock().await;
        agents[0].kill();
    }
    while tasks.join_next().await.is_some() {}
    let failures = failures.lock().unwrap().clone();
    let after = after_kill_ok.load(Ordering::Relaxed);
    eprintln!(
        "agent killed at {killed_at:?}: {} failures {failures:?}; {after} ok after the kill",
        failures.len()
    );
    assert!(
        failures.len() <= WORKERS,
        "more failures ({}) than requests in flight ({WORKERS})",
        failures.len()
    );
    for (at, e) in &failures {
        assert!(
            *at < killed_at + Duration::from_millis(100)
                && *at + Duration::from_secs(2) > killed_at,
            "a request started at {at:?} failed ({e}); the agent died at {killed_at:?}"
        );
    }
    assert!(
        after > 100,
        "only {after} requests succeeded after the kill"
    );
    assert_eq!(open_streams(l).await, 0.0);
}
