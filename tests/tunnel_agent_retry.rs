//! Agents killed under load (issue 13): one cluster with three agents, each enrolled
//! with its own certificate; GETs (and watch starts) from several HTTP/2 clients while
//! the agents are SIGKILLed and restarted in turn. A GET lost with its agent's
//! connection before any response header is retried once on another agent, so every
//! GET answers 200; the stub's retry metric and the audit log (one event per request,
//! naming the agent lost and the agent retried on) show the retries happened. POSTs
//! creating ConfigMaps run at the same time and are never retried: each one created at
//! most one object, exactly one when it answered 201, and no audit event of a create
//! says it was retried.

#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use causeway_testbed::testing::{HttpClient, Kubectl, Process};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use tokio::time::Instant;
use tunnel_support::*;

const NS: &str = "retry-e2e";
const LIST: &str = "/clusters/tb-a/api/v1/namespaces/retry-e2e/configmaps?limit=1";
const WATCH: &str =
    "/clusters/tb-a/api/v1/namespaces/retry-e2e/configmaps?watch=1&timeoutSeconds=5";
const CREATE: &str = "/clusters/tb-a/api/v1/namespaces/retry-e2e/configmaps";
/// Concurrent GET clients (each its own HTTP/2 connection to the stub).
const GET_WORKERS: usize = 6;
/// Concurrent POST clients.
const POST_WORKERS: usize = 2;
/// Agents of the cluster.
const AGENTS: usize = 3;
/// Kills, one agent after the other, this far apart.
const KILLS: usize = 4;
const KILL_EVERY: Duration = Duration::from_millis(2_000);
/// Most requests per worker (the load is bounded in count as well as time).
const MAX_PER_WORKER: usize = 5_000;

/// One request on `send`: (status, whether the body ended cleanly). A watch's body is
/// not read (its headers are what a retry can save); any other body is read to its end.
async fn request(
    client: &HttpClient,
    send: &mut SendRequest<Full<Bytes>>,
    method: http::Method,
    path: &str,
    audit_id: &str,
    body: Bytes,
    watch: bool,
) -> Result<u16, String> {
    let mut b = client
        .http2_request(method, path)
        .header("audit-id", audit_id);
    if !body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(body));
    let req = req.map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
        .await
        .map_err(|_| "no response headers within 20 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if !watch {
        tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
            .await
            .map_err(|_| format!("HTTP {status}: body not complete within 20 s"))?
            .map_err(|e| format!("HTTP {status}: body failed: {e}"))?;
    }
    Ok(status)
}

fn start_agent_n(
    bed: &TunnelBed,
    i: usize,
    round: usize,
    join: Option<&(String, String)>,
) -> Process {
    start_agent(
        bed.dir.path(),
        &format!("agent-{i}-{round}"),
        &bed.agents_url,
        bed.member(),
        &bed.token,
        &bed.dir.path().join(format!("agent-{i}")),
        join,
    )
}

fn metric(bed: &TunnelBed, outcome: &str) -> f64 {
    bed.stub
        .metric(&format!(
            "causeway_tunnel_retries_total{{cluster=\"tb-a\",outcome=\"{outcome}\"}}"
        ))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_killed_under_load_fail_no_get_and_retry_no_post() {
    let t0 = std::time::Instant::now();
    let bed = TunnelBed::start().await;
    let admin = Kubectl::admin(bed.member());
    admin.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
    ));
    // Three agents, each enrolled with its own join token, so its own certificate serial.
    let mut agents: Vec<Process> = Vec::new();
    for i in 0..AGENTS {
        let join = if i == 0 {
            bed.join.clone()
        } else {
            cluster_add(&bed.state, "tb-a", &bed.agents_url)
        };
        let a = start_agent_n(&bed, i, 0, Some(&join));
        a.wait_lines("session established", 2, Duration::from_secs(30));
        agents.push(a);
    }
    let serials: Vec<String> = (0..AGENTS)
        .map(|i| {
            let pem = std::fs::read_to_string(bed.dir.path().join(format!("agent-{i}/agent.crt")))
                .unwrap();
            let der = causeway_tunnel::pki::parse_cert_pem(&pem).unwrap();
            causeway_tunnel::pki::cert_serial(&der[0]).unwrap()
        })
        .collect();
    let distinct: std::collections::HashSet<_> = serials.iter().collect();
    assert_eq!(
        distinct.len(),
        AGENTS,
        "agents must not share a certificate: {serials:?}"
    );
    let alice = bed.add_alice();
    let client = user_client(&alice, bed.stub.users, b"h2").h2_windows(1 << 20, 16 << 20);
    let answered_before = metric(&bed, "answered");
    eprintln!("set up in {:?}", t0.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicUsize::new(0));
    let lists = Arc::new(AtomicUsize::new(0));
    let get_failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // POST number → HTTP status (None: failed without one).
    let posts = Arc::new(Mutex::new(HashMap::<String, Option<u16>>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..GET_WORKERS {
        let mut send = client.http2().await.unwrap();
        let (client, stop, gets, lists, failures) = (
            client.clone(),
            stop.clone(),
            gets.clone(),
            lists.clone(),
            get_failures.clone(),
        );
        tasks.spawn(async move {
            for n in 0..MAX_PER_WORKER {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let watch = n % 10 == 9;
                let (path, id) = if watch {
                    (WATCH, format!("watch-{w}-{n}"))
                } else {
                    (LIST, format!("get-{w}-{n}"))
                };
                gets.fetch_add(1, Ordering::Relaxed);
                if !watch {
                    lists.fetch_add(1, Ordering::Relaxed);
                }
                match request(
                    &client,
                    &mut send,
                    http::Method::GET,
                    path,
                    &id,
                    Bytes::new(),
                    watch,
                )
                .await
                {
                    Ok(200) => {}
                    Ok(code) => failures.lock().unwrap().push(format!("{id}: HTTP {code}")),
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{id}: {e}"));
                        // The connection to the stub may be gone; a fresh one.
                        if let Ok(s) = client.http2().await {
                            send = s;
                        }
                    }
                }
            }
        });
    }
    for w in 0..POST_WORKERS {
        let mut send = client.http2().await.unwrap();
        let (client, stop, posts) = (client.clone(), stop.clone(), posts.clone());
        tasks.spawn(async move {
            for n in 0..MAX_PER_WORKER {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("post-{w}-{n}");
                // generateName: were the create sent twice, two objects would carry the label.
                let body = Bytes::from(format!(
                    r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"generateName":"r-","labels":{{"req":"{id}"}}}},"data":{{"k":"v"}}}}"#
                ));
                let r = request(&client, &mut send, http::Method::POST, CREATE, &id, body, false)
                    .await;
                let failed = r.is_err();
                posts.lock().unwrap().insert(id, r.ok());
                if failed && let Ok(s) = client.http2().await {
                    send = s;
                }
            }
        });
    }

    // Kill the agents in turn (SIGKILL) and restart each at once; two stay up.
    let started = Instant::now();
    let mut kills = Vec::new();
    for k in 0..KILLS {
        tokio::time::sleep(KILL_EVERY).await;
        let i = k % AGENTS;
        agents[i].kill();
        kills.push((i, started.elapsed()));
        let a = start_agent_n(&bed, i, k + 1, None);
        agents[i] = a;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let took = started.elapsed();
    for a in &agents {
        a.wait_lines("session established", 2, Duration::from_secs(30));
    }

    let gets = gets.load(Ordering::Relaxed);
    let lists = lists.load(Ordering::Relaxed);
    let get_failures = get_failures.lock().unwrap().clone();
    let answered = metric(&bed, "answered") - answered_before;
    let (failed, none) = (metric(&bed, "failed"), metric(&bed, "no_connection"));
    let posts = posts.lock().unwrap().clone();
    let post_errors = posts.values().filter(|s| !matches!(s, Some(201))).count();
    eprintln!(
        "{gets} GETs in {took:?}, {} failed {:?}; kills {kills:?}; retries answered {answered}, \
         failed {failed}, no connection {none}; {} POSTs, {post_errors} not 201",
        get_failures.len(),
        &get_failures[..get_failures.len().min(10)],
        posts.len()
    );
    assert!(gets > 500, "too little load to mean anything: {gets} GETs");
    assert!(get_failures.is_empty(), "GETs failed: {get_failures:?}");
    assert!(answered > 0.0, "no request was retried (metric)");

    // Each POST created at most one object, exactly one when it answered 201.
    let listed = admin
        .json(&["get", "configmaps", "-n", NS, "-l", "req", "-o", "json"])
        .unwrap();
    let mut created: HashMap<String, usize> = HashMap::new();
    for item in listed["items"].as_array().unwrap() {
        let req = item["metadata"]["labels"]["req"]
            .as_str()
            .unwrap()
            .to_owned();
        *created.entry(req).or_default() += 1;
    }
    for (id, n) in &created {
        assert!(posts.contains_key(id), "object of unknown request {id}");
        assert_eq!(*n, 1, "POST {id} created {n} objects: it was sent twice");
    }
    for (id, status) in &posts {
        if *status == Some(201) {
            assert_eq!(
                created.get(id),
                Some(&1),
                "POST {id} answered 201 without an object"
            );
        }
    }
    assert!(posts.len() > 50, "too few POSTs: {}", posts.len());

    // The audit log: one event per request; the retried ones name both agents.
    bed.stub.proc.terminate();
    bed.stub.proc.wait_exit(Duration::from_secs(10));
    let audit = std::fs::read_to_string(bed.dir.path().join("stub-audit.log")).unwrap();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    let mut retried = 0;
    for line in audit.lines() {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = ev["auditID"].as_str().unwrap_or_default().to_owned();
        let notes = &ev["annotations"];
        if let Some(from) = notes["causeway.dev/retried-from-agent"].as_str() {
            assert!(
                id.starts_with("get-") || id.starts_with("watch-"),
                "a request that is not a GET was retried: {line}"
            );
            let on = notes["causeway.dev/retried-on-agent"].as_str();
            assert!(
                serials.iter().any(|s| s == from),
                "unknown agent {from}: {line}"
            );
            assert_ne!(on, Some(from), "retried on the agent that lost it: {line}");
            retried += 1;
        }
        *per_id.entry(id).or_default() += 1;
    }
    for (id, n) in &per_id {
        if id.starts_with("get-") || id.starts_with("post-") {
            assert_eq!(*n, 1, "{id} has {n} audit events");
        }
    }
    let audited_gets = per_id.keys().filter(|k| k.starts_with("get-")).count();
    eprintln!(
        "audit: {retried} events retried, {audited_gets} GET events; total {:?}",
        t0.elapsed()
    );
    assert!(retried > 0, "no audit event says it was retried");
    assert_eq!(audited_gets, lists, "GETs missing from the audit log");
    for a in &agents {
        a.kill();
    }
}
