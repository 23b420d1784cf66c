//! `DrillTarget`: an existing deployment a scenario runs against (`causeway drill FILE
//! --target TARGET.yaml`), instead of a sandbox. Nothing is installed there: the drill
//! only observes it and, with `--allow-faults`, produces the faults that can be made
//! through its APIs (and reverts them).
//!
//! ```yaml
//! apiVersion: causeway.dev/v1alpha1
//! kind: DrillTarget
//! metadata: {name: staging}
//! spec:
//!   kubeconfig: admin.kubeconfig        # relative to this file; the clusters' contexts
//!   kubectl: kubectl                    # optional (default: kubectl on PATH)
//!   clusters:
//!     - name: idc-bj                    # the scenario's cluster name
//!       context: idc-bj                 # default: the name
//!       kubeconfig: idc-bj.kubeconfig   # optional: overrides spec.kubeconfig
//!       agents: {namespace: causeway-system, deployment: causeway-agent}  # optional
//!   users:                              # the scenario's topology.users
//!     - {name: alice, kubeconfig: alice.kubeconfig}   # contexts named after the clusters
//!   dns: {server: "10.0.0.53:53", api: "http://10.0.0.53:8053"}       # optional
//!   scheduler: "http://10.0.0.80:8080"  # optional
//!   stubMetrics: "10.0.0.90:9090"       # optional: the stub's metrics listener
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use causeway_config::{ConfigError, Document};
use serde::Deserialize;

use crate::scenario::{Fault, LoadSurge, Scenario, StepAction, WorkloadRef};

/// The kind of the document.
pub const KIND: &str = "DrillTarget";

/// An existing deployment, as read from a `DrillTarget` file (paths resolved).
#[derive(Debug, Clone)]
pub struct DrillTarget {
    /// The file it was read from.
    pub file: PathBuf,
    /// `metadata.name`.
    pub name: String,
    /// The kubectl binary.
    pub kubectl: PathBuf,
    /// The clusters, by the scenario's names.
    pub clusters: Vec<TargetCluster>,
    /// Users' kubeconfigs (contexts named after the clusters).
    pub users: Vec<(String, PathBuf)>,
    /// dns: where to `dig`, and its API.
    pub dns: Option<TargetDns>,
    /// The scheduler's API (`http://HOST:PORT`).
    pub scheduler: Option<SocketAddr>,
    /// The stub's metrics listener.
    pub stub_metrics: Option<SocketAddr>,
}

/// One cluster of a target.
#[derive(Debug, Clone)]
pub struct TargetCluster {
    /// The scenario's name of the cluster.
    pub name: String,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Its context there.
    pub context: String,
    /// The Deployment of its agents, when the target says where they run.
    pub agents: Option<WorkloadRef>,
}

/// dns of a target.
#[derive(Debug, Clone, Copy)]
pub struct TargetDns {
    /// Its DNS listener (UDP), for `dig`.
    pub server: SocketAddr,
    /// Its API listener, when given.
    pub api: Option<SocketAddr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    kubectl: Option<PathBuf>,
    clusters: Vec<RawCluster>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    dns: Option<RawDns>,
    #[serde(default)]
    scheduler: Option<String>,
    #[serde(default)]
    stub_metrics: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCluster {
    name: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    agents: Option<WorkloadRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawUser {
    name: String,
    kubeconfig: PathBuf,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDns {
    server: String,
    #[serde(default)]
    api: Option<String>,
}

/// `HOST:PORT` or `http://HOST:PORT[/]` → the address.
fn addr(s: &str) -> Result<SocketAddr, String> {
    let bare = s.trim().trim_start_matches("http://").trim_end_matches('/');
    bare.parse().map_err(|_| {
        format!("{s:?} is not an address: write IP:PORT or http://IP:PORT (no https, no path)")
    })
}

impl DrillTarget {
    /// Reads and checks `path` (one `DrillTarget` document, errors at `file:line:col`).
    pub fn load(path: &Path) -> Result<DrillTarget, ConfigError> {
        let docs = causeway_config::read_file(path)?;
        let mut found = None;
        for doc in &docs {
            if doc.kind != KIND {
                return Err(doc.unknown_kind(&[KIND]));
            }
            if found.is_some() {
                return Err(doc.error("", "a target file holds one DrillTarget document"));
            }
            found = Some(Self::check(path, doc)?);
        }
        found.ok_or_else(|| ConfigError::file(path, "no DrillTarget document in the file"))
    }

    fn check(path: &Path, doc: &Document) -> Result<DrillTarget, ConfigError> {
        let raw: RawSpec = doc.spec()?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_relative() {
                dir.join(p)
            } else {
                p.to_path_buf()
            }
        };
        let readable = |p: &Path, field: &str| -> Result<PathBuf, ConfigError> {
            let full = resolve(p);
            std::fs::metadata(&full)
                .map_err(|e| doc.error(field, format_args!("{}: {e}", full.display())))?;
            Ok(full)
        };
        if raw.clusters.is_empty() {
            return Err(doc.error("spec.clusters", "at least one cluster"));
        }
        let mut clusters = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, c) in raw.clusters.iter().enumerate() {
            let at = |f: &str| format!("spec.clusters[{i}]{f}");
            if c.name.trim().is_empty() || !seen.insert(c.name.clone()) {
                return Err(doc.error(&at(".name"), "a unique, non-empty cluster name"));
            }
            let kubeconfig = match (&c.kubeconfig, &raw.kubeconfig) {
                (Some(k), _) => readable(k, &at(".kubeconfig"))?,
                (None, Some(k)) => readable(k, "spec.kubeconfig")?,
                (None, None) => {
                    return Err(doc.error(
                        &at(".kubeconfig"),
                        "no kubeconfig: set spec.kubeconfig or this cluster's kubeconfig",
                    ));
                }
            };
            clusters.push(TargetCluster {
                name: c.name.clone(),
                kubeconfig,
                context: c.context.clone().unwrap_or_else(|| c.name.clone()),
                agents: c.agents.clone(),
            });
        }
        let mut users = Vec::new();
        for (i, u) in raw.users.iter().enumerate() {
            users.push((
                u.name.clone(),
                readable(&u.kubeconfig, &format!("spec.users[{i}].kubeconfig"))?,
            ));
        }
        let dns = match &raw.dns {
            Some(d) => Some(TargetDns {
                server: addr(&d.server).map_err(|r| doc.error("spec.dns.server", r))?,
                api: d
                    .api
                    .as_deref()
                    .map(addr)
                    .transpose()
                    .map_err(|r| doc.error("spec.dns.api", r))?,
            }),
            None => None,
        };
        let scheduler = raw
            .scheduler
            .as_deref()
            .map(addr)
            .transpose()
            .map_err(|r| doc.error("spec.scheduler", r))?;
        let stub_metrics = raw
            .stub_metrics
            .as_deref()
            .map(addr)
            .transpose()
            .map_err(|r| doc.error("spec.stubMetrics", r))?;
        Ok(DrillTarget {
            file: path.to_path_buf(),
            name: doc.name().to_string(),
            kubectl: raw.kubectl.map_or_else(
                || PathBuf::from("kubectl"),
                |k| {
                    if k.components().count() > 1 {
                        resolve(&k)
                    } else {
                        k
                    }
                },
            ),
            clusters,
            users,
            dns,
            scheduler,
            stub_metrics,
        })
    }

    /// The cluster `name`.
    pub fn cluster(&self, name: &str) -> Option<&TargetCluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Why `scenario` cannot run against this target, checked before anything is done:
    /// a fault step without `allow_faults`; a fault that cannot be produced through the
    /// deployment's APIs; a cluster, user, dns or scheduler the scenario needs and the
    /// target does not name.
    pub fn refusal(&self, scenario: &Scenario, allow_faults: bool) -> Option<String> {
        for c in &scenario.topology.clusters {
            if self.cluster(c.name.as_str()).is_none() {
                return Some(format!(
                    "the scenario's cluster {} is not in the target {} ({})",
                    c.name,
                    self.name,
                    self.file.display()
                ));
            }
        }
        for u in &scenario.topology.users {
            if !self.users.iter().any(|(n, _)| *n == u.name) {
                return Some(format!(
                    "the scenario's user {} has no kubeconfig in the target (spec.users)",
                    u.name
                ));
            }
        }
        if !scenario.install.zones.is_empty() && self.dns.is_none() {
            return Some(
                "the scenario asks dns (install.zones) and the target names no spec.dns".into(),
            );
        }
        let faults: Vec<&str> = scenario
            .steps
            .iter()
            .filter(|s| matches!(s.action, StepAction::Fault(_)))
            .map(|s| s.name.as_str())
            .collect();
        if !faults.is_empty() && !allow_faults {
            return Some(format!(
                "the scenario has fault steps ({}) and this is an existing deployment: \
                 nothing was done; pass --allow-faults to produce them there",
                faults.join(", ")
            ));
        }
        for s in &scenario.steps {
            let StepAction::Fault(f) = &s.action else {
                continue;
            };
            if let Some(why) = self.cannot(f) {
                return Some(format!("step {}: {why}", s.name));
            }
        }
        None
    }

    /// Why `fault` cannot be produced against this target, if it cannot.
    fn cannot(&self, fault: &Fault) -> Option<String> {
        let remote = "cannot be produced against an existing deployment";
        match fault {
            Fault::ApiServerStopped(_) => Some(format!(
                "apiServerStopped {remote} (the drill does not run its API server)"
            )),
            Fault::NetworkCut(_) => Some(format!(
                "networkCut {remote} (no relay of the drill sits between its agents and the stub)"
            )),
            Fault::StubKilled(_) => Some(format!(
                "stubKilled {remote} (the drill did not start the stub's processes)"
            )),
            Fault::HealthFailing(_) => Some(format!(
                "healthFailing {remote} (dns probes the deployment's own health endpoints)"
            )),
            Fault::LoadSurge(LoadSurge::PodCpu(_)) => Some(format!(
                "loadSurge.podCpu {remote} (simulated CPU exists only in the sandbox)"
            )),
            Fault::AgentKilled(c) | Fault::AgentsStopped(c) => {
                match self
                    .cluster(c.cluster.as_str())
                    .and_then(|t| t.agents.as_ref())
                {
                    Some(_) => None,
                    None => Some(format!(
                        "{} needs the target to say where {}'s agents run \
                         (spec.clusters[].agents: {{namespace, deployment}}), to scale them",
                        if matches!(fault, Fault::AgentKilled(_)) {
                            "agentKilled"
                        } else {
                            "agentsStopped"
                        },
                        c.cluster
                    )),
                }
            }
            Fault::LoadSurge(LoadSurge::External(_)) if self.scheduler.is_none() => {
                Some("loadSurge.external needs spec.scheduler in the target".into())
            }
            Fault::LatencyChange(_) if self.dns.and_then(|d| d.api).is_none() => {
                Some("latencyChange needs spec.dns.api in the target".into())
            }
            Fault::LoadSurge(_) | Fault::LatencyChange(_) => None,
        }
    }
}

/// A `DrillTarget` document for a kept sandbox (`--keep`): each cluster's admin
/// kubeconfig (context = its name), the users' kubeconfigs, dns, scheduler and the
/// stub's metrics. Its agents are processes, not Deployments, so it names none.
pub fn target_yaml(
    name: &str,
    kubectl: &Path,
    clusters: &[(String, PathBuf)],
    users: &[(String, PathBuf)],
    dns: Option<(SocketAddr, SocketAddr)>,
    scheduler: Option<SocketAddr>,
    stub_metrics: Option<SocketAddr>,
) -> String {
    let q = |p: &Path| serde_json::Value::String(p.display().to_string()).to_string();
    let mut y = format!(
        "# Written by causeway drill --keep: the kept sandbox as a target for\n\
         #   causeway drill SCENARIO --target THIS-FILE [--allow-faults]\n\
         apiVersion: causeway.dev/v1alpha1\nkind: {KIND}\nmetadata: {{name: {name}}}\nspec:\n  kubectl: {}\n  clusters:\n",
        q(kubectl)
    );
    for (c, k) in clusters {
        let _ = writeln!(y, "    - {{name: {c}, kubeconfig: {}}}", q(k));
    }
    if !users.is_empty() {
        y.push_str("  users:\n");
        for (u, k) in users {
            let _ = writeln!(y, "    - {{name: {u}, kubeconfig: {}}}", q(k));
        }
    }
    if let Some((server, api)) = dns {
        let _ = writeln!(y, "  dns: {{server: \"{server}\", api: \"http://{api}\"}}");
    }
    if let Some(s) = scheduler {
        let _ = writeln!(y, "  scheduler: \"http://{s}\"");
    }
    if let Some(m) = stub_metrics {
        let _ = writeln!(y, "  stubMetrics: \"{m}\"");
    }
    y
}

#[cfg(test)]
mod tests;
