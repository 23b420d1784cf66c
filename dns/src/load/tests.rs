//! Every kind of document: a bad line gives `file:line:column` at the real spot, from
//! the envelope's parser, from config validation, from compiling the zone and from
//! setting up its probes.

use std::path::Path;

use super::*;

/// One document of each kind; line numbers below count from `apiVersion` = 1.
const GOOD: &str = r#"apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {name: s}
spec:
  listen: ["127.0.0.1:0"]
  rateLimit:
    responsesPerSecond: 100
    exempt: [10.0.0.0/8, 192.168.0.0/16]
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {name: z}
spec:
  origin: svc.example.
  soa: {rname: hostmaster.svc.example.}
  nameservers: [{name: ns1, addresses: [127.0.0.53]}]
  records:
    - {name: www, type: A, data: [192.0.2.10]}
    - {name: mail, type: MX, data: ["10 mx.svc.example."]}
  gslb:
    - name: app
      policy: latency
      targets:
        - {cluster: a, addresses: [192.0.2.1]}
        - cluster: b
          addresses: [192.0.2.2, "2001:db8::2"]
          healthCheck: {protocol: tcp, port: 443}
---
apiVersion: causeway.dev/v1alpha1
kind: LatencyMap
metadata: {name: m}
spec:
  entries:
    - {prefix: 198.51.100.0/24, rttMs: {a: 10, b: 30}}
    - prefix: 203.0.113.0/24
      rttMs: {a: 40, b: 5}
"#;

/// Loads GOOD with `from` replaced by `to` (exactly once) and returns the error.
fn error_with(from: &str, to: &str) -> ConfigError {
    assert_eq!(GOOD.matches(from).count(), 1, "{from:?} must occur once");
    let text = GOOD.replace(from, to);
    LoadedConfig::parse(Path::new("t.yaml"), &text).expect_err("the file is bad")
}

/// Asserts where the error is and what it names.
#[track_caller]
fn assert_at(e: &ConfigError, line: usize, column: usize, object: &str, field: &str) {
    let shown = e.to_string();
    assert_eq!(e.file, Path::new("t.yaml"), "{shown}");
    assert_eq!(
        e.position.map(|p| (p.line, p.column)),
        Some((line, column)),
        "{shown}"
    );
    assert_eq!(e.object.as_deref(), Some(object), "{shown}");
    assert_eq!(e.field, field, "{shown}");
    assert!(
        shown.starts_with(&format!("t.yaml:{line}:{column}: {object}: {field}: ")),
        "{shown}"
    );
}

#[test]
fn the_good_file_loads() {
    let loaded = LoadedConfig::parse(Path::new("t.yaml"), GOOD).unwrap();
    assert_eq!(loaded.zones.gslb.len(), 1);
    assert!(loaded.probes.get(0, 1).is_some(), "b has a check");
    assert!(loaded.probes.get(0, 0).is_none(), "a has none");
    assert_eq!(loaded.config.latency.len(), 2);
}

#[test]
fn dns_server_errors_point_at_the_line() {
    // An unknown field: at its key.
    let e = error_with(
        "    responsesPerSecond: 100\n",
        "    responsesPerSecond: 100\n    burts: 5\n",
    );
    assert_at(&e, 8, 5, "DnsServer/s", "spec.rateLimit.burts");
    assert!(e.reason.contains("unknown field `burts`"), "{e}");
    // A bad value deep in a list: at the value.
    let e = error_with("192.168.0.0/16", "192.168.0.0/99");
    assert_at(&e, 8, 26, "DnsServer/s", "spec.rateLimit.exempt[1]");
    // A value out of range (config validation).
    let e = error_with("responsesPerSecond: 100", "responsesPerSecond: 0");
    assert_at(
        &e,
        7,
        25,
        "DnsServer/s",
        "spec.rateLimit.responsesPerSecond",
    );
    assert!(e.reason.contains("at least 1"), "{e}");
}

#[test]
fn zone_errors_point_at_the_line() {
    // An unknown field deep in a list, in flow style.
    let e = error_with(
        "{cluster: a, addresses: [192.0.2.1]}",
        "{cluster: a, colour: red, addresses: [192.0.2.1]}",
    );
    assert_at(&e, 24, 24, "Zone/z", "spec.gslb[0].targets[0].colour");
    // A bad value deep in a list.
    let e = error_with("\"2001:db8::2\"", "\"2001:db8::zz\"");
    assert_at(&e, 26, 34, "Zone/z", "spec.gslb[0].targets[1].addresses[1]");
    // An invalid origin (config validation).
    let e = error_with("origin: svc.example.", "origin: svc..example.");
    assert_at(&e, 14, 11, "Zone/z", "spec.origin");
    assert!(e.reason.contains("not a valid domain name"), "{e}");
    // Record data that does not parse (found when the zone is compiled).
    let e = error_with("data: [192.0.2.10]", "data: [192.0.2.300]");
    assert_at(&e, 18, 35, "Zone/z", "spec.records[0].data[0]");
    assert!(e.reason.contains("not an IPv4 address"), "{e}");
    // A GSLB name that clashes with a static name (compiling too).
    let e = error_with("    - name: app\n", "    - name: www\n");
    assert_at(&e, 21, 13, "Zone/z", "spec.gslb[0].name");
    assert!(e.reason.contains("already has records"), "{e}");
    // A CA file that cannot be read (found when the probe is set up).
    let e = error_with(
        "{protocol: tcp, port: 443}",
        "{protocol: https, port: 443, caFile: /nonexistent/ca.pem}",
    );
    assert_at(
        &e,
        27,
        61,
        "Zone/z",
        "spec.gslb[0].targets[1].healthCheck.caFile",
    );
    assert!(e.reason.contains("cannot read CA file"), "{e}");
}

#[test]
fn latency_map_errors_point_at_the_line() {
    // A negative RTT (config validation): the whole message.
    let e = error_with("{a: 40, b: 5}", "{a: 40, b: -5}");
    assert_eq!(
        e.to_string(),
        "t.yaml:36:25: LatencyMap/m: spec.entries[1].rttMs.b: \
         must be a non-negative number of milliseconds, found -5"
    );
    // A bad prefix.
    let e = error_with("198.51.100.0/24", "198.51.100.0/33");
    assert_at(&e, 34, 16, "LatencyMap/m", "spec.entries[0].prefix");
    // An unknown field in block style.
    let e = error_with("      rttMs: {a: 40", "      rttMS: {a: 40");
    assert_at(&e, 36, 7, "LatencyMap/m", "spec.entries[1].rttMS");
}
