//! End to end through the built binary: `causeway stub` + `causeway agent` in front of
//! a real kube-apiserver (the shared testbed), enrolment, `causeway user add`, and real
//! kubectl doing get/list/apply/delete, watch, `logs -f`, exec (interactive and not)
//! and port-forward over WebSocket and over SPDY. SPDY is spoken both by the testbed's
//! kubectl (>= 1.31, told to) and by a real kubectl v1.29 (`.cache/bin/kubectl-1.29`,
//! built by `testbed/build-bins.sh`), whose default it is; kubectl's own `-v=6` log
//! shows which protocol each upgrade really used.

#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use causeway_testbed::ClusterInfo;
use causeway_testbed::testing::{
    Kubectl, KubectlVersion, Process, Spawn, echo_server, port_forward_round_trip, run,
    run_with_stdin, wait_for,
};
use tokio::sync::OnceCell;
use tunnel_support::*;

struct E2e {
    bed: TunnelBed,
    _agent: Process,
    alice: PathBuf,
}

impl E2e {
    fn member(&self) -> &ClusterInfo {
        self.bed.member()
    }

    /// kubectl as alice, through the stub.
    fn alice(&self) -> Kubectl {
        as_user(self.member(), &self.alice, "tb-a")
    }

    fn kubectl(&self) -> Command {
        self.alice().cmd()
    }

    /// The same as [`E2e::kubectl`] with kubectl v1.29 (SPDY only).
    fn kubectl_129(&self) -> Command {
        self.alice().version(KubectlVersion::V1_29).cmd()
    }
}

async fn e2e() -> &'static E2e {
    static E: OnceCell<E2e> = OnceCell::const_new();
    E.get_or_init(|| async {
        let bed = TunnelBed::start().await;
        cluster_add(&bed.state, "tb-none", &bed.agents_url);
        let agent = bed.agent("agent", &bed.dir.path().join("agent-state"), true);
        let alice = bed.add_alice();
        E2e {
            bed,
            _agent: agent,
            alice,
        }
    })
    .await
}

fn apply_as_alice(e: &E2e, yaml: &str) -> String {
    e.alice().apply(yaml)
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
    e.alice()
        .wait_running_pods(ns, "app=web", 1, Duration::from_secs(60))
        .remove(0)
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
    let clients = [
        (e.alice(), "kubectl"),
        (e.alice().version(KubectlVersion::V1_29), "kubectl-1.29"),
    ];
    for (k, which) in &clients {
        let who = k.run(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]);
        assert_eq!(who.trim(), "alice", "{which}");
    }
    let _ = e.kubectl().args(["create", "namespace", "crud"]).output();
    let out = apply_as_alice(
        e,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one, namespace: crud}\ndata: {k: v}\n",
    );
    assert!(out.contains("configmap/one"), "{out}");
    for (k, which) in &clients {
        let v = k.get(&["configmap", "one", "-n", "crud", "-o", "jsonpath={.data.k}"]);
        assert_eq!(v, "v", "{which}");
    }

    // Watch: events arrive as they happen (the stream is flushed through the tunnel).
    let mut watch = e.kubectl();
    watch.args([
        "get",
        "configmaps",
        "-n",
        "crud",
        "-w",
        "--output-watch-events",
        "-o",
        "name",
    ]);
    let watch = Spawn::new("kubectl get -w", watch).start();
    watch.wait_line("configmap/one", Duration::from_secs(20));
    let created = Instant::now();
    apply_as_alice(
        e,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: two, namespace: crud}\n",
    );
    watch.wait_line("configmap/two", Duration::from_secs(10));
    let seen_after = created.elapsed();
    e.alice().run(&["delete", "configmap", "two", "-n", "crud"]);
    // The deletion event names it again.
    watch.wait_lines("configmap/two", 2, Duration::from_secs(10));
    drop(watch);
    assert!(
        seen_after < Duration::from_secs(10),
        "watch event took {seen_after:?}"
    );
    for (k, which) in &clients {
        let list = k.get(&["configmaps", "-n", "crud", "-o", "name"]);
        assert!(
            list.contains("configmap/one") && !list.contains("configmap/two"),
            "{which}: {list}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_new_lines() {
    let e = e2e().await;
    let pod = running_pod(e, "logs");
    for (name, mut kubectl) in [("kubectl", e.kubectl()), ("kubectl-1.29", e.kubectl_129())] {
        kubectl.args(["logs", "-f", "-n", "logs", &pod]);
        let follow = Spawn::new(format!("{name} logs -f"), kubectl).start();
        follow.wait_line("log of a kwok pod", Duration::from_secs(20));
        let marker = format!("tunnel-follow-{name}-{}", std::process::id());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&e.member().pod_log)
            .unwrap();
        f.write_all(causeway_testbed::pod_log::cri_line(&marker).as_bytes())
            .unwrap();
        drop(f);
        follow.wait_line(&marker, Duration::from_secs(15));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_interactive_and_not_over_websocket_and_spdy() {
    let e = e2e().await;
    let pod = running_pod(e, "exec");
    for client in CLIENTS {
        let label = client.label();
        // `sh -c SCRIPT LABEL` in the pod through `kubectl [FLAGS] exec [-i]`.
        let exec = |flags: &[&str], script: &str| {
            let mut k = client.kubectl(e);
            k.args(flags)
                .args(["-n", "exec", &pod, "--", "sh", "-c", script, label]);
            k
        };
        let out = run(&mut exec(&["-v=6", "exec"], "echo hi from $0"));
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{label}: {log}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("hi from {label}"),
            "{label}"
        );
        expect_upgrade_logged(client, "exec", &log);
        // Interactive: stdin goes in, the answer comes back.
        let interactive = exec(&["exec", "-i"], "read l; echo got $l");
        let out = run_with_stdin(interactive, b"ping-through-the-tunnel\n").unwrap();
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
    let target = echo_server();
    Kubectl::admin(e.member())
        .apply(&causeway_testbed::port_forward_rule("pf", &pod, 9000, target).to_string());
    for client in CLIENTS {
        let log = wait_for(
            &format!("port-forward {}", client.label()),
            Duration::from_secs(30),
            Duration::from_millis(500),
            || forward_once(e, &pod, client),
        );
        expect_upgrade_logged(client, "portforward", &log);
    }
}

/// One `kubectl port-forward` and 300 kB through it and back; its `-v=6` log on success.
fn forward_once(e: &E2e, pod: &str, client: Client) -> Result<String, String> {
    let mut cmd = client.kubectl(e);
    cmd.args([
        "-v=6",
        "port-forward",
        "-n",
        "pf",
        &format!("pod/{pod}"),
        ":9000",
    ]);
    port_forward_round_trip(cmd, 300_000, Duration::from_secs(10))
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
                &format!("https://{}/clusters/{cluster}", e.bed.stub.users),
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
    wait_for(
        "an audit event for the 503",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let audit = std::fs::read_to_string(e.bed.dir.path().join("stub-audit.log"))
                .unwrap_or_default();
            let found = audit.lines().any(|l| {
                l.contains("\"username\":\"alice\"")
                    && l.contains("/clusters/tb-none/")
                    && l.contains("\"code\":503")
            });
            if found { Ok(()) } else { Err(audit) }
        },
    );
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
