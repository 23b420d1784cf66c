//! Objects the testbed creates in each cluster: kwok's CRDs, the fake nodes, and the
//! default exec/logs rules. Public helpers build port-forward rules for tests.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use crate::spec::ClusterSpec;

/// API group of kwok's resources.
pub const KWOK_GROUP: &str = "kwok.x-k8s.io";

/// A CRD for one kwok kind. The schema keeps every field: kwok itself validates them.
pub(crate) fn kwok_crd(kind: &str) -> Value {
    let lower = kind.to_lowercase();
    // kwok's own CRDs: `Logs` and `ClusterLogs` are already plural.
    let plural = if lower.ends_with("logs") {
        lower.clone()
    } else {
        format!("{lower}s")
    };
    let scope = if kind.starts_with("Cluster") {
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
            "annotations": { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
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
    }

    #[test]
    fn node_carries_capacity() {
        let mut spec = ClusterSpec::new("a");
        spec.node_memory = "64Gi".into();
        let n = node(&spec, 1);
        assert_eq!(n["metadata"]["name"], "a-node-1");
        assert_eq!(n["status"]["capacity"]["memory"], "64Gi");
        assert_eq!(n["status"]["allocatable"]["pods"], "110");
    }
}
