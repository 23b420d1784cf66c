//! A real HorizontalPodAutoscaler on a testbed cluster, driven by simulated pod CPU: kwok
//! reports the CPU a pod annotation asks for, metrics-server serves it through the
//! aggregation layer, and kube-controller-manager's HPA controller scales the Deployment to
//! its maximum (`ScalingLimited`/`TooManyReplicas`) and back. No mocks; needs
//! `testbed/build-bins.sh` (metrics-server included).

use std::time::{Duration, Instant};

use causeway_testbed::testing::{Kubectl, wait_for_async};
use causeway_testbed::{
    ClusterInfo, ClusterSpec, MetricsOptions, SIMULATED_CPU_ANNOTATION, Testbed, TestbedOptions,
};
use serde_json::json;

const NS: &str = "default";
const SELECTOR: &str = "app=web";

/// How often the waits below look again.
const POLL: Duration = Duration::from_secs(1);

/// `(spec.replicas, status.readyReplicas)` of the Deployment.
fn deployment_replicas(c: &ClusterInfo) -> Result<(u64, u64), String> {
    let d = Kubectl::admin(c).json(&["get", "deployment", "web", "-n", NS])?;
    Ok((
        d["spec"]["replicas"].as_u64().unwrap_or(0),
        d["status"]["readyReplicas"].as_u64().unwrap_or(0),
    ))
}

/// The HPA's condition `ty` as `(status, reason)`, and a summary of its status for messages.
fn hpa_condition(c: &ClusterInfo, ty: &str) -> Result<((String, String), String), String> {
    let h = Kubectl::admin(c).json(&["get", "hpa", "web", "-n", NS])?;
    let status = &h["status"];
    let summary = format!(
        "current {} desired {} metrics {} conditions {}",
        status["currentReplicas"],
        status["desiredReplicas"],
        status["currentMetrics"],
        status["conditions"]
    );
    let cond = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .unwrap_or_default();
    Ok((cond, summary))
}

/// `kubectl top pods`: pod name → CPU column, in millicores.
fn kubectl_top(c: &ClusterInfo) -> Result<Vec<(String, u64)>, String> {
    let out =
        Kubectl::admin(c).try_run(&["top", "pods", "-n", NS, "-l", SELECTOR, "--no-headers"])?;
    out.lines()
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let cpu = cols
                .get(1)
                .and_then(|q| causeway_testbed::quantity::cpu_millicores(q))
                .ok_or_else(|| format!("kubectl top line {line:?}"))?;
            Ok((cols[0].to_owned(), cpu))
        })
        .collect()
}

/// Every pod of the Deployment, per metrics.k8s.io, within 5 % of `millicores`; `want` pods.
async fn usage_is(c: &ClusterInfo, want: usize, millicores: u64) -> Result<(), String> {
    let usage = causeway_testbed::pod_usage(c, NS, SELECTOR)
        .await
        .map_err(|e| e.chain())?;
    let near = |m: u64| m.abs_diff(millicores) * 20 <= millicores;
    if usage.len() == want && usage.iter().all(|u| near(u.cpu_millicores)) {
        Ok(())
    } else {
        Err(format!("metrics.k8s.io: {usage:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_to_its_max_on_simulated_cpu_and_back() {
    if let Err(e) = causeway_testbed::bin_dir() {
        panic!("{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut opts = TestbedOptions::new(vec![ClusterSpec::new("hpa")], dir.path().join("state"));
    opts.base_address = causeway_testbed::reserve_addresses(1);
    opts.metrics = MetricsOptions::enabled();
    let tb = Testbed::up(opts).await.expect("testbed up");
    eprintln!(
        "cluster with metrics Ready in {:.1} s",
        tb.startup().as_secs_f64()
    );
    let c = tb.cluster("hpa").unwrap();
    let admin = Kubectl::admin(c);
    assert!(c.metrics);
    assert_eq!(
        tb.processes().len(),
        6,
        "etcd, apiserver, controller-manager, scheduler, kwok, metrics-server"
    );

    // One pod requesting 100m that starts at 10m simulated (10 % of its request).
    admin.apply(
        &json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "web", "namespace": NS },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": {
                        "labels": { "app": "web" },
                        "annotations": { SIMULATED_CPU_ANNOTATION: "10m" },
                    },
                    "spec": { "containers": [{
                        "name": "web",
                        "image": "registry.invalid/web:1",
                        "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
                    }]},
                },
            },
        })
        .to_string(),
    );
    // Target 50 % of the request; scale down without the default 5-minute stabilization.
    admin.apply(
        &json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": { "name": "web", "namespace": NS },
            "spec": {
                "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": [{ "type": "Resource", "resource": {
                    "name": "cpu",
                    "target": { "type": "Utilization", "averageUtilization": 50 },
                }}],
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{ "type": "Percent", "value": 100, "periodSeconds": 5 }],
                    },
                },
            },
        })
        .to_string(),
    );
    wait_for_async(
        "1 pod Ready",
        Duration::from_secs(60),
        POLL,
        async || match deployment_replicas(c)? {
            (1, 1) => Ok(()),
            r => Err(format!("replicas (spec, ready) {r:?}")),
        },
    )
    .await;

    // The simulated value reaches metrics.k8s.io (two scrapes after the pod starts).
    let t = Instant::now();
    wait_for_async(
        "10m in metrics.k8s.io",
        Duration::from_secs(90),
        POLL,
        async || usage_is(c, 1, 10).await,
    )
    .await;
    eprintln!(
        "first metrics of a new pod after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    wait_for_async(
        "HPA ScalingActive=True",
        Duration::from_secs(60),
        POLL,
        async || match hpa_condition(c, "ScalingActive")? {
            ((s, _), _) if s == "True" => Ok(()),
            (_, summary) => Err(summary),
        },
    )
    .await;

    // Load rises: 800m is 800 % of the request, far above the 50 % target.
    let raised = Instant::now();
    let pods = causeway_testbed::set_simulated_cpu(c, NS, SELECTOR, 800)
        .await
        .unwrap();
    assert_eq!(pods.len(), 1, "{pods:?}");
    wait_for_async(
        "800m in metrics.k8s.io",
        Duration::from_secs(60),
        POLL,
        async || usage_is(c, 1, 800).await,
    )
    .await;
    eprintln!(
        "800m served {:.1} s after the annotation",
        raised.elapsed().as_secs_f64()
    );
    let top = kubectl_top(c).unwrap();
    assert!(
        top.len() == 1 && top[0].1.abs_diff(800) <= 40,
        "kubectl top pods: {top:?}"
    );

    // The HPA wants 16 replicas, is capped at 4, and says so.
    wait_for_async(
        "ScalingLimited=True (TooManyReplicas)",
        Duration::from_secs(90),
        POLL,
        async || match hpa_condition(c, "ScalingLimited")? {
            ((s, r), _) if s == "True" && r == "TooManyReplicas" => Ok(()),
            (_, summary) => Err(summary),
        },
    )
    .await;
    let limited = raised.elapsed();
    eprintln!(
        "HPA ScalingLimited/TooManyReplicas {:.1} s after the CPU rose",
        limited.as_secs_f64()
    );
    wait_for_async(
        "4 replicas Ready",
        Duration::from_secs(60),
        POLL,
        async || match deployment_replicas(c)? {
            (4, 4) => Ok(()),
            r => Err(format!("replicas (spec, ready) {r:?}")),
        },
    )
    .await;

    // New pods started at the template's 10m; give every pod the high load, as a scheduler
    // test would, and check the HPA stays at its limit with all four at 800m.
    let pods = causeway_testbed::set_simulated_cpu(c, NS, SELECTOR, 800)
        .await
        .unwrap();
    assert_eq!(pods.len(), 4, "{pods:?}");
    wait_for_async(
        "4 pods at 800m",
        Duration::from_secs(60),
        POLL,
        async || usage_is(c, 4, 800).await,
    )
    .await;
    let top = kubectl_top(c).unwrap();
    assert!(
        top.len() == 4 && top.iter().all(|(_, m)| m.abs_diff(800) <= 40),
        "kubectl top pods: {top:?}"
    );
    let ((s, r), summary) = hpa_condition(c, "ScalingLimited").unwrap();
    assert!(s == "True" && r == "TooManyReplicas", "{summary}");
    assert_eq!(deployment_replicas(c).unwrap().0, 4);

    // Load drops to 10 % of the request: desired ceil(4 × 10 / 50) = 1, no stabilization.
    let lowered = Instant::now();
    causeway_testbed::set_simulated_cpu(c, NS, SELECTOR, 10)
        .await
        .unwrap();
    wait_for_async(
        "scaled back to 1",
        Duration::from_secs(120),
        POLL,
        async || match deployment_replicas(c)? {
            (1, 1) => Ok(()),
            r => Err(format!(
                "replicas (spec, ready) {r:?}; {}",
                hpa_condition(c, "ScalingLimited")?.1
            )),
        },
    )
    .await;
    eprintln!(
        "scaled down to 1 {:.1} s after the CPU dropped",
        lowered.elapsed().as_secs_f64()
    );
    let ((s, _), summary) = hpa_condition(c, "ScalingLimited").unwrap();
    assert_eq!(s, "False", "within range again: {summary}");

    // kwok evaluated every usage expression (annotated or not) and metrics-server scraped
    // every node without an error.
    for (log, bad) in [
        ("kwok.log", "failed to evaluate"),
        ("kwok.log", "failed to compile"),
        ("metrics-server.log", "Failed to scrape node"),
    ] {
        let text = std::fs::read_to_string(c.logs_dir.join(log)).unwrap();
        let hits: Vec<&str> = text.lines().filter(|l| l.contains(bad)).take(3).collect();
        assert!(hits.is_empty(), "{log} says {bad:?}: {hits:#?}");
    }

    tokio::time::timeout(Duration::from_secs(60), tb.down())
        .await
        .unwrap()
        .unwrap();
}
