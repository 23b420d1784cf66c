//! The one error shape of every configuration file.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A configuration error: `file:line:column: Kind/name: field.path: reason`.
///
/// Parts that are not known are left out of the message (a file that cannot be read
/// has no position, object or field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file read.
    pub file: PathBuf,
    /// Where in the file, when known.
    pub position: Option<Position>,
    /// The document, as `Kind/name`, when known.
    pub object: Option<String>,
    /// Path of the field from the document root (`spec.gslb[0].ttl`); empty for
    /// errors about the whole file or document.
    pub field: String,
    /// Why it is wrong.
    pub reason: String,
}

impl ConfigError {
    /// An error about the whole file (it cannot be read, a required document is missing).
    pub fn file(file: &Path, reason: impl fmt::Display) -> Self {
        Self {
            file: file.to_path_buf(),
            position: None,
            object: None,
            field: String::new(),
            reason: reason.to_string(),
        }
    }

    /// The same error with `reason` prefixed by `context` (`"while loading X: "`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.reason = format!("{context}: {}", self.reason);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{p}")?;
        }
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_what_is_unknown() {
        let mut e = ConfigError::file(Path::new("a.yaml"), "cannot read");
        assert_eq!(e.to_string(), "a.yaml: cannot read");
        e.position = Some(Position { line: 3, column: 7 });
        e.object = Some("Zone/z".into());
        e.field = "spec.origin".into();
        assert_eq!(
            e.to_string(),
            "a.yaml:3:7: Zone/z: spec.origin: cannot read"
        );
    }
}
