//! Bad input to `causeway testbed` gets a clear error naming what is wrong and the fix.

#[path = "support/testbed.rs"]
mod testbed_support;

use std::net::TcpListener;

use testbed_support::*;

fn fails_with(args: &[&str], dir: &std::path::Path, envs: &[(&str, &str)], needles: &[&str]) {
    let out = causeway()
        .arg("testbed")
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    for n in needles {
        assert!(
            stderr.contains(n),
            "{args:?}: {n:?} not in stderr:\n{stderr}"
        );
    }
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tb");
    let _guard = DownOnDrop(dir.clone());
    fails_with(
        &["up", "--clusters", "a", "--node-memory", "12XB"],
        &dir,
        &[],
        &["--node-memory", "\"12XB\"", "unknown unit", "128Gi"],
    );
    fails_with(
        &["up", "--clusters", "a", "--node-cpu", "0"],
        &dir,
        &[],
        &["--node-cpu", "more than zero"],
    );
    fails_with(
        &["up", "--clusters", "a,Bad_Name"],
        &dir,
        &[],
        &["\"Bad_Name\"", "--clusters", "lower-case"],
    );
    fails_with(&["up", "--clusters", "a,b,a"], &dir, &[], &["twice"]);
    fails_with(
        &["up", "--clusters", "a", "--bogus"],
        &dir,
        &[],
        &["--bogus"],
    );
    fails_with(
        &["up", "--clusters", "a", "--nodes=-1"],
        &dir,
        &[],
        &["--nodes"],
    );
    fails_with(
        &["up", "--clusters", "a", "--nodes", "0"],
        &dir,
        &[],
        &["--nodes", "between 1 and 100"],
    );
    fails_with(
        &["up", "--clusters", "a", "--base-address", "10.0.0.1"],
        &dir,
        &[],
        &["--base-address", "127.0.0.0/8"],
    );
    fails_with(
        &["up", "--clusters", "a", "--base-address", "127.0.0.300"],
        &dir,
        &[],
        &["--base-address"],
    );
    fails_with(&["up"], &dir, &[], &["--clusters"]);
    let empty = tempfile::tempdir().unwrap();
    fails_with(
        &["up", "--clusters", "a"],
        &dir,
        &[("CAUSEWAY_BIN_DIR", empty.path().to_str().unwrap())],
        &["etcd not found", "testbed/build-bins.sh"],
    );
    fails_with(
        &["kubeconfig", "a"],
        &dir,
        &[],
        &["no testbed is up", "causeway testbed up"],
    );
    let out = testbed_ok(&dir, &["down"]);
    assert!(out.contains("nothing to stop"), "{out}");
    fails_with(&["status"], &dir, &[], &["no testbed is up"]);
}

#[test]
fn port_in_use_is_named() {
    require_binaries();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tb");
    let _guard = DownOnDrop(dir.clone());
    let base = causeway_testbed::reserve_addresses(2);
    let second = std::net::Ipv4Addr::from(u32::from(base) + 1);
    let _taken = TcpListener::bind((second, 6443)).unwrap();
    let base = base.to_string();
    let in_use = format!("{second}:6443 is in use");
    fails_with(
        &["up", "--clusters", "p,q", "--base-address", &base],
        &dir,
        &[],
        &[&in_use, "causeway testbed down", "--base-address"],
    );
}
