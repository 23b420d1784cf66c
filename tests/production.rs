//! Production mode of the scheduler (issue 12): two `causeway scheduler --hub-kubeconfig`
//! replicas against one hub cluster (`hub`, with `causeway crds`), placing through the
//! real stub and agents into three members (`sb-idc`, `sb-ali`, `sb-aws`).
//!
//! 1. Exactly one leader (the Lease `causeway-scheduler` in the hub namespace, taken
//!    through the hub connection; no --lease-kubeconfig).
//! 2. A BurstPolicy `kubectl apply`'d to the hub takes effect (copies Ready in the burst
//!    clusters; apply → effect timed); its status says Accepted and the decision; the
//!    Placement object appears; no status is rewritten while nothing changes, and the
//!    standby writes nothing.
//! 3. A bad change is refused in its status (naming the field) while the last good
//!    policy keeps running.
//! 4. Killing the leader hands over within the Lease duration (timed); the new leader
//!    rewrites nothing already written, then applies a good change and writes its status.
//! 5. The policy deleted from the hub: its Placement object goes.
//!
//! Beside them, two `causeway dns --hub-kubeconfig` replicas over the same hub namespace
//! (the zone in their file): both follow the scheduler's Placement objects (weights from
//! the placement, through the handover and the change) and give the same answer.

#[path = "support/crds.rs"]
mod crds_support;
#[path = "support/scheduler.rs"]
mod scheduler_support;
#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_testbed::testing::{Curl, Kubectl, Process, Spawn, metric_value, wait_for};
use scheduler_support::*;
use serde_json::Value;

/// The Lease duration of the test (the default is 15 s).
const LEASE_SECS: u64 = 4;

/// A scheduler replica in production mode against the hub.
fn replica(bed: &Bed, file: &Path, id: &str) -> (Process, SocketAddr) {
    let dir = bed.dir.path();
    let p = Spawn::causeway(BIN)
        .args(["scheduler", "--config"])
        .arg(file)
        .arg("--hub-kubeconfig")
        .arg(&bed.c(HUB).kubeconfig)
        .args(["--hub-namespace", HUB_NS])
        .args(["--lease-duration", &format!("{LEASE_SECS}s")])
        .args(["--lease-identity", id])
        .name(id)
        .log_file(dir.join(format!("{id}.log")))
        .start();
    let l = p.wait_listening(&["scheduler"], Duration::from_secs(30));
    (p, l.addr("scheduler"))
}

/// `causeway_scheduler_status_writes_total{what=WHAT,result="ok"}` of the replica whose
/// metrics are at `addr` (0 before the first).
fn status_writes(addr: SocketAddr, what: &str) -> f64 {
    let page = Curl::get(&format!("http://{addr}/metrics")).send().body;
    metric_value(
        &page,
        &format!("causeway_scheduler_status_writes_total{{result=\"ok\",what=\"{what}\"}}"),
    )
    .unwrap_or(0.0)
}

/// A dns replica in production mode against the hub, with the zone of [`gslb_config`]
/// in its file; returns it with its DNS and API addresses.
fn dns_replica(bed: &Bed, config: &Path, id: &str) -> (Process, SocketAddr, SocketAddr) {
    let kubeconfig = bed.c(HUB).kubeconfig.to_str().expect("a UTF-8 path");
    let lease = format!("{LEASE_SECS}s");
    start_dns_with(
        bed.dir.path(),
        id,
        config,
        &[
            "--hub-kubeconfig",
            kubeconfig,
            "--hub-namespace",
            HUB_NS,
            "--lease-duration",
            &lease,
            "--lease-identity",
            id,
        ],
    )
}

/// Waits until every dns replica takes its weights for app.svc.example. from the
/// placement, as `want` says, and both answer the same; returns how long it took.
fn wait_dns_follow(
    dns: &[(Process, SocketAddr, SocketAddr)],
    want: &[(&str, u64, bool)],
) -> Duration {
    let t0 = Instant::now();
    for (_, _, api) in dns {
        wait_dns_weights(*api, want, Duration::from_secs(15));
    }
    let took = t0.elapsed();
    let answers: Vec<Vec<String>> = dns.iter().map(|(_, udp, _)| dig(*udp)).collect();
    let served: Vec<String> = want
        .iter()
        .filter(|(_, w, healthy)| *w > 0 && *healthy)
        .map(|(c, _, _)| addr_of(c))
        .collect();
    let mut served = served;
    served.sort();
    for a in &answers {
        assert_eq!(*a, served, "the dns replicas' answers: {answers:?}");
    }
    took
}

/// The BurstPolicy `web` as applied to the hub: `ali` is sb-ali's entry (`maxReplicas:
/// 2`, …); dns name app.svc.example.
fn hub_policy(ali: &str) -> String {
    burst_policy(
        ali,
        "maxReplicas: 10",
        "  demand: {capacity: {}}\n  dns: {name: app.svc.example., ttl: 1s}\n",
    )
}

fn hub(bed: &Bed) -> Kubectl {
    Kubectl::admin(bed.c(HUB)).arg("-n").arg(HUB_NS)
}

/// The BurstPolicy `web` in the hub, as JSON.
fn web(bed: &Bed) -> Value {
    hub(bed)
        .json(&["get", "burstpolicy", "web"])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn lines(p: &Process, needle: &str) -> usize {
    p.logs().lines().filter(|l| l.contains(needle)).count()
}

/// `status.decision.clusters.C.{desired,ready}` of `s`.
fn decided(s: &Value, c: &str) -> (i64, i64) {
    let d = &s["status"]["decision"]["clusters"][c];
    (
        d["desired"].as_i64().unwrap_or(-1),
        d["ready"].as_i64().unwrap_or(-1),
    )
}

/// `(Accepted status, observedGeneration, message)` of `s`.
fn accepted(s: &Value) -> (String, i64, String) {
    let c = &s["status"]["conditions"][0];
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        s["status"]["observedGeneration"].as_i64().unwrap_or(-1),
        c["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// `cluster → weight` of the Placement object of app.svc.example., if it exists.
fn placement(bed: &Bed) -> Option<Vec<(String, u64)>> {
    let p = hub(bed)
        .json(&["get", "placement", "app.svc.example"])
        .ok()?;
    assert_eq!(
        p["metadata"]["labels"]["app.kubernetes.io/managed-by"], "causeway-scheduler",
        "{p}"
    );
    Some(
        p["spec"]["targets"]
            .as_array()?
            .iter()
            .map(|t| {
                (
                    t["cluster"].as_str().unwrap_or_default().to_string(),
                    t["weight"].as_u64().unwrap_or_default(),
                )
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_against_one_hub() {
    let started = Instant::now();
    let bed = bring_up_with_hub().await;
    let hub_admin = Kubectl::admin(bed.c(HUB));
    crds_support::apply_crds(&hub_admin);
    crds_support::create_namespace(&hub_admin, HUB_NS);
    println!("bring-up: {:?}", started.elapsed());
    let (idc, ali, aws) = (bed.c(IDC), bed.c(ALI), bed.c(AWS));
    // 9 wanted, 4 fit at home: without a policy the 5 others stay Pending.
    Kubectl::admin(idc).apply(&source_deployment(9));
    // The file holds only the Scheduler document; the policies come from the hub.
    let file = scheduler_file(&bed, "scheduler.yaml", "", "");

    // 1. One leader, through the hub connection.
    let (a, a_metrics) = replica(&bed, &file, "sched-a");
    a.wait_line("leader: applying", Duration::from_secs(20));
    let (b, b_metrics) = replica(&bed, &file, "sched-b");
    b.wait_line("standby: observing", Duration::from_secs(20));
    let holder = Kubectl::admin(bed.c(HUB)).run(&[
        "get",
        "lease",
        "causeway-scheduler",
        "-n",
        HUB_NS,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "sched-a");
    assert_eq!(deployment(ali), None, "nothing placed without a policy");
    // Two dns replicas over the same hub: no Placement yet, the zone's weights.
    let dns_config = gslb_config(bed.dir.path(), "127.0.0.1:0", "app", "");
    let dns = [
        dns_replica(&bed, &dns_config, "dns-a"),
        dns_replica(&bed, &dns_config, "dns-b"),
    ];
    for (_, _, api) in &dns {
        assert!(
            dns_weights(*api).iter().all(|c| c.2 != "placement"),
            "{:?}",
            dns_weights(*api)
        );
    }

    // 2. kubectl apply to the hub → copies Ready, status, Placement.
    let applied_at = Instant::now();
    hub(&bed).apply(&hub_policy("maxReplicas: 2"));
    wait_for(
        "copies Ready after the hub policy",
        Duration::from_secs(40),
        Duration::from_millis(200),
        || match (deployment(ali), deployment(aws)) {
            (Some((2, 2)), Some((3, 3))) => Ok(()),
            other => Err(format!("{other:?}\n{}", a.log_tail(5))),
        },
    );
    let effect = applied_at.elapsed();
    println!("kubectl apply → burst copies Ready: {effect:?}");
    let s = wait_for(
        "the decision in status",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let s = web(&bed);
            if decided(&s, ALI) == (2, 2) && decided(&s, AWS) == (3, 3) {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    );
    println!("status after the apply: {}", s["status"]);
    assert_eq!(accepted(&s), ("True".into(), 1, "loaded and in use".into()));
    assert_eq!(decided(&s, IDC), (9, 4), "{s}");
    assert!(
        s["status"]["decision"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{s}"
    );
    assert!(s["status"]["decision"]["since"].is_string(), "{s}");
    let weights = wait_for(
        "the Placement object",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            placement(&bed)
                .filter(|p| p.iter().any(|(c, w)| c == ALI && *w == 2))
                .ok_or("not yet")
        },
    );
    println!("Placement app.svc.example: {weights:?}");
    assert_eq!(
        weights,
        vec![(IDC.into(), 4), (ALI.into(), 2), (AWS.into(), 3)]
    );
    let took = wait_dns_follow(&dns, &[(IDC, 4, true), (ALI, 2, true), (AWS, 3, true)]);
    println!("Placement → both dns replicas weigh 4/2/3 from it: {took:?} (after it was seen)");

    // Nothing changes: the status is not rewritten (no write storm), the standby writes nothing.
    let rv = web(&bed)["metadata"]["resourceVersion"].clone();
    let writes = lines(&a, "decision written to status");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        web(&bed)["metadata"]["resourceVersion"],
        rv,
        "status rewritten"
    );
    assert_eq!(lines(&a, "decision written to status"), writes);
    println!("decision status writes by the leader so far: {writes}");
    for (what, n) in [
        ("applied", lines(&b, "applied")),
        ("status", lines(&b, "decision written to status")),
        ("placements", lines(&b, "published Placement")),
    ] {
        assert_eq!(n, 0, "the standby wrote {what}:\n{}", b.log_tail(10));
    }

    // 3. A bad change: refused in status; the last good policy (sb-ali 2) keeps running.
    hub(&bed).apply(&hub_policy("maxReplicas: 1, warmMinimum: 3"));
    let s = wait_for(
        "the refusal in status",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let s = web(&bed);
            let (ok, generation, _) = accepted(&s);
            if ok == "False" && generation == 2 {
                Ok(s)
            } else {
                Err(s["status"].to_string())
            }
        },
    );
    let (_, _, why) = accepted(&s);
    println!("refused: {why}");
    assert!(
        why.starts_with(&format!("hub:{HUB_NS}/burstpolicies/web:"))
            && why.contains("spec.burst[0].warmMinimum"),
        "{why}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(deployment(ali), Some((2, 2)), "the last good policy runs");
    assert_eq!(decided(&web(&bed), ALI), (2, 2));

    // 4. Kill the leader: the standby takes over within the Lease duration (+ one poll).
    // One verdict write per generation (accepted 1, refused 2), none by the standby.
    assert_eq!(status_writes(a_metrics, "verdict"), 2.0);
    assert_eq!(status_writes(b_metrics, "verdict"), 0.0);
    assert_eq!(status_writes(b_metrics, "decision"), 0.0);
    let a_writes = lines(&a, "decision written to status");
    assert_eq!(status_writes(a_metrics, "decision"), a_writes as f64);
    let rv = web(&bed)["metadata"]["resourceVersion"].clone();
    a.kill();
    let killed = Instant::now();
    b.wait_line("leader: applying", Duration::from_secs(20));
    let takeover = killed.elapsed();
    println!("takeover {takeover:?} after the leader was killed (Lease {LEASE_SECS}s)");
    // The Lease duration after the last renewal, plus up to one standby poll (a third of
    // it), plus slack for a loaded machine (as tests/scheduler_ha.rs).
    assert!(
        takeover < Duration::from_secs(2 * LEASE_SECS),
        "took {takeover:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lines(&b, "applied"), 0, "re-applied:\n{}", b.log_tail(10));
    assert_eq!(
        lines(&b, "decision written to status"),
        0,
        "the new leader rewrote a status already written:\n{}",
        b.log_tail(10)
    );
    assert_eq!(
        web(&bed)["metadata"]["resourceVersion"],
        rv,
        "the new leader rewrote the object's status"
    );
    // A good change, applied by the new leader: sb-ali 3 (sb-aws keeps its 3 through the
    // scale-down window, 300 s by default).
    let applied_at = Instant::now();
    hub(&bed).apply(&hub_policy("maxReplicas: 3"));
    wait_for(
        "the good change applied by the new leader",
        Duration::from_secs(40),
        Duration::from_millis(200),
        || match (deployment(ali), deployment(aws)) {
            (Some((3, 3)), Some((3, 3))) => Ok(()),
            other => Err(format!("{other:?}\n{}", b.log_tail(5))),
        },
    );
    println!(
        "kubectl apply → change effective (new leader): {:?}",
        applied_at.elapsed()
    );
    let s = wait_for(
        "status of the good change",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let s = web(&bed);
            if accepted(&s).0 == "True" && decided(&s, ALI) == (3, 3) && decided(&s, AWS) == (3, 3)
            {
                Ok(s)
            } else {
                Err(s["status"].to_string())
            }
        },
    );
    assert_eq!(accepted(&s).1, 3);
    let took = wait_dns_follow(&dns, &[(IDC, 4, true), (ALI, 3, true), (AWS, 3, true)]);
    println!("both dns replicas weigh 4/3/3 after the change: {took:?} after its status");
    wait_for(
        "the Placement follows",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            placement(&bed)
                .filter(|p| p.contains(&(ALI.into(), 3)) && p.contains(&(AWS.into(), 3)))
                .ok_or("not yet")
        },
    );
    assert_eq!(
        status_writes(b_metrics, "verdict"),
        1.0,
        "generation 3 only"
    );
    println!(
        "status writes: sched-a {a_writes} decisions + 2 verdicts, sched-b {} decisions + 1 verdict",
        status_writes(b_metrics, "decision")
    );

    // 5. The policy deleted from the hub: its Placement goes.
    hub(&bed).run(&["delete", "burstpolicy", "web"]);
    wait_for(
        "the Placement deleted",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || match placement(&bed) {
            None => Ok(()),
            Some(p) => Err(format!("{p:?}")),
        },
    );
    for (_, _, api) in &dns {
        wait_for(
            "dns back to the zone's weights",
            Duration::from_secs(10),
            Duration::from_millis(200),
            || {
                let w = dns_weights(*api);
                if w.iter().all(|c| c.2 != "placement") {
                    Ok(())
                } else {
                    Err(format!("{w:?}"))
                }
            },
        );
    }
    println!("total: {:?}", started.elapsed());
}
