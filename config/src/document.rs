//! Reading a file of `apiVersion/kind/metadata/spec` documents.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::position::{self, Place};
use crate::{API_VERSION, ConfigError, Position};

/// `metadata` of every document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The object's name; required and non-empty.
    pub name: String,
    /// Namespace, for kinds that live in one (ignored by parts that do not use it).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The text a document came from, shared by its documents (kept for error positions).
struct Source {
    file: Box<Path>,
    text: Box<str>,
}

/// One document of a file: its envelope checked, its `spec` not yet read.
#[derive(Clone)]
pub struct Document {
    /// `kind`.
    pub kind: String,
    /// `metadata`.
    pub metadata: Metadata,
    spec: Value,
    /// Number of this document in the stream, counting empty ones (for positions).
    ordinal: usize,
    source: Arc<Source>,
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("file", &self.source.file)
            .field("object", &self.object())
            .finish_non_exhaustive()
    }
}

/// Reads `path`: every non-empty document, with its envelope checked.
pub fn read_file(path: &Path) -> Result<Vec<Document>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(path, format_args!("cannot read: {e}")))?;
    parse_str(path, &text)
}

/// Parses `text` as the contents of `file` (named in errors).
///
/// Checks of the envelope: `apiVersion` is [`API_VERSION`]; `kind` and
/// `metadata.name` are present; no top-level field other than `apiVersion`, `kind`,
/// `metadata` and `spec`; no unknown `metadata` field. Documents holding only
/// comments are skipped.
pub fn parse_str(file: &Path, text: &str) -> Result<Vec<Document>, ConfigError> {
    let source = Arc::new(Source {
        file: file.into(),
        text: text.into(),
    });
    let mut docs = Vec::new();
    for (ordinal, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| syntax_error(file, &e))?;
        if value.is_null() {
            continue;
        }
        docs.push(Document::check(value, ordinal, &source)?);
    }
    Ok(docs)
}

fn syntax_error(file: &Path, e: &serde_yaml_ng::Error) -> ConfigError {
    let mut err = ConfigError::file(file, e);
    if let Some(l) = e.location() {
        err.position = Some(Position {
            line: l.line(),
            column: l.column(),
        });
        // serde_yaml_ng repeats the position in its message: keep the reason alone.
        if let Some(i) = err.reason.find(" at line ") {
            err.reason.truncate(i);
        }
    }
    err
}

impl Document {
    fn check(value: Value, ordinal: usize, source: &Arc<Source>) -> Result<Self, ConfigError> {
        let mut doc = Document {
            kind: String::new(),
            metadata: Metadata::default(),
            spec: Value::Mapping(Default::default()),
            ordinal,
            source: source.clone(),
        };
        let Value::Mapping(map) = value else {
            return Err(doc.error(
                "",
                "a document must be a mapping with apiVersion, kind, metadata and spec",
            ));
        };
        let mut api_version = None;
        let mut metadata = None;
        let mut unknown = None;
        for (k, v) in map {
            let key = k.as_str().unwrap_or_default().to_string();
            match key.as_str() {
                "apiVersion" => api_version = Some(v),
                "kind" => match v.as_str() {
                    Some(kind) if !kind.is_empty() => doc.kind = kind.to_string(),
                    _ => return Err(doc.error("kind", "must be a non-empty string")),
                },
                "metadata" => metadata = Some(v),
                "spec" => doc.spec = v,
                _ => {
                    unknown.get_or_insert(key);
                }
            }
        }
        if let Some(name) = metadata
            .as_ref()
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
        {
            // For messages only; checked below.
            doc.metadata.name = name.to_string();
        }
        match api_version.as_ref().map(|v| v.as_str()) {
            Some(Some(API_VERSION)) => {}
            Some(found) => {
                return Err(doc.error(
                    "apiVersion",
                    format_args!(
                        "must be {API_VERSION:?}, found {:?}",
                        found.unwrap_or("(not a string)")
                    ),
                ));
            }
            None => {
                return Err(doc.error(
                    "apiVersion",
                    format_args!("missing; must be {API_VERSION:?}"),
                ));
            }
        }
        if doc.kind.is_empty() {
            return Err(doc.error("kind", "missing"));
        }
        let Some(metadata) = metadata else {
            return Err(doc.error("metadata", "missing; metadata.name is required"));
        };
        doc.metadata = doc.deserialize_at("metadata", &metadata)?;
        if doc.metadata.name.trim().is_empty() {
            return Err(doc.error("metadata.name", "must not be empty"));
        }
        if let Some(key) = unknown {
            return Err(doc.error_at(
                &key,
                Place::Key,
                format_args!(
                    "unknown field {key:?}; a document has apiVersion, kind, metadata and spec"
                ),
            ));
        }
        Ok(doc)
    }

    /// The file this document came from.
    pub fn file(&self) -> &Path {
        &self.source.file
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// `Kind/name`, as errors and logs name a document.
    pub fn object(&self) -> String {
        format!("{}/{}", self.kind, self.metadata.name)
    }

    /// Reads `spec` as `T` (which should deny unknown fields). A missing `spec` reads
    /// as an empty mapping, so `T`'s required fields are reported by name.
    pub fn spec<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.deserialize_at("spec", &self.spec)
    }

    fn deserialize_at<T: DeserializeOwned>(
        &self,
        root: &str,
        value: &Value,
    ) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let inner = e.path().to_string();
            let field = if inner == "." || inner.is_empty() {
                root.to_string()
            } else if inner.starts_with('[') {
                format!("{root}{inner}")
            } else {
                format!("{root}.{inner}")
            };
            let reason = e.into_inner().to_string();
            // An unknown field is best shown at its key, a bad value at the value.
            let place = if reason.starts_with("unknown field") {
                Place::Key
            } else {
                Place::Value
            };
            self.error_at(&field, place, reason)
        })
    }

    /// An error about `field` (a path from the document root such as
    /// `spec.gslb[0].targets[1].cluster`), placed at that node, or at its nearest
    /// parent that is written in the file.
    pub fn error(&self, field: &str, reason: impl fmt::Display) -> ConfigError {
        self.error_at(field, Place::Value, reason)
    }

    fn error_at(&self, field: &str, place: Place, reason: impl fmt::Display) -> ConfigError {
        ConfigError {
            file: self.source.file.to_path_buf(),
            position: position::find_nearest(&self.source.text, self.ordinal, field, place),
            object: (!self.kind.is_empty() && !self.metadata.name.is_empty())
                .then(|| self.object()),
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Where `field` is written, if it is.
    pub fn position(&self, field: &str) -> Option<Position> {
        position::find(&self.source.text, self.ordinal, field)
    }

    /// The error for a kind this reader does not take: `unknown kind "X"; expected A, B or C`.
    pub fn unknown_kind(&self, expected: &[&str]) -> ConfigError {
        let list = match expected {
            [] => String::from("nothing"),
            [one] => one.to_string(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        self.error(
            "kind",
            format_args!("unknown kind {:?}; expected {list}", self.kind),
        )
    }
}

#[cfg(test)]
mod tests;
