//! End to end through the built binary: `causeway stub` + `causeway agent` in front of
//! a real kube-apiserver (the shared testbed), enrolment, `causeway user add`, and real
//! kubectl doing get/list/apply/delete, watch, `logs -f`, exec (interactive and not)
//! and port-forward over WebSocket and over SPDY.

#[path = "tunnel_support/fixture.rs"]
mod fixture;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use causeway_testbed::{ClusterInfo, Testbed};
use fixture::*;
use tokio::sync::OnceCell;

struct E2e {
    tb: &'static Testbed,
    dir: tempfile::TempDir,
    stub: Stub,
    _agent: Proc,
    alice: PathBuf,
}

impl E2e {
    fn member(&self) -> &ClusterInfo {
        self.tb.cluster("tb-a").unwrap()
    }

    fn kubectl(&self) -> std::process::Command {
        kubectl(self.member(), &self.alice, "tb-a")
    }
}

async fn e2e() -> &'static E2e {
    static E: OnceCell<E2e> = OnceCell::const_new();
    E.get_or_init(|| async {
        let tb = causeway_testbed::shared().await;
        let dir = tempfile::tempdir().unwrap();
        let member = tb.cluster("tb-a").unwrap();
        let token = member_token(member, dir.path());
        let state = dir.path().join("stub-state");
        let stub = start_stub(dir.path(), "stub", &state, None);
        let agents_url = format!("https://{}", stub.agents);
        let join = cluster_add(&state, "tb-a", &agents_url);
        cluster_add(&state, "tb-none", &agents_url);
        let mut agent = start_agent(
            dir.path(),
            "agent",
            &agents_url,
            member,
            &token,
            &dir.path().join("agent-state"),
            Some(&join),
        );
        agent.wait_log("session established", 2, Duration::from_secs(30));
        let alice = user_add(
            &state,
            dir.path(),
            "alice",
            "dev",
            "tb-*",
            &format!("https://{}", stub.users),
        );
        // The stub reloads users.yaml within 2 s of `causeway user add`.
        wait_authenticated(member, &alice, "tb-a");
        E2e {
            tb,
            dir,
            stub,
            _agent: agent,
            alice,
        }
    })
    .await
}

fn ok(cmd: std::process::Command) -> String {
    run_ok(cmd)
}

fn apply_as_alice(e: &E2e, yaml: &str) -> String {
    let mut child = e
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Running pod of a one-replica Deployment in `ns`, created through the tunnel.
fn running_pod(e: &E2e, ns: &str) -> String {
    apply_as_alice(
        e,
        &format!(
            "apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: registry.invalid/web:1}}]
"
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = ok({
            let mut k = e.kubectl();
            k.args([
                "get",
                "pods",
                "-n",
                ns,
                "-l",
                "app=web",
                "--field-selector=status.phase=Running",
                "-o",
                "name",
            ]);
            k
        });
        if let Some(p) = out.lines().next() {
            return p.trim_start_matches("pod/").to_owned();
        }
        assert!(Instant::now() < deadline, "no Running pod in {ns}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_list_apply_delete_and_watch() {
    let e = e2e().await;
    let who = ok({
        let mut k = e.kubectl();
        k.args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]);
        k
    });
    assert_eq!(who.trim(), "alice");
    let _ = e.kubectl().args(["create", "namespace", "crud"]).output();
    let out = apply_as_alice(
        e,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one, namespace: crud}\ndata: {k: v}\n",
    );
    assert!(out.contains("configmap/one"), "{out}");
    let got = ok({
        let mut k = e.kubectl();
        k.args([
            "get",
            "configmap",
            "one",
            "-n",
            "crud",
            "-o",
            "jsonpath={.data.k}",
        ]);
        k
    });
    assert_eq!(got, "v");

    // Watch: events arrive as they happen (the stream is flushed through the tunnel).
    let mut watch = e
        .kubectl()
        .args([
            "get",
            "configmaps",
            "-n",
            "crud",
            "-w",
            "--output-watch-events",
            "-o",
            "name",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(watch.stdout.take().unwrap());
    expect_line(&lines, "configmap/one", Duration::from_secs(20));
    let created = Instant::now();
    apply_as_alice(
        e,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: two, namespace: crud}\n",
    );
    expect_line(&lines, "configmap/two", Duration::from_secs(10));
    let seen_after = created.elapsed();
    ok({
        let mut k = e.kubectl();
        k.args(["delete", "configmap", "two", "-n", "crud"]);
        k
    });
    // The deletion event names it again.
    expect_line(&lines, "configmap/two", Duration::from_secs(10));
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        seen_after < Duration::from_secs(10),
        "watch event took {seen_after:?}"
    );
    let list = ok({
        let mut k = e.kubectl();
        k.args(["get", "configmaps", "-n", "crud", "-o", "name"]);
        k
    });
    assert!(
        list.contains("configmap/one") && !list.contains("configmap/two"),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_new_lines() {
    let e = e2e().await;
    let pod = running_pod(e, "logs");
    let mut follow = e
        .kubectl()
        .args(["logs", "-f", "-n", "logs", &pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(follow.stdout.take().unwrap());
    expect_line(&lines, "log of a kwok pod", Duration::from_secs(20));
    let marker = format!("tunnel-follow-{}", std::process::id());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&e.member().pod_log)
        .unwrap();
    f.write_all(causeway_testbed::pod_log::cri_line(&marker).as_bytes())
        .unwrap();
    drop(f);
    expect_line(&lines, &marker, Duration::from_secs(15));
    let _ = follow.kill();
    let _ = follow.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_interactive_and_not_over_websocket_and_spdy() {
    let e = e2e().await;
    let pod = running_pod(e, "exec");
    for websockets in ["true", "false"] {
        let out = ok({
            let mut k = e.kubectl();
            k.args([
                "exec",
                "-n",
                "exec",
                &pod,
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
        // Interactive: stdin goes in, the answer comes back.
        let mut child = e
            .kubectl()
            .args([
                "exec",
                "-i",
                "-n",
                "exec",
                &pod,
                "--",
                "sh",
                "-c",
                "read l; echo got $l",
            ])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"ping-through-the-tunnel\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "websockets={websockets}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "got ping-through-the-tunnel"
        );
    }
    // An upgrade the API server answers without 101 is passed back, never spliced.
    for websockets in ["true", "false"] {
        let out = e
            .kubectl()
            .args(["exec", "-n", "exec", "no-such-pod", "--", "true"])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not found"), "websockets={websockets}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_round_trip_over_websocket_and_spdy() {
    let e = e2e().await;
    let pod = running_pod(e, "pf");
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in echo.incoming().take(16) {
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
    admin_apply(
        e.member(),
        &causeway_testbed::port_forward_rule("pf", &pod, 9000, target).to_string(),
    );
    for websockets in ["true", "false"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match forward_once(e, &pod, websockets) {
                Ok(()) => break,
                Err(err) if Instant::now() < deadline => {
                    eprintln!("port-forward not ready yet ({err}); retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(err) => panic!("port-forward websockets={websockets}: {err}"),
            }
        }
    }
}

fn forward_once(e: &E2e, pod: &str, websockets: &str) -> Result<(), String> {
    let mut child = e
        .kubectl()
        .args(["port-forward", "-n", "pf", &format!("pod/{pod}"), ":9000"])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let lines = lines_of(child.stdout.take().ok_or("no stdout")?);
    let result = (|| {
        let line = lines
            .recv_timeout(Duration::from_secs(15))
            .map_err(|_| "no 'Forwarding from' line".to_owned())?;
        let local = line
            .split_whitespace()
            .nth(2)
            .ok_or(format!("unexpected output {line:?}"))?;
        let mut conn = TcpStream::connect(local).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut w = conn.try_clone().map_err(|e| e.to_string())?;
            let payload = payload.clone();
            std::thread::spawn(move || w.write_all(&payload))
        };
        let mut got = vec![0u8; payload.len()];
        conn.read_exact(&mut got)
            .map_err(|e| format!("read back: {e}"))?;
        let _ = writer.join();
        if got == payload {
            Ok(())
        } else {
            Err("bytes differ".to_owned())
        }
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cluster_404_no_agent_503_as_status() {
    let e = e2e().await;
    for (cluster, code, reason) in [
        ("tb-nope", 404, "NotFound"),
        ("tb-none", 503, "ServiceUnavailable"),
    ] {
        let out = e
            .kubectl()
            .args([
                "--server",
                &format!("https://{}/clusters/{cluster}", e.stub.users),
                "get",
                "pods",
                "-v=6",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{code}")), "{cluster}: {err}");
        assert!(
            err.contains(reason) || err.contains("not known") || err.contains("no live agent"),
            "{cluster}: {err}"
        );
    }
    // The refusals are in the stub's audit log, with user, cluster and code.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit =
            std::fs::read_to_string(e.dir.path().join("stub-audit.log")).unwrap_or_default();
        let found = audit.lines().any(|l| {
            l.contains("\"username\":\"alice\"")
                && l.contains("/clusters/tb-none/")
                && l.contains("\"code\":503")
        });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no audit event for the 503:\n{audit}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bad_stub_config_is_refused_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "apiVersion: causeway.dev/v1alpha1\nkind: StubConfig\nmetadata: {name: s}\nspec:\n  stateDir: x\n  listen: {users: \"nope\", agents: \"127.0.0.1:0\", metrics: \"127.0.0.1:0\"}\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["stub", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("spec.listen.users"),
        "{err}"
    );
}
