//! DNSSEC through a real delegation: NSD serves the parent zone `example.`, signed
//! with `ldns-signzone` (ldnsutils), which delegates `svc.example.` and `bad.example.`
//! to the causeway binary and holds a DS for each. unbound has only the parent's key
//! as its trust anchor and validates (`validator iterator`). causeway signs online
//! with keys made by `causeway dns keygen`; the DS for `svc.example.` comes from
//! `causeway dns ds`. unbound must set AD for a static name, a GSLB name (computed per
//! client), a name that does not exist (compact denial, RFC 9824) and NODATA. The
//! parent's DS for `bad.example.` is that of another key (a tampered chain): unbound
//! must answer SERVFAIL there.
//!
//! As in tests/dns_delegation.rs, causeway must listen on port 53 (glue has no port):
//! the test re-runs itself in `unshare -rn` where it can, else on the host as root.
//! Needs `nsd`, `unbound`, `dig`, `ldns-signzone`, `ldns-keygen`
//! (Debian: `apt-get install -y nsd unbound dnsutils ldnsutils iproute2 util-linux`).

#[path = "support/netns.rs"]
mod netns;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway_testbed::testing::{self, Process, Spawn, wait_for};

/// Parent server (NSD): zone `example.`, signed.
const PARENT: &str = "127.0.54.1";
const PARENT_PORT: u16 = 5491;
/// Child server (causeway): zones `svc.example.` and `bad.example.`, on port 53.
const CHILD: &str = "127.0.54.2";
const CHILD_API: &str = "127.0.54.2:5480";
/// Validating unbound, querying from this address (which the latency map knows).
const RESOLVER: &str = "127.0.54.3";
const RESOLVER_PORT: u16 = 5493;
/// Address `dig` sends from.
const CLIENT: &str = "127.0.99.9";

/// The clusters behind `app.svc.example.`; unbound's network is nearest to aws-sg.
const IDC: (&str, &str) = ("idc-bj", "192.0.2.1");
const AWS: (&str, &str) = ("aws-sg", "192.0.2.2");
const GCP: (&str, &str) = ("gcp-us", "192.0.2.3");

const IN_NETNS: &str = "CAUSEWAY_TEST_DNS_DNSSEC_NETNS";
const TEST_NAME: &str = "unbound_validates_signed_gslb_answers_through_signed_delegation";

const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

#[test]
fn unbound_validates_signed_gslb_answers_through_signed_delegation() {
    testing::require_tools(&[
        ("nsd", "nsd"),
        ("unbound", "unbound"),
        ("dig", "dnsutils"),
        ("ldns-signzone", "ldnsutils"),
        ("ldns-keygen", "ldnsutils"),
    ]);
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
            if UdpSocket::bind((CHILD, 53)).is_ok() {
                eprintln!("no network namespace ({why}); running on the host's {CHILD}:53");
                scenario();
            } else {
                panic!(
                    "this test needs causeway on port 53: either `unshare -rn` or root. \
                     Namespace check failed: {why}"
                );
            }
        }
    }
}

fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let exe = env!("CARGO_BIN_EXE_causeway");

    // Keys: causeway's for its two zones, and one that signs nothing (bad.example.'s DS).
    for k in ["svc.pem", "svc-zsk.pem", "bad.pem", "other.pem"] {
        run(Command::new(exe)
            .args(["dns", "keygen", "--out"])
            .arg(d.join(k)));
    }
    write(d.join("causeway.yaml"), &causeway_config(d));
    write(d.join("other.yaml"), &other_config(d));
    let ds_svc = run(Command::new(exe)
        .args(["dns", "ds", "-c"])
        .arg(d.join("causeway.yaml"))
        .arg("svc.example."));
    let ds_bad_wrong = run(Command::new(exe)
        .args(["dns", "ds", "-c"])
        .arg(d.join("other.yaml"))
        .arg("bad.example."));
    let ds_bad_right = run(Command::new(exe)
        .args(["dns", "ds", "-c"])
        .arg(d.join("causeway.yaml"))
        .arg("bad.example."));
    assert!(
        ds_svc.contains(" IN DS ") && ds_svc.contains(" 13 2 "),
        "{ds_svc}"
    );
    assert_ne!(
        ds_bad_wrong, ds_bad_right,
        "two keys must give two DS records"
    );

    let causeway = Spawn::causeway(exe)
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

    // The parent: a KSK made by ldns-keygen, the zone signed by ldns-signzone.
    let parent_key = run(Command::new("ldns-keygen").current_dir(d).args([
        "-a",
        "ECDSAP256SHA256",
        "-k",
        "example.",
    ]));
    let parent_key = parent_key.trim().to_string();
    write(d.join("example.zone"), &parent_zone(&ds_svc, &ds_bad_wrong));
    run(Command::new("ldns-signzone").current_dir(d).args([
        "-f",
        "example.zone.signed",
        "example.zone",
        &parent_key,
    ]));
    write(d.join("nsd.conf"), &nsd_conf(d));
    let _nsd = daemon("nsd", d.join("nsd.conf"), d);
    write(
        d.join("unbound.conf"),
        &unbound_conf(d, &format!("{parent_key}.key")),
    );
    let _unbound = daemon("unbound", d.join("unbound.conf"), d);

    wait_for("NSD serves the signed parent", WAIT, POLL, || {
        let out = dig(
            PARENT,
            PARENT_PORT,
            "svc.example.",
            &["+norec", "+dnssec", "DS"],
        );
        out.contains("status: NOERROR") && out.contains("RRSIG")
    });
    wait_for("causeway answers directly", WAIT, POLL, || {
        dig(CHILD, 53, "app.svc.example.", &["+norec"]).contains("status: NOERROR")
    });
    wait_for("unbound is up", WAIT, POLL, || {
        dig(RESOLVER, RESOLVER_PORT, "example.", &["SOA"]).contains("status: NOERROR")
    });
    // The parent validates on its own: unbound's trust anchor is right.
    let parent = dig(RESOLVER, RESOLVER_PORT, "example.", &["SOA"]);
    assert!(ad(&parent), "the signed parent should validate:\n{parent}");

    // Unsigned queries (no DO) still get plain answers: NXDOMAIN stays NXDOMAIN.
    let plain = dig(CHILD, 53, "nope.svc.example.", &["+norec"]);
    assert!(
        plain.contains("status: NXDOMAIN") && !plain.contains("RRSIG"),
        "{plain}"
    );

    // The KSK signs the DNSKEY RRset, the ZSK the rest.
    let keys = dig(CHILD, 53, "svc.example.", &["+norec", "+dnssec", "DNSKEY"]);
    assert!(
        keys.contains("DNSKEY\t257 3 13") && keys.contains("DNSKEY\t256 3 13"),
        "svc.example. should publish its KSK (257) and ZSK (256)\n{keys}"
    );
    // 1. A static name.
    let www = dig(RESOLVER, RESOLVER_PORT, "www.svc.example.", &["A"]);
    assert!(
        ad(&www) && www.contains("status: NOERROR") && answers(&www, "A") == ["192.0.2.10"],
        "www.svc.example. should validate (AD)\n{www}\n{}",
        logs(d, &causeway)
    );
    // 2. The GSLB name: unbound's network is nearest to aws-sg.
    let app = dig(RESOLVER, RESOLVER_PORT, "app.svc.example.", &["A"]);
    assert!(
        ad(&app) && answers(&app, "A") == [AWS.1],
        "the GSLB answer should validate (AD) and be aws-sg\n{app}\n{}",
        logs(d, &causeway)
    );
    // 3. A name that does not exist: compact denial (NOERROR + NSEC with NXNAME),
    //    which validators accept as a proven negative answer.
    let nx = dig(RESOLVER, RESOLVER_PORT, "nope.svc.example.", &["A"]);
    assert!(
        ad(&nx)
            && (nx.contains("status: NXDOMAIN") || nx.contains("status: NOERROR"))
            && answers(&nx, "A").is_empty(),
        "the denial of nope.svc.example. should validate (AD)\n{nx}\n{}",
        logs(d, &causeway)
    );
    eprintln!(
        "unbound's answer to the compact denial: {}",
        nx.lines()
            .find(|l| l.contains("status:"))
            .unwrap_or_default()
    );
    let direct = dig(CHILD, 53, "nope.svc.example.", &["+norec", "+dnssec"]);
    assert!(
        direct.contains("status: NOERROR") && direct.contains("NSEC") && direct.contains("TYPE128"),
        "causeway should answer compact denial (NOERROR, NSEC with NXNAME)\n{direct}"
    );
    // 4. NODATA: the GSLB name has no IPv6 target; a static name has no TXT.
    for (name, qtype) in [("app.svc.example.", "AAAA"), ("www.svc.example.", "TXT")] {
        let nodata = dig(RESOLVER, RESOLVER_PORT, name, &[qtype]);
        assert!(
            ad(&nodata) && nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
            "NODATA for {name} {qtype} should validate (AD)\n{nodata}\n{}",
            logs(d, &causeway)
        );
    }
    // 5. The tampered chain: the parent's DS for bad.example. is another key's.
    let bad = dig(RESOLVER, RESOLVER_PORT, "app.bad.example.", &["A"]);
    assert!(
        bad.contains("status: SERVFAIL"),
        "a DS that matches no key of bad.example. must make unbound answer SERVFAIL\n{bad}\n{}",
        logs(d, &causeway)
    );
    // ...while causeway itself answers it (the failure is the validation's).
    let bad_direct = dig(CHILD, 53, "app.bad.example.", &["+norec", "+dnssec"]);
    assert!(
        bad_direct.contains("status: NOERROR") && bad_direct.contains("RRSIG"),
        "{bad_direct}"
    );
}

// === configs ===

/// A signed zone; `keys` is its `spec.dnssec` in flow style.
fn zone_doc(origin: &str, keys: &str) -> String {
    format!(
        "---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: {name}}}
spec:
  origin: {origin}
  ttl: 60
  soa: {{rname: hostmaster.{origin}, minimum: 1}}
  nameservers: [{{name: ns1, addresses: [{CHILD}]}}]
  dnssec: {keys}
  records:
    - {{name: www, type: A, data: [192.0.2.10]}}
  gslb:
    - name: app
      ttl: 1
      policy: latency
      targets:
        - {{cluster: {c1}, addresses: [{a1}]}}
        - {{cluster: {c2}, addresses: [{a2}]}}
        - {{cluster: {c3}, addresses: [{a3}]}}
",
        name = origin.trim_end_matches('.').replace('.', "-"),
        c1 = IDC.0,
        a1 = IDC.1,
        c2 = AWS.0,
        a2 = AWS.1,
        c3 = GCP.0,
        a3 = GCP.1,
    )
}

const SERVER_DOC: &str = "apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {name: dnssec-test}
spec:
  watch: false
";

fn causeway_config(d: &Path) -> String {
    format!(
        "{SERVER_DOC}{}{}---
apiVersion: causeway.dev/v1alpha1
kind: LatencyMap
metadata: {{name: dnssec-test}}
spec:
  entries:
    - {{prefix: 127.0.54.0/24, rttMs: {{{}: 80, {}: 10, {}: 120}}}}
",
        // svc.example. with a KSK and a ZSK, bad.example. with one CSK.
        zone_doc(
            "svc.example.",
            &format!(
                "{{ksk: {}, zsk: {}}}",
                d.join("svc.pem").display(),
                d.join("svc-zsk.pem").display()
            )
        ),
        zone_doc(
            "bad.example.",
            &format!("{{csk: {}}}", d.join("bad.pem").display())
        ),
        IDC.0,
        AWS.0,
        GCP.0,
    )
}

/// A config only for `causeway dns ds`: bad.example. with a key it is not signed with.
fn other_config(d: &Path) -> String {
    format!(
        "{SERVER_DOC}{}",
        zone_doc(
            "bad.example.",
            &format!("{{csk: {}}}", d.join("other.pem").display())
        )
    )
}

fn parent_zone(ds_svc: &str, ds_bad: &str) -> String {
    format!(
        "$ORIGIN example.
$TTL 60
@        IN SOA ns1.example. hostmaster.example. ( 1 3600 900 604800 60 )
@        IN NS  ns1.example.
ns1      IN A   {PARENT}
svc      IN NS  ns1.svc.example.
ns1.svc  IN A   {CHILD}
{ds_svc}
bad      IN NS  ns1.bad.example.
ns1.bad  IN A   {CHILD}
{ds_bad}
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
  zonefile: example.zone.signed
"
    )
}

/// A validating unbound that knows only the parent and trusts only its key.
fn unbound_conf(d: &Path, anchor: &str) -> String {
    let d = d.display();
    format!(
        "server:
  interface: {RESOLVER}@{RESOLVER_PORT}
  port: {RESOLVER_PORT}
  outgoing-interface: {RESOLVER}
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
  val-log-level: 2
  num-threads: 1
  module-config: \"validator iterator\"
  trust-anchor-file: \"{d}/{anchor}\"
  cache-max-ttl: 1
  cache-max-negative-ttl: 1
  prefetch: no
  serve-expired: no
  qname-minimisation: no
  harden-referral-path: no
stub-zone:
  name: \"example.\"
  stub-addr: {PARENT}@{PARENT_PORT}
"
    )
}

// === dig ===

fn dig(addr: &str, port: u16, name: &str, extra: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["-b", CLIENT, &format!("@{addr}"), "-p", &port.to_string()])
        .args(["+time=3", "+tries=1"])
        .args(extra)
        .arg(name)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the reply has the AD flag.
fn ad(out: &str) -> bool {
    out.lines()
        .find(|l| l.starts_with(";; flags:"))
        .is_some_and(|l| l.split(';').nth(2).is_some_and(|f| f.contains(" ad")))
}

/// The data of the answer records of `rtype`.
fn answers(out: &str, rtype: &str) -> Vec<String> {
    let mut in_answer = false;
    let mut v = Vec::new();
    for l in out.lines() {
        if l.starts_with(";; ANSWER SECTION") {
            in_answer = true;
            continue;
        }
        if l.is_empty() {
            in_answer = false;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if in_answer && f.len() == 5 && f[3] == rtype {
            v.push(f[4].to_string());
        }
    }
    v.sort();
    v
}

fn logs(d: &Path, causeway: &Process) -> String {
    let unbound = std::fs::read_to_string(d.join("unbound.log")).unwrap_or_default();
    let tail: Vec<&str> = unbound.lines().rev().take(30).collect();
    format!(
        "--- causeway ---\n{}\n--- unbound (last lines) ---\n{}",
        causeway.log_tail(20),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

// === processes ===

/// Runs a command to completion; its stdout. Panics on failure.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn daemon(name: &str, config: PathBuf, dir: &Path) -> Process {
    let mut cmd = Command::new(name);
    cmd.arg("-d").arg("-c").arg(config);
    Spawn::new(name, cmd)
        .log_file(dir.join(format!("{name}.log")))
        .start()
}

fn write(path: PathBuf, text: &str) {
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// === environment ===
