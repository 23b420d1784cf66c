//! Big latency maps: a `LatencyMap` `spec.file` of 200,000 prefixes in the line format,
//! served by the built binary; a bad file on reload keeps the last good map; a whole
//! map uploaded with `PUT /v1/latency/map` replaces it at once, a bad upload is refused
//! naming its line and the old map keeps serving; `DELETE` brings the config's back.
//! Prints the time to the first answer and VmRSS/VmHWM (debug build: the release numbers
//! for 1,000,000 prefixes are in docs/dns.md, "Big latency maps").

#[path = "support/dns.rs"]
mod dns_support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use causeway_testbed::testing::wait_for;
use dns_support::*;
use hickory_proto::rr::RecordType;

const PREFIXES: u32 = 200_000;
const CLUSTERS: [&str; 3] = ["idc", "aws", "gcp"];
const ADDRS: [&str; 3] = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];

/// The /24 number `i`: 10.0.0.0/24, 10.0.1.0/24, … (into 13.x for 200,000).
fn net(i: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(0x0a00_0000u32 + (i << 8))
}

/// A map where prefix `i`'s nearest cluster is `(i + shift) % 3`; every seventh
/// prefix has no measurement for one of the others (`-`).
fn map(shift: u32) -> String {
    let mut s = String::from("# generated\nprefix idc aws gcp\n");
    for i in 0..PREFIXES {
        let best = ((i + shift) % 3) as usize;
        let mut rtts = ["50", "60", "70"];
        rtts[best] = "5.5";
        if i % 7 == 0 {
            rtts[(best + 1) % 3] = "-";
        }
        let _ = writeln!(s, "{}/24 {} {} {}", net(i), rtts[0], rtts[1], rtts[2]);
    }
    s
}

fn config() -> String {
    let targets: String = CLUSTERS
        .iter()
        .zip(ADDRS)
        .map(|(c, a)| format!("        - {{cluster: {c}, addresses: [{a}]}}\n"))
        .collect();
    format!(
        "apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {{name: s}}
spec:
  watch: false
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: z}}
spec:
  origin: svc.example.
  soa: {{rname: hostmaster.svc.example.}}
  nameservers: [{{name: ns1, addresses: [127.0.0.53]}}]
  gslb:
    - name: app
      policy: latency
      ttl: 30
      targets:
{targets}---
apiVersion: causeway.dev/v1alpha1
kind: LatencyMap
metadata: {{name: big}}
spec:
  file: map.txt
"
    )
}

/// Prefixes checked after each change: both ends and a spread in between.
fn samples() -> Vec<u32> {
    (0..40)
        .map(|k| k * 4_999 % PREFIXES)
        .chain([1, PREFIXES - 1])
        .collect()
}

fn answer(s: &Server, i: u32) -> Vec<String> {
    let client = net(i).to_string();
    addrs(&s.udp("app.svc.example.", RecordType::A, true, Some((&client, 24))))
}

/// Whether every sample answers the cluster a map of `shift` makes nearest.
fn serves(s: &Server, shift: u32) -> bool {
    samples()
        .into_iter()
        .all(|i| answer(s, i) == vec![ADDRS[((i + shift) % 3) as usize].to_string()])
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

#[test]
fn big_map_from_file_upload_swap_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let text = map(0);
    std::fs::write(dir.path().join("map.txt"), &text).unwrap();
    let path = write_config(dir.path(), "dns.yaml", &config());
    let started = Instant::now();
    let s = Server::start(&path);
    let first = answer(&s, 0);
    let ready = started.elapsed();
    assert_eq!(first, vec![ADDRS[0].to_string()]);
    let (rss, hwm) = (proc_kib(s.pid(), "VmRSS:"), proc_kib(s.pid(), "VmHWM:"));
    eprintln!(
        "big map: {PREFIXES} prefixes x 3 clusters ({} bytes): first answer after {:.2} s, \
         VmRSS {:.1} MiB, VmHWM {:.1} MiB (debug build)",
        text.len(),
        ready.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    assert!(ready < Duration::from_secs(60), "startup took {ready:?}");
    assert!(serves(&s, 0), "answers from the file");
    let (_, m) = s.http("GET", "/metrics", "");
    assert!(
        m.contains(&format!("causeway_dns_latency_map_prefixes {PREFIXES}")),
        "all prefixes loaded"
    );

    // A bad file on reload: the error names the file and line, the last good map serves.
    let mut bad = text.clone();
    bad.push_str("10.0.0.0/24 1 2 3\n");
    std::fs::write(dir.path().join("map.txt"), &bad).unwrap();
    s.signal(libc::SIGHUP);
    let dup_line = PREFIXES + 3;
    assert!(
        s.wait_log(
            &format!("map.txt:{dup_line}: 10.0.0.0/24 is listed twice (lines 3 and {dup_line})"),
            Duration::from_secs(60)
        ),
        "reload error naming the map line; logs:\n{}",
        s.logs()
    );
    assert!(serves(&s, 0), "the last good map keeps serving");

    // A whole map uploaded: swapped in at once, every sample answers from it.
    let (status, body) = s.http("PUT", "/v1/latency/map", &map(1));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("\"prefixes\": {PREFIXES}")),
        "{body}"
    );
    assert!(serves(&s, 1), "answers from the upload");

    // A bad upload: refused with its line, the uploaded map keeps serving.
    let mut bad = map(2);
    let mut lines: Vec<&str> = bad.lines().collect();
    lines[12_344] = "10.48.57.0/24 5 fast -";
    bad = lines.join("\n");
    let (status, body) = s.http("PUT", "/v1/latency/map", &bad);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"line\": 12345"), "{body}");
    assert!(
        body.contains("body:12345: \\\"fast\\\" (column 3) is not an RTT"),
        "{body}"
    );
    assert!(serves(&s, 1), "a refused upload changes nothing");

    // DELETE: the config's map (the last good file) again.
    let (status, body) = s.http("DELETE", "/v1/latency/map", "");
    assert_eq!(status, 200, "{body}");
    wait_for(
        "the config's map after DELETE",
        Duration::from_secs(5),
        POLL,
        || serves(&s, 0),
    );
}
