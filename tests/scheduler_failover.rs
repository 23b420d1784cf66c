//! `FailoverPolicy` end to end: three real clusters, the real stub and agents (with their
//! fencer), dns and `dig`. One drill after another on the same bed:
//!
//! 1. **Partition**: the primary's agent is cut off from the stub (a relay drops its
//!    bytes; nothing is killed). Its agent fences it when the role lease is not renewed,
//!    and only then is the first backup promoted — asserted from the two timestamps the
//!    agent and the scheduler wrote. dns answers nothing in between, then the backup.
//! 2. **Agent stopped**: the new primary's agent is killed. The next backup (a cold
//!    standby at 0 replicas) is promoted, scaled up and answered, no earlier than the
//!    lease allows; the restarted agent fences its stale primary at once.
//! 3. **kube-apiserver stopped** (SIGSTOP): after the operator makes the first cluster a
//!    replica again (the manual failback step), it is promoted; when the stopped API
//!    server resumes, the stale primary there is fenced.
//!
//! Each failover's RTO is printed from the scheduler's log and checked in its metrics.

#[path = "support/tunnel.rs"]
mod tunnel_support;

#[path = "support/scheduler.rs"]
mod scheduler_support;

#[path = "support/fence.rs"]
mod fence_support;

#[path = "support/failover.rs"]
mod failover_support;

use std::time::{Duration, Instant, SystemTime};

use causeway_testbed::testing::{Kubectl, Spawn, metric_value, wait_for};
use failover_support::*;
use scheduler_support::{ALI, AWS, BIN, IDC, addr_of};

/// The workload's namespace (Deployment `web`, ConfigMap `web-role`, Lease
/// `causeway-role-web`, as `support/fence.rs` reads them).
const NS: &str = "db";
/// Lease duration and margin of the policy.
const LEASE: Duration = Duration::from_secs(6);
const MARGIN: Duration = Duration::from_secs(3);

fn policy() -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: FailoverPolicy
metadata: {{name: web}}
spec:
  workload: {{namespace: {NS}, deployment: web}}
  primary: {IDC}
  backups: [{ALI}, {AWS}]
  replicas: 1
  lease: {{duration: {}s, margin: {}s}}
  unhealthyAfter: 5s
  rto: 60s
  dns: {{name: web.svc.example., ttl: 1s}}
",
        LEASE.as_secs(),
        MARGIN.as_secs()
    )
}

fn role(k: &Kubectl) -> (String, Option<SystemTime>, String) {
    if k.json(&["get", "configmap", "web-role", "-n", NS]).is_err() {
        return (String::new(), None, String::new());
    }
    fence_support::role(k, NS)
}

fn wait_role(k: &Kubectl, want: &str, within: Duration) -> (SystemTime, String) {
    wait_for(
        &format!("role {want}"),
        within,
        Duration::from_millis(200),
        || {
            let (r, at, by) = role(k);
            if r == want {
                Ok((at.unwrap_or(SystemTime::UNIX_EPOCH), by))
            } else {
                Err(format!("role {r:?} by {by:?}"))
            }
        },
    )
}

fn wait_dns(dns: std::net::SocketAddr, want: &[String], within: Duration) {
    wait_for(
        &format!("dig → {want:?}"),
        within,
        Duration::from_millis(300),
        || {
            let got = dig_web(dns);
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dr_failover_fences_the_old_primary_before_promoting_a_backup() {
    let mut bed = FailoverBed::start().await;
    for (c, replicas) in [(IDC, 1), (ALI, 1), (AWS, 0)] {
        bed.admin(c).apply(&db_workload(NS, replicas));
    }
    let dir = bed.dir.path().to_path_buf();
    let dns = Spawn::causeway(BIN)
        .args(["dns", "--config"])
        .arg(failover_dns_config(&dir))
        .log_file(dir.join("dns.log"))
        .start();
    let l = dns.wait_listening(&["dns", "api"], Duration::from_secs(20));
    let (udp, api) = (l.addr_of("dns", "udp"), l.addr("api"));
    let config = dir.join("scheduler.yaml");
    std::fs::write(
        &config,
        scheduler_support::scheduler_yaml(
            &bed.kubeconfig,
            &format!("  dnsApi: http://{api}\n"),
            &policy(),
        ),
    )
    .unwrap();
    let scheduler = Spawn::causeway(BIN)
        .args(["scheduler", "--config"])
        .arg(&config)
        .name("scheduler")
        .log_file(dir.join("scheduler.log"))
        .start();
    let metrics = scheduler
        .wait_listening(&["scheduler"], Duration::from_secs(20))
        .addr("scheduler");
    let (idc, ali, aws) = (bed.admin(IDC), bed.admin(ALI), bed.admin(AWS));

    // 0. First grant: idc primary (every cluster seen, none primary), the others replicas.
    wait_role(&idc, "primary", Duration::from_secs(30));
    wait_role(&ali, "replica", Duration::from_secs(10));
    wait_role(&aws, "replica", Duration::from_secs(10));
    wait_dns(udp, &[addr_of(IDC)], Duration::from_secs(20));
    // `plan --what-if` shows what the live scheduler does next: idc lost → out of DNS at
    // once, ali promoted after lease + margin.
    let out = causeway_testbed::testing::run_ok(
        std::process::Command::new(BIN)
            .args(["scheduler", "plan", "--config"])
            .arg(&config)
            .args([
                "--what-if",
                &format!("{IDC} down"),
                "--what-if",
                "after 20s",
            ]),
    );
    let what_if = out.split("# what if").nth(1).unwrap_or_default();
    let line = |c: &str| {
        what_if
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(c))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line(ALI).contains("grant 1"), "{out}");
    assert!(line(IDC).contains(" out "), "{out}");
    assert!(
        line(AWS).contains(" out ") && !line(AWS).contains("grant"),
        "{out}"
    );

    // 1. Partition: idc's agent cut off from the stub, idc itself alive.
    let cut = SystemTime::now();
    bed.relay.cut();
    let mut answers: Vec<(SystemTime, Vec<String>)> = Vec::new();
    let (promoted_at, promoted_by) = wait_for(
        "ali promoted",
        Duration::from_secs(90),
        Duration::from_millis(250),
        || {
            answers.push((SystemTime::now(), dig_web(udp)));
            let (r, at, by) = role(&ali);
            if r == "primary" {
                Some((at.unwrap(), by))
            } else {
                None
            }
        },
    );
    let (fence_role, fenced_at, fenced_by) = role(&idc);
    assert_eq!(
        fence_role, "fenced",
        "idc must be fenced before ali is promoted"
    );
    assert_eq!(
        fenced_by,
        format!("agent/{IDC}"),
        "idc's own agent fenced it"
    );
    assert_eq!(promoted_by, "scheduler");
    let fenced_at = fenced_at.unwrap();
    assert!(
        fenced_at < promoted_at,
        "two writers: idc fenced at {fenced_at:?}, ali promoted at {promoted_at:?}"
    );
    assert_eq!(
        fence_support::replicas(&idc, NS).0,
        0,
        "fence scales idc to 0"
    );
    let fence_after = fenced_at.duration_since(cut).unwrap_or_default();
    let gap = promoted_at.duration_since(fenced_at).unwrap();
    println!(
        "partition: idc self-fenced {:.1}s after the cut; ali promoted {:.1}s after that",
        fence_after.as_secs_f64(),
        gap.as_secs_f64()
    );
    // The last renewal landed at most a third of the lease before the cut.
    let earliest = LEASE - LEASE / 3 - Duration::from_millis(500);
    assert!(
        fence_after >= earliest,
        "fenced {fence_after:?} after the cut, before the lease ({LEASE:?}) could expire"
    );
    // dns: never two sites at once; nothing between the loss and the promotion.
    for (t, a) in &answers {
        assert!(a.len() <= 1, "two sites answered at {t:?}: {a:?}");
        if *t > fenced_at && *t < promoted_at {
            assert!(a.is_empty() || a == &[addr_of(IDC)], "{t:?}: {a:?}");
        }
    }
    assert!(
        answers
            .iter()
            .any(|(t, a)| *t < promoted_at && a.is_empty()),
        "idc left the answers before ali was promoted: {answers:?}"
    );
    wait_dns(udp, &[addr_of(ALI)], Duration::from_secs(20));
    bed.relay.heal();
    // idc back (its agent redials through the healed relay): it stays fenced and out
    // (failback is manual), and the scheduler deletes its stale lease through the stub.
    wait_for(
        "idc's stale role lease deleted",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            idc.json(&["get", "lease", "causeway-role-web", "-n", NS])
                .is_err()
        },
    );
    assert_eq!(role(&idc).0, "fenced");
    assert_eq!(dig_web(udp), vec![addr_of(ALI)]);

    // 2. Agent stopped: ali's agent killed (it cannot fence anything now).
    let killed = Instant::now();
    bed.kill_agent(ALI);
    wait_role(&aws, "primary", Duration::from_secs(60));
    let promoted = killed.elapsed();
    println!(
        "agent stopped: aws promoted {:.1}s after ali's agent died",
        promoted.as_secs_f64()
    );
    // The last renewal was at most a third of the lease before the kill.
    assert!(
        promoted >= LEASE + MARGIN - LEASE / 3,
        "promoted after {promoted:?}: before ali's lease + margin could pass"
    );
    assert_eq!(
        fence_support::replicas(&aws, NS).0,
        1,
        "the cold standby is scaled up"
    );
    wait_dns(udp, &[addr_of(AWS)], Duration::from_secs(30));
    // Its agent back: ali's stale lease makes it fence ali at once.
    let agent = bed.restart_agent(ALI);
    agent.wait_line("session established", Duration::from_secs(60));
    let (_, by) = wait_role(&ali, "fenced", Duration::from_secs(20));
    println!("ali fenced by {by} after its agent restarted");
    assert_eq!(fence_support::replicas(&ali, NS).0, 0);
    assert_eq!(dig_web(udp), vec![addr_of(AWS)]);

    // 3. kube-apiserver stopped. First the operator's failback step: idc a replica again.
    idc.run(&["scale", "deployment", "web", "-n", NS, "--replicas", "1"]);
    idc.run(&[
        "patch",
        "configmap",
        "web-role",
        "-n",
        NS,
        "--type",
        "merge",
        "-p",
        r#"{"data":{"role":"replica"}}"#,
    ]);
    wait_for(
        "idc's replica ready",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            idc.json(&["get", "deployment", "web", "-n", NS])
                .is_ok_and(|d| d["status"]["readyReplicas"].as_i64() == Some(1))
        },
    );
    let stopped = Instant::now();
    bed.signal_apiserver(AWS, "STOP");
    wait_role(&idc, "primary", Duration::from_secs(90));
    println!(
        "kube-apiserver stopped: idc promoted {:.1}s after aws's API server stopped",
        stopped.elapsed().as_secs_f64()
    );
    wait_dns(udp, &[addr_of(IDC)], Duration::from_secs(30));
    bed.signal_apiserver(AWS, "CONT");
    let (_, by) = wait_role(&aws, "fenced", Duration::from_secs(40));
    println!("aws fenced by {by} once its API server resumed");
    assert_eq!(dig_web(udp), vec![addr_of(IDC)]);

    // RTOs: logged and in the metrics, each within the policy's 60 s target.
    let rtos = scheduler
        .find_lines("failover complete", 3, Duration::from_secs(20))
        .expect("three 'failover complete' lines");
    for l in &rtos {
        println!("{l}");
        assert!(!l.contains("RTO above its target"), "{l}");
    }
    let (_, page) = tunnel_support::http_get(metrics, "/metrics");
    assert_eq!(
        metric_value(&page, r#"causeway_scheduler_failovers_total{policy="web"}"#),
        Some(3.0),
        "{page}"
    );
    let rto = metric_value(
        &page,
        r#"causeway_scheduler_failover_rto_seconds{policy="web"}"#,
    )
    .expect("an RTO");
    assert!(rto > 0.0 && rto < 60.0, "{rto}");
    assert_eq!(
        metric_value(
            &page,
            &format!(r#"causeway_scheduler_primary{{cluster="{IDC}",policy="web"}}"#)
        ),
        Some(1.0)
    );
}
