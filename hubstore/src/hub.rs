//! A connection to the hub cluster: one namespace of it.

use std::path::{Path, PathBuf};

use causeway_model::Placement;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::kind::{Kind, VERSION};

/// Label on every object a Causeway part writes (`Placement`s), naming the writer.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Why the hub cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The kubeconfig (or the in-cluster configuration) is unusable.
    #[error("hub kubeconfig {source_name}: {reason}")]
    Config {
        /// The file, or `in-cluster`.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// An API call failed.
    #[error("hub {what}: {source}")]
    Api {
        /// What was being done (`patch status of BurstPolicy/web`).
        what: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A value cannot be encoded.
    #[error("hub {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// Why.
        reason: String,
    },
}

impl HubError {
    pub(crate) fn api(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Api {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// Whether the API answered 404 (the object, or the CRD, does not exist).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { source, .. } if matches!(source.as_ref(), kube::Error::Api(s) if s.code == 404))
    }

    /// Whether the API answered 409 (a conflict: already exists, or a stale
    /// resourceVersion).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Api { source, .. } if matches!(source.as_ref(), kube::Error::Api(s) if s.code == 409))
    }
}

/// One namespace of the hub cluster, where Causeway's objects live.
#[derive(Clone)]
pub struct Hub {
    client: kube::Client,
    namespace: String,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hub({})", self.namespace)
    }
}

impl Hub {
    /// Connects with `kubeconfig` (its current context), or, without one, the pod's
    /// in-cluster ServiceAccount (then `$KUBECONFIG` / `~/.kube/config`). `namespace`:
    /// default the kubeconfig context's namespace, in a pod its own namespace.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        namespace: Option<&str>,
    ) -> Result<Self, HubError> {
        let (cfg, source_name) = match kubeconfig {
            Some(path) => {
                let err = |reason: String| HubError::Config {
                    source_name: path.display().to_string(),
                    reason,
                };
                let kc =
                    kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
                let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| err(e.to_string()))?;
                (cfg, path.display().to_string())
            }
            None => {
                let cfg = kube::Config::infer().await.map_err(|e| HubError::Config {
                    source_name: "in-cluster".into(),
                    reason: e.to_string(),
                })?;
                (cfg, "in-cluster".to_string())
            }
        };
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| cfg.default_namespace.clone());
        let client = kube::Client::try_from(cfg).map_err(|e| HubError::Config {
            source_name,
            reason: e.to_string(),
        })?;
        Ok(Self { client, namespace })
    }

    /// A hub over an existing client.
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
        }
    }

    /// The client.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The dynamic API of `kind` in the namespace.
    pub fn api(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &kind.api_resource())
    }

    /// Merges `status` into the status subresource of `kind/name`.
    pub async fn write_status(
        &self,
        kind: Kind,
        name: &str,
        status: Value,
    ) -> Result<(), HubError> {
        self.api(kind)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map(drop)
            .map_err(|e| HubError::api(format!("patch status of {kind}/{name}"), e))
    }

    /// Writes `placement` as the `Placement` object [`placement_name`] (server-side apply
    /// by `manager`, which also labels it).
    pub async fn apply_placement(
        &self,
        placement: &Placement,
        manager: &str,
    ) -> Result<(), HubError> {
        let name = placement_name(&placement.service);
        let spec = serde_json::to_value(placement).map_err(|e| HubError::Encode {
            what: format!("Placement/{name}"),
            reason: e.to_string(),
        })?;
        let object = json!({
            "apiVersion": format!("{}/{VERSION}", crate::GROUP),
            "kind": "Placement",
            "metadata": { "name": name, "labels": { MANAGED_BY: manager } },
            "spec": spec,
        });
        self.api(Kind::Placement)
            .patch(
                &name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(object),
            )
            .await
            .map(drop)
            .map_err(|e| HubError::api(format!("apply Placement/{name}"), e))
    }

    /// The names of the `Placement` objects `manager` wrote.
    pub async fn placement_names(&self, manager: &str) -> Result<Vec<String>, HubError> {
        let list = self
            .api(Kind::Placement)
            .list_metadata(&ListParams::default().labels(&format!("{MANAGED_BY}={manager}")))
            .await
            .map_err(|e| HubError::api("list Placements", e))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect())
    }

    /// Deletes the `Placement` object `name` (absent is fine).
    pub async fn delete_placement(&self, name: &str) -> Result<(), HubError> {
        match self
            .api(Kind::Placement)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(HubError::api(format!("delete Placement/{name}"), e)),
        }
    }
}

/// The object name of the `Placement` of `service` (`app.svc.example.` →
/// `app.svc.example`): a DNS name is a valid object name once its root dot is dropped.
pub fn placement_name(service: &str) -> String {
    service.trim_end_matches('.').to_ascii_lowercase()
}

/// Where `hub:` sources point: see [`crate::HubObject::source`].
pub(crate) fn source_path(namespace: &str, kind: Kind, name: &str) -> PathBuf {
    PathBuf::from(format!("hub:{namespace}/{}/{name}", kind.plural()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_names_drop_the_root() {
        assert_eq!(placement_name("App.svc.example."), "app.svc.example");
        assert_eq!(placement_name("x.example"), "x.example");
    }
}
