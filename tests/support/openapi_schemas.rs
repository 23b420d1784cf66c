//! JSON schemas for kubeconform from a kube-apiserver's own OpenAPI v3 documents
//! (`GET /openapi/v3/apis/GROUP/VERSION`, custom resources included), in the layout
//! kubeconform's `-schema-location DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json` reads, as
//! openapi2jsonschema writes it:
//!
//! - a file per kind and API version, `deployment-apps-v1.json`, `service-v1.json`,
//!   `burstpolicy-causeway-v1alpha1.json` (kind lower case, the group's first label);
//! - each file standalone: the kind's schema with every schema it reaches under
//!   `definitions`, its `#/components/schemas/…` references rewritten to point there;
//! - strict: `additionalProperties: false` on every object schema with `properties` that
//!   says nothing of additional properties and does not preserve unknown fields;
//! - OpenAPI's `nullable: true` becomes a `null` type, `x-kubernetes-int-or-string` a string
//!   or an integer (Quantity and IntOrString already are `oneOf`s in v3);
//! - descriptions left out (they do not validate; they are most of a Pod's schema).
//!
//! v3 rather than v2: the API server's v2 document drops the schema of every nullable field
//! of a CRD (an `Option` in the Rust types), so unknown fields below one would go unseen.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value, json};

const REF_V3: &str = "#/components/schemas/";
const REF_OUT: &str = "#/definitions/";

/// The schemas of several OpenAPI v3 documents in one map, strict (module doc), their
/// references rewritten to `#/definitions/NAME`. A name in several documents (ObjectMeta)
/// is the same schema in each; the first is kept.
pub fn merge_v3(docs: &[Value]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for doc in docs {
        let schemas = doc["components"]["schemas"]
            .as_object()
            .ok_or("no components.schemas: not an OpenAPI v3 document")?;
        for (name, schema) in schemas {
            if !out.contains_key(name) {
                out.insert(name.clone(), strict_schema(schema));
            }
        }
    }
    Ok(out)
}

/// Writes a schema file per kind of `defs` into `dir`; returns the file names.
pub fn write_schemas(defs: &Map<String, Value>, dir: &Path) -> Result<BTreeSet<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = BTreeSet::new();
    for (name, schema) in defs {
        let Some(gvks) = schema["x-kubernetes-group-version-kind"].as_array() else {
            continue;
        };
        for gvk in gvks {
            let (Some(group), Some(version), Some(kind)) = (
                gvk["group"].as_str(),
                gvk["version"].as_str(),
                gvk["kind"].as_str(),
            ) else {
                return Err(format!("{name}: a group-version-kind without its fields"));
            };
            let file = file_name(group, version, kind);
            if !written.insert(file.clone()) {
                return Err(format!("{file}: two schemas"));
            }
            let mut doc = schema.clone();
            doc["definitions"] = Value::Object(reachable(name, defs));
            let text = serde_json::to_string(&doc).map_err(|e| format!("{file}: {e}"))?;
            std::fs::write(dir.join(&file), text).map_err(|e| format!("{file}: {e}"))?;
        }
    }
    Ok(written)
}

/// kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json` of a group, version and kind.
pub fn file_name(group: &str, version: &str, kind: &str) -> String {
    let kind = kind.to_lowercase();
    match group.split('.').next().filter(|g| !g.is_empty()) {
        Some(g) => format!(
            "{kind}-{}-{}.json",
            g.to_lowercase(),
            version.to_lowercase()
        ),
        None => format!("{kind}-{}.json", version.to_lowercase()),
    }
}

/// The definitions `root` reaches through `$ref`s, itself included.
fn reachable(root: &str, defs: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut todo = vec![root.to_owned()];
    while let Some(name) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let Some(schema) = defs.get(&name) else {
            continue; // a dangling $ref: kubeconform reports it when it is used
        };
        refs(schema, &mut todo);
        out.insert(name, schema.clone());
    }
    out
}

/// Every `#/definitions/NAME` under `v`, as NAME, pushed onto `out`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(name) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(REF_OUT))
            {
                out.push(name.to_owned());
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// `schema` with the rules of the module doc, at every depth.
fn strict_schema(schema: &Value) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let flag = |k: &str| m.get(k) == Some(&Value::Bool(true));
    let mut out = Map::new();
    for (k, v) in m {
        let v = match (k.as_str(), v) {
            ("description" | "nullable", _) => continue,
            ("$ref", Value::String(r)) => match r.strip_prefix(REF_V3) {
                Some(name) => Value::String(format!("{REF_OUT}{name}")),
                None => v.clone(),
            },
            // Maps of schemas.
            ("properties" | "patternProperties", Value::Object(props)) => Value::Object(
                props
                    .iter()
                    .map(|(p, s)| (p.clone(), strict_schema(s)))
                    .collect(),
            ),
            // A schema, or a list of them.
            ("items" | "additionalProperties" | "not", _) => strict_schema(v),
            ("allOf" | "anyOf" | "oneOf", Value::Array(a)) => {
                Value::Array(a.iter().map(strict_schema).collect())
            }
            ("type", Value::String(t)) if flag("nullable") => json!([t, "null"]),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if flag("x-kubernetes-int-or-string") && !m.contains_key("oneOf") && !m.contains_key("anyOf") {
        out.remove("type");
        out.insert(
            "oneOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if m.contains_key("properties")
        && !m.contains_key("additionalProperties")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_strictness_nullable_and_int_or_string() {
        assert_eq!(file_name("", "v1", "Service"), "service-v1.json");
        assert_eq!(
            file_name("apps", "v1", "Deployment"),
            "deployment-apps-v1.json"
        );
        assert_eq!(
            file_name("causeway.dev", "v1alpha1", "BurstPolicy"),
            "burstpolicy-causeway-v1alpha1.json"
        );
        let s = strict_schema(&json!({
            "type": "object",
            "description": "left out",
            "properties": {
                "a": {"x-kubernetes-int-or-string": true},
                "b": {"type": "object", "properties": {"c": {"type": "string"}},
                      "x-kubernetes-preserve-unknown-fields": true},
                "m": {"type": "object", "additionalProperties": {"type": "string"}},
                "n": {"type": "object", "nullable": true, "properties": {"d": {"type": "string"}}},
                "r": {"allOf": [{"$ref": "#/components/schemas/x.Y"}]},
            },
        }));
        assert_eq!(s["additionalProperties"], false);
        assert!(s["description"].is_null());
        let p = &s["properties"];
        assert_eq!(p["a"]["oneOf"][0]["type"], "integer");
        assert!(p["b"]["additionalProperties"].is_null());
        assert_eq!(p["m"]["additionalProperties"]["type"], "string");
        assert_eq!(p["n"]["type"], json!(["object", "null"]));
        assert_eq!(p["n"]["additionalProperties"], false);
        assert_eq!(p["r"]["allOf"][0]["$ref"], "#/definitions/x.Y");
    }
}
