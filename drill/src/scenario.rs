//! The `Scenario` document: a drill as a file.
//!
//! ```yaml
//! apiVersion: causeway.dev/v1alpha1
//! kind: Scenario
//! metadata: {name: quickstart}
//! spec:
//!   description: one line, shown by `causeway drill --list`
//!   hypothesis: what should hold
//!   topology:
//!     clusters:
//!       - {name: idc-bj, role: idc, nodes: 1, cpu: "2"}
//!       - {name: aws-sg, role: cloud}
//!     clients:
//!       - {name: sg-users, subnet: 203.0.113.0/24, rttMs: {idc-bj: 70, aws-sg: 8}}
//!   install:                      # paths relative to this file
//!     policies: [policies.yaml]
//!     zones: [zone.yaml]
//!     workloads:                  # applied to the home cluster unless clusters are listed
//!       - {file: web.yaml}
//!   steps:
//!     - {name: settle, wait: 5s}
//!     - name: surge
//!       fault: {loadSurge: {scale: {cluster: idc-bj, workload: {namespace: shop, deployment: web}, replicas: 6}}}
//!     - name: burst-ready
//!       expect:
//!         replicasReady: {cluster: aws-sg, workload: {namespace: shop, deployment: web}, op: ">=", value: 2}
//!         within: 30s
//!     - name: time-to-burst
//!       measure: {from: surge, to: burst-ready, atMost: 30s}
//! ```
//!
//! Reading has two layers: [`parse_str`] reads the document through the config
//! envelope (unknown fields, types, durations) and checks it on its own (step names,
//! clusters, deadlines); [`Scenario::load`] also reads the files under `install`.
//! Every error is a [`ConfigError`] at the line and column of the field.
//!
//! Modules by concern: `topology` (clusters, client networks, stub, users), `install`
//! (the files installed and their checks against the steps), `steps` (waits, faults,
//! restores, expectations, measures), `validation` (the document as written and every
//! check made from it alone). Their public items are re-exported here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_config::{ConfigError, Document};
use causeway_model::ClusterId;

/// The document kind of a scenario.
pub const KIND: &str = "Scenario";

/// The longest deadline, wait or hold a step may have.
pub const MAX_STEP_DURATION: Duration = Duration::from_secs(3600);

/// Kinds accepted in `install.policies` files. A `Scheduler` document there is
/// ignored: the drill runs its own scheduler.
pub const POLICY_KINDS: &[&str] = &["Scheduler", "BurstPolicy", "SpreadPolicy", "FailoverPolicy"];

/// Kinds accepted in `install.zones` files. A `DnsServer` document there is ignored:
/// the drill runs its own dns with its own listeners.
pub const ZONE_KINDS: &[&str] = &["DnsServer", "Zone", "LatencyMap"];

/// A checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The file it was read from; `install` paths are relative to its folder.
    pub file: PathBuf,
    /// `metadata.name`.
    pub name: String,
    /// One line saying what the drill does (`causeway drill --list`).
    pub description: String,
    /// What should hold, in words.
    pub hypothesis: String,
    /// The sandbox the drill runs on.
    pub topology: Topology,
    /// What is installed before the first step.
    pub install: Install,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

mod install;
mod steps;
mod topology;
mod validation;

pub use install::*;
pub use steps::*;
pub use topology::*;
use validation::check;

/// Reads the one `Scenario` document of a file and checks it on its own (no other
/// file is read; see [`Scenario::load`]).
pub fn parse_str(file: &Path, text: &str) -> Result<Scenario, ConfigError> {
    let docs = causeway_config::parse_str(file, text)?;
    from_documents(file, &docs)
}

/// The scenario in `docs`, which must hold exactly one `Scenario` document.
pub fn from_documents(file: &Path, docs: &[Document]) -> Result<Scenario, ConfigError> {
    let mut found: Option<Scenario> = None;
    for doc in docs {
        if doc.kind != KIND {
            return Err(doc.unknown_kind(&[KIND]));
        }
        if found.is_some() {
            return Err(doc.error("", "a scenario file holds one Scenario document"));
        }
        found = Some(check(doc)?);
    }
    found.ok_or_else(|| ConfigError::file(file, "no Scenario document in the file"))
}

impl Scenario {
    /// Reads `path`, checks the scenario, and reads every file under `install`
    /// (policies and zones through the config envelope, with their kinds checked;
    /// workloads must be readable). A `primary` expectation must name a
    /// `FailoverPolicy`, an `external` surge a `BurstPolicy`, from those files.
    pub fn load(path: &Path) -> Result<Scenario, ConfigError> {
        let docs = causeway_config::read_file(path)?;
        let scenario = from_documents(path, &docs)?;
        // from_documents returned Ok, so there is exactly one document.
        let Some(doc) = docs.first() else {
            return Err(ConfigError::file(path, "no Scenario document in the file"));
        };
        scenario.check_install(doc)?;
        Ok(scenario)
    }

    /// `path` of `install`, relative to the scenario file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.file.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The cluster of the topology named `name`.
    pub fn cluster(&self, name: &ClusterId) -> Option<&Cluster> {
        self.topology.clusters.iter().find(|c| &c.name == name)
    }

    /// The index of the step named `name`.
    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// The home cluster: the first of role `idc`.
    pub fn home(&self) -> Option<&Cluster> {
        self.topology.clusters.iter().find(|c| c.role == Role::Idc)
    }

    /// The clusters `workload` is applied to.
    pub fn workload_clusters(&self, workload: &Workload) -> Vec<ClusterId> {
        if workload.clusters.is_empty() {
            self.home()
                .map(|c| vec![c.name.clone()])
                .unwrap_or_default()
        } else {
            workload.clusters.clone()
        }
    }

    /// The first line of the description.
    pub fn summary_line(&self) -> &str {
        self.description.lines().next().unwrap_or_default().trim()
    }
}

#[cfg(test)]
mod tests;
