//! `causeway testbed status`: are the processes alive, is each apiserver ready, are the
//! nodes Ready.

use std::path::Path;

use serde::Serialize;

use crate::api::ApiClient;
use crate::layout::APISERVER_PORT;
use crate::process::ProcRecord;
use crate::state::TestbedState;
use crate::{ClusterInfo, TestbedError};

/// Health of one cluster of a running testbed.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    /// The cluster.
    pub cluster: ClusterInfo,
    /// Its processes, with `alive` for each.
    pub processes: Vec<ProcessStatus>,
    /// `Ok` when `/readyz` answered 200, else why not.
    pub readyz: Result<(), String>,
    /// Nodes with condition Ready=True, and all nodes (`None` if the API did not answer).
    pub nodes_ready: Option<(usize, usize)>,
}

/// One process and whether it still runs.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessStatus {
    /// What was recorded at start.
    #[serde(flatten)]
    pub record: ProcRecord,
    /// Whether it still runs (same PID and start time, not a zombie).
    pub alive: bool,
}

impl ClusterStatus {
    /// Every process alive, apiserver ready, every node Ready.
    pub fn healthy(&self) -> bool {
        self.processes.iter().all(|p| p.alive)
            && self.readyz.is_ok()
            && self.nodes_ready.is_some_and(|(r, t)| r == t && t > 0)
    }
}

/// Status of every cluster recorded in `state_dir`.
pub async fn status(state_dir: &Path) -> Result<Vec<ClusterStatus>, TestbedError> {
    let state = TestbedState::load(state_dir)?;
    let mut out = Vec::new();
    for c in &state.clusters {
        let processes = state
            .processes
            .iter()
            .filter(|r| r.cluster == c.name)
            .map(|r| ProcessStatus {
                record: r.clone(),
                alive: r.alive(),
            })
            .collect();
        let addr = (c.address, APISERVER_PORT).into();
        let (readyz, nodes_ready) =
            match ApiClient::https(addr, &c.ca_cert, &c.admin_cert, &c.admin_key) {
                Ok(api) => {
                    let readyz = match api.request(http::Method::GET, "/readyz", None).await {
                        Ok((s, _)) if s.is_success() => Ok(()),
                        Ok((s, body)) => Err(format!("{s}: {}", String::from_utf8_lossy(&body))),
                        Err(e) => Err(e),
                    };
                    let nodes = api.get_json("/api/v1/nodes").await.ok().map(|list| {
                        let items = list["items"].as_array().cloned().unwrap_or_default();
                        let ready = items
                            .iter()
                            .filter(|n| {
                                n["status"]["conditions"].as_array().is_some_and(|cs| {
                                    cs.iter()
                                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                                })
                            })
                            .count();
                        (ready, items.len())
                    });
                    (readyz, nodes)
                }
                Err(e) => (Err(e), None),
            };
        out.push(ClusterStatus {
            cluster: c.clone(),
            processes,
            readyz,
            nodes_ready,
        });
    }
    Ok(out)
}
