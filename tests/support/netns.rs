//! Running a test inside its own user + network namespace (`unshare -rn`), so it can bind
//! fixed loopback addresses and ports without clashing with anything else on the machine.
#![allow(dead_code)]

use std::process::Command;

use causeway_testbed::testing::on_path;

/// Whether `unshare -rn` with `ip` works here; else why not.
pub fn usable() -> Result<(), String> {
    for (bin, pkg) in [("unshare", "util-linux"), ("ip", "iproute2")] {
        if !on_path(bin) {
            return Err(format!("{bin} not found (install {pkg})"));
        }
    }
    let out = Command::new("unshare")
        .args(["-rn", "ip", "link", "set", "lo", "up"])
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`unshare -rn ip link set lo up` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Re-runs test `test_name` of this binary in a new user + network namespace with `lo`
/// up, with `marker` set in its environment (so it knows it is inside).
pub fn rerun_inside(test_name: &str, marker: &str) {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["-rn", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .status()
        .expect("run unshare");
    assert!(
        status.success(),
        "the scenario failed inside the network namespace (output above)"
    );
}
