//! Audit: one `audit.k8s.io/v1` `Event` per request stage, as JSON lines in a
//! size-rotated file, so Falco/SIEM pipelines that read kube-apiserver audit logs read
//! ours unchanged.
//!
//! The stub keeps a valid incoming `Audit-ID` (or makes one, see [`audit_id`]) and
//! passes it to the member cluster, whose API server logs it as its own `auditID`
//! ("If the Audit-ID header is set by the client, it is used as the audit ID"), so the
//! hub's and the cluster's events join on that field.
//!
//! Writing never blocks the request path: [`AuditLog::record`] serializes the event
//! into a shared buffer that a writer thread drains every [`WRITE_INTERVAL`] (sooner
//! once [`WAKE_BYTES`] are pending), so a busy stub pays one `write(2)` per batch, not
//! per request. Past [`MAX_PENDING_BYTES`] events are dropped and counted
//! ([`AuditLog::dropped`]).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use causeway_model::ClusterId;
use serde::{Serialize, Serializer};

use crate::authz::RequestInfo;
use crate::identity::Identity;

/// The annotation naming the cluster a request went to.
pub const CLUSTER_ANNOTATION: &str = "causeway.dev/cluster";
/// The `Audit-ID` request/response header.
pub const AUDIT_ID_HEADER: &str = "audit-id";
/// Longest `Audit-ID` kept from a client.
pub const MAX_AUDIT_ID_LEN: usize = 128;
/// Bytes of events the writer may lag behind before new events are dropped.
pub const MAX_PENDING_BYTES: usize = 16 << 20;
/// Pending bytes that wake the writer before its interval is up.
pub const WAKE_BYTES: usize = 256 << 10;
/// How long an event may wait in memory before it is written.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(20);

/// A request's stage, as in `audit.k8s.io/v1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Stage {
    /// The request was received (before it is forwarded).
    RequestReceived,
    /// Headers of the response were sent (long-running requests: watch, exec).
    ResponseStarted,
    /// The response is complete.
    ResponseComplete,
    /// The handler panicked.
    Panic,
}

/// `user` of an event (`authentication.k8s.io/v1` `UserInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// User name; empty when authentication failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// UID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&Identity> for UserInfo {
    fn from(id: &Identity) -> Self {
        UserInfo {
            username: id.user.clone(),
            uid: id.uid.clone(),
            groups: id.groups.clone(),
            extra: id.extra.clone(),
        }
    }
}

/// `objectRef` of an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Resource (`pods`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// Namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// API group (empty for core).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    /// API version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Subresource (`exec`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// `responseStatus` of an event (a `metav1.Status` subset).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResponseStatus {
    /// Always empty.
    pub metadata: BTreeMap<String, String>,
    /// HTTP status code.
    pub code: u16,
    /// Why, for failures decided by the stub.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// `StatusReason` for failures decided by the stub.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// One `audit.k8s.io/v1` `Event` at level `Metadata`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Always `Event`.
    pub kind: &'static str,
    /// Always `audit.k8s.io/v1`.
    pub api_version: &'static str,
    /// Always `Metadata` (no bodies are logged).
    pub level: &'static str,
    /// The request's `Audit-ID`.
    #[serde(rename = "auditID")]
    pub audit_id: String,
    /// The stage.
    pub stage: Stage,
    /// The URI as the client sent it to the stub (`/clusters/<id>/api/v1/…?…`).
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    /// Kubernetes verb (`list`, `create`, …); the lower-case HTTP method for
    /// non-resource requests, as the API server logs them.
    pub verb: String,
    /// Who.
    pub user: UserInfo,
    /// Client addresses.
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// `User-Agent`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    /// What was addressed, for resource requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    /// The response code, from `ResponseStarted` on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    /// When the stub received the request.
    #[serde(serialize_with = "rfc3339_micros")]
    pub request_received_timestamp: SystemTime,
    /// When this stage was reached.
    #[serde(serialize_with = "rfc3339_micros")]
    pub stage_timestamp: SystemTime,
    /// `causeway.dev/cluster` and any other annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn rfc3339_micros<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*t))
}

impl AuditEvent {
    /// An event at stage `RequestReceived` for a request: `request_uri` as sent to the
    /// stub, `k8s_path` the path after `/clusters/<id>` (verb and `objectRef` are
    /// parsed from it with [`RequestInfo::parse`]), `query` the raw query string.
    pub fn new(
        audit_id: impl Into<String>,
        method: &http::Method,
        request_uri: impl Into<String>,
        k8s_path: &str,
        query: Option<&str>,
    ) -> Self {
        let info = RequestInfo::parse(method, k8s_path, query);
        let verb = if info.is_resource_request {
            info.verb.map(|v| v.as_str().to_owned()).unwrap_or_default()
        } else {
            method.as_str().to_ascii_lowercase()
        };
        let object_ref = info.is_resource_request.then_some(ObjectReference {
            resource: info.resource,
            namespace: info.namespace,
            name: info.name,
            api_group: info.api_group,
            api_version: info.api_version,
            subresource: info.subresource,
        });
        let now = SystemTime::now();
        AuditEvent {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            audit_id: audit_id.into(),
            stage: Stage::RequestReceived,
            request_uri: request_uri.into(),
            verb,
            user: UserInfo::default(),
            source_ips: Vec::new(),
            user_agent: String::new(),
            object_ref,
            response_status: None,
            request_received_timestamp: now,
            stage_timestamp: now,
            annotations: BTreeMap::new(),
        }
    }

    /// Sets the authenticated user.
    pub fn with_user(mut self, id: &Identity) -> Self {
        self.set_user(id);
        self
    }

    /// Sets the authenticated user in place.
    pub fn set_user(&mut self, id: &Identity) {
        self.user = id.into();
    }

    /// Sets the cluster annotation.
    pub fn with_cluster(mut self, cluster: &ClusterId) -> Self {
        self.set_cluster(cluster);
        self
    }

    /// Sets the cluster annotation in place.
    pub fn set_cluster(&mut self, cluster: &ClusterId) {
        self.annotations
            .insert(CLUSTER_ANNOTATION.to_owned(), cluster.to_string());
    }

    /// Sets the client address and `User-Agent` (taken from `headers`, truncated to 256
    /// bytes at a character boundary).
    pub fn with_client(mut self, ip: Option<IpAddr>, headers: &http::HeaderMap) -> Self {
        self.source_ips = ip.map(|ip| ip.to_string()).into_iter().collect();
        if let Some(ua) = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            let mut end = ua.len().min(256);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            self.user_agent = ua[..end].to_owned();
        }
        self
    }

    /// The same event at a later stage, with a response code (and, for refusals made by
    /// the stub, the `Status` reason and message), time-stamped now.
    pub fn at_stage(&self, stage: Stage, code: Option<http::StatusCode>) -> Self {
        let mut ev = self.clone();
        ev.set_stage(stage, code);
        ev
    }

    /// Moves this event to a later stage in place; see [`AuditEvent::at_stage`].
    pub fn set_stage(&mut self, stage: Stage, code: Option<http::StatusCode>) {
        self.stage = stage;
        self.stage_timestamp = SystemTime::now();
        if let Some(code) = code {
            self.response_status = Some(ResponseStatus {
                code: code.as_u16(),
                ..ResponseStatus::default()
            });
        }
    }

    /// Adds the reason and message of a refusal to `responseStatus`.
    pub fn with_refusal(mut self, reason: &str, message: &str) -> Self {
        self.set_refusal(reason, message);
        self
    }

    /// Adds the reason and message of a refusal in place.
    pub fn set_refusal(&mut self, reason: &str, message: &str) {
        let status = self
            .response_status
            .get_or_insert_with(ResponseStatus::default);
        status.reason = reason.to_owned();
        status.message = message.to_owned();
    }

    /// Whether the request is long-running as kube-apiserver's
    /// `BasicLongRunningRequestCheck` decides (verbs `watch`, `proxy`; subresources
    /// `attach`, `exec`, `proxy`, `log`, `portforward`): such requests also get a
    /// `ResponseStarted` event when their headers go out, as the API server logs them.
    pub fn is_long_running(&self) -> bool {
        matches!(self.verb.as_str(), "watch" | "proxy")
            || self.object_ref.as_ref().is_some_and(|o| {
                matches!(
                    o.subresource.as_str(),
                    "attach" | "exec" | "proxy" | "log" | "portforward"
                )
            })
    }

    /// The event as one JSON line (without the newline).
    pub fn to_json(&self) -> String {
        // Serializing strings, integers and maps of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

// === Audit-ID ===

/// The request's audit ID: a valid incoming `Audit-ID` header (1 to
/// [`MAX_AUDIT_ID_LEN`] characters of `A-Z a-z 0-9 - _ . :`) is kept; anything else
/// is replaced by a new UUID v4.
pub fn audit_id(headers: &http::HeaderMap) -> String {
    let mut values = headers.get_all(AUDIT_ID_HEADER).iter();
    if let (Some(v), None) = (values.next(), values.next())
        && let Ok(s) = v.to_str()
        && valid_audit_id(s)
    {
        return s.to_owned();
    }
    new_audit_id()
}

/// Whether `s` is an `Audit-ID` we keep.
pub fn valid_audit_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_AUDIT_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new random UUID v4 (RFC 9562 §5.4), lower-case.
pub fn new_audit_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::hex::encode(&b);
    let mut id = String::with_capacity(36);
    for (i, part) in [&h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            id.push('-');
        }
        id.push_str(part);
    }
    id
}

// === the log file ===

/// Errors opening the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file or its directory could not be opened or created.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// `max_bytes` was zero.
    #[error("audit log {path}: max size must be more than 0 bytes")]
    ZeroSize {
        /// The file.
        path: PathBuf,
    },
}

/// Events serialized but not yet written, shared by the request path and the writer.
#[derive(Debug, Default)]
struct Pending {
    /// JSON lines, newline-terminated.
    buf: Vec<u8>,
    /// Bumped by [`AuditLog::flush`]; the writer acknowledges it in `flushed`.
    flush_wanted: u64,
    /// The last `flush_wanted` the writer has fully written.
    flushed: u64,
    /// Set when every [`AuditLog`] handle is gone: write what is left and stop.
    closing: bool,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer (a large batch, a flush, closing).
    wake: Condvar,
    /// Wakes [`AuditLog::flush`] callers.
    done: Condvar,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Tells the writer to finish when the last handle is dropped.
#[derive(Debug)]
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.lock().closing = true;
        self.0.wake.notify_all();
    }
}

/// The audit log: JSON lines in `path`, rotated to `path.1` … `path.<keep>` when it
/// would grow past `max_bytes`. Cheap to share (`Arc` inside).
#[derive(Clone, Debug)]
pub struct AuditLog {
    shared: Arc<Shared>,
    _close: Arc<CloseOnDrop>,
    path: PathBuf,
}

impl AuditLog {
    /// Opens (appends to) `path`, creating it with mode 0600, and starts the writer
    /// thread.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<AuditLog, AuditError> {
        let io_err = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if max_bytes == 0 {
            return Err(AuditError::ZeroSize {
                path: path.to_owned(),
            });
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        let file = open_append(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let writer = Writer {
            path: path.to_owned(),
            out: file,
            size,
            max_bytes,
            keep,
        };
        let for_writer = shared.clone();
        std::thread::Builder::new()
            .name("causeway-audit".into())
            .spawn(move || writer.run(&for_writer))
            .map_err(io_err)?;
        Ok(AuditLog {
            _close: Arc::new(CloseOnDrop(shared.clone())),
            shared,
            path: path.to_owned(),
        })
    }

    /// Queues one event; never blocks on IO. Past [`MAX_PENDING_BYTES`] of unwritten
    /// events the event is dropped and counted.
    pub fn record(&self, ev: &AuditEvent) {
        let mut line = ev.to_json().into_bytes();
        line.push(b'\n');
        let mut p = self.shared.lock();
        if p.buf.len() + line.len() > MAX_PENDING_BYTES {
            drop(p);
            let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(dropped_total = n, path = %self.path.display(), "audit event dropped");
            return;
        }
        // Wake the writer for the first event of a batch and when a batch grows large;
        // not for every event.
        let before = p.buf.len();
        p.buf.extend_from_slice(&line);
        let wake = before == 0 || (before < WAKE_BYTES && p.buf.len() >= WAKE_BYTES);
        drop(p);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Events dropped so far because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits (blocking, up to `timeout`) until every event queued so far is written.
    /// For shutdown and tests; not for the request path. Returns false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = self.shared.lock();
        p.flush_wanted += 1;
        let ticket = p.flush_wanted;
        self.shared.wake.notify_one();
        while p.flushed < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            p = self
                .shared
                .done
                .wait_timeout(p, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

struct Writer {
    path: PathBuf,
    out: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl Writer {
    /// Sleeps until an event is pending, gathers for [`WRITE_INTERVAL`] (less when
    /// [`WAKE_BYTES`] pile up, a flush is asked for or the log closes), then swaps the
    /// pending buffer for an empty one and writes the batch outside the lock.
    fn run(mut self, shared: &Shared) {
        let mut batch = Vec::new();
        loop {
            let (ticket, closing) = {
                let mut p = shared.lock();
                let urgent = |p: &Pending| {
                    p.buf.len() >= WAKE_BYTES || p.flush_wanted != p.flushed || p.closing
                };
                while p.buf.is_empty() && !urgent(&p) {
                    p = shared.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
                if !urgent(&p) {
                    p = shared
                        .wake
                        .wait_timeout_while(p, WRITE_INTERVAL, |p| !urgent(p))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                std::mem::swap(&mut p.buf, &mut batch);
                (p.flush_wanted, p.closing)
            };
            if !batch.is_empty() {
                if let Err(e) = self.write_batch(&batch) {
                    tracing::error!(path = %self.path.display(), error = %e, "audit log write failed");
                }
                batch.clear();
                // Do not keep a burst's capacity forever.
                batch.shrink_to(WAKE_BYTES);
            }
            let mut p = shared.lock();
            if p.flushed < ticket {
                p.flushed = ticket;
                shared.done.notify_all();
            }
            if closing && p.buf.is_empty() {
                return;
            }
        }
    }

    /// Writes whole lines, rotating between lines when the file would pass `max_bytes`.
    fn write_batch(&mut self, mut batch: &[u8]) -> io::Result<()> {
        while !batch.is_empty() {
            let room =
                usize::try_from(self.max_bytes.saturating_sub(self.size)).unwrap_or(usize::MAX);
            let fit = batch[..room.min(batch.len())]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let take = if fit > 0 {
                fit
            } else if self.size > 0 {
                self.rotate()?;
                continue;
            } else {
                // One line longer than max_bytes: it gets a file of its own.
                batch
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(batch.len(), |i| i + 1)
            };
            self.out.write_all(&batch[..take])?;
            self.size += take as u64;
            batch = &batch[take..];
        }
        Ok(())
    }

    /// `path.<keep-1>` → `path.<keep>`, …, `path` → `path.1`, then a new `path`.
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |i: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            let _ = fs::remove_file(numbered(self.keep));
            for i in (1..self.keep).rev() {
                let from = numbered(i);
                if from.exists() {
                    fs::rename(&from, numbered(i + 1))?;
                }
            }
            fs::rename(&self.path, numbered(1))?;
        }
        self.out = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
