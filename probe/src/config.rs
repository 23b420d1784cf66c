//! The prober's config: one `kind: Prober` document in the envelope every Causeway
//! file shares.
//!
//! ```yaml
//! apiVersion: causeway.dev/v1alpha1
//! kind: Prober
//! metadata: {name: edge}
//! spec:
//!   dns: ["10.0.0.53:8053"]      # causeway dns API addresses (--dns replaces them)
//!   interval: 1s                 # one round over every beacon
//!   timeout: 1s                  # per measurement
//!   method: tcp-echo             # or tcp-connect, or icmp (port ignored)
//!   alpha: 0.3                   # EWMA weight of a new sample
//!   minSamples: 3                # samples before a beacon is reported
//!   fall: 3                      # consecutive failures that forget a beacon's samples
//!   beacons:
//!     - prefix: 198.51.100.0/24
//!       addresses: ["198.51.100.10:7"]
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use causeway_config::{ConfigError, Document, HumanDuration};
use ipnet::IpNet;
use serde::Deserialize;

/// How a beacon is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Connect, send one byte, time until it comes back (a TCP echo beacon, e.g.
    /// `causeway probe beacon`): the application-level RTT, also through relays and NAT.
    #[default]
    TcpEcho,
    /// Time the TCP connect (SYN → SYN-ACK): any listening port, but a proxy or NAT that
    /// terminates TCP on the way answers for the beacon.
    TcpConnect,
    /// ICMP echo to the beacon's address (its port is ignored): the network RTT with no
    /// listener needed, where ICMP is permitted (see [`crate::icmp`]); checked when the
    /// config loads.
    Icmp,
}

/// One client network and its beacons.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BeaconSpec {
    /// The client network the beacons stand for.
    pub prefix: IpNet,
    /// `ADDR:PORT` of each beacon; the prefix is reported with the lowest smoothed RTT.
    pub addresses: Vec<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    dns: Vec<SocketAddr>,
    #[serde(default = "default_interval")]
    interval: HumanDuration,
    #[serde(default = "default_timeout")]
    timeout: HumanDuration,
    #[serde(default)]
    method: Method,
    #[serde(default = "default_alpha")]
    alpha: f64,
    #[serde(default = "default_min_samples")]
    min_samples: u32,
    #[serde(default = "default_fall")]
    fall: u32,
    beacons: Vec<BeaconSpec>,
}

fn default_interval() -> HumanDuration {
    Duration::from_secs(5).into()
}
fn default_timeout() -> HumanDuration {
    Duration::from_secs(1).into()
}
fn default_alpha() -> f64 {
    0.3
}
fn default_min_samples() -> u32 {
    3
}
fn default_fall() -> u32 {
    3
}

/// Most beacons in one config.
pub const MAX_BEACONS: usize = 10_000;

/// A checked `kind: Prober` document.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    /// `metadata.name` (the prober's identity is `cluster/name`).
    pub name: String,
    /// dns API addresses.
    pub dns: Vec<SocketAddr>,
    /// Time between rounds.
    pub interval: Duration,
    /// Per-measurement timeout.
    pub timeout: Duration,
    /// How beacons are timed.
    pub method: Method,
    /// EWMA weight of a new sample, in (0, 1].
    pub alpha: f64,
    /// Samples before a beacon counts.
    pub min_samples: u32,
    /// Consecutive failures after which a beacon's samples are forgotten.
    pub fall: u32,
    /// The client networks and their beacons.
    pub beacons: Vec<BeaconSpec>,
}

impl ProberConfig {
    /// Reads the one `kind: Prober` document of `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let docs = causeway_config::read_file(path)?;
        let mut found = None;
        for doc in &docs {
            if doc.kind != "Prober" {
                return Err(doc.unknown_kind(&["Prober"]));
            }
            if found.is_some() {
                return Err(doc.error("kind", "only one Prober document per file"));
            }
            found = Some(Self::from_document(doc)?);
        }
        found.ok_or_else(|| ConfigError {
            file: path.to_path_buf(),
            position: None,
            object: None,
            field: "kind".into(),
            reason: "no Prober document".into(),
        })
    }

    /// Reads and checks one document.
    pub fn from_document(doc: &Document) -> Result<Self, ConfigError> {
        let s: Spec = doc.spec()?;
        if s.interval.0 < Duration::from_millis(10) {
            return Err(doc.error("spec.interval", "must be at least 10ms"));
        }
        if s.timeout.0.is_zero() {
            return Err(doc.error("spec.timeout", "must be positive"));
        }
        if !(s.alpha > 0.0 && s.alpha <= 1.0) {
            return Err(doc.error("spec.alpha", "must be in (0, 1]"));
        }
        if s.min_samples == 0 {
            return Err(doc.error("spec.minSamples", "must be at least 1"));
        }
        if s.fall == 0 {
            return Err(doc.error("spec.fall", "must be at least 1"));
        }
        if s.beacons.is_empty() {
            return Err(doc.error("spec.beacons", "at least one client network"));
        }
        let total: usize = s.beacons.iter().map(|b| b.addresses.len()).sum();
        if total > MAX_BEACONS {
            return Err(doc.error("spec.beacons", format!("at most {MAX_BEACONS} beacons")));
        }
        for (i, b) in s.beacons.iter().enumerate() {
            if b.addresses.is_empty() {
                return Err(doc.error(
                    &format!("spec.beacons[{i}].addresses"),
                    "at least one ADDR:PORT",
                ));
            }
            if s.method == Method::Icmp
                && let Some(a) = b.addresses.first()
                && let Err(e) = crate::icmp::permitted(a.ip())
            {
                return Err(doc.error("spec.method", format!("icmp: {e}")));
            }
            if b.prefix != b.prefix.trunc() {
                return Err(doc.error(
                    &format!("spec.beacons[{i}].prefix"),
                    format!("host bits set; write {}", b.prefix.trunc()),
                ));
            }
        }
        Ok(Self {
            name: doc.name().to_string(),
            dns: s.dns,
            interval: s.interval.0,
            timeout: s.timeout.0,
            method: s.method,
            alpha: s.alpha,
            min_samples: s.min_samples,
            fall: s.fall,
            beacons: s.beacons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ProberConfig, ConfigError> {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("p.yaml");
        std::fs::write(&p, text).expect("write");
        ProberConfig::load(&p)
    }

    const HEAD: &str = "apiVersion: causeway.dev/v1alpha1\nkind: Prober\nmetadata: {name: edge}\n";

    #[test]
    fn reads_defaults_and_fields() {
        let c = load(&format!(
            "{HEAD}spec:\n  interval: 200ms\n  alpha: 0.5\n  beacons:\n    - prefix: 10.1.0.0/24\n      addresses: [\"10.1.0.2:7\"]\n"
        ))
        .expect("valid");
        assert_eq!(c.name, "edge");
        assert_eq!(c.interval, Duration::from_millis(200));
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.alpha, 0.5);
        assert_eq!(c.min_samples, 3);
        assert_eq!(c.method, Method::TcpEcho);
        assert_eq!(c.beacons[0].addresses.len(), 1);
    }

    #[test]
    fn icmp_loads_where_permitted_and_says_why_not_elsewhere() {
        let r = load(&format!(
            "{HEAD}spec:\n  method: icmp\n  beacons:\n    - prefix: 10.1.0.0/24\n      addresses: [\"127.0.0.1:0\"]\n"
        ));
        match crate::icmp::permitted("127.0.0.1".parse().expect("ip")) {
            Ok(()) => assert_eq!(r.expect("icmp permitted").method, Method::Icmp),
            Err(_) => {
                let e = r.expect_err("icmp not permitted");
                assert!(e.to_string().contains("spec.method"), "{e}");
                assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
            }
        }
    }

    #[test]
    fn names_the_bad_field() {
        let e = load(&format!(
            "{HEAD}spec:\n  alpha: 1.5\n  beacons:\n    - prefix: 10.1.0.0/24\n      addresses: [\"10.1.0.2:7\"]\n"
        ))
        .expect_err("alpha");
        assert!(e.to_string().contains("spec.alpha"), "{e}");
        let e = load(&format!(
            "{HEAD}spec:\n  beacons:\n    - prefix: 10.1.0.1/24\n      addresses: [\"10.1.0.2:7\"]\n"
        ))
        .expect_err("host bits");
        assert!(e.to_string().contains("spec.beacons[0].prefix"), "{e}");
        let e = load(&format!("{HEAD}spec:\n  beacons: []\n  bogus: 1\n")).expect_err("unknown");
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
