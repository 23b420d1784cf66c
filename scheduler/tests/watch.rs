//! Observe's node and pod watches through a real stub and agent (both in this process)
//! in front of the shared testbed's kube-apiserver: pods created and deleted after the
//! watches synced show in the next rounds without a list, every round agrees with a
//! listing round, a cluster without an agent does not spin, and the watches recover after
//! the agent restarts.

// Setup helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use causeway_model::ClusterId;
use causeway_scheduler::observe::{self, Clusters};
use causeway_scheduler::observed::ClusterState;
use causeway_scheduler::policy::{SchedulerConfig, WorkloadRef};
use causeway_testbed::ClusterInfo;
use causeway_testbed::testing::{Kubectl, wait_for_async};
use causeway_tunnel::CancellationToken;
use causeway_tunnel::agent::{AgentConfig, StubTarget, TokenSource, UpstreamConfig};
use causeway_tunnel::enrol::{self, AgentCredentials};
use causeway_tunnel::{pki::Ca, state::StateDir, users};

const MEMBER: &str = "tb-a";
/// Named by the policy, never enrolled: the stub has no agent for it.
const NO_AGENT: &str = "tb-b";
const ROUND: Duration = Duration::from_secs(10);

/// A stub and one agent (for [`MEMBER`]) in this process, and the scheduler's stub user.
struct Tunnel {
    dir: tempfile::TempDir,
    agents: SocketAddr,
    metrics: SocketAddr,
    kubeconfig: PathBuf,
    member: &'static ClusterInfo,
    _stub: tokio_util::sync::DropGuard,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Tunnel {
    async fn start(member: &'static ClusterInfo) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("stub");
        let admin = Kubectl::admin(member);
        admin.apply(include_str!("../../examples/tunnel/agent-rbac.yaml"));
        admin.apply(include_str!("../../examples/scheduler/member-rbac.yaml"));
        let token = admin.run(&[
            "create",
            "token",
            "causeway-agent",
            "-n",
            "causeway-system",
            "--duration",
            "2h",
        ]);
        std::fs::write(dir.path().join("agent.token"), token.trim()).unwrap();

        let ca = Ca::load_or_create(&state_dir).unwrap();
        let state = StateDir::open(&state_dir).unwrap();
        let id: ClusterId = MEMBER.parse().unwrap();
        let join = enrol::create_join_token(&state, &id, Duration::from_secs(3600)).unwrap();
        let (users_addr, agents, metrics) = (free_addr(), free_addr(), free_addr());
        let config = causeway_tunnel::config::StubConfig {
            name: "stub".into(),
            state_dir: state_dir.clone(),
            listen_users: users_addr,
            listen_agents: agents,
            listen_metrics: metrics,
            server_names: vec!["127.0.0.1".into()],
            access_policy: None,
            token_file: None,
            audit: None,
            lease: None,
            handshakes: Default::default(),
            latency_reports: None,
        };
        let stop = CancellationToken::new();
        tokio::spawn(causeway_tunnel::stub::run(config, stop.clone()));
        wait_for_async(
            "the stub listening",
            Duration::from_secs(20),
            Duration::from_millis(100),
            async || tokio::net::TcpStream::connect(agents).await.map(|_| ()),
        )
        .await;
        enrol::enrol_agent(
            &format!("https://{agents}"),
            &id,
            &join.token,
            &ca.pin(),
            &dir.path().join("agent"),
        )
        .await
        .unwrap();
        let new = users::NewUser {
            name: "causeway-scheduler".into(),
            groups: vec!["causeway:schedulers".into()],
            clusters: vec!["tb-*".into()],
            read_only: false,
            ttl: Duration::from_secs(3600),
        };
        let added = users::add_user(&state, &ca, &new, std::slice::from_ref(&id)).unwrap();
        let yaml = users::kubeconfig_yaml(
            &format!("https://{users_addr}"),
            &ca.cert_pem(),
            &new.name,
            &added.cert,
            &added.contexts,
        )
        .unwrap();
        let kubeconfig = dir.path().join("scheduler.kubeconfig");
        std::fs::write(&kubeconfig, yaml).unwrap();
        Tunnel {
            dir,
            agents,
            metrics,
            kubeconfig,
            member,
            _stub: stop.drop_guard(),
        }
    }

    /// Starts the agent (enrolled already); cancel the token to stop it.
    async fn agent(&self) -> CancellationToken {
        let creds = AgentCredentials::load(&self.dir.path().join("agent"))
            .unwrap()
            .expect("enrolled");
        let config = AgentConfig {
            cluster: MEMBER.parse().unwrap(),
            stubs: vec![StubTarget::from_url(&format!("https://{}", self.agents)).unwrap()],
            sessions_per_stub: 1,
            data_connections: 2,
            tls: Arc::new(creds.client_config().unwrap()),
            upstream: UpstreamConfig::from_kubeconfig(&self.member.kubeconfig)
                .await
                .unwrap(),
            token: TokenSource::new(self.dir.path().join("agent.token")).unwrap(),
            metrics_listener: None,
            fence: None,
            prober: None,
        };
        let stop = CancellationToken::new();
        tokio::spawn(causeway_tunnel::agent::run(config, stop.clone()));
        stop
    }

    fn scheduler_config(&self) -> SchedulerConfig {
        let path = self.dir.path().join("scheduler.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: causeway.dev/v1alpha1
kind: Scheduler
metadata: {{name: main}}
spec:
  stubKubeconfig: {}
---
apiVersion: causeway.dev/v1alpha1
kind: SpreadPolicy
metadata: {{name: watching}}
spec:
  workload: {{namespace: watching, deployment: web}}
  replicas: 2
  clusters:
    - {{cluster: {MEMBER}, weight: 1}}
    - {{cluster: {NO_AGENT}, weight: 1}}
",
                self.kubeconfig.display()
            ),
        )
        .unwrap();
        SchedulerConfig::load(&[path]).unwrap()
    }
}

fn id(s: &str) -> ClusterId {
    s.parse().unwrap()
}

/// One round with watches, and one with plain clients (lists), of [`MEMBER`].
async fn both(
    watching: &Clusters,
    listing: &Clusters,
    config: &SchedulerConfig,
) -> (ClusterState, ClusterState) {
    let w = observe::observe(watching, config, ROUND).await;
    let l = observe::observe(listing, config, ROUND).await;
    (
        w.clusters[&id(MEMBER)].clone(),
        l.clusters[&id(MEMBER)].clone(),
    )
}

fn scheduled(s: &ClusterState) -> Option<(u32, u32)> {
    let w = s.workloads.get(&WorkloadRef {
        namespace: "watching".into(),
        deployment: "web".into(),
    })?;
    Some((w.scheduled, w.unschedulable))
}

/// Rounds with watches until [`MEMBER`]'s workload has `want` pods bound and every round
/// agrees with a listing one; returns how many lists the watching rounds made meanwhile.
async fn until_scheduled(
    watching: &Clusters,
    listing: &Clusters,
    config: &SchedulerConfig,
    want: u32,
) -> u64 {
    let before = watching.watch_status(&id(MEMBER)).unwrap().listed;
    wait_for_async(
        &format!("{want} pods bound, watch and list agreeing"),
        Duration::from_secs(90),
        Duration::from_millis(300),
        async || {
            let (w, l) = both(watching, listing, config).await;
            if scheduled(&w) == Some((want, 0)) && w == l {
                Ok(())
            } else {
                Err(format!("watch {w:?}\nlist  {l:?}"))
            }
        },
    )
    .await;
    watching.watch_status(&id(MEMBER)).unwrap().listed - before
}

fn deployment(replicas: u32) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: watching}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: watching}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: watching}}}}
  template:
    metadata: {{labels: {{app: watching}}}}
    spec:
      containers: [{{name: c, image: x, resources: {{requests: {{cpu: 120m, memory: 64Mi}}}}}}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_follow_pods_without_lists_and_recover_after_the_agent_restarts() {
    let tb = causeway_testbed::shared().await;
    let member = tb.cluster(MEMBER).expect("shared cluster");
    let admin = Kubectl::admin(member);
    admin.apply(&deployment(2));
    let tunnel = Tunnel::start(member).await;
    let agent = tunnel.agent().await;
    let config = tunnel.scheduler_config();
    let named: BTreeSet<ClusterId> = [id(MEMBER), id(NO_AGENT)].into();
    let listing = Clusters::from_stub_kubeconfig(&tunnel.kubeconfig, &named)
        .await
        .unwrap();
    let watching = listing.clone().with_watches();
    let started = std::time::Instant::now();

    // Until the watches sync, rounds list; after, they read the tables.
    wait_for_async(
        "the member's watches synced",
        Duration::from_secs(60),
        Duration::from_millis(300),
        async || {
            let o = observe::observe(&watching, &config, ROUND).await;
            let s = watching.watch_status(&id(MEMBER)).unwrap();
            (o.clusters[&id(MEMBER)].reachable && s.pods_synced && s.nodes_synced)
                .then_some(())
                .ok_or(format!("{s:?} {:?}", o.clusters[&id(MEMBER)]))
        },
    )
    .await;
    assert_eq!(until_scheduled(&watching, &listing, &config, 2).await, 0);

    // Pods created and deleted after the watch started: seen without a list.
    admin.apply(&deployment(5));
    assert_eq!(until_scheduled(&watching, &listing, &config, 5).await, 0);
    admin.apply(&deployment(1));
    assert_eq!(until_scheduled(&watching, &listing, &config, 1).await, 0);

    // The cluster without an agent: unreachable every round, its watches back off.
    let o = observe::observe(&watching, &config, ROUND).await;
    let lost = &o.clusters[&id(NO_AGENT)];
    assert!(!lost.reachable, "{lost:?}");
    let s = watching.watch_status(&id(NO_AGENT)).unwrap();
    assert!(!s.pods_synced && !s.nodes_synced, "{s:?}");

    // The agent goes away: the member is unreachable and its watches fail without spinning.
    let before = watching.watch_status(&id(MEMBER)).unwrap().restarts;
    agent.cancel();
    wait_for_async(
        "the member unreachable and its watches failed",
        Duration::from_secs(60),
        Duration::from_millis(300),
        async || {
            let o = observe::observe(&watching, &config, ROUND).await;
            let s = watching.watch_status(&id(MEMBER)).unwrap();
            (!o.clusters[&id(MEMBER)].reachable && !s.pods_synced && !s.nodes_synced)
                .then_some(())
                .ok_or(format!("{s:?} {:?}", o.clusters[&id(MEMBER)]))
        },
    )
    .await;
    let down = watching.watch_status(&id(MEMBER)).unwrap().restarts;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let later = watching.watch_status(&id(MEMBER)).unwrap().restarts;
    // Back-off 0.8 s doubling (with jitter): at most ~4 attempts a kind in 8 s.
    assert!(
        later - down <= 10,
        "watch restarts spin: {down} → {later} in 8 s"
    );
    // Two kinds, each: 0.8 + 1.6 + … + 25.6 s (7 attempts in 51 s), then one per 30 s.
    let no_agent = watching.watch_status(&id(NO_AGENT)).unwrap().restarts;
    let bound = 2 * (8 + started.elapsed().as_secs() / 25);
    assert!(
        no_agent <= bound,
        "watches of the cluster without an agent spin: {no_agent} restarts in {:?}",
        started.elapsed()
    );
    admin.apply(&deployment(3));

    // The agent is back: the watches list again, then follow without lists.
    let _agent = tunnel.agent().await.drop_guard();
    wait_for_async(
        "the member's watches synced again",
        Duration::from_secs(90),
        Duration::from_millis(300),
        async || {
            let o = observe::observe(&watching, &config, ROUND).await;
            let s = watching.watch_status(&id(MEMBER)).unwrap();
            (o.clusters[&id(MEMBER)].reachable && s.pods_synced && s.nodes_synced)
                .then_some(())
                .ok_or(format!("{s:?} {:?}", o.clusters[&id(MEMBER)]))
        },
    )
    .await;
    assert!(watching.watch_status(&id(MEMBER)).unwrap().restarts > before);
    assert_eq!(until_scheduled(&watching, &listing, &config, 3).await, 0);
    admin.apply(&deployment(2));
    assert_eq!(until_scheduled(&watching, &listing, &config, 2).await, 0);

    // A round whose policies no longer name a cluster stops its watches.
    let only_member: Vec<_> = config
        .spread
        .iter()
        .cloned()
        .map(|mut p| {
            p.spec.clusters.retain(|t| t.cluster.as_str() == MEMBER);
            p
        })
        .collect();
    let policies = causeway_scheduler::policy::Policies {
        spread: &only_member,
        ..Default::default()
    };
    observe::observe(&watching, policies, ROUND).await;
    assert!(watching.watch_status(&id(NO_AGENT)).is_none());
    assert!(watching.watch_status(&id(MEMBER)).is_some());

    admin.run(&["delete", "namespace", "watching", "--wait=false"]);
}

// ---- Measurements (`bench/scheduler/run.sh --observe` runs these; see its README) ----

/// Net heap bytes allocated by this process (the system allocator, counted).
static NET_HEAP: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        NET_HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NET_HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        NET_HEAP.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap of the watch tables per pod and per node: 10,000 pods (the captured pod, each with
/// its own UID and name, 20 pods to a ReplicaSet's labels) and 1,000 nodes folded in.
/// Run alone: `cargo test -p causeway-scheduler --test watch -- --ignored --test-threads 1`.
#[test]
#[ignore = "measurement; bench/scheduler/run.sh --observe"]
fn measure_table_memory_per_pod() {
    use causeway_scheduler::observe::watch::{Fold, NodeTable, PodTable, WatchedNode, WatchedPod};
    let pod: serde_json::Value =
        serde_json::from_str(include_str!("../../bench/scheduler/pod.json")).unwrap();
    let node: serde_json::Value =
        serde_json::from_str(include_str!("../../bench/scheduler/node.json")).unwrap();
    let (pods_n, nodes_n) = (10_000u32, 1_000u32);
    let pods: Vec<WatchedPod> = (0..pods_n)
        .map(|i| {
            let mut p = pod.clone();
            let rs = i / 20;
            p["metadata"]["uid"] = format!("{:08x}-0000-4000-8000-{:012x}", rs, i).into();
            p["metadata"]["name"] = format!("service-{rs:04}-7d9f8b6c5-{i:05x}").into();
            p["metadata"]["labels"] = serde_json::json!({
                "app": format!("service-{rs:04}"),
                "pod-template-hash": "7d9f8b6c5",
            });
            serde_json::from_value(p).unwrap()
        })
        .collect();
    let nodes: Vec<WatchedNode> = (0..nodes_n)
        .map(|i| {
            let mut n = node.clone();
            n["metadata"]["uid"] = format!("{i:08x}-0000-4000-8000-000000000000").into();
            serde_json::from_value(n).unwrap()
        })
        .collect();
    let before = NET_HEAP.load(Ordering::Relaxed);
    let mut table = PodTable::default();
    for p in &pods {
        table.apply(p);
    }
    let pod_heap = NET_HEAP.load(Ordering::Relaxed) - before;
    let before = NET_HEAP.load(Ordering::Relaxed);
    let mut nt = NodeTable::default();
    for n in &nodes {
        nt.apply(n);
    }
    let node_heap = NET_HEAP.load(Ordering::Relaxed) - before;
    assert_eq!(table.len(), pods_n as usize);
    let per_pod = pod_heap as f64 / f64::from(pods_n);
    let per_node = node_heap as f64 / f64::from(nodes_n);
    let fleet = 100.0 * (pod_heap + node_heap) as f64 / 1_048_576.0;
    println!(
        "RESULT kind=watch-tables pods={pods_n} groups={} pod_heap_bytes={pod_heap} per_pod_bytes={per_pod:.0} nodes={nodes_n} node_heap_bytes={node_heap} per_node_bytes={per_node:.0} fleet_100_clusters_mib={fleet:.1}",
        pods_n / 20
    );
    assert!(per_pod < 300.0, "{per_pod} B a pod");
}

/// Sum of the stub's `causeway_tunnel_requests_total` of `cluster` by verb, and its
/// bytes down.
async fn stub_counts(metrics: SocketAddr, cluster: &str) -> (BTreeMap<String, f64>, f64) {
    let page = causeway_testbed::testing::HttpClient::new(metrics)
        .timeout(Duration::from_secs(5))
        .send(http::Method::GET, "/metrics", "")
        .await
        .unwrap()
        .text();
    let mut verbs = BTreeMap::new();
    let mut down = 0.0;
    let needle = format!("cluster=\"{cluster}\"");
    for l in page.lines().filter(|l| l.contains(&needle)) {
        let Some((series, v)) = l.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = v.parse().unwrap_or(0.0);
        if series.starts_with("causeway_tunnel_requests_total{") {
            let verb = series
                .split("verb=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?");
            *verbs.entry(verb.to_string()).or_default() += v;
        } else if series.starts_with("causeway_tunnel_bytes_total{") && series.contains("down") {
            down += v;
        }
    }
    (verbs, down)
}

/// Requests and bytes a round costs at the stub, listing and watching, one cluster of
/// `CAUSEWAY_MEASURE_PODS` pods (default 200), 15 rounds each, 2 s apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; bench/scheduler/run.sh --observe"]
async fn measure_requests_per_round() {
    let replicas: u32 = std::env::var("CAUSEWAY_MEASURE_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rounds = 15u32;
    let tb = causeway_testbed::shared().await;
    let member = tb.cluster(MEMBER).expect("shared cluster");
    let admin = Kubectl::admin(member);
    admin.apply(&deployment(replicas));
    let tunnel = Tunnel::start(member).await;
    let _agent = tunnel.agent().await.drop_guard();
    let config = tunnel.scheduler_config();
    let only_member: Vec<_> = config
        .spread
        .iter()
        .cloned()
        .map(|mut p| {
            p.spec.clusters.retain(|t| t.cluster.as_str() == MEMBER);
            p
        })
        .collect();
    let policies = || causeway_scheduler::policy::Policies {
        spread: &only_member,
        ..Default::default()
    };
    let listing = Clusters::from_stub_kubeconfig(&tunnel.kubeconfig, &[id(MEMBER)].into())
        .await
        .unwrap();
    wait_for_async(
        "every pod bound",
        Duration::from_secs(180),
        Duration::from_secs(1),
        async || {
            let o = observe::observe(&listing, policies(), ROUND).await;
            let s = scheduled(&o.clusters[&id(MEMBER)]);
            (s == Some((replicas, 0)))
                .then_some(())
                .ok_or(format!("{s:?}"))
        },
    )
    .await;
    let measure = async |clusters: &Clusters, what: &str| {
        let (v0, b0) = stub_counts(tunnel.metrics, MEMBER).await;
        for _ in 0..rounds {
            let o = observe::observe(clusters, policies(), ROUND).await;
            assert_eq!(scheduled(&o.clusters[&id(MEMBER)]), Some((replicas, 0)));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let (v1, b1) = stub_counts(tunnel.metrics, MEMBER).await;
        let per: Vec<String> = v1
            .iter()
            .map(|(k, v)| {
                let d = (v - v0.get(k).copied().unwrap_or(0.0)) / f64::from(rounds);
                format!("{k}={d:.2}")
            })
            .collect();
        println!(
            "RESULT kind=round-requests mode={what} pods={replicas} rounds={rounds} per_round: {} bytes_down={:.0}",
            per.join(" "),
            (b1 - b0) / f64::from(rounds)
        );
    };
    measure(&listing, "list").await;
    let watching = listing.clone().with_watches();
    wait_for_async(
        "watches synced",
        Duration::from_secs(60),
        Duration::from_millis(300),
        async || {
            observe::observe(&watching, policies(), ROUND).await;
            let s = watching.watch_status(&id(MEMBER)).unwrap();
            (s.pods_synced && s.nodes_synced)
                .then_some(())
                .ok_or(format!("{s:?}"))
        },
    )
    .await;
    let listed = watching.watch_status(&id(MEMBER)).unwrap().listed;
    measure(&watching, "watch").await;
    assert_eq!(watching.watch_status(&id(MEMBER)).unwrap().listed, listed);
    admin.run(&["delete", "namespace", "watching", "--wait=false"]);
}
