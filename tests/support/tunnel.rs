//! The `tunnel_*` tests' fixture: the built `causeway` binary as stub and agents in
//! front of the shared testbed's real kube-apiservers, users added by `causeway user
//! add`, kubectl and the kit's HTTP client as clients, and the member cluster's RBAC.
//! Generic helpers (processes, kubectl, HTTP, waits) live in `causeway_testbed::testing`;
//! this file holds what knows the tunnel's CLI, config and RBAC.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway_testbed::testing::{
    HttpClient, KubeconfigCredentials, Kubectl, Process, Spawn, client_tls, metric_value, run_ok,
    wait_for,
};
use causeway_testbed::{ClusterInfo, Testbed};

/// The causeway binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// The built `causeway` binary, ready for arguments.
pub fn causeway() -> Command {
    Command::new(BIN)
}

/// The agent's RBAC on a member cluster (impersonation only) and full access for
/// group `dev` (the member cluster's own decision).
pub const MEMBER_SETUP: &str = include_str!("../../examples/tunnel/agent-rbac.yaml");

/// Namespace and ServiceAccount of the agent on a member cluster.
pub const AGENT_NS: &str = "causeway-system";
/// See [`AGENT_NS`].
pub const AGENT_SA: &str = "causeway-agent";

/// The agent's RBAC (impersonation only, as docs/tunnel-security.md says), two team
/// namespaces, and a Role that lets user `alice` list pods in `team-a` only.
pub const MEMBER_RBAC: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: causeway-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: causeway-agent, namespace: causeway-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: causeway-agent-impersonator}
rules:
- apiGroups: [""]
  resources: [users, groups]
  verbs: [impersonate]
- apiGroups: [authentication.k8s.io]
  resources: [uids, userextras/scopes]
  verbs: [impersonate]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: causeway-agent-impersonator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: causeway-agent-impersonator}
subjects:
- {kind: ServiceAccount, name: causeway-agent, namespace: causeway-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: team-a}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads-pods, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
"#;

/// The body of `kubectl auth whoami`'s request.
pub const SELF_SUBJECT_REVIEW: &str =
    r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;

/// A token of the agent's ServiceAccount (TokenRequest API) valid for `duration`
/// (`1h`, `2h`).
pub fn agent_token(c: &ClusterInfo, duration: &str) -> String {
    Kubectl::admin(c)
        .run(&[
            "create",
            "token",
            AGENT_SA,
            "-n",
            AGENT_NS,
            "--duration",
            duration,
        ])
        .trim()
        .to_owned()
}

/// Prepares a member cluster: agent RBAC, a token for the agent in `dir`, `dev` →
/// cluster-admin. Returns the token file.
pub fn member_token(c: &ClusterInfo, dir: &Path) -> PathBuf {
    let admin = Kubectl::admin(c);
    admin.apply(MEMBER_SETUP);
    admin.apply(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: causeway-e2e-dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: dev}
",
    );
    let path = dir.join(format!("{}.token", c.name));
    std::fs::write(&path, agent_token(c, "2h")).unwrap();
    path
}

/// A running stub with its state directory.
pub struct Stub {
    /// The process.
    pub proc: Process,
    /// Where users connect (HTTPS).
    pub users: SocketAddr,
    /// Where agents connect (HTTPS).
    pub agents: SocketAddr,
    /// Metrics, /readyz and /sessions (HTTP).
    pub metrics: SocketAddr,
    /// Its state directory.
    pub state: PathBuf,
}

impl Stub {
    /// Starts `causeway stub --config CONFIG EXTRA…`, its output in `log`, and waits
    /// for its three listeners.
    pub fn start(config: &Path, state: &Path, extra: &[String], log: &Path) -> Self {
        let proc = Spawn::causeway(BIN)
            .args(["stub", "--config"])
            .arg(config)
            .args(extra)
            .log_file(log)
            .start();
        let l = proc.wait_listening(&["users", "agents", "metrics"], Duration::from_secs(20));
        Stub {
            users: l.addr("users"),
            agents: l.addr("agents"),
            metrics: l.addr("metrics"),
            proc,
            state: state.to_owned(),
        }
    }

    /// One metric sample (`name{labels}`, exactly) of the stub.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&http_get(self.metrics, "/metrics").1, series)
    }
}

/// Writes a stub config `dir/NAME.yaml` and starts the stub. `lease` is an optional
/// `lease:` YAML block (already indented by 2).
pub fn start_stub(dir: &Path, name: &str, state: &Path, lease: Option<&str>) -> Stub {
    let config = stub_config(dir, name, state, lease.unwrap_or(""));
    Stub::start(&config, state, &[], &dir.join(format!("{name}.log")))
}

/// Writes the config of stub `name` as `dir/NAME.yaml` (listeners on port 0, an audit
/// log in `dir`) with `extra` appended to its spec (YAML indented by 2); its path.
pub fn stub_config(dir: &Path, name: &str, state: &Path, extra: &str) -> PathBuf {
    let config = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "apiVersion: causeway.dev/v1alpha1
kind: StubConfig
metadata: {{name: {name}}}
spec:
  stateDir: {}
  listen: {{users: \"127.0.0.1:0\", agents: \"127.0.0.1:0\", metrics: \"127.0.0.1:0\"}}
  audit: {{path: {}}}
{extra}",
        state.display(),
        dir.join(format!("{name}-audit.log")).display()
    );
    std::fs::write(&config, yaml).unwrap();
    config
}

/// A plain-HTTP GET (the metrics listener): (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = HttpClient::new(addr)
        .timeout(Duration::from_secs(5))
        .send_blocking(http::Method::GET, path, "")
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status, r.text())
}

/// Where most tunnel tests start: the shared testbed, a stub on port 0 in a fresh
/// directory, and its cluster `tb-a` prepared (agent RBAC and token) and enrolled.
pub struct TunnelBed {
    /// The shared testbed.
    pub tb: &'static Testbed,
    /// Configs, logs, state and kubeconfigs of this bed.
    pub dir: tempfile::TempDir,
    /// The stub's state directory.
    pub state: PathBuf,
    /// The agent's ServiceAccount token for `tb-a`.
    pub token: PathBuf,
    /// The stub.
    pub stub: Stub,
    /// `https://` URL of the stub's agents listener.
    pub agents_url: String,
    /// Enrolment of `tb-a` (token, CA hash).
    pub join: (String, String),
}

impl TunnelBed {
    /// Prepares `tb-a`, starts the stub and enrols `tb-a`.
    pub async fn start() -> Self {
        let tb = causeway_testbed::shared().await;
        let dir = tempfile::tempdir().unwrap();
        let member = tb.cluster("tb-a").unwrap();
        let token = member_token(member, dir.path());
        let state = dir.path().join("stub-state");
        let stub = start_stub(dir.path(), "stub", &state, None);
        let agents_url = format!("https://{}", stub.agents);
        let join = cluster_add(&state, "tb-a", &agents_url);
        Self {
            tb,
            dir,
            state,
            token,
            stub,
            agents_url,
            join,
        }
    }

    /// The member cluster `tb-a`.
    pub fn member(&self) -> &'static ClusterInfo {
        self.tb.cluster("tb-a").unwrap()
    }

    /// Starts an agent of `tb-a` called `name` with its state in `state` (enrolling
    /// with the bed's join token if `enrol`) and waits for its two sessions.
    pub fn agent(&self, name: &str, state: &Path, enrol: bool) -> Process {
        let agent = start_agent(
            self.dir.path(),
            name,
            &self.agents_url,
            self.member(),
            &self.token,
            state,
            enrol.then_some(&self.join),
        );
        agent.wait_lines("session established", 2, Duration::from_secs(30));
        agent
    }

    /// Adds user alice (see [`add_alice`]); her kubeconfig.
    pub fn add_alice(&self) -> PathBuf {
        add_alice(&self.state, self.dir.path(), self.stub.users, self.member())
    }
}

/// `causeway cluster add`: returns (token, ca-hash).
pub fn cluster_add(state: &Path, cluster: &str, stub_url: &str) -> (String, String) {
    cluster_add_in(&state_dir_args(state), cluster, stub_url)
}

/// `--state-dir STATE`: where `causeway cluster|user` edit the state in the embedded mode.
pub fn state_dir_args(state: &Path) -> Vec<String> {
    vec!["--state-dir".into(), state.display().to_string()]
}

/// `causeway cluster add` with the state named by `store` (`--state-dir DIR`, or the
/// hub's `--hub-kubeconfig FILE --hub-namespace NS`): returns (token, ca-hash).
pub fn cluster_add_in(store: &[String], cluster: &str, stub_url: &str) -> (String, String) {
    let out = run_ok(
        causeway()
            .args(["cluster", "add", cluster])
            .args(store)
            .args(["--stub-url", stub_url]),
    );
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    (field("token:"), field("ca-hash:"))
}

/// Starts an agent, its output in `dir/NAME.log`; enrols with `join` if its state dir
/// holds no certificate yet.
pub fn start_agent(
    dir: &Path,
    name: &str,
    stub_urls: &str,
    cluster: &ClusterInfo,
    token_file: &Path,
    state: &Path,
    join: Option<&(String, String)>,
) -> Process {
    let mut agent = Spawn::causeway(BIN)
        .args(["agent", "--stub", stub_urls, "--cluster", &cluster.name])
        .arg("--state-dir")
        .arg(state)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .arg("--token-file")
        .arg(token_file)
        .log_file(dir.join(format!("{name}.log")));
    if let Some((t, h)) = join {
        agent = agent.args(["--token", t, "--ca-hash", h]);
    }
    agent.start()
}

/// Adds user `alice` (group `dev`, clusters `tb-*`) and waits until the stub at
/// `users` authenticates her for `tb-a` of `member`; returns her kubeconfig.
pub fn add_alice(state: &Path, dir: &Path, users: SocketAddr, member: &ClusterInfo) -> PathBuf {
    let alice = user_add(
        state,
        dir,
        "alice",
        "dev",
        "tb-*",
        &format!("https://{users}"),
    );
    // The stub reloads users.yaml within 2 s of `causeway user add`.
    wait_authenticated(member, &alice, "tb-a");
    alice
}

/// `causeway user add`: writes a kubeconfig, returns its path.
pub fn user_add(
    state: &Path,
    dir: &Path,
    user: &str,
    group: &str,
    clusters: &str,
    stub_url: &str,
) -> PathBuf {
    user_add_in(&state_dir_args(state), dir, user, group, clusters, stub_url)
}

/// `causeway user add` with the state named by `store` (see [`cluster_add_in`]): writes
/// `dir/USER.kubeconfig`, returns its path.
pub fn user_add_in(
    store: &[String],
    dir: &Path,
    user: &str,
    group: &str,
    clusters: &str,
    stub_url: &str,
) -> PathBuf {
    let out = dir.join(format!("{user}.kubeconfig"));
    run_ok(
        causeway()
            .args([
                "user",
                "add",
                user,
                "--group",
                group,
                "--clusters",
                clusters,
            ])
            .args(store)
            .args(["--stub-url", stub_url])
            .arg("--out")
            .arg(&out),
    );
    out
}

/// The testbed's kubectl with a user's kubeconfig and context, 30 s per request.
pub fn as_user(tb_cluster: &ClusterInfo, kubeconfig: &Path, context: &str) -> Kubectl {
    Kubectl::with_kubeconfig(tb_cluster, kubeconfig)
        .context(context)
        .arg("--request-timeout")
        .arg("30s")
}

/// An HTTPS client of the stub's users listener as the user of `kubeconfig` (its
/// client certificate, trusting the stub CA), offering `alpn`.
pub fn user_client(kubeconfig: &Path, users: SocketAddr, alpn: &[u8]) -> HttpClient {
    let creds = KubeconfigCredentials::read(kubeconfig);
    let tls = client_tls(
        creds.ca_pem.as_bytes(),
        Some((creds.cert_pem.as_bytes(), creds.key_pem.as_bytes())),
        &[alpn],
    )
    .unwrap_or_else(|e| panic!("TLS of {}: {e}", kubeconfig.display()));
    HttpClient::https(users, tls, &users.ip().to_string())
}

/// Polls `kubectl auth whoami` until the stub knows the user (it reloads users.yaml
/// every 2 s).
pub fn wait_authenticated(c: &ClusterInfo, kubeconfig: &Path, context: &str) {
    let kubectl = as_user(c, kubeconfig, context);
    wait_for(
        "the user authenticated by the stub",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let out = kubectl.output(&["auth", "whoami"]);
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    );
}
