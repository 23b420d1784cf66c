//! The configuration file: Kubernetes-style YAML documents, read and validated.
//!
//! One file holds one or more documents separated by `---`, each with
//! `apiVersion: causeway.dev/v1alpha1`, a `kind`, `metadata.name` and a `spec`
//! (the envelope is `causeway-config`'s):
//!
//! * `DnsServer` (at most one): sockets, HTTP API, TCP limits, rate limiting, aging.
//! * `Zone` (one or more): SOA, apex NS with glue, static records and GSLB names.
//! * `LatencyMap` (any number): static client prefix → per-cluster RTT entries.
//!
//! [`Config::from_documents`] checks every value on its own (ranges, references
//! between fields); what needs the whole zone (names, record data) is checked when
//! [`crate::zone`] compiles it. Unknown fields are errors. Every error is a
//! [`ConfigError`] at `file:line:column: Kind/name: field.path: reason`.
//! `docs/dns.md` is the reference.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_config::{ConfigError, Document, HumanDuration};
use causeway_model::ClusterId;
use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::Deserialize;

/// The kinds of document a dns config file holds.
pub const KINDS: [&str; 3] = ["DnsServer", "Zone", "LatencyMap"];

/// `kind: DnsServer` spec: how the server listens and behaves. Every field has a
/// default (the [`Default`] impl), so the document is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerSpec {
    /// DNS sockets (UDP and TCP on each), e.g. `127.0.0.1:5353`, `[::1]:5353`.
    pub listen: Vec<SocketAddr>,
    /// HTTP API address (`/metrics`, `/healthz`, `/readyz`, `/v1/...`); none = no API.
    pub api: Option<SocketAddr>,
    /// UDP sockets per address (SO_REUSEPORT), each served by its own thread. Default 2.
    pub udp_sockets_per_address: usize,
    /// TCP limits.
    pub tcp: TcpSpec,
    /// Response rate limiting per client prefix; off when absent.
    pub rate_limit: Option<RateLimitSpec>,
    /// Latency map settings.
    pub latency: LatencySettings,
    /// Watch the config file and reload on change (SIGHUP always reloads). Default true.
    pub watch: bool,
    /// What the server says about itself: CHAOS TXT `id.server.`/`hostname.bind.`,
    /// `version.bind.`/`version.server.`, and NSID (RFC 5001). Default: nothing (REFUSED).
    pub identity: IdentitySpec,
}

/// The server's identity, as answered to CHAOS-class queries and in NSID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IdentitySpec {
    /// Answered as TXT to `id.server.` and `hostname.bind.` (class CH); none = REFUSED.
    pub id: Option<String>,
    /// Answered as TXT to `version.bind.` and `version.server.`; `hide` (the default)
    /// = REFUSED.
    pub version: Option<String>,
    /// Send `id` as NSID (RFC 5001) to queries that carry the NSID option. Default false.
    pub nsid: bool,
}

impl IdentitySpec {
    /// The version string to answer, unless hidden.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref().filter(|v| *v != "hide")
    }

    /// The NSID payload, when configured.
    pub fn nsid(&self) -> Option<&[u8]> {
        self.id.as_deref().filter(|_| self.nsid).map(str::as_bytes)
    }
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            api: None,
            udp_sockets_per_address: 2,
            tcp: TcpSpec::default(),
            rate_limit: None,
            latency: LatencySettings::default(),
            watch: true,
            identity: IdentitySpec::default(),
        }
    }
}

/// TCP connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TcpSpec {
    /// Close a connection idle this long. Default `10s`.
    pub idle_timeout: HumanDuration,
    /// At most this many open TCP connections in total; a new one over the cap closes
    /// the connection idle longest. Default 1024.
    pub max_connections: usize,
    /// At most this many from one client network; a new one over the cap closes that
    /// network's connection idle longest. Default 64.
    pub max_connections_per_prefix: usize,
    /// IPv4 client network length for `maxConnectionsPerPrefix`. Default 24.
    pub ipv4_prefix_length: u8,
    /// IPv6 client network length for `maxConnectionsPerPrefix`. Default 56.
    pub ipv6_prefix_length: u8,
}

impl Default for TcpSpec {
    fn default() -> Self {
        Self {
            idle_timeout: HumanDuration(Duration::from_secs(10)),
            max_connections: 1024,
            max_connections_per_prefix: 64,
            ipv4_prefix_length: 24,
            ipv6_prefix_length: 56,
        }
    }
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
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LatencySettings {
    /// Measurements posted to the API age out after this long. Default `10m`.
    pub max_age: HumanDuration,
    /// At most this many posted (prefix, cluster) measurements are kept. Default 1,000,000.
    pub max_entries: u64,
}

impl Default for LatencySettings {
    fn default() -> Self {
        Self {
            max_age: HumanDuration(Duration::from_secs(600)),
            max_entries: 1_000_000,
        }
    }
}

/// `kind: Zone` spec.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    /// DNSSEC online signing (absent: the zone is not signed).
    #[serde(default)]
    pub dnssec: Option<DnssecSpec>,
}

/// `spec.dnssec`: the zone's keys, PEM (PKCS#8) ECDSA P-256 files made by
/// `causeway dns keygen`. Either `csk`, or `ksk` and `zsk`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnssecSpec {
    /// Combined signing key: signs every RRset; its DS goes to the parent.
    #[serde(default)]
    pub csk: Option<std::path::PathBuf>,
    /// Key-signing key: signs DNSKEY, CDS and CDNSKEY; its DS goes to the parent.
    #[serde(default)]
    pub ksk: Option<std::path::PathBuf>,
    /// Zone-signing key: signs every other RRset.
    #[serde(default)]
    pub zsk: Option<std::path::PathBuf>,
    /// TTL of DNSKEY, CDS and CDNSKEY. Default: the zone's `ttl`.
    #[serde(default)]
    pub ttl: Option<u32>,
}

fn default_ttl() -> u32 {
    300
}

/// SOA fields. `minimum` is the negative-caching TTL (RFC 2308).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SoaSpec {
    /// Primary name server. Default: the first `nameservers` entry.
    #[serde(default)]
    pub mname: Option<String>,
    /// Mailbox of the person responsible, as a name (`hostmaster.svc.example.`).
    pub rname: String,
    /// Serial. Default 1.
    #[serde(default = "default_serial")]
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

fn default_serial() -> u32 {
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameServerSpec {
    /// Its name (relative to the origin, or absolute with a trailing dot).
    pub name: String,
    /// Glue addresses (required when the name is inside the zone).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// Static record types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    /// With every target unhealthy: answer all of them (`true`, the default: a name that
    /// answers something beats none) or none (`false`: for a single-writer service whose
    /// old primary must not get new clients while a backup is promoted).
    #[serde(default = "default_fail_open")]
    pub fail_open: bool,
    /// `latency`: order used when the latency map has no data for the client. Default:
    /// the targets' order.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
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
fn default_fail_open() -> bool {
    true
}

/// One cluster behind a GSLB name.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    /// The cluster.
    #[schemars(with = "String")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    #[schemars(with = "String")]
    pub interval: HumanDuration,
    /// Probe timeout. Default `500ms`.
    #[serde(default = "default_timeout")]
    #[schemars(with = "String")]
    pub timeout: HumanDuration,
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
fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

/// `kind: LatencyMap` spec.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyMapSpec {
    /// Entries.
    #[serde(default)]
    pub entries: Vec<LatencyEntrySpec>,
    /// A big map in the line format of [`crate::latency::MapParser`] (`prefix CLUSTER...`
    /// header, then `PREFIX RTT|-...` lines), relative to the config file. Read when the
    /// config is loaded; not part of the CRD (a path on the dns host means nothing in
    /// the hub).
    #[serde(default)]
    #[schemars(skip)]
    pub file: Option<PathBuf>,
}

/// A `LatencyMap`'s `spec.file`, resolved.
#[derive(Debug, Clone)]
pub struct LatencyFile {
    /// The path, relative to the config file's directory when it was relative.
    pub path: PathBuf,
    /// As written in the config (named in errors).
    pub shown: String,
    /// Index of its document among those the config was read from.
    pub document: usize,
}

/// One static latency entry: client prefix → RTT per cluster in milliseconds.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyEntrySpec {
    /// Client network, e.g. `198.51.100.0/24`.
    #[schemars(with = "String")]
    pub prefix: IpNet,
    /// Cluster → RTT (ms).
    #[schemars(with = "BTreeMap<String, f64>")]
    pub rtt_ms: BTreeMap<ClusterId, f64>,
}

/// A validated zone.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// `metadata.name`.
    pub name: String,
    /// Apex, absolute and lower-case.
    pub origin: Name,
    /// The parsed spec (names still as written).
    pub spec: ZoneSpec,
    /// Index of its document among those the config was read from (for errors found
    /// later, when the zone is compiled).
    pub document: usize,
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
    /// Map files of the `LatencyMap`s (`spec.file`), in document order.
    pub latency_files: Vec<LatencyFile>,
}

impl Config {
    /// Reads the documents of `file` by kind and validates every value.
    pub fn from_documents(file: &Path, docs: &[Document]) -> Result<Self, ConfigError> {
        let mut server: Option<ServerSpec> = None;
        let mut zones: Vec<ZoneConfig> = Vec::new();
        let mut latency = Vec::new();
        let mut latency_files = Vec::new();
        let mut origins = HashSet::new();
        for (index, doc) in docs.iter().enumerate() {
            match doc.kind.as_str() {
                "DnsServer" => {
                    if server.is_some() {
                        return Err(doc.error("kind", "only one DnsServer document is allowed"));
                    }
                    let spec: ServerSpec = doc.spec()?;
                    validate_server(doc, &spec)?;
                    server = Some(spec);
                }
                "Zone" => {
                    let spec: ZoneSpec = doc.spec()?;
                    let origin =
                        parse_origin(&spec.origin).map_err(|r| doc.error("spec.origin", r))?;
                    if !origins.insert(origin.clone()) {
                        return Err(
                            doc.error("spec.origin", format!("zone {origin} is defined twice"))
                        );
                    }
                    validate_zone(doc, &spec)?;
                    zones.push(ZoneConfig {
                        name: doc.name().to_string(),
                        origin,
                        spec,
                        document: index,
                    });
                }
                "LatencyMap" => {
                    let spec: LatencyMapSpec = doc.spec()?;
                    validate_latency_map(doc, &spec)?;
                    latency.extend(spec.entries);
                    if let Some(f) = spec.file {
                        let path = match file.parent() {
                            Some(dir) if f.is_relative() => dir.join(&f),
                            _ => f.clone(),
                        };
                        latency_files.push(LatencyFile {
                            path,
                            shown: f.display().to_string(),
                            document: index,
                        });
                    }
                }
                _ => return Err(doc.unknown_kind(&KINDS)),
            }
        }
        if zones.is_empty() {
            return Err(ConfigError::file(
                file,
                "no Zone document: at least one zone is required",
            ));
        }
        Ok(Self {
            file: file.to_path_buf(),
            server: server.unwrap_or_default(),
            zones,
            latency,
            latency_files,
        })
    }
}

fn validate_server(doc: &Document, s: &ServerSpec) -> Result<(), ConfigError> {
    if s.udp_sockets_per_address == 0 || s.udp_sockets_per_address > 64 {
        return Err(doc.error("spec.udpSocketsPerAddress", "must be 1 to 64"));
    }
    if s.tcp.max_connections == 0 {
        return Err(doc.error("spec.tcp.maxConnections", "must be at least 1"));
    }
    if s.tcp.max_connections_per_prefix == 0 {
        return Err(doc.error("spec.tcp.maxConnectionsPerPrefix", "must be at least 1"));
    }
    if s.tcp.ipv4_prefix_length > 32 {
        return Err(doc.error("spec.tcp.ipv4PrefixLength", "must be 0 to 32"));
    }
    if s.tcp.ipv6_prefix_length > 128 {
        return Err(doc.error("spec.tcp.ipv6PrefixLength", "must be 0 to 128"));
    }
    if s.tcp.idle_timeout.0.is_zero() {
        return Err(doc.error("spec.tcp.idleTimeout", "must be positive"));
    }
    if let Some(rl) = &s.rate_limit {
        if rl.responses_per_second == 0 {
            return Err(doc.error("spec.rateLimit.responsesPerSecond", "must be at least 1"));
        }
        if rl.ipv4_prefix_length > 32 {
            return Err(doc.error("spec.rateLimit.ipv4PrefixLength", "must be 0 to 32"));
        }
        if rl.ipv6_prefix_length > 128 {
            return Err(doc.error("spec.rateLimit.ipv6PrefixLength", "must be 0 to 128"));
        }
    }
    if s.latency.max_age.0.is_zero() {
        return Err(doc.error("spec.latency.maxAge", "must be positive"));
    }
    for (field, v) in [
        ("id", s.identity.id.as_deref()),
        ("version", s.identity.version.as_deref()),
    ] {
        if let Some(v) = v
            && (v.is_empty() || v.len() > 255)
        {
            return Err(doc.error(
                &format!("spec.identity.{field}"),
                "must be 1 to 255 bytes (one TXT string)",
            ));
        }
    }
    if s.identity.nsid && s.identity.id.is_none() {
        return Err(doc.error(
            "spec.identity.nsid",
            "needs spec.identity.id (the NSID sent)",
        ));
    }
    Ok(())
}

fn validate_zone(doc: &Document, z: &ZoneSpec) -> Result<(), ConfigError> {
    if z.nameservers.is_empty() {
        return Err(doc.error("spec.nameservers", "at least one name server is required"));
    }
    for (field, v) in [
        ("refresh", z.soa.refresh),
        ("retry", z.soa.retry),
        ("expire", z.soa.expire),
    ] {
        if i32::try_from(v).is_err() {
            return Err(doc.error(&format!("spec.soa.{field}"), "must be at most 2147483647"));
        }
    }
    for (i, r) in z.records.iter().enumerate() {
        if r.data.is_empty() {
            return Err(doc.error(
                &format!("spec.records[{i}].data"),
                "at least one value is required",
            ));
        }
    }
    for (i, g) in z.gslb.iter().enumerate() {
        validate_gslb(doc, &format!("spec.gslb[{i}]"), g)?;
    }
    if let Some(d) = &z.dnssec {
        match (&d.csk, &d.ksk, &d.zsk) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            _ => {
                return Err(doc.error("spec.dnssec", "give either `csk`, or both `ksk` and `zsk`"));
            }
        }
    }
    Ok(())
}

fn validate_gslb(doc: &Document, field: &str, g: &GslbSpec) -> Result<(), ConfigError> {
    if g.targets.is_empty() {
        return Err(doc.error(
            &format!("{field}.targets"),
            "at least one target is required",
        ));
    }
    let mut seen = HashSet::new();
    for (i, t) in g.targets.iter().enumerate() {
        let field = format!("{field}.targets[{i}]");
        if !seen.insert(&t.cluster) {
            return Err(doc.error(
                &format!("{field}.cluster"),
                format!("cluster {} appears twice", t.cluster),
            ));
        }
        if t.addresses.is_empty() {
            return Err(doc.error(
                &format!("{field}.addresses"),
                "at least one address is required",
            ));
        }
        if let Some(c) = &t.health_check {
            validate_check(doc, &format!("{field}.healthCheck"), c)?;
        }
    }
    if g.policy == PolicyKind::Weighted && g.targets.iter().all(|t| t.weight == 0) {
        return Err(doc.error(
            &format!("{field}.targets"),
            "weighted: at least one target needs a weight above 0",
        ));
    }
    if g.max_answers == 0 {
        return Err(doc.error(&format!("{field}.maxAnswers"), "must be at least 1"));
    }
    for (i, c) in g.default_order.iter().enumerate() {
        if !g.targets.iter().any(|t| &t.cluster == c) {
            return Err(doc.error(
                &format!("{field}.defaultOrder[{i}]"),
                format!("cluster {c} is not a target"),
            ));
        }
    }
    Ok(())
}

fn validate_check(doc: &Document, field: &str, c: &HealthCheckSpec) -> Result<(), ConfigError> {
    if c.address.is_none() && c.port.is_none() {
        return Err(doc.error(field, "give `address` or `port`"));
    }
    for (name, d) in [("interval", c.interval), ("timeout", c.timeout)] {
        if d.0.is_zero() {
            return Err(doc.error(&format!("{field}.{name}"), "must be positive"));
        }
    }
    for (name, n) in [("rise", c.rise), ("fall", c.fall)] {
        if n == 0 {
            return Err(doc.error(&format!("{field}.{name}"), "must be at least 1"));
        }
    }
    if !c.path.starts_with('/') || c.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(doc.error(
            &format!("{field}.path"),
            "must start with / and hold no spaces or control characters",
        ));
    }
    Ok(())
}

fn validate_latency_map(doc: &Document, m: &LatencyMapSpec) -> Result<(), ConfigError> {
    if m.file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
        return Err(doc.error("spec.file", "must not be empty"));
    }
    for (i, e) in m.entries.iter().enumerate() {
        for (c, rtt) in &e.rtt_ms {
            if !rtt.is_finite() || *rtt < 0.0 {
                return Err(doc.error(
                    &format!("spec.entries[{i}].rttMs.{c}"),
                    format!("must be a non-negative number of milliseconds, found {rtt}"),
                ));
            }
        }
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

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let file = Path::new("t.yaml");
        Config::from_documents(file, &causeway_config::parse_str(file, text)?)
    }

    #[test]
    fn parses_a_good_file() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.zones.len(), 1);
        assert_eq!(c.zones[0].origin.to_ascii(), "svc.example.");
        assert_eq!(c.zones[0].document, 1);
        assert_eq!(c.server.listen.len(), 1);
        assert_eq!(c.server.tcp.idle_timeout.0, Duration::from_secs(10));
        assert_eq!(c.zones[0].spec.soa.serial, 1);
    }

    #[test]
    fn wrong_api_version() {
        let bad = GOOD.replacen("causeway.dev/v1alpha1", "v1", 1);
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.field, "apiVersion");
    }

    #[test]
    fn unknown_kind_names_the_kinds() {
        let bad = GOOD.replacen("kind: DnsServer", "kind: DnsServers", 1);
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.field, "kind");
        assert!(e.reason.contains("DnsServer, Zone or LatencyMap"), "{e}");
    }

    #[test]
    fn a_file_without_zones_is_an_error() {
        let only_server = &GOOD[..GOOD.find("---").unwrap()];
        let e = parse(only_server).unwrap_err();
        assert_eq!(e.position, None);
        assert!(e.reason.contains("no Zone document"), "{e}");
    }

    #[test]
    fn a_zone_defined_twice_is_an_error() {
        let zone = &GOOD[GOOD.find("---").unwrap()..];
        let e = parse(&format!("{GOOD}{zone}")).unwrap_err();
        assert_eq!(e.field, "spec.origin");
        assert!(e.reason.contains("defined twice"), "{e}");
    }

    #[test]
    fn identity_and_tcp_limits() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.server.identity, IdentitySpec::default());
        assert_eq!(c.server.identity.version(), None);
        assert_eq!(c.server.tcp.max_connections_per_prefix, 64);
        let with = |extra: &str| {
            GOOD.replacen(
                "  listen: [\"127.0.0.1:0\"]",
                &format!("  listen: [\"127.0.0.1:0\"]\n{extra}"),
                1,
            )
        };
        let c = parse(&with(
            "  identity: {id: ns-a, version: \"1.2\", nsid: true}",
        ))
        .unwrap();
        assert_eq!(c.server.identity.version(), Some("1.2"));
        assert_eq!(c.server.identity.nsid(), Some(&b"ns-a"[..]));
        let c = parse(&with("  identity: {id: ns-a, version: hide}")).unwrap();
        assert_eq!(
            (c.server.identity.version(), c.server.identity.nsid()),
            (None, None)
        );
        let e = parse(&with("  identity: {nsid: true}")).unwrap_err();
        assert_eq!(e.field, "spec.identity.nsid");
        let e = parse(&with(&format!("  identity: {{id: {}}}", "x".repeat(256)))).unwrap_err();
        assert_eq!(e.field, "spec.identity.id");
        let e = parse(&with("  tcp: {maxConnectionsPerPrefix: 0}")).unwrap_err();
        assert_eq!(e.field, "spec.tcp.maxConnectionsPerPrefix");
        let e = parse(&with("  tcp: {ipv6PrefixLength: 129}")).unwrap_err();
        assert_eq!(e.field, "spec.tcp.ipv6PrefixLength");
    }
}
