//! Cluster identity.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A cluster's stable ID, such as `idc-bj` or `aws-sg`.
///
/// Valid IDs are DNS labels (RFC 1123): 1–63 characters of `a-z`, `0-9` and `-`,
/// starting and ending with an alphanumeric. That keeps IDs safe in URL paths
/// (`/clusters/<id>/…`), file names, metric labels and certificate names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterId(String);

/// Why a string is not a valid [`ClusterId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterIdError {
    /// Empty, or longer than 63 characters.
    #[error("cluster ID {0:?} must be 1 to 63 characters long")]
    Length(String),
    /// A character outside `a-z0-9-`, or a leading or trailing `-`.
    #[error(
        "cluster ID {0:?} must be lower-case letters, digits and '-', starting and ending with a letter or digit"
    )]
    Charset(String),
}

impl ClusterId {
    /// Checks `id` and wraps it.
    pub fn new(id: impl Into<String>) -> Result<Self, ClusterIdError> {
        let id = id.into();
        if id.is_empty() || id.len() > 63 {
            return Err(ClusterIdError::Length(id));
        }
        let ok_chars = id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_chars || id.starts_with('-') || id.ends_with('-') {
            return Err(ClusterIdError::Charset(id));
        }
        Ok(Self(id))
    }

    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string of 1–63 characters, lower-case letters, digits and `-` (the rules of
/// [`ClusterId::new`]), so the API server refuses what the loaders refuse.
impl schemars::JsonSchema for ClusterId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ClusterId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A cluster ID: a DNS label (lower-case letters, digits and '-').",
            "type": "string",
            "minLength": 1,
            "maxLength": 63,
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        })
    }
}

impl TryFrom<String> for ClusterId {
    type Error = ClusterIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl std::str::FromStr for ClusterId {
    type Err = ClusterIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl From<ClusterId> for String {
    fn from(id: ClusterId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "idc-bj", "aws-sg-1", "0abc"] {
            assert!(ClusterId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_unsafe_ids() {
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a/b",
            "a..b",
            "a\r\nb",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(ClusterId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_schema_pattern_matches_the_rules() {
        let schema = schemars::schema_for!(ClusterId);
        assert_eq!(schema.get("maxLength"), Some(&63.into()));
        assert!(schema.get("pattern").is_some());
    }

    #[test]
    fn serde_checks_on_the_way_in() {
        assert!(serde_json::from_str::<ClusterId>("\"idc-bj\"").is_ok());
        assert!(serde_json::from_str::<ClusterId>("\"../etc\"").is_err());
    }
}
