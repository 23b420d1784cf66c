//! Workloads on the shared testbed, against the real binaries: a Deployment's pods go
//! Running, and `kubectl logs`, `exec` and `port-forward` work over both WebSocket and
//! SPDY (kwok's ClusterLogs/ClusterExec and a PortForward rule). Needs
//! `testbed/build-bins.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use causeway_testbed::{ClusterInfo, port_forward_rule, shared};

fn run(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(c: &ClusterInfo, doc: &serde_json::Value) {
    let mut cmd = c.kubectl();
    cmd.args(["apply", "-f", "-"]);
    let out = causeway_testbed::testing::run_with_stdin(cmd, doc.to_string().as_bytes()).unwrap();
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates a 2-replica Deployment in `ns` and returns its pod names once Ready.
fn deployment(c: &ClusterInfo, ns: &str) -> Vec<String> {
    let _ = c.kubectl().args(["create", "namespace", ns]).output();
    apply(
        c,
        &serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}}}
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = run({
            let mut k = c.kubectl();
            k.args(["get", "pods", "-n", ns, "-l", "app=web", "-o", "json"]);
            k
        });
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let pods = v["items"].as_array().unwrap();
        let running: Vec<String> = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        if running.len() == 2 {
            return running;
        }
        assert!(
            Instant::now() < deadline,
            "pods not Running after 90 s: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(16) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Runs `kubectl port-forward`, sends bytes through it and checks they come back.
fn port_forward_roundtrip(c: &ClusterInfo, ns: &str, pod: &str, websockets: bool) {
    let mut child = c
        .kubectl()
        .args(["port-forward", "-n", ns, &format!("pod/{pod}"), ":8080"])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    // Keep draining: kubectl dies of EPIPE if its "Handling connection" line has no reader.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    let local = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"))
        .to_owned();
    let mut conn = TcpStream::connect(&local).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let payload = format!(
        "ping over {} {}",
        if websockets { "websocket" } else { "spdy" },
        pod
    );
    conn.write_all(payload.as_bytes()).unwrap();
    let mut got = vec![0u8; payload.len()];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), payload);
    drop(conn);
    let _ = child.kill();
    let _ = child.wait();
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
    let logs = run({
        let mut k = c.kubectl();
        k.args(["logs", "-n", ns, pod]);
        k
    });
    assert!(
        logs.contains("log of a kwok pod in cluster tb-a"),
        "{logs:?}"
    );
    assert!(logs.contains(&marker), "{logs:?}");

    for websockets in [true, false] {
        let mut k = c.kubectl();
        k.args(["exec", "-n", ns, pod, "--", "echo", "hi"])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets.to_string());
        assert_eq!(run(k).trim(), "hi", "exec websockets={websockets}");
    }

    let echo = echo_server();
    apply(c, &port_forward_rule(ns, pod, 8080, echo));
    // kwok watches PortForward objects; give it a moment to see the new one.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = std::panic::catch_unwind(|| port_forward_roundtrip(c, ns, pod, true));
        if ok.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "port-forward never worked");
        std::thread::sleep(Duration::from_millis(500));
    }
    port_forward_roundtrip(c, ns, pod, false);
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
    let nodes = run({
        let mut k = b.kubectl();
        k.args(["get", "nodes", "-o", "name"]);
        k
    });
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
