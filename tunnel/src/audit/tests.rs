use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::*;
use crate::identity::Identity;
use causeway_model::ClusterId;
use std::fs;
use std::path::Path;
use std::time::Duration;

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

fn is_uuid_v4(s: &str) -> bool {
    let parts: Vec<_> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && &s[14..15] == "4"
        && matches!(&s[19..20], "8" | "9" | "a" | "b")
}

#[test]
fn audit_id_is_kept_generated_or_replaced() {
    let kept = [
        "abc-123",
        "5f0e0f0c-1b2a-4c3d-9e8f-0a1b2c3d4e5f",
        "a.b_c:d",
        &"x".repeat(128),
    ];
    for id in kept {
        assert_eq!(audit_id(&headers(&[("Audit-ID", id.as_bytes())])), id);
    }
    let long = "x".repeat(129);
    let replaced: [&[(&str, &[u8])]; 7] = [
        &[],
        &[("Audit-ID", b"")],
        &[("Audit-ID", b"has space")],
        &[("Audit-ID", b"semi;colon")],
        &[("Audit-ID", long.as_bytes())],
        &[("Audit-ID", b"caf\xc3\xa9")],
        &[("Audit-ID", b"one"), ("Audit-ID", b"two")],
    ];
    for h in replaced {
        let id = audit_id(&headers(h));
        assert!(is_uuid_v4(&id), "{h:?} -> {id}");
    }
    assert_ne!(new_audit_id(), new_audit_id());
}

#[test]
fn event_json_has_audit_k8s_io_v1_field_names() {
    let id = Identity::new(
        "alice",
        Some("u1".into()),
        vec!["dev".into()],
        Default::default(),
    )
    .unwrap();
    let cluster = ClusterId::new("idc-bj").unwrap();
    let ev = AuditEvent::new(
        "aid-1",
        &Method::POST,
        "/clusters/idc-bj/api/v1/namespaces/team-a/pods/p/exec?command=sh",
        "/api/v1/namespaces/team-a/pods/p/exec",
        Some("command=sh"),
    )
    .with_user(&id)
    .with_cluster(&cluster)
    .with_client(
        Some("127.0.0.1".parse().unwrap()),
        &headers(&[("User-Agent", b"kubectl/v1.36.3")]),
    )
    .at_stage(Stage::ResponseComplete, Some(StatusCode::OK));
    let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
    assert_eq!(v["kind"], "Event");
    assert_eq!(v["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(v["level"], "Metadata");
    assert_eq!(v["auditID"], "aid-1");
    assert_eq!(v["stage"], "ResponseComplete");
    assert_eq!(
        v["requestURI"],
        "/clusters/idc-bj/api/v1/namespaces/team-a/pods/p/exec?command=sh"
    );
    assert_eq!(v["verb"], "create");
    assert_eq!(v["user"]["username"], "alice");
    assert_eq!(v["user"]["uid"], "u1");
    assert_eq!(v["user"]["groups"], serde_json::json!(["dev"]));
    assert_eq!(v["sourceIPs"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(v["userAgent"], "kubectl/v1.36.3");
    assert_eq!(
        v["objectRef"],
        serde_json::json!({"resource":"pods","namespace":"team-a","name":"p","apiVersion":"v1","subresource":"exec"})
    );
    assert_eq!(v["responseStatus"]["code"], 200);
    assert_eq!(v["annotations"]["causeway.dev/cluster"], "idc-bj");
    for ts in ["requestReceivedTimestamp", "stageTimestamp"] {
        let s = v[ts].as_str().unwrap();
        // RFC 3339 with microseconds, UTC: 2026-11-25T18:00:00.123456Z
        assert_eq!(s.len(), 27, "{s}");
        assert!(
            s.ends_with('Z') && &s[10..11] == "T" && &s[19..20] == ".",
            "{s}"
        );
        humantime::parse_rfc3339(s).unwrap();
    }
    // Only known audit.k8s.io/v1 Event fields appear.
    let known = [
        "kind",
        "apiVersion",
        "level",
        "auditID",
        "stage",
        "requestURI",
        "verb",
        "user",
        "impersonatedUser",
        "sourceIPs",
        "userAgent",
        "objectRef",
        "responseStatus",
        "requestObject",
        "responseObject",
        "requestReceivedTimestamp",
        "stageTimestamp",
        "annotations",
    ];
    for k in v.as_object().unwrap().keys() {
        assert!(known.contains(&k.as_str()), "unknown field {k}");
    }
}

#[test]
fn non_resource_and_refused_requests() {
    let ev = AuditEvent::new("x", &Method::GET, "/clusters/a/version", "/version", None)
        .at_stage(Stage::ResponseComplete, Some(StatusCode::FORBIDDEN))
        .with_refusal("Forbidden", "no access");
    let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
    assert_eq!(v["verb"], "get");
    assert!(v.get("objectRef").is_none());
    assert_eq!(v["user"], serde_json::json!({}));
    assert_eq!(v["responseStatus"]["code"], 403);
    assert_eq!(v["responseStatus"]["reason"], "Forbidden");
    let ev = AuditEvent::new("x", &Method::GET, "/u", "/api/v1/pods", Some("watch=1"));
    assert_eq!(ev.verb, "watch");
    assert_eq!(ev.stage, Stage::RequestReceived);
    assert!(ev.response_status.is_none());
}

fn lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn log_rotates_by_size_and_keeps_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/audit.log");
    let ev = AuditEvent::new(
        "id",
        &Method::GET,
        "/clusters/a/api/v1/pods",
        "/api/v1/pods",
        None,
    );
    let line_len = ev.to_json().len() as u64 + 1;
    // Room for exactly three lines per file, keep two old files.
    let log = AuditLog::open(&path, 3 * line_len, 2).unwrap();
    for i in 0..10 {
        let mut e = ev.clone();
        e.audit_id = format!("i{i}"); // same length as "id"
        log.record(&e);
    }
    assert!(log.flush(Duration::from_secs(5)));
    let ids = read_ids;
    assert_eq!(ids(&path), ["i9"]);
    assert_eq!(ids(&dir.path().join("sub/audit.log.1")), ["i6", "i7", "i8"]);
    assert_eq!(ids(&dir.path().join("sub/audit.log.2")), ["i3", "i4", "i5"]);
    assert!(!dir.path().join("sub/audit.log.3").exists());
    assert_eq!(log.dropped(), 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Reopening appends and counts the existing size.
    drop(log);
    let log = AuditLog::open(&path, 3 * line_len, 2).unwrap();
    log.record(&ev);
    assert!(log.flush(Duration::from_secs(5)));
    assert_eq!(ids(&path), ["i9", "id"]);
}

#[test]
fn zero_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(AuditLog::open(&dir.path().join("a.log"), 0, 1).is_err());
}

fn read_ids(p: &Path) -> Vec<String> {
    lines(p)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["auditID"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn events_reach_the_file_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, 1 << 20, 1).unwrap();
    let mut ev = AuditEvent::new("a1", &Method::GET, "/x", "/x", None);
    log.record(&ev);
    ev.audit_id = "a2".into();
    log.record(&ev);
    // The writer gathers for WRITE_INTERVAL, then writes; allow a slow machine 100×.
    let deadline = std::time::Instant::now() + WRITE_INTERVAL * 100;
    while read_ids(&path).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(read_ids(&path), ["a1", "a2"]);
}

#[test]
fn dropping_the_log_writes_what_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, 1 << 20, 1).unwrap();
    let clone = log.clone();
    for i in 0..100 {
        let ev = AuditEvent::new(format!("e{i}"), &Method::GET, "/x", "/x", None);
        clone.record(&ev);
    }
    drop(clone);
    drop(log);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while read_ids(&path).len() < 100 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let ids = read_ids(&path);
    assert_eq!(ids.len(), 100);
    assert_eq!(ids[0], "e0");
    assert_eq!(ids[99], "e99");
}

#[test]
fn a_line_longer_than_the_file_limit_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let short = AuditEvent::new("s", &Method::GET, "/x", "/x", None);
    let line_len = short.to_json().len() as u64 + 1;
    let log = AuditLog::open(&path, line_len + 10, 2).unwrap();
    log.record(&short);
    let long = AuditEvent::new(
        "l",
        &Method::GET,
        format!("/{}", "y".repeat(500)),
        "/x",
        None,
    );
    log.record(&long);
    log.record(&short);
    assert!(log.flush(Duration::from_secs(5)));
    assert_eq!(read_ids(&path), ["s"]);
    assert_eq!(read_ids(&dir.path().join("audit.log.1")), ["l"]);
    assert_eq!(read_ids(&dir.path().join("audit.log.2")), ["s"]);
}
