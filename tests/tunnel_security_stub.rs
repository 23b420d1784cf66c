//! The tunnel's security end to end: the built `causeway` binary as stub and agent in
//! front of a real kube-apiserver (testbed cluster `tb-a`), real kubectl and curl as
//! clients, real TLS throughout.
//!
//! Shown: the member cluster sees the stub's user through impersonation (`kubectl
//! auth whoami` says alice; RBAC there lets alice list pods in `team-a` and not in
//! `team-b`), and the stub refuses: no certificate, a certificate from another CA, an
//! expired certificate, a removed user, a wrong bearer token, a cluster the user may
//! not reach, client impersonation (`kubectl --as`), CR/LF in a certificate's name,
//! `/clusters/a/../b/…` and encoded-slash/dot tricks, and writes by a read-only user.
//! Refusals are `metav1.Status` JSON; every request lands in the audit log with the
//! Audit-ID the member cluster used too.
//!
//! Needs the testbed binaries (`testbed/build-bins.sh`), `curl` and `openssl`
//! (`apt-get install -y curl openssl`).

#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use causeway_testbed::ClusterInfo;
use causeway_testbed::testing::{
    Curl, KubeconfigCredentials, Kubectl, Spawn, require_tools, run_ok as ok, wait_for_async,
    write_identity,
};
use tunnel_support::*;

/// The refusal body must be a metav1.Status with this code; returns its message.
fn status_message(body: &str, code: u16) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a Status JSON ({e}): {body}"));
    assert_eq!(v["kind"], "Status", "{body}");
    assert_eq!(v["status"], "Failure", "{body}");
    assert_eq!(v["code"], code, "{body}");
    v["message"].as_str().unwrap_or_default().to_owned()
}

/// A client certificate and key in files.
type ClientCert = (PathBuf, PathBuf);

/// `curl` GET against the stub trusting `ca`, with an optional client certificate and
/// extra headers. Returns (HTTP code, body, response headers); code 0 when there was no
/// HTTP answer (the TLS handshake failed).
fn stub_curl(
    url: &str,
    ca: &Path,
    cert: Option<&ClientCert>,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut curl = Curl::get(url).cacert(ca);
    if let Some((cert, key)) = cert {
        curl = curl.identity(cert, key);
    }
    for (k, v) in headers {
        curl = curl.header(k, v);
    }
    let r = curl.send();
    (r.code, r.body, r.headers)
}

/// Signs a client certificate with the stub CA using openssl, with a subject CN that
/// may hold any bytes (the CA refuses to issue such names itself).
fn openssl_cert(dir: &Path, name: &str, cn: &str, state: &Path) -> ClientCert {
    let cnf = dir.join(format!("{name}.cnf"));
    std::fs::write(
        &cnf,
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = $ENV::CW_CN\n[ext]\nextendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.crt"));
    ok(Command::new("openssl")
        .env("CW_CN", cn)
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .arg("-config")
        .arg(&cnf));
    ok(Command::new("openssl")
        .env("CW_CN", cn)
        .args(["x509", "-req", "-days", "1", "-extensions", "ext"])
        .arg("-extfile")
        .arg(&cnf)
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(state.join("ca.crt"))
        .arg("-CAkey")
        .arg(state.join("ca.key"))
        .arg("-set_serial")
        .arg("4242")
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

/// kubectl with its own discovery cache next to the kubeconfig, so runs do not share
/// (or depend on) `~/.kube/cache`.
fn kubectl(c: &ClusterInfo, kubeconfig: &Path) -> Command {
    Kubectl::with_kubeconfig(c, kubeconfig)
        .arg("--cache-dir")
        .arg(kubeconfig.with_extension("cache"))
        .cmd()
}

/// Runs kubectl and returns (success, stdout, stderr).
fn try_kubectl(cmd: &mut Command) -> (bool, String, String) {
    let out = causeway_testbed::testing::run(cmd);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A pod in team-a; alice may exec into it, erin and rita may only read pods.
const EXEC_RBAC_AND_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a}
spec:
  containers: [{name: web, image: registry.invalid/web:1}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-exec, namespace: team-a}
rules:
- apiGroups: [""]
  resources: [pods/exec]
  verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-execs, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-exec}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: erin-and-rita-read-pods, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: User, name: erin, apiGroup: rbac.authorization.k8s.io}
- {kind: User, name: rita, apiGroup: rbac.authorization.k8s.io}
"#;

/// Runs `causeway agent` with `args`; it must exit with an error within 30 s.
/// Returns its output.
fn agent_fails(args: &[&std::ffi::OsStr]) -> String {
    let agent = Spawn::causeway(BIN).arg("agent").args(args).start();
    let Some(status) = agent.wait_exit(Duration::from_secs(30)) else {
        panic!("agent {args:?} still running after 30 s");
    };
    let err = agent.logs();
    assert!(
        !status.success(),
        "agent {args:?} should have failed: {err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn stub_authenticates_authorizes_impersonates_and_audits() {
    require_tools(&[("curl", "curl"), ("openssl", "openssl")]);
    let tb = causeway_testbed::shared().await;
    let c = tb.cluster("tb-a").expect("cluster tb-a");
    let admin = Kubectl::admin(c);
    admin.apply(MEMBER_RBAC);
    admin.apply(EXEC_RBAC_AND_POD);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let state = dir.join("stub");
    let sa_token_file = dir.join("sa.token");
    std::fs::write(&sa_token_file, agent_token(c, "1h")).unwrap();

    // --- enrol tb-a, add users ---------------------------------------------------
    let added = ok(causeway()
        .args(["cluster", "add", "tb-a", "--state-dir"])
        .arg(&state));
    let field = |name: &str| {
        added
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {added}"))
    };
    let (join_token, ca_hash) = (field("token"), field("ca-hash"));
    ok(causeway()
        .args(["cluster", "add", "tb-b", "--state-dir"])
        .arg(&state));

    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: causeway.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: e2e}\nspec:\n  rules:\n  - subjects: {groups: [token-dev]}\n    clusters: [\"tb-*\"]\n",
    )
    .unwrap();
    let tokens = dir.join("tokens.csv");
    let tom_token = "e2e-token-tom-0123456789abcdef";
    std::fs::write(&tokens, format!("{tom_token},tom,tom-uid,\"token-dev\"\n")).unwrap();
    let audit_log = dir.join("audit.log");

    // --- the stub ----------------------------------------------------------------
    let config = dir.join("stub.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: StubConfig\nmetadata: {{name: e2e}}\nspec:\n  stateDir: {}\n  listen: {{users: \"127.0.0.1:0\", agents: \"127.0.0.1:0\", metrics: \"127.0.0.1:0\"}}\n  serverNames: [localhost, 127.0.0.1]\n  accessPolicy: {}\n  tokenFile: {}\n  audit: {{path: {}, maxBytes: 10485760, keep: 2}}\n",
            state.display(),
            policy.display(),
            tokens.display(),
            audit_log.display()
        ),
    )
    .unwrap();
    let stub = Spawn::causeway(BIN)
        .args(["stub", "--config"])
        .arg(&config)
        .echo()
        .start();
    let listening = stub.wait_listening(&["users", "agents"], Duration::from_secs(60));
    let users_addr = listening.addr("users");
    let agents_addr = listening.addr("agents");
    let base = format!("https://{users_addr}");

    let kc = |name: &str, group: Option<&str>, clusters: &str, extra: &[&str]| {
        let path = dir.join(format!("{name}.kubeconfig"));
        let mut cmd = causeway();
        cmd.args([
            "user",
            "add",
            name,
            "--clusters",
            clusters,
            "--stub-url",
            &base,
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--out")
        .arg(&path)
        .args(extra);
        if let Some(g) = group {
            cmd.args(["--group", g]);
        }
        let out = ok(&mut cmd);
        let token = out
            .lines()
            .find_map(|l| l.strip_prefix("bearer token (shown once): "))
            .map(str::to_owned);
        (path, token)
    };
    let (alice_kc, _) = kc("alice", Some("dev"), "tb-a", &[]);
    let (bob_kc, bob_token) = kc("bob", None, "tb-a", &["--token"]);
    let bob_bearer = format!("Bearer {}", bob_token.expect("bob's token"));
    let (rita_kc, _) = kc("rita", None, "tb-*", &["--read-only"]);
    let (erin_kc, _) = kc("erin", None, "tb-a", &[]);
    let ca = state.join("ca.crt");
    let alice = KubeconfigCredentials::read(&alice_kc).write_identity(dir, "alice");
    let bob = KubeconfigCredentials::read(&bob_kc).write_identity(dir, "bob");

    // --- the agent ---------------------------------------------------------------
    let _agent = Spawn::causeway(BIN)
        .args([
            "agent",
            "--stub",
            &format!("https://{agents_addr}"),
            "--cluster",
            "tb-a",
        ])
        .args(["--token", &join_token, "--ca-hash", &ca_hash])
        .arg("--state-dir")
        .arg(dir.join("agent"))
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--token-file")
        .arg(&sa_token_file)
        .echo()
        .start();

    // Wait until alice reaches tb-a through the tunnel.
    wait_for_async(
        "tb-a reachable through the stub",
        Duration::from_secs(90),
        Duration::from_millis(500),
        async || {
            let (code, body, _) = stub_curl(
                &format!("{base}/clusters/tb-a/version"),
                &ca,
                Some(&alice),
                &[],
            );
            if code == 200 {
                Ok(())
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;

    // --- impersonation seen by the member cluster ---------------------------------
    let (ok_, out, err) = try_kubectl(kubectl(c, &alice_kc).args(["auth", "whoami", "-o", "json"]));
    assert!(ok_, "whoami: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["userInfo"]["username"], "alice", "{out}");
    let groups = v["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("\"dev\"") && !groups.contains("system:masters"),
        "{groups}"
    );

    let (ok_, _, err) = try_kubectl(kubectl(c, &alice_kc).args(["get", "pods", "-n", "team-a"]));
    assert!(ok_, "alice lists pods in team-a: {err}");
    let (ok_, _, err) = try_kubectl(kubectl(c, &alice_kc).args(["get", "pods", "-n", "team-b"]));
    assert!(!ok_, "alice must not list pods in team-b");
    assert!(
        err.contains("Forbidden") && err.contains("User \"alice\" cannot list resource \"pods\""),
        "{err}"
    );

    // --- client impersonation refused --------------------------------------------
    for args in [
        vec!["--as", "admin", "get", "pods", "-n", "team-a"],
        vec![
            "--as",
            "alice",
            "--as-group",
            "system:masters",
            "get",
            "pods",
            "-n",
            "team-b",
        ],
        vec![
            "--as-uid", "0", "--as", "alice", "get", "pods", "-n", "team-a",
        ],
    ] {
        let (ok_, _, err) = try_kubectl(kubectl(c, &alice_kc).args(&args));
        assert!(!ok_, "{args:?} must be refused");
        assert!(
            err.contains("Forbidden")
                && err.contains("impersonation through the Causeway stub is not allowed"),
            "{args:?}: {err}"
        );
    }
    let (code, body, _) = stub_curl(
        &format!("{base}/clusters/tb-a/api/v1/namespaces/team-b/pods"),
        &ca,
        Some(&alice),
        &[("iMpErSoNaTe-GrOuP", "system:masters")],
    );
    assert_eq!(code, 403, "{body}");
    status_message(&body, 403);

    // --- authentication refusals --------------------------------------------------
    let pods = format!("{base}/clusters/tb-a/api/v1/namespaces/team-a/pods");
    let (code, body, _) = stub_curl(&pods, &ca, None, &[]);
    assert_eq!(code, 401, "no credentials: {body}");
    status_message(&body, 401);

    let foreign_dir = dir.join("foreign");
    std::fs::create_dir_all(&foreign_dir).unwrap();
    let foreign_ca = causeway_tunnel::pki::Ca::generate().unwrap();
    let f = foreign_ca
        .issue_user("alice", &["dev".into()], Duration::from_secs(3600))
        .unwrap();
    let foreign = write_identity(dir, "foreign", &f.cert_pem, f.key_pem.expose());
    let (code, body, _) = stub_curl(&pods, &ca, Some(&foreign), &[]);
    assert_eq!(
        code, 0,
        "a cert from another CA must fail the handshake: {code} {body}"
    );

    let real_ca =
        causeway_tunnel::pki::Ca::load(&state.join("ca.crt"), &state.join("ca.key")).unwrap();
    let now = SystemTime::now();
    let e = real_ca
        .issue_user_with_validity(
            "alice",
            &["dev".into()],
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        )
        .unwrap();
    let expired = write_identity(dir, "expired", &e.cert_pem, e.key_pem.expose());
    let (code, body, _) = stub_curl(&pods, &ca, Some(&expired), &[]);
    assert_eq!(
        code, 0,
        "an expired cert must fail the handshake: {code} {body}"
    );

    // A name with CR/LF, signed by the real CA key (the CA itself refuses such names).
    let crlf = openssl_cert(
        dir,
        "crlf",
        "eve\r\nImpersonate-Group: system:masters",
        &state,
    );
    let (code, body, _) = stub_curl(&pods, &ca, Some(&crlf), &[]);
    assert_eq!(code, 401, "CR/LF in the CN: {body}");
    status_message(&body, 401);
    // A well-formed name the stub never issued is refused too.
    let stray = openssl_cert(dir, "stray", "alice", &state);
    let (code, body, _) = stub_curl(&pods, &ca, Some(&stray), &[]);
    assert_eq!(code, 401, "cert not issued by `user add`: {body}");

    // Bearer tokens.
    let (code, body, _) = stub_curl(
        &pods,
        &ca,
        None,
        &[("Authorization", "Bearer e2e-token-tom-0123456789abcdeX")],
    );
    assert_eq!(code, 401, "wrong token: {body}");
    status_message(&body, 401);
    let r = Curl::new(
        "POST",
        &format!("{base}/clusters/tb-a/apis/authentication.k8s.io/v1/selfsubjectreviews"),
    )
    .cacert(&ca)
    .header("Authorization", &format!("Bearer {tom_token}"))
    .json(SELF_SUBJECT_REVIEW)
    .send();
    let (code, body) = (r.code, r.body);
    assert_eq!(code, 201, "tom's token: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"]["userInfo"]["username"], "tom", "{body}");
    assert_eq!(v["status"]["userInfo"]["uid"], "tom-uid", "{body}");

    // Removed user: works, then refused once the stub has reloaded.
    let bob_version = format!("{base}/clusters/tb-a/version");
    assert_eq!(stub_curl(&bob_version, &ca, Some(&bob), &[]).0, 200);
    assert_eq!(
        stub_curl(&bob_version, &ca, None, &[("Authorization", &bob_bearer)]).0,
        200
    );
    ok(causeway()
        .args(["user", "remove", "bob", "--state-dir"])
        .arg(&state));
    let body = wait_for_async(
        "removed user bob refused",
        Duration::from_secs(30),
        Duration::from_millis(500),
        async || {
            let (code, body, _) = stub_curl(&bob_version, &ca, Some(&bob), &[]);
            if code == 401 {
                Ok(body)
            } else {
                Err(format!("bob still gets {code}"))
            }
        },
    )
    .await;
    status_message(&body, 401);
    let (code, body, _) = stub_curl(&bob_version, &ca, None, &[("Authorization", &bob_bearer)]);
    assert_eq!(code, 401, "removed user's token: {body}");

    // --- authorization refusals ---------------------------------------------------
    // `get --raw`: kubectl's discovery step prints "Forbidden: unknown" for a cluster
    // it has never reached, hiding the Status message.
    let (ok_, _, err) = try_kubectl(kubectl(c, &alice_kc).args([
        "--server",
        &format!("{base}/clusters/tb-b"),
        "get",
        "--raw",
        "/api/v1/namespaces/team-a/pods",
    ]));
    assert!(!ok_, "alice may not reach tb-b");
    assert!(
        err.contains("Forbidden") && err.contains("no access to cluster"),
        "{err}"
    );
    let (ok_, _, err) = try_kubectl(kubectl(c, &rita_kc).args([
        "--context",
        "tb-a",
        "create",
        "namespace",
        "rita-was-here",
    ]));
    assert!(!ok_, "read-only rita may not create");
    assert!(err.contains("read-only"), "{err}");

    // --- exec is create, whatever the method (WebSocket exec is a GET) ---------------
    admin.wait(
        &[
            "--for=jsonpath={.status.phase}=Running",
            "pod/web",
            "-n",
            "team-a",
        ],
        Duration::from_secs(90),
    );
    for websockets in ["true", "false"] {
        let exec = |kc: &Path| {
            let mut cmd = kubectl(c, kc);
            cmd.args(["--context", "tb-a", "exec", "-n", "team-a", "web", "--"])
                .args(["sh", "-c", "echo hi from $0", "exec"])
                .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets);
            try_kubectl(&mut cmd)
        };
        let (ok_, out, err) = exec(&alice_kc);
        assert!(ok_, "alice execs (websockets={websockets}): {err}");
        assert_eq!(out.trim(), "hi from exec");
        // Read-only at the stub: refused before the cluster is reached.
        let (ok_, _, err) = exec(&rita_kc);
        assert!(
            !ok_,
            "read-only rita must not exec (websockets={websockets})"
        );
        assert!(err.contains("read-only") && err.contains("create"), "{err}");
        // The member's RBAC sees create on pods/exec for the impersonated erin.
        let (ok_, _, err) = exec(&erin_kc);
        assert!(!ok_, "erin must not exec (websockets={websockets})");
        assert!(
            err.contains("User \"erin\" cannot create resource \"pods/exec\""),
            "{err}"
        );
    }

    // attach and port-forward are create too: refused at the stub for read-only rita.
    for args in [
        vec!["attach", "-n", "team-a", "web"],
        vec!["port-forward", "-n", "team-a", "pod/web", "0:80"],
    ] {
        let mut cmd = kubectl(c, &rita_kc);
        cmd.args(["--context", "tb-a"]).args(&args);
        let (ok_, _, err) = try_kubectl(&mut cmd);
        assert!(!ok_, "read-only rita must not {args:?}");
        assert!(
            err.contains("read-only") && err.contains("create"),
            "{args:?}: {err}"
        );
    }

    // --- path tricks ---------------------------------------------------------------
    for path in [
        "/clusters/tb-b/../tb-a/api/v1/namespaces/team-a/pods",
        "/clusters/tb-a/api/v1/namespaces/team-a/pods/../../../../../clusters/tb-b/api",
        "/clusters/tb-b%2F..%2Ftb-a/api/v1/namespaces/team-a/pods",
        "/clusters/tb-b/%2e%2e/tb-a/api/v1/namespaces/team-a/pods",
        "/clusters/tb-b/%2E%2E%2Ftb-a/api/v1/namespaces/team-a/pods",
        "/clusters/tb-a/api/v1/namespaces/team-a%2Fpods",
        "/clusters/tb-a//api/v1/namespaces/team-a/pods",
    ] {
        let (code, body, _) = stub_curl(&format!("{base}{path}"), &ca, Some(&alice), &[]);
        assert!(code == 400 || code == 404, "{path}: {code} {body}");
        status_message(&body, code);
    }

    // --- enrolment: a token enrols only its cluster, once, from the pinned stub ------
    let again = ok(causeway()
        .args(["cluster", "add", "tb-a", "--state-dir"])
        .arg(&state));
    let fresh_token = again
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .map(|t| t.trim().to_owned())
        .expect("token");
    let agent_url = format!("https://{agents_addr}");
    let enrol = |cluster: &str, token: &str, hash: &str, dir_name: &str| -> String {
        let st = dir.join(dir_name);
        let args: Vec<std::ffi::OsString> = vec![
            "--stub".into(),
            agent_url.clone().into(),
            "--cluster".into(),
            cluster.into(),
            "--token".into(),
            token.into(),
            "--ca-hash".into(),
            hash.into(),
            "--state-dir".into(),
            st.into_os_string(),
            "--kubeconfig".into(),
            c.kubeconfig.clone().into_os_string(),
            "--token-file".into(),
            sa_token_file.clone().into_os_string(),
        ];
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        agent_fails(&args)
    };
    let err = enrol("tb-b", &fresh_token, &ca_hash, "agent-wrong-cluster");
    assert!(
        err.contains("403") && err.contains("another cluster"),
        "{err}"
    );
    let err = enrol("tb-a", &join_token, &ca_hash, "agent-reused-token");
    assert!(err.contains("403") && err.contains("already used"), "{err}");
    let other_pin = causeway_tunnel::pki::Ca::generate()
        .unwrap()
        .pin()
        .to_string();
    let err = enrol("tb-a", &fresh_token, &other_pin, "agent-wrong-pin");
    assert!(err.contains("enrolment"), "{err}");
    assert!(!dir.join("agent-wrong-pin").join("agent.key").exists());
    let err = enrol("tb-a", "cwj_not-a-token", &ca_hash, "agent-bad-token");
    assert!(err.contains("401"), "{err}");
    // tb-a's enrolled agent directory cannot serve as tb-b.
    let err = enrol("tb-b", "unused", &ca_hash, "agent");
    assert!(err.contains("bound to cluster tb-a"), "{err}");

    // --- audit ----------------------------------------------------------------------
    let (code, _, headers) = stub_curl(&pods, &ca, Some(&alice), &[("Audit-ID", "e2e-audit-0042")]);
    assert_eq!(code, 200);
    // The member cluster answers with the Audit-ID it used: ours.
    assert!(headers.contains("audit-id: e2e-audit-0042"), "{headers}");
    let events: Vec<serde_json::Value> = wait_for_async(
        "audit event for e2e-audit-0042",
        Duration::from_secs(10),
        Duration::from_millis(200),
        async || {
            let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
            let events: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let done = events
                .iter()
                .any(|e| e["auditID"] == "e2e-audit-0042" && e["stage"] == "ResponseComplete");
            done.then_some(events)
        },
    )
    .await;
    let done = events
        .iter()
        .find(|e| e["auditID"] == "e2e-audit-0042" && e["stage"] == "ResponseComplete")
        .expect("audit event for e2e-audit-0042");
    assert_eq!(done["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(done["kind"], "Event");
    assert_eq!(done["verb"], "list");
    assert_eq!(done["user"]["username"], "alice");
    assert_eq!(done["objectRef"]["namespace"], "team-a");
    assert_eq!(done["objectRef"]["resource"], "pods");
    assert_eq!(done["responseStatus"]["code"], 200);
    assert_eq!(done["annotations"]["causeway.dev/cluster"], "tb-a");
    assert!(
        events.iter().any(|e| e["responseStatus"]["code"] == 403
            && e["user"]["username"] == "alice"
            && e["stage"] == "ResponseComplete"),
        "the refused --as request is audited"
    );
    assert!(
        events.iter().any(|e| e["responseStatus"]["code"] == 401),
        "unauthenticated requests are audited"
    );
    assert!(
        events.iter().any(|e| e["user"]["username"] == "alice"
            && e["verb"] == "create"
            && e["objectRef"]["subresource"] == "exec"
            && e["stage"] == "ResponseComplete"),
        "alice's exec is audited as create on pods/exec"
    );
    assert!(
        events.iter().any(|e| e["user"]["username"] == "alice"
            && e["objectRef"]["subresource"] == "exec"
            && e["stage"] == "ResponseStarted"
            && e["responseStatus"]["code"] == 101),
        "a long-running request (exec) is audited when it starts, as kube-apiserver does"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["auditID"] == "e2e-audit-0042" && e["stage"] == "ResponseStarted"),
        "an ordinary list has no ResponseStarted event"
    );
}
