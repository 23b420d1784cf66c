//! `state.json`: what a testbed started, so `status` and `down` work from another process
//! and after a crash. It is rewritten after every process start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::files::write_private;
use crate::process::ProcRecord;
use crate::{ClusterInfo, TestbedError};

/// File name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// Everything recorded about one testbed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TestbedState {
    /// `true` once every cluster was Ready.
    pub complete: bool,
    /// `true` when the processes outlive the process that started them.
    pub detached: bool,
    /// The clusters.
    pub clusters: Vec<ClusterInfo>,
    /// Every process started, in start order.
    pub processes: Vec<ProcRecord>,
}

impl TestbedState {
    /// Reads `<dir>/state.json`; [`TestbedError::NotUp`] when there is none.
    pub fn load(dir: &Path) -> Result<Self, TestbedError> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TestbedError::NotUp {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(TestbedError::io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| TestbedError::State {
            path,
            reason: format!("not a testbed state file ({e}); remove it by hand if nothing runs"),
        })
    }

    /// Writes `<dir>/state.json`.
    pub fn save(&self, dir: &Path) -> Result<(), TestbedError> {
        let path = dir.join(STATE_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| TestbedError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_private(&path, &json)
    }
}

/// Shared, incrementally saved state while clusters come up in parallel.
#[derive(Clone)]
pub(crate) struct Recorder {
    dir: PathBuf,
    state: Arc<Mutex<TestbedState>>,
}

impl Recorder {
    pub fn new(dir: &Path, state: TestbedState) -> Result<Self, TestbedError> {
        state.save(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
        })
    }

    pub fn update(&self, f: impl FnOnce(&mut TestbedState)) -> Result<(), TestbedError> {
        let snapshot = {
            let mut s = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut s);
            s.clone()
        };
        snapshot.save(&self.dir)
    }
}
