//! The scheduler end to end, with the capacity demand source: three real clusters
//! (`sb-idc` with room for 4 pods of 500m, `sb-ali`, `sb-aws`), the real stub with one
//! agent per cluster, dns, and the built `causeway scheduler` reaching every member
//! only through the stub as its own identity (`causeway-scheduler`, member RBAC from
//! `examples/scheduler/member-rbac.yaml`).
//!
//! 1. The source Deployment fits at home: no copies; dns answers only the IDC.
//! 2. Surge (9 replicas, 5 Pending Unschedulable): copies Running in `sb-ali` (its
//!    maxReplicas 2) and `sb-aws` (3) within 30 s, with the overrides; dig answers them.
//!    `scheduler plan` prints the same numbers.
//! 3. A broken policy file: the error names file:line:column; the scheduler keeps its
//!    last good policies.
//! 4. Load drops: after the scale-down window the copies leave the DNS answers first and
//!    are deleted one TTL later (order asserted from timestamps).

#[path = "support/scheduler.rs"]
mod scheduler_support;
#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::process::Command;
use std::time::{Duration, Instant};

use causeway_testbed::ClusterInfo;
use causeway_testbed::testing::{Kubectl, run_ok, wait_for};
use scheduler_support::*;

fn policy(window: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: BurstPolicy
metadata: {{name: web}}
spec:
  workload: {{namespace: shop, deployment: web}}
  home: [{IDC}]
  burst:
    - cluster: {ALI}
      maxReplicas: 2
      overrides: {{imageRegistry: registry.ali.example, env: {{SITE: ali}}}}
    - {{cluster: {AWS}, maxReplicas: 10}}
  demand: {{capacity: {{}}}}
  behavior:
    scaleDown: {{stabilizationWindow: {window}}}
  dns: {{name: app.svc.example., ttl: 3s}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_to_the_cloud_and_back_with_dns_following() {
    let bed = bring_up().await;
    let dir = bed.dir.path();
    let (idc, ali, aws) = (bed.c(IDC), bed.c(ALI), bed.c(AWS));
    Kubectl::admin(idc).apply(&source_deployment(4));
    wait_for(
        "4 ready at home",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || deployment(idc).filter(|(_, r)| *r == 4),
    );

    // dns and the scheduler.
    let (_dns, dns_udp, dns_api) = start_dns(dir);
    let sched_file = scheduler_file(
        &bed,
        "scheduler.yaml",
        &format!("  dnsApi: http://{dns_api}\n"),
        "",
    );
    let policy_file = dir.join("policy.yaml");
    std::fs::write(&policy_file, policy("4s")).unwrap();
    let sched = start_scheduler(dir, "scheduler", &[&sched_file, &policy_file]);

    // 1. Everything fits at home: dns answers the IDC only.
    wait_for(
        "dns answers only the IDC",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || {
            let a = dig(dns_udp);
            (a == vec![addr_of(IDC)])
                .then_some(())
                .ok_or(format!("{a:?}"))
        },
    );
    assert_eq!(
        deployment(ali),
        None,
        "no copy while everything fits at home"
    );

    // 2. Surge: 9 wanted, 4 fit.
    let surge = Instant::now();
    Kubectl::admin(idc).run(&["scale", "deployment", "web", "-n", "shop", "--replicas=9"]);
    wait_for(
        "burst copies Ready (ali 2, aws 3)",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || match (deployment(ali), deployment(aws)) {
            (Some((2, 2)), Some((3, 3))) => Ok(()),
            other => Err(format!("{other:?}\n{}", sched.log_tail(5))),
        },
    );
    let burst_secs = surge.elapsed().as_secs_f64();
    println!("burst: copies Ready {burst_secs:.1} s after the surge");
    let copy = Kubectl::admin(ali).run(&[
        "get", "deployment", "web", "-n", "shop", "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value}",
    ]);
    assert_eq!(copy.trim(), "causeway registry.ali.example/shop/web:1 ali");
    wait_for(
        "dns answers all three",
        Duration::from_secs(10),
        Duration::from_millis(300),
        || {
            let a = dig(dns_udp);
            (a.len() == 3).then_some(()).ok_or(format!("{a:?}"))
        },
    );
    // `plan` observes the same state and plans the same numbers.
    let table = run_ok(
        Command::new(BIN)
            .args(["scheduler", "plan", "--config"])
            .arg(&sched_file)
            .arg(&policy_file),
    );
    let planned = |c: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(c))
            .and_then(|l| l.split('→').nth(1))
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_owned)
    };
    assert_eq!(planned(ALI).as_deref(), Some("2"), "{table}");
    assert_eq!(planned(AWS).as_deref(), Some("3"), "{table}");
    let what_if = run_ok(
        Command::new(BIN)
            .args([
                "scheduler",
                "plan",
                "--what-if",
                &format!("{ALI} down"),
                "--config",
            ])
            .arg(&sched_file)
            .arg(&policy_file),
    );
    let after = what_if.split("# what if").nth(1).unwrap_or_default();
    assert!(
        after.lines().any(|l| l.contains(AWS) && l.contains("→ 5")),
        "{what_if}"
    );

    // 3. A broken policy file is refused with its position; the last good policies run on.
    std::fs::write(
        &policy_file,
        policy("4s").replace("maxReplicas: 2", "maxReplicas: two"),
    )
    .unwrap();
    let line = sched.wait_line("configuration not reloaded", Duration::from_secs(10));
    assert!(line.contains("policy.yaml:9:20"), "{line}");
    assert!(line.contains("spec.burst[0].maxReplicas"), "{line}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        deployment(ali),
        Some((2, 2)),
        "the last good policy still holds"
    );
    std::fs::write(&policy_file, policy("4s")).unwrap();

    // 4. Load drops: copies leave dns, then go after one TTL (3 s).
    Kubectl::admin(idc).run(&["scale", "deployment", "web", "-n", "shop", "--replicas=4"]);
    let start = Instant::now();
    let mut dns_out: Option<Duration> = None;
    let mut deleted: Option<Duration> = None;
    while start.elapsed() < Duration::from_secs(60) && deleted.is_none() {
        let a = dig(dns_udp);
        if dns_out.is_none() && !a.contains(&addr_of(AWS)) {
            dns_out = Some(start.elapsed());
        }
        if deployment(aws).is_none() {
            deleted = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (dns_out, deleted) = (
        dns_out.expect("dns never stopped answering aws"),
        deleted.unwrap_or_else(|| panic!("aws copy never deleted\n{}", sched.log_tail(20))),
    );
    println!("scale back: aws out of dns at {dns_out:?}, deleted at {deleted:?}");
    assert!(
        dns_out >= Duration::from_secs(3),
        "the 4 s window was not respected: {dns_out:?}"
    );
    assert!(
        deleted >= dns_out + Duration::from_secs(2),
        "replicas went before dns drained: out {dns_out:?}, deleted {deleted:?}"
    );
    wait_for(
        "ali copy deleted too",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || deployment(ali).is_none(),
    );
    assert_eq!(dig(dns_udp), vec![addr_of(IDC)]);
    let logs = sched.logs();
    assert!(
        logs.contains("reason=overflow: 2 of 5 (maxReplicas 2)"),
        "decisions carry reasons:\n{logs}"
    );
}

/// External demand (a value posted to the scheduler) scales the source at home up to
/// `homeMaxReplicas` and bursts the rest; a member whose RBAC refuses the write is
/// reported with the API's reason and retried with back-off, not in a hot loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_demand_and_a_member_that_refuses_writes() {
    use causeway_testbed::testing::{HttpClient, metric_value};

    let bed = bring_up().await;
    let dir = bed.dir.path();
    let (idc, ali, aws) = (bed.c(IDC), bed.c(ALI), bed.c(AWS));
    Kubectl::admin(idc).apply(&source_deployment(2));
    // aws lets the scheduler read but not write Deployments.
    Kubectl::admin(aws).apply(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: causeway-scheduler}
rules:
  - {apiGroups: [\"\"], resources: [nodes, pods, namespaces], verbs: [get, list, watch]}
  - {apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}
",
    );
    let sched_file = scheduler_file(
        &bed,
        "scheduler.yaml",
        "",
        &burst_policy(
            "maxReplicas: 2",
            "maxReplicas: 10",
            "  demand:\n    external: {targetPerReplica: 100, homeMaxReplicas: 3}\n",
        ),
    );
    let sched = start_scheduler(dir, "scheduler", &[&sched_file]);
    let api = sched
        .wait_listening(&["scheduler"], Duration::from_secs(20))
        .addr("scheduler");
    let http = HttpClient::new(api).timeout(Duration::from_secs(5));
    let bad = http
        .send_blocking(
            http::Method::POST,
            "/v1/external",
            r#"{"policy":"web","value":-1}"#,
        )
        .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());
    let ok = http
        .send_blocking(
            http::Method::POST,
            "/v1/external",
            r#"{"policy":"web","value":800}"#,
        )
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());

    // 800 / 100 → 8: home 3 (scaled from 2), ali 2, aws 3 (refused).
    wait_for(
        "home scaled to 3, ali 2 Ready",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || match (deployment(idc), deployment(ali)) {
            (Some((3, _)), Some((2, 2))) => Ok(()),
            other => Err(format!("{other:?}\n{}", sched.log_tail(5))),
        },
    );
    let first = sched.wait_line("write failed", Duration::from_secs(10));
    assert!(
        first.contains(AWS) && first.contains("Forbidden"),
        "{first}"
    );
    assert_eq!(deployment(aws), None);
    // Back-off: 5 s, then 10 s: at most 3 attempts in the next 12 s of 1 s rounds.
    std::thread::sleep(Duration::from_secs(12));
    let attempts = sched
        .logs()
        .lines()
        .filter(|l| l.contains("write failed") && l.contains(AWS) && l.contains("Forbidden"))
        .count();
    assert!(
        (2..=3).contains(&attempts),
        "{attempts} attempts in ~12 s:\n{}",
        sched.log_tail(30)
    );
    let page = http
        .send_blocking(http::Method::GET, "/metrics", "")
        .unwrap()
        .text();
    let forbidden = metric_value(
        &page,
        &format!(
            "causeway_scheduler_writes_total{{action=\"apply\",cluster=\"{AWS}\",result=\"Forbidden\"}}"
        ),
    );
    assert_eq!(forbidden, Some(attempts as f64), "{page}");
    let table = http
        .send_blocking(http::Method::GET, "/v1/plan", "")
        .unwrap()
        .text();
    assert!(
        table.contains("external: value 800 / 100 per replica → 8 replicas"),
        "{table}"
    );
}

/// The HPA demand source on real HPAs: simulated CPU (kwok → metrics-server →
/// `metrics.k8s.io`) drives the home HPA to its max (`ScalingLimited`); the scheduler
/// computes the total over the pods of every cluster and bursts the rest, and takes it
/// back when the CPU falls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_at_its_max_bursts_the_rest() {
    let bed = bring_up_with(true).await;
    let dir = bed.dir.path();
    let (idc, ali, aws) = (bed.c(IDC), bed.c(ALI), bed.c(AWS));
    Kubectl::admin(idc).apply(
        "apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {causeway.dev/simulated-cpu: 200m}
    spec:
      containers:
        - {name: web, image: web:1, resources: {requests: {cpu: 100m}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 5}
",
    );
    let sched_file = scheduler_file(
        &bed,
        "scheduler.yaml",
        "",
        &burst_policy(
            "maxReplicas: 4",
            "maxReplicas: 5",
            "  demand: {hpa: {name: web}}\n  behavior:\n    scaleDown: {stabilizationWindow: 5s}\n",
        ),
    );
    let sched = start_scheduler(dir, "scheduler", &[&sched_file]);

    // The real HPA reaches its max and says ScalingLimited.
    let limited = |c: &ClusterInfo| {
        Kubectl::admin(c)
            .run(&[
                "get", "hpa", "web", "-n", "shop", "-o",
                "jsonpath={.status.currentReplicas} {.status.conditions[?(@.type==\"ScalingLimited\")].status}",
            ])
            .trim()
            .to_string()
    };
    wait_for(
        "the home HPA at 3, ScalingLimited",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || {
            let s = limited(idc);
            (s == "3 True").then_some(()).ok_or(s)
        },
    );
    let at_max = Instant::now();
    wait_for(
        "a burst replica Ready in ali",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            deployment(ali)
                .filter(|(_, ready)| *ready >= 1)
                .ok_or_else(|| sched.log_tail(4))
        },
    );
    let first_burst = at_max.elapsed().as_secs_f64();
    println!("hpa: first burst replica Ready {first_burst:.1} s after ScalingLimited was seen");
    // With every home pod's CPU counted: 3 × 200m at 50 % of 100m → 12 wanted, 9 out.
    wait_for(
        "ali 4 and aws 5 Ready",
        Duration::from_secs(90),
        Duration::from_secs(1),
        || match (deployment(ali), deployment(aws)) {
            (Some((4, 4)), Some((5, 5))) => Ok(()),
            other => Err(format!("{other:?}\n{}", sched.log_tail(3))),
        },
    );
    let logs = sched.logs();
    assert!(
        logs.contains("ScalingLimited"),
        "the demand line names the HPA's state:\n{logs}"
    );

    // The CPU falls everywhere: the copies go after the 5 s window.
    for c in [idc, ali, aws] {
        causeway_testbed::set_simulated_cpu(c, "shop", "app=web", 5)
            .await
            .unwrap();
    }
    wait_for(
        "copies removed",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || match (deployment(ali), deployment(aws)) {
            (None, None) => Ok(()),
            other => Err(format!("{other:?}\n{}", sched.log_tail(3))),
        },
    );
}
