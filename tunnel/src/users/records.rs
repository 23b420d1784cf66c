//! The user records in the stub's state directory (`users.yaml`, `revoked.yaml`) and
//! what `causeway user add|list|remove` does to them.
//!
//! Removing a user deletes their record and revokes every certificate serial issued
//! to them; the stub refuses those certificates (401) once it has reloaded its
//! [`super::store::UserStore`].

use std::time::{Duration, SystemTime};

use base64::Engine;
use causeway_model::ClusterId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::token_file::TokenFileError;
use crate::authz::{check_glob, glob_match};
use crate::identity::{Secret, check_field};
use crate::pki::{Ca, IssuedCert, PkiError, check_user_name};
use crate::state::{StateDir, StateError};

/// File of user records in the state directory.
pub const USERS_FILE: &str = "users.yaml";
/// File of revoked certificate serials in the state directory.
pub const REVOKED_FILE: &str = "revoked.yaml";

/// One user, as recorded by `causeway user add`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserRecord {
    /// User name (certificate CN, `Impersonate-User`).
    pub name: String,
    /// Groups (`Impersonate-Group`); authoritative over the certificate's `O`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Cluster globs this user may reach.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// Only get, list and watch.
    #[serde(default)]
    pub read_only: bool,
    /// Certificates issued to this user.
    #[serde(default)]
    pub certs: Vec<CertRecord>,
    /// Bearer tokens issued to this user (`user add --token`), as SHA-256 hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenRecord>,
}

/// A bearer token issued to a user; only its hash is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Prefix of bearer tokens issued by `causeway user add --token`.
pub const USER_TOKEN_PREFIX: &str = "cwt_";

/// A certificate issued to a user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertRecord {
    /// Serial, lower-case hex.
    pub serial: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
}

/// `users.yaml`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsersFile {
    #[serde(default)]
    pub(crate) users: Vec<UserRecord>,
}

/// A revoked certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevokedCert {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Whose it was.
    pub user: String,
    /// When, RFC 3339.
    pub revoked_at: String,
}

/// `revoked.yaml`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokedFile {
    #[serde(default)]
    pub(crate) revoked: Vec<RevokedCert>,
}

/// Errors managing users; each names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Reading or writing the state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// Issuing a certificate.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A bad argument or record.
    #[error("{field}: {reason}")]
    Invalid {
        /// The argument or field (`--clusters`, `users.yaml: users[2].name`, …).
        field: String,
        /// Why.
        reason: String,
    },
    /// No such user.
    #[error("no user {0:?} in the state directory")]
    NoSuchUser(String),
    /// The static token file.
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> UsersError {
    UsersError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// What `causeway user add` asks for.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// User name.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Cluster globs (`idc-*`, `aws-sg`, `*`).
    pub clusters: Vec<String>,
    /// Only get, list and watch.
    pub read_only: bool,
    /// Certificate lifetime.
    pub ttl: Duration,
}

/// The result of [`add_user`].
#[derive(Debug)]
pub struct AddedUser {
    /// The stored record.
    pub record: UserRecord,
    /// The new client certificate and key.
    pub cert: IssuedCert,
    /// The clusters that get a kubeconfig context.
    pub contexts: Vec<ClusterId>,
    /// Whether the user existed before (the record was updated, old certs stay valid).
    pub updated: bool,
}

/// Checks the arguments, issues a client certificate and records the user (adding to
/// an existing record: groups, clusters and read-only are replaced, the new cert is
/// appended). `known_clusters` are the clusters globs are expanded against for
/// kubeconfig contexts; a literal cluster ID is always included.
pub fn add_user(
    state: &StateDir,
    ca: &Ca,
    new: &NewUser,
    known_clusters: &[ClusterId],
) -> Result<AddedUser, UsersError> {
    check_user_name(&new.name).map_err(|e| invalid("user name", e.to_string()))?;
    for g in &new.groups {
        check_field("group", g).map_err(|e| invalid("--group", e.to_string()))?;
        if g.is_empty() {
            return Err(invalid("--group", "empty group name"));
        }
    }
    if new.clusters.is_empty() {
        return Err(invalid(
            "--clusters",
            "name at least one cluster or glob (e.g. 'idc-*')",
        ));
    }
    for c in &new.clusters {
        check_glob(c).map_err(|r| invalid("--clusters", r))?;
    }
    if new.ttl.is_zero() {
        return Err(invalid("--ttl", "must be more than 0"));
    }
    let contexts = contexts_for(&new.clusters, known_clusters);
    let cert = ca.issue_user(&new.name, &new.groups, new.ttl)?;
    let _lock = state.lock()?;
    let mut file: UsersFile = state.read_yaml(USERS_FILE)?;
    let cert_record = CertRecord {
        serial: cert.serial.clone(),
        not_after: humantime::format_rfc3339_seconds(cert.not_after).to_string(),
    };
    let updated;
    let record = match file.users.iter_mut().find(|u| u.name == new.name) {
        Some(u) => {
            updated = true;
            u.groups = new.groups.clone();
            u.clusters = new.clusters.clone();
            u.read_only = new.read_only;
            u.certs.push(cert_record);
            u.clone()
        }
        None => {
            updated = false;
            let u = UserRecord {
                name: new.name.clone(),
                groups: new.groups.clone(),
                clusters: new.clusters.clone(),
                read_only: new.read_only,
                certs: vec![cert_record],
                tokens: Vec::new(),
            };
            file.users.push(u.clone());
            u
        }
    };
    state.write_yaml(USERS_FILE, &file)?;
    Ok(AddedUser {
        record,
        cert,
        contexts,
        updated,
    })
}

/// The scheduler's user at the stub.
pub const SCHEDULER_USER: &str = "causeway-scheduler";
/// The scheduler's group (what `examples/scheduler/member-rbac.yaml` binds).
pub const SCHEDULER_GROUP: &str = "causeway:schedulers";
/// Lifetime of the scheduler's certificate.
pub const SCHEDULER_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Records user [`SCHEDULER_USER`] (group [`SCHEDULER_GROUP`], every cluster) with a new
/// certificate and returns its kubeconfig: one context per cluster of `contexts`, each at
/// `<users_url>/clusters/<id>`, trusting only the stub CA. `causeway hub` writes it to a
/// file; the stub in production mode stores it in a Secret.
pub fn scheduler_identity(
    state: &StateDir,
    ca: &Ca,
    users_url: &str,
    contexts: &[ClusterId],
) -> Result<String, UsersError> {
    let new = NewUser {
        name: SCHEDULER_USER.into(),
        groups: vec![SCHEDULER_GROUP.into()],
        clusters: vec!["*".into()],
        read_only: false,
        ttl: SCHEDULER_CERT_TTL,
    };
    // Checked first, so a bad URL records nothing.
    super::kubeconfig::check_stub_url(users_url)?;
    let added = add_user(state, ca, &new, contexts)?;
    super::kubeconfig::kubeconfig_yaml(users_url, &ca.cert_pem(), &new.name, &added.cert, contexts)
}

/// Issues a bearer token for an existing user (`causeway user add --token`): 32
/// random bytes, prefix `cwt_`, shown once, stored as SHA-256 in the user's record. It
/// authenticates as the user with the user's groups until `user remove`.
pub fn issue_user_token(state: &StateDir, name: &str) -> Result<Secret, UsersError> {
    let _lock = state.lock()?;
    let mut file: UsersFile = state.read_yaml(USERS_FILE)?;
    let Some(user) = file.users.iter_mut().find(|u| u.name == name) else {
        return Err(UsersError::NoSuchUser(name.to_owned()));
    };
    let raw: [u8; 32] = rand::random();
    let token = Secret::new(format!(
        "{USER_TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    ));
    user.tokens.push(TokenRecord {
        sha256: hex::encode(Sha256::digest(token.expose().as_bytes())),
        created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    });
    state.write_yaml(USERS_FILE, &file)?;
    Ok(token)
}

/// The clusters matching `globs`: known clusters matching any glob, plus literal IDs.
pub fn contexts_for(globs: &[String], known: &[ClusterId]) -> Vec<ClusterId> {
    let mut out: Vec<ClusterId> = known
        .iter()
        .filter(|c| globs.iter().any(|g| glob_match(g, c.as_str())))
        .cloned()
        .collect();
    for g in globs {
        if !g.contains(['*', '?'])
            && let Ok(id) = ClusterId::new(g.clone())
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    out.sort();
    out
}

/// Every recorded user.
pub fn list_users(state: &StateDir) -> Result<Vec<UserRecord>, UsersError> {
    let file: UsersFile = state.read_yaml(USERS_FILE)?;
    Ok(file.users)
}

/// Deletes a user's record and revokes every certificate issued to them. Returns the
/// revoked serials.
pub fn remove_user(state: &StateDir, name: &str) -> Result<Vec<String>, UsersError> {
    let _lock = state.lock()?;
    let mut file: UsersFile = state.read_yaml(USERS_FILE)?;
    let Some(pos) = file.users.iter().position(|u| u.name == name) else {
        return Err(UsersError::NoSuchUser(name.to_owned()));
    };
    let user = file.users.remove(pos);
    let mut revoked: RevokedFile = state.read_yaml(REVOKED_FILE)?;
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let serials: Vec<String> = user.certs.iter().map(|c| c.serial.clone()).collect();
    for s in &serials {
        if !revoked.revoked.iter().any(|r| &r.serial == s) {
            revoked.revoked.push(RevokedCert {
                serial: s.clone(),
                user: user.name.clone(),
                revoked_at: now.clone(),
            });
        }
    }
    // Revoke first: a crash between the two writes leaves a revoked cert of a still
    // recorded user, which is refused, rather than a removed user whose cert works.
    state.write_yaml(REVOKED_FILE, &revoked)?;
    state.write_yaml(USERS_FILE, &file)?;
    Ok(serials)
}
