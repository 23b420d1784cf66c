//! The configuration file: Kubernetes-style YAML documents, parsed and validated.
//!
//! One file holds one or more documents separated by `---`, each with
//! `apiVersion: causeway.dev/v1alpha1`, a `kind`, `metadata.name` and a `spec`:
//!
//! * `DnsServer` (at most one): sockets, HTTP API, TCP limits, rate limiting, aging.
//! * `Zone` (one or more): SOA, apex NS with glue, static records and GSLB names.
//! * `LatencyMap` (any number): static client prefix → per-cluster RTT entries.
//!
//! Unknown fields are errors. Every error names the file, the line where one is
//! known, the field and the reason ([`ConfigError`]). `docs/dns.md` is the reference.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_model::ClusterId;
use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::Deserialize;

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "causeway.dev/v1alpha1";

/// A configuration error: file, line (when known), field and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file read.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `Zone svc-example: spec.gslb[0].ttl`.
    pub field: String,
    /// Why it is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{line}: {}: {}",
                self.file.display(),
                self.field,
                self.reason
            ),
            None => write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.reason
            ),
        }
    }
}

/// A duration written as `500ms`, `1s`, `10m` (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

/// `metadata` of every document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Name of the object, for messages.
    pub name: String,
    /// Free-form labels (ignored by dns).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Doc<S> {
    api_version: String,
    #[allow(dead_code)] // checked by `Header` before this is parsed
    kind: String,
    metadata: Metadata,
    spec: S,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
}

/// `kind: DnsServer` spec: how the server listens and behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSpec {
    /// DNS sockets (UDP and TCP on each), e.g. `127.0.0.1:5353`, `[::1]:5353`.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// HTTP API address (`/metrics`, `/healthz`, `/readyz`, `/v1/...`); none = no API.
    #[serde(default)]
    pub api: Option<SocketAddr>,
    /// UDP sockets per address (SO_REUSEPORT), each served by its own thread. Default 2.
    #[serde(default = "default_udp_sockets")]
    pub udp_sockets_per_address: usize,
    /// TCP limits.
    #[serde(default)]
    pub tcp: TcpSpec,
    /// Response rate limiting per client prefix; off when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Latency map settings.
    #[serde(default)]
    pub latency: LatencySettings,
    /// Watch the config file and reload on change (SIGHUP always reloads). Default true.
    #[serde(default = "default_true")]
    pub watch: bool,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            api: None,
            udp_sockets_per_address: default_udp_sockets(),
            tcp: TcpSpec::default(),
            rate_limit: None,
            latency: LatencySettings::default(),
            watch: true,
        }
    }
}

fn default_udp_sockets() -> usize {
    2
}
fn default_true() -> bool {
    true
}

/// TCP connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSpec {
    /// Close a connection idle this long. Default `10s`.
    #[serde(default = "default_idle")]
    pub idle_timeout: Dur,
    /// At most this many open TCP connections in total. Default 1024.
    #[serde(default = "default_max_conns")]
    pub max_connections: usize,
}

impl Default for TcpSpec {
    fn default() -> Self {
        Self {
            idle_timeout: default_idle(),
            max_connections: default_max_conns(),
        }
    }
}

fn default_idle() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_max_conns() -> usize {
    1024
}

/// Response rate limiting (RRL) per client prefix.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Responses per second per client prefix.
    pub responses_per_second: u32,
    /// Burst allowance. Default = responsesPerSecond.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Every `slip`-th limited UDP response is sent truncated (TC) instead of dropped,
    /// so real clients retry over TCP; 0 drops all. Default 2.
    #[serde(default = "default_slip")]
    pub slip: u32,
    /// IPv4 client prefix length. Default 24.
    #[serde(default = "default_v4_len")]
    pub ipv4_prefix_length: u8,
    /// IPv6 client prefix length. Default 56.
    #[serde(default = "default_v6_len")]
    pub ipv6_prefix_length: u8,
    /// Client networks never limited.
    #[serde(default)]
    pub exempt: Vec<IpNet>,
}

fn default_slip() -> u32 {
    2
}
fn default_v4_len() -> u8 {
    24
}
fn default_v6_len() -> u8 {
    56
}

/// Latency map settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencySettings {
    /// Measurements posted to the API age out after this long. Default `10m`.
    #[serde(default = "default_max_age")]
    pub max_age: Dur,
    /// At most this many posted (prefix, cluster) measurements are kept. Default 1,000,000.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
}

impl Default for LatencySettings {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_entries: default_max_entries(),
        }
    }
}

fn default_max_age() -> Dur {
    Dur(Duration::from_secs(600))
}
fn default_max_entries() -> u64 {
    1_000_000
}

/// `kind: Zone` spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneSpec {
    /// The zone apex, e.g. `svc.example.` (a trailing dot is added if missing).
    pub origin: String,
    /// Default TTL of static records. Default 300.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Start of authority.
    pub soa: SoaSpec,
    /// Apex NS records, with glue addresses for names inside the zone.
    pub nameservers: Vec<NameServerSpec>,
    /// Static records.
    #[serde(default)]
    pub records: Vec<RecordSpec>,
    /// GSLB names.
    #[serde(default)]
    pub gslb: Vec<GslbSpec>,
}

fn default_ttl() -> u32 {
    300
}

/// SOA fields. `minimum` is the negative-caching TTL (RFC 2308).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SoaSpec {
    /// Primary name server. Default: the first `nameservers` entry.
    #[serde(default)]
    pub mname: Option<String>,
    /// Mailbox of the person responsible, as a name (`hostmaster.svc.example.`).
    pub rname: String,
    /// Serial. Default 1.
    #[serde(default = "one")]
    pub serial: u32,
    /// Refresh seconds. Default 3600.
    #[serde(default = "default_refresh")]
    pub refresh: u32,
    /// Retry seconds. Default 900.
    #[serde(default = "default_retry")]
    pub retry: u32,
    /// Expire seconds. Default 604800.
    #[serde(default = "default_expire")]
    pub expire: u32,
    /// Negative TTL (RFC 2308). Default 60.
    #[serde(default = "default_minimum")]
    pub minimum: u32,
    /// TTL of the SOA record itself. Default: the zone TTL.
    #[serde(default)]
    pub ttl: Option<u32>,
}

fn one() -> u32 {
    1
}
fn default_refresh() -> u32 {
    3600
}
fn default_retry() -> u32 {
    900
}
fn default_expire() -> u32 {
    604_800
}
fn default_minimum() -> u32 {
    60
}

/// One apex name server.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameServerSpec {
    /// Its name (relative to the origin, or absolute with a trailing dot).
    pub name: String,
    /// Glue addresses (required when the name is inside the zone).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// Static record types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum StaticType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    AAAA,
    /// Alias.
    CNAME,
    /// Text: each `data` item is one record of one or more quoted or bare strings.
    TXT,
    /// `PREFERENCE EXCHANGE`.
    MX,
    /// `PRIORITY WEIGHT PORT TARGET`.
    SRV,
    /// `FLAGS TAG "VALUE"`.
    CAA,
    /// Delegation of a child zone below the apex.
    NS,
}

/// One static RRset.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordSpec {
    /// Owner name, relative to the origin (`www`, `@` for the apex) or absolute (trailing dot).
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: StaticType,
    /// TTL; default the zone TTL.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// The records' data in presentation format, one item per record.
    pub data: Vec<String>,
}

/// How a GSLB name picks its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// The healthy target with the lowest RTT for the client network.
    Latency,
    /// The first tier (lowest `tier`) with a healthy target.
    Failover,
    /// One target chosen by weight, consistently per client network.
    Weighted,
    /// Up to `maxAnswers` healthy targets.
    AllHealthy,
}

impl PolicyKind {
    /// Name as written in the config and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Failover => "failover",
            Self::Weighted => "weighted",
            Self::AllHealthy => "all-healthy",
        }
    }
}

/// One GSLB name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GslbSpec {
    /// Owner name, relative to the origin or absolute.
    pub name: String,
    /// TTL of the answers. Default 30.
    #[serde(default = "default_gslb_ttl")]
    pub ttl: u32,
    /// Policy.
    pub policy: PolicyKind,
    /// `all-healthy`: at most this many targets per answer. Default 8.
    #[serde(default = "default_max_answers")]
    pub max_answers: usize,
    /// `latency`: order used when the latency map has no data for the client. Default:
    /// the targets' order.
    #[serde(default)]
    pub default_order: Vec<ClusterId>,
    /// One target per cluster.
    pub targets: Vec<TargetSpec>,
}

fn default_gslb_ttl() -> u32 {
    30
}
fn default_max_answers() -> usize {
    8
}

/// One cluster behind a GSLB name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    /// The cluster.
    pub cluster: ClusterId,
    /// Its addresses for this service (IPv4 → A, IPv6 → AAAA).
    pub addresses: Vec<IpAddr>,
    /// `weighted`: relative share. Default 100.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `failover`: lower tiers are preferred. Default 0.
    #[serde(default)]
    pub tier: u32,
    /// Active health check; without one the target counts as healthy unless an
    /// external report says otherwise.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
}

fn default_weight() -> u32 {
    100
}

/// Probe protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeProtocol {
    /// `GET path` over HTTP/1.1, expecting `expectStatus`.
    Http,
    /// The same over TLS (rustls; CA roots from `caFile`, or `insecureSkipVerify`).
    Https,
    /// A TCP connect.
    Tcp,
}

/// Active health check of one target.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// `http`, `https` or `tcp`.
    pub protocol: ProbeProtocol,
    /// Where to connect; default the target's first address with `port`.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// Port when `address` is absent.
    #[serde(default)]
    pub port: Option<u16>,
    /// HTTP path. Default `/healthz`.
    #[serde(default = "default_path")]
    pub path: String,
    /// HTTP Host header (and TLS server name). Default the address.
    #[serde(default)]
    pub host: Option<String>,
    /// Expected HTTP status. Default 200.
    #[serde(default = "default_status")]
    pub expect_status: u16,
    /// Time between probes. Default `1s`.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Probe timeout. Default `500ms`.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Consecutive successes to become healthy. Default 2.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures to become unhealthy. Default 3.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// `https`: PEM file of the CA certificates to trust. Default
    /// `/etc/ssl/certs/ca-certificates.crt` (Debian's system roots).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// `https`: accept any certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_path() -> String {
    "/healthz".into()
}
fn default_status() -> u16 {
    200
}
fn default_interval() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_timeout() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

/// `kind: LatencyMap` spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyMapSpec {
    /// Entries.
    pub entries: Vec<LatencyEntrySpec>,
}

/// One static latency entry: client prefix → RTT per cluster in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyEntrySpec {
    /// Client network, e.g. `198.51.100.0/24`.
    pub prefix: IpNet,
    /// Cluster → RTT (ms).
    pub rtt_ms: BTreeMap<ClusterId, f64>,
}

/// A validated zone: names are absolute and lower-case.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// `metadata.name`.
    pub name: String,
    /// Apex.
    pub origin: Name,
    /// The parsed spec (names still as written).
    pub spec: ZoneSpec,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// Server settings (defaults when the file has no `DnsServer`).
    pub server: ServerSpec,
    /// Zones, at least one.
    pub zones: Vec<ZoneConfig>,
    /// Static latency entries of every `LatencyMap`.
    pub latency: Vec<LatencyEntrySpec>,
}

impl Config {
    /// Reads and validates `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: None,
            field: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(file, &text)
    }

    /// [`Config::load`] on a short-lived thread of its own, so that the parser's
    /// transient memory (a large file's YAML events) lives in that thread's malloc
    /// arena and can be returned to the OS as a whole, instead of fragmenting the
    /// heap the server keeps using.
    pub fn load_isolated(file: &Path) -> Result<Self, ConfigError> {
        let path = file.to_path_buf();
        std::thread::Builder::new()
            .name("config-load".into())
            .spawn(move || Self::load(&path))
            .map_err(|e| ConfigError {
                file: file.to_path_buf(),
                line: None,
                field: "(file)".into(),
                reason: format!("cannot start the loader thread: {e}"),
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(ConfigError {
                    file: file.to_path_buf(),
                    line: None,
                    field: "(file)".into(),
                    reason: "the loader panicked".into(),
                })
            })
    }

    /// Parses and validates `text`, naming `file` in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut server: Option<ServerSpec> = None;
        let mut zones = Vec::new();
        let mut latency = Vec::new();
        let err = |line: Option<usize>, field: String, reason: String| ConfigError {
            file: file.to_path_buf(),
            line,
            field,
            reason,
        };
        for (start_line, doc) in split_documents(text) {
            if doc.lines().all(|l| {
                let t = l.trim();
                t.is_empty() || t.starts_with('#')
            }) {
                continue;
            }
            let de_err = |e: serde_yaml_ng::Error| {
                let line = e.location().map(|l| start_line + l.line() - 1);
                err(line, "(document)".into(), e.to_string())
            };
            let header: Header = serde_yaml_ng::from_str(doc).map_err(de_err)?;
            let kind = header.kind.unwrap_or_default();
            match header.api_version.as_deref() {
                Some(API_VERSION) => {}
                other => {
                    return Err(err(
                        Some(start_line + find_line(doc, "apiVersion").unwrap_or(0)),
                        "apiVersion".into(),
                        format!("must be {API_VERSION:?}, found {other:?}"),
                    ));
                }
            }
            match kind.as_str() {
                "DnsServer" => {
                    let d: Doc<ServerSpec> = serde_yaml_ng::from_str(doc).map_err(de_err)?;
                    check_api(&d.api_version);
                    if server.is_some() {
                        return Err(err(
                            Some(start_line),
                            format!("DnsServer {}", d.metadata.name),
                            "only one DnsServer document is allowed".into(),
                        ));
                    }
                    server = Some(d.spec);
                }
                "Zone" => {
                    let d: Doc<ZoneSpec> = serde_yaml_ng::from_str(doc).map_err(de_err)?;
                    check_api(&d.api_version);
                    let origin = parse_origin(&d.spec.origin).map_err(|reason| {
                        err(
                            line_in(start_line, doc, "origin"),
                            format!("Zone {}: spec.origin", d.metadata.name),
                            reason,
                        )
                    })?;
                    zones.push((
                        start_line,
                        doc,
                        ZoneConfig {
                            name: d.metadata.name,
                            origin,
                            spec: d.spec,
                        },
                    ));
                }
                "LatencyMap" => {
                    let d: Doc<LatencyMapSpec> = serde_yaml_ng::from_str(doc).map_err(de_err)?;
                    check_api(&d.api_version);
                    for (i, e) in d.spec.entries.iter().enumerate() {
                        for (c, rtt) in &e.rtt_ms {
                            if !rtt.is_finite() || *rtt < 0.0 {
                                return Err(err(
                                    line_in(start_line, doc, &e.prefix.to_string()),
                                    format!(
                                        "LatencyMap {}: spec.entries[{i}].rttMs.{c}",
                                        d.metadata.name
                                    ),
                                    format!(
                                        "must be a non-negative number of milliseconds, found {rtt}"
                                    ),
                                ));
                            }
                        }
                    }
                    latency.extend(d.spec.entries);
                }
                other => {
                    return Err(err(
                        line_in(start_line, doc, "kind"),
                        "kind".into(),
                        format!("unknown kind {other:?}; expected DnsServer, Zone or LatencyMap"),
                    ));
                }
            }
        }
        let server = server.unwrap_or_default();
        validate_server(&server)
            .map_err(|(field, reason)| err(None, format!("DnsServer: spec.{field}"), reason))?;
        if zones.is_empty() {
            return Err(err(
                None,
                "(file)".into(),
                "no Zone document: at least one zone is required".into(),
            ));
        }
        let mut origins = HashSet::new();
        for (start_line, doc, z) in &zones {
            if !origins.insert(z.origin.clone()) {
                return Err(err(
                    line_in(*start_line, doc, "origin"),
                    format!("Zone {}: spec.origin", z.name),
                    format!("zone {} is defined twice", z.origin),
                ));
            }
            crate::zone::validate(z).map_err(|(field, needle, reason)| {
                err(
                    needle.and_then(|n| line_in(*start_line, doc, &n)),
                    format!("Zone {}: spec.{field}", z.name),
                    reason,
                )
            })?;
        }
        Ok(Self {
            file: file.to_path_buf(),
            server,
            zones: zones.into_iter().map(|(_, _, z)| z).collect(),
            latency,
        })
    }
}

fn check_api(v: &str) {
    debug_assert_eq!(v, API_VERSION);
}

fn validate_server(s: &ServerSpec) -> Result<(), (String, String)> {
    if s.udp_sockets_per_address == 0 || s.udp_sockets_per_address > 64 {
        return Err(("udpSocketsPerAddress".into(), "must be 1 to 64".into()));
    }
    if s.tcp.max_connections == 0 {
        return Err(("tcp.maxConnections".into(), "must be at least 1".into()));
    }
    if s.tcp.idle_timeout.0.is_zero() {
        return Err(("tcp.idleTimeout".into(), "must be positive".into()));
    }
    if let Some(rl) = &s.rate_limit {
        if rl.responses_per_second == 0 {
            return Err((
                "rateLimit.responsesPerSecond".into(),
                "must be at least 1".into(),
            ));
        }
        if rl.ipv4_prefix_length > 32 || rl.ipv6_prefix_length > 128 {
            return Err((
                "rateLimit.ipv4PrefixLength".into(),
                "prefix length out of range".into(),
            ));
        }
    }
    if s.latency.max_age.0.is_zero() {
        return Err(("latency.maxAge".into(), "must be positive".into()));
    }
    Ok(())
}

/// Parses a zone origin, adding the trailing dot, lower-cased.
pub fn parse_origin(s: &str) -> Result<Name, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    let fq = if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    };
    Name::from_ascii(&fq)
        .map(|n| n.to_lowercase())
        .map_err(|e| format!("{s:?} is not a valid domain name: {e}"))
}

/// Splits a YAML stream into documents, with the 1-based line each starts on.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") {
            out.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    out.push((start_line, &text[start_byte..]));
    out
}

fn find_line(doc: &str, needle: &str) -> Option<usize> {
    doc.lines().position(|l| l.contains(needle))
}

fn line_in(start_line: usize, doc: &str, needle: &str) -> Option<usize> {
    find_line(doc, needle).map(|i| start_line + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {name: t}
spec:
  listen: ["127.0.0.1:0"]
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {name: z}
spec:
  origin: svc.example
  soa: {rname: hostmaster.svc.example.}
  nameservers: [{name: ns1, addresses: [127.0.0.53]}]
  records:
    - {name: www, type: A, data: [192.0.2.10]}
  gslb:
    - name: app
      policy: latency
      targets:
        - {cluster: a, addresses: [192.0.2.1]}
"#;

    #[test]
    fn parses_a_good_file() {
        let c = Config::parse(Path::new("t.yaml"), GOOD).unwrap();
        assert_eq!(c.zones.len(), 1);
        assert_eq!(c.zones[0].origin.to_ascii(), "svc.example.");
        assert_eq!(c.server.listen.len(), 1);
    }

    #[test]
    fn unknown_field_names_file_and_line() {
        let bad = GOOD
            .replace("  ttl_typo: 1\n", "")
            .replace("    - name: app\n", "    - name: app\n      colour: red\n");
        let e = Config::parse(Path::new("t.yaml"), &bad).unwrap_err();
        assert_eq!(e.file, Path::new("t.yaml"));
        assert!(e.reason.contains("colour"), "{e}");
        assert_eq!(e.line, Some(19), "{e}");
    }

    #[test]
    fn bad_address_is_named() {
        let bad = GOOD.replace("192.0.2.10", "192.0.2.300");
        let e = Config::parse(Path::new("t.yaml"), &bad).unwrap_err();
        assert!(e.field.contains("records[0]"), "{e}");
        assert_eq!(e.line, Some(16), "{e}");
    }

    #[test]
    fn wrong_api_version() {
        let bad = GOOD.replacen("causeway.dev/v1alpha1", "v1", 1);
        let e = Config::parse(Path::new("t.yaml"), &bad).unwrap_err();
        assert_eq!(e.field, "apiVersion");
    }
}
