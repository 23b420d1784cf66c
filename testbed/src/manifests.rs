//! Objects the testbed creates in each cluster: kwok's CRDs, the fake nodes, the default
//! exec/logs rules and, with metrics on, kwok's simulated resource usage and metrics-server's
//! registration. Public helpers build port-forward rules for tests.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use crate::pki::{METRICS_SERVER_DNS, METRICS_SERVER_USER};
use crate::spec::ClusterSpec;

/// API group of kwok's resources.
pub const KWOK_GROUP: &str = "kwok.x-k8s.io";

/// Pod annotation holding the pod's simulated CPU usage, a Kubernetes quantity (`"800m"`),
/// split evenly over its containers. Pods without it use 1m. kwok reads it at every scrape,
/// so changing it changes what metrics-server reports within two scrapes.
pub const SIMULATED_CPU_ANNOTATION: &str = "causeway.dev/simulated-cpu";
/// Pod annotation holding the pod's simulated memory usage (`"256Mi"`), split like the
/// CPU. Pods without it use 1Mi.
pub const SIMULATED_MEMORY_ANNOTATION: &str = "causeway.dev/simulated-memory";
/// Node annotation metrics-server (≥ 0.7) scrapes instead of `/metrics/resource`.
pub const RESOURCE_METRICS_PATH_ANNOTATION: &str = "metrics.k8s.io/resource-metrics-path";
/// Name of the `APIService` that routes `metrics.k8s.io` to metrics-server.
pub const METRICS_API_SERVICE: &str = "v1beta1.metrics.k8s.io";

/// A CRD for one kwok kind. The schema keeps every field: kwok itself validates them.
pub(crate) fn kwok_crd(kind: &str) -> Value {
    let lower = kind.to_lowercase();
    // kwok's own CRDs: `Logs` and `ClusterLogs` are already plural.
    let plural = if lower.ends_with("logs") {
        lower.clone()
    } else {
        format!("{lower}s")
    };
    let scope = if kind.starts_with("Cluster") || kind == "Metric" {
        "Cluster"
    } else {
        "Namespaced"
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.{KWOK_GROUP}") },
        "spec": {
            "group": KWOK_GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": lower,
            },
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                }},
            }],
        },
    })
}

/// Name of node `index` of `cluster`.
pub fn node_name(cluster: &str, index: u32) -> String {
    format!("{cluster}-node-{index}")
}

/// A fake node with the capacity of `spec`; kwok fills in the rest of its status.
pub(crate) fn node(spec: &ClusterSpec, index: u32) -> Value {
    let name = node_name(&spec.name, index);
    let capacity = json!({
        "cpu": spec.node_cpu,
        "memory": spec.node_memory,
        "pods": spec.node_pods.to_string(),
    });
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                "node.alpha.kubernetes.io/ttl": "0",
                // kwok serves this node's simulated kubelet resource metrics here.
                RESOURCE_METRICS_PATH_ANNOTATION: format!("/metrics/nodes/{name}/metrics/resource"),
            },
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "kwok",
                "causeway.dev/cluster": spec.name,
            },
        },
        "status": { "capacity": capacity, "allocatable": capacity },
    })
}

/// Every container of every pod: `kubectl exec` runs the command on this machine, in
/// `work_dir`.
pub(crate) fn cluster_exec(work_dir: &Path) -> Value {
    json!({
        "apiVersion": format!("{KWOK_GROUP}/v1alpha1"),
        "kind": "ClusterExec",
        "metadata": { "name": "causeway-testbed-local" },
        "spec": { "execs": [{ "local": { "workDir": work_dir.display().to_string() } }] },
    })
}

/// Every container of every pod: `kubectl logs` shows `file`.
pub(crate) fn cluster_logs(file: &Path) -> Value {
    json!({
        "apiVersion": format!("{KWOK_GROUP}/v1alpha1"),
        "kind": "ClusterLogs",
        "metadata": { "name": "causeway-testbed-file" },
        "spec": { "logs": [{ "logsFile": file.display().to_string(), "follow": true }] },
    })
}

/// kwok's `Metric` rendering, for every node at `/metrics/nodes/<node>/metrics/resource`,
/// the series metrics-server reads from a kubelet's `/metrics/resource`. Cumulative CPU is
/// kwok's integral of the usage a `ClusterResourceUsage` gives over time. (kwok's own
/// `kustomize/metrics/resource` minus the series metrics-server ignores; container start
/// time is the pod's creation time rather than its age.)
pub(crate) fn kwok_resource_metric() -> Value {
    let labels = json!([
        { "name": "container", "value": "container.name" },
        { "name": "namespace", "value": "pod.metadata.namespace" },
        { "name": "pod", "value": "pod.metadata.name" },
    ]);
    json!({
        "apiVersion": format!("{KWOK_GROUP}/v1alpha1"),
        "kind": "Metric",
        "metadata": { "name": "metrics-resource" },
        "spec": {
            "path": "/metrics/nodes/{nodeName}/metrics/resource",
            "metrics": [
                {
                    "name": "container_start_time_seconds",
                    "dimension": "container",
                    "help": "Start time of the container since unix epoch in seconds",
                    "kind": "gauge",
                    "labels": labels,
                    "value": "pod.metadata.creationTimestamp.UnixSecond()",
                },
                {
                    "name": "container_cpu_usage_seconds_total",
                    "dimension": "container",
                    "help": "Cumulative cpu time consumed by the container in core-seconds",
                    "kind": "counter",
                    "labels": labels,
                    // kwok's counter starts at 0 on its first scrape, and metrics-server
                    // drops a 0 counter: 1 ns more makes that first scrape count, so a new
                    // pod's CPU is served after two scrapes instead of three.
                    "value": "pod.CumulativeUsage(\"cpu\", container.name) + 0.000000001",
                },
                {
                    "name": "container_memory_working_set_bytes",
                    "dimension": "container",
                    "help": "Current working set of the container in bytes",
                    "kind": "gauge",
                    "labels": labels,
                    "value": "pod.Usage(\"memory\", container.name)",
                },
                {
                    "name": "node_cpu_usage_seconds_total",
                    "dimension": "node",
                    "help": "Cumulative cpu time consumed by the node in core-seconds",
                    "kind": "counter",
                    "value": "node.CumulativeUsage(\"cpu\") + 0.000000001",
                },
                {
                    "name": "node_memory_working_set_bytes",
                    "dimension": "node",
                    "help": "Current working set of the node in bytes",
                    "kind": "gauge",
                    "value": "node.Usage(\"memory\")",
                },
            ],
        },
    })
}

/// The CEL expression kwok evaluates per container for `resource`: the pod's `annotation`
/// divided among its containers, else `default`.
fn usage_from_annotation(annotation: &str, default: &str) -> String {
    format!(
        "has(pod.metadata.annotations) && \"{annotation}\" in pod.metadata.annotations \
         ? Quantity(pod.metadata.annotations[\"{annotation}\"]) / size(pod.spec.containers) \
         : Quantity(\"{default}\")"
    )
}

/// kwok's `ClusterResourceUsage` for every pod: CPU and memory from the pod annotations
/// [`SIMULATED_CPU_ANNOTATION`] and [`SIMULATED_MEMORY_ANNOTATION`].
pub(crate) fn simulated_usage() -> Value {
    json!({
        "apiVersion": format!("{KWOK_GROUP}/v1alpha1"),
        "kind": "ClusterResourceUsage",
        "metadata": { "name": "causeway-simulated-usage" },
        "spec": { "usages": [{ "usage": {
            "cpu": { "expression": usage_from_annotation(SIMULATED_CPU_ANNOTATION, "1m") },
            "memory": { "expression": usage_from_annotation(SIMULATED_MEMORY_ANNOTATION, "1Mi") },
        }}]},
    })
}

/// What registers metrics-server, running on this machine at `target` (`127.0.0.x:4443`),
/// with the cluster: RBAC for its user (read pods and nodes, delegate authentication and
/// authorization, read the front-proxy CA), read access to `metrics.k8s.io` for `view`,
/// `edit` and `admin`, an `ExternalName` Service naming the host address (the aggregator
/// resolves it to `address:port`; Endpoints may not hold loopback addresses), and the
/// `APIService`, whose CA is the cluster CA (`ca_pem`).
///
/// Each item is `(collection path, object)`, in creation order.
pub(crate) fn metrics_server_objects(target: SocketAddr, ca_pem: &[u8]) -> Vec<(String, Value)> {
    use base64::Engine as _;
    let user = json!([{
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "User",
        "name": METRICS_SERVER_USER,
    }]);
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let (service, namespace) = METRICS_SERVER_DNS
        .split_once('.')
        .and_then(|(svc, rest)| Some((svc, rest.split_once('.')?.0)))
        .unwrap_or(("metrics-server", "kube-system"));
    vec![
        (
            format!("{rbac}/clusterroles"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {
                    "name": "system:aggregated-metrics-reader",
                    "labels": {
                        "rbac.authorization.k8s.io/aggregate-to-view": "true",
                        "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                        "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                    },
                },
                "rules": [{
                    "apiGroups": ["metrics.k8s.io"],
                    "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }],
            }),
        ),
        (
            format!("{rbac}/clusterroles"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": { "name": "system:metrics-server" },
                "rules": [
                    { "apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"] },
                    {
                        "apiGroups": [""],
                        "resources": ["pods", "nodes"],
                        "verbs": ["get", "list", "watch"],
                    },
                ],
            }),
        ),
        (
            format!("{rbac}/clusterrolebindings"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": { "name": "system:metrics-server" },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:metrics-server",
                },
                "subjects": user,
            }),
        ),
        (
            format!("{rbac}/clusterrolebindings"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": { "name": "metrics-server:system:auth-delegator" },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:auth-delegator",
                },
                "subjects": user,
            }),
        ),
        (
            format!("{rbac}/namespaces/{namespace}/rolebindings"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": { "name": "metrics-server-auth-reader", "namespace": namespace },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "extension-apiserver-authentication-reader",
                },
                "subjects": user,
            }),
        ),
        (
            format!("/api/v1/namespaces/{namespace}/services"),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": { "name": service, "namespace": namespace },
                "spec": {
                    "type": "ExternalName",
                    "externalName": target.ip().to_string(),
                    "ports": [{ "name": "https", "port": target.port(), "protocol": "TCP" }],
                },
            }),
        ),
        (
            "/apis/apiregistration.k8s.io/v1/apiservices".to_owned(),
            json!({
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": { "name": METRICS_API_SERVICE },
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "service": { "name": service, "namespace": namespace, "port": target.port() },
                    "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            }),
        ),
    ]
}

/// A kwok `PortForward` for one pod: `kubectl port-forward` to `pod_port` reaches
/// `target`, a TCP server on this machine. Apply it with kubectl
/// (`kubectl apply -f -`) or the API; kwok picks it up within a second or so.
pub fn port_forward_rule(namespace: &str, pod: &str, pod_port: u16, target: SocketAddr) -> Value {
    json!({
        "apiVersion": format!("{KWOK_GROUP}/v1alpha1"),
        "kind": "PortForward",
        "metadata": { "name": pod, "namespace": namespace },
        "spec": { "forwards": [{
            "ports": [pod_port],
            "target": { "address": target.ip().to_string(), "port": target.port() },
        }]},
    })
}

/// A kwok `ClusterPortForward`: every pod in `namespaces` (all when empty) forwards
/// `pod_port` to `target` on this machine.
pub fn cluster_port_forward_rule(
    name: &str,
    namespaces: &[&str],
    pod_port: u16,
    target: SocketAddr,
) -> Value {
    let selector = if namespaces.is_empty() {
        json!({})
    } else {
        json!({ "matchNamespaces": namespaces })
    };
    json!({
        "apiVersion": format!("{KWOK_GROUP}/v1alpha1"),
        "kind": "ClusterPortForward",
        "metadata": { "name": name },
        "spec": {
            "selector": selector,
            "forwards": [{
                "ports": [pod_port],
                "target": { "address": target.ip().to_string(), "port": target.port() },
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_names_follow_kwok() {
        let crd = kwok_crd("ClusterPortForward");
        assert_eq!(crd["metadata"]["name"], "clusterportforwards.kwok.x-k8s.io");
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(kwok_crd("Logs")["spec"]["names"]["plural"], "logs");
        assert_eq!(
            kwok_crd("ClusterLogs")["metadata"]["name"],
            "clusterlogs.kwok.x-k8s.io"
        );
        assert_eq!(kwok_crd("Exec")["metadata"]["name"], "execs.kwok.x-k8s.io");
        assert_eq!(kwok_crd("Exec")["spec"]["scope"], "Namespaced");
        assert_eq!(
            kwok_crd("Metric")["metadata"]["name"],
            "metrics.kwok.x-k8s.io"
        );
        assert_eq!(kwok_crd("Metric")["spec"]["scope"], "Cluster");
        assert_eq!(
            kwok_crd("ResourceUsage")["metadata"]["name"],
            "resourceusages.kwok.x-k8s.io"
        );
        assert_eq!(kwok_crd("ResourceUsage")["spec"]["scope"], "Namespaced");
    }

    #[test]
    fn usage_reads_the_annotation() {
        let u = simulated_usage();
        let cpu = u["spec"]["usages"][0]["usage"]["cpu"]["expression"]
            .as_str()
            .unwrap();
        assert!(cpu.contains("\"causeway.dev/simulated-cpu\" in"), "{cpu}");
        assert!(cpu.contains("size(pod.spec.containers)"), "{cpu}");
        assert!(cpu.ends_with("Quantity(\"1m\")"), "{cpu}");
    }

    #[test]
    fn metrics_server_is_an_external_name_at_the_host_address() {
        let target: SocketAddr = "127.0.0.10:4443".parse().unwrap();
        let objs = metrics_server_objects(target, b"PEM");
        let (path, svc) = &objs[objs.len() - 2];
        assert_eq!(path, "/api/v1/namespaces/kube-system/services");
        assert_eq!(svc["spec"]["externalName"], "127.0.0.10");
        assert_eq!(svc["metadata"]["name"], "metrics-server");
        let (_, api) = objs.last().unwrap();
        assert_eq!(api["metadata"]["name"], METRICS_API_SERVICE);
        assert_eq!(api["spec"]["service"]["port"], 4443);
        assert_eq!(api["spec"]["service"]["namespace"], "kube-system");
        assert_eq!(api["spec"]["caBundle"], "UEVN");
    }

    #[test]
    fn node_carries_capacity() {
        let mut spec = ClusterSpec::new("a");
        spec.node_memory = "64Gi".into();
        let n = node(&spec, 1);
        assert_eq!(n["metadata"]["name"], "a-node-1");
        assert_eq!(n["status"]["capacity"]["memory"], "64Gi");
        assert_eq!(n["status"]["allocatable"]["pods"], "110");
        assert_eq!(
            n["metadata"]["annotations"][RESOURCE_METRICS_PATH_ANNOTATION],
            "/metrics/nodes/a-node-1/metrics/resource"
        );
    }
}
