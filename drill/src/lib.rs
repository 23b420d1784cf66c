//! Failover drills as files (issue 11).
//!
//! A drill proves a burst or failover set-up before the real outage: a [`Scenario`]
//! file names the sandbox (clusters, client networks, stub), what to install (the
//! same policy and zone files users write), and ordered steps — waits, faults,
//! expectations with deadlines, and measures between steps. Running one produces a
//! [`Report`].
//!
//! Start here: [`Scenario::load`] reads and checks a file; every error is a
//! [`causeway_config::ConfigError`] (`file:line:column: Scenario/name: field: reason`).
//!
//! Module map:
//! * [`scenario`]: the `Scenario` document, its types and its checks.
//! * [`report`]: the result of a run (JSON through serde) and its plain-text summary.
//! * [`run`]: running a scenario on a local sandbox (testbed clusters, stub, agents,
//!   dns, scheduler) or against a [`DrillTarget`], its faults and their revert,
//!   expectation polling, the report.
//! * [`target`]: the `DrillTarget` document (an existing deployment to run against).
#![warn(missing_docs)]

pub mod report;
pub mod run;
pub mod scenario;
pub mod target;

pub use report::{MeasureReport, Report, StepReport};
pub use scenario::{Scenario, Step, StepAction, parse_str};
pub use target::DrillTarget;
