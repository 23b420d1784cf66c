//! `causeway testbed` end to end, against the real binaries (`testbed/build-bins.sh`):
//! three clusters up in under 2 minutes, kwok nodes with the asked capacity, a 3-replica
//! Deployment Running, logs/exec/port-forward, ServiceAccount tokens, RBAC under
//! impersonation, and `down` leaving no process behind.

mod testbed_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

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
        assert!(!alive(*pid), "pid {pid} still runs after down");
    }
    assert!(!dir.join("state.json").exists());
    let out = testbed_ok(&dir, &["down"]);
    assert!(out.contains("nothing to stop"), "{out}");
}

/// `kubectl get nodes` lists 3 Ready kwok nodes with the asked capacity.
fn check_nodes(c: &Value) {
    let name = c["name"].as_str().unwrap();
    let out = run_ok({
        let mut k = kubectl(c);
        k.args(["get", "nodes", "-o", "json"]);
        k
    });
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

fn running_pods(c: &Value, ns: &str, selector: &str, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = run_ok({
            let mut k = kubectl(c);
            k.args(["get", "pods", "-n", ns, "-l", selector, "-o", "json"]);
            k
        });
        let v: Value = serde_json::from_str(&out).unwrap();
        let running: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        if running.len() == want {
            return running;
        }
        assert!(
            Instant::now() < deadline,
            "{want} pods not Running after 60 s: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn deploy(c: &Value, ns: &str, replicas: u32) -> Vec<String> {
    let _ = kubectl(c).args(["create", "namespace", ns]).output();
    apply(
        c,
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1",
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}}
        }),
    );
    running_pods(c, ns, "app=web", replicas as usize)
}

/// A 3-replica Deployment gets 3 Running pods; `kubectl logs` and `exec` work on one.
fn check_workloads(c: &Value) {
    let pods = deploy(c, "shop", 3);
    assert_eq!(pods.len(), 3);
    let pod = &pods[0];
    let logs = run_ok({
        let mut k = kubectl(c);
        k.args(["logs", "-n", "shop", pod]);
        k
    });
    assert!(logs.contains("log of a kwok pod in cluster a"), "{logs:?}");
    for websockets in ["true", "false"] {
        let out = run_ok({
            let mut k = kubectl(c);
            k.args([
                "exec",
                "-n",
                "shop",
                pod,
                "--",
                "sh",
                "-c",
                "echo hi from $0",
                "exec",
            ])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets);
            k
        });
        assert_eq!(out.trim(), "hi from exec", "websockets={websockets}");
    }
}

/// `kubectl port-forward` moves bytes both ways to a TCP echo server on this machine.
fn check_port_forward(c: &Value) {
    let pods = deploy(c, "pf", 1);
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in echo.incoming().take(8) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    apply(
        c,
        &causeway_testbed::port_forward_rule("pf", &pods[0], 9000, target),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    for websockets in ["true", "false"] {
        loop {
            match forward_once(c, &pods[0], websockets) {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("port-forward not yet working ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("port-forward (websockets={websockets}) failed: {e}"),
            }
        }
    }
}

fn forward_once(c: &Value, pod: &str, websockets: &str) -> Result<(), String> {
    let mut child = kubectl(c)
        .args(["port-forward", "-n", "pf", &format!("pod/{pod}"), ":9000"])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let result = (|| {
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        // Keep reading, or kubectl dies of EPIPE on its next "Handling connection" line.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let local = line
            .split_whitespace()
            .nth(2)
            .ok_or(format!("unexpected output {line:?}"))?;
        causeway_testbed::testing::echo_round_trip(local, 100_000, Duration::from_secs(10))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// RBAC under impersonation answers per a Role; ServiceAccount tokens are issued and accepted.
fn check_rbac_and_tokens(c: &Value) {
    for ns in ["team-a", "team-b"] {
        let _ = kubectl(c).args(["create", "namespace", ns]).output();
    }
    run_ok({
        let mut k = kubectl(c);
        k.args([
            "create",
            "role",
            "pod-reader",
            "-n",
            "team-a",
            "--verb=get,list,watch",
            "--resource=pods",
        ]);
        k
    });
    run_ok({
        let mut k = kubectl(c);
        k.args([
            "create",
            "rolebinding",
            "alice-reads",
            "-n",
            "team-a",
            "--role=pod-reader",
            "--user=alice",
        ]);
        k
    });
    let can = |ns: &str| {
        let out = kubectl(c)
            .args(["auth", "can-i", "--as", "alice", "list", "pods", "-n", ns])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    };
    assert_eq!(can("team-a"), (true, "yes".into()));
    assert_eq!(can("team-b"), (false, "no".into()));

    run_ok({
        let mut k = kubectl(c);
        k.args(["create", "serviceaccount", "robot", "-n", "team-a"]);
        k
    });
    let token = run_ok({
        let mut k = kubectl(c);
        k.args(["create", "token", "robot", "-n", "team-a"]);
        k
    });
    let who = run_ok({
        let mut k = std::process::Command::new(c["kubectl"].as_str().unwrap());
        k.args([
            "--server",
            c["server"].as_str().unwrap(),
            "--certificate-authority",
            c["ca_cert"].as_str().unwrap(),
        ])
        .args([
            "--token",
            token.trim(),
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]);
        k
    });
    assert_eq!(who, "system:serviceaccount:team-a:robot");
}
