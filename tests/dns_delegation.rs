//! A real delegation, end to end: a parent zone `example.` served by NSD delegates
//! `svc.example.` (NS + glue) to the causeway binary; unbound, told only where the
//! parent is, resolves `app.svc.example.` through that delegation and must get the
//! address the latency policy picks for unbound's own address. Then the latency map
//! changes through causeway's HTTP API and, once the short TTL has run out, unbound's
//! answer must change with it. A second unbound with the `subnetcache` module forwards
//! the client's EDNS Client Subnet, and the answer must follow the client's network.
//!
//! Everything runs on loopback. unbound sends its queries for a delegated zone to
//! port 53 of the glue address (there is no per-server port in a delegation), so
//! causeway must listen on port 53. To stay off the host's port 53 the test re-runs
//! itself in a new user + network namespace (`unshare -rn`, util-linux) with only
//! `lo` up (`ip`, iproute2); where namespaces are not allowed but the test runs as
//! root it uses 127.0.53.2:53 on the host (`CAUSEWAY_TEST_NO_NETNS=1` forces that). Needs `nsd`, `unbound` and `dig`
//! (Debian: `apt-get install -y nsd unbound dnsutils iproute2 util-linux`).

#[path = "support/netns.rs"]
mod netns;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use causeway_testbed::testing::{self, HttpClient, Process, Spawn, wait_for};
use http::Method;

/// Parent server (NSD): zone `example.`.
const PARENT: &str = "127.0.53.1";
const PARENT_PORT: u16 = 5391;
/// Child server (causeway): zone `svc.example.`, on port 53 (see the module docs).
const CHILD: &str = "127.0.53.2";
const CHILD_API: &str = "127.0.53.2:5380";
/// unbound without ECS; it queries from this address, which the latency map knows.
const RESOLVER: &str = "127.0.53.3";
const RESOLVER_PORT: u16 = 5393;
/// unbound with the subnetcache module (ECS), querying from 127.0.53.4.
const ECS_RESOLVER: &str = "127.0.53.4";
const ECS_RESOLVER_PORT: u16 = 5394;
/// Address `dig` sends from (for the ECS resolver: the client network).
const CLIENT: &str = "127.0.99.9";

/// TTL of the GSLB answers and unbound's `cache-max-ttl`.
const TTL_SECS: u64 = 1;

/// The three clusters behind `app.svc.example.` and their addresses.
const IDC: (&str, &str) = ("idc-bj", "192.0.2.1");
const AWS: (&str, &str) = ("aws-sg", "192.0.2.2");
const GCP: (&str, &str) = ("gcp-us", "192.0.2.3");

/// Set in the re-executed child that runs inside the namespace.
const IN_NETNS: &str = "CAUSEWAY_TEST_DNS_DELEGATION_NETNS";
const TEST_NAME: &str = "unbound_resolves_through_delegation_to_latency_choice";

/// How long each server may take to come up, and how often to ask.
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

#[test]
fn unbound_resolves_through_delegation_to_latency_choice() {
    require_tools();
    if std::env::var_os(IN_NETNS).is_some() {
        scenario();
        return;
    }
    let netns = if std::env::var_os("CAUSEWAY_TEST_NO_NETNS").is_some() {
        Err("CAUSEWAY_TEST_NO_NETNS is set".to_string())
    } else {
        netns::usable()
    };
    match netns {
        Ok(()) => netns::rerun_inside(TEST_NAME, IN_NETNS),
        Err(why) => {
            if can_bind_port_53() {
                eprintln!("no network namespace ({why}); running on the host's {CHILD}:53");
                scenario();
            } else {
                panic!(
                    "this test needs causeway on port 53 (unbound follows NS glue to port 53 only): \
                     either unprivileged user namespaces for `unshare -rn` (util-linux, iproute2) \
                     or root / CAP_NET_BIND_SERVICE. Namespace check failed: {why}"
                );
            }
        }
    }
}

// === the scenario ===

fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Latency map: unbound's address (127.0.53.3) is closest to aws-sg, the client
    // network behind the ECS resolver (127.0.99.0/24) to gcp-us, and the network a
    // client names in its own ECS option (127.0.98.0/24) to aws-sg.
    write(
        d.join("causeway.yaml"),
        &causeway_config(&[
            (
                "127.0.53.0/24",
                [(IDC.0, 80.0), (AWS.0, 10.0), (GCP.0, 120.0)],
            ),
            (
                "127.0.99.0/24",
                [(IDC.0, 90.0), (AWS.0, 70.0), (GCP.0, 5.0)],
            ),
            (
                "127.0.98.0/24",
                [(IDC.0, 90.0), (AWS.0, 4.0), (GCP.0, 70.0)],
            ),
        ]),
    );
    let causeway = Spawn::causeway(env!("CARGO_BIN_EXE_causeway"))
        .args(["dns", "--config"])
        .arg(d.join("causeway.yaml"))
        .args([
            "--listen",
            &format!("{CHILD}:53"),
            "--api-listen",
            CHILD_API,
        ])
        .log_file(d.join("causeway.log"))
        .start();
    causeway.wait_listening(&["dns"], Duration::from_secs(30));

    write(d.join("example.zone"), &parent_zone());
    write(d.join("nsd.conf"), &nsd_conf(d));
    let _nsd = daemon("nsd", d.join("nsd.conf"), d);

    write(
        d.join("unbound.conf"),
        &unbound_conf(d, RESOLVER, RESOLVER_PORT, false),
    );
    write(
        d.join("unbound-ecs.conf"),
        &unbound_conf(d, ECS_RESOLVER, ECS_RESOLVER_PORT, true),
    );
    let _unbound = daemon("unbound", d.join("unbound.conf"), d);
    let _unbound_ecs = daemon("unbound-ecs", d.join("unbound-ecs.conf"), d);

    // Each server answers on its own before anything goes through the chain.
    wait_for("NSD serves the delegation", WAIT, POLL, || {
        let out = dig(PARENT, PARENT_PORT, "app.svc.example.", &["+norec"]);
        out.contains("status: NOERROR") && out.contains("ns1.svc.example.")
    });
    wait_for("causeway answers directly", WAIT, POLL, || {
        dig(CHILD, 53, "app.svc.example.", &["+norec"]).contains("status: NOERROR")
    });
    for (addr, port) in [(RESOLVER, RESOLVER_PORT), (ECS_RESOLVER, ECS_RESOLVER_PORT)] {
        wait_for("unbound is up", WAIT, POLL, || {
            dig(addr, port, "example.", &["SOA"]).contains("status: NOERROR")
        });
    }

    // 1. Through the delegation: the latency choice for unbound's address.
    let first = resolve(RESOLVER, RESOLVER_PORT, &[]);
    assert_eq!(
        first,
        vec![AWS.1.to_string()],
        "unbound should resolve app.svc.example. through NSD's delegation to causeway and get \
         aws-sg (10 ms for 127.0.53.0/24)\n{}",
        causeway.log_tail(30)
    );
    // The referral really comes from the parent: NSD is not authoritative for the child.
    let referral = dig(PARENT, PARENT_PORT, "app.svc.example.", &["+norec"]);
    assert!(
        referral.contains("AUTHORITY: 1") && !referral.contains("flags: qr aa"),
        "NSD should answer with a referral, got:\n{referral}"
    );

    // 2. The latency map changes through the API: idc-bj becomes closest.
    post_latency(
        CHILD_API,
        "127.0.53.0/24",
        &[(IDC.0, 3.0), (AWS.0, 60.0), (GCP.0, 120.0)],
    );
    let changed_at = Instant::now();
    // Right after the change the old answer may still be cached (at most TTL seconds).
    let mut last = Vec::new();
    let deadline = Duration::from_secs(TTL_SECS + 10);
    while changed_at.elapsed() < deadline {
        last = resolve(RESOLVER, RESOLVER_PORT, &[]);
        if last == vec![IDC.1.to_string()] {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        last,
        vec![IDC.1.to_string()],
        "after the latency update unbound's answer should become idc-bj within {deadline:?}\n{}",
        causeway.log_tail(30)
    );
    eprintln!(
        "answer changed {:?} after the API update",
        changed_at.elapsed()
    );
    // And it stays changed (no flapping back to the old choice).
    std::thread::sleep(Duration::from_millis(TTL_SECS * 1000 + 300));
    assert_eq!(
        resolve(RESOLVER, RESOLVER_PORT, &[]),
        vec![IDC.1.to_string()]
    );

    // 3. ECS through unbound's subnetcache: the client's network decides, not unbound's
    // (127.0.53.4, whose choice is idc-bj since step 2).
    // a. No ECS from the client: unbound sends the client's own /24 (dig queries from
    //    127.0.99.9); nothing for that network is cached yet, so this went upstream.
    let from_client = resolve(ECS_RESOLVER, ECS_RESOLVER_PORT, &[]);
    assert_eq!(
        from_client,
        vec![GCP.1.to_string()],
        "unbound should send ECS 127.0.99.0/24 (the client's address) and causeway pick \
         gcp-us\n{}",
        causeway.log_tail(30)
    );
    // b. The client's own ECS option (another network) is forwarded instead.
    let ecs = resolve(ECS_RESOLVER, ECS_RESOLVER_PORT, &["+subnet=127.0.98.0/24"]);
    assert_eq!(
        ecs,
        vec![AWS.1.to_string()],
        "with the client's ECS 127.0.98.0/24 forwarded by unbound, causeway should pick \
         aws-sg\n{}",
        causeway.log_tail(30)
    );
}

// === configs ===

fn causeway_config(map: &[(&str, [(&str, f64); 3])]) -> String {
    let mut s = format!(
        "apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {{name: delegation-test}}
spec:
  watch: false
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: svc-example}}
spec:
  origin: svc.example.
  ttl: 60
  soa: {{rname: hostmaster.svc.example., minimum: {TTL_SECS}}}
  nameservers: [{{name: ns1, addresses: [{CHILD}]}}]
  gslb:
    - name: app
      ttl: {TTL_SECS}
      policy: latency
      targets:
"
    );
    for (cluster, addr) in [IDC, AWS, GCP] {
        s += &format!("        - {{cluster: {cluster}, addresses: [{addr}]}}\n");
    }
    s += "---
apiVersion: causeway.dev/v1alpha1
kind: LatencyMap
metadata: {name: delegation-test}
spec:
  entries:
";
    for (prefix, rtts) in map {
        let rtts: Vec<String> = rtts.iter().map(|(c, ms)| format!("{c}: {ms}")).collect();
        s += &format!(
            "    - {{prefix: {prefix}, rttMs: {{{}}}}}\n",
            rtts.join(", ")
        );
    }
    s
}

fn parent_zone() -> String {
    format!(
        "$ORIGIN example.
$TTL 60
@        IN SOA ns1.example. hostmaster.example. ( 1 3600 900 604800 60 )
@        IN NS  ns1.example.
ns1      IN A   {PARENT}
; the delegation under test
svc      IN NS  ns1.svc.example.
ns1.svc  IN A   {CHILD}
"
    )
}

fn nsd_conf(d: &Path) -> String {
    let d = d.display();
    format!(
        "server:
  ip-address: {PARENT}@{PARENT_PORT}
  do-ip6: no
  server-count: 1
  username: \"\"
  chroot: \"\"
  database: \"\"
  zonelistfile: \"{d}/nsd-zone.list\"
  pidfile: \"\"
  xfrdfile: \"{d}/nsd-xfrd.state\"
  xfrdir: \"{d}\"
  zonesdir: \"{d}\"
  logfile: \"\"
  verbosity: 1
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: example.
  zonefile: example.zone
"
    )
}

/// unbound that knows only the parent (`stub-zone example.`), caches at most
/// `TTL_SECS`, and sends its queries from `addr`.
fn unbound_conf(d: &Path, addr: &str, port: u16, ecs: bool) -> String {
    let d = d.display();
    let modules = if ecs {
        format!(
            "  module-config: \"subnetcache iterator\"
  send-client-subnet: {CHILD}
  max-client-subnet-ipv4: 24
"
        )
    } else {
        "  module-config: \"iterator\"\n".to_string()
    };
    format!(
        "server:
  interface: {addr}@{port}
  port: {port}
  outgoing-interface: {addr}
  do-ip4: yes
  do-ip6: no
  do-udp: yes
  do-tcp: yes
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  username: \"\"
  chroot: \"\"
  directory: \"{d}\"
  pidfile: \"\"
  use-syslog: no
  logfile: \"\"
  verbosity: 1
  num-threads: 1
{modules}  cache-max-ttl: {TTL_SECS}
  cache-max-negative-ttl: {TTL_SECS}
  prefetch: no
  serve-expired: no
  qname-minimisation: no
  harden-referral-path: no
  domain-insecure: \"example.\"
  auto-trust-anchor-file: \"\"
stub-zone:
  name: \"example.\"
  stub-addr: {PARENT}@{PARENT_PORT}
"
    )
}

// === the HTTP API ===

/// Replaces the RTTs of `prefix` with `rtts` through causeway's API.
fn post_latency(api: &str, prefix: &str, rtts: &[(&str, f64)]) {
    let measurements: Vec<String> = rtts
        .iter()
        .map(|(c, ms)| format!("{{\"prefix\":\"{prefix}\",\"cluster\":\"{c}\",\"rttMs\":{ms}}}"))
        .collect();
    let body = format!("{{\"measurements\":[{}]}}", measurements.join(","));
    let api: SocketAddr = api.parse().unwrap();
    let resp = HttpClient::new(api)
        .send_blocking(Method::POST, "/v1/latency", body.clone())
        .unwrap_or_else(|e| panic!("the causeway API at {api}: {e}"));
    let status = resp.status;
    let resp = resp.text();
    assert!(
        (200..300).contains(&status),
        "POST /v1/latency {body} answered {status}: {resp}"
    );
}

// === dig ===

/// `dig` output for `name` A at `addr:port`, sent from `CLIENT`.
fn dig(addr: &str, port: u16, name: &str, extra: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["-b", CLIENT, &format!("@{addr}"), "-p", &port.to_string()])
        .args(["+time=2", "+tries=1"])
        .args(extra)
        .arg(name)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The A records unbound returns for `app.svc.example.` (sorted), failing on an error rcode.
fn resolve(addr: &str, port: u16, extra: &[&str]) -> Vec<String> {
    let full = dig(addr, port, "app.svc.example.", extra);
    assert!(
        full.contains("status: NOERROR"),
        "unbound at {addr}:{port} failed:\n{full}"
    );
    let mut a: Vec<String> = full
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[0] == "app.svc.example." && f[3] == "A").then(|| f[4].to_string())
        })
        .collect();
    a.sort();
    a
}

// === processes ===

/// A daemon in the foreground (`-d -c CONFIG`), its output kept in `dir/NAME.log`.
fn daemon(name: &str, config: PathBuf, dir: &Path) -> Process {
    let mut cmd = Command::new(if name.starts_with("unbound") {
        "unbound"
    } else {
        name
    });
    cmd.arg("-d").arg("-c").arg(config);
    Spawn::new(name, cmd)
        .log_file(dir.join(format!("{name}.log")))
        .start()
}

fn write(path: PathBuf, text: &str) {
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// === environment ===

fn require_tools() {
    testing::require_tools(&[("nsd", "nsd"), ("unbound", "unbound"), ("dig", "dnsutils")]);
}

fn can_bind_port_53() -> bool {
    UdpSocket::bind((CHILD, 53)).is_ok()
}
