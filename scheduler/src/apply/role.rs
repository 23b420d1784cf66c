//! Failover writes: the role ConfigMap, the role lease and the fence, in a member
//! cluster through the stub. The protocol (shared with the agent's self-fencing in
//! `tunnel/src/agent/fence.rs`) is in `docs/scheduler.md`, "Failover and fencing".

use causeway_model::ClusterId;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::{ApplyError, FIELD_MANAGER, api_error};
use crate::observe::{MANAGED_BY, ROLE_CHANGED_AT, ROLE_CHANGED_BY};
use crate::plan::failover::{FENCED, PRIMARY, REPLICA};
use crate::policy::{FailoverPolicy, FenceMode};

/// Label on every role lease (the agent lists leases by it).
pub const ROLE_LEASE_LABEL: &str = "causeway.dev/role-lease";
/// The role lease's holder.
pub const HOLDER: &str = "causeway-scheduler";
/// Annotation on a fenced Deployment: its replicas before the fence.
pub const REPLICAS_BEFORE_FENCE: &str = "causeway.dev/replicas-before-fence";

fn now_micro() -> Value {
    serde_json::to_value(MicroTime(k8s_openapi::jiff::Timestamp::now())).unwrap_or(Value::Null)
}

/// Writes the role ConfigMap (`data.role`), noting who and when.
pub async fn set_role(
    client: &kube::Client,
    p: &FailoverPolicy,
    cluster: &ClusterId,
    role: &str,
) -> Result<(), ApplyError> {
    let ns = &p.spec.workload.namespace;
    let name = p.spec.role_config_map();
    let doc = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {MANAGED_BY.0: MANAGED_BY.1, "causeway.dev/policy": p.name},
            "annotations": {
                ROLE_CHANGED_BY: "scheduler",
                ROLE_CHANGED_AT: now_micro(),
            },
        },
        "data": {"role": role},
    });
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&doc),
    )
    .await
    .map(|_| ())
    .map_err(|e| api_error(cluster, e))
}

/// Creates or renews the role lease: `renewTime` now, by this scheduler's clock.
pub async fn renew_lease(
    client: &kube::Client,
    p: &FailoverPolicy,
    cluster: &ClusterId,
) -> Result<(), ApplyError> {
    let ns = &p.spec.workload.namespace;
    let name = p.lease_name();
    let doc = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                ROLE_LEASE_LABEL: "true",
                MANAGED_BY.0: MANAGED_BY.1,
                "causeway.dev/policy": p.name,
            },
            "annotations": {
                "causeway.dev/fence-deployment": p.spec.workload.deployment,
                "causeway.dev/fence-configmap": p.spec.role_config_map(),
                "causeway.dev/fence-mode": p.spec.fence.annotation(),
            },
        },
        "spec": {
            "holderIdentity": HOLDER,
            "leaseDurationSeconds": p.spec.lease.duration.0.as_secs(),
            "renewTime": now_micro(),
        },
    });
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&doc),
    )
    .await
    .map(|_| ())
    .map_err(|e| api_error(cluster, e))
}

/// Gives `cluster` the primary role: the lease first (so its agent watches it from the
/// start), then the ConfigMap, then at least `replicas` replicas.
pub async fn grant(
    client: &kube::Client,
    p: &FailoverPolicy,
    cluster: &ClusterId,
    replicas: u32,
) -> Result<(), ApplyError> {
    renew_lease(client, p, cluster).await?;
    set_role(client, p, cluster, PRIMARY).await?;
    let w = &p.spec.workload;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &w.namespace);
    let d = api
        .get(&w.deployment)
        .await
        .map_err(|e| api_error(cluster, e))?;
    let now = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if i64::from(now) < i64::from(replicas) {
        scale(client, p, cluster, replicas, None).await?;
    }
    Ok(())
}

/// Fences `cluster`: role `fenced`, scaled to 0 with `fence: scaleToZero` (the replicas
/// before are kept in an annotation), the role lease deleted. Each step is skipped when
/// already done, so a fence the agent made is not rewritten.
pub async fn fence(
    client: &kube::Client,
    p: &FailoverPolicy,
    cluster: &ClusterId,
) -> Result<(), ApplyError> {
    let w = &p.spec.workload;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &w.namespace);
    let role = cms
        .get_opt(&p.spec.role_config_map())
        .await
        .map_err(|e| api_error(cluster, e))?
        .and_then(|c| c.data.and_then(|mut d| d.remove("role")));
    if role.as_deref() != Some(FENCED) {
        set_role(client, p, cluster, FENCED).await?;
    }
    if p.spec.fence == FenceMode::ScaleToZero {
        let api: Api<Deployment> = Api::namespaced(client.clone(), &w.namespace);
        if let Some(d) = api
            .get_opt(&w.deployment)
            .await
            .map_err(|e| api_error(cluster, e))?
        {
            let now = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            if now > 0 {
                scale(client, p, cluster, 0, Some(now)).await?;
            }
        }
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &w.namespace);
    match leases
        .delete(&p.lease_name(), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api_error(cluster, e)),
    }
}

/// Creates the missing role ConfigMap as `replica`.
pub async fn replica(
    client: &kube::Client,
    p: &FailoverPolicy,
    cluster: &ClusterId,
) -> Result<(), ApplyError> {
    set_role(client, p, cluster, REPLICA).await
}

async fn scale(
    client: &kube::Client,
    p: &FailoverPolicy,
    cluster: &ClusterId,
    replicas: u32,
    before: Option<i32>,
) -> Result<(), ApplyError> {
    let w = &p.spec.workload;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &w.namespace);
    if let Some(before) = before {
        let note =
            json!({"metadata": {"annotations": {REPLICAS_BEFORE_FENCE: before.to_string()}}});
        api.patch(&w.deployment, &PatchParams::default(), &Patch::Merge(&note))
            .await
            .map_err(|e| api_error(cluster, e))?;
    }
    api.patch_scale(
        &w.deployment,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
    )
    .await
    .map(|_| ())
    .map_err(|e| api_error(cluster, e))
}
