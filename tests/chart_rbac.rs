//! The binaries on this host, run with exactly what the charts install (kwok's pods do not
//! run our binary):
//! - `helm install` of `charts/causeway-agent` into a real member cluster, then `causeway
//!   agent` with the chart's ServiceAccount (a token from the TokenRequest API), the chart's
//!   RBAC and the join token from the chart's Secret: the chart's RBAC is enough for the
//!   tunnel and for self-fencing, and an impersonation it does not name is refused;
//! - `helm install` of `charts/causeway-hub` (production mode) into a real hub cluster, then
//!   the stub, dns and scheduler with the config files of the chart's ConfigMaps (only
//!   addresses and paths changed for this host) and each part's own ServiceAccount token
//!   and Role: the stub keeps its state in the hub's Secrets and makes the scheduler's
//!   identity, the scheduler places a policy the chart rendered as a custom resource
//!   through the tunnel and writes its status and Placement, dns answers from that
//!   Placement, and no part is refused anything; each ServiceAccount can do no more than
//!   its part needs.

#[path = "support/helm.rs"]
mod helm_support;
#[path = "support/scheduler.rs"]
mod scheduler_support;
#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_testbed::ClusterInfo;
use causeway_testbed::testing::{Kubectl, Spawn, run_ok, wait_for};
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
    let bob = user_add(&state, dir.path(), "bob", "dev", "ch-*", &users);
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

const SHARED_MEMBER: &str = "ch-id";
const SHARED_RELEASE: &str = "shared";

/// `helm install` of the agent chart with a join token and its defaults (two replicas,
/// `identity.shared`), then two agents on this host as the chart's Deployment runs them
/// (its args and env, the join token from its Secret, its ServiceAccount's token), each
/// with its own empty state directory: one enrols, the other is refused the used token
/// and takes the identity from the Secret the first made; both hold sessions, kubectl
/// through the stub works, and still does after one agent is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agent_replicas_share_the_identity_one_join_token_bought() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::new(SHARED_MEMBER);
    spec.nodes = 1;
    let mut opts = TestbedOptions::new(vec![spec], dir.path().join("testbed"));
    opts.base_address = reserve_addresses(1);
    let tb = Testbed::up(opts).await.expect("testbed up");
    let c = tb.cluster(SHARED_MEMBER).unwrap();
    let admin = Kubectl::admin(c);

    let state = dir.path().join("stub-state");
    let stub = start_stub(dir.path(), "stub", &state, None);
    let agents_url = format!("https://{}", stub.agents);
    let (join, ca_hash) = cluster_add(&state, SHARED_MEMBER, &agents_url);

    // The chart with its defaults: 2 replicas, no identity.existingSecret.
    let home = tempfile::tempdir().unwrap();
    run_ok(
        helm(home.path())
            .args([
                "install",
                SHARED_RELEASE,
                "charts/causeway-agent",
                "-n",
                NS,
                "--create-namespace",
            ])
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(["--set", &format!("cluster={SHARED_MEMBER}")])
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

    // The Deployment as installed: its container's args and env.
    let deployment = admin
        .json(&[
            "get",
            "deployment",
            "-n",
            NS,
            "-l",
            &format!("app.kubernetes.io/instance={SHARED_RELEASE}"),
        ])
        .expect("the Deployment");
    let deployment = &deployment["items"][0];
    assert_eq!(deployment["spec"]["replicas"], 2, "the chart's default");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let chart_args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string arg").to_owned())
        .collect();
    let arg_after = |flag: &str| {
        chart_args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| chart_args.get(i + 1))
            .unwrap_or_else(|| panic!("the chart's args have no {flag}: {chart_args:?}"))
            .clone()
    };
    let identity_secret = arg_after("--identity-secret");
    let sessions: u64 = arg_after("--sessions").parse().expect("--sessions N");
    // Its env, the join token resolved from the Secret it names.
    let mut env = Vec::new();
    for e in container["env"].as_array().expect("env") {
        let name = e["name"].as_str().expect("a name").to_owned();
        let value = match e["value"].as_str() {
            Some(v) => v.to_owned(),
            None => {
                let r = &e["valueFrom"]["secretKeyRef"];
                let s = admin
                    .json(&[
                        "get",
                        "secret",
                        r["name"].as_str().expect("secretKeyRef.name"),
                        "-n",
                        NS,
                    ])
                    .expect("the Secret of the env");
                let b64 = s["data"][r["key"].as_str().expect("key")]
                    .as_str()
                    .expect("the key")
                    .to_owned();
                String::from_utf8(decode_base64(&b64)).expect("UTF-8")
            }
        };
        env.push((name, value));
    }
    assert!(
        env.iter()
            .any(|(n, v)| n == "CAUSEWAY_JOIN_TOKEN" && *v == join),
        "the chart passes the join token: {env:?}"
    );
    let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("a ServiceAccount")
        .to_owned();

    // Least privilege of the shared identity: this one Secret, and create.
    assert!(sa_can(
        &admin,
        &sa,
        "get",
        &format!("secret/{identity_secret}")
    ));
    assert!(sa_can(
        &admin,
        &sa,
        "update",
        &format!("secret/{identity_secret}")
    ));
    assert!(sa_can(&admin, &sa, "create", "secrets"));
    assert!(!sa_can(&admin, &sa, "get", "secret/another"));
    assert!(!sa_can(&admin, &sa, "list", "secrets"));
    assert!(!sa_can(
        &admin,
        &sa,
        "delete",
        &format!("secret/{identity_secret}")
    ));

    admin.apply(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}
",
    );

    // Two agents as the chart runs them, racing: the pod's state directory and listen
    // address swapped for this host's, the pod's in-cluster config for a kubeconfig of
    // the same API server in the release's namespace and the ServiceAccount's token.
    let kubeconfig = service_account_kubeconfig(c, &sa, dir.path());
    let token = dir.path().join("agent.token");
    let t = admin.run(&["create", "token", &sa, "-n", NS, "--duration", "1h"]);
    std::fs::write(&token, t.trim()).unwrap();
    let start = |name: &str| {
        let state_dir = dir.path().join(format!("{name}-state"));
        let mut args = chart_args.clone();
        let at = |args: &[String], flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
                + 1
        };
        let i = at(&args, "--state-dir");
        args[i] = state_dir.display().to_string();
        let i = at(&args, "--metrics-listen");
        args[i] = "127.0.0.1:0".into();
        let mut spawn = Spawn::causeway(BIN)
            .args(&args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--token-file")
            .arg(&token)
            .name(name)
            .log_file(dir.path().join(format!("{name}.log")));
        for (k, v) in &env {
            spawn = spawn.env(k, v);
        }
        (spawn.start(), state_dir)
    };
    let (a, a_state) = start("agent-a");
    let (b, b_state) = start("agent-b");
    let a_metrics = a
        .wait_listening(&["metrics"], Duration::from_secs(60))
        .addr("metrics");
    let b_metrics = b
        .wait_listening(&["metrics"], Duration::from_secs(60))
        .addr("metrics");
    for (p, m) in [(&a, a_metrics), (&b, b_metrics)] {
        wait_for(
            &format!("{} ready (a session to the stub)", p.name()),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || match http_get(m, "/readyz").0 {
                200 => Ok(()),
                s => Err(format!("/readyz {s}\n{}", p.log_tail(10))),
            },
        );
    }
    let stub_sessions = || {
        serde_json::from_str::<serde_json::Value>(&http_get(stub.metrics, "/sessions").1)
            .ok()
            .and_then(|v| v[SHARED_MEMBER].as_u64())
            .unwrap_or(0)
    };
    wait_for(
        "2 agents × --sessions at the stub",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || match stub_sessions() {
            n if n == 2 * sessions => Ok(()),
            n => Err(format!("{n} sessions")),
        },
    );

    // Exactly one enrolment: one log says so, the stub issued one certificate, and
    // both agents hold the same one, which is the Secret's.
    let enrolled: Vec<&str> = [&a, &b]
        .into_iter()
        .filter(|p| p.logs().contains("enrolled with the stub"))
        .map(|p| p.name())
        .collect();
    assert_eq!(enrolled.len(), 1, "agents that enrolled: {enrolled:?}");
    let other = if enrolled[0] == a.name() { &b } else { &a };
    let took = other
        .logs()
        .lines()
        .filter(|l| {
            l.contains("already used")
                || l.contains("identity found in the Secret")
                || l.contains("identity read from the Secret")
        })
        .map(str::to_owned)
        .collect::<Vec<_>>();
    eprintln!(
        "{} enrolled; {}:\n{}",
        enrolled[0],
        other.name(),
        took.join("\n")
    );
    assert!(
        took.iter()
            .any(|l| l.contains("from the Secret") || l.contains("found in the Secret")),
        "{} did not take the identity from the Secret:\n{}",
        other.name(),
        other.logs()
    );
    let clusters = std::fs::read_to_string(state.join("clusters.yaml")).expect("clusters.yaml");
    let issued: serde_json::Value = serde_yaml_ng::from_str(&clusters).expect("YAML");
    let serials = issued["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == SHARED_MEMBER))
        .and_then(|c| c["agentSerials"].as_array())
        .map_or(0, Vec::len);
    assert_eq!(serials, 1, "certificates issued by the stub:\n{clusters}");
    let secret = admin
        .json(&["get", "secret", &identity_secret, "-n", NS])
        .expect("the identity Secret");
    for key in ["agent.crt", "agent.key", "ca.crt"] {
        let in_secret = decode_base64(
            secret["data"][key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} in the Secret")),
        );
        for s in [&a_state, &b_state] {
            assert_eq!(
                std::fs::read(s.join(key)).unwrap_or_else(|e| panic!("{key}: {e}")),
                in_secret,
                "{key} in {} is the Secret's",
                s.display()
            );
        }
    }
    // No key material in the logs.
    let key_pem = String::from_utf8(decode_base64(
        secret["data"]["agent.key"].as_str().expect("agent.key"),
    ))
    .expect("PEM");
    let key_line = key_pem.lines().nth(1).expect("a line of the key");
    for p in [&a, &b] {
        assert!(!p.logs().contains(key_line), "{} logged its key", p.name());
        assert!(
            !p.logs().contains("PRIVATE KEY"),
            "{} logged a key",
            p.name()
        );
    }

    // kubectl through the stub reaches the member.
    let users = format!("https://{}", stub.users);
    let alice = user_add(&state, dir.path(), "alice", "dev", "ch-*", &users);
    wait_authenticated(c, &alice, SHARED_MEMBER);
    let get_pods = || as_user(c, &alice, SHARED_MEMBER).output(&["get", "pods", "-n", "default"]);
    let out = get_pods();
    assert!(
        out.status.success(),
        "alice through two agents: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One agent gone: its sessions drop and kubectl keeps working through the other.
    a.kill();
    wait_for(
        "the killed agent's sessions dropped",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || match stub_sessions() {
            n if n == sessions => Ok(()),
            n => Err(format!("{n} sessions")),
        },
    );
    for _ in 0..5 {
        let out = get_pods();
        assert!(
            out.status.success(),
            "alice with one agent left: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(b.alive(), "agent-b exited:\n{}", b.logs());
    let log = b.logs();
    assert!(
        !log.contains("forbidden"),
        "agent-b was refused something:\n{log}"
    );

    // A replica that finds no Secret enrols, is refused the used token, and waits for
    // the Secret (the enrolled replica has not stored it yet): here it is deleted, and
    // put back from agent-b's state directory while agent-c waits.
    admin.run(&["delete", "secret", &identity_secret, "-n", NS]);
    let (c_agent, c_state) = start("agent-c");
    c_agent.wait_line("the join token was already used", Duration::from_secs(30));
    let from = |key: &str| format!("--from-file={key}={}", b_state.join(key).display());
    admin.run(&[
        "create",
        "secret",
        "generic",
        &identity_secret,
        "-n",
        NS,
        &from("agent.crt"),
        &from("agent.key"),
        &from("ca.crt"),
    ]);
    c_agent.wait_line("identity found in the Secret", Duration::from_secs(30));
    let c_metrics = c_agent
        .wait_listening(&["metrics"], Duration::from_secs(30))
        .addr("metrics");
    wait_for(
        "agent-c ready",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || match http_get(c_metrics, "/readyz").0 {
            200 => Ok(()),
            s => Err(format!("/readyz {s}\n{}", c_agent.log_tail(10))),
        },
    );
    assert_eq!(
        std::fs::read(c_state.join("agent.crt")).unwrap(),
        std::fs::read(b_state.join("agent.crt")).unwrap(),
        "agent-c uses the shared certificate"
    );
    assert!(
        !c_agent.logs().contains("enrolled with the stub"),
        "{}",
        c_agent.logs()
    );
    drop(tb);
}

const HUB: &str = "ch-hub";
const HUB_RELEASE: &str = "hub";
/// The chart's full name for release [`HUB_RELEASE`]: objects are `<it>-stub`, `-dns`, ….
const FULL: &str = "hub-causeway-hub";

/// Hub values: a zone with one GSLB name on the member, and a SpreadPolicy placing
/// `shop/web` there (3 replicas), both rendered by the chart as custom resources.
fn hub_values() -> String {
    format!(
        "stub:
  persistence: {{enabled: false}}
dns:
  zones:
    - name: svc-example
      spec:
        origin: svc.example.
        soa: {{rname: hostmaster.svc.example.}}
        nameservers: [{{name: ns1, addresses: [127.0.0.53]}}]
        gslb:
          - name: web
            ttl: 1
            policy: all-healthy
            targets:
              - {{cluster: {MEMBER}, addresses: [192.0.2.10]}}
scheduler:
  interval: 1s
  lease: {{name: causeway-scheduler, duration: 6s}}
  policies:
    spread:
      - name: web
        spec:
          workload: {{namespace: shop, deployment: web}}
          replicas: 3
          clusters: [{{cluster: {MEMBER}}}]
          dns: {{name: web.svc.example., ttl: 1s}}
"
    )
}

/// A kubeconfig for `c`'s API server as ServiceAccount `sa` of [`NS`] (a TokenRequest
/// token), its context in [`NS`]: what a pod of that ServiceAccount gets in cluster.
fn service_account_kubeconfig(c: &ClusterInfo, sa: &str, dir: &Path) -> PathBuf {
    let admin = Kubectl::admin(c);
    let token = admin.run(&["create", "token", sa, "-n", NS, "--duration", "1h"]);
    let raw = admin
        .json(&["config", "view", "--raw", "--minify"])
        .expect("the admin kubeconfig");
    let cluster = &raw["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().expect("a server");
    let ca = cluster["certificate-authority-data"]
        .as_str()
        .expect("CA data");
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters: [{{name: hub, cluster: {{server: \"{server}\", certificate-authority-data: {ca}}}}}]
users: [{{name: sa, user: {{token: {}}}}}]
contexts: [{{name: hub, context: {{cluster: hub, user: sa, namespace: {NS}}}}}]
current-context: hub
",
            token.trim()
        ),
    )
    .unwrap();
    path
}

/// `data[key]` of ConfigMap `name` in [`NS`] of the hub.
fn config_map(admin: &Kubectl, name: &str, key: &str) -> String {
    let cm = admin
        .json(&["get", "configmap", name, "-n", NS])
        .expect("the ConfigMap");
    cm["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {name}"))
        .to_owned()
}

/// A free port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Replaces `from` with `to` in `text`, which must contain it (the chart changed if not).
fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the chart's config no longer has {from:?}:\n{text}"
    );
    text.replace(from, to)
}

/// Whether ServiceAccount `sa` of [`NS`] may `verb resource` in [`NS`] of the hub.
fn sa_can(admin: &Kubectl, sa: &str, verb: &str, resource: &str) -> bool {
    // `resource` may carry flags after it (`--subresource=status`).
    let who = format!("system:serviceaccount:{NS}:{sa}");
    let mut args = vec!["auth", "can-i", verb];
    args.extend(resource.split(' '));
    args.extend(["-n", NS, "--as", &who]);
    admin.output(&args).status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_runs_with_the_hub_charts_service_accounts_and_rbac() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub_spec = ClusterSpec::new(HUB);
    hub_spec.nodes = 1;
    let member_spec = scheduler_support::spec(MEMBER, "4");
    let mut opts = TestbedOptions::new(vec![hub_spec, member_spec], dir.path().join("testbed"));
    opts.base_address = reserve_addresses(2);
    let tb = Testbed::up(opts).await.expect("testbed up");
    let (hub, member) = (tb.cluster(HUB).unwrap(), tb.cluster(MEMBER).unwrap());
    let hub_admin = Kubectl::admin(hub);
    let home = tempfile::tempdir().unwrap();
    let values = dir.path().join("hub-values.yaml");
    std::fs::write(&values, hub_values()).unwrap();
    run_ok(
        helm(home.path())
            .args([
                "install",
                HUB_RELEASE,
                "charts/causeway-hub",
                "-n",
                NS,
                "--create-namespace",
                "-f",
            ])
            .arg(&values)
            .arg("--kubeconfig")
            .arg(&hub.kubeconfig),
    );

    // Least privilege, as the chart's Roles say.
    let (stub_sa, dns_sa, sched_sa) = (
        format!("{FULL}-stub"),
        format!("{FULL}-dns"),
        format!("{FULL}-scheduler"),
    );
    assert!(sa_can(&hub_admin, &dns_sa, "watch", "zones.causeway.dev"));
    assert!(sa_can(
        &hub_admin,
        &dns_sa,
        "patch",
        "zones.causeway.dev --subresource=status"
    ));
    assert!(
        !sa_can(&hub_admin, &dns_sa, "patch", "zones.causeway.dev"),
        "dns may change zones"
    );
    assert!(
        !sa_can(&hub_admin, &dns_sa, "get", "secrets"),
        "dns may read Secrets"
    );
    assert!(!sa_can(
        &hub_admin,
        &dns_sa,
        "create",
        "placements.causeway.dev"
    ));
    assert!(sa_can(
        &hub_admin,
        &sched_sa,
        "create",
        "placements.causeway.dev"
    ));
    assert!(
        !sa_can(&hub_admin, &sched_sa, "get", "secrets"),
        "the scheduler may read Secrets"
    );
    assert!(!sa_can(
        &hub_admin,
        &sched_sa,
        "watch",
        "zones.causeway.dev"
    ));
    assert!(sa_can(
        &hub_admin,
        &stub_sa,
        "get",
        "secrets/causeway-stub-state"
    ));
    assert!(
        !sa_can(&hub_admin, &stub_sa, "get", "secrets/other"),
        "the stub may read any Secret"
    );
    assert!(!sa_can(
        &hub_admin,
        &stub_sa,
        "watch",
        "burstpolicies.causeway.dev"
    ));

    // The stub: the chart's stub.yaml with this host's addresses and a private state dir.
    let (users_port, agents_port) = (free_port(), free_port());
    let mut stub_yaml = config_map(&hub_admin, &format!("{FULL}-stub"), "stub.yaml");
    stub_yaml = swap(
        &stub_yaml,
        "/var/lib/causeway/stub/audit.log",
        &dir.path().join("audit.log").display().to_string(),
    );
    stub_yaml = swap(
        &stub_yaml,
        "/var/lib/causeway/stub",
        &dir.path().join("stub-state").display().to_string(),
    );
    stub_yaml = swap(
        &stub_yaml,
        "0.0.0.0:6443",
        &format!("127.0.0.1:{users_port}"),
    );
    stub_yaml = swap(
        &stub_yaml,
        "0.0.0.0:7443",
        &format!("127.0.0.1:{agents_port}"),
    );
    stub_yaml = swap(&stub_yaml, "0.0.0.0:9443", "127.0.0.1:0");
    let stub_kc = service_account_kubeconfig(hub, &stub_sa, dir.path());
    stub_yaml = swap(
        &stub_yaml,
        "/etc/causeway/in-cluster/in-cluster.kubeconfig",
        &stub_kc.display().to_string(),
    );
    let stub_config = dir.path().join("stub.yaml");
    std::fs::write(&stub_config, stub_yaml).unwrap();
    let users_url = format!("https://127.0.0.1:{users_port}");
    let stub = Spawn::causeway(BIN)
        .args(["stub", "--config"])
        .arg(&stub_config)
        .arg("--hub-kubeconfig")
        .arg(&stub_kc)
        .args(["--users-url", &users_url, "--lease-identity", "stub-0"])
        .name("stub")
        .log_file(dir.path().join("stub.log"))
        .start();
    stub.wait_listening(&["users", "agents", "metrics"], Duration::from_secs(30));

    // The stub made its state and the scheduler's identity in the hub.
    let identity = dir.path().join("scheduler.kubeconfig");
    wait_for(
        "Secret causeway-scheduler-identity",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let s = hub_admin.output(&[
                "get",
                "secret",
                "causeway-scheduler-identity",
                "-n",
                NS,
                "-o",
                "jsonpath={.data.scheduler\\.kubeconfig}",
            ]);
            let b64 = String::from_utf8_lossy(&s.stdout).trim().to_owned();
            if s.status.success() && !b64.is_empty() {
                std::fs::write(&identity, decode_base64(&b64)).unwrap();
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&s.stderr).into_owned())
            }
        },
    );
    hub_admin.run(&["get", "secret", "causeway-stub-state", "-n", NS]);

    // Enrol the member with the CLI as the stub's ServiceAccount (as `kubectl exec` into
    // the stub's pod would), then the agent chart and the agent as in the other test.
    let agents_url = format!("https://127.0.0.1:{agents_port}");
    let out = run_ok(
        causeway()
            .args(["cluster", "add", MEMBER, "--stub-url", &agents_url])
            .arg("--hub-kubeconfig")
            .arg(&stub_kc),
    );
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    let (join, ca_hash) = (field("token:"), field("ca-hash:"));
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
            .arg(&member.kubeconfig)
            .args(["--set", &format!("cluster={MEMBER}")])
            .args(["--set", &format!("stubUrls={{{agents_url}}}")])
            .args(["--set", &format!("caHash={ca_hash}")])
            .args(["--set", &format!("joinToken.value={join}")]),
    );
    let member_admin = Kubectl::admin(member);
    member_admin.apply(
        &std::fs::read_to_string(helm_support::root().join("examples/scheduler/member-rbac.yaml"))
            .unwrap(),
    );
    member_admin.apply(&scheduler_support::source_deployment(1));
    let agent_sa = member_admin
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
    let token = dir.path().join("agent.token");
    std::fs::write(
        &token,
        member_admin
            .run(&["create", "token", &agent_sa, "-n", NS, "--duration", "1h"])
            .trim(),
    )
    .unwrap();
    let agent = start_agent(
        dir.path(),
        "agent",
        &agents_url,
        member,
        &token,
        &dir.path().join("agent-state"),
        Some(&(join, ca_hash)),
    );

    // dns and the scheduler: the chart's files, this host's addresses, their own tokens.
    let mut dns_yaml = config_map(&hub_admin, &format!("{FULL}-dns"), "dns.yaml");
    dns_yaml = swap(&dns_yaml, "0.0.0.0:5353", "127.0.0.1:0");
    dns_yaml = swap(&dns_yaml, "0.0.0.0:8053", "127.0.0.1:0");
    let dns_config = dir.path().join("dns.yaml");
    std::fs::write(&dns_config, dns_yaml).unwrap();
    let dns_kc = service_account_kubeconfig(hub, &dns_sa, dir.path());
    let (dns, dns_udp, _api) = scheduler_support::start_dns_with(
        dir.path(),
        "dns",
        &dns_config,
        &[
            "--hub-kubeconfig",
            &dns_kc.display().to_string(),
            "--lease-identity",
            "dns-0",
        ],
    );
    let mut sched_yaml = config_map(&hub_admin, &format!("{FULL}-scheduler"), "scheduler.yaml");
    sched_yaml = swap(
        &sched_yaml,
        "/etc/causeway/stub-identity/scheduler.kubeconfig",
        &identity.display().to_string(),
    );
    sched_yaml = swap(&sched_yaml, "0.0.0.0:9470", "127.0.0.1:0");
    let sched_config = dir.path().join("scheduler.yaml");
    std::fs::write(&sched_config, sched_yaml).unwrap();
    let sched_kc = service_account_kubeconfig(hub, &sched_sa, dir.path());
    let scheduler = Spawn::causeway(BIN)
        .args(["scheduler", "--config"])
        .arg(&sched_config)
        .arg("--hub-kubeconfig")
        .arg(&sched_kc)
        .args([
            "--lease-name",
            "causeway-scheduler",
            "--lease-duration",
            "6s",
            "--lease-identity",
            "scheduler-0",
        ])
        .name("scheduler")
        .log_file(dir.path().join("scheduler.log"))
        .start();

    // The SpreadPolicy the chart rendered: 3 replicas in the member, through the tunnel.
    wait_for(
        "shop/web scaled to 3 in the member",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || match scheduler_support::deployment(member) {
            Some((3, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // Its status and Placement in the hub, and dns answering from it.
    wait_for(
        "SpreadPolicy web Accepted with a decision",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let p = hub_admin
                .json(&["get", "spreadpolicy", "web", "-n", NS])
                .map_err(|e| e.to_string())?;
            let ok = p["status"]["conditions"][0]["status"] == "True"
                && p["status"]["decision"].is_object();
            if ok {
                Ok(())
            } else {
                Err(p["status"].to_string())
            }
        },
    );
    hub_admin.run(&["get", "placement", "web.svc.example", "-n", NS]);
    wait_for(
        "dns answers web from the placement",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let a = scheduler_support::dig_name(dns_udp, "web.svc.example.");
            if a == ["192.0.2.10"] {
                Ok(())
            } else {
                Err(format!("{a:?}"))
            }
        },
    );

    // Nobody was refused anything on the way.
    for p in [&stub, &dns, &scheduler, &agent] {
        let log = p.logs();
        assert!(
            !log.contains("forbidden") && !log.contains(" 403"),
            "{} was refused:\n{log}",
            p.name()
        );
        assert!(p.alive(), "{} exited:\n{log}", p.name());
    }
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
