//! The paged, slim pod reader against a real kube-apiserver (the shared testbed): every
//! live pod is seen exactly once whatever the page size, with its requests.

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_scheduler::observe::lists;
use causeway_testbed::testing::{Kubectl, wait_for_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_through_every_live_pod_once() {
    let tb = causeway_testbed::shared().await;
    let c = tb.cluster("tb-b").expect("shared cluster tb-b");
    Kubectl::admin(c).apply(
        "apiVersion: v1
kind: Namespace
metadata: {name: paging}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: p, namespace: paging}
spec:
  replicas: 7
  selector: {matchLabels: {app: paging}}
  template:
    metadata: {labels: {app: paging}}
    spec:
      containers: [{name: c, image: x, resources: {requests: {cpu: 150m}}}]
",
    );
    let kc = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let count = |page: usize| {
        let client = client.clone();
        async move {
            let mut seen: BTreeMap<String, u32> = BTreeMap::new();
            let mut cpu = 0;
            lists::for_each_live_pod_paged(&client, page, |p| {
                if p.metadata.namespace == "paging" {
                    *seen.entry(p.metadata.name.clone()).or_default() += 1;
                    cpu += p.requests().cpu_millis;
                }
            })
            .await
            .unwrap();
            (seen, cpu)
        }
    };
    wait_for_async(
        "7 pods listed",
        Duration::from_secs(60),
        Duration::from_millis(500),
        async || {
            let (seen, _) = count(500).await;
            (seen.len() == 7).then_some(()).ok_or(format!("{seen:?}"))
        },
    )
    .await;
    for page in [1, 2, 3, 500] {
        let (seen, cpu) = count(page).await;
        assert_eq!(seen.len(), 7, "page {page}: {seen:?}");
        assert!(
            seen.values().all(|n| *n == 1),
            "page {page}: a pod seen twice: {seen:?}"
        );
        assert_eq!(cpu, 7 * 150, "page {page}");
    }
    Kubectl::admin(c).run(&["delete", "namespace", "paging", "--wait=false"]);
}
