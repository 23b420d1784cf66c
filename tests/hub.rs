//! `causeway hub`: stub, dns and scheduler in one process. On first start it creates the
//! scheduler's stub identity; agents enrol with its stub; a surge at home bursts to the
//! public clusters through its own stub and its dns answers them. The scheduler has no
//! `dnsApi`: its placements reach the hub's dns in process (dns answers only the home
//! cluster until the burst, then all three, with weights = ready replicas), and a
//! `dnsApi` naming another dns is refused.

#[path = "support/scheduler.rs"]
mod scheduler_support;
#[path = "support/tunnel.rs"]
mod tunnel_support;

use std::time::Duration;

use causeway_testbed::testing::{Kubectl, Spawn, wait_for};
use scheduler_support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_runs_stub_dns_and_scheduler_together() {
    let (tb, dir) = testbed(false).await;
    let dir = dir.path();
    let state = dir.join("hub-state");
    let users = format!("127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let stub_file = dir.join("stub.yaml");
    std::fs::write(
        &stub_file,
        format!(
            "apiVersion: causeway.dev/v1alpha1
kind: StubConfig
metadata: {{name: hub}}
spec:
  stateDir: {}
  listen: {{users: \"{users}\", agents: \"127.0.0.1:0\", metrics: \"127.0.0.1:0\"}}
",
            state.display()
        ),
    )
    .unwrap();
    let dns_file = dns_config_at(dir, &api);
    let kubeconfig = dir.join("scheduler.kubeconfig");
    let sched_file = dir.join("scheduler.yaml");
    std::fs::write(
        &sched_file,
        scheduler_yaml(
            &kubeconfig,
            "",
            &burst_policy(
                "maxReplicas: 2",
                "maxReplicas: 10",
                "  demand: {capacity: {}}\n  dns: {name: app.svc.example., ttl: 3s}\n",
            ),
        ),
    )
    .unwrap();

    // A file mixing parts is refused before anything starts.
    let mixed = dir.join("mixed.yaml");
    std::fs::write(
        &mixed,
        format!(
            "{}---\n{}",
            std::fs::read_to_string(&stub_file).unwrap(),
            std::fs::read_to_string(&dns_file).unwrap()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["hub", "--validate", "--config"])
        .arg(&mixed)
        .arg(&sched_file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("several parts"),
        "{err}"
    );
    // dnsApi may only name the hub's own dns (then ignored); another one is refused.
    let validate = |dns_api: &str| {
        let f = dir.join("scheduler-dnsapi.yaml");
        std::fs::write(
            &f,
            scheduler_yaml(
                &kubeconfig,
                &format!("  dnsApi: {dns_api}\n"),
                &burst_policy(
                    "maxReplicas: 2",
                    "maxReplicas: 10",
                    "  demand: {capacity: {}}\n",
                ),
            ),
        )
        .unwrap();
        std::process::Command::new(BIN)
            .args(["hub", "--validate", "--config"])
            .arg(&stub_file)
            .arg(&dns_file)
            .arg(&f)
            .output()
            .unwrap()
    };
    let out = validate("http://127.0.0.1:9");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("Scheduler.spec.dnsApi is http://127.0.0.1:9")
            && err.contains(&format!("http://{api}")),
        "{err}"
    );
    assert!(validate(&format!("http://{api}")).status.success());

    let hub = Spawn::causeway(BIN)
        .args(["hub", "--config"])
        .arg(&stub_file)
        .arg(&dns_file)
        .arg(&sched_file)
        .name("hub")
        .log_file(dir.join("hub.log"))
        .start();
    let l = hub.wait_listening(
        &["users", "agents", "dns", "api", "scheduler"],
        Duration::from_secs(30),
    );
    assert!(
        kubeconfig.exists(),
        "the hub wrote the scheduler's kubeconfig"
    );
    let agents_url = format!("https://{}", l.addr("agents"));
    let _agents = enrol_agents(&tb, dir, &state, &agents_url);
    let dns = l.addr_of("dns", "udp");

    let (idc, ali, aws) = (
        tb.cluster(IDC).unwrap(),
        tb.cluster(ALI).unwrap(),
        tb.cluster(AWS).unwrap(),
    );
    let dns_api: std::net::SocketAddr = api.parse().unwrap();

    // 2 fit at home: the placement keeps the burst clusters out of dns (without it every
    // target of the zone would be answered).
    Kubectl::admin(idc).apply(&source_deployment(2));
    wait_dns_weights(
        dns_api,
        &[(IDC, 2, true), (ALI, 0, false), (AWS, 0, false)],
        Duration::from_secs(60),
    );
    assert_eq!(dig(dns), [addr_of(IDC)], "only the home cluster serves");
    hub.wait_line(
        "the scheduler publishes placements to dns in process",
        Duration::from_secs(1),
    );

    Kubectl::admin(idc).apply(&source_deployment(9));
    wait_for(
        "burst copies Ready (ali 2, aws 3)",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || match (deployment(ali), deployment(aws)) {
            (Some((2, 2)), Some((3, 3))) => Ok(()),
            other => Err(format!("{other:?}\n{}", hub.log_tail(5))),
        },
    );
    wait_for(
        "the hub's dns answers all three",
        Duration::from_secs(15),
        Duration::from_millis(300),
        || {
            let a = dig(dns);
            (a.len() == 3).then_some(()).ok_or(format!("{a:?}"))
        },
    );
    wait_dns_weights(
        dns_api,
        &[(IDC, 4, true), (ALI, 2, true), (AWS, 3, true)],
        Duration::from_secs(10),
    );
    assert!(
        !hub.logs().contains("cannot publish to dns"),
        "{}",
        hub.log_tail(20)
    );
}
