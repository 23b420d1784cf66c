//! The `audit.k8s.io/v1` `Event` schema (level `Metadata`) and the request's `Audit-ID`.
//!
//! The stub keeps a valid incoming `Audit-ID` (or makes one, see [`audit_id`]) and
//! passes it to the member cluster, whose API server logs it as its own `auditID`
//! ("If the Audit-ID header is set by the client, it is used as the audit ID"), so the
//! hub's and the cluster's events join on that field.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use causeway_model::ClusterId;
use serde::{Serialize, Serializer};

use crate::authz::RequestInfo;
use crate::identity::Identity;

/// The annotation naming the cluster a request went to.
pub const CLUSTER_ANNOTATION: &str = "causeway.dev/cluster";
/// The annotation naming the agent (certificate serial) whose connection died with a
/// request before any response header, when the stub retried it.
pub const RETRIED_FROM_ANNOTATION: &str = "causeway.dev/retried-from-agent";
/// The annotation naming the agent the retry went to (absent: none could take it).
pub const RETRIED_ON_ANNOTATION: &str = "causeway.dev/retried-on-agent";
/// The `Audit-ID` request/response header.
pub const AUDIT_ID_HEADER: &str = "audit-id";
/// Longest `Audit-ID` kept from a client.
pub const MAX_AUDIT_ID_LEN: usize = 128;

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

    /// Records a retry: the request was lost with agent `from`'s connection and sent
    /// again to agent `on` (`None`: no connection could take it).
    pub fn set_retry(&mut self, from: &str, on: Option<&str>) {
        self.annotations
            .insert(RETRIED_FROM_ANNOTATION.to_owned(), from.to_owned());
        if let Some(on) = on {
            self.annotations
                .insert(RETRIED_ON_ANNOTATION.to_owned(), on.to_owned());
        }
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
    let h = hex::encode(b);
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
