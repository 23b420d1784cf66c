//! `causeway testbed up` after an unclean stop: Ctrl-C during `up` stops what was started,
//! and an `up` after a crash stops the leftovers of the first before starting again.

#[path = "support/testbed.rs"]
mod testbed_support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use causeway_testbed::testing::{process_alive, run_ok, wait_for};
use testbed_support::*;

/// PIDs recorded in `state.json` once at least `n` processes are there.
fn wait_for_pids(dir: &Path, n: usize) -> Vec<u32> {
    wait_for(
        &format!("up to record {n} processes"),
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let state = std::fs::read_to_string(dir.join("state.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())?;
            let pids: Vec<u32> = state["processes"]
                .as_array()?
                .iter()
                .filter_map(|p| p["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
                .collect();
            (pids.len() >= n).then_some(pids)
        },
    )
}

/// `up` of one cluster `r` with one node at `base`.
fn up_args(base: &str) -> [&str; 7] {
    [
        "up",
        "--clusters",
        "r",
        "--nodes",
        "1",
        "--base-address",
        base,
    ]
}

fn start_up(dir: &Path, base: &str) -> std::process::Child {
    causeway()
        .arg("testbed")
        .arg("--state-dir")
        .arg(dir)
        .args(up_args(base))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(pid: u32, sig: &str) {
    run_ok(std::process::Command::new("kill").args([sig, &pid.to_string()]));
}

#[test]
fn ctrl_c_and_crash_leave_nothing_behind() {
    require_binaries();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tb");
    let _guard = DownOnDrop(dir.clone());
    let base = causeway_testbed::reserve_addresses(1).to_string();

    // Ctrl-C while etcd and the apiserver are starting: both are stopped, state removed.
    let up = start_up(&dir, &base);
    let starting = wait_for_pids(&dir, 2);
    signal(up.id(), "-INT");
    let out = up.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pid in &starting {
        assert!(!process_alive(*pid), "pid {pid} survived Ctrl-C");
    }
    assert!(!dir.join("state.json").exists());

    // A crash (SIGKILL) of `up` leaves detached processes running…
    let mut up = start_up(&dir, &base);
    let first = wait_for_pids(&dir, 2);
    signal(up.id(), "-KILL");
    let _ = up.wait();
    assert!(
        first.iter().all(|p| process_alive(*p)),
        "detached processes should outlive a crashed up"
    );

    // …and the next `up` stops them before starting afresh.
    let out = testbed_ok(&dir, &up_args(&base));
    assert!(out.contains("1 clusters Ready"), "{out}");
    for pid in &first {
        assert!(
            !process_alive(*pid),
            "leftover pid {pid} still runs after the second up"
        );
    }
    let status: serde_json::Value =
        serde_json::from_str(&testbed_ok(&dir, &["status", "--json"])).unwrap();
    let second = pids(&status);
    assert_eq!(second.len(), 5);
    assert!(second.iter().all(|p| process_alive(*p)));
    testbed_ok(&dir, &["down"]);
    for pid in &second {
        assert!(!process_alive(*pid), "pid {pid} still runs after down");
    }
}
