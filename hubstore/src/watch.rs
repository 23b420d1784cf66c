//! Watching custom resources: the full set of a part's objects after every change, as
//! the documents its file loader reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use causeway_config::{ConfigError, Document};
use futures::{FutureExt, StreamExt, stream};
use kube::api::DynamicObject;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hub::{Hub, source_path};
use crate::kind::{GROUP, Kind, VERSION};

/// One custom resource, reduced to what the loaders read.
#[derive(Clone, Debug, PartialEq)]
pub struct HubObject {
    /// Its kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.generation` (status reports which one it is about).
    pub generation: Option<i64>,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `hub:<namespace>/<plural>/<name>`: the "file" its document names in errors.
    pub source: PathBuf,
    /// `apiVersion`, `kind`, `metadata` (name, namespace, labels, annotations) and `spec`.
    pub document: Value,
    /// `status`, as last written.
    pub status: Option<Value>,
}

impl HubObject {
    fn from_dynamic(namespace: &str, kind: Kind, o: DynamicObject) -> Option<Self> {
        let name = o.metadata.name?;
        let mut meta = json!({ "name": name, "namespace": namespace });
        if let Some(l) = o.metadata.labels.filter(|l| !l.is_empty()) {
            meta["labels"] = json!(l);
        }
        if let Some(a) = o.metadata.annotations.filter(|a| !a.is_empty()) {
            // kubectl's bookkeeping is not part of the document.
            let a: BTreeMap<_, _> = a
                .into_iter()
                .filter(|(k, _)| k != "kubectl.kubernetes.io/last-applied-configuration")
                .collect();
            if !a.is_empty() {
                meta["annotations"] = json!(a);
            }
        }
        let mut document = json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": kind.as_str(),
            "metadata": meta,
        });
        if let Some(spec) = o.data.get("spec") {
            document["spec"] = spec.clone();
        }
        Some(Self {
            kind,
            source: source_path(namespace, kind, &name),
            name,
            generation: o.metadata.generation,
            resource_version: o.metadata.resource_version,
            document,
            status: o.data.get("status").cloned(),
        })
    }

    /// The object as a document of the config envelope, as its loader reads files:
    /// errors name [`Self::source`] and the field (`line:column` of its pretty JSON).
    pub fn to_document(&self) -> Result<Document, ConfigError> {
        let text = serde_json::to_string_pretty(&self.document)
            .map_err(|e| ConfigError::file(&self.source, e))?;
        causeway_config::parse_str(&self.source, &text)?
            .into_iter()
            .next()
            .ok_or_else(|| ConfigError::file(&self.source, "empty object"))
    }

    /// `Kind/name`.
    pub fn object(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// The objects of the watched kinds, sorted by kind and name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Every object.
    pub objects: Vec<HubObject>,
}

impl Snapshot {
    /// The objects of `kind`.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &HubObject> {
        self.objects.iter().filter(move |o| o.kind == kind)
    }

    /// The object `kind/name`.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&HubObject> {
        self.objects
            .iter()
            .find(|o| o.kind == kind && o.name == name)
    }

    /// Every object as a document (the first that cannot be read is the error).
    pub fn documents(&self) -> Result<Vec<Document>, ConfigError> {
        self.objects.iter().map(HubObject::to_document).collect()
    }

    /// Whether the specs (not the status) differ from `other`'s.
    pub fn specs_differ(&self, other: &Snapshot) -> bool {
        self.objects.len() != other.objects.len()
            || self
                .objects
                .iter()
                .zip(&other.objects)
                .any(|(a, b)| a.kind != b.kind || a.name != b.name || a.document != b.document)
    }
}

/// The object a `hub:` source names (a [`ConfigError`]'s file), if it is one.
pub fn object_of(source: &Path) -> Option<(Kind, String)> {
    let s = source.to_str()?.strip_prefix("hub:")?;
    let mut parts = s.splitn(3, '/');
    let (_ns, plural, name) = (parts.next()?, parts.next()?, parts.next()?);
    Some((Kind::from_plural(plural)?, name.to_string()))
}

/// How long changes are gathered before a snapshot is sent (a `kubectl apply` of many
/// objects becomes one reload).
const SETTLE: Duration = Duration::from_millis(200);

impl Hub {
    /// Watches `kinds` in the namespace until `shutdown`. The receiver holds `None` until
    /// every kind is listed once, then the whole set after each change. A kind that
    /// cannot be watched (its CRD not installed, no RBAC) is logged and retried with
    /// backoff; the others still hold back until it lists, so a part never loads half its
    /// configuration.
    pub fn watch(
        &self,
        kinds: &[Kind],
        shutdown: CancellationToken,
    ) -> watch::Receiver<Option<Arc<Snapshot>>> {
        let (tx, rx) = watch::channel(None);
        let streams = kinds.iter().map(|&kind| {
            watcher(self.api(kind), watcher::Config::default())
                .default_backoff()
                .map(move |e| (kind, e))
                .boxed()
        });
        let mut events = stream::select_all(streams);
        let namespace = self.namespace().to_string();
        let kinds: BTreeSet<Kind> = kinds.iter().copied().collect();
        tokio::spawn(async move {
            let mut live: BTreeMap<(Kind, String), HubObject> = BTreeMap::new();
            // Objects of a kind being (re)listed, replacing its live ones at InitDone.
            let mut listing: BTreeMap<Kind, Vec<HubObject>> = BTreeMap::new();
            let mut listed: BTreeSet<Kind> = BTreeSet::new();
            let mut failing: BTreeSet<Kind> = BTreeSet::new();
            loop {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    e = events.next() => e,
                };
                let Some(first) = first else { return };
                let mut batch = vec![first];
                let settle = tokio::time::sleep(SETTLE);
                tokio::pin!(settle);
                loop {
                    tokio::select! {
                        _ = &mut settle => break,
                        e = events.next() => match e {
                            Some(e) => batch.push(e),
                            None => break,
                        },
                    }
                }
                // Anything else already queued.
                while let Some(Some(e)) = events.next().now_or_never() {
                    batch.push(e);
                }
                for (kind, event) in batch {
                    let event = match event {
                        Ok(e) => {
                            if failing.remove(&kind) {
                                info!(%kind, "hub watch recovered");
                            }
                            e
                        }
                        Err(e) => {
                            if failing.insert(kind) {
                                warn!(%kind, error = %e, "hub watch failing (is the CRD installed and the RBAC given?); retrying");
                            }
                            continue;
                        }
                    };
                    let convert = |o| HubObject::from_dynamic(&namespace, kind, o);
                    match event {
                        watcher::Event::Init => {
                            listing.insert(kind, Vec::new());
                        }
                        watcher::Event::InitApply(o) => {
                            if let Some(o) = convert(o) {
                                listing.entry(kind).or_default().push(o);
                            }
                        }
                        watcher::Event::InitDone => {
                            live.retain(|(k, _), _| *k != kind);
                            for o in listing.remove(&kind).unwrap_or_default() {
                                live.insert((kind, o.name.clone()), o);
                            }
                            listed.insert(kind);
                        }
                        watcher::Event::Apply(o) => {
                            if let Some(o) = convert(o) {
                                live.insert((kind, o.name.clone()), o);
                            }
                        }
                        watcher::Event::Delete(o) => {
                            if let Some(name) = o.metadata.name {
                                live.remove(&(kind, name));
                            }
                        }
                    }
                }
                if listed != kinds {
                    continue;
                }
                let snapshot = Snapshot {
                    objects: live.values().cloned().collect(),
                };
                let changed = tx.borrow().as_deref() != Some(&snapshot);
                if changed && tx.send(Some(Arc::new(snapshot))).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_map_back_to_objects() {
        let p = source_path("causeway-system", Kind::BurstPolicy, "web");
        assert_eq!(p, PathBuf::from("hub:causeway-system/burstpolicies/web"));
        assert_eq!(object_of(&p), Some((Kind::BurstPolicy, "web".into())));
        assert_eq!(object_of(Path::new("/etc/causeway/dns.yaml")), None);
        assert_eq!(object_of(Path::new("hub:ns/pods/x")), None);
    }

    #[test]
    fn objects_become_envelope_documents() {
        let o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "causeway.dev/v1alpha1",
            "kind": "BurstPolicy",
            "metadata": {
                "name": "web", "namespace": "causeway-system", "generation": 2,
                "resourceVersion": "17", "uid": "u", "managedFields": [],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            },
            "spec": {"home": "idc-bj", "replicas": "x"},
            "status": {"observedGeneration": 1},
        }))
        .unwrap();
        let h = HubObject::from_dynamic("causeway-system", Kind::BurstPolicy, o).unwrap();
        assert_eq!(h.generation, Some(2));
        assert_eq!(h.object(), "BurstPolicy/web");
        let doc = h.to_document().unwrap();
        assert_eq!(doc.kind, "BurstPolicy");
        assert_eq!(doc.name(), "web");
        assert_eq!(
            doc.file(),
            Path::new("hub:causeway-system/burstpolicies/web")
        );
        let e = doc.error("spec.replicas", "must be a number");
        let text = e.to_string();
        assert!(
            text.starts_with("hub:causeway-system/burstpolicies/web:"),
            "{text}"
        );
        assert!(text.contains("spec.replicas"), "{text}");
    }
}
