//! Shared helpers of the `tunnel_security_*` end-to-end tests: RBAC on a member
//! cluster, ServiceAccount tokens, and `curl` as an independent HTTP client.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use causeway_testbed::ClusterInfo;

/// Namespace and ServiceAccount of the agent on a member cluster.
pub const AGENT_NS: &str = "causeway-system";
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

/// Fails the test with what to run when a tool is missing.
pub fn require_tool(tool: &str, install: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(found, "`{tool}` is not installed; run: {install}");
}

/// Runs a command, returning its output; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `kubectl apply -f -` as the cluster admin.
pub fn apply(c: &ClusterInfo, yaml: &str) {
    let mut child = c
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifest");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A one-hour token of the agent's ServiceAccount (TokenRequest API).
pub fn agent_token(c: &ClusterInfo) -> String {
    let out = run(c.kubectl().args([
        "create",
        "token",
        AGENT_SA,
        "-n",
        AGENT_NS,
        "--duration",
        "1h",
    ]));
    assert!(
        out.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// `curl` with `headers`; returns (HTTP code, body).
pub fn curl(
    method: &str,
    url: &str,
    ca: &Path,
    headers: &[(String, String)],
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ])
    .arg("--cacert")
    .arg(ca);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    cmd.arg(url);
    let out = run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl {url}: {}", String::from_utf8_lossy(&out.stderr)));
    (code, body.to_owned())
}

/// The body of `kubectl auth whoami`'s request.
pub const SELF_SUBJECT_REVIEW: &str =
    r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
