//! Helpers for the `causeway testbed` end-to-end tests: run the built binary, run kubectl,
//! and always stop a detached testbed, even when a test fails.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built `causeway` binary.
pub fn causeway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
}

/// Fails with the fix when the testbed binaries are not built.
pub fn require_binaries() {
    if let Err(e) = causeway_testbed::bin_dir() {
        panic!("testbed binaries missing: {e}");
    }
}

/// `causeway testbed --state-dir DIR ARGS…`, returning the whole output.
pub fn testbed(dir: &Path, args: &[&str]) -> Output {
    causeway()
        .arg("testbed")
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run causeway")
}

/// Like [`testbed`], but the command must succeed; returns stdout.
pub fn testbed_ok(dir: &Path, args: &[&str]) -> String {
    let out = testbed(dir, args);
    assert!(
        out.status.success(),
        "causeway testbed {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `causeway testbed down` on drop, so a failing test leaves no detached processes.
pub struct DownOnDrop(pub PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = testbed(&self.0, &["down"]);
    }
}

/// kubectl with the admin kubeconfig of `cluster` (from `status --json`).
pub fn kubectl(cluster: &serde_json::Value) -> Command {
    let mut k = Command::new(cluster["kubectl"].as_str().expect("kubectl path"));
    k.arg("--kubeconfig")
        .arg(cluster["kubeconfig"].as_str().expect("kubeconfig"));
    k
}

/// Runs `cmd`; it must succeed; returns stdout.
pub fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply -f -` of one JSON document.
pub fn apply(cluster: &serde_json::Value, doc: &serde_json::Value) {
    let mut child = kubectl(cluster)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(doc.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl");
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a process with this PID runs (zombies count as gone).
pub fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

/// Every PID recorded in `status --json` output.
pub fn pids(status: &serde_json::Value) -> Vec<u64> {
    status
        .as_array()
        .expect("status list")
        .iter()
        .flat_map(|c| c["processes"].as_array().cloned().unwrap_or_default())
        .map(|p| p["pid"].as_u64().expect("pid"))
        .collect()
}
