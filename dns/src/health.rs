//! Target health: active probes with hysteresis, combined with external reports.
//!
//! * [`probe`] turns compiled checks into probe targets (reading CA files once per
//!   configuration) and runs one HTTP, HTTPS or TCP check.
//! * [`hysteresis`] turns check results into `Healthy`/`Unhealthy` with separate
//!   `rise` and `fall` thresholds, and runs the periodic check loop.
//! * External reports ([`causeway_model::HealthReport`], posted to `/v1/health`) are
//!   kept by [`crate::builder`]; a target is answered unless its probe or a report
//!   says `unhealthy` ([`crate::state::TargetHealth::combine`]).

pub mod hysteresis;
pub mod probe;

pub use hysteresis::{Hysteresis, run_checks};
pub use probe::{ProbeError, ProbeSetupError, ProbeTarget, ProbeTargets};
