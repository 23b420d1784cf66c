//! [`UserStore`]: the snapshot of users, revocations and bearer tokens that
//! [`crate::authn`] checks requests against, and [`UserStoreHandle`], which reloads it
//! when its files change.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::records::{
    REVOKED_FILE, RevokedCert, RevokedFile, USERS_FILE, UserRecord, UsersError, UsersFile, invalid,
};
use super::token_file::{StaticToken, read_token_file};
use crate::authz::{AccessPolicy, Rule, Subjects, check_glob};
use crate::identity::Identity;
use crate::pki::check_user_name;
use crate::state::StateDir;

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
            Some(p) => read_token_file(p)?,
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
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&t.sha256, &mut hash).map_err(|_| {
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

    /// The access rules recorded with users (`causeway user add --clusters`); the stub
    /// authorizes against its policy file and these ([`crate::authz::authorize`]).
    pub fn recorded_policy(&self) -> &AccessPolicy {
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
