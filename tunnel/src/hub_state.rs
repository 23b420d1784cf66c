//! Production mode: the stub's state in a Secret of the hub namespace.
//!
//! The files of a [`StateDir`] (CA, users, revocations, clusters, join tokens) are the keys
//! of one Secret ([`SECRET_NAME`]), plus a `generation` counter. Every replica keeps a
//! **mirror**: its own private state directory, materialized from the Secret, which the
//! rest of the stub reads as in the embedded mode (the user store's reload, the enrolled
//! check, the CA). Writes never touch the mirror first:
//!
//! 1. [`SecretState::update`] reads the Secret (data and `resourceVersion`), writes it into
//!    a scratch directory, runs the change there (the same functions as the embedded
//!    mode: `create_join_token`, `add_user`, enrolment, …), and
//! 2. replaces the Secret only if it is still at that `resourceVersion` (compare-and-swap);
//!    on a conflict it starts again from a fresh read, so of two replicas consuming the
//!    same join token one wins and the other finds it used;
//! 3. on success the new data goes into the mirror at once; other replicas get it from
//!    their watch of the Secret ([`SecretState::watch`]). A mirror takes data only with a
//!    higher `generation` than it holds, so a late watch event never undoes a newer write.
//!
//! The first replica (or CLI) to find no Secret creates it with a new CA (or with the CA of
//! its mirror, when migrating from a state directory): `create` is first-wins, the others
//! read the winner's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use causeway_hubstore::Hub;
use causeway_hubstore::secret::{Created, Stored};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::pki::{CA_CERT_FILE, CA_KEY_FILE, Ca, PkiError};
use crate::state::{
    CLUSTERS_FILE, JOIN_TOKENS_FILE, StateDir, StateError, create_private_dir, write_atomic,
};
use crate::users::{REVOKED_FILE, USERS_FILE};

/// The Secret holding the stub's state.
pub const SECRET_NAME: &str = "causeway-stub-state";
/// The `app.kubernetes.io/managed-by` label of the Secrets the stub writes.
pub const MANAGER: &str = "causeway-stub";
/// The state files kept in the Secret, one key each.
pub const FILES: [&str; 6] = [
    CA_CERT_FILE,
    CA_KEY_FILE,
    USERS_FILE,
    REVOKED_FILE,
    CLUSTERS_FILE,
    JOIN_TOKENS_FILE,
];
/// The key counting the Secret's writes (decimal).
pub const GENERATION_KEY: &str = "generation";
/// Compare-and-swap attempts before giving up.
const MAX_ATTEMPTS: u32 = 30;

/// Why the state in the hub cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretStateError {
    /// The hub's API.
    #[error(transparent)]
    Hub(#[from] causeway_hubstore::HubError),
    /// The mirror or scratch directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// Making the CA.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The Secret is not what the stub writes, or disagrees with the mirror.
    #[error("Secret {secret}: {reason}")]
    Invalid {
        /// `namespace/name`.
        secret: String,
        /// Why.
        reason: String,
    },
}

/// The stub's state in a Secret of the hub namespace, with an optional local mirror.
#[derive(Debug)]
pub struct SecretState {
    hub: Hub,
    name: String,
    mirror: Option<StateDir>,
    /// The generation the mirror holds.
    applied: Mutex<u64>,
    /// Where scratch directories of [`SecretState::update`] go.
    scratch_root: PathBuf,
}

impl SecretState {
    /// Opens the Secret `name` (creating it, with a new CA, if no one has yet: first wins)
    /// and materializes it into `mirror` if given. A mirror that already holds another CA
    /// is refused rather than overwritten.
    pub async fn open(
        hub: Hub,
        name: &str,
        mirror: Option<&Path>,
    ) -> Result<Self, SecretStateError> {
        let mirror_dir = mirror.map(StateDir::open).transpose()?;
        let scratch_root = match &mirror_dir {
            Some(d) => d.path().to_owned(),
            None => std::env::temp_dir(),
        };
        let this = Self {
            hub,
            name: name.to_owned(),
            mirror: mirror_dir,
            applied: Mutex::new(0),
            scratch_root,
        };
        let stored = match this.hub.secret(name).await? {
            Some(s) => s,
            None => {
                let data = this.seed()?;
                match this.hub.create_secret(name, MANAGER, data).await? {
                    Created::Created => {
                        tracing::info!(secret = %this.shown(), "created the stub's state Secret (CA)");
                        this.hub
                            .secret(name)
                            .await?
                            .ok_or_else(|| this.invalid("deleted just after it was created"))?
                    }
                    Created::Exists(s) => s,
                }
            }
        };
        for key in [CA_CERT_FILE, CA_KEY_FILE] {
            if !stored.data.contains_key(key) {
                return Err(this.invalid(&format!("has no key {key}")));
            }
        }
        if let Some(m) = &this.mirror
            && let Ok(local) = std::fs::read(m.file(CA_CERT_FILE))
            && Some(&local) != stored.data.get(CA_CERT_FILE)
        {
            return Err(this.invalid(&format!(
                "holds another CA than {}; give this stub an empty state directory \
                 (in production mode it is only a copy of the Secret)",
                m.file(CA_CERT_FILE).display()
            )));
        }
        this.apply(&stored)?;
        Ok(this)
    }

    /// `namespace/name` of the Secret.
    pub fn shown(&self) -> String {
        format!("{}/{}", self.hub.namespace(), self.name)
    }

    fn invalid(&self, reason: &str) -> SecretStateError {
        SecretStateError::Invalid {
            secret: self.shown(),
            reason: reason.to_owned(),
        }
    }

    /// The first data of the Secret: the mirror's files if it holds a CA (a stub moving
    /// from its state directory to the hub), else a new CA.
    fn seed(&self) -> Result<BTreeMap<String, Vec<u8>>, SecretStateError> {
        let mut data = match &self.mirror {
            Some(m) if m.file(CA_CERT_FILE).exists() => {
                Ca::load_or_create(m.path())?;
                tracing::info!(dir = %m.path().display(), "seeding the state Secret from the state directory");
                read_files(m)?
            }
            _ => {
                let scratch = Scratch::new(&self.scratch_root)?;
                Ca::load_or_create(scratch.dir.path())?;
                read_files(&scratch.dir)?
            }
        };
        data.insert(GENERATION_KEY.into(), b"1".to_vec());
        Ok(data)
    }

    /// The mirror, if any.
    pub fn mirror(&self) -> Option<&StateDir> {
        self.mirror.as_ref()
    }

    /// Writes `stored` into the mirror if it is newer than what the mirror holds: changed
    /// files are replaced atomically, files absent from the Secret removed.
    fn apply(&self, stored: &Stored) -> Result<(), SecretStateError> {
        let Some(m) = &self.mirror else {
            return Ok(());
        };
        let generation = generation(stored);
        let mut applied = match self.applied.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if *applied != 0 && generation <= *applied {
            return Ok(());
        }
        for f in FILES {
            let path = m.file(f);
            match stored.data.get(f) {
                Some(bytes) => {
                    if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
                        write_atomic(&path, bytes, 0o600)?;
                    }
                }
                None => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StateError::io(&path, e).into()),
                },
            }
        }
        tracing::debug!(generation, "state mirror updated from the Secret");
        *applied = generation;
        Ok(())
    }

    /// Runs `f` on a copy of the state as it is in the Secret and reads it back; `f`'s
    /// changes are dropped. For listings.
    pub async fn read<T, E>(&self, f: impl FnOnce(&StateDir) -> Result<T, E>) -> Result<T, E>
    where
        E: From<SecretStateError>,
    {
        let stored = self.get().await?;
        let scratch = Scratch::new(&self.scratch_root).map_err(SecretStateError::from)?;
        write_files(&scratch.dir, &stored.data).map_err(SecretStateError::from)?;
        f(&scratch.dir)
    }

    async fn get(&self) -> Result<Stored, SecretStateError> {
        self.hub
            .secret(&self.name)
            .await?
            .ok_or_else(|| self.invalid("does not exist (deleted?)"))
    }

    /// Changes the state: `f` runs on a copy of the Secret's state (it may run several
    /// times: once per attempt), and what it leaves there replaces the Secret only if no
    /// one wrote in between (compare-and-swap on `resourceVersion`; else again from a
    /// fresh read). `f`'s error stops at once and writes nothing. On success the mirror
    /// holds the new state before this returns.
    pub async fn update<T, E>(&self, mut f: impl FnMut(&StateDir) -> Result<T, E>) -> Result<T, E>
    where
        E: From<SecretStateError>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            let stored = self.get().await?;
            let rv = stored
                .resource_version
                .clone()
                .ok_or_else(|| self.invalid("has no resourceVersion"))?;
            let scratch = Scratch::new(&self.scratch_root).map_err(SecretStateError::from)?;
            write_files(&scratch.dir, &stored.data).map_err(SecretStateError::from)?;
            let out = f(&scratch.dir)?;
            let mut data = read_files(&scratch.dir).map_err(SecretStateError::from)?;
            drop(scratch);
            let unchanged = FILES.iter().all(|k| data.get(*k) == stored.data.get(*k));
            if unchanged {
                self.apply(&stored)?;
                return Ok(out);
            }
            data.insert(
                GENERATION_KEY.into(),
                (generation(&stored) + 1).to_string().into_bytes(),
            );
            match self.hub.replace_secret(&self.name, &rv, data).await {
                Ok(new) => {
                    self.apply(&new)?;
                    return Ok(out);
                }
                Err(e) if e.is_conflict() => {
                    tracing::info!(attempt, secret = %self.shown(), "state Secret changed meanwhile; again");
                    let jitter = rand::random::<u64>() % 50;
                    tokio::time::sleep(Duration::from_millis(10 + jitter)).await;
                }
                Err(e) => return Err(SecretStateError::from(e).into()),
            }
        }
        Err(self
            .invalid(&format!(
                "still changing after {MAX_ATTEMPTS} compare-and-swap attempts"
            ))
            .into())
    }

    /// Keeps the mirror up to date with the Secret (a watch; other replicas' and the CLI's
    /// writes arrive within about a second) until `shutdown`.
    pub fn watch(
        self: &std::sync::Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let api: Api<Secret> = Api::namespaced(this.hub.client(), this.hub.namespace());
            let cfg = watcher::Config::default().fields(&format!("metadata.name={}", this.name));
            let mut events = watcher(api, cfg)
                .default_backoff()
                .applied_objects()
                .boxed();
            let mut failing = false;
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    n = events.try_next() => n,
                };
                match next {
                    Ok(Some(secret)) => {
                        failing = false;
                        let stored = Stored {
                            data: secret
                                .data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, v.0))
                                .collect(),
                            resource_version: secret.metadata.resource_version,
                        };
                        if let Err(e) = this.apply(&stored) {
                            tracing::error!(error = %e, "cannot update the state mirror");
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, secret = %this.shown(), "watch of the state Secret failing; retrying");
                        }
                        failing = true;
                    }
                }
            }
        })
    }
}

/// The `generation` of a stored state (0 when missing or unreadable).
fn generation(stored: &Stored) -> u64 {
    stored
        .data
        .get(GENERATION_KEY)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The state files present in `dir`.
fn read_files(dir: &StateDir) -> Result<BTreeMap<String, Vec<u8>>, StateError> {
    let mut data = BTreeMap::new();
    for f in FILES {
        let path = dir.file(f);
        match std::fs::read(&path) {
            Ok(b) => {
                data.insert(f.to_owned(), b);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StateError::io(&path, e)),
        }
    }
    Ok(data)
}

/// Writes the state files of `data` into `dir`.
fn write_files(dir: &StateDir, data: &BTreeMap<String, Vec<u8>>) -> Result<(), StateError> {
    for f in FILES {
        if let Some(b) = data.get(f) {
            write_atomic(&dir.file(f), b, 0o600)?;
        }
    }
    Ok(())
}

/// A private scratch directory, removed when dropped.
struct Scratch {
    dir: StateDir,
}

impl Scratch {
    fn new(root: &Path) -> Result<Self, StateError> {
        let path = root.join(format!(
            ".txn.{}.{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        create_private_dir(&path)?;
        Ok(Self {
            dir: StateDir::open(path)?,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_read_as_numbers() {
        let mut s = Stored::default();
        assert_eq!(generation(&s), 0);
        s.data.insert(GENERATION_KEY.into(), b"41".to_vec());
        assert_eq!(generation(&s), 41);
        s.data.insert(GENERATION_KEY.into(), b"x".to_vec());
        assert_eq!(generation(&s), 0);
    }

    #[test]
    fn files_round_trip_through_a_scratch_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Scratch::new(tmp.path()).unwrap();
        let data: BTreeMap<String, Vec<u8>> =
            [(USERS_FILE.to_owned(), b"users: []\n".to_vec())].into();
        write_files(&s.dir, &data).unwrap();
        assert_eq!(read_files(&s.dir).unwrap(), data);
        let path = s.dir.path().to_owned();
        drop(s);
        assert!(!path.exists());
    }
}
