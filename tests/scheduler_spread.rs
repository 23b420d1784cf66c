//! The scheduler's `SpreadPolicy` (active-active) end to end: three real clusters
//! (`sb-idc`, `sb-ali`, `sb-aws`), the real stub with one agent per cluster, dns, and the
//! built `causeway scheduler` reaching every member only through the stub as its own
//! identity (`causeway-scheduler`, member RBAC from `examples/scheduler/member-rbac.yaml`).
//!
//! 1. 8 replicas by weight 2:1:1: the source Deployment in `sb-idc` is scaled to 4, copies
//!    of it run 2 in `sb-ali` and 2 in `sb-aws`; dns answers all three, and its weights
//!    follow the ready replicas (4/2/2 from the scheduler's placement, `GET /v1/explain`).
//! 2. `sb-ali`'s agent is killed (the stub answers 503 for it): its share moves to the
//!    others at once (8 by 2:1 → 5 and 3, Running), dns stops answering it (weight 0,
//!    unhealthy; the others 5 and 3), and its own copy is left as it was (nothing is
//!    written to a cluster it cannot reach).
//! 3. The agent is started again: `sb-ali` stays out of dns for `rebalanceAfter` (5 s),
//!    then rejoins the split and the answers; the others give their extra replicas back
//!    after the scale-down window (4 s): 4/2/2 again. Times asserted from the restart.
//! 4. The source cluster's agent is killed: the copies take its share (4 and 4), made
//!    from the last source the scheduler read; when it is back, 4/2/2 again.
//!
//! `scheduler plan` (and `--what-if 'sb-aws down'`) prints the numbers the live
//! scheduler then uses.

#[path = "support/scheduler.rs"]
mod scheduler_support;
#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::time::{Duration, Instant};

use causeway_testbed::ClusterInfo;
use std::process::Command;

use causeway_testbed::testing::{Kubectl, run_ok, wait_for};
use scheduler_support::*;

fn policy() -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: SpreadPolicy
metadata: {{name: shop}}
spec:
  workload: {{namespace: shop, deployment: web}}
  replicas: 8
  clusters:
    - {{cluster: {IDC}, weight: 2, minReplicas: 1}}
    - {{cluster: {ALI}, weight: 1, minReplicas: 1}}
    - cluster: {AWS}
      weight: 1
      overrides: {{imageRegistry: registry.aws.example}}
  behavior:
    scaleDown: {{stabilizationWindow: 4s}}
  rebalanceAfter: 5s
  dns: {{name: app.svc.example., ttl: 2s}}
"
    )
}

/// Waits until each cluster's Deployment is `(spec.replicas, ready)` as given.
fn wait_spread(
    what: &str,
    within: Duration,
    want: &[(&ClusterInfo, (u32, u32))],
    log: &dyn Fn() -> String,
) {
    wait_for(what, within, Duration::from_millis(300), || {
        let now: Vec<Option<(u32, u32)>> = want.iter().map(|(c, _)| deployment(c)).collect();
        if want.iter().zip(&now).all(|((_, w), n)| Some(*w) == *n) {
            Ok(())
        } else {
            Err(format!("{now:?}\n{}", log()))
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_by_weight_rebalances_on_loss_and_return() {
    let bed = bring_up().await;
    let dir = bed.dir.path().to_path_buf();
    // Small pods (100m), so that every cluster has room for the shares it may get.
    Kubectl::admin(bed.c(IDC)).apply(&source_deployment_with(1, "100m"));

    let (_dns, dns_udp, dns_api) = start_dns(&dir);
    let sched_file = scheduler_file(
        &bed,
        "scheduler.yaml",
        &format!("  dnsApi: http://{dns_api}\n"),
        &policy(),
    );
    let sched = start_scheduler(&dir, "scheduler", &[&sched_file]);
    let log = || sched.log_tail(8);
    let (idc, ali, aws) = (bed.c(IDC), bed.c(ALI), bed.c(AWS));

    // 1. 8 by 2:1:1.
    let start = Instant::now();
    wait_spread(
        "4/2/2 Running",
        Duration::from_secs(60),
        &[(idc, (4, 4)), (ali, (2, 2)), (aws, (2, 2))],
        &log,
    );
    println!(
        "spread: 4/2/2 Ready {:.1} s after the scheduler started",
        start.elapsed().as_secs_f64()
    );
    let copy = Kubectl::admin(aws).run(&[
        "get",
        "deployment",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by} {.metadata.annotations.causeway\\.dev/policy} {.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(copy.trim(), "causeway shop registry.aws.example/shop/web:1");
    let all: Vec<String> = [IDC, ALI, AWS].iter().map(|c| addr_of(c)).collect();
    wait_for(
        "dns answers all three",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || {
            let a = dig(dns_udp);
            (a == all).then_some(()).ok_or(format!("{a:?}"))
        },
    );
    // The weights dns uses are the ready replicas, from the scheduler's placement.
    wait_dns_weights(
        dns_api,
        &[(IDC, 4, true), (ALI, 2, true), (AWS, 2, true)],
        Duration::from_secs(10),
    );

    // `plan` observes the same state and plans the same numbers; a what-if shows the loss.
    let what_if = run_ok(
        Command::new(BIN)
            .args([
                "scheduler",
                "plan",
                "--what-if",
                &format!("{AWS} down"),
                "--config",
            ])
            .arg(&sched_file),
    );
    let (now, after) = what_if.split_once("# what if").unwrap_or_default();
    let planned = |table: &str, c: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(c))
            .and_then(|l| l.split('→').nth(1))
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_owned)
    };
    let both = |table: &str| {
        [
            planned(table, IDC),
            planned(table, ALI),
            planned(table, AWS),
        ]
    };
    assert_eq!(
        both(now),
        [Some("4".into()), Some("2".into()), Some("2".into())],
        "{what_if}"
    );
    assert_eq!(
        both(after),
        [Some("5".into()), Some("3".into()), Some("0".into())],
        "{what_if}"
    );

    // 2. ali is lost: its agent is killed.
    let ali_agent = bed
        ._agents
        .iter()
        .position(|a| {
            a.log_file()
                .is_some_and(|f| f.ends_with(format!("agent-{ALI}.log")))
        })
        .expect("ali's agent");
    let lost = Instant::now();
    bed._agents[ali_agent].kill();
    wait_spread(
        "ali's share moved: idc 5, aws 3 Running",
        Duration::from_secs(30),
        &[(idc, (5, 5)), (aws, (3, 3))],
        &log,
    );
    println!(
        "loss: idc 5, aws 3 Ready {:.1} s after ali's agent was killed",
        lost.elapsed().as_secs_f64()
    );
    let without_ali: Vec<String> = [IDC, AWS].iter().map(|c| addr_of(c)).collect();
    wait_for(
        "dns stops answering ali",
        Duration::from_secs(10),
        Duration::from_millis(300),
        || {
            let a = dig(dns_udp);
            (a == without_ali).then_some(()).ok_or(format!("{a:?}"))
        },
    );
    wait_dns_weights(
        dns_api,
        &[(IDC, 5, true), (ALI, 0, false), (AWS, 3, true)],
        Duration::from_secs(10),
    );
    assert_eq!(
        deployment(ali),
        Some((2, 2)),
        "nothing is written to an unreachable cluster"
    );
    sched.wait_line("reason=unreachable (503 ", Duration::from_secs(5));

    // 3. ali is back: out of dns for rebalanceAfter, then its share; the others give back.
    let restart = Instant::now();
    let stub_agents = bed._stub.as_ref().expect("the bed's stub").agents;
    let agent = tunnel_support::start_agent(
        &dir,
        &format!("agent-{ALI}-again"),
        &format!("https://{stub_agents}"),
        ali,
        &dir.join(format!("{ALI}.token")),
        &dir.join(format!("agent-{ALI}")),
        None,
    );
    agent.wait_line("session established", Duration::from_secs(30));
    let (mut in_dns, mut idc_back) = (None, None);
    while restart.elapsed() < Duration::from_secs(60) && (in_dns.is_none() || idc_back.is_none()) {
        if in_dns.is_none() && dig(dns_udp) == all {
            in_dns = Some(restart.elapsed());
        }
        if idc_back.is_none() && deployment(idc).is_some_and(|(r, _)| r == 4) {
            idc_back = Some(restart.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let in_dns = in_dns.unwrap_or_else(|| panic!("ali never back in dns\n{}", log()));
    let idc_back = idc_back.unwrap_or_else(|| panic!("idc never back to 4\n{}", log()));
    println!(
        "return: ali back in dns {in_dns:?}, idc back to 4 {idc_back:?} after the agent restarted"
    );
    assert!(
        in_dns >= Duration::from_secs(5),
        "ali rejoined before rebalanceAfter (5 s): {in_dns:?}"
    );
    // The window holds recommendations of the last 4 s; the last one for 5 was made one
    // round (1 s) before ali rejoined.
    assert!(
        idc_back >= Duration::from_secs(5 + 4 - 1),
        "idc gave back before rebalanceAfter + the 4 s window: {idc_back:?}"
    );
    wait_spread(
        "4/2/2 Running again",
        Duration::from_secs(30),
        &[(idc, (4, 4)), (ali, (2, 2)), (aws, (2, 2))],
        &log,
    );

    // 4. The source cluster is lost: the copies take its share, copied from the last
    //    source read; when it is back it gets its share again after rebalanceAfter.
    let idc_agent = bed
        ._agents
        .iter()
        .position(|a| {
            a.log_file()
                .is_some_and(|f| f.ends_with(format!("agent-{IDC}.log")))
        })
        .expect("idc's agent");
    let lost = Instant::now();
    bed._agents[idc_agent].kill();
    wait_spread(
        "idc's share moved: ali 4, aws 4 Running",
        Duration::from_secs(30),
        &[(ali, (4, 4)), (aws, (4, 4))],
        &log,
    );
    println!(
        "source loss: ali 4, aws 4 Ready {:.1} s after idc's agent was killed",
        lost.elapsed().as_secs_f64()
    );
    let without_idc: Vec<String> = [ALI, AWS].iter().map(|c| addr_of(c)).collect();
    wait_for(
        "dns stops answering idc",
        Duration::from_secs(10),
        Duration::from_millis(300),
        || {
            let a = dig(dns_udp);
            (a == without_idc).then_some(()).ok_or(format!("{a:?}"))
        },
    );
    let idc_again = tunnel_support::start_agent(
        &dir,
        &format!("agent-{IDC}-again"),
        &format!("https://{stub_agents}"),
        idc,
        &dir.join(format!("{IDC}.token")),
        &dir.join(format!("agent-{IDC}")),
        None,
    );
    idc_again.wait_line("session established", Duration::from_secs(30));
    wait_spread(
        "4/2/2 Running after the source is back",
        Duration::from_secs(40),
        &[(idc, (4, 4)), (ali, (2, 2)), (aws, (2, 2))],
        &log,
    );
    wait_for(
        "dns answers all three again",
        Duration::from_secs(10),
        Duration::from_millis(300),
        || {
            let a = dig(dns_udp);
            (a == all).then_some(()).ok_or(format!("{a:?}"))
        },
    );

    let logs = sched.logs();
    for l in logs
        .lines()
        .filter(|l| l.contains("decision") && l.contains(ALI))
    {
        println!("{l}");
    }
    assert!(
        logs.contains("reason=back for "),
        "the wait is logged with its reason:\n{logs}"
    );
    assert!(
        logs.contains("weight 2 of 4 → 4 of 8"),
        "decisions carry reasons:\n{logs}"
    );
}
