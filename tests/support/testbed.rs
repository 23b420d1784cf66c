//! The `testbed_*` tests' helpers: run the built `causeway testbed`, read its `status
//! --json`, and always stop a detached testbed, even when a test fails. Generic
//! helpers (kubectl, processes, waits) live in `causeway_testbed::testing`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use causeway_testbed::testing::{Kubectl, run};

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
    run(causeway()
        .arg("testbed")
        .arg("--state-dir")
        .arg(dir)
        .args(args))
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
pub fn kubectl(cluster: &serde_json::Value) -> Kubectl {
    Kubectl::new(cluster["kubectl"].as_str().expect("kubectl path")).kubeconfig(Path::new(
        cluster["kubeconfig"].as_str().expect("kubeconfig"),
    ))
}

/// Every PID recorded in `status --json` output.
pub fn pids(status: &serde_json::Value) -> Vec<u32> {
    status
        .as_array()
        .expect("status list")
        .iter()
        .flat_map(|c| c["processes"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            p["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .expect("pid")
        })
        .collect()
}
