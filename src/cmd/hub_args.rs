//! `--hub-kubeconfig`, `--hub-in-cluster`, `--hub-namespace`: production mode, shared by
//! every part (dns, scheduler, stub). With one of the first two, the part reads its
//! custom resources from the hub cluster (`causeway_hubstore`) instead of only its file,
//! and writes their status there.

use std::path::PathBuf;

use anyhow::Context;
use causeway_hubstore::Hub;

/// Where the hub cluster is (production mode), if anywhere.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HubArgs {
    /// Production mode: read this part's custom resources (`causeway crds`) from the hub
    /// cluster this kubeconfig names (its current context) and write their status there.
    #[arg(long, value_name = "FILE", env = "CAUSEWAY_HUB_KUBECONFIG")]
    pub hub_kubeconfig: Option<PathBuf>,
    /// Production mode inside a pod of the hub cluster, with the pod's ServiceAccount.
    #[arg(long, conflicts_with = "hub_kubeconfig")]
    pub hub_in_cluster: bool,
    /// The hub namespace holding Causeway's objects [default: the kubeconfig context's
    /// namespace; in a pod, its own].
    #[arg(long, value_name = "NS", env = "CAUSEWAY_HUB_NAMESPACE")]
    pub hub_namespace: Option<String>,
}

impl HubArgs {
    /// Whether production mode is on.
    pub fn enabled(&self) -> bool {
        self.hub_kubeconfig.is_some() || self.hub_in_cluster
    }

    /// Connects to the hub when production mode is on.
    pub async fn connect(&self) -> anyhow::Result<Option<Hub>> {
        if !self.enabled() {
            return Ok(None);
        }
        let hub = Hub::connect(
            self.hub_kubeconfig.as_deref(),
            self.hub_namespace.as_deref(),
        )
        .await
        .context("production mode")?;
        tracing::info!(
            namespace = hub.namespace(),
            "production mode: hub cluster connected"
        );
        Ok(Some(hub))
    }
}
