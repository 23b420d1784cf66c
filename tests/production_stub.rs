//! The stub's production mode against a real hub kube-apiserver (the testbed's `tb-b`)
//! and a real member (`tb-a`): two stubs with `--hub-kubeconfig` and no shared directory
//! (each its own empty state directory) share one CA and their state through the Secret
//! `causeway-stub-state`; `causeway cluster|user … --hub-kubeconfig` edit it; a join token
//! works once whichever stub takes it; the standby takes over by the Lease with the same
//! credentials; an `AccessPolicy` applied to the hub takes effect and gets `status`; the
//! active stub makes the scheduler's identity Secret.

#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use causeway_testbed::ClusterInfo;
use causeway_testbed::testing::{Kubectl, run, run_ok, run_with_stdin, wait_for};
use tunnel_support::*;

const NS: &str = "causeway-prod-stub";
const LEASE_SECONDS: u64 = 3;

/// `--hub-kubeconfig FILE --hub-namespace NS`.
fn hub_flags(hub: &ClusterInfo) -> Vec<String> {
    vec![
        "--hub-kubeconfig".into(),
        hub.kubeconfig.display().to_string(),
        "--hub-namespace".into(),
        NS.into(),
    ]
}

/// A fresh namespace in the hub with Causeway's CRDs installed.
fn prepare_hub(hub: &ClusterInfo) -> Kubectl {
    let k = Kubectl::admin(hub);
    let crds = run_ok(causeway().arg("crds"));
    let mut apply = k.cmd();
    apply.args(["apply", "--server-side", "-f", "-"]);
    let out = run_with_stdin(apply, crds.as_bytes()).expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    k.wait(
        &[
            "--for=condition=Established",
            "crd/accesspolicies.causeway.dev",
        ],
        Duration::from_secs(60),
    );
    // Left over from an earlier run: start empty.
    let _ = run(k.cmd().args([
        "delete",
        "namespace",
        NS,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=60s",
    ]));
    k.run(&["create", "namespace", NS]);
    k
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn ready(s: &Stub) -> bool {
    http_get(s.metrics, "/readyz").0 == 200
}

fn sessions(s: &Stub, cluster: &str) -> u64 {
    let body = http_get(s.metrics, "/sessions").1;
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v[cluster].as_u64())
        .unwrap_or(0)
}

/// kubectl as the user of `kubeconfig` through `stub`, on cluster `tb-a`.
fn kubectl_via(
    member: &ClusterInfo,
    kubeconfig: &Path,
    stub: &Stub,
    args: &[&str],
) -> Result<String, String> {
    let server = format!("https://{}/clusters/tb-a", stub.users);
    let mut all = vec!["--server", server.as_str()];
    all.extend_from_slice(args);
    let out = Kubectl::with_kubeconfig(member, kubeconfig)
        .arg("--request-timeout")
        .arg("20s")
        .output(&all);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A key of a Secret in the hub namespace, decoded.
fn secret_key(k: &Kubectl, secret: &str, key: &str) -> Option<Vec<u8>> {
    let jsonpath = format!("jsonpath={{.data.{}}}", key.replace('.', "\\."));
    let out = run(k
        .cmd()
        .args(["get", "secret", secret, "-n", NS, "-o", &jsonpath]));
    if !out.status.success() {
        return None;
    }
    let b64 = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn start_prod_stub(
    dir: &Path,
    name: &str,
    hub: &ClusterInfo,
    users_url: &str,
    extra: &[String],
) -> Stub {
    let state = dir.join(format!("{name}-state"));
    // No identity in the file: `--lease-identity` gives each replica its own.
    let lease = format!(
        "  lease:\n    kubeconfig: {}\n    namespace: {NS}\n    name: causeway-stub\n    durationSeconds: {LEASE_SECONDS}\n",
        hub.kubeconfig.display()
    );
    let config = stub_config(dir, name, &state, &lease);
    let mut args = hub_flags(hub);
    args.extend(["--users-url".into(), users_url.into()]);
    args.extend(["--lease-identity".into(), format!("{name}-pod")]);
    args.extend_from_slice(extra);
    Stub::start(&config, &state, &args, &dir.join(format!("{name}.log")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stubs_share_their_state_through_the_hub() {
    let tb = causeway_testbed::shared().await;
    let (member, hub) = (tb.cluster("tb-a").unwrap(), tb.cluster("tb-b").unwrap());
    let k = prepare_hub(hub);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sa_token = member_token(member, d);

    // Two stubs started at once, each with its own empty state directory.
    let a_port = free_port();
    let users_url = format!("https://127.0.0.1:{a_port}");
    let fixed = ["--listen-users".to_owned(), format!("127.0.0.1:{a_port}")];
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| start_prod_stub(d, "stub-a", hub, &users_url, &fixed));
        let b = s.spawn(|| start_prod_stub(d, "stub-b", hub, &users_url, &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    wait_for(
        "one stub active",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || ready(&a) || ready(&b),
    );
    let (active, standby, active_name) = if ready(&a) {
        (&a, &b, "stub-a")
    } else {
        (&b, &a, "stub-b")
    };
    let holder = k.get(&[
        "lease",
        "causeway-stub",
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, format!("{active_name}-pod"));
    eprintln!("active: users {}", active.users);

    // The CA Secret was created once; both mirrors hold its CA.
    let created: usize = [&a, &b]
        .iter()
        .map(|s| {
            s.proc
                .logs()
                .matches("created the stub's state Secret")
                .count()
        })
        .sum();
    assert_eq!(
        created, 1,
        "the state Secret is created by exactly one stub"
    );
    let ca = secret_key(&k, "causeway-stub-state", "ca.crt").expect("ca.crt in the Secret");
    for s in [&a, &b] {
        let local = std::fs::read(s.state.join("ca.crt")).unwrap();
        assert_eq!(local, ca, "{} serves another CA", s.proc.name());
    }

    // `cluster add` against the hub; the agent enrols through the standby.
    let store = hub_flags(hub);
    let join = cluster_add_in(&store, "tb-a", &format!("https://{}", standby.agents));
    let urls = format!("https://{},https://{}", standby.agents, active.agents);
    let agent = start_agent(
        d,
        "agent",
        &urls,
        member,
        &sa_token,
        &d.join("agent"),
        Some(&join),
    );
    agent.wait_lines("session established", 4, Duration::from_secs(30));
    assert!(sessions(&a, "tb-a") >= 1 && sessions(&b, "tb-a") >= 1);

    // The same token again, through the other stub: refused.
    let out = run(causeway()
        .args([
            "agent",
            "--stub",
            &format!("https://{}", active.agents),
            "--cluster",
            "tb-a",
        ])
        .arg("--state-dir")
        .arg(d.join("agent-2"))
        .arg("--kubeconfig")
        .arg(&member.kubeconfig)
        .arg("--token-file")
        .arg(&sa_token)
        .args(["--token", &join.0, "--ca-hash", &join.1]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a join token enrolled twice");
    assert!(stderr.contains("already used"), "{stderr}");

    // One token, two enrolments at once, one through each stub: exactly one wins (the
    // other's compare-and-swap finds the token used). Five rounds.
    let id: causeway_model::ClusterId = "tb-a".parse().unwrap();
    for round in 0..5 {
        let (token, hash) = cluster_add_in(&store, "tb-a", "https://unused:1");
        let pin: causeway_tunnel::pki::CaPin = hash.parse().unwrap();
        let token = causeway_tunnel::identity::Secret::new(token);
        let (ua, ub) = (
            format!("https://{}", a.agents),
            format!("https://{}", b.agents),
        );
        let (da, db) = (
            d.join(format!("race-{round}-a")),
            d.join(format!("race-{round}-b")),
        );
        let (ra, rb) = tokio::join!(
            causeway_tunnel::enrol::enrol_agent(&ua, &id, &token, &pin, &da),
            causeway_tunnel::enrol::enrol_agent(&ub, &id, &token, &pin, &db),
        );
        let won = [ra.is_ok(), rb.is_ok()];
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {ra:?} {rb:?}"
        );
        let lost = match (ra, rb) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
            _ => unreachable!("exactly one won"),
        };
        assert!(
            lost.to_string().contains("already used"),
            "round {round}: {lost}"
        );
    }

    let conflicts: usize = [&a, &b]
        .iter()
        .map(|s| {
            s.proc
                .logs()
                .matches("state Secret changed meanwhile")
                .count()
        })
        .sum();
    eprintln!("compare-and-swap conflicts in the race: {conflicts}");

    // `user add` against the hub: kubectl through the active stub.
    let alice = user_add_in(
        &store,
        d,
        "alice",
        "dev",
        "tb-*",
        &format!("https://{}", active.users),
    );
    wait_for(
        "alice through the active stub",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || kubectl_via(member, &alice, active, &["get", "pods", "-n", "default"]),
    );
    assert!(kubectl_via(member, &alice, standby, &["get", "pods"]).is_err());

    // An AccessPolicy in the hub: carol (recorded for another cluster only) is refused on
    // tb-a, then may read but not write there; a broken policy is refused with a status.
    let carol = user_add_in(
        &store,
        d,
        "carol",
        "dev",
        "tb-z",
        &format!("https://{}", active.users),
    );
    wait_for(
        "carol refused on tb-a (403)",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || match kubectl_via(member, &carol, active, &["get", "pods"]) {
            Err(e) if e.contains("Forbidden") || e.contains("403") || e.contains("no access") => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    );
    k.apply(&format!(
        "apiVersion: causeway.dev/v1alpha1
kind: AccessPolicy
metadata: {{name: carol-reads, namespace: {NS}}}
spec:
  rules:
  - subjects: {{users: [carol]}}
    clusters: [tb-a]
    readOnly: true
---
apiVersion: causeway.dev/v1alpha1
kind: AccessPolicy
metadata: {{name: broken, namespace: {NS}}}
spec:
  rules:
  - subjects: {{users: [carol]}}
    clusters: [\"Not_A_Glob\"]
"
    ));
    let t0 = Instant::now();
    wait_for(
        "carol may read tb-a",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || kubectl_via(member, &carol, active, &["get", "pods", "-n", "default"]),
    );
    eprintln!("AccessPolicy in effect after {:?}", t0.elapsed());
    let err = kubectl_via(
        member,
        &carol,
        active,
        &["create", "configmap", "carol-cm", "-n", "default"],
    )
    .expect_err("a read-only rule let carol write");
    assert!(err.contains("read-only access to cluster"), "{err}");
    let r = user_client(&carol, active.users, b"http/1.1")
        .send_blocking(
            http::Method::POST,
            "/clusters/tb-a/api/v1/namespaces/default/configmaps",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"carol-cm"}}"#,
        )
        .expect("the stub answers");
    assert_eq!(r.status, 403, "{}", r.text());
    let status = |name: &str| {
        k.get(&[
            "accesspolicy",
            name,
            "-n",
            NS,
            "-o",
            "jsonpath={.status.conditions[0].status}/{.status.conditions[0].message}",
        ])
    };
    wait_for(
        "AccessPolicy statuses written",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let (good, bad) = (status("carol-reads"), status("broken"));
            if good.starts_with("True/") && bad.starts_with("False/") {
                Ok(())
            } else {
                Err(format!("carol-reads {good:?}, broken {bad:?}"))
            }
        },
    );
    let bad = status("broken");
    assert!(
        bad.contains("hub:causeway-prod-stub/accesspolicies/broken") && bad.contains("clusters[0]"),
        "{bad}"
    );

    // The scheduler's identity, made by the active stub: it works through the stub.
    let identity = wait_for(
        "the scheduler identity Secret",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || secret_key(&k, "causeway-scheduler-identity", "scheduler.kubeconfig").ok_or("absent"),
    );
    let sched_kc: PathBuf = d.join("scheduler.kubeconfig");
    std::fs::write(&sched_kc, &identity).unwrap();
    let kc_text = String::from_utf8_lossy(&identity);
    assert!(
        kc_text.contains(&format!("server: {users_url}/clusters/")),
        "{kc_text}"
    );
    let whoami = wait_for(
        "the scheduler's kubeconfig through the stub",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            kubectl_via(
                member,
                &sched_kc,
                active,
                &[
                    "auth",
                    "whoami",
                    "-o",
                    "jsonpath={.status.userInfo.username}",
                ],
            )
        },
    );
    assert_eq!(whoami.trim(), "causeway-scheduler");

    // The active stub dies: the standby takes over by the Lease; the same credentials work.
    active.proc.kill();
    let t0 = Instant::now();
    wait_for(
        "the standby takes over",
        Duration::from_secs(LEASE_SECONDS * 3 + 10),
        Duration::from_millis(100),
        || {
            if !ready(standby) {
                return Err("not ready".to_owned());
            }
            kubectl_via(member, &alice, standby, &["get", "pods", "-n", "default"])
        },
    );
    eprintln!(
        "failover after SIGKILL: {:?} (lease {LEASE_SECONDS} s)",
        t0.elapsed()
    );
    kubectl_via(member, &carol, standby, &["get", "pods", "-n", "default"]).unwrap();
    kubectl_via(member, &sched_kc, standby, &["auth", "whoami"]).unwrap();

    // `user remove` against the hub: the new active stub refuses alice (its mirror follows
    // the Secret, its user store reloads).
    run_ok(causeway().args(["user", "remove", "alice"]).args(&store));
    let t0 = Instant::now();
    wait_for(
        "alice refused after user remove",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || match kubectl_via(member, &alice, standby, &["get", "pods", "-n", "default"]) {
            Err(e) if e.contains("Unauthorized") || e.contains("revoked") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    eprintln!("user remove in effect after {:?}", t0.elapsed());

    agent.kill();
    standby.proc.terminate();
}
