//! Workloads on the shared testbed, against the real binaries: a Deployment's pods go
//! Running, and `kubectl logs`, `exec` and `port-forward` work over both WebSocket and
//! SPDY (kwok's ClusterLogs/ClusterExec and a PortForward rule). Needs
//! `testbed/build-bins.sh`.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use causeway_testbed::testing::{Kubectl, echo_server, port_forward_round_trip, wait_for};
use causeway_testbed::{ClusterInfo, port_forward_rule, shared};

/// Creates a 2-replica Deployment in `ns` and returns its pod names once Running.
fn deployment(c: &ClusterInfo, ns: &str) -> Vec<String> {
    let k = Kubectl::admin(c);
    let _ = k.output(&["create", "namespace", ns]);
    k.apply(
        &serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}}}
        })
        .to_string(),
    );
    k.wait_running_pods(ns, "app=web", 2, Duration::from_secs(90))
}

/// Runs `kubectl port-forward`, sends bytes through it and checks they come back.
fn port_forward_roundtrip(
    c: &ClusterInfo,
    ns: &str,
    pod: &str,
    websockets: bool,
) -> Result<(), String> {
    let mut cmd = Kubectl::admin(c)
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
        .cmd();
    cmd.args(["port-forward", "-n", ns, &format!("pod/{pod}"), ":8080"]);
    port_forward_round_trip(cmd, 4096, Duration::from_secs(20)).map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_and_serve_logs_exec_and_port_forward() {
    let tb = shared().await;
    let c = tb.cluster("tb-a").expect("tb-a");
    let ns = "workloads";
    let pods = deployment(c, ns);
    let pod = pods[0].as_str();

    let marker = format!("marker line from test process {}", std::process::id());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&c.pod_log)
        .unwrap();
    f.write_all(causeway_testbed::pod_log::cri_line(&marker).as_bytes())
        .unwrap();
    let admin = Kubectl::admin(c);
    let logs = admin.run(&["logs", "-n", ns, pod]);
    assert!(
        logs.contains("log of a kwok pod in cluster tb-a"),
        "{logs:?}"
    );
    assert!(logs.contains(&marker), "{logs:?}");

    for websockets in [true, false] {
        let out = admin
            .clone()
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets.to_string())
            .run(&["exec", "-n", ns, pod, "--", "echo", "hi"]);
        assert_eq!(out.trim(), "hi", "exec websockets={websockets}");
    }

    let echo = echo_server();
    admin.apply(&port_forward_rule(ns, pod, 8080, echo).to_string());
    // kwok watches PortForward objects; give it a moment to see the new one.
    wait_for(
        "port-forward over WebSocket",
        Duration::from_secs(20),
        Duration::from_millis(500),
        || port_forward_roundtrip(c, ns, pod, true),
    );
    port_forward_roundtrip(c, ns, pod, false)
        .unwrap_or_else(|e| panic!("port-forward over SPDY: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_separate() {
    let tb = shared().await;
    let a = tb.cluster("tb-a").expect("tb-a");
    let b = tb.cluster("tb-b").expect("tb-b");
    assert_ne!(a.address, b.address);
    assert_ne!(
        std::fs::read(&a.ca_cert).unwrap(),
        std::fs::read(&b.ca_cert).unwrap()
    );
    let nodes = Kubectl::admin(b).get(&["nodes", "-o", "name"]);
    assert_eq!(
        nodes.lines().collect::<Vec<_>>(),
        ["node/tb-b-node-0", "node/tb-b-node-1"]
    );
    // a's admin certificate is not trusted by b's apiserver.
    let out = Command::new(&b.kubectl)
        .args(["--server", &b.server, "--certificate-authority"])
        .arg(&b.ca_cert)
        .arg("--client-certificate")
        .arg(&a.admin_cert)
        .arg("--client-key")
        .arg(&a.admin_key)
        .args(["get", "nodes"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "b accepted a's admin certificate");
}
