//! `causeway testbed` end to end, against the real binaries (`testbed/build-bins.sh`):
//! three clusters up in under 2 minutes, kwok nodes with the asked capacity, a 3-replica
//! Deployment Running, logs/exec/port-forward, ServiceAccount tokens, RBAC under
//! impersonation, and `down` leaving no process behind.

#[path = "support/testbed.rs"]
mod testbed_support;

use std::time::{Duration, Instant};

use causeway_testbed::testing::{echo_server, port_forward_round_trip, process_alive, wait_for};
use serde_json::{Value, json};
use testbed_support::*;

const CLUSTERS: [&str; 3] = ["a", "b", "c"];

#[test]
fn three_clusters_up_work_and_go_down() {
    require_binaries();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tb");
    let _guard = DownOnDrop(dir.clone());

    let base = causeway_testbed::reserve_addresses(3).to_string();
    let started = Instant::now();
    let out = testbed_ok(
        &dir,
        &[
            "up",
            "--clusters",
            "a,b,c",
            "--nodes",
            "3",
            "--node-cpu",
            "16",
            "--node-memory",
            "64Gi",
            "--node-pods",
            "50",
            "--base-address",
            &base,
        ],
    );
    let took = started.elapsed();
    eprintln!(
        "causeway testbed up --clusters a,b,c: Ready in {:.1} s\n{out}",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(120), "3 clusters took {took:?}");
    assert!(out.contains("3 clusters Ready in"), "{out}");

    let path = testbed_ok(&dir, &["kubeconfig", "b"]);
    assert_eq!(
        path.trim(),
        dir.join("b/kubeconfig")
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    );

    let status: Value = serde_json::from_str(&testbed_ok(&dir, &["status", "--json"])).unwrap();
    let clusters: Vec<Value> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cluster"].clone())
        .collect();
    assert_eq!(
        clusters
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        CLUSTERS
    );
    let pids = pids(&status);
    assert_eq!(pids.len(), 15);

    for c in &clusters {
        check_nodes(c);
    }
    check_workloads(&clusters[0]);
    check_port_forward(&clusters[1]);
    check_rbac_and_tokens(&clusters[2]);

    let out = testbed_ok(&dir, &["down"]);
    assert!(out.contains("stopped 15 processes"), "{out}");
    for pid in &pids {
        assert!(!process_alive(*pid), "pid {pid} still runs after down");
    }
    assert!(!dir.join("state.json").exists());
    let out = testbed_ok(&dir, &["down"]);
    assert!(out.contains("nothing to stop"), "{out}");
}

/// `kubectl get nodes` lists 3 Ready kwok nodes with the asked capacity.
fn check_nodes(c: &Value) {
    let name = c["name"].as_str().unwrap();
    let out = kubectl(c).get(&["nodes", "-o", "json"]);
    let nodes: Value = serde_json::from_str(&out).unwrap();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{name}");
    for n in items {
        assert!(
            n["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{name}-node-"))
        );
        assert_eq!(n["status"]["capacity"]["cpu"], "16");
        assert_eq!(n["status"]["capacity"]["memory"], "64Gi");
        assert_eq!(n["status"]["capacity"]["pods"], "50");
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "kwok-v0.8.0");
        let ready = n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "{n}");
    }
}

fn deploy(c: &Value, ns: &str, replicas: u32) -> Vec<String> {
    let k = kubectl(c);
    let _ = k.output(&["create", "namespace", ns]);
    k.apply(
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1",
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}}
        })
        .to_string(),
    );
    k.wait_running_pods(ns, "app=web", replicas as usize, Duration::from_secs(60))
}

/// A 3-replica Deployment gets 3 Running pods; `kubectl logs` and `exec` work on one.
fn check_workloads(c: &Value) {
    let pods = deploy(c, "shop", 3);
    assert_eq!(pods.len(), 3);
    let pod = &pods[0];
    let logs = kubectl(c).run(&["logs", "-n", "shop", pod]);
    assert!(logs.contains("log of a kwok pod in cluster a"), "{logs:?}");
    for websockets in ["true", "false"] {
        let out = kubectl(c)
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .run(&[
                "exec",
                "-n",
                "shop",
                pod,
                "--",
                "sh",
                "-c",
                "echo hi from $0",
                "exec",
            ]);
        assert_eq!(out.trim(), "hi from exec", "websockets={websockets}");
    }
}

/// `kubectl port-forward` moves bytes both ways to a TCP echo server on this machine.
fn check_port_forward(c: &Value) {
    let pods = deploy(c, "pf", 1);
    let target = echo_server();
    kubectl(c)
        .apply(&causeway_testbed::port_forward_rule("pf", &pods[0], 9000, target).to_string());
    for websockets in ["true", "false"] {
        wait_for(
            &format!("port-forward (websockets={websockets})"),
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let mut cmd = kubectl(c)
                    .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
                    .cmd();
                cmd.args([
                    "port-forward",
                    "-n",
                    "pf",
                    &format!("pod/{}", pods[0]),
                    ":9000",
                ]);
                port_forward_round_trip(cmd, 100_000, Duration::from_secs(10))
            },
        );
    }
}

/// RBAC under impersonation answers per a Role; ServiceAccount tokens are issued and accepted.
fn check_rbac_and_tokens(c: &Value) {
    let k = kubectl(c);
    for ns in ["team-a", "team-b"] {
        let _ = k.output(&["create", "namespace", ns]);
    }
    k.run(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "team-a",
        "--verb=get,list,watch",
        "--resource=pods",
    ]);
    k.run(&[
        "create",
        "rolebinding",
        "alice-reads",
        "-n",
        "team-a",
        "--role=pod-reader",
        "--user=alice",
    ]);
    let can = |ns: &str| {
        let out = k.output(&["auth", "can-i", "--as", "alice", "list", "pods", "-n", ns]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    };
    assert_eq!(can("team-a"), (true, "yes".into()));
    assert_eq!(can("team-b"), (false, "no".into()));

    k.run(&["create", "serviceaccount", "robot", "-n", "team-a"]);
    let token = k.run(&["create", "token", "robot", "-n", "team-a"]);
    let who = causeway_testbed::testing::Kubectl::new(c["kubectl"].as_str().unwrap())
        .arg("--server")
        .arg(c["server"].as_str().unwrap())
        .arg("--certificate-authority")
        .arg(c["ca_cert"].as_str().unwrap())
        .run(&[
            "--token",
            token.trim(),
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]);
    assert_eq!(who, "system:serviceaccount:team-a:robot");
}
