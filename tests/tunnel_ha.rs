//! Stub failover through a `coordination.k8s.io/v1` Lease in a hub cluster (the
//! testbed's `tb-b`): one active stub, the standby refuses users and reports not
//! ready; when the active stub stops (SIGTERM releases the Lease, SIGKILL lets it
//! expire) the standby takes over, and agents reach a restarted stub within 5 s.

#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::path::Path;
use std::time::{Duration, Instant};

use causeway_testbed::ClusterInfo;
use causeway_testbed::testing::{Kubectl, wait_for};
use tunnel_support::*;

const LEASE_SECONDS: u64 = 3;

fn lease_block(hub: &ClusterInfo, identity: &str) -> String {
    format!(
        "  lease:\n    kubeconfig: {}\n    namespace: default\n    name: causeway-stub-ha\n    durationSeconds: {LEASE_SECONDS}\n    identity: {identity}\n",
        hub.kubeconfig.display()
    )
}

fn start(dir: &Path, name: &str, state: &Path, hub: &ClusterInfo, ports: Option<[u16; 3]>) -> Stub {
    let mut s = start_stub(dir, name, state, Some(&lease_block(hub, name)));
    if let Some(p) = ports {
        // Restart on the same ports: stop the one on port 0 and start with overrides.
        s.proc.kill();
        let config = dir.join(format!("{name}.yaml"));
        let log = dir.join(format!("{name}-restarted.log"));
        let flags = ["--listen-users", "--listen-agents", "--listen-metrics"];
        let extra: Vec<String> = flags
            .iter()
            .zip(p)
            .flat_map(|(flag, port)| [flag.to_string(), format!("127.0.0.1:{port}")])
            .collect();
        s = Stub::start(&config, state, &extra, &log);
    }
    s
}

fn ready(s: &Stub) -> bool {
    http_get(s.metrics, "/readyz").0 == 200
}

/// Waits until `f` holds (polling every 50 ms), panicking after `within`; the time it
/// took.
fn wait_until(what: &str, within: Duration, f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    wait_for(what, within, Duration::from_millis(50), f);
    t0.elapsed()
}

fn sessions(s: &Stub, cluster: &str) -> u64 {
    let body = http_get(s.metrics, "/sessions").1;
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v[cluster].as_u64())
        .unwrap_or(0)
}

fn get_pods(member: &ClusterInfo, kubeconfig: &Path, stub: &Stub) -> Result<(), String> {
    let out = as_user(member, kubeconfig, "tb-a").output(&[
        "--server",
        &format!("https://{}/clusters/tb-a", stub.users),
        "get",
        "pods",
        "-n",
        "default",
    ]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_failover_between_two_stubs() {
    let tb = causeway_testbed::shared().await;
    let (member, hub) = (tb.cluster("tb-a").unwrap(), tb.cluster("tb-b").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let token = member_token(member, dir.path());
    let state = dir.path().join("stub-state");

    let a = start(dir.path(), "stub-a", &state, hub, None);
    wait_until("stub-a active", Duration::from_secs(20), || ready(&a));
    let b = start(dir.path(), "stub-b", &state, hub, None);
    let a_ports = [a.users.port(), a.agents.port(), a.metrics.port()];

    let urls = format!("https://{},https://{}", a.agents, b.agents);
    let join = cluster_add(&state, "tb-a", &format!("https://{}", a.agents));
    let agent = start_agent(
        dir.path(),
        "agent",
        &urls,
        member,
        &token,
        &dir.path().join("agent"),
        Some(&join),
    );
    agent.wait_lines("session established", 4, Duration::from_secs(30));
    let alice = add_alice(&state, dir.path(), a.users, member);

    // One active stub: the standby is not ready and refuses users with 503.
    std::thread::sleep(Duration::from_secs(LEASE_SECONDS));
    assert!(ready(&a), "stub-a lost the lease");
    assert!(!ready(&b), "stub-b is ready while stub-a holds the lease");
    let err = get_pods(member, &alice, &b).unwrap_err();
    assert!(
        err.contains("standby") || err.contains("ServiceUnavailable") || err.contains("503"),
        "{err}"
    );
    get_pods(member, &alice, &a).unwrap();
    let holder = Kubectl::admin(hub).get(&[
        "lease",
        "causeway-stub-ha",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "stub-a");

    // Graceful stop releases the Lease: stub-b serves within 5 s, with agents already there.
    a.proc.terminate();
    let took = wait_until("stub-b takes over", Duration::from_secs(5), || {
        ready(&b) && get_pods(member, &alice, &b).is_ok()
    });
    eprintln!("failover after SIGTERM: {took:?}");
    assert!(sessions(&b, "tb-a") >= 1);

    // stub-a comes back on its old ports as standby; the agent reconnects within 5 s.
    let a = start(dir.path(), "stub-a", &state, hub, Some(a_ports));
    let back = wait_until("agent back on stub-a", Duration::from_secs(5), || {
        sessions(&a, "tb-a") >= 1
    });
    eprintln!("agent reconnected to the restarted stub in {back:?}");
    assert!(
        !ready(&a),
        "restarted stub-a must be standby while stub-b holds the lease"
    );

    // A crash (SIGKILL) leaves the Lease to expire: stub-a takes over after it.
    b.proc.kill();
    let took = wait_until(
        "stub-a takes over after the lease expires",
        Duration::from_secs(LEASE_SECONDS * 3 + 5),
        || ready(&a) && get_pods(member, &alice, &a).is_ok(),
    );
    eprintln!("failover after SIGKILL: {took:?} (lease {LEASE_SECONDS} s)");
    agent.kill();
    a.proc.terminate();
}
