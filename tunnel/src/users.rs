//! Users of the stub: client certificates and kubeconfigs (`causeway user add`), the
//! records behind them (`users.yaml`, `revoked.yaml` in the state directory), static
//! bearer tokens (a kube-apiserver style `--token-auth-file`), and [`UserStore`], the
//! snapshot [`crate::authn`] checks requests against.
//!
//! Removing a user deletes their record and revokes every certificate serial issued
//! to them; the stub refuses those certificates (401) once it has reloaded the store
//! ([`UserStoreHandle::watch`] polls the files).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use causeway_model::ClusterId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::authz::{AccessPolicy, Rule, Subjects, check_glob, glob_match};
use crate::identity::{Identity, Secret, check_field};
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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserRecord>,
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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokedFile {
    #[serde(default)]
    revoked: Vec<RevokedCert>,
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
    /// The token file could not be read.
    #[error("{path}: {source}")]
    TokenFileRead {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the token file is malformed.
    #[error("{path}:{line}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why (never the token itself).
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> UsersError {
    UsersError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

// === adding, listing, removing ===

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
        sha256: hex(&Sha256::digest(token.expose().as_bytes())),
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

// === kubeconfig ===

/// A kubeconfig for `user` with one context per cluster, each pointing at
/// `<stub_url>/clusters/<id>` and trusting only the stub CA. The first context is
/// current.
pub fn kubeconfig_yaml(
    stub_url: &str,
    ca_pem: &str,
    user: &str,
    cert: &IssuedCert,
    clusters: &[ClusterId],
) -> Result<String, UsersError> {
    let base = stub_url.trim_end_matches('/');
    if !base.starts_with("https://") || base.len() <= "https://".len() {
        return Err(invalid(
            "--stub-url",
            format!("{stub_url:?} must be an https:// URL"),
        ));
    }
    if base.contains(['?', '#']) || base.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(
            "--stub-url",
            format!("{stub_url:?} must not hold a query, fragment, space or control character"),
        ));
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let kc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        current_context: clusters.first().map(|c| c.to_string()).unwrap_or_default(),
        preferences: BTreeMap::new(),
        clusters: clusters
            .iter()
            .map(|c| NamedCluster {
                name: c.to_string(),
                cluster: KcCluster {
                    server: format!("{base}/clusters/{c}"),
                    certificate_authority_data: b64(ca_pem),
                },
            })
            .collect(),
        users: vec![NamedUser {
            name: user.to_owned(),
            user: KcUser {
                client_certificate_data: b64(&cert.cert_pem),
                client_key_data: b64(cert.key_pem.expose()),
            },
        }],
        contexts: clusters
            .iter()
            .map(|c| NamedContext {
                name: c.to_string(),
                context: KcContext {
                    cluster: c.to_string(),
                    user: user.to_owned(),
                },
            })
            .collect(),
    };
    serde_yaml_ng::to_string(&kc).map_err(|e| invalid("kubeconfig", e.to_string()))
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
    contexts: Vec<NamedContext>,
    current_context: String,
    preferences: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct NamedCluster {
    name: String,
    cluster: KcCluster,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct KcCluster {
    server: String,
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct NamedUser {
    name: String,
    user: KcUser,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct KcUser {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct NamedContext {
    name: String,
    context: KcContext,
}

#[derive(Serialize)]
struct KcContext {
    cluster: String,
    user: String,
}

// === static bearer tokens ===

/// One line of a token file: `token,user,uid,"group1,group2"`.
#[derive(Clone, Debug)]
pub struct StaticToken {
    /// The token (masked in `Debug`).
    pub token: Secret,
    /// Who it authenticates.
    pub identity: Identity,
}

/// Parses a kube-apiserver style `--token-auth-file`: CSV lines
/// `token,user,uid[,"group1,group2"]`; empty lines and lines starting with `#` are
/// skipped. "The token file is a csv file with a minimum of 3 columns: token, user
/// name, user uid, followed by optional group names."
pub fn parse_token_file(text: &str, path: &Path) -> Result<Vec<StaticToken>, UsersError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let bad = |reason: String| UsersError::TokenFile {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        let fields = split_csv(line).map_err(bad)?;
        if fields.len() < 3 {
            return Err(bad(format!(
                "expected token,user,uid[,groups]; found {} column(s)",
                fields.len()
            )));
        }
        let token = fields[0].clone();
        if token.len() < 16 {
            return Err(bad("token is shorter than 16 characters".into()));
        }
        if token.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(bad("token holds a space or non-printable character".into()));
        }
        if !seen.insert(token.clone()) {
            return Err(bad("token appears twice".into()));
        }
        let uid = (!fields[2].is_empty()).then(|| fields[2].clone());
        let groups: Vec<String> = fields
            .get(3..)
            .unwrap_or_default()
            .iter()
            .flat_map(|f| f.split(','))
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        let identity = Identity::new(fields[1].clone(), uid, groups, BTreeMap::new())
            .map_err(|e| bad(e.to_string()))?;
        out.push(StaticToken {
            token: Secret::new(token),
            identity,
        });
    }
    Ok(out)
}

/// Splits one CSV line (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() && !was_quoted => {
                in_quotes = true;
                was_quoted = true;
            }
            (false, '"') => return Err("stray '\"' inside an unquoted field".into()),
            (false, ',') => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, c) => {
                if was_quoted {
                    return Err("text after a closing quote".into());
                }
                cur.push(c)
            }
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

fn hex(bytes: &[u8]) -> String {
    crate::hex::encode(bytes)
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

// === the store the stub checks ===

/// What a bearer token maps to.
#[derive(Clone, Debug)]
struct TokenEntry {
    hash: [u8; 32],
    identity: Identity,
}

/// A snapshot of users, revocations and bearer tokens, as the stub checks them.
#[derive(Clone, Debug, Default)]
pub struct UserStore {
    users: HashMap<String, UserRecord>,
    /// serial → user it was issued to.
    serials: HashMap<String, String>,
    revoked: HashSet<String>,
    tokens: Vec<TokenEntry>,
    policy: AccessPolicy,
}

impl UserStore {
    /// Loads `users.yaml` and `revoked.yaml` from `state_dir`, and the token file if
    /// one is given.
    pub fn load(state_dir: &Path, token_file: Option<&Path>) -> Result<Self, UsersError> {
        let state = StateDir::open(state_dir)?;
        let users: UsersFile = state.read_yaml(USERS_FILE)?;
        let revoked: RevokedFile = state.read_yaml(REVOKED_FILE)?;
        let tokens = match token_file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| UsersError::TokenFileRead {
                        path: p.to_owned(),
                        source,
                    })?;
                parse_token_file(&text, p)?
            }
            None => Vec::new(),
        };
        Self::from_parts(
            users.users,
            revoked.revoked,
            tokens,
            &state.file(USERS_FILE),
        )
    }

    /// Builds a store from records (checked as a file's would be).
    pub fn from_parts(
        users: Vec<UserRecord>,
        revoked: Vec<RevokedCert>,
        tokens: Vec<StaticToken>,
        source: &Path,
    ) -> Result<Self, UsersError> {
        let mut store = UserStore::default();
        let mut rules = Vec::new();
        let mut user_tokens = Vec::new();
        for (i, u) in users.into_iter().enumerate() {
            let field = |f: &str| format!("{}: users[{i}].{f}", source.display());
            check_user_name(&u.name).map_err(|e| invalid(field("name"), e.to_string()))?;
            Identity::user(u.name.clone(), u.groups.clone())
                .map_err(|e| invalid(field("groups"), e.to_string()))?;
            for c in &u.clusters {
                check_glob(c).map_err(|r| invalid(field("clusters"), r))?;
            }
            for c in &u.certs {
                store.serials.insert(c.serial.clone(), u.name.clone());
            }
            for (j, t) in u.tokens.iter().enumerate() {
                let hash = unhex32(&t.sha256).ok_or_else(|| {
                    invalid(field(&format!("tokens[{j}].sha256")), "not 64 hex digits")
                })?;
                let identity = Identity::user(u.name.clone(), u.groups.clone())
                    .map_err(|e| invalid(field("groups"), e.to_string()))?;
                user_tokens.push(TokenEntry { hash, identity });
            }
            if !u.clusters.is_empty() {
                rules.push(Rule {
                    subjects: Subjects {
                        users: vec![u.name.clone()],
                        groups: Vec::new(),
                    },
                    clusters: u.clusters.clone(),
                    read_only: u.read_only,
                });
            }
            if store.users.insert(u.name.clone(), u).is_some() {
                return Err(invalid(field("name"), "user appears twice"));
            }
        }
        store.revoked = revoked.into_iter().map(|r| r.serial).collect();
        store.tokens = tokens
            .into_iter()
            .map(|t| TokenEntry {
                hash: Sha256::digest(t.token.expose().as_bytes()).into(),
                identity: t.identity,
            })
            .chain(user_tokens)
            .collect();
        store.policy = AccessPolicy::from_rules(rules)
            .map_err(|e| invalid(source.display().to_string(), e.to_string()))?;
        Ok(store)
    }

    /// A recorded user.
    pub fn user(&self, name: &str) -> Option<&UserRecord> {
        self.users.get(name)
    }

    /// Whether `serial` is revoked.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.revoked.contains(serial)
    }

    /// The user `serial` was issued to, if any.
    pub fn owner_of(&self, serial: &str) -> Option<&str> {
        self.serials.get(serial).map(String::as_str)
    }

    /// The identity a bearer token maps to. Every entry is compared, in constant time
    /// over SHA-256 digests, so timing tells nothing about near misses.
    pub fn identity_for_token(&self, token: &str) -> Option<Identity> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.tokens {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some(entry.identity.clone());
            }
        }
        found
    }

    /// Authorizes against `file_policy` (the stub's `spec.accessPolicy`) and then the
    /// rules recorded with users; allowed if either allows. A read-only refusal is
    /// reported over a "no rule" one, so the message says what the user can do.
    pub fn authorize(
        &self,
        file_policy: &AccessPolicy,
        id: &Identity,
        cluster: &ClusterId,
        verb: crate::authz::Verb,
    ) -> Result<(), crate::authz::AuthzError> {
        match file_policy.authorize(id, cluster, verb) {
            Ok(()) => Ok(()),
            Err(first) => match self.policy.authorize(id, cluster, verb) {
                Ok(()) => Ok(()),
                Err(e @ crate::authz::AuthzError::ReadOnly { .. }) => Err(e),
                Err(_) => Err(first),
            },
        }
    }

    /// The access rules recorded with users (`causeway user add --clusters`): the stub
    /// authorizes against its policy file merged with these
    /// (`file_policy.merged(store.access_policy())`).
    pub fn access_policy(&self) -> &AccessPolicy {
        &self.policy
    }
}

/// A [`UserStore`] the stub shares between connections and reloads when its files
/// change; a failed reload keeps the last good store.
#[derive(Clone, Debug)]
pub struct UserStoreHandle {
    current: Arc<RwLock<Arc<UserStore>>>,
    state_dir: PathBuf,
    token_file: Option<PathBuf>,
}

impl UserStoreHandle {
    /// Loads the store.
    pub fn load(state_dir: &Path, token_file: Option<&Path>) -> Result<Self, UsersError> {
        let store = UserStore::load(state_dir, token_file)?;
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(store))),
            state_dir: state_dir.to_owned(),
            token_file: token_file.map(Path::to_owned),
        })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<UserStore> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads now; on error the old store stays.
    pub fn reload(&self) -> Result<(), UsersError> {
        let store = Arc::new(UserStore::load(
            &self.state_dir,
            self.token_file.as_deref(),
        )?);
        match self.current.write() {
            Ok(mut g) => *g = store,
            Err(poisoned) => *poisoned.into_inner() = store,
        }
        Ok(())
    }

    fn fingerprint(&self) -> Vec<Option<(SystemTime, u64)>> {
        let mut files = vec![
            self.state_dir.join(USERS_FILE),
            self.state_dir.join(REVOKED_FILE),
        ];
        files.extend(self.token_file.clone());
        files
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }

    /// Polls the files every `period` and reloads when one changed (by modification
    /// time or size). Runs until the returned task is aborted.
    pub fn watch(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        // Taken now, not when the task first runs, so a change in between is seen.
        let mut last = this.fingerprint();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let now = this.fingerprint();
                if now == last {
                    continue;
                }
                last = now;
                match this.reload() {
                    Ok(()) => tracing::info!(dir = %this.state_dir.display(), "reloaded users"),
                    Err(e) => {
                        tracing::error!(error = %e, "reloading users failed; keeping the last good set")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
