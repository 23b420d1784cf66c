//! One testbed per test process, started on first use and killed when the process exits.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::spec::{ClusterSpec, TestbedOptions};
use crate::{Testbed, TestbedError};

/// Clusters of the [`shared`] testbed.
pub const SHARED_CLUSTERS: [&str; 2] = ["tb-a", "tb-b"];

/// Environment variable that fixes the shared testbed's first address (default: a block
/// from [`crate::reserve::reserve_addresses`]).
pub const SHARED_BASE_ENV: &str = "CAUSEWAY_TESTBED_BASE";

static SHARED: tokio::sync::OnceCell<Result<Testbed, String>> = tokio::sync::OnceCell::const_new();
static SHARED_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The testbed shared by every test of this process: clusters `tb-a` and `tb-b`, two kwok
/// nodes each (32 CPU, 128Gi, 110 pods), state in a temporary directory.
///
/// The first call starts it (20–60 s); later calls, from any test and any runtime, get the
/// same one. Its processes die with the test process (PDEATHSIG) and its directory is
/// removed at exit. Each test process reserves its own loopback block, so test binaries
/// run side by side.
///
/// # Panics
/// If the testbed cannot start (for example the binaries are not built: the message says to
/// run `testbed/build-bins.sh`). Every caller panics with the same message.
pub async fn shared() -> &'static Testbed {
    let result = SHARED
        .get_or_init(|| async { start_shared().await.map_err(|e| e.chain()) })
        .await;
    match result {
        Ok(tb) => tb,
        Err(e) => panic!("the shared testbed did not start: {e}"),
    }
}

async fn start_shared() -> Result<Testbed, TestbedError> {
    let base = match std::env::var(SHARED_BASE_ENV) {
        Ok(v) => v.parse().map_err(|e| TestbedError::BadOption {
            option: SHARED_BASE_ENV,
            value: v.clone(),
            reason: format!("not an IPv4 address: {e}"),
        })?,
        Err(_) => crate::reserve::reserve_addresses(SHARED_CLUSTERS.len()),
    };
    let dir = std::env::temp_dir().join(format!("causeway-testbed-{}", std::process::id()));
    let _ = SHARED_DIR.set(dir.clone());
    // SAFETY: registering a plain extern "C" function with no arguments.
    unsafe {
        libc::atexit(cleanup_at_exit);
    }
    let clusters = SHARED_CLUSTERS
        .iter()
        .map(|n| ClusterSpec::new(*n))
        .collect();
    let mut opts = TestbedOptions::new(clusters, dir);
    opts.base_address = base;
    opts.ready_timeout = Duration::from_secs(240);
    let tb = Testbed::up(opts).await?;
    tracing::info!(startup = ?tb.startup(), %base, "shared testbed is up");
    Ok(tb)
}

extern "C" fn cleanup_at_exit() {
    if let Some(Ok(tb)) = SHARED.get() {
        for r in tb.processes() {
            if let Ok(pid) = libc::pid_t::try_from(r.pid) {
                // SAFETY: our own children; kill then reap so the directory can go.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }
    if let Some(dir) = SHARED_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
