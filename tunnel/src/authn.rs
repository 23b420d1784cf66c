//! Authentication on the users' listener: a client certificate from the stub CA, else
//! a bearer token. Every failure is a 401 ([`AuthnError`]); variant names double as
//! metric `reason` labels.
//!
//! rustls has already checked the certificate's chain and validity (a certificate from
//! another CA, or an expired one, never completes the handshake). Here we check what
//! only the stub knows: the certificate is a user certificate (not an agent's), its
//! serial was issued to that user and is not revoked, and the user still exists.
//! Groups come from the user store, not the certificate, and every authenticated
//! identity gets `system:authenticated`, as the Kubernetes API server adds it.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use rustls::pki_types::CertificateDer;

use crate::identity::Identity;
use crate::pki::user_from_cert;
use crate::users::UserStore;

/// The group every authenticated identity belongs to (as in Kubernetes).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Why a request is unauthenticated (→ 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// Neither a client certificate nor a bearer token.
    #[error("no client certificate and no bearer token")]
    NoCredentials,
    /// `Authorization` is not `Bearer <token>`, or appears more than once.
    #[error("the Authorization header must be a single 'Bearer <token>'")]
    MalformedAuthorization,
    /// The bearer token is unknown.
    #[error("invalid bearer token")]
    InvalidToken,
    /// The certificate is not a user certificate (e.g. an agent certificate).
    #[error("the client certificate is not a user certificate: {0}")]
    NotUserCert(String),
    /// The certificate's user is not (or no longer) a user of this stub.
    #[error("user {0:?} is unknown or was removed")]
    UnknownUser(String),
    /// The certificate's serial was not issued to this user by this stub.
    #[error("the client certificate of user {0:?} was not issued by this stub")]
    UnknownCert(String),
    /// The certificate was revoked (`causeway user remove`).
    #[error("the client certificate of user {0:?} was revoked")]
    Revoked(String),
    /// The principal holds a control character or is otherwise unusable.
    #[error("invalid principal: {0}")]
    InvalidPrincipal(String),
}

impl AuthnError {
    /// The variant name, for a metric `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthnError::NoCredentials => "NoCredentials",
            AuthnError::MalformedAuthorization => "MalformedAuthorization",
            AuthnError::InvalidToken => "InvalidToken",
            AuthnError::NotUserCert(_) => "NotUserCert",
            AuthnError::UnknownUser(_) => "UnknownUser",
            AuthnError::UnknownCert(_) => "UnknownCert",
            AuthnError::Revoked(_) => "Revoked",
            AuthnError::InvalidPrincipal(_) => "InvalidPrincipal",
        }
    }
}

/// Authenticates a request. A presented client certificate decides alone (no fallback
/// to a token when it fails); without one, a single `Authorization: Bearer <token>`
/// is looked up in constant time.
///
/// `peer_cert` must be the end-entity certificate rustls verified for this connection.
pub fn authenticate(
    peer_cert: Option<&CertificateDer<'_>>,
    headers: &HeaderMap,
    users: &UserStore,
) -> Result<Identity, AuthnError> {
    let identity = match peer_cert {
        Some(cert) => from_cert(cert, users)?,
        None => from_token(headers, users)?,
    };
    with_authenticated_group(identity)
}

fn from_cert(cert: &CertificateDer<'_>, users: &UserStore) -> Result<Identity, AuthnError> {
    let cu = user_from_cert(cert).map_err(|e| AuthnError::NotUserCert(e.to_string()))?;
    if users.is_revoked(&cu.serial) {
        return Err(AuthnError::Revoked(cu.user));
    }
    let Some(record) = users.user(&cu.user) else {
        return Err(AuthnError::UnknownUser(cu.user));
    };
    if users.owner_of(&cu.serial) != Some(record.name.as_str()) {
        return Err(AuthnError::UnknownCert(cu.user));
    }
    Identity::user(record.name.clone(), record.groups.clone())
        .map_err(|e| AuthnError::InvalidPrincipal(e.to_string()))
}

fn from_token(headers: &HeaderMap, users: &UserStore) -> Result<Identity, AuthnError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthnError::NoCredentials);
    };
    if values.next().is_some() {
        return Err(AuthnError::MalformedAuthorization);
    }
    let value = value
        .to_str()
        .map_err(|_| AuthnError::MalformedAuthorization)?;
    // RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; the scheme is
    // case-insensitive (RFC 9110 §11.1).
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthnError::MalformedAuthorization)?;
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthnError::MalformedAuthorization);
    }
    users
        .identity_for_token(token)
        .ok_or(AuthnError::InvalidToken)
}

fn with_authenticated_group(id: Identity) -> Result<Identity, AuthnError> {
    let mut groups = id.groups;
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    Identity::new(id.user, id.uid, groups, id.extra)
        .map_err(|e| AuthnError::InvalidPrincipal(e.to_string()))
}

#[cfg(test)]
mod tests;
