//! Self-fencing end to end (docs/tunnel.md "Self-fencing"): the built `causeway agent`
//! against a real kube-apiserver, role Leases renewed by the test as the scheduler
//! would. One testbed, one test, the cases one after the other in their own namespaces:
//!
//! (e) without the fencer RBAC the agent warns once that self-fencing is off and keeps
//!     running; with it, it says so and starts fencing;
//! (a) a Lease renewed every second is never fenced (for well over 2 L);
//! (b) when the renewals stop, the ConfigMap says `fenced` and the Deployment is at 0
//!     within L + 3 s of the last renewal, and never before L (from the timestamps);
//! (d) Leases with bad annotations or no duration are ignored with a warning each;
//! (c) an agent started while a Lease is already stale fences it within seconds, with
//!     the stub down (fencing needs no session), and does not fence (b) a second time.

#[path = "support/tunnel.rs"]
mod tunnel_support;

#[path = "support/fence.rs"]
mod fence_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use causeway_testbed::testing::{Process, metric_value, wait_for};
use fence_support::*;
use tunnel_support::http_get;

/// The role Leases' duration, seconds.
const L: u32 = 3;
const L_DUR: Duration = Duration::from_secs(L as u64);

fn count(p: &Process, needle: &str) -> usize {
    p.logs().lines().filter(|l| l.contains(needle)).count()
}

fn metric(addr: std::net::SocketAddr, series: &str) -> f64 {
    metric_value(&http_get(addr, "/metrics").1, series).unwrap_or(0.0)
}

/// Both fence writes are visible in `ns`.
fn fenced(k: &causeway_testbed::testing::Kubectl, ns: &str) -> bool {
    role(k, ns).0 == "fenced" && replicas(k, ns).0 == 0
}

/// What the renewer thread shares: stop renewing `fence-b`, and its last renewal.
struct RenewB {
    stop: bool,
    last: SystemTime,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_fences_its_primary_when_the_role_lease_is_not_renewed() {
    let mut bed = FenceBed::start().await;
    let k = bed.admin();
    let t0 = SystemTime::now();
    for ns in ["fence-a", "fence-b", "fence-d"] {
        k.apply(&workload(ns, 2));
    }
    k.apply(&role_lease("fence-a", L, t0));
    k.apply(&role_lease("fence-b", L, t0));
    // (d) Stale by a minute, pointing at fence-d/web, each broken in its own way.
    let stale = t0 - Duration::from_secs(60);
    let good = "    causeway.dev/fence-deployment: web
    causeway.dev/fence-configmap: web-role
    causeway.dev/fence-mode: scale-to-zero";
    let bad = [
        (
            "causeway-role-mode",
            "  leaseDurationSeconds: 3",
            good.replace("scale-to-zero", "delete-everything"),
        ),
        (
            "causeway-role-nocm",
            "  leaseDurationSeconds: 3",
            good.replace("    causeway.dev/fence-configmap: web-role\n", ""),
        ),
        (
            "causeway-role-path",
            "  leaseDurationSeconds: 3",
            good.replace(
                "fence-deployment: web",
                "fence-deployment: \"../../../api/v1/secrets\"",
            ),
        ),
        ("causeway-role-nodur", "", good.to_owned()),
    ];
    for (name, spec, annotations) in &bad {
        k.apply(&lease_with("fence-d", name, stale, spec, annotations));
    }

    // The scheduler's part: renew fence-a and fence-b every second.
    let stop_all = Arc::new(AtomicBool::new(false));
    let b = Arc::new(Mutex::new(RenewB {
        stop: false,
        last: t0,
    }));
    let renewer = {
        let (k, stop_all, b) = (k.clone(), stop_all.clone(), b.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop_all.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(180)
            {
                let tick = Instant::now();
                renew(&k, "fence-a");
                {
                    let mut b = b.lock().unwrap();
                    if !b.stop {
                        b.last = renew(&k, "fence-b");
                    }
                }
                std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
            }
        })
    };

    // (e) No fencer RBAC: one warning, the agent runs on.
    let (agent, metrics) = bed.agent("agent-1", &["--fence-interval", "1s"]);
    agent.wait_line("self-fencing off", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(3));
    assert!(agent.alive(), "agent died:\n{}", agent.log_tail(30));
    assert_eq!(
        count(&agent, "self-fencing off"),
        1,
        "the Forbidden warning is repeated:\n{}",
        agent.log_tail(30)
    );
    assert!(
        agent.logs().contains("causeway:fencer"),
        "the warning names the user"
    );

    k.apply(&fencer_rbac());
    agent.wait_line("role leases listed again", Duration::from_secs(15));
    let fencing_since = Instant::now();

    // (a) and (b) renewed for 2 L: nothing fenced. (d) warned about and left alone.
    std::thread::sleep(2 * L_DUR);
    for ns in ["fence-a", "fence-b", "fence-d"] {
        assert_eq!(role(&k, ns).0, "primary", "{ns} fenced while renewed");
        assert_eq!(replicas(&k, ns).0, 2, "{ns} scaled while renewed");
    }
    for (name, _, _) in &bad {
        assert_eq!(
            agent
                .logs()
                .lines()
                .filter(|l| l.contains("ignoring an invalid role lease") && l.contains(name))
                .count(),
            1,
            "{name} not warned about exactly once:\n{}",
            agent.log_tail(40)
        );
    }
    assert_eq!(
        metric(metrics, r#"causeway_agent_role_leases{state="invalid"}"#),
        4.0
    );
    assert_eq!(
        metric(metrics, r#"causeway_agent_role_leases{state="valid"}"#),
        2.0
    );
    assert_eq!(
        metric(metrics, r#"causeway_agent_fences_total{result="fenced"}"#),
        0.0
    );

    // (b) The renewals of fence-b stop.
    let last_b = {
        let mut b = b.lock().unwrap();
        b.stop = true;
        b.last
    };
    let deadline = last_b + L_DUR + Duration::from_secs(3);
    let within = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    wait_for(
        "fence-b fenced within L + 3 s of its last renewal",
        within,
        Duration::from_millis(100),
        || fenced(&k, "fence-b"),
    );
    let seen_after = SystemTime::now().duration_since(last_b).unwrap();
    let (_, changed_at, changed_by) = role(&k, "fence-b");
    let changed_at = changed_at.expect("role-changed-at");
    let (fenced_at, fenced_by) = fenced_mark(&k, "fence-b");
    let fenced_at = fenced_at.expect("fenced-at on the lease");
    assert_eq!(changed_by, format!("agent/{CLUSTER}"));
    assert_eq!(fenced_by, format!("agent/{CLUSTER}"));
    assert!(
        changed_at >= last_b + L_DUR && fenced_at >= last_b + L_DUR,
        "fenced before the lease expired: renewed {}, role changed {}, fenced-at {}",
        micro(last_b),
        micro(changed_at),
        micro(fenced_at)
    );
    assert!(
        fenced_at <= deadline,
        "fenced-at {} later than L + 3 s",
        micro(fenced_at)
    );
    assert_eq!(replicas(&k, "fence-b").1.as_deref(), Some("2"));
    let after = |t: SystemTime| t.duration_since(last_b).unwrap_or_default();
    eprintln!(
        "fence-b: last renewal +{:?}: role fenced at +{:?}, lease marked at +{:?}, seen by the test at +{seen_after:?}",
        L_DUR,
        after(changed_at),
        after(fenced_at)
    );
    assert_eq!(count(&agent, "self-fenced: role lease not renewed"), 1);
    assert_eq!(
        metric(metrics, r#"causeway_agent_fences_total{result="fenced"}"#),
        1.0
    );
    wait_for(
        "role leases counted as expired",
        Duration::from_secs(3),
        Duration::from_millis(200),
        || metric(metrics, r#"causeway_agent_role_leases{state="expired"}"#) == 1.0,
    );

    // (c) The agent restarts, with the stub down, while fence-c's lease is 10 s stale.
    drop(agent);
    drop(bed.stub.take());
    k.apply(&workload("fence-c", 3));
    k.apply(&role_lease(
        "fence-c",
        L,
        SystemTime::now() - Duration::from_secs(10),
    ));
    let started = Instant::now();
    let (agent, metrics) = bed.agent("agent-2", &[]);
    wait_for(
        "fence-c fenced by an agent started after the lease went stale",
        Duration::from_secs(8),
        Duration::from_millis(100),
        || fenced(&k, "fence-c"),
    );
    let restart_to_fence = started.elapsed();
    eprintln!("fence-c: agent start → fence seen {restart_to_fence:?}");
    assert!(restart_to_fence < Duration::from_secs(6));
    assert_eq!(replicas(&k, "fence-c").1.as_deref(), Some("3"));
    assert_eq!(metric(metrics, "causeway_agent_sessions"), 0.0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count(&agent, "self-fenced: role lease not renewed"),
        1,
        "fence-b fenced again after the restart:\n{}",
        agent.log_tail(30)
    );
    assert_eq!(fenced_mark(&k, "fence-b").0, Some(fenced_at));

    // (a) Renewed all along: never fenced.
    stop_all.store(true, Ordering::Relaxed);
    renewer.join().expect("the renewer thread");
    assert!(fencing_since.elapsed() >= 2 * L_DUR);
    assert_eq!(role(&k, "fence-a").0, "primary");
    assert_eq!(replicas(&k, "fence-a"), (2, None));
    assert_eq!(fenced_mark(&k, "fence-a").0, None);
    assert_eq!(role(&k, "fence-d").0, "primary");
    assert_eq!(replicas(&k, "fence-d").0, 2);
    assert!(agent.alive());
}
