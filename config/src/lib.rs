//! One envelope for every Causeway configuration file.
//!
//! Every part reads Kubernetes-style YAML: a file holds documents separated by `---`,
//! each with `apiVersion: causeway.dev/v1alpha1`, a `kind`, `metadata` and a `spec`.
//! The same documents are custom resources in a hub cluster (production mode).
//!
//! Start here: [`read_file`] returns the file's [`Document`]s; a part dispatches on
//! [`Document::kind`] and reads each spec with [`Document::spec`]. Every error is a
//! [`ConfigError`] printed as `file:line:column: Kind/name: field.path: reason`, with
//! the position of the offending node as the YAML parser saw it.
//!
//! Module map:
//! * [`document`]: reading a file into checked documents; dispatch by kind.
//! * [`error`]: [`ConfigError`] and [`Position`].
//! * [`position`]: finds the line and column of a field path (only when an error needs it).
//! * [`duration`]: [`HumanDuration`], durations written `500ms`, `10s`, `5m`.
#![warn(missing_docs)]

pub mod document;
pub mod duration;
pub mod error;
pub mod position;

pub use document::{Document, Metadata, parse_str, read_file};
pub use duration::HumanDuration;
pub use error::{ConfigError, Position};

/// The only accepted `apiVersion` of every Causeway document.
pub const API_VERSION: &str = "causeway.dev/v1alpha1";
