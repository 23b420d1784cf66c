//! `causeway cluster` and `causeway user` as an operator runs them: the state
//! directory they leave, the kubeconfig real kubectl reads, removal and revocation,
//! and clear refusals of bad input. Needs the testbed's kubectl
//! (`testbed/build-bins.sh`).

use std::path::Path;
use std::process::Command;

use causeway_testbed::testing::{require_tools, run_fails as fails, run_ok as ok};

fn causeway(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_causeway"));
    c.env("CAUSEWAY_STATE_DIR", state);
    c
}

fn kubectl() -> std::path::PathBuf {
    let k = causeway_testbed::bin_dir()
        .unwrap_or_else(|e| panic!("testbed binaries: {e}; run testbed/build-bins.sh"))
        .join("kubectl");
    assert!(
        k.exists(),
        "{} is missing; run testbed/build-bins.sh",
        k.display()
    );
    k
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn cluster_add_prints_a_one_time_token_and_the_agent_command() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("stub");
    let out = ok(causeway(&state).args([
        "cluster",
        "add",
        "idc-bj",
        "--ttl",
        "10m",
        "--stub-url",
        "https://127.0.0.1:8443",
    ]));
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    let token = field("token");
    let hash = field("ca-hash");
    assert!(token.starts_with("cwj_") && token.len() > 40, "{token}");
    assert!(hash.starts_with("sha256:") && hash.len() == 71, "{hash}");
    assert!(out.contains(&format!(
        "causeway agent --stub https://127.0.0.1:8443 --cluster idc-bj --token {token} --ca-hash {hash}"
    )));
    // Only the hash of the token is stored; the CA key is private.
    let stored = std::fs::read_to_string(state.join("join-tokens.yaml")).unwrap();
    assert!(!stored.contains(&token) && stored.contains("idc-bj"));
    assert_eq!(mode(&state.join("ca.key")), 0o600);
    assert_eq!(mode(&state), 0o700);
    // The hash is kubeadm's discovery-token-ca-cert-hash: SHA-256 of the CA's DER
    // SubjectPublicKeyInfo, as openssl computes it.
    require_tools(&[("openssl", "openssl")]);
    let openssl = ok(Command::new("sh").arg("-c").arg(format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex",
        state.join("ca.crt").display()
    )));
    let digest = openssl.trim().rsplit(' ').next().unwrap_or_default();
    assert_eq!(format!("sha256:{digest}"), hash, "{openssl}");
    // The CA hash printed is the CA's, every time.
    let again = ok(causeway(&state).args(["cluster", "add", "idc-sh"]));
    assert!(again.contains(&hash));
    let list = ok(causeway(&state).args(["cluster", "list"]));
    assert!(list.contains("idc-bj") && list.contains("idc-sh"), "{list}");

    ok(causeway(&state).args(["cluster", "remove", "idc-sh"]));
    assert!(!ok(causeway(&state).args(["cluster", "list"])).contains("idc-sh"));
    let err = fails(causeway(&state).args(["cluster", "remove", "idc-sh"]));
    assert!(err.contains("no cluster idc-sh"), "{err}");

    for bad in ["IDC", "a/b", "../x", "a b", ""] {
        let err = fails(causeway(&state).args(["cluster", "add", bad]));
        assert!(err.contains("cluster ID"), "{bad:?}: {err}");
    }
    let err = fails(causeway(&state).args(["cluster", "add", "ok", "--ttl", "soon"]));
    assert!(err.contains("--ttl"), "{err}");
}

#[test]
fn user_add_writes_a_kubeconfig_kubectl_reads_and_remove_revokes() {
    let kubectl = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("stub");
    for c in ["idc-bj", "idc-sh", "aws-sg"] {
        ok(causeway(&state).args(["cluster", "add", c]));
    }
    let kc = dir.path().join("alice.kubeconfig");
    let out = ok(causeway(&state)
        .args([
            "user",
            "add",
            "alice",
            "--group",
            "dev",
            "--clusters",
            "idc-*",
        ])
        .args(["--stub-url", "https://127.0.0.1:6443", "--out"])
        .arg(&kc));
    assert!(out.contains("contexts: idc-bj, idc-sh"), "{out}");
    assert_eq!(mode(&kc), 0o600);

    let contexts = ok(Command::new(&kubectl)
        .args(["config", "get-contexts", "-o", "name", "--kubeconfig"])
        .arg(&kc));
    assert_eq!(
        contexts.split_whitespace().collect::<Vec<_>>(),
        ["idc-bj", "idc-sh"]
    );
    let server = ok(Command::new(&kubectl)
        .args(["config", "view", "--context", "idc-sh", "--minify"])
        .args([
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
            "--kubeconfig",
        ])
        .arg(&kc));
    assert_eq!(server, "https://127.0.0.1:6443/clusters/idc-sh");

    let list = ok(causeway(&state).args(["user", "list"]));
    assert!(list.contains("alice") && list.contains("idc-*"), "{list}");
    let users = std::fs::read_to_string(state.join("users.yaml")).unwrap();
    assert!(users.contains("serial"), "{users}");

    ok(causeway(&state).args(["user", "remove", "alice"]));
    let revoked = std::fs::read_to_string(state.join("revoked.yaml")).unwrap();
    assert!(revoked.contains("alice"), "{revoked}");
    assert!(!ok(causeway(&state).args(["user", "list"])).contains("alice"));
    let err = fails(causeway(&state).args(["user", "remove", "alice"]));
    assert!(err.contains("no user \"alice\""), "{err}");
}

#[test]
fn user_add_refuses_bad_names_and_urls() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("stub");
    let out = dir.path().join("x.kubeconfig");
    let cases: [(&[&str], &str); 6] = [
        (&["eve\r\nImpersonate-User: admin"], "control character"),
        (&["eve\x1b[2J"], "control character"),
        (&["causeway:agent:idc-bj"], "reserved"),
        (&["eve", "--group", "dev\n"], "control character"),
        (&["eve", "--clusters", "IDC/*"], "--clusters"),
        (&["eve", "--stub-url", "http://insecure"], "https://"),
    ];
    for (args, want) in cases {
        let mut cmd = causeway(&state);
        cmd.args(["user", "add"]).args(args.iter().take(1));
        if !args.contains(&"--clusters") {
            cmd.args(["--clusters", "*"]);
        }
        if !args.contains(&"--stub-url") {
            cmd.args(["--stub-url", "https://127.0.0.1:6443"]);
        }
        cmd.args(args.iter().skip(1)).arg("--out").arg(&out);
        let err = fails(&mut cmd);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!out.exists());
}
