//! The pure half of self-fencing: read a role Lease ([`parse_lease`]) and decide, from
//! what was seen before and the clocks, whether it has expired ([`decide`]).
//!
//! Expiry is measured on the monotonic clock from the moment the agent saw the
//! Lease's current `renewTime`, so the scheduler's and the agent's wall clocks need not
//! agree. Only at first sight (agent start, a new Lease) does the wall clock count: a
//! Lease whose `renewTime` is already old starts that old, so an agent restarted after
//! the renewals stopped still fences.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::{
    ANNOTATION_CONFIGMAP, ANNOTATION_DEPLOYMENT, ANNOTATION_FENCED_AT, ANNOTATION_MODE,
    LABEL_POLICY,
};

/// A Lease's `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    /// Its namespace (the workload's).
    pub namespace: String,
    /// Its name, `causeway-role-<policy>`.
    pub name: String,
}

impl std::fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a fence does to the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceMode {
    /// ConfigMap `role=fenced` and the Deployment scaled to 0.
    ScaleToZero,
    /// ConfigMap `role=fenced` only.
    Role,
}

/// A valid role Lease, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleLease {
    /// Where it is.
    pub key: LeaseKey,
    /// Its policy (label `causeway.dev/policy`, else the Lease name).
    pub policy: String,
    /// `spec.renewTime`, by the scheduler's clock.
    pub renewed_at: SystemTime,
    /// `spec.leaseDurationSeconds`.
    pub duration: Duration,
    /// The Deployment to scale to zero.
    pub deployment: String,
    /// The role ConfigMap.
    pub configmap: String,
    /// What to do.
    pub mode: FenceMode,
    /// `causeway.dev/fenced-at`, when an agent already fenced it.
    pub fenced_at: Option<SystemTime>,
}

/// One listed Lease: usable, or why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// A role Lease the agent can act on.
    Valid(RoleLease),
    /// Ignored (hostile or broken input), with the reason.
    Invalid {
        /// Where it is (`?` parts when even that was unreadable).
        key: LeaseKey,
        /// What is wrong.
        reason: String,
    },
}

/// Reads one item of a LeaseList. Never panics: anything missing or malformed makes
/// the Lease [`Listed::Invalid`].
pub fn parse_lease(item: &Value) -> Listed {
    let meta = &item["metadata"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let key = LeaseKey {
        namespace: text(&meta["namespace"]).unwrap_or_else(|| "?".into()),
        name: text(&meta["name"]).unwrap_or_else(|| "?".into()),
    };
    match read_valid(item, &key) {
        Ok(lease) => Listed::Valid(lease),
        Err(reason) => Listed::Invalid { key, reason },
    }
}

fn read_valid(item: &Value, key: &LeaseKey) -> Result<RoleLease, String> {
    if !is_dns_subdomain(&key.namespace) || !is_dns_subdomain(&key.name) {
        return Err("metadata.namespace or metadata.name is missing or not a DNS name".into());
    }
    let meta = &item["metadata"];
    let spec = &item["spec"];
    let annotation = |name: &str| -> Result<String, String> {
        let v = meta["annotations"][name]
            .as_str()
            .ok_or_else(|| format!("annotation {name} is missing"))?;
        if is_dns_subdomain(v) {
            Ok(v.to_owned())
        } else {
            Err(format!("annotation {name}: {v:?} is not a DNS name"))
        }
    };
    let seconds = spec["leaseDurationSeconds"]
        .as_i64()
        .ok_or("spec.leaseDurationSeconds is missing or not an integer")?;
    let seconds = u64::try_from(seconds)
        .ok()
        .filter(|s| *s >= 1)
        .ok_or_else(|| format!("spec.leaseDurationSeconds {seconds} is below 1"))?;
    let renew = spec["renewTime"]
        .as_str()
        .ok_or("spec.renewTime is missing")?;
    let renewed_at =
        humantime::parse_rfc3339(renew).map_err(|e| format!("spec.renewTime {renew:?}: {e}"))?;
    let mode = match meta["annotations"][ANNOTATION_MODE].as_str() {
        Some("scale-to-zero") => FenceMode::ScaleToZero,
        Some("role") => FenceMode::Role,
        Some(other) => {
            return Err(format!(
                "annotation {ANNOTATION_MODE}: {other:?} is neither scale-to-zero nor role"
            ));
        }
        None => return Err(format!("annotation {ANNOTATION_MODE} is missing")),
    };
    let fenced_at = meta["annotations"][ANNOTATION_FENCED_AT]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok());
    Ok(RoleLease {
        key: key.clone(),
        policy: meta["labels"][LABEL_POLICY]
            .as_str()
            .unwrap_or(&key.name)
            .to_owned(),
        renewed_at,
        duration: Duration::from_secs(seconds),
        deployment: annotation(ANNOTATION_DEPLOYMENT)?,
        configmap: annotation(ANNOTATION_CONFIGMAP)?,
        mode,
        fenced_at,
    })
}

/// RFC 1123 subdomain (what Kubernetes accepts as an object name): the names land
/// in URL paths, so nothing else may pass.
fn is_dns_subdomain(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| alnum(b) || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(alnum)
        && s.bytes().last().is_some_and(alnum)
}

/// Both clocks, read once per round.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic: measures every age.
    pub mono: Instant,
    /// Wall clock: only for a Lease seen for the first time.
    pub wall: SystemTime,
}

impl Now {
    /// The clocks now.
    pub fn read() -> Self {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What the agent remembers of one Lease.
#[derive(Clone, Debug)]
struct Track {
    /// The `renewTime` seen.
    renewed_at: SystemTime,
    /// When it was first seen (monotonic).
    seen_at: Instant,
    /// How old it already was then (0 unless it was the first sight).
    age_at_seen: Duration,
    /// Whether this `renewTime` has been fenced.
    fenced: bool,
}

/// The agent's memory across rounds (and across API outages: only a successful list
/// that lacks a Lease forgets it).
#[derive(Debug, Default)]
pub struct Memory {
    leases: HashMap<LeaseKey, Track>,
    invalid: HashMap<LeaseKey, String>,
}

impl Memory {
    /// Records that `lease`'s current `renewTime` has been fenced: no second fence
    /// until the scheduler renews it.
    pub fn fenced(&mut self, lease: &RoleLease) {
        if let Some(t) = self.leases.get_mut(&lease.key)
            && t.renewed_at == lease.renewed_at
        {
            t.fenced = true;
        }
    }
}

/// The verdict on one listed Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Renewed within its duration.
    Live {
        /// The Lease.
        lease: &'a RoleLease,
        /// Time left until it expires, unless renewed (monotonic).
        remaining: Duration,
    },
    /// Expired and not yet fenced for this `renewTime`: fence now.
    Fence {
        /// The Lease.
        lease: &'a RoleLease,
        /// Time since the renewal (monotonic, plus the age at first sight).
        since_renewal: Duration,
    },
    /// Expired and already fenced for this `renewTime`.
    Fenced(&'a RoleLease),
    /// Ignored; `warn` the first time this reason is seen for this Lease.
    Invalid {
        /// The Lease.
        key: &'a LeaseKey,
        /// What is wrong.
        reason: &'a str,
        /// Whether to log it (new Lease or new reason).
        warn: bool,
    },
}

/// Decides, for every Lease of one successful list, whether to fence, and updates
/// `memory`: new Leases are tracked (aged by the wall clock), a changed `renewTime`
/// restarts the age at zero, Leases absent from `listed` are forgotten.
pub fn decide<'a>(memory: &mut Memory, listed: &'a [Listed], now: Now) -> Vec<Decision<'a>> {
    let mut out = Vec::with_capacity(listed.len());
    let mut valid_keys = Vec::new();
    let mut invalid_keys = Vec::new();
    for l in listed {
        match l {
            Listed::Invalid { key, reason } => {
                invalid_keys.push(key);
                memory.leases.remove(key);
                let warn = memory.invalid.get(key) != Some(reason);
                if warn {
                    memory.invalid.insert(key.clone(), reason.clone());
                }
                out.push(Decision::Invalid { key, reason, warn });
            }
            Listed::Valid(lease) => {
                valid_keys.push(&lease.key);
                memory.invalid.remove(&lease.key);
                let track = memory
                    .leases
                    .entry(lease.key.clone())
                    .and_modify(|t| {
                        if t.renewed_at != lease.renewed_at {
                            *t = Track {
                                renewed_at: lease.renewed_at,
                                seen_at: now.mono,
                                age_at_seen: Duration::ZERO,
                                fenced: false,
                            };
                        }
                    })
                    .or_insert_with(|| Track {
                        renewed_at: lease.renewed_at,
                        seen_at: now.mono,
                        // A renewTime in the future (clock skew) counts as now.
                        age_at_seen: now
                            .wall
                            .duration_since(lease.renewed_at)
                            .unwrap_or_default(),
                        // An agent (maybe this one before a restart) fenced this renewal.
                        fenced: lease.fenced_at.is_some_and(|f| f >= lease.renewed_at),
                    });
                let age = now.mono.saturating_duration_since(track.seen_at) + track.age_at_seen;
                out.push(if age <= lease.duration {
                    Decision::Live {
                        lease,
                        remaining: lease.duration - age,
                    }
                } else if track.fenced {
                    Decision::Fenced(lease)
                } else {
                    Decision::Fence {
                        lease,
                        since_renewal: age,
                    }
                });
            }
        }
    }
    memory.leases.retain(|k, _| valid_keys.contains(&k));
    memory.invalid.retain(|k, _| invalid_keys.contains(&k));
    out
}
