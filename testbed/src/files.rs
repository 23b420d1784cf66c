//! Small file helpers with errors that name the path.

use std::path::Path;

use crate::TestbedError;

/// Writes `data` to `path` readable by the owner only (keys and kubeconfigs), replacing it.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), TestbedError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(TestbedError::io("write", &tmp))?;
    f.write_all(data).map_err(TestbedError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(TestbedError::io("rename into", path))
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<(), TestbedError> {
    std::fs::create_dir_all(dir).map_err(TestbedError::io("create directory", dir))
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read log: {e})"),
    }
}
