//! Two scheduler replicas elect one leader with a Lease in a hub cluster (here `sb-idc`'s
//! API server): only the leader writes; killing it hands over within the Lease
//! duration; the new leader does not write again what is already applied.

#[path = "support/scheduler.rs"]
mod scheduler_support;
#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::time::{Duration, Instant};

use causeway_testbed::testing::{Kubectl, Process, Spawn, wait_for};
use scheduler_support::*;

const LEASE: &str = "4s";

fn replica(bed: &Bed, files: &[&std::path::Path], id: &str) -> Process {
    let dir = bed.dir.path();
    let mut s = Spawn::causeway(BIN).args(["scheduler", "--config"]);
    for f in files {
        s = s.arg(f);
    }
    let p = s
        .arg("--lease-kubeconfig")
        .arg(&bed.c(IDC).kubeconfig)
        .args(["--lease-namespace", "default", "--lease-duration", LEASE])
        .args(["--lease-identity", id])
        .name(id)
        .log_file(dir.join(format!("{id}.log")))
        .start();
    p.wait_listening(&["scheduler"], Duration::from_secs(20));
    p
}

fn applied(p: &Process) -> usize {
    p.logs().lines().filter(|l| l.contains("applied")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_and_a_standby_takes_over() {
    let bed = bring_up().await;
    let (idc, ali, aws) = (bed.c(IDC), bed.c(ALI), bed.c(AWS));
    Kubectl::admin(idc).apply(&source_deployment(4));
    let file = scheduler_file(
        &bed,
        "scheduler.yaml",
        "",
        &burst_policy(
            "maxReplicas: 2",
            "maxReplicas: 10",
            "  demand: {capacity: {}}\n",
        ),
    );
    let a = replica(&bed, &[&file], "sched-a");
    a.wait_line("leader: applying", Duration::from_secs(20));
    let b = replica(&bed, &[&file], "sched-b");
    b.wait_line("standby: observing", Duration::from_secs(20));

    // A surge: only the leader writes; the standby plans the same.
    Kubectl::admin(idc).run(&["scale", "deployment", "web", "-n", "shop", "--replicas=9"]);
    wait_for(
        "copies Ready",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || match (deployment(ali), deployment(aws)) {
            (Some((2, 2)), Some((3, 3))) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(applied(&a), 2, "{}", a.log_tail(10));
    assert_eq!(applied(&b), 0, "the standby wrote:\n{}", b.log_tail(10));
    assert!(
        b.logs().contains("planned=3"),
        "the standby plans too:\n{}",
        b.log_tail(10)
    );

    // Kill the leader: the standby takes over within the Lease duration (+ one renewal period).
    a.kill();
    let killed = Instant::now();
    b.wait_line("leader: applying", Duration::from_secs(15));
    let takeover = killed.elapsed();
    println!("takeover {takeover:?} after the leader was killed (Lease {LEASE})");
    assert!(takeover < Duration::from_secs(8), "took {takeover:?}");
    // Nothing changed: the new leader finds every copy applied and writes nothing.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        applied(&b),
        0,
        "double apply after takeover:\n{}",
        b.log_tail(10)
    );
    // A change is applied by the new leader.
    Kubectl::admin(idc).run(&["scale", "deployment", "web", "-n", "shop", "--replicas=10"]);
    wait_for(
        "aws 4",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || {
            deployment(aws)
                .filter(|(r, _)| *r == 4)
                .ok_or_else(|| b.log_tail(3))
        },
    );
    assert_eq!(applied(&b), 1, "{}", b.log_tail(10));
}
