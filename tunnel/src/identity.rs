//! Who is making a request: the principal the stub authenticated and the agent
//! impersonates on the member cluster.
//!
//! Every field ends up in an HTTP header (`Impersonate-User`, `Impersonate-Group`, …)
//! and in audit logs, so [`Identity::new`] refuses control characters everywhere:
//! a CR/LF in a user name would otherwise split headers or forge log lines.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An authenticated principal, in the shape of Kubernetes `user.Info`.
///
/// Build it with [`Identity::new`] (or deserialize it, which runs the same checks),
/// so that an `Identity` value always holds header-safe strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawIdentity", into = "RawIdentity")]
pub struct Identity {
    /// User name (`Impersonate-User`, audit `user.username`).
    pub user: String,
    /// Optional unique ID (`Impersonate-Uid`).
    pub uid: Option<String>,
    /// Group names (one `Impersonate-Group` header each).
    pub groups: Vec<String>,
    /// Extra attributes (`Impersonate-Extra-<key>`).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The unchecked wire form of [`Identity`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<String, Vec<String>>,
}

/// Why a principal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The user name is empty.
    #[error("user name is empty")]
    EmptyUser,
    /// A field holds a control character (CR, LF, NUL, any C0 or DEL).
    #[error("{field} {value:?} contains a control character")]
    ControlCharacter {
        /// Which field (`user`, `uid`, `group`, `extra key`, `extra value`).
        field: &'static str,
        /// The offending value, escaped by `Debug`.
        value: String,
    },
    /// A field is longer than [`MAX_FIELD_LEN`] bytes.
    #[error("{field} is longer than {MAX_FIELD_LEN} bytes")]
    TooLong {
        /// Which field.
        field: &'static str,
    },
    /// An empty group name, uid or extra key.
    #[error("{field} is empty")]
    Empty {
        /// Which field.
        field: &'static str,
    },
}

/// Longest accepted value of any identity field, in bytes.
pub const MAX_FIELD_LEN: usize = 1024;

/// Checks one field: not too long, no control character.
///
/// Control characters are the C0 range (U+0000–U+001F, which holds NUL, CR and LF),
/// DEL (U+007F) and the C1 range (U+0080–U+009F).
pub fn check_field(field: &'static str, value: &str) -> Result<(), IdentityError> {
    if value.len() > MAX_FIELD_LEN {
        return Err(IdentityError::TooLong { field });
    }
    if value.chars().any(char::is_control) {
        return Err(IdentityError::ControlCharacter {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

impl Identity {
    /// Checks every field and builds the identity.
    pub fn new(
        user: impl Into<String>,
        uid: Option<String>,
        groups: Vec<String>,
        extra: BTreeMap<String, Vec<String>>,
    ) -> Result<Self, IdentityError> {
        let user = user.into();
        if user.is_empty() {
            return Err(IdentityError::EmptyUser);
        }
        check_field("user", &user)?;
        if let Some(uid) = &uid {
            if uid.is_empty() {
                return Err(IdentityError::Empty { field: "uid" });
            }
            check_field("uid", uid)?;
        }
        for g in &groups {
            if g.is_empty() {
                return Err(IdentityError::Empty { field: "group" });
            }
            check_field("group", g)?;
        }
        for (k, vs) in &extra {
            if k.is_empty() {
                return Err(IdentityError::Empty { field: "extra key" });
            }
            check_field("extra key", k)?;
            for v in vs {
                check_field("extra value", v)?;
            }
        }
        Ok(Self {
            user,
            uid,
            groups,
            extra,
        })
    }

    /// A user with groups and nothing else.
    pub fn user(user: impl Into<String>, groups: Vec<String>) -> Result<Self, IdentityError> {
        Self::new(user, None, groups, BTreeMap::new())
    }
}

impl TryFrom<RawIdentity> for Identity {
    type Error = IdentityError;
    fn try_from(r: RawIdentity) -> Result<Self, Self::Error> {
        Identity::new(r.user, r.uid, r.groups, r.extra)
    }
}

impl From<Identity> for RawIdentity {
    fn from(i: Identity) -> Self {
        RawIdentity {
            user: i.user,
            uid: i.uid,
            groups: i.groups,
            extra: i.extra,
        }
    }
}

/// A secret string (a token or a private key in PEM) whose `Debug` prints `MASKED`,
/// so it never reaches a log line by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; use only to send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MASKED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_control_characters_in_every_field() {
        let bad = ["a\rb", "a\nb", "a\0b", "a\x1bb", "a\x7fb", "a\u{85}b", "\t"];
        for b in bad {
            assert!(Identity::user(b, vec![]).is_err(), "user {b:?}");
            assert!(Identity::user("ok", vec![b.into()]).is_err(), "group {b:?}");
            assert!(
                Identity::new("ok", Some(b.into()), vec![], BTreeMap::new()).is_err(),
                "uid {b:?}"
            );
            let extra = BTreeMap::from([(b.to_owned(), vec!["v".to_owned()])]);
            assert!(
                Identity::new("ok", None, vec![], extra).is_err(),
                "key {b:?}"
            );
            let extra = BTreeMap::from([("k".to_owned(), vec![b.to_owned()])]);
            assert!(
                Identity::new("ok", None, vec![], extra).is_err(),
                "value {b:?}"
            );
        }
    }

    #[test]
    fn accepts_ordinary_principals() {
        for ok in [
            "alice",
            "system:serviceaccount:ns:sa",
            "bob@example.com",
            "李雷",
        ] {
            let id = Identity::user(ok, vec!["dev".into(), "system:authenticated".into()]);
            assert!(id.is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_empty_and_long_values() {
        assert_eq!(Identity::user("", vec![]), Err(IdentityError::EmptyUser));
        assert!(Identity::user("a", vec![String::new()]).is_err());
        assert!(Identity::user("a".repeat(MAX_FIELD_LEN + 1), vec![]).is_err());
    }

    #[test]
    fn secret_debug_is_masked() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "MASKED");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn serde_runs_the_same_checks() {
        let ok: Identity = serde_json::from_str(r#"{"user":"alice","groups":["dev"]}"#).unwrap();
        assert_eq!(ok.groups, vec!["dev".to_owned()]);
        assert!(serde_json::from_str::<Identity>(r#"{"user":"a\r\nb"}"#).is_err());
        assert!(serde_json::from_str::<Identity>(r#"{"user":"a","bogus":1}"#).is_err());
        let round: Identity = serde_json::from_str(&serde_json::to_string(&ok).unwrap()).unwrap();
        assert_eq!(round, ok);
    }
}
