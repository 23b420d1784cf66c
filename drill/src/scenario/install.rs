//! `spec.install`: the files installed before the first step, and their checks
//! against the steps ([`Scenario::load`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use causeway_config::{ConfigError, Document};
use causeway_model::ClusterId;
use serde::Deserialize;

use super::*;

/// Files installed before the first step, as written (relative to the scenario file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Install {
    /// Causeway policy files (`BurstPolicy`, `SpreadPolicy`, `FailoverPolicy`).
    #[serde(default)]
    pub policies: Vec<PathBuf>,
    /// dns files (`Zone`, `LatencyMap`).
    #[serde(default)]
    pub zones: Vec<PathBuf>,
    /// Kubernetes manifests (Namespaces, Deployments, HPAs) and where they go.
    #[serde(default)]
    pub workloads: Vec<Workload>,
}

/// `install.workloads[i]`: a Kubernetes manifest applied with kubectl.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// The manifest, relative to the scenario file.
    pub file: PathBuf,
    /// The clusters it is applied to; default: the home cluster (the first `idc` one).
    #[serde(default)]
    pub clusters: Vec<ClusterId>,
}

impl Scenario {
    /// The files under `install` read, with their kinds checked; the policies that
    /// steps name exist with the right kind.
    pub(super) fn check_install(&self, doc: &Document) -> Result<(), ConfigError> {
        let mut policies: BTreeMap<String, String> = BTreeMap::new(); // name → kind
        for (i, w) in self.install.workloads.iter().enumerate() {
            let path = self.resolve(&w.file);
            std::fs::read_to_string(&path).map_err(|e| {
                doc.error(
                    &format!("spec.install.workloads[{i}].file"),
                    format_args!("cannot read {}: {e}", path.display()),
                )
            })?;
        }
        let lists: [(&str, &[PathBuf], &[&str]); 2] = [
            ("policies", &self.install.policies, POLICY_KINDS),
            ("zones", &self.install.zones, ZONE_KINDS),
        ];
        for (list, paths, kinds) in lists {
            for (i, p) in paths.iter().enumerate() {
                let field = format!("spec.install.{list}[{i}]");
                let path = self.resolve(p);
                let docs = causeway_config::read_file(&path)
                    .map_err(|e| doc.error(&field, format_args!("in the file named here: {e}")))?;
                if docs.is_empty() {
                    return Err(
                        doc.error(&field, format_args!("{} holds no document", path.display()))
                    );
                }
                for d in &docs {
                    if !kinds.contains(&d.kind.as_str()) {
                        return Err(doc.error(
                            &field,
                            format_args!("in the file named here: {}", d.unknown_kind(kinds)),
                        ));
                    }
                    if list == "policies" && d.kind != "Scheduler" {
                        policies.insert(d.name().to_string(), d.kind.clone());
                    }
                }
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            let (field, name, kind) = match &step.action {
                StepAction::Expect(Expect {
                    condition: Condition::Primary(p),
                    ..
                }) => ("expect.primary.policy", &p.policy, "FailoverPolicy"),
                StepAction::Fault(Fault::LoadSurge(LoadSurge::External(e))) => {
                    ("fault.loadSurge.external.policy", &e.policy, "BurstPolicy")
                }
                _ => continue,
            };
            if policies.get(name).map(String::as_str) != Some(kind) {
                return Err(doc.error(
                    &format!("spec.steps[{i}].{field}"),
                    format_args!("no {kind} named {name:?} in install.policies"),
                ));
            }
        }
        Ok(())
    }
}
