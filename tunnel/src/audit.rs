//! Audit: one `audit.k8s.io/v1` `Event` per request stage, as JSON lines in a
//! size-rotated file, so Falco/SIEM pipelines that read kube-apiserver audit logs read
//! ours unchanged.
//!
//! The stub keeps a valid incoming `Audit-ID` (or makes one, see [`audit_id`]) and
//! passes it to the member cluster, whose API server logs it as its own `auditID`
//! ("If the Audit-ID header is set by the client, it is used as the audit ID"), so the
//! hub's and the cluster's events join on that field.
//!
//! Writing never blocks the request path: [`AuditLog::record`] serializes the event and
//! hands the line to a writer thread through a bounded channel; when the channel is
//! full the event is dropped and counted ([`AuditLog::dropped`]).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

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
/// Lines the writer may lag behind before events are dropped.
pub const CHANNEL_CAPACITY: usize = 8192;

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
        self.user = id.into();
        self
    }

    /// Sets the cluster annotation.
    pub fn with_cluster(mut self, cluster: &ClusterId) -> Self {
        self.annotations
            .insert(CLUSTER_ANNOTATION.to_owned(), cluster.to_string());
        self
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
        ev.stage = stage;
        ev.stage_timestamp = SystemTime::now();
        if let Some(code) = code {
            ev.response_status = Some(ResponseStatus {
                code: code.as_u16(),
                ..ResponseStatus::default()
            });
        }
        ev
    }

    /// Adds the reason and message of a refusal to `responseStatus`.
    pub fn with_refusal(mut self, reason: &str, message: &str) -> Self {
        let status = self
            .response_status
            .get_or_insert_with(ResponseStatus::default);
        status.reason = reason.to_owned();
        status.message = message.to_owned();
        self
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
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
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

enum Msg {
    Line(String),
    Flush(SyncSender<()>),
}

/// The audit log: JSON lines in `path`, rotated to `path.1` … `path.<keep>` when it
/// would grow past `max_bytes`. Cheap to share (`Arc` inside).
#[derive(Clone, Debug)]
pub struct AuditLog {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
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
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let writer = Writer {
            path: path.to_owned(),
            out: BufWriter::new(file),
            size,
            max_bytes,
            keep,
        };
        std::thread::Builder::new()
            .name("causeway-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err)?;
        Ok(AuditLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            path: path.to_owned(),
        })
    }

    /// Queues one event; never blocks. A full queue drops the event and counts it.
    pub fn record(&self, ev: &AuditEvent) {
        match self.tx.try_send(Msg::Line(ev.to_json())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(dropped_total = n, path = %self.path.display(), "audit event dropped");
            }
        }
    }

    /// Events dropped so far because the writer fell behind (or died).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (blocking, up to `timeout`) until every event queued so far is written.
    /// For shutdown and tests; not for the request path. Returns false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
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
    out: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            self.handle(msg);
            // Drain what is queued, then flush once.
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg);
            }
            if let Err(e) = self.out.flush() {
                tracing::error!(path = %self.path.display(), error = %e, "audit log flush failed");
            }
        }
        let _ = self.out.flush();
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Line(line) => {
                if let Err(e) = self.write_line(&line) {
                    tracing::error!(path = %self.path.display(), error = %e, "audit log write failed");
                }
            }
            Msg::Flush(ack) => {
                let _ = self.out.flush();
                let _ = ack.send(());
            }
        }
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    /// `path.<keep-1>` → `path.<keep>`, …, `path` → `path.1`, then a new `path`.
    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
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
        self.out = BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
