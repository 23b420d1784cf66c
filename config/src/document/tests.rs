use std::path::Path;

use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ZoneSpec {
    origin: String,
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    cluster: String,
    weight: u32,
}

const GOOD: &str = "\
# a comment before everything
---
apiVersion: causeway.dev/v1alpha1
kind: Zone
metadata:
  name: z1
  labels: {team: dns}
spec:
  origin: svc.example
  targets:
    - cluster: a
      weight: 10
    - {cluster: b, weight: 20}
---
# only a comment
---
apiVersion: causeway.dev/v1alpha1
kind: Other
metadata: {name: o}
";

fn parse(text: &str) -> Result<Vec<Document>, ConfigError> {
    parse_str(Path::new("f.yaml"), text)
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(docs) => match docs[0].spec::<ZoneSpec>() {
            Ok(s) => panic!("expected an error, parsed {s:?}"),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

#[test]
fn reads_documents_and_skips_empty_ones() {
    let docs = parse(GOOD).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].object(), "Zone/z1");
    assert_eq!(docs[0].metadata.labels["team"], "dns");
    let spec: ZoneSpec = docs[0].spec().unwrap();
    assert_eq!(spec.origin, "svc.example");
    assert_eq!(spec.targets[1].cluster, "b");
    assert_eq!(spec.targets[1].weight, 20);
    assert_eq!(docs[1].kind, "Other");
    // Positions count the empty documents too.
    assert_eq!(
        docs[1].position("kind"),
        Some(Position {
            line: 18,
            column: 7
        })
    );
    assert_eq!(
        docs[0]
            .error("spec.targets[1].weight", "too big")
            .to_string(),
        "f.yaml:13:28: Zone/z1: spec.targets[1].weight: too big"
    );
}

#[test]
fn unknown_field_in_a_list_item_is_placed_at_its_key() {
    let text = GOOD.replace("      weight: 10", "      weihgt: 10");
    let e = err(&text);
    assert!(
        e.starts_with("f.yaml:12:7: Zone/z1: spec.targets[0].weihgt: unknown field `weihgt`"),
        "{e}"
    );
}

#[test]
fn bad_value_is_placed_at_the_value() {
    let text = GOOD.replace("weight: 20", "weight: -3");
    let e = err(&text);
    assert!(
        e.starts_with("f.yaml:13:28: Zone/z1: spec.targets[1].weight: invalid value"),
        "{e}"
    );
}

#[test]
fn missing_field_is_placed_at_its_parent() {
    let text = GOOD.replace("  origin: svc.example\n", "");
    let e = err(&text);
    assert!(
        e.starts_with("f.yaml:8:1: Zone/z1: spec: missing field `origin`"),
        "{e}"
    );
}

#[test]
fn envelope_errors() {
    let e = err(&GOOD.replace("causeway.dev/v1alpha1\nkind: Zone", "v1\nkind: Zone"));
    assert_eq!(
        e,
        "f.yaml:3:13: Zone/z1: apiVersion: must be \"causeway.dev/v1alpha1\", found \"v1\""
    );
    let e = err(&GOOD.replace("kind: Zone\n", "kind: Zone\nstatus: {}\n"));
    assert!(
        e.starts_with("f.yaml:5:1: Zone/z1: status: unknown field"),
        "{e}"
    );
    let e = err(&GOOD.replace("  labels: {team: dns}", "  lables: {team: dns}"));
    assert!(
        e.starts_with("f.yaml:7:3: Zone/z1: metadata.lables: unknown field `lables`"),
        "{e}"
    );
    let e = err(&GOOD.replace("  name: z1\n", ""));
    assert!(
        e.starts_with("f.yaml:5:1: metadata: missing field `name`"),
        "{e}"
    );
    // A pasted Kubernetes manifest hears about apiVersion first.
    let e = err("apiVersion: apps/v1\nkind: Deployment\nspec: {}\n");
    assert!(e.starts_with("f.yaml:1:13: apiVersion: must be"), "{e}");
    let e = err("apiVersion: causeway.dev/v1alpha1\nmetadata: {name: x}\n");
    assert!(e.starts_with("f.yaml:1:1: kind: missing"), "{e}");
    let docs = parse(GOOD).unwrap();
    assert_eq!(
        docs[1]
            .unknown_kind(&["Zone", "DnsServer", "LatencyMap"])
            .to_string(),
        "f.yaml:18:7: Other/o: kind: unknown kind \"Other\"; expected Zone, DnsServer or LatencyMap"
    );
}

#[test]
fn syntax_errors_carry_the_parser_position() {
    let e = parse("apiVersion: causeway.dev/v1alpha1\nkind: [unclosed\n").unwrap_err();
    assert!(e.position.is_some(), "{e}");
    assert!(e.to_string().starts_with("f.yaml:"), "{e}");
    assert!(!e.reason.contains(" at line "), "{e}");
}

#[test]
fn unreadable_file_names_the_file() {
    let e = read_file(Path::new("/nonexistent/x.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/x.yaml: cannot read:"),
        "{e}"
    );
}
