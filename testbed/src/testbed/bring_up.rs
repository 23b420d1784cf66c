//! Bringing one cluster up, in order, each step waiting for the previous one.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::api::ApiClient;
use crate::bins::Binaries;
use crate::components::{Components, KWOK_CRDS, KWOK_METRICS_CRDS};
use crate::files::{create_dir, write_private};
use crate::layout::{APISERVER_PORT, ETCD_CLIENT_PORT, Layout, METRICS_SERVER_PORT};
use crate::manifests;
use crate::pki::ClusterPki;
use crate::process::{Launch, Lifetime, Proc, launch};
use crate::spec::{ClusterSpec, MetricsOptions};
use crate::state::Recorder;
use crate::{TestbedError, kubeconfig};

/// Processes of one cluster; killed on drop unless handed over.
pub(super) struct ProcGroup {
    procs: Vec<Proc>,
}

impl ProcGroup {
    fn check_running(&mut self) -> Result<(), TestbedError> {
        self.procs.iter_mut().try_for_each(Proc::check_running)
    }

    pub(super) fn into_procs(mut self) -> Vec<Proc> {
        std::mem::take(&mut self.procs)
    }
}

impl Drop for ProcGroup {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.kill_now();
        }
    }
}

pub(super) struct UpContext<'a> {
    pub(super) spec: &'a ClusterSpec,
    pub(super) layout: &'a Layout,
    pub(super) bins: &'a Binaries,
    pub(super) lifetime: Lifetime,
    pub(super) recorder: &'a Recorder,
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
    pub(super) metrics: &'a MetricsOptions,
}

impl UpContext<'_> {
    pub(super) async fn run(self) -> Result<ProcGroup, TestbedError> {
        let l = self.layout;
        let name = l.name.as_str();
        for dir in [l.logs(), l.etc(), l.kwok_home(), l.exec_dir()] {
            create_dir(&dir)?;
        }
        let log_text = crate::pod_log::cri_line(&format!(
            "causeway testbed: log of a kwok pod in cluster {name}"
        ));
        write_private(&l.pod_log(), log_text.as_bytes())?;

        let pki = ClusterPki::generate(&l.pki(), name, l.address)?;
        let server = l.server();
        kubeconfig::write(&l.kubeconfig(), name, &server, &pki.ca_cert, &pki.admin)?;
        let etc = l.etc();
        let kcm_kc = etc.join("controller-manager.kubeconfig");
        let sched_kc = etc.join("scheduler.kubeconfig");
        let kwok_kc = etc.join("kwok.kubeconfig");
        let metrics_kc = etc.join("metrics-server.kubeconfig");
        kubeconfig::write(
            &kcm_kc,
            name,
            &server,
            &pki.ca_cert,
            &pki.controller_manager,
        )?;
        kubeconfig::write(&sched_kc, name, &server, &pki.ca_cert, &pki.scheduler)?;
        kubeconfig::write(&kwok_kc, name, &server, &pki.ca_cert, &pki.kwok_client)?;
        let metrics = self.metrics.enabled;
        if metrics {
            kubeconfig::write(
                &metrics_kc,
                name,
                &server,
                &pki.ca_cert,
                &pki.metrics_server_client,
            )?;
        }

        let parts = Components {
            layout: l,
            bins: self.bins,
            pki: &pki,
            metrics: self.metrics,
        };
        let mut group = ProcGroup { procs: Vec::new() };
        self.start(&mut group, parts.etcd()).await?;
        let etcd = ApiClient::http(l.addr(ETCD_CLIENT_PORT));
        self.wait(&mut group, "etcd /health", || async {
            let v = etcd.get_json("/health").await?;
            if v["health"] == "true" {
                Ok(())
            } else {
                Err(v.to_string())
            }
        })
        .await?;

        self.start(&mut group, parts.apiserver()).await?;
        let api = ApiClient::https(
            l.addr(APISERVER_PORT),
            &pki.ca_cert,
            &pki.admin.cert,
            &pki.admin.key,
        )
        .map_err(|reason| TestbedError::Pki {
            cluster: name.to_owned(),
            reason,
        })?;
        self.wait(&mut group, "kube-apiserver /readyz", || async {
            let (status, body) = api.request(http::Method::GET, "/readyz", None).await?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
            }
        })
        .await?;

        self.start(&mut group, parts.controller_manager(&kcm_kc))
            .await?;
        self.start(&mut group, parts.scheduler(&sched_kc)).await?;

        let api_err = |what: &str| {
            let what = what.to_owned();
            move |reason| TestbedError::Api {
                cluster: name.to_owned(),
                what,
                reason,
            }
        };
        let crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        let mut crds = KWOK_CRDS.to_vec();
        if metrics {
            crds.extend_from_slice(KWOK_METRICS_CRDS);
        }
        let crds = &crds;
        for kind in crds {
            api.create(crd_path, &manifests::kwok_crd(kind))
                .await
                .map_err(api_err("install kwok CRDs"))?;
        }
        for i in 0..self.spec.nodes {
            api.create("/api/v1/nodes", &manifests::node(self.spec, i))
                .await
                .map_err(api_err("create nodes"))?;
        }
        self.wait(&mut group, "kwok CRDs Established", || async {
            for kind in crds {
                let crd = manifests::kwok_crd(kind);
                let name = crd["metadata"]["name"].as_str().unwrap_or_default();
                let v = api.get_json(&format!("{crd_path}/{name}")).await?;
                if !has_condition(&v, "Established") {
                    return Err(format!("{name} not Established"));
                }
            }
            Ok(())
        })
        .await?;
        let kwok_api = format!("/apis/{}/v1alpha1", manifests::KWOK_GROUP);
        api.create(
            &format!("{kwok_api}/clusterexecs"),
            &manifests::cluster_exec(&l.exec_dir()),
        )
        .await
        .map_err(api_err("create ClusterExec"))?;
        api.create(
            &format!("{kwok_api}/clusterlogs"),
            &manifests::cluster_logs(&l.pod_log()),
        )
        .await
        .map_err(api_err("create ClusterLogs"))?;
        if metrics {
            api.create(
                &format!("{kwok_api}/metrics"),
                &manifests::kwok_resource_metric(),
            )
            .await
            .map_err(api_err("create kwok Metric"))?;
            api.create(
                &format!("{kwok_api}/clusterresourceusages"),
                &manifests::simulated_usage(),
            )
            .await
            .map_err(api_err("create ClusterResourceUsage"))?;
        }
        self.start(&mut group, parts.kwok(&kwok_kc)).await?;
        if metrics {
            let ca_pem =
                std::fs::read(&pki.ca_cert).map_err(TestbedError::io("read", &pki.ca_cert))?;
            for (path, obj) in
                manifests::metrics_server_objects(l.addr(METRICS_SERVER_PORT), &ca_pem)
            {
                api.create(&path, &obj)
                    .await
                    .map_err(api_err("register metrics-server"))?;
            }
            self.start(&mut group, parts.metrics_server(&metrics_kc))
                .await?;
        }

        let want = self.spec.nodes as usize;
        self.wait(&mut group, "nodes Ready", || async {
            let list = api.get_json("/api/v1/nodes").await?;
            let items = list["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            // Ready, and the not-ready taint lifted by the node lifecycle controller.
            let ready = items
                .iter()
                .filter(|n| has_condition(n, "Ready") && !not_ready_taint(n))
                .count();
            if ready >= want {
                Ok(())
            } else {
                Err(format!("{ready}/{want} nodes Ready and untainted"))
            }
        })
        .await?;
        self.wait(&mut group, "default ServiceAccount", || async {
            api.get_json("/api/v1/namespaces/default/serviceaccounts/default")
                .await
                .map(|_| ())
        })
        .await?;
        if metrics {
            // The aggregator reached metrics-server's discovery: `metrics.k8s.io` is served
            // (values follow two scrapes after a pod starts).
            let path = format!(
                "/apis/apiregistration.k8s.io/v1/apiservices/{}",
                manifests::METRICS_API_SERVICE
            );
            self.wait(
                &mut group,
                "APIService v1beta1.metrics.k8s.io Available",
                || async {
                    let v = api.get_json(&path).await?;
                    if has_condition(&v, "Available") {
                        Ok(())
                    } else {
                        Err(condition_message(&v, "Available"))
                    }
                },
            )
            .await?;
        }
        tracing::info!(server = %server, "cluster is ready");
        Ok(group)
    }

    async fn start(
        &self,
        group: &mut ProcGroup,
        launch_spec: Launch<'_>,
    ) -> Result<(), TestbedError> {
        let proc = launch(launch_spec, self.lifetime).await?;
        let record = proc.record.clone();
        group.procs.push(proc);
        self.recorder.update(|s| s.processes.push(record))
    }

    /// Polls `check` until it succeeds, a process of the cluster exits, or the deadline.
    async fn wait<F, Fut>(
        &self,
        group: &mut ProcGroup,
        what: &str,
        mut check: F,
    ) -> Result<(), TestbedError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let since = Instant::now();
        loop {
            group.check_running()?;
            let last = match check().await {
                Ok(()) => {
                    tracing::debug!(what, took = ?since.elapsed(), "ready");
                    return Ok(());
                }
                Err(e) => e,
            };
            if Instant::now() >= self.deadline {
                return Err(TestbedError::Timeout {
                    cluster: self.layout.name.clone(),
                    what: what.to_owned(),
                    after: self.timeout,
                    last,
                    logs: self.layout.logs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether `obj.status.conditions` has `type` with status `"True"`.
fn has_condition(obj: &Value, ty: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

/// `type`'s reason and message, for timeouts.
fn condition_message(obj: &Value, ty: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .map_or_else(
            || format!("no {ty} condition yet"),
            |c| format!("{ty}={}: {} {}", c["status"], c["reason"], c["message"]),
        )
}

/// Whether a node still carries the `node.kubernetes.io/not-ready` taint.
fn not_ready_taint(node: &Value) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|ts| {
        ts.iter()
            .any(|t| t["key"] == "node.kubernetes.io/not-ready")
    })
}
