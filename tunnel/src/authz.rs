//! Authorization: which subjects may reach which clusters, and with which verbs.
//!
//! The stub decides per cluster, coarsely (all of a cluster, or read-only); the member
//! cluster's own RBAC decides per object, for the impersonated user. Default deny.
//!
//! [`RequestInfo::parse`] follows the Kubernetes request-info rules
//! (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`) so verbs here match the
//! verbs RBAC and audit on the member cluster see, with one deliberate difference:
//! exec, attach, portforward and proxy are always `create`, whatever the HTTP method
//! (WebSocket exec is a GET; a read-only user must not get a shell).

use causeway_config::{ConfigError, Document};
use causeway_model::ClusterId;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::config::OneDocumentFile;
use crate::identity::Identity;

/// A Kubernetes API verb, as RBAC and audit name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Read one object (GET/HEAD with a name; also non-resource GETs).
    Get,
    /// Read a collection (GET without a name).
    List,
    /// Watch (`?watch=1|true`, or the legacy `/watch/` prefix).
    Watch,
    /// POST; also exec, attach, portforward and proxy whatever the method.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE with a name.
    Delete,
    /// DELETE on a collection.
    DeleteCollection,
    /// Any other method (OPTIONS, CONNECT, …): never allowed by a read-only rule.
    Unknown,
}

impl Verb {
    /// The verb's Kubernetes name (`get`, `deletecollection`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Unknown => "unknown",
        }
    }

    /// Whether the verb only reads (get, list, watch).
    pub fn is_read_only(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Subresources that open a stream into a container or a proxy: always `create`.
const STREAMING_SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "proxy"];

/// What a Kubernetes API path addresses, parsed as the API server does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `false` for `/api`, `/apis/g/v`, `/version`, `/healthz`, …
    pub is_resource_request: bool,
    /// The verb (see the module docs for exec/attach/portforward/proxy).
    pub verb: Option<Verb>,
    /// API group (`""` for the core group).
    pub api_group: String,
    /// API version (`v1`).
    pub api_version: String,
    /// Namespace, if namespaced.
    pub namespace: String,
    /// Resource (`pods`).
    pub resource: String,
    /// Subresource (`exec`, `status`, `log`).
    pub subresource: String,
    /// Object name.
    pub name: String,
}

impl RequestInfo {
    /// Parses a Kubernetes API request: `path` is the path after `/clusters/<id>`,
    /// `query` the raw query string.
    ///
    /// From `requestinfo.go`:
    /// ```text
    /// /api/{version}/namespaces/{namespace}/{resource}/{name}/{subresource}
    /// /apis/{api-group}/{version}/namespaces/{namespace}/{resource}/{name}/{subresource}
    /// /api/{version}/watch/namespaces/{namespace}/{resource}   (deprecated watch prefix)
    /// ```
    /// "if there's no name on the request and we thought it was a get before, then the
    /// actual verb is a list or a watch"; "if there's no name on the request and we
    /// thought it was a delete before, then the actual verb is deletecollection".
    pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> RequestInfo {
        let method_verb = match *method {
            http::Method::GET | http::Method::HEAD => Verb::Get,
            http::Method::POST => Verb::Create,
            http::Method::PUT => Verb::Update,
            http::Method::PATCH => Verb::Patch,
            http::Method::DELETE => Verb::Delete,
            _ => Verb::Unknown,
        };
        let parts: Vec<&str> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let non_resource = RequestInfo {
            is_resource_request: false,
            verb: Some(method_verb),
            ..RequestInfo::default()
        };
        // "if the path is too short to be a resource, it is a non-resource request"
        if parts.len() < 3 {
            return non_resource;
        }
        let mut info = RequestInfo {
            is_resource_request: true,
            ..RequestInfo::default()
        };
        let mut rest: &[&str] = match parts[0] {
            "api" => &parts[1..],
            "apis" => {
                info.api_group = parts[1].to_owned();
                &parts[2..]
            }
            _ => return non_resource,
        };
        let Some((version, after)) = rest.split_first() else {
            return non_resource;
        };
        info.api_version = (*version).to_owned();
        rest = after;
        if rest.is_empty() {
            return non_resource;
        }
        let mut verb = method_verb;
        let mut streaming = false;
        match rest[0] {
            // "special verbs": /watch/… and the deprecated /proxy/…
            "watch" if rest.len() > 1 => {
                verb = Verb::Watch;
                rest = &rest[1..];
            }
            "proxy" if rest.len() > 1 => {
                streaming = true;
                rest = &rest[1..];
            }
            _ => {}
        }
        // "URL forms: /namespaces/{namespace}/{kind}/*, where parts are adjusted to be
        // relative to kind"; namespaces/{ns}/status and /finalize are subresources of
        // the namespace itself.
        if rest[0] == "namespaces" && rest.len() > 1 {
            info.namespace = rest[1].to_owned();
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        info.resource = rest[0].to_owned();
        if rest.len() >= 2 {
            info.name = rest[1].to_owned();
        }
        // "specialVerbsNoSubresources": the deprecated proxy verb has no subresource.
        if rest.len() >= 3 && !streaming {
            info.subresource = rest[2].to_owned();
        }
        if verb == Verb::Get && info.name.is_empty() {
            verb = if watch_requested(query) {
                Verb::Watch
            } else {
                Verb::List
            };
        }
        if verb == Verb::Delete && info.name.is_empty() {
            verb = Verb::DeleteCollection;
        }
        if streaming || STREAMING_SUBRESOURCES.contains(&info.subresource.as_str()) {
            verb = Verb::Create;
        }
        info.verb = Some(verb);
        info
    }
}

/// Whether the query asks for a watch: `watch` parsed as Go's `strconv.ParseBool`
/// (`1`, `t`, `T`, `TRUE`, `true`, `True`), as the API server does.
fn watch_requested(query: Option<&str>) -> bool {
    let Some(q) = query else { return false };
    q.split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == "watch")
        .is_some_and(|(_, v)| matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True"))
}

/// The verb of a request (see [`RequestInfo::parse`]).
pub fn verb_of(method: &http::Method, k8s_path: &str, query: Option<&str>) -> Verb {
    RequestInfo::parse(method, k8s_path, query)
        .verb
        .unwrap_or(Verb::Unknown)
}

// === path safety ===

/// Why a request path was refused before routing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// A `.` or `..` segment.
    #[error("path contains a '.' or '..' segment")]
    DotSegment,
    /// A percent-encoded `/`, `\`, `.` or NUL (`%2F`, `%5C`, `%2E`, `%00`).
    #[error("path contains an encoded '/', '\\', '.' or NUL ({0})")]
    EncodedSeparator(String),
    /// A backslash, control character, space or `#`.
    #[error("path contains a forbidden character {0:?}")]
    ForbiddenCharacter(char),
    /// An empty segment (`//`).
    #[error("path contains an empty segment ('//')")]
    EmptySegment,
}

/// Refuses request paths that could address something other than what they appear
/// to: `.`/`..` segments (`/clusters/a/../b/…`), percent-encoded separators and dots
/// (`%2F`, `%2e%2e`), backslashes, control characters and `//`. Call it on the raw
/// path, before any decoding or normalisation, and route only paths that pass.
pub fn check_request_path(path: &str) -> Result<(), PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_control() || matches!(c, '\\' | ' ' | '#'))
    {
        return Err(PathError::ForbiddenCharacter(c));
    }
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let code = path.get(i + 1..i + 3).unwrap_or("").to_ascii_lowercase();
            if matches!(code.as_str(), "2f" | "5c" | "2e" | "00") {
                return Err(PathError::EncodedSeparator(format!("%{code}")));
            }
        }
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if *seg == "." || *seg == ".." {
            return Err(PathError::DotSegment);
        }
        // A trailing slash is harmless; an empty segment in the middle is not.
        if seg.is_empty() && i + 1 != segments.len() {
            return Err(PathError::EmptySegment);
        }
    }
    Ok(())
}

// === access policy ===

/// The `kind` of [`AccessPolicy`] documents.
pub const KIND: &str = "AccessPolicy";

/// Whom a rule applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subjects {
    /// User names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Group names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// One rule: these subjects may reach these clusters (globs), optionally read-only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// Who.
    pub subjects: Subjects,
    /// Cluster ID globs: `*` matches any run of characters, `?` one character.
    pub clusters: Vec<String>,
    /// Only get, list and watch.
    #[serde(default)]
    pub read_only: bool,
}

/// `spec` of an `AccessPolicy` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    rules: Vec<Rule>,
}

/// Access policy: Kubernetes-style YAML, default deny.
///
/// ```yaml
/// apiVersion: causeway.dev/v1alpha1
/// kind: AccessPolicy
/// metadata: {name: default}
/// spec:
///   rules:
///   - subjects: {groups: [dev]}
///     clusters: ["idc-*"]
///   - subjects: {users: [auditor]}
///     clusters: ["*"]
///     readOnly: true
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    rules: Vec<Rule>,
}

/// A rule that cannot be used: the field (`spec.rules[0].clusters[1]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RuleError {
    /// The field, from the document root.
    pub field: String,
    /// Why.
    pub reason: String,
}

/// Why a request was denied (→ 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// No rule gives this identity any access to the cluster.
    #[error("user {user:?} has no access to cluster {cluster:?}")]
    NoRule {
        /// User name.
        user: String,
        /// Cluster.
        cluster: String,
    },
    /// The identity's rules for this cluster are read-only and the verb writes.
    #[error("user {user:?} has read-only access to cluster {cluster:?}; {verb:?} is not allowed")]
    ReadOnly {
        /// User name.
        user: String,
        /// Cluster.
        cluster: String,
        /// The refused verb.
        verb: &'static str,
    },
}

impl OneDocumentFile for AccessPolicy {
    const KIND: &'static str = KIND;

    fn from_document(doc: &Document) -> Result<Self, ConfigError> {
        let spec: Spec = doc.spec()?;
        Self::from_rules(spec.rules).map_err(|e| doc.error(&e.field, e.reason))
    }
}

impl AccessPolicy {
    /// One policy from several `AccessPolicy` documents (a file's, and in production mode
    /// the hub's objects): their rules, in order. An error names the document and field.
    pub fn from_all(docs: &[Document]) -> Result<Self, ConfigError> {
        let mut rules = Vec::new();
        for doc in docs {
            if doc.kind != KIND {
                return Err(doc.unknown_kind(&[KIND]));
            }
            rules.extend(Self::from_document(doc)?.rules);
        }
        Ok(AccessPolicy { rules })
    }

    /// A policy from rules (checked like a file's).
    pub fn from_rules(rules: Vec<Rule>) -> Result<Self, RuleError> {
        let policy = AccessPolicy { rules };
        policy.validate()?;
        Ok(policy)
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn validate(&self) -> Result<(), RuleError> {
        for (i, rule) in self.rules.iter().enumerate() {
            let bad = |f: &str, reason: String| RuleError {
                field: format!("spec.rules[{i}].{f}"),
                reason,
            };
            if rule.subjects.users.is_empty() && rule.subjects.groups.is_empty() {
                return Err(bad("subjects", "names no user or group".into()));
            }
            for (j, u) in rule.subjects.users.iter().enumerate() {
                if u.is_empty() || u.chars().any(char::is_control) {
                    return Err(bad(
                        &format!("subjects.users[{j}]"),
                        format!("invalid user {u:?}"),
                    ));
                }
            }
            for (j, g) in rule.subjects.groups.iter().enumerate() {
                if g.is_empty() || g.chars().any(char::is_control) {
                    return Err(bad(
                        &format!("subjects.groups[{j}]"),
                        format!("invalid group {g:?}"),
                    ));
                }
            }
            if rule.clusters.is_empty() {
                return Err(bad("clusters", "names no cluster".into()));
            }
            for (j, c) in rule.clusters.iter().enumerate() {
                check_glob(c).map_err(|reason| bad(&format!("clusters[{j}]"), reason))?;
            }
        }
        Ok(())
    }

    /// Allows or denies `verb` on `cluster` for `id` by this policy alone. Default deny;
    /// a rule that is not read-only allows every verb; a read-only rule allows get, list
    /// and watch.
    pub fn authorize(
        &self,
        id: &Identity,
        cluster: &ClusterId,
        verb: Verb,
    ) -> Result<(), AuthzError> {
        decide(&self.rules, &[], id, cluster, verb)
    }
}

/// The stub's allow/deny decision for one request: its access-policy file
/// (`spec.accessPolicy`) and the rules `causeway user add` recorded with users, taken
/// as one policy. Default deny; allowed if a rule of either allows (see
/// [`AccessPolicy::authorize`]); a read-only refusal is reported over a "no rule" one,
/// so the message says what the user can do.
pub fn authorize(
    file: &AccessPolicy,
    recorded: &AccessPolicy,
    id: &Identity,
    cluster: &ClusterId,
    verb: Verb,
) -> Result<(), AuthzError> {
    decide(&file.rules, &recorded.rules, id, cluster, verb)
}

/// The decision over `first` then `second` (two slices, so the request path
/// allocates no merged list).
fn decide(
    first: &[Rule],
    second: &[Rule],
    id: &Identity,
    cluster: &ClusterId,
    verb: Verb,
) -> Result<(), AuthzError> {
    let mut read_only_match = false;
    for rule in first.iter().chain(second) {
        let subject = rule.subjects.users.contains(&id.user)
            || rule
                .subjects
                .groups
                .iter()
                .any(|g| id.groups.iter().any(|ig| ig == g));
        if !subject
            || !rule
                .clusters
                .iter()
                .any(|c| glob_match(c, cluster.as_str()))
        {
            continue;
        }
        if !rule.read_only || verb.is_read_only() {
            return Ok(());
        }
        read_only_match = true;
    }
    if read_only_match {
        Err(AuthzError::ReadOnly {
            user: id.user.clone(),
            cluster: cluster.to_string(),
            verb: verb.as_str(),
        })
    } else {
        Err(AuthzError::NoRule {
            user: id.user.clone(),
            cluster: cluster.to_string(),
        })
    }
}

/// Checks a cluster glob: cluster-ID characters plus `*` and `?`.
pub fn check_glob(glob: &str) -> Result<(), String> {
    if glob.is_empty() || glob.len() > 63 {
        return Err(format!("cluster glob {glob:?} must be 1 to 63 characters"));
    }
    if let Some(c) = glob
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '*' | '?')))
    {
        return Err(format!(
            "cluster glob {glob:?} contains {c:?}; use a-z, 0-9, '-', '*' and '?'"
        ));
    }
    Ok(())
}

/// Matches `text` against `glob` (`*` any run, `?` one character), whole string.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests;
