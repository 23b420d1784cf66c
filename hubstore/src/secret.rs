//! Secrets in the hub namespace: what replicas of a part share (the stub's CA and
//! registries, identities made for the scheduler and agents). Writes are
//! compare-and-swap on `resourceVersion`, so two replicas never overwrite each other.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::hub::{Hub, HubError, MANAGED_BY};

/// A Secret's data, and the version it was read at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Key → bytes.
    pub data: BTreeMap<String, Vec<u8>>,
    /// `metadata.resourceVersion`: pass it back to [`Hub::replace_secret`].
    pub resource_version: Option<String>,
}

/// What [`Hub::create_secret`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// It created the Secret.
    Created,
    /// Someone else already had: the Secret as it is.
    Exists(Stored),
}

impl Hub {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client(), self.namespace())
    }

    /// The Secret `name`, if it exists.
    pub async fn secret(&self, name: &str) -> Result<Option<Stored>, HubError> {
        let s = self
            .secrets()
            .get_opt(name)
            .await
            .map_err(|e| HubError::api(format!("get Secret/{name}"), e))?;
        Ok(s.map(stored))
    }

    /// Creates the Secret `name` with `data` (labelled as written by `manager`) unless it
    /// exists; the first replica to create it wins and the others read its data.
    pub async fn create_secret(
        &self,
        name: &str,
        manager: &str,
        data: BTreeMap<String, Vec<u8>>,
    ) -> Result<Created, HubError> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some([(MANAGED_BY.to_string(), manager.to_string())].into()),
                ..Default::default()
            },
            data: Some(encode(data)),
            ..Default::default()
        };
        match self.secrets().create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(Created::Created),
            Err(kube::Error::Api(s)) if s.code == 409 => match self.secret(name).await? {
                Some(s) => Ok(Created::Exists(s)),
                // Deleted in between: let the caller try again.
                None => Err(HubError::Encode {
                    what: format!("Secret/{name}"),
                    reason: "existed, then vanished while being read".into(),
                }),
            },
            Err(e) => Err(HubError::api(format!("create Secret/{name}"), e)),
        }
    }

    /// Replaces the data of Secret `name`, only if it is still at `resource_version`
    /// (else [`HubError::is_conflict`]: read it again and retry).
    pub async fn replace_secret(
        &self,
        name: &str,
        resource_version: &str,
        data: BTreeMap<String, Vec<u8>>,
    ) -> Result<Stored, HubError> {
        let api = self.secrets();
        let mut s = api
            .get(name)
            .await
            .map_err(|e| HubError::api(format!("get Secret/{name}"), e))?;
        s.metadata.resource_version = Some(resource_version.to_string());
        s.data = Some(encode(data));
        s.string_data = None;
        api.replace(name, &PostParams::default(), &s)
            .await
            .map(stored)
            .map_err(|e| HubError::api(format!("replace Secret/{name}"), e))
    }
}

fn encode(data: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, ByteString> {
    data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()
}

fn stored(s: Secret) -> Stored {
    Stored {
        data: s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
        resource_version: s.metadata.resource_version,
    }
}
