//! The library API against the real binaries: `Testbed::up` brings a cluster to Ready,
//! `down` stops every process and removes the state. Needs `testbed/build-bins.sh`.

use std::net::Ipv4Addr;
use std::time::Duration;

use causeway_testbed::testing::{Kubectl, process_alive as alive};
use causeway_testbed::{ClusterSpec, Testbed, TestbedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_then_down_leaves_nothing() {
    if let Err(e) = causeway_testbed::bin_dir() {
        panic!("{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut spec = ClusterSpec::new("inproc");
    spec.nodes = 2;
    spec.node_cpu = "16".into();
    spec.node_memory = "64Gi".into();
    let mut opts = TestbedOptions::new(vec![spec], &state);
    opts.base_address = causeway_testbed::reserve_addresses(1);
    let base: Ipv4Addr = opts.base_address;
    let tb = Testbed::up(opts).await.expect("testbed up");
    eprintln!("one cluster Ready in {:.1} s", tb.startup().as_secs_f64());

    let c = tb.cluster("inproc").expect("cluster");
    assert_eq!(c.server, format!("https://{base}:6443"));
    let out = Kubectl::admin(c).get(&["nodes", "-o", "json"]);
    let nodes: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for n in items {
        assert_eq!(n["status"]["capacity"]["cpu"], "16");
        assert_eq!(n["status"]["capacity"]["memory"], "64Gi");
    }

    let pids: Vec<u32> = tb.processes().iter().map(|p| p.pid).collect();
    assert_eq!(
        pids.len(),
        5,
        "etcd, apiserver, controller-manager, scheduler, kwok"
    );
    assert!(pids.iter().all(|p| alive(*p)));
    tokio::time::timeout(Duration::from_secs(60), tb.down())
        .await
        .unwrap()
        .unwrap();
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} still running after down");
    }
    assert!(!state.join("state.json").exists());
    assert!(!state.join("inproc").exists());
}
