//! The stub's configuration file: one `StubConfig` document in Causeway's envelope
//! ([`causeway_config`]), every field checked, every error printed
//! `file:line:column: StubConfig/name: field.path: reason`.
//!
//! ```yaml
//! apiVersion: causeway.dev/v1alpha1
//! kind: StubConfig
//! metadata: {name: stub-a}
//! spec:
//!   stateDir: state                    # CA, users, enrolment (relative to this file)
//!   listen: {users: "127.0.0.1:6443", agents: "127.0.0.1:7443", metrics: "127.0.0.1:9443"}
//!   serverNames: [localhost, 127.0.0.1] # SANs of the stub's serving certificate
//!   accessPolicy: access-policy.yaml   # optional
//!   tokenFile: tokens.csv              # optional static bearer tokens
//!   audit: {path: audit.log, maxBytes: 104857600, keep: 5}   # optional
//!   lease:                             # optional: several stubs, one active
//!     kubeconfig: hub.kubeconfig
//!     namespace: default
//!     name: causeway-stub
//!     durationSeconds: 6
//!     identity: stub-a                 # default: metadata.name
//!   handshakes: {timeoutSeconds: 10, maxPending: 1024, maxPendingPerSource: 64}  # optional; the defaults, per listener
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_config::{ConfigError, Document};
use serde::Deserialize;

/// The `kind` of a stub configuration.
pub const KIND: &str = "StubConfig";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    state_dir: PathBuf,
    listen: Listen,
    #[serde(default = "default_server_names")]
    server_names: Vec<String>,
    #[serde(default)]
    access_policy: Option<PathBuf>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    audit: Option<Audit>,
    #[serde(default)]
    lease: Option<Lease>,
    #[serde(default)]
    handshakes: Option<Handshakes>,
}

fn default_server_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Listen {
    users: String,
    agents: String,
    metrics: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Audit {
    path: PathBuf,
    #[serde(default = "default_audit_bytes")]
    max_bytes: u64,
    #[serde(default = "default_audit_keep")]
    keep: usize,
}

fn default_audit_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_audit_keep() -> usize {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Lease {
    kubeconfig: PathBuf,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default = "default_lease_name")]
    name: String,
    #[serde(default = "default_lease_seconds")]
    duration_seconds: u64,
    #[serde(default)]
    identity: Option<String>,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_lease_name() -> String {
    "causeway-stub".into()
}

fn default_lease_seconds() -> u64 {
    6
}

/// `spec.handshakes`: [`crate::transport::HandshakeLimits`] of both TLS listeners.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Handshakes {
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    max_pending: Option<usize>,
    #[serde(default)]
    max_pending_per_source: Option<usize>,
}

/// A validated stub configuration, paths made absolute.
#[derive(Clone, Debug)]
pub struct StubConfig {
    /// `metadata.name`.
    pub name: String,
    /// State directory (CA, users, enrolment).
    pub state_dir: PathBuf,
    /// Users' listener.
    pub listen_users: SocketAddr,
    /// Agents' listener.
    pub listen_agents: SocketAddr,
    /// Metrics listener.
    pub listen_metrics: SocketAddr,
    /// SANs of the serving certificate.
    pub server_names: Vec<String>,
    /// Access policy file.
    pub access_policy: Option<PathBuf>,
    /// Static token file.
    pub token_file: Option<PathBuf>,
    /// Audit log.
    pub audit: Option<AuditConfig>,
    /// Leader election.
    pub lease: Option<LeaseConfig>,
    /// Bounds on the TLS handshakes in progress, for each of the users' and the agents'
    /// listeners (`spec.handshakes`).
    pub handshakes: crate::transport::HandshakeLimits,
    /// Measured latency: report agents' probers to dns (`--dns-url`; not in the file).
    pub latency_reports: Option<LatencyReports>,
}

/// Where the audit log goes.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// File.
    pub path: PathBuf,
    /// Rotate above this size.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: usize,
}

/// The Lease that picks the active stub (the election is `causeway-election`).
pub use causeway_election::LeaseConfig;

/// A file that holds one document of one kind (a stub configuration, an access
/// policy), read through the envelope: another kind, or a second document, is an error
/// at its `kind`.
pub trait OneDocumentFile: Sized {
    /// The document's `kind`.
    const KIND: &'static str;

    /// Reads and checks the document (relative paths are taken from [`Document::file`]).
    fn from_document(doc: &Document) -> Result<Self, ConfigError>;

    /// Reads and checks `path`.
    fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_documents(path, causeway_config::read_file(path)?)
    }

    /// Parses and checks `text` as the contents of `path` (named in errors, and the
    /// base of relative paths).
    fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::from_documents(path, causeway_config::parse_str(path, text)?)
    }

    /// The one document of [`Self::KIND`] among `docs`.
    fn from_documents(path: &Path, docs: Vec<Document>) -> Result<Self, ConfigError> {
        let mut found = None;
        for doc in docs {
            if doc.kind != Self::KIND {
                return Err(doc.unknown_kind(&[Self::KIND]));
            }
            if found.is_some() {
                return Err(doc.error(
                    "kind",
                    format!("a second {} document; the file holds one", Self::KIND),
                ));
            }
            found = Some(doc);
        }
        match found {
            Some(doc) => Self::from_document(&doc),
            None => Err(ConfigError::file(
                path,
                format!("no {} document", Self::KIND),
            )),
        }
    }
}

impl OneDocumentFile for StubConfig {
    const KIND: &'static str = KIND;

    fn from_document(doc: &Document) -> Result<StubConfig, ConfigError> {
        let s: Spec = doc.spec()?;
        let base = doc.file().parent().unwrap_or(Path::new("."));
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let addr = |field: &str, v: &str| -> Result<SocketAddr, ConfigError> {
            v.parse()
                .map_err(|e| doc.error(field, format!("{v:?} is not an IP:port address: {e}")))
        };
        if s.server_names.is_empty() {
            return Err(doc.error("spec.serverNames", "name at least one DNS name or IP"));
        }
        for (i, n) in s.server_names.iter().enumerate() {
            if n.is_empty() || n.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(doc.error(
                    &format!("spec.serverNames[{i}]"),
                    format!("{n:?} is not a DNS name or IP"),
                ));
            }
        }
        let audit = match s.audit {
            Some(a) => {
                if a.max_bytes < 4096 {
                    return Err(doc.error("spec.audit.maxBytes", "must be at least 4096"));
                }
                Some(AuditConfig {
                    path: abs(&a.path),
                    max_bytes: a.max_bytes,
                    keep: a.keep,
                })
            }
            None => None,
        };
        let lease = match s.lease {
            Some(l) => {
                if !(2..=300).contains(&l.duration_seconds) {
                    return Err(doc.error(
                        "spec.lease.durationSeconds",
                        format!("{} is outside 2..=300", l.duration_seconds),
                    ));
                }
                let identity = l.identity.unwrap_or_else(|| doc.name().to_owned());
                if identity.is_empty() || identity.chars().any(char::is_control) {
                    return Err(doc.error(
                        "spec.lease.identity",
                        "must be a non-empty printable string",
                    ));
                }
                Some(LeaseConfig {
                    kubeconfig: abs(&l.kubeconfig),
                    namespace: l.namespace,
                    name: l.name,
                    duration: Duration::from_secs(l.duration_seconds),
                    identity,
                })
            }
            None => None,
        };
        let mut handshakes = crate::transport::HandshakeLimits::default();
        if let Some(h) = s.handshakes {
            if let Some(t) = h.timeout_seconds {
                if !(1..=300).contains(&t) {
                    return Err(doc.error(
                        "spec.handshakes.timeoutSeconds",
                        format!("{t} is outside 1..=300"),
                    ));
                }
                handshakes.timeout = Duration::from_secs(t);
            }
            handshakes.max_pending = h.max_pending.unwrap_or(handshakes.max_pending);
            handshakes.max_pending_per_source = h
                .max_pending_per_source
                .unwrap_or(handshakes.max_pending_per_source)
                .min(handshakes.max_pending);
            if handshakes.max_pending == 0 {
                return Err(doc.error("spec.handshakes.maxPending", "must be at least 1"));
            }
            if handshakes.max_pending_per_source == 0 {
                return Err(doc.error("spec.handshakes.maxPendingPerSource", "must be at least 1"));
            }
        }
        Ok(StubConfig {
            name: doc.name().to_owned(),
            state_dir: abs(&s.state_dir),
            listen_users: addr("spec.listen.users", &s.listen.users)?,
            listen_agents: addr("spec.listen.agents", &s.listen.agents)?,
            listen_metrics: addr("spec.listen.metrics", &s.listen.metrics)?,
            server_names: s.server_names,
            access_policy: s.access_policy.as_deref().map(abs),
            token_file: s.token_file.as_deref().map(abs),
            audit,
            lease,
            handshakes,
            latency_reports: None,
        })
    }
}

/// Where and how often the stub reports its agents' measurements.
#[derive(Debug, Clone)]
pub struct LatencyReports {
    /// dns APIs; each gets every report.
    pub dns: Vec<DnsUrl>,
    /// Time between polls.
    pub interval: Duration,
}

/// A dns API given as `http://HOST:PORT` (or `HOST:PORT`); the host is resolved at
/// every report, so a Service name follows its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsUrl {
    /// `HOST:PORT`.
    pub authority: String,
}

/// A `--dns-url` that is not `http://HOST:PORT`.
#[derive(Debug, thiserror::Error)]
#[error("--dns-url {0:?}: expected http://HOST:PORT")]
pub struct DnsUrlError(pub String);

impl std::str::FromStr for DnsUrl {
    type Err = DnsUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DnsUrlError(s.to_string());
        let rest = s.strip_prefix("http://").unwrap_or(s);
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad());
        }
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad());
        }
        Ok(DnsUrl {
            authority: authority.to_string(),
        })
    }
}

impl std::fmt::Display for DnsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: causeway.dev/v1alpha1
kind: StubConfig
metadata: {name: stub-a}
spec:
  stateDir: state
  listen: {users: "127.0.0.1:6443", agents: "127.0.0.1:7443", metrics: "127.0.0.1:9443"}
  accessPolicy: access-policy.yaml
  audit: {path: /var/log/audit.log}
  lease: {kubeconfig: hub.kubeconfig}
"#;

    #[test]
    fn parses_and_resolves_paths() {
        let c = StubConfig::parse(GOOD, Path::new("/etc/causeway/stub.yaml")).unwrap();
        assert_eq!(c.state_dir, Path::new("/etc/causeway/state"));
        assert_eq!(c.listen_users.port(), 6443);
        assert_eq!(c.audit.unwrap().path, Path::new("/var/log/audit.log"));
        let l = c.lease.unwrap();
        assert_eq!(l.identity, "stub-a");
        assert_eq!(l.kubeconfig, Path::new("/etc/causeway/hub.kubeconfig"));
    }

    #[test]
    fn handshake_limits_default_and_parse() {
        let c = StubConfig::parse(GOOD, Path::new("x.yaml")).unwrap();
        assert_eq!(c.handshakes, crate::transport::HandshakeLimits::default());
        let text = format!("{GOOD}  handshakes: {{timeoutSeconds: 3, maxPending: 100}}\n");
        let c = StubConfig::parse(&text, Path::new("x.yaml")).unwrap();
        assert_eq!(c.handshakes.timeout, Duration::from_secs(3));
        assert_eq!(c.handshakes.max_pending, 100);
        // The per-source cap is at most the global one.
        assert_eq!(c.handshakes.max_pending_per_source, 64);
        let text = format!("{GOOD}  handshakes: {{maxPending: 10}}\n");
        let c = StubConfig::parse(&text, Path::new("x.yaml")).unwrap();
        assert_eq!(c.handshakes.max_pending_per_source, 10);
        for (bad, field) in [
            ("{timeoutSeconds: 0}", "spec.handshakes.timeoutSeconds"),
            ("{maxPending: 0}", "spec.handshakes.maxPending"),
            (
                "{maxPendingPerSource: 0}",
                "spec.handshakes.maxPendingPerSource",
            ),
            ("{maxPendings: 1}", "spec.handshakes.maxPendings"),
        ] {
            let text = format!("{GOOD}  handshakes: {bad}\n");
            let e = StubConfig::parse(&text, Path::new("x.yaml")).unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn the_example_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tunnel/stub.yaml");
        let c = StubConfig::load(&p).unwrap();
        assert_eq!(c.listen_agents.port(), 7443);
        assert!(c.access_policy.unwrap().ends_with("access-policy.yaml"));
    }

    #[test]
    fn errors_name_file_and_field() {
        let cases = [
            (GOOD.replace("127.0.0.1:6443", "nope"), "spec.listen.users"),
            (GOOD.replace("StubConfig", "Stub"), "kind"),
            (GOOD.replace("v1alpha1", "v2"), "apiVersion"),
            (GOOD.replace("stateDir", "stateDirr"), "spec.stateDirr"),
            (
                GOOD.replace(
                    "lease: {kubeconfig: hub.kubeconfig}",
                    "lease: {kubeconfig: k, durationSeconds: 1}",
                ),
                "spec.lease.durationSeconds",
            ),
            (format!("{GOOD}---\n{GOOD}"), "a second StubConfig"),
            ("# nothing\n".to_owned(), "no StubConfig"),
        ];
        for (text, field) in cases {
            let e = StubConfig::parse(&text, Path::new("x.yaml")).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("x.yaml"), "{msg}");
            assert!(msg.contains(field), "{field}: {msg}");
        }
    }

    /// [`GOOD`] with one line changed, as `StubConfig::parse` reports it.
    fn config_error(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        StubConfig::parse(&GOOD.replace(from, to), Path::new("/etc/stub.yaml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_point_at_the_line_and_column_of_the_mistake() {
        // An unknown field: at its key.
        let err = config_error("  stateDir: state", "  stateDirr: state");
        assert!(
            err.starts_with("/etc/stub.yaml:6:3: StubConfig/stub-a: spec.stateDirr: unknown field"),
            "{err}"
        );
        // A value of the wrong type inside a list: at that item.
        let err = config_error(
            "  accessPolicy:",
            "  serverNames: [localhost, {a: b}]\n  accessPolicy:",
        );
        assert!(
            err.starts_with(
                "/etc/stub.yaml:8:28: StubConfig/stub-a: spec.serverNames[1]: invalid type"
            ),
            "{err}"
        );
        // A value the stub refuses (semantic), inside a list and in a flow mapping.
        let err = config_error(
            "  accessPolicy:",
            "  serverNames: [localhost, \"a b\"]\n  accessPolicy:",
        );
        assert_eq!(
            err,
            "/etc/stub.yaml:8:28: StubConfig/stub-a: spec.serverNames[1]: \"a b\" is not a DNS name or IP"
        );
        let err = config_error("\"127.0.0.1:6443\"", "\"nope\"");
        assert_eq!(
            err,
            "/etc/stub.yaml:7:19: StubConfig/stub-a: spec.listen.users: \
             \"nope\" is not an IP:port address: invalid socket address syntax"
        );
    }
}
