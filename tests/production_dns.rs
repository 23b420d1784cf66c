//! dns's production mode against a real (testbed) kube-apiserver: two `causeway dns
//! --hub-kubeconfig` replicas over one hub namespace answer the same Zones and
//! Placements applied with `kubectl apply`; a bad Zone change keeps the last good
//! version on both and its status says why; only the `causeway-dns` Lease holder writes
//! status, and the other takes over within the Lease duration once it is killed;
//! deleting the Placement and the Zone stops them applying. Times are printed.

use std::path::Path;
use std::time::{Duration, Instant};

use causeway_testbed::testing::{Kubectl, run_with_stdin, wait_for};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

#[path = "support/crds.rs"]
mod crds_support;
#[path = "support/dns.rs"]
mod dns_support;

use crds_support::{apply_crds, create_namespace};
use dns_support::{POLL, Server, addrs, write_config};

/// The Lease duration given to both replicas.
const LEASE: Duration = Duration::from_secs(6);

/// The base file: only the DnsServer (the zones are the hub's).
const BASE: &str = "apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {name: t}
spec:
  listen: [\"127.0.0.1:0\"]
";

/// A Zone `svc.example.` with the GSLB name `app` (all-healthy, TTL 1) over three
/// clusters, and `extra` appended under `spec:` (2-space indented lines).
fn zone(extra: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: svc}}
spec:
  origin: svc.example.
  soa: {{rname: hostmaster.svc.example.}}
  nameservers: [{{name: ns1, addresses: [127.0.0.53]}}]
  gslb:
    - name: app
      ttl: 1
      policy: all-healthy
      targets:
        - {{cluster: c1, addresses: [192.0.2.1]}}
        - {{cluster: c2, addresses: [192.0.2.2]}}
        - {{cluster: c3, addresses: [192.0.2.3]}}
{extra}"
    )
}

/// `kubectl apply -n NS -f -` of a manifest.
fn apply(k: &Kubectl, ns: &str, manifest: &str) {
    let mut cmd = k.cmd();
    cmd.args(["apply", "-n", ns, "-f", "-"]);
    let out = run_with_stdin(cmd, manifest.as_bytes()).expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The A answer of `name` from `s`: its rcode and addresses.
fn answer(s: &Server, name: &str) -> (ResponseCode, Vec<String>) {
    let m = s.udp(name, RecordType::A, false, None);
    (m.metadata.response_code, addrs(&m))
}

/// Waits until every server answers `name` with `want` (NOERROR); returns how long it took.
fn wait_answers(servers: &[&Server], name: &str, want: &[&str], within: Duration) -> Duration {
    let t0 = Instant::now();
    wait_for(
        &format!("{name} answers {want:?} on every replica"),
        within,
        POLL,
        || {
            let now: Vec<_> = servers.iter().map(|s| answer(s, name)).collect();
            if now
                .iter()
                .all(|(rc, a)| *rc == ResponseCode::NoError && a == want)
            {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    );
    t0.elapsed()
}

/// `status` of `kind/name` (JSON null if none).
fn status(k: &Kubectl, ns: &str, kind: &str, name: &str) -> serde_json::Value {
    k.json(&["get", kind, name, "-n", ns])
        .map(|o| o["status"].clone())
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until `check(status)` holds for `kind/name`; returns the status.
fn wait_status(
    k: &Kubectl,
    ns: &str,
    kind: &str,
    name: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(what, within, Duration::from_millis(100), || {
        let s = status(k, ns, kind, name);
        if check(&s) { Ok(s) } else { Err(s.to_string()) }
    })
}

fn lease_holder(k: &Kubectl, ns: &str) -> String {
    k.json(&["get", "lease", "causeway-dns", "-n", ns])
        .map(|l| {
            l["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

fn start(config: &Path, kubeconfig: &Path, ns: &str, id: &str) -> Server {
    let lease = format!("{}s", LEASE.as_secs());
    Server::start_with(
        config,
        &[
            "--hub-kubeconfig",
            kubeconfig.to_str().expect("a UTF-8 path"),
            "--hub-namespace",
            ns,
            "--lease-duration",
            &lease,
            "--lease-identity",
            id,
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_answer_the_hubs_zones_and_placements() {
    let tb = causeway_testbed::shared().await;
    let c = tb.cluster("tb-a").expect("cluster tb-a");
    let k = Kubectl::admin(c);
    apply_crds(&k);
    let ns = format!("production-dns-{}", std::process::id());
    create_namespace(&k, &ns);
    let ns = ns.as_str();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "dns.yaml", BASE);

    // Two replicas; ready once the (empty) hub namespace is loaded.
    let a = start(&config, &c.kubeconfig, ns, "dns-a");
    let b = start(&config, &c.kubeconfig, ns, "dns-b");
    for s in [&a, &b] {
        assert_eq!(s.http("GET", "/readyz", "").0, 200);
        assert_eq!(answer(s, "app.svc.example.").0, ResponseCode::Refused);
    }

    // A Zone applied to the hub: both answer it.
    let t0 = Instant::now();
    apply(&k, ns, &zone(""));
    let applied = t0.elapsed();
    wait_answers(
        &[&a, &b],
        "app.svc.example.",
        &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
        Duration::from_secs(20),
    );
    println!(
        "zone: kubectl apply returned after {applied:?}, both replicas answer it after {:?}",
        t0.elapsed()
    );

    // Exactly one replica holds the Lease and writes status: Accepted, its identity, and
    // the health of the zone's GSLB names.
    let leader = wait_for("a Lease holder", Duration::from_secs(20), POLL, || {
        let h = lease_holder(&k, ns);
        if h == "dns-a" || h == "dns-b" {
            Ok(h)
        } else {
            Err(h)
        }
    });
    let st = wait_status(
        &k,
        ns,
        "zone",
        "svc",
        Duration::from_secs(20),
        "Zone/svc accepted, written by the leader",
        |s| s["conditions"][0]["status"] == "True" && s["writer"] == leader.as_str(),
    );
    assert_eq!(st["conditions"][0]["type"], "Accepted");
    assert_eq!(st["observedGeneration"], 1);
    assert_eq!(st["gslb"][0]["name"], "app.svc.example.", "{st}");
    assert_eq!(st["gslb"][0]["healthy"], "3/3", "{st}");
    assert_eq!(st["lastGood"]["generation"], 1, "{st}");
    assert_eq!(st["lastGood"]["spec"]["origin"], "svc.example.", "{st}");
    let (leader_s, standby_s, standby_id) = if leader == "dns-a" {
        (&a, &b, "dns-b")
    } else {
        (&b, &a, "dns-a")
    };

    // A Placement object (as the scheduler's leader writes it): both answers follow it.
    let t0 = Instant::now();
    apply(
        &k,
        ns,
        "apiVersion: causeway.dev/v1alpha1
kind: Placement
metadata: {name: app.svc.example}
spec:
  service: app.svc.example.
  targets:
    - {cluster: c1, addresses: [192.0.2.101], weight: 1, health: healthy}
    - {cluster: c2, weight: 1, health: unhealthy}
    - {cluster: elsewhere, weight: 1, health: healthy}
",
    );
    let applied = t0.elapsed();
    wait_answers(
        &[&a, &b],
        "app.svc.example.",
        &["192.0.2.101", "192.0.2.3"],
        Duration::from_secs(20),
    );
    println!(
        "placement: kubectl apply returned after {applied:?}, both replicas answer it after {:?}",
        t0.elapsed()
    );
    let st = wait_status(
        &k,
        ns,
        "placement",
        "app.svc.example",
        Duration::from_secs(20),
        "Placement accepted, its ignored target listed",
        |s| {
            s["conditions"][0]["status"] == "True"
                && s["ignoredTargets"][0]
                    .as_str()
                    .is_some_and(|t| t.contains("elsewhere"))
        },
    );
    assert_eq!(st["writer"], leader.as_str());

    // A bad Placement change (a service that is no GSLB name): refused, its last good
    // version stays on both.
    apply(
        &k,
        ns,
        "apiVersion: causeway.dev/v1alpha1
kind: Placement
metadata: {name: app.svc.example}
spec:
  service: nope.svc.example.
  targets: [{cluster: c1, weight: 1}]
",
    );
    let st = wait_status(
        &k,
        ns,
        "placement",
        "app.svc.example",
        Duration::from_secs(20),
        "the Placement change rejected",
        |s| s["conditions"][0]["status"] == "False" && s["observedGeneration"] == 2,
    );
    assert!(
        st["conditions"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.service") && m.contains("is not a GSLB name")),
        "{st}"
    );
    for s in [&a, &b] {
        assert_eq!(
            answer(s, "app.svc.example.").1,
            ["192.0.2.101", "192.0.2.3"]
        );
    }

    // A bad Zone change (record data that is no IPv4 address, and a new name): both keep
    // answering the last good version; the status says which field.
    apply(
        &k,
        ns,
        &zone(
            "    - name: new
      policy: all-healthy
      targets: [{cluster: c1, addresses: [192.0.2.9]}]
  records:
    - {name: www, type: A, data: [192.0.2.300]}
",
        ),
    );
    let st = wait_status(
        &k,
        ns,
        "zone",
        "svc",
        Duration::from_secs(20),
        "Zone/svc rejected",
        |s| s["conditions"][0]["status"] == "False" && s["observedGeneration"] == 2,
    );
    let why = st["conditions"][0]["message"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("hub:{ns}/zones/svc"))
            && why.contains("spec.records[0].data[0]")
            && why.contains("192.0.2.300"),
        "{st}"
    );
    assert_eq!(st["conditions"][0]["reason"], "Invalid");
    for s in [&a, &b] {
        assert_eq!(
            answer(s, "app.svc.example."),
            (
                ResponseCode::NoError,
                vec!["192.0.2.101".into(), "192.0.2.3".into()]
            )
        );
        assert_eq!(answer(s, "new.svc.example.").0, ResponseCode::NXDomain);
    }

    // A replica started after the bad change never loaded the good version: it serves
    // the last good spec the status keeps, as the others do.
    {
        let late = start(&config, &c.kubeconfig, ns, "dns-late");
        assert_eq!(
            answer(&late, "app.svc.example."),
            (
                ResponseCode::NoError,
                vec!["192.0.2.101".into(), "192.0.2.3".into()]
            )
        );
        assert_eq!(answer(&late, "new.svc.example.").0, ResponseCode::NXDomain);
        assert!(!late.logs().contains("status written"));
    }

    // Only the Lease holder wrote status.
    assert!(
        leader_s.logs().contains("status written"),
        "{}",
        leader_s.logs()
    );
    assert!(
        !standby_s.logs().contains("status written"),
        "the standby wrote status:\n{}",
        standby_s.logs()
    );

    // Kill the leader: the other takes over writing status within the Lease duration
    // (plus its renewal period, the time to notice).
    let killed = Instant::now();
    leader_s.signal(libc::SIGKILL);
    wait_status(
        &k,
        ns,
        "zone",
        "svc",
        LEASE * 3,
        "the standby writes status",
        |s| s["writer"] == standby_id,
    );
    let handover = killed.elapsed();
    println!("leader killed → the other replica writes status: {handover:?} (Lease {LEASE:?})");
    assert!(
        handover <= LEASE + LEASE / 3 + Duration::from_secs(2),
        "handover took {handover:?}"
    );
    assert_eq!(lease_holder(&k, ns), standby_id);

    // The new writer judges the next change: the zone fixed, the new name served.
    apply(
        &k,
        ns,
        &zone(
            "    - name: new
      policy: all-healthy
      targets: [{cluster: c1, addresses: [192.0.2.9]}]
",
        ),
    );
    wait_answers(
        &[standby_s],
        "new.svc.example.",
        &["192.0.2.9"],
        Duration::from_secs(20),
    );
    wait_status(
        &k,
        ns,
        "zone",
        "svc",
        Duration::from_secs(20),
        "Zone/svc accepted again",
        |s| s["conditions"][0]["status"] == "True" && s["observedGeneration"] == 3,
    );

    // The file is still watched: a zone added to it is served beside the hub's.
    std::fs::write(
        &config,
        format!(
            "{BASE}---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: local}}
spec:
  origin: local.example.
  soa: {{rname: hostmaster.local.example.}}
  nameservers: [{{name: ns1, addresses: [127.0.0.53]}}]
  records:
    - {{name: www, type: A, data: [192.0.2.50]}}
"
        ),
    )
    .expect("write the config");
    wait_answers(
        &[standby_s],
        "www.local.example.",
        &["192.0.2.50"],
        Duration::from_secs(20),
    );
    assert_eq!(
        answer(standby_s, "app.svc.example.").1,
        ["192.0.2.101", "192.0.2.3"]
    );

    // Deleting the Placement removes it; deleting the Zone stops answering it.
    k.run(&["delete", "placement", "app.svc.example", "-n", ns]);
    wait_answers(
        &[standby_s],
        "app.svc.example.",
        &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
        Duration::from_secs(20),
    );
    k.run(&["delete", "zone", "svc", "-n", ns]);
    wait_for(
        "app.svc.example. no longer answered",
        Duration::from_secs(20),
        POLL,
        || match answer(standby_s, "app.svc.example.") {
            (ResponseCode::Refused, a) if a.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(
        answer(standby_s, "www.local.example.").1,
        ["192.0.2.50"],
        "the file's zone stays"
    );
    let _ = k.output(&["delete", "namespace", ns, "--wait=false"]);
}
