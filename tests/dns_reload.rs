//! Hot reload of the built binary: a bad file keeps the last good config serving and
//! logs file, line, field and reason; a good file applies, on file change and SIGHUP.

#[path = "support/dns.rs"]
mod dns_support;

use std::time::Duration;

use causeway_testbed::testing::wait_for;
use dns_support::*;
use hickory_proto::rr::RecordType;

fn zone(www: &str, watch: bool) -> String {
    format!(
        r#"apiVersion: causeway.dev/v1alpha1
kind: DnsServer
metadata: {{name: s}}
spec:
  watch: {watch}
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata: {{name: z}}
spec:
  origin: svc.example.
  soa: {{rname: hostmaster.svc.example.}}
  nameservers: [{{name: ns1, addresses: [127.0.0.53]}}]
  records:
    - {{name: www, type: A, data: [{www}]}}
"#
    )
}

fn www(s: &Server) -> Vec<String> {
    addrs(&s.udp("www.svc.example.", RecordType::A, true, None))
}

#[test]
fn bad_file_keeps_serving_then_good_file_applies_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "dns.yaml", &zone("192.0.2.10", true));
    let s = Server::start(&path);
    assert_eq!(www(&s), vec!["192.0.2.10"]);

    // An unknown field on line 15.
    let bad = zone("192.0.2.10", true).replace("    - {name: www", "    - {colour: red, name: www");
    std::fs::write(&path, bad).unwrap();
    assert!(
        s.wait_log("invalid configuration", Duration::from_secs(10)),
        "the bad file is reported:\n{}",
        s.logs()
    );
    let logs = s.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("invalid configuration"))
        .unwrap();
    assert!(
        line.contains(&path.display().to_string()),
        "names the file: {line}"
    );
    assert!(
        line.contains("line=15 column=8"),
        "names the line and column: {line}"
    );
    assert!(line.contains("colour"), "names the field: {line}");
    assert_eq!(
        www(&s),
        vec!["192.0.2.10"],
        "last good config still serving"
    );

    // A semantically bad file (bad address): same.
    std::fs::write(&path, zone("192.0.2.300", true)).unwrap();
    assert!(
        s.wait_log("records[0].data[0]", Duration::from_secs(10)),
        "{}",
        s.logs()
    );
    assert_eq!(www(&s), vec!["192.0.2.10"]);

    // A good file applies.
    std::fs::write(&path, zone("192.0.2.99", true)).unwrap();
    wait_for(
        "the good file applied",
        Duration::from_secs(10),
        POLL,
        || {
            let got = www(&s);
            if got == vec!["192.0.2.99"] {
                Ok(())
            } else {
                Err(format!("{got:?}\n{}", s.logs()))
            }
        },
    );
    let (_, m) = s.http("GET", "/metrics", "");
    assert!(
        m.contains(r#"causeway_dns_config_reloads_total{result="error"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"causeway_dns_config_reloads_total{result="ok"} 1"#),
        "{m}"
    );
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "dns.yaml", &zone("192.0.2.10", false));
    let s = Server::start(&path);
    std::fs::write(&path, zone("192.0.2.77", false)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        www(&s),
        vec!["192.0.2.10"],
        "no reload without SIGHUP when watch is off"
    );
    s.signal(libc::SIGHUP);
    wait_for(
        "the reload on SIGHUP",
        Duration::from_secs(10),
        POLL,
        || www(&s) == vec!["192.0.2.77"],
    );
    std::fs::write(&path, "apiVersion: v1\nkind: Zone\nmetadata: {name: z}\n").unwrap();
    s.signal(libc::SIGHUP);
    assert!(
        s.wait_log("apiVersion", Duration::from_secs(10)),
        "{}",
        s.logs()
    );
    assert_eq!(www(&s), vec!["192.0.2.77"]);
    assert!(s.alive());
}

#[test]
fn invalid_file_at_start_fails_with_file_line_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = zone("192.0.2.10", true).replace(
        "  origin: svc.example.\n",
        "  origin: svc.example.\n  ttl: -5\n",
    );
    let path = write_config(dir.path(), "bad.yaml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["dns", "--validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:12:8: Zone/z: spec.ttl: invalid value"),
        "file, line, column, object, field: {err}"
    );
    // Every shipped example passes --validate, and --check (its old name) still works.
    for flag in ["--validate", "--check"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["dns", flag, "--config"])
            .arg(example_config())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
