//! End to end through the built binary: `causeway stub` + `causeway agent` in front of
//! a real kube-apiserver (the shared testbed), enrolment, `causeway user add`, and real
//! kubectl doing get/list/apply/delete, watch, `logs -f`, exec (interactive and not)
//! and port-forward over WebSocket and over SPDY. SPDY is spoken both by the testbed's
//! kubectl (>= 1.31, told to) and by a real kubectl v1.29 (`.cache/bin/kubectl-1.29`,
//! built by `testbed/build-bins.sh`), whose default it is; kubectl's own `-v=6` log
//! shows which protocol each upgrade really used.

#[path = "tunnel_support/fixture.rs"]
mod fixture;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
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

    /// The same as [`E2e::kubectl`] with kubectl v1.29 (see [`kubectl_129_path`]).
    fn kubectl_129(&self) -> Command {
        let mut member = self.member().clone();
        member.kubectl = kubectl_129_path(&member.kubectl).to_owned();
        kubectl(&member, &self.alice, "tb-a")
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
        let alice = add_alice(&state, dir.path(), stub.users, member);
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
    let mut cmd = e.kubectl();
    cmd.args(["apply", "-f", "-"]);
    let out = causeway_testbed::testing::run_with_stdin(cmd, yaml.as_bytes()).unwrap();
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

/// `kubectl-1.29` beside the testbed's kubectl (both are built into the same directory by
/// `testbed/build-bins.sh`). Fails, never skips, when it is missing or not a v1.29 client.
fn kubectl_129_path(testbed_kubectl: &Path) -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = testbed_kubectl.with_file_name("kubectl-1.29");
        assert!(
            path.is_file(),
            "{} not found: run testbed/build-bins.sh (it builds kubectl-1.29 from \
             testbed/go/kubectl-1.29)",
            path.display()
        );
        let out = Command::new(&path)
            .args(["version", "--client", "-o", "json"])
            .output()
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let version: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|err| panic!("{} version: {err}", path.display()));
        let git_version = version["clientVersion"]["gitVersion"]
            .as_str()
            .unwrap_or("");
        assert!(
            git_version.starts_with("v1.29."),
            "{} is {git_version:?}, not v1.29: rerun testbed/build-bins.sh",
            path.display()
        );
        path
    })
}

/// A kubectl and the protocol it uses for exec, attach and port-forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// The testbed's kubectl (>= 1.31) with its default: WebSocket.
    WebSocket,
    /// The testbed's kubectl told to use SPDY (`KUBECTL_*_WEBSOCKETS=false`).
    Spdy,
    /// kubectl v1.29, which uses SPDY unless told otherwise.
    Spdy129,
}

const CLIENTS: [Client; 3] = [Client::WebSocket, Client::Spdy, Client::Spdy129];

impl Client {
    /// kubectl as alice, with the environment that picks the protocol.
    fn kubectl(self, e: &E2e) -> Command {
        let mut k = match self {
            Client::Spdy129 => e.kubectl_129(),
            Client::WebSocket | Client::Spdy => e.kubectl(),
        };
        for var in [
            "KUBECTL_REMOTE_COMMAND_WEBSOCKETS",
            "KUBECTL_PORT_FORWARD_WEBSOCKETS",
        ] {
            match self {
                Client::WebSocket => k.env(var, "true"),
                Client::Spdy => k.env(var, "false"),
                // Its own default, whatever the environment of the test says.
                Client::Spdy129 => k.env_remove(var),
            };
        }
        k
    }

    /// A name for messages and exec arguments.
    fn label(self) -> &'static str {
        match self {
            Client::WebSocket => "websocket",
            Client::Spdy => "spdy-current",
            Client::Spdy129 => "spdy-kubectl-1.29",
        }
    }

    /// The method of its exec and port-forward upgrade requests: WebSocket needs a GET,
    /// SPDY is a POST.
    fn method(self) -> &'static str {
        match self {
            Client::WebSocket => "GET",
            Client::Spdy | Client::Spdy129 => "POST",
        }
    }
}

/// Checks, in the `-v=6` log of a kubectl, that it asked the stub (`/clusters/…`) for
/// an upgrade of `subresource` (`exec`, `portforward`) with the client's method and was
/// answered `101 Switching Protocols`. kubectl >= 1.31 falls back to SPDY when a
/// WebSocket upgrade fails; this shows which protocol it really used.
fn expect_upgrade_logged(client: Client, subresource: &str, log: &str) {
    let method = client.method();
    // kubectl 1.36 logs `"Response" verb="GET" url="https://…"`, 1.29 `] GET https://…`.
    let (quoted, plain) = (format!("verb=\"{method}\""), format!(" {method} https://"));
    let found = log.lines().any(|l| {
        let upgrade = l.contains("/clusters/tb-a/")
            && l.contains(&format!("/{subresource}"))
            && l.contains("101 Switching Protocols");
        upgrade && (l.contains(&quoted) || l.contains(&plain))
    });
    assert!(
        found,
        "{}: no {method} {subresource} answered 101 in kubectl's log:\n{log}",
        client.label()
    );
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
    let who = ok({
        let mut k = e.kubectl_129();
        k.args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]);
        k
    });
    assert_eq!(who.trim(), "alice", "kubectl-1.29");
    let _ = e.kubectl().args(["create", "namespace", "crud"]).output();
    let out = apply_as_alice(
        e,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one, namespace: crud}\ndata: {k: v}\n",
    );
    assert!(out.contains("configmap/one"), "{out}");
    for (mut k, which) in [(e.kubectl(), "kubectl"), (e.kubectl_129(), "kubectl-1.29")] {
        k.args([
            "get",
            "configmap",
            "one",
            "-n",
            "crud",
            "-o",
            "jsonpath={.data.k}",
        ]);
        assert_eq!(ok(k), "v", "{which}");
    }

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
    let list = ok({
        let mut k = e.kubectl_129();
        k.args(["get", "configmaps", "-n", "crud", "-o", "name"]);
        k
    });
    assert!(
        list.contains("configmap/one") && !list.contains("configmap/two"),
        "kubectl-1.29: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_new_lines() {
    let e = e2e().await;
    let pod = running_pod(e, "logs");
    for (name, mut kubectl) in [("kubectl", e.kubectl()), ("kubectl-1.29", e.kubectl_129())] {
        let mut follow = kubectl
            .args(["logs", "-f", "-n", "logs", &pod])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines_of(follow.stdout.take().unwrap());
        expect_line(&lines, "log of a kwok pod", Duration::from_secs(20));
        let marker = format!("tunnel-follow-{name}-{}", std::process::id());
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_interactive_and_not_over_websocket_and_spdy() {
    let e = e2e().await;
    let pod = running_pod(e, "exec");
    for client in CLIENTS {
        let label = client.label();
        let out = client
            .kubectl(e)
            .args([
                "-v=6",
                "exec",
                "-n",
                "exec",
                &pod,
                "--",
                "sh",
                "-c",
                "echo hi from $0",
                label,
            ])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{label}: {log}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("hi from {label}"),
            "{label}"
        );
        expect_upgrade_logged(client, "exec", &log);
        // Interactive: stdin goes in, the answer comes back.
        let mut child = client
            .kubectl(e)
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
                label,
            ])
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
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "got ping-through-the-tunnel",
            "{label}"
        );
    }
    // An upgrade the API server answers without 101 is passed back, never spliced: a pod
    // no node can take has no host to exec on (kubectl checks that the pod exists and
    // has the container itself, so the upgrade request is made and refused with 400).
    apply_as_alice(
        e,
        "apiVersion: v1
kind: Pod
metadata: {name: homeless, namespace: exec}
spec:
  nodeSelector: {causeway.dev/no-such-node: \"true\"}
  containers: [{name: web, image: registry.invalid/web:1}]
",
    );
    for client in CLIENTS {
        let out = client
            .kubectl(e)
            .args(["exec", "-n", "exec", "homeless", "--", "true"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("does not have a host assigned"),
            "{}: {err}",
            client.label()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_round_trip_over_websocket_and_spdy() {
    let e = e2e().await;
    let pod = running_pod(e, "pf");
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in echo.incoming().take(32) {
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
    for client in CLIENTS {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match forward_once(e, &pod, client) {
                Ok(log) => {
                    expect_upgrade_logged(client, "portforward", &log);
                    break;
                }
                Err(err) if Instant::now() < deadline => {
                    eprintln!("port-forward not ready yet ({err}); retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(err) => panic!("port-forward {}: {err}", client.label()),
            }
        }
    }
}

/// One `kubectl port-forward` and 300 kB through it and back; its `-v=6` log on success.
fn forward_once(e: &E2e, pod: &str, client: Client) -> Result<String, String> {
    let mut child = client
        .kubectl(e)
        .args([
            "-v=6",
            "port-forward",
            "-n",
            "pf",
            &format!("pod/{pod}"),
            ":9000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let lines = lines_of(child.stdout.take().ok_or("no stdout")?);
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let result = (|| {
        let line = lines
            .recv_timeout(Duration::from_secs(15))
            .map_err(|_| "no 'Forwarding from' line".to_owned())?;
        let local = line
            .split_whitespace()
            .nth(2)
            .ok_or(format!("unexpected output {line:?}"))?;
        causeway_testbed::testing::echo_round_trip(local, 300_000, Duration::from_secs(10))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join().unwrap_or_default();
    result.map(|()| log)
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
