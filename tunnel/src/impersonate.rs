//! Impersonation: the stub refuses it from clients; the agent sets it for the member
//! cluster's API server.
//!
//! From the Kubernetes documentation, "User impersonation":
//!
//! > The following HTTP headers can be used to performing an impersonation request:
//! > - `Impersonate-User`: The username to act as.
//! > - `Impersonate-Uid`: A unique identifier that represents the user being
//! >   impersonated. Optional. Requires "Impersonate-User".
//! > - `Impersonate-Group`: A group name to act as. Can be provided multiple times to set
//! >   multiple groups. Optional. Requires "Impersonate-User".
//! > - `Impersonate-Extra-( extra name )`: A dynamic header used to associate extra
//! >   fields with the user. Optional. Requires "Impersonate-User". In order to be
//! >   preserved consistently, `( extra name )` must be lower-case, and any characters
//! >   which aren't legal in HTTP header labels MUST be utf8 and percent-encoded.
//!
//! The agent's ServiceAccount needs the `impersonate` verb on `users`, `groups`,
//! `uids` and `userextras/*` and nothing else (never `system:masters`).

use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::identity::{Identity, check_field};

/// Prefix of every impersonation header (header names are case-insensitive; the
/// `http` crate stores them lower-case).
pub const IMPERSONATE_PREFIX: &str = "impersonate-";
/// `Impersonate-User`.
pub const IMPERSONATE_USER: &str = "impersonate-user";
/// `Impersonate-Group` (one per group).
pub const IMPERSONATE_GROUP: &str = "impersonate-group";
/// `Impersonate-Uid`.
pub const IMPERSONATE_UID: &str = "impersonate-uid";
/// `Impersonate-Extra-` followed by the percent-encoded key.
pub const IMPERSONATE_EXTRA_PREFIX: &str = "impersonate-extra-";

/// Why impersonation was refused or could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpersonationError {
    /// The client sent an `Impersonate-*` header (e.g. `kubectl --as`): → 403.
    #[error(
        "impersonation through the Causeway stub is not allowed (the request carries the header {header:?}); \
         the stub impersonates the user it authenticated, so drop --as/--as-group/--as-uid"
    )]
    ClientImpersonation {
        /// The offending header name.
        header: String,
    },
    /// A principal cannot be put in a header (control characters, …).
    #[error("cannot impersonate {field} {value:?}: {reason}")]
    InvalidValue {
        /// `user`, `group`, `uid`, `extra key`, `extra value` or `service account token`.
        field: &'static str,
        /// The value (never the token: that is shown as MASKED).
        value: String,
        /// Why.
        reason: String,
    },
}

/// Stub side: refuses any header whose name starts with `impersonate-`
/// (case-insensitive), so `kubectl --as` gets a clear 403 rather than silently acting
/// as the authenticated user.
pub fn reject_client_impersonation(headers: &HeaderMap) -> Result<(), ImpersonationError> {
    match headers
        .keys()
        .find(|name| is_impersonation_header(name.as_str()))
    {
        Some(name) => Err(ImpersonationError::ClientImpersonation {
            header: name.as_str().to_owned(),
        }),
        None => Ok(()),
    }
}

fn is_impersonation_header(name: &str) -> bool {
    name.len() >= IMPERSONATE_PREFIX.len()
        && name[..IMPERSONATE_PREFIX.len()].eq_ignore_ascii_case(IMPERSONATE_PREFIX)
}

/// Agent side: removes every `Authorization`, `Proxy-Authorization` and
/// `Impersonate-*` header (by prefix, case-insensitive, all values), then sets
/// `Impersonate-User`, one `Impersonate-Group` per group, `Impersonate-Uid`,
/// `Impersonate-Extra-<key>` per extra value, and `Authorization: Bearer <sa_token>`.
///
/// Nothing the client sent survives: values are inserted after the removal, never
/// appended to client values. On error the headers hold no credentials at all.
pub fn rewrite_for_apiserver(
    headers: &mut HeaderMap,
    id: &Identity,
    sa_token: &str,
) -> Result<(), ImpersonationError> {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            is_impersonation_header(n.as_str()) || *n == AUTHORIZATION || *n == PROXY_AUTHORIZATION
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }

    let mut set: Vec<(HeaderName, HeaderValue)> = Vec::new();
    set.push((
        HeaderName::from_static(IMPERSONATE_USER),
        value("user", &id.user)?,
    ));
    for g in &id.groups {
        set.push((
            HeaderName::from_static(IMPERSONATE_GROUP),
            value("group", g)?,
        ));
    }
    if let Some(uid) = &id.uid {
        set.push((HeaderName::from_static(IMPERSONATE_UID), value("uid", uid)?));
    }
    for (key, values) in &id.extra {
        check("extra key", key)?;
        let name = format!("{IMPERSONATE_EXTRA_PREFIX}{}", escape_extra_key(key));
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
            ImpersonationError::InvalidValue {
                field: "extra key",
                value: key.clone(),
                reason: e.to_string(),
            }
        })?;
        for v in values {
            set.push((name.clone(), value("extra value", v)?));
        }
    }
    let mut bearer = HeaderValue::from_str(&format!("Bearer {sa_token}")).map_err(|_| {
        ImpersonationError::InvalidValue {
            field: "service account token",
            value: "MASKED".into(),
            reason: "not a valid header value".into(),
        }
    })?;
    bearer.set_sensitive(true);
    set.push((AUTHORIZATION, bearer));

    for (name, v) in set {
        headers.append(name, v);
    }
    Ok(())
}

fn check(field: &'static str, v: &str) -> Result<(), ImpersonationError> {
    check_field(field, v).map_err(|e| ImpersonationError::InvalidValue {
        field,
        value: v.to_owned(),
        reason: e.to_string(),
    })
}

fn value(field: &'static str, v: &str) -> Result<HeaderValue, ImpersonationError> {
    check(field, v)?;
    HeaderValue::from_bytes(v.as_bytes()).map_err(|e| ImpersonationError::InvalidValue {
        field,
        value: v.to_owned(),
        reason: e.to_string(),
    })
}

/// Encodes an extra key for an `Impersonate-Extra-` header name as client-go does
/// (`headerKeyEscape`): lower-cased, then every byte that is not an RFC 7230 `tchar`,
/// and `%` itself, becomes `%XX`.
pub fn escape_extra_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.to_lowercase().bytes() {
        let tchar = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        if tchar {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
