//! The binaries on this host, run with exactly what the charts install (kwok's pods do not
//! run our binary): `helm install` of `charts/causeway-agent` into a real member cluster,
//! then `causeway agent` with the chart's ServiceAccount (a token from the TokenRequest
//! API), the chart's RBAC and the join token from the chart's Secret. The chart's RBAC is
//! enough for the tunnel and for self-fencing, and an impersonation it does not name is
//! refused by the member.

#[path = "support/helm.rs"]
mod helm_support;
#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::time::Duration;

use causeway_testbed::testing::{Kubectl, run_ok};
use causeway_testbed::{ClusterSpec, Testbed, TestbedOptions, reserve_addresses};
use helm_support::helm;
use tunnel_support::*;

const MEMBER: &str = "ch-a";
const NS: &str = "causeway-system";
const RELEASE: &str = "agent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_with_the_agent_charts_service_account_and_rbac() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::new(MEMBER);
    spec.nodes = 1;
    let mut opts = TestbedOptions::new(vec![spec], dir.path().join("testbed"));
    opts.base_address = reserve_addresses(1);
    let tb = Testbed::up(opts).await.expect("testbed up");
    let c = tb.cluster(MEMBER).unwrap();
    let admin = Kubectl::admin(c);

    // The stub, and a join token for the member.
    let state = dir.path().join("stub-state");
    let stub = start_stub(dir.path(), "stub", &state, None);
    let agents_url = format!("https://{}", stub.agents);
    let (join, ca_hash) = cluster_add(&state, MEMBER, &agents_url);

    // The chart, as a user installs it: alice and her group may be impersonated, bob
    // may not (he is in no list).
    let home = tempfile::tempdir().unwrap();
    run_ok(
        helm(home.path())
            .args([
                "install",
                RELEASE,
                "charts/causeway-agent",
                "-n",
                NS,
                "--create-namespace",
            ])
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(["--set", &format!("cluster={MEMBER}")])
            .args(["--set", &format!("stubUrls={{{agents_url}}}")])
            .args(["--set", &format!("caHash={ca_hash}")])
            .args(["--set", &format!("joinToken.value={join}")])
            .args([
                "--set",
                "impersonation.users={alice,causeway-scheduler,causeway:fencer}",
            ])
            .args([
                "--set",
                "impersonation.groups={dev,causeway:schedulers,system:authenticated}",
            ]),
    );

    // What the chart made: its ServiceAccount, and its join token Secret.
    let sa = admin
        .run(&[
            "get",
            "serviceaccount",
            "-n",
            NS,
            "-l",
            &format!("app.kubernetes.io/instance={RELEASE}"),
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .trim()
        .to_owned();
    assert!(!sa.is_empty(), "the chart made no ServiceAccount");
    let secret = admin
        .run(&[
            "get",
            "secret",
            "-n",
            NS,
            "-l",
            &format!("app.kubernetes.io/instance={RELEASE}"),
            "-o",
            "jsonpath={.items[0].data.join-token}",
        ])
        .trim()
        .to_owned();
    let from_secret = String::from_utf8(decode_base64(&secret)).expect("a UTF-8 token");
    assert_eq!(
        from_secret, join,
        "the chart's Secret holds the join token given"
    );

    // The member's own decision: alice and bob may read pods in `default`.
    admin.apply(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: bob}
",
    );

    // The agent on this host as the chart's ServiceAccount, nothing more.
    let token = dir.path().join("agent.token");
    let t = admin.run(&["create", "token", &sa, "-n", NS, "--duration", "1h"]);
    std::fs::write(&token, t.trim()).unwrap();
    let agent = start_agent(
        dir.path(),
        "agent",
        &agents_url,
        c,
        &token,
        &dir.path().join("agent-state"),
        Some(&(from_secret, ca_hash)),
    );

    let users = format!("https://{}", stub.users);
    let alice = user_add(&state, dir.path(), "alice", "dev", "ch-*", &users);
    let bob = user_add(&state, dir.path(), "bob", "ops", "ch-*", &users);
    wait_authenticated(c, &alice, MEMBER);

    // alice: impersonated under the chart's RBAC, allowed by the member.
    let out = as_user(c, &alice, MEMBER).output(&["get", "pods", "-n", "default"]);
    assert!(
        out.status.success(),
        "alice through the chart's RBAC: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whoami = as_user(c, &alice, MEMBER).run(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(whoami.trim(), "alice");

    // bob: the member lets him read pods, but the chart does not let the agent
    // impersonate him, so the member refuses the request.
    let out = as_user(c, &bob, MEMBER).output(&["get", "pods", "-n", "default"]);
    assert!(
        !out.status.success(),
        "bob got through an impersonation the chart does not allow"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("impersonate"),
        "bob refused for another reason: {err}"
    );

    // Self-fencing under the chart's fencer RBAC: it may list role Leases and scale
    // Deployments, and nothing like Secrets.
    let can = |verb_res: &[&str]| {
        let mut args = vec!["auth", "can-i"];
        args.extend_from_slice(verb_res);
        args.extend_from_slice(&["--as", "causeway:fencer", "-A"]);
        admin.output(&args).status.success()
    };
    assert!(can(&["list", "leases.coordination.k8s.io"]));
    assert!(can(&["patch", "deployments.apps"]));
    assert!(!can(&["get", "secrets"]));
    // The agent's fence loop runs (every 1 s) without being refused.
    std::thread::sleep(Duration::from_secs(3));
    let log = agent.logs();
    assert!(
        !log.contains("forbidden"),
        "the agent was refused something:\n{log}"
    );
    assert!(agent.alive(), "the agent exited:\n{log}");
    drop(tb);
}

/// Standard base64 (Kubernetes Secret data) → bytes.
fn decode_base64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for b in s.bytes().filter(|b| *b != b'=') {
        let v = ALPHABET.iter().position(|a| *a == b).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
