//! helm and kubeconform from `.cache/bin` (built from their pinned Go modules by
//! `testbed/build-bins.sh --with-chart-tools`); helm with its caches in a directory of the
//! test's own.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (where `charts/` is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A chart tool (helm, kubeconform) from `.cache/bin`, run in the workspace root.
pub fn tool(name: &str) -> Command {
    let dir =
        causeway_testbed::bin_dir().unwrap_or_else(|e| panic!("testbed binaries missing: {e}"));
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} missing: run `testbed/build-bins.sh --with-chart-tools` (scripts/setup does)",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.current_dir(root());
    cmd
}

/// helm, run from the workspace root, with its caches in `home` (nothing from the user's).
pub fn helm(home: &Path) -> Command {
    let mut cmd = tool("helm");
    for (var, sub) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        cmd.env(var, home.join(sub));
    }
    cmd
}
