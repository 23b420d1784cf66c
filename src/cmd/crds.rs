//! `causeway crds`: the CustomResourceDefinitions of Causeway's kinds, generated from the
//! Rust spec types the loaders read (`#[derive(JsonSchema)]` on them), so a document that
//! loads from a file and the same document applied as a custom resource are checked by one
//! definition.
//!
//! Group `causeway.dev`, version `v1alpha1`, namespaced, with a `status` subresource (written
//! in production mode) and the category `causeway` (`kubectl get causeway`).
//! The schemas are structural (kube's `StructuralSchemaRewriter`): `deny_unknown_fields`
//! becomes pruning, which `kubectl apply` (strict field validation) turns into an error on an
//! unknown field, as the loaders do.

use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde_json::{Value, json};

/// The API group of every Causeway kind.
pub const GROUP: &str = "causeway.dev";
/// Their version.
pub const VERSION: &str = "v1alpha1";

/// Options of `causeway crds`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  causeway crds | kubectl apply --server-side -f -\n  causeway crds --out charts/causeway-hub/crds/"
)]
pub struct Args {
    /// Write one file per CRD (`<plural>.causeway.dev.yaml`) into this directory instead of
    /// printing them all as one YAML stream.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `spec` of an `AccessPolicy` (`causeway_tunnel::authz`'s loader keeps its own `Spec`
/// private; this is the same shape: `rules`, each rule the loader's own type).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only its schema is used
struct AccessPolicySpec {
    /// Who may reach which clusters; default deny.
    #[serde(default)]
    rules: Vec<causeway_tunnel::authz::Rule>,
}

/// A printer column: name, JSON path, type.
type Column = (&'static str, &'static str, &'static str);

/// One kind: names, what it is, its spec schema and printer columns.
struct Kind {
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    description: &'static str,
    spec: Value,
    columns: &'static [Column],
}

/// Every kind, in file order.
fn kinds() -> Vec<Kind> {
    const WORKLOAD: Column = ("Deployment", ".spec.workload.deployment", "string");
    const DNS: Column = ("DNS", ".spec.dns.name", "string");
    vec![
        Kind {
            kind: "BurstPolicy",
            plural: "burstpolicies",
            short_names: &["bp"],
            description: "Fill the home (IDC) clusters first and burst the overflow to public clusters (docs/scheduler.md).",
            spec: spec_schema::<causeway_scheduler::policy::BurstSpec>(),
            columns: &[WORKLOAD, ("Home", ".spec.home", "string"), DNS],
        },
        Kind {
            kind: "SpreadPolicy",
            plural: "spreadpolicies",
            short_names: &["sp"],
            description: "Spread an active-active workload over clusters by weight or free capacity (docs/scheduler.md).",
            spec: spec_schema::<causeway_scheduler::policy::SpreadSpec>(),
            columns: &[
                WORKLOAD,
                ("Replicas", ".spec.replicas", "integer"),
                ("By", ".spec.by", "string"),
                DNS,
            ],
        },
        Kind {
            kind: "FailoverPolicy",
            plural: "failoverpolicies",
            short_names: &["fp"],
            description: "One primary cluster for a single-writer workload; fence it before a backup is promoted (docs/scheduler.md).",
            spec: spec_schema::<causeway_scheduler::policy::FailoverSpec>(),
            columns: &[
                WORKLOAD,
                ("Primary", ".spec.primary", "string"),
                ("Backups", ".spec.backups", "string"),
                DNS,
            ],
        },
        Kind {
            kind: "Zone",
            plural: "zones",
            short_names: &[],
            description: "A DNS zone served by causeway dns: SOA, name servers, static records and GSLB names (docs/dns.md).",
            spec: spec_schema::<causeway_dns::config::ZoneSpec>(),
            columns: &[
                ("Origin", ".spec.origin", "string"),
                ("TTL", ".spec.ttl", "integer"),
            ],
        },
        Kind {
            kind: "LatencyMap",
            plural: "latencymaps",
            short_names: &[],
            description: "Static round-trip times from client networks to clusters, for latency GSLB names (docs/dns.md).",
            spec: spec_schema::<causeway_dns::config::LatencyMapSpec>(),
            columns: &[],
        },
        Kind {
            kind: "Placement",
            plural: "placements",
            short_names: &[],
            description: "Which clusters serve a GSLB name, with weights, roles, health and addresses: written by the scheduler's leader, applied by every dns replica (docs/dns.md).",
            spec: spec_schema::<causeway_model::Placement>(),
            columns: &[
                ("Service", ".spec.service", "string"),
                ("Targets", ".spec.targets[*].cluster", "string"),
            ],
        },
        Kind {
            kind: "AccessPolicy",
            plural: "accesspolicies",
            short_names: &[],
            description: "Who may reach which clusters through the stub, optionally read-only; default deny (docs/tunnel-security.md).",
            spec: spec_schema::<AccessPolicySpec>(),
            columns: &[],
        },
    ]
}

/// The structural schema of a spec type, as kube's `#[derive(CustomResource)]` makes it:
/// OpenAPI v3, subschemas inlined, `Option` as `nullable`.
fn spec_schema<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(root) = schema.as_object_mut() {
        // The Rust type's name means nothing to a Kubernetes user.
        root.remove("title");
    }
    tidy(&mut schema);
    schema
}

/// What the structural rules forbid and kube's rewriter leaves: `additionalProperties:
/// false` on an object without properties (unknown fields are pruned, and refused by strict
/// field validation, anyway) and `default: null` (a `None` default is no default).
fn tidy(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            map.values_mut().for_each(tidy);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

/// The CustomResourceDefinition of one kind.
fn crd(k: &Kind) -> anyhow::Result<CustomResourceDefinition> {
    let root = json!({
        "description": k.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": k.spec,
            "status": {
                "description": "Written by Causeway in production mode: an Accepted condition for the generation read, and what the part adds (dns: health of GSLB names).",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
            },
        },
    });
    let schema: JSONSchemaProps = serde_json::from_value(root)
        .with_context(|| format!("{}: the generated schema is not a JSONSchemaProps", k.kind))?;
    let mut columns: Vec<CustomResourceColumnDefinition> = k
        .columns
        .iter()
        .map(|&(name, path, ty)| CustomResourceColumnDefinition {
            name: name.into(),
            json_path: path.into(),
            type_: ty.into(),
            ..Default::default()
        })
        .collect();
    columns.push(CustomResourceColumnDefinition {
        name: "Age".into(),
        json_path: ".metadata.creationTimestamp".into(),
        type_: "date".into(),
        ..Default::default()
    });
    Ok(CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{}.{GROUP}", k.plural)),
            labels: Some(
                [(
                    "app.kubernetes.io/part-of".to_owned(),
                    "causeway".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: GROUP.into(),
            names: CustomResourceDefinitionNames {
                kind: k.kind.into(),
                list_kind: Some(format!("{}List", k.kind)),
                plural: k.plural.into(),
                singular: Some(k.kind.to_ascii_lowercase()),
                short_names: (!k.short_names.is_empty())
                    .then(|| k.short_names.iter().map(|s| (*s).to_owned()).collect()),
                categories: Some(vec!["causeway".into()]),
            },
            scope: "Namespaced".into(),
            versions: vec![CustomResourceDefinitionVersion {
                name: VERSION.into(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(schema),
                }),
                subresources: Some(CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(json!({}))),
                    scale: None,
                }),
                additional_printer_columns: Some(columns),
                ..Default::default()
            }],
            ..Default::default()
        },
        status: None,
    })
}

/// Every CRD as YAML: (file name, document).
fn render() -> anyhow::Result<Vec<(String, String)>> {
    kinds()
        .iter()
        .map(|k| {
            let yaml = serde_yaml_ng::to_string(&crd(k)?)
                .with_context(|| format!("{}: cannot write the CRD as YAML", k.kind))?;
            let text = format!(
                "# Generated by `causeway crds` from the Rust spec types; do not edit.\n{yaml}"
            );
            Ok((format!("{}.{GROUP}.yaml", k.plural), text))
        })
        .collect()
}

/// Runs `causeway crds`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let files = render()?;
    match args.out {
        Some(dir) => write_all(&dir, &files),
        None => {
            let docs: Vec<&str> = files.iter().map(|(_, text)| text.as_str()).collect();
            print!("{}", docs.join("---\n"));
            Ok(())
        }
    }
}

fn write_all(dir: &Path, files: &[(String, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
