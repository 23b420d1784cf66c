//! Finding the pinned Kubernetes binaries that `testbed/build-bins.sh` builds.

use std::path::{Path, PathBuf};

use crate::TestbedError;

/// Files the testbed needs in its binary directory.
pub const REQUIRED: [&str; 7] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kwok-stages.yaml",
];

/// Built beside [`REQUIRED`] and needed only when metrics are on
/// ([`crate::spec::MetricsOptions::enabled`]).
pub const METRICS_SERVER: &str = "metrics-server";

/// Paths of every program the testbed runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kube-apiserver`.
    pub apiserver: PathBuf,
    /// `kube-controller-manager`.
    pub controller_manager: PathBuf,
    /// `kube-scheduler`.
    pub scheduler: PathBuf,
    /// `kubectl`.
    pub kubectl: PathBuf,
    /// `kwok`.
    pub kwok: PathBuf,
    /// kwok's default node and pod stages (written by `build-bins.sh`).
    pub kwok_stages: PathBuf,
    /// `metrics-server` (may be missing: only checked when metrics are on, see
    /// [`Binaries::check_metrics_server`]).
    pub metrics_server: PathBuf,
}

impl Binaries {
    /// All binaries from `dir`, or from [`bin_dir`] when `dir` is `None`.
    pub fn locate(dir: Option<&Path>) -> Result<Self, TestbedError> {
        let dir = match dir {
            Some(d) => {
                check_dir(d)?;
                d.to_path_buf()
            }
            None => bin_dir()?,
        };
        Ok(Self {
            etcd: dir.join("etcd"),
            apiserver: dir.join("kube-apiserver"),
            controller_manager: dir.join("kube-controller-manager"),
            scheduler: dir.join("kube-scheduler"),
            kubectl: dir.join("kubectl"),
            kwok: dir.join("kwok"),
            kwok_stages: dir.join("kwok-stages.yaml"),
            metrics_server: dir.join(METRICS_SERVER),
        })
    }

    /// `Err(MissingBinary)` unless `metrics-server` is there.
    pub fn check_metrics_server(&self) -> Result<(), TestbedError> {
        if self.metrics_server.is_file() {
            return Ok(());
        }
        Err(TestbedError::MissingBinary {
            name: METRICS_SERVER.into(),
            searched: self
                .metrics_server
                .parent()
                .map_or_else(String::new, |d| d.display().to_string()),
        })
    }
}

/// The directory holding the testbed binaries.
///
/// Looks in `$CAUSEWAY_BIN_DIR`, else `<repo>/.cache/bin` (the repository found by walking
/// up from the current directory, then from this executable), else each `$PATH` entry. The
/// error names the first missing binary and says to run `testbed/build-bins.sh`.
pub fn bin_dir() -> Result<PathBuf, TestbedError> {
    if let Some(dir) = std::env::var_os("CAUSEWAY_BIN_DIR") {
        let dir = PathBuf::from(dir);
        check_dir(&dir)?;
        return Ok(dir);
    }
    let mut searched = Vec::new();
    if let Some(repo) = repo_root() {
        let dir = repo.join(".cache/bin");
        if check_dir(&dir).is_ok() {
            return Ok(dir);
        }
        searched.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if check_dir(&dir).is_ok() {
                return Ok(dir);
            }
        }
    }
    let first = searched.first().cloned();
    match first {
        Some(dir) => check_dir(&dir).map(|()| dir),
        None => Err(TestbedError::MissingBinary {
            name: REQUIRED[1].into(),
            searched: "$CAUSEWAY_BIN_DIR (unset), <repo>/.cache/bin (no repository found), $PATH"
                .into(),
        }),
    }
}

fn check_dir(dir: &Path) -> Result<(), TestbedError> {
    for name in REQUIRED {
        if !dir.join(name).is_file() {
            return Err(TestbedError::MissingBinary {
                name: name.into(),
                searched: dir.display().to_string(),
            });
        }
    }
    Ok(())
}

/// The Causeway repository holding the current directory or this executable, if any.
///
/// A directory is the repository when it has `testbed/build-bins.sh` and `Cargo.toml`.
pub fn repo_root() -> Option<PathBuf> {
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
    ];
    starts
        .into_iter()
        .flatten()
        .find_map(|start| repo_root_from(&start))
}

/// The Causeway repository holding `dir`, if any (see [`repo_root`]).
pub fn repo_root_from(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join("testbed/build-bins.sh").is_file() && d.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd"), "").unwrap();
        let err = Binaries::locate(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("kube-apiserver not found"), "{err}");
        assert!(err.contains("testbed/build-bins.sh"), "{err}");
    }

    #[test]
    fn metrics_server_is_checked_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        for name in REQUIRED {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let bins = Binaries::locate(Some(dir.path())).unwrap();
        let err = bins.check_metrics_server().unwrap_err().to_string();
        assert!(err.contains("metrics-server not found"), "{err}");
        std::fs::write(dir.path().join(METRICS_SERVER), "").unwrap();
        bins.check_metrics_server().unwrap();
    }

    #[test]
    fn finds_the_repository_from_the_crate() {
        // Tests run with the crate directory as current directory, inside the repository.
        let root = repo_root().expect("repository");
        assert!(root.join("testbed/build-bins.sh").is_file());
    }
}
