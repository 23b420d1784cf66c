//! Simulated pod load: set the CPU and memory kwok reports for pods, and read back what
//! metrics-server serves from it. Needs a testbed with metrics on
//! ([`crate::spec::MetricsOptions::enabled`]).
//!
//! How it flows: a pod's annotation [`SIMULATED_CPU_ANNOTATION`] (`"800m"`, the pod's total,
//! split evenly over its containers) → kwok's `ClusterResourceUsage` CEL expression, evaluated
//! at each scrape, integrates it into `container_cpu_usage_seconds_total` → metrics-server
//! scrapes kwok every resolution (10 s by default) and serves the rate over its last two
//! scrapes as `metrics.k8s.io` → HPAs, `kubectl top`, and the scheduler read it. A change
//! shows in `metrics.k8s.io` within two scrapes.
//!
//! Pods created later (by a scale-up) start from their template's annotation, or 1m without
//! one: put the annotation in the pod template for a starting value, and call
//! [`set_simulated_cpu`] again after a scale-up if new pods should carry the new value.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::api::ApiClient;
use crate::layout::APISERVER_PORT;
use crate::manifests::{SIMULATED_CPU_ANNOTATION, SIMULATED_MEMORY_ANNOTATION};
use crate::quantity::{cpu_millicores, parse_quantity};
use crate::{ClusterInfo, TestbedError};

/// One pod's usage as metrics-server serves it (`metrics.k8s.io/v1beta1` `PodMetrics`).
#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage {
    /// Pod name.
    pub pod: String,
    /// CPU summed over the containers, in millicores (rounded).
    pub cpu_millicores: u64,
    /// Memory working set summed over the containers, in bytes.
    pub memory_bytes: u64,
    /// The window the CPU rate was computed over (`"10.5s"`), as served.
    pub window: String,
}

/// Sets the simulated CPU of every pod in `namespace` matching the label `selector`
/// (`"app=web"`; empty selects all) to `millicores`, and returns the names of the pods
/// changed. The pod's total; split evenly among its containers.
///
/// A pod whose usage has only ever been 0 gets no metrics (metrics-server drops counters
/// that are still 0), so use at least 1 to make a pod count.
pub async fn set_simulated_cpu(
    cluster: &ClusterInfo,
    namespace: &str,
    selector: &str,
    millicores: u32,
) -> Result<Vec<String>, TestbedError> {
    annotate_pods(
        cluster,
        namespace,
        selector,
        SIMULATED_CPU_ANNOTATION,
        &format!("{millicores}m"),
    )
    .await
}

/// Sets the simulated memory working set of every pod matching `selector` in `namespace`
/// to `mebibytes` (the pod's total, split among its containers); returns the pods changed.
pub async fn set_simulated_memory(
    cluster: &ClusterInfo,
    namespace: &str,
    selector: &str,
    mebibytes: u32,
) -> Result<Vec<String>, TestbedError> {
    annotate_pods(
        cluster,
        namespace,
        selector,
        SIMULATED_MEMORY_ANNOTATION,
        &format!("{mebibytes}Mi"),
    )
    .await
}

/// What metrics-server serves for the pods matching `selector` in `namespace`, from
/// `/apis/metrics.k8s.io/v1beta1`. Pods without metrics yet (less than two scrapes old)
/// are absent.
pub async fn pod_usage(
    cluster: &ClusterInfo,
    namespace: &str,
    selector: &str,
) -> Result<Vec<PodUsage>, TestbedError> {
    let api = client(cluster)?;
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods?labelSelector={}",
        encode(namespace),
        encode(selector)
    );
    let list = api
        .get_json(&path)
        .await
        .map_err(api_err(cluster, "read pod metrics"))?;
    parse_pod_metrics(&list).map_err(api_err(cluster, "read pod metrics"))
}

async fn annotate_pods(
    cluster: &ClusterInfo,
    namespace: &str,
    selector: &str,
    annotation: &str,
    value: &str,
) -> Result<Vec<String>, TestbedError> {
    let what = format!("set {annotation}={value} on pods {selector:?} in {namespace}");
    let api = client(cluster)?;
    let pods_path = format!("/api/v1/namespaces/{}/pods", encode(namespace));
    let list = api
        .get_json(&format!("{pods_path}?labelSelector={}", encode(selector)))
        .await
        .map_err(api_err(cluster, &what))?;
    let names: Vec<String> = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let patch = json!({ "metadata": { "annotations": { annotation: value } } });
    for name in &names {
        api.merge_patch(&format!("{pods_path}/{}", encode(name)), &patch)
            .await
            .map_err(api_err(cluster, &what))?;
    }
    Ok(names)
}

fn client(cluster: &ClusterInfo) -> Result<ApiClient, TestbedError> {
    ApiClient::https(
        SocketAddr::from((cluster.address, APISERVER_PORT)),
        &cluster.ca_cert,
        &cluster.admin_cert,
        &cluster.admin_key,
    )
    .map_err(|reason| TestbedError::Pki {
        cluster: cluster.name.clone(),
        reason,
    })
}

fn api_err(cluster: &ClusterInfo, what: &str) -> impl FnOnce(String) -> TestbedError {
    let cluster = cluster.name.clone();
    let what = what.to_owned();
    move |reason| TestbedError::Api {
        cluster,
        what,
        reason,
    }
}

/// `PodMetricsList` → per-pod sums.
fn parse_pod_metrics(list: &Value) -> Result<Vec<PodUsage>, String> {
    let items = list["items"]
        .as_array()
        .ok_or_else(|| format!("not a PodMetricsList: {list}"))?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let pod = item["metadata"]["name"]
            .as_str()
            .ok_or("PodMetrics without a name")?;
        let mut cpu = 0;
        let mut memory = 0.0;
        for c in item["containers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let q = |r: &str| c["usage"][r].as_str().unwrap_or("0");
            cpu += cpu_millicores(q("cpu")).ok_or_else(|| format!("{pod}: bad cpu {c}"))?;
            memory +=
                parse_quantity(q("memory")).ok_or_else(|| format!("{pod}: bad memory {c}"))?;
        }
        out.push(PodUsage {
            pod: pod.to_owned(),
            cpu_millicores: cpu,
            // Whole bytes, saturating; working sets are far below 2^53.
            memory_bytes: memory.round() as u64,
            window: item["window"].as_str().unwrap_or_default().to_owned(),
        });
    }
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    Ok(out)
}

/// Percent-encodes a query or path value (everything but RFC 3986 unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_encoded() {
        assert_eq!(encode("app=web,tier!=db"), "app%3Dweb%2Ctier%21%3Ddb");
        assert_eq!(encode("a in (x, y)"), "a%20in%20%28x%2C%20y%29");
        assert_eq!(encode("kube-system"), "kube-system");
    }

    #[test]
    fn pod_metrics_are_summed_per_pod() {
        let list = json!({
            "kind": "PodMetricsList",
            "items": [
                {
                    "metadata": { "name": "web-b" },
                    "window": "10.2s",
                    "containers": [
                        { "name": "a", "usage": { "cpu": "400012345n", "memory": "1Mi" } },
                        { "name": "b", "usage": { "cpu": "400m", "memory": "1024Ki" } },
                    ],
                },
                {
                    "metadata": { "name": "web-a" },
                    "window": "10s",
                    "containers": [{ "name": "a", "usage": { "cpu": "1m", "memory": "1Mi" } }],
                },
            ],
        });
        let got = parse_pod_metrics(&list).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].pod, "web-a");
        assert_eq!(got[0].cpu_millicores, 1);
        assert_eq!(got[1].cpu_millicores, 800);
        assert_eq!(got[1].memory_bytes, 2 << 20);
        assert_eq!(got[1].window, "10.2s");
        assert!(parse_pod_metrics(&json!({"kind": "Status"})).is_err());
        let bad = json!({"items": [{"metadata": {"name": "p"},
            "containers": [{"usage": {"cpu": "lots"}}]}]});
        assert!(parse_pod_metrics(&bad).unwrap_err().contains("bad cpu"));
    }
}
