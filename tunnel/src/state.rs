//! The stub's on-disk state in embedded mode: one directory (`--state-dir`).
//!
//! ```text
//! <state-dir>/            0700
//!   ca.crt                the stub CA certificate (PEM; public)
//!   ca.key                the CA private key (PEM, 0600)
//!   users.yaml            users: groups, allowed clusters, read-only, issued cert serials
//!   revoked.yaml          revoked client-certificate serials
//!   clusters.yaml         clusters added with `causeway cluster add`
//!   join-tokens.yaml      one-time enrolment tokens, stored as SHA-256 hashes (0600)
//! ```
//!
//! Every write goes to a temporary file in the same directory, is flushed, and is
//! renamed over the old file, so a reader sees the old or the new file, never half of
//! one. Every read-modify-write (the CLI's `cluster add`, `user add`, …, and the running
//! stub consuming a join token) holds [`StateDir::lock`], an exclusive `flock(2)` on
//! `<state-dir>/.lock`, so concurrent updates from several processes are never lost.
//!
//! In production mode ([`hub`]) the same files are the keys of a Secret in the hub
//! namespace; each stub replica's state directory is a mirror of it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors reading or writing the state directory; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file or directory could not be read, written or created.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid YAML of the expected shape.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error, with the field path and line.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The value could not be serialized.
    #[error("{path}: cannot serialize: {source}")]
    Serialize {
        /// The file.
        path: PathBuf,
        /// The serializer error.
        #[source]
        source: serde_yaml_ng::Error,
    },
}

impl StateError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StateError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The default state directory: `$HOME/.causeway/stub`, else `./.causeway/stub`.
pub fn default_state_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(".causeway").join("stub"),
        _ => PathBuf::from(".causeway").join("stub"),
    }
}

/// A state directory: created on first use with mode 0700.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens `root`, creating it (and parents) with mode 0700 if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StateError> {
        let root = root.into();
        create_private_dir(&root)?;
        Ok(Self { root })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The path of `name` inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Takes the directory's exclusive lock (blocking) until the guard is dropped. Hold
    /// it across a read-modify-write of any state file; critical sections are short
    /// (milliseconds), so blocking is acceptable even on a runtime thread.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let path = self.file(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StateError::io(&path, e))?;
        file.lock().map_err(|e| StateError::io(&path, e))?;
        Ok(StateLock { _file: file })
    }

    /// Reads `name` as YAML; a missing file reads as `T::default()`.
    pub fn read_yaml<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, StateError> {
        read_yaml_or_default(&self.file(name))
    }

    /// Writes `value` as YAML to `name` atomically, with mode 0600.
    pub fn write_yaml<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let path = self.file(name);
        let text = serde_yaml_ng::to_string(value).map_err(|source| StateError::Serialize {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, text.as_bytes(), 0o600)
    }
}

/// The lock file inside a state directory.
pub const LOCK_FILE: &str = ".lock";
/// Join tokens file in the stub's state directory.
pub const JOIN_TOKENS_FILE: &str = "join-tokens.yaml";
/// Clusters file in the stub's state directory.
pub const CLUSTERS_FILE: &str = "clusters.yaml";

/// Holds a state directory's lock; released when dropped (the descriptor closes).
#[derive(Debug)]
pub struct StateLock {
    _file: fs::File,
}

/// Reads a YAML file; a missing file reads as `T::default()`.
pub fn read_yaml_or_default<T: DeserializeOwned + Default>(path: &Path) -> Result<T, StateError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(T::default()),
        Err(e) => return Err(StateError::io(path, e)),
    };
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml_ng::from_str(&text).map_err(|source| StateError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Creates `dir` and its parents; the last component gets mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| StateError::io(dir, e))?;
    set_mode(dir, 0o700)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory with
/// `mode`, flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_owned());
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(StateError::io(path, e));
    }
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| StateError::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        items: Vec<String>,
    }

    #[test]
    fn roundtrip_missing_and_bad_files() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path().join("a/b")).unwrap();
        assert_eq!(state.read_yaml::<Doc>("x.yaml").unwrap(), Doc::default());
        let doc = Doc {
            items: vec!["one".into()],
        };
        state.write_yaml("x.yaml", &doc).unwrap();
        assert_eq!(state.read_yaml::<Doc>("x.yaml").unwrap(), doc);
        fs::write(state.file("bad.yaml"), "items: [1]\nbogus: 2\n").unwrap();
        let err = state.read_yaml::<Doc>("bad.yaml").unwrap_err().to_string();
        assert!(err.contains("bad.yaml") && err.contains("bogus"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(state.file("x.yaml"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(state.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp.")), "{names:?}");
    }
}
