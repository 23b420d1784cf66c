//! `scheduler plan --what-if`: change an observed state the way an event would, then
//! plan it with the same pure planner the live scheduler runs.
//!
//! | what-if | effect |
//! |---|---|
//! | `CLUSTER down` | the cluster is unreachable |
//! | `CLUSTER up` | the cluster is reachable again (with what was last seen of it) |
//! | `load ×N` or `load xN` | N times the demand: home replicas for capacity policies (the extra ones Pending where they do not fit), CPU usage for HPA policies, the value for external ones |
//! | `external POLICY=VALUE` | the external metric of POLICY is VALUE |
//! | `after DURATION` | plan DURATION later (stabilization windows, drains) |

use std::time::Duration;

use causeway_model::ClusterId;

use crate::observed::Observed;

/// A parsed what-if.
#[derive(Debug, Clone, PartialEq)]
pub enum WhatIf {
    /// `CLUSTER down`.
    Down(ClusterId),
    /// `CLUSTER up`.
    Up(ClusterId),
    /// `load ×N`.
    Load(f64),
    /// `external POLICY=VALUE`.
    External(String, f64),
    /// `after DURATION`.
    After(Duration),
}

/// Why a what-if does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "what-if {text:?}: {reason}; write e.g. 'idc-bj down', 'load x3', 'external web=1200', 'after 5m'"
)]
pub struct WhatIfError {
    text: String,
    reason: String,
}

impl std::str::FromStr for WhatIf {
    type Err = WhatIfError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| WhatIfError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["load", factor] => {
                let f = factor
                    .trim_start_matches(['x', '×', '*'])
                    .parse::<f64>()
                    .map_err(|_| err("the factor is not a number"))?;
                if !(f.is_finite() && f >= 0.0) {
                    return Err(err("the factor must be 0 or more"));
                }
                Ok(WhatIf::Load(f))
            }
            ["external", kv] => {
                let (p, v) = kv
                    .split_once('=')
                    .ok_or_else(|| err("expected POLICY=VALUE"))?;
                let v: f64 = v.parse().map_err(|_| err("the value is not a number"))?;
                Ok(WhatIf::External(p.to_string(), v))
            }
            ["after", d] => humantime::parse_duration(d)
                .map(WhatIf::After)
                .map_err(|e| err(&e.to_string())),
            [cluster, "down"] | [cluster, "up"] => {
                let id = ClusterId::new(*cluster).map_err(|e| err(&e.to_string()))?;
                Ok(if words[1] == "down" {
                    WhatIf::Down(id)
                } else {
                    WhatIf::Up(id)
                })
            }
            _ => Err(err("not understood")),
        }
    }
}

impl WhatIf {
    /// Changes `observed` (and `now`, for `after`).
    pub fn apply(&self, observed: &mut Observed, now: &mut Duration) {
        match self {
            WhatIf::Down(c) => {
                if let Some(s) = observed.clusters.get_mut(c) {
                    s.reachable = false;
                    s.error = Some("what-if: down".into());
                }
            }
            WhatIf::Up(c) => {
                if let Some(s) = observed.clusters.get_mut(c) {
                    s.reachable = true;
                    s.error = None;
                }
            }
            WhatIf::Load(f) => {
                for v in observed.external.values_mut() {
                    *v *= f;
                }
                for cs in observed.clusters.values_mut() {
                    let free = cs.free();
                    for w in cs.workloads.values_mut() {
                        if let Some(u) = w.cpu_usage_millis.as_mut() {
                            *u = (*u as f64 * f).round() as u64;
                        }
                        if w.managed || w.hpa.is_some() {
                            continue;
                        }
                        // Capacity: more replicas wanted; what the free allocatable does not take is Pending.
                        let wanted = (f64::from(w.replicas) * f).ceil() as u32;
                        let extra = wanted.saturating_sub(w.replicas);
                        let fit = u32::try_from(free.fits(w.pod_requests)).unwrap_or(u32::MAX);
                        w.unschedulable += extra.saturating_sub(fit);
                        w.replicas = wanted;
                    }
                }
            }
            WhatIf::External(p, v) => {
                observed.external.insert(p.clone(), *v);
            }
            WhatIf::After(d) => *now += *d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            "idc-bj down".parse(),
            Ok(WhatIf::Down(ClusterId::new("idc-bj").unwrap()))
        );
        assert_eq!("load ×3".parse(), Ok(WhatIf::Load(3.0)));
        assert_eq!("load x1.5".parse(), Ok(WhatIf::Load(1.5)));
        assert_eq!(
            "external web=1200".parse(),
            Ok(WhatIf::External("web".into(), 1200.0))
        );
        assert_eq!(
            "after 5m".parse(),
            Ok(WhatIf::After(Duration::from_secs(300)))
        );
        let e = "IDC down".parse::<WhatIf>().unwrap_err().to_string();
        assert!(e.contains("cluster ID"), "{e}");
        assert!("load lots".parse::<WhatIf>().is_err());
        assert!("explode".parse::<WhatIf>().is_err());
    }
}
