//! Loading a part's configuration from a [`Snapshot`] of custom resources, keeping the
//! last good version of every object that stops loading.
//!
//! A part's loader reads the documents of the part's own file (its `DnsServer` or
//! `Scheduler` document: listen addresses, intervals) followed by the hub's objects. When
//! the loader refuses an object (its error names the object's `hub:` source), that
//! object's last good version is put back (or, if it never loaded, it is left out) and
//! the rest is loaded again, so one bad `kubectl apply` never stops the others from
//! taking effect and never takes down what was running. Each object gets a verdict, to
//! write as its `status` ([`Hub::write_verdicts`]).

use std::collections::BTreeMap;

use causeway_config::{ConfigError, Document};
use tracing::{info, warn};

use crate::hub::Hub;
use crate::kind::Kind;
use crate::status;
use crate::watch::{HubObject, Snapshot, object_of};

/// What became of one object in a load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The generation judged.
    pub generation: Option<i64>,
    /// `Ok` if this generation is in use; else the loader's error (the last good
    /// generation, if any, is still in use).
    pub result: Result<(), String>,
}

/// A load of a snapshot.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The configuration, unless the part's own file is what failed (then the error).
    pub config: Result<T, ConfigError>,
    /// One verdict per object of the snapshot.
    pub verdicts: Vec<Verdict>,
}

/// Remembers the last good version of each object between loads.
#[derive(Debug, Default)]
pub struct LastGood {
    objects: BTreeMap<(Kind, String), HubObject>,
}

impl LastGood {
    /// Loads `base` (the part's file documents) + the objects of `snapshot` with `load`,
    /// putting back the last good version of each object the loader refuses (at most
    /// one retry per object).
    pub fn load<T>(
        &mut self,
        base: &[Document],
        snapshot: &Snapshot,
        load: impl Fn(&[Document]) -> Result<T, ConfigError>,
    ) -> Loaded<T> {
        let mut candidate: BTreeMap<(Kind, String), HubObject> = snapshot
            .objects
            .iter()
            .map(|o| ((o.kind, o.name.clone()), o.clone()))
            .collect();
        let mut refused: BTreeMap<(Kind, String), String> = BTreeMap::new();
        let config = loop {
            let mut docs = base.to_vec();
            let mut failed = None;
            for o in candidate.values() {
                match o.to_document() {
                    Ok(d) => docs.push(d),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let result = match failed {
                Some(e) => Err(e),
                None => load(&docs),
            };
            let e = match result {
                Ok(t) => break Ok(t),
                Err(e) => e,
            };
            let Some(key) = object_of(&e.file) else {
                // The part's own file (or something not an object): nothing to put back.
                break Err(e);
            };
            if refused.contains_key(&key) || !candidate.contains_key(&key) {
                // Its last good version fails too (a change elsewhere broke it): drop it.
                if candidate.remove(&key).is_none() {
                    break Err(e);
                }
                refused.entry(key).or_insert_with(|| e.to_string());
                continue;
            }
            refused.insert(key.clone(), e.to_string());
            match self.objects.get(&key) {
                Some(good) if Some(good) != candidate.get(&key) => {
                    warn!(object = %format!("{}/{}", key.0, key.1), error = %e, "keeping its last good version");
                    candidate.insert(key, good.clone());
                }
                _ => {
                    warn!(object = %format!("{}/{}", key.0, key.1), error = %e, "left out: it never loaded");
                    candidate.remove(&key);
                }
            }
        };
        let verdicts = snapshot
            .objects
            .iter()
            .map(|o| {
                let key = (o.kind, o.name.clone());
                let result = match (&config, refused.get(&key)) {
                    (_, Some(why)) => Err(why.clone()),
                    (Ok(_), None) => Ok(()),
                    (Err(e), None) => Err(format!("not loaded: {e}")),
                };
                Verdict {
                    kind: o.kind,
                    name: o.name.clone(),
                    generation: o.generation,
                    result,
                }
            })
            .collect();
        if config.is_ok() {
            for (key, o) in candidate {
                if !refused.contains_key(&key) {
                    self.objects.insert(key, o);
                }
            }
            self.objects
                .retain(|k, _| snapshot.get(k.0, &k.1).is_some());
        }
        Loaded { config, verdicts }
    }
}

impl Hub {
    /// Writes each verdict as its object's `status` ([`status::accepted`] /
    /// [`status::rejected`]), skipping objects whose status already says the same about
    /// the same generation. Errors are logged, not returned (the next change writes again).
    pub async fn write_verdicts(&self, snapshot: &Snapshot, verdicts: &[Verdict]) -> usize {
        let mut written = 0;
        for v in verdicts {
            let current = snapshot
                .get(v.kind, &v.name)
                .and_then(|o| o.status.as_ref());
            if current.is_some_and(|s| says(s, v)) {
                continue;
            }
            let body = match &v.result {
                Ok(()) => status::accepted(v.generation),
                Err(why) => status::rejected(v.generation, why),
            };
            match self.write_status(v.kind, &v.name, body).await {
                Ok(()) => {
                    written += 1;
                    match &v.result {
                        Ok(()) => info!(object = %format!("{}/{}", v.kind, v.name), "accepted"),
                        Err(why) => {
                            warn!(object = %format!("{}/{}", v.kind, v.name), error = %why, "rejected")
                        }
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => warn!(error = %e, "cannot write status"),
            }
        }
        written
    }
}

/// Whether `status` already holds verdict `v`.
fn says(status: &serde_json::Value, v: &Verdict) -> bool {
    let c = &status["conditions"][0];
    let want = if v.result.is_ok() { "True" } else { "False" };
    status["observedGeneration"].as_i64() == v.generation
        && c["type"] == "Accepted"
        && c["status"] == want
        && match &v.result {
            Ok(()) => true,
            Err(why) => c["message"].as_str() == Some(why.as_str()),
        }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    fn obj(name: &str, generation: i64, value: i64) -> HubObject {
        HubObject {
            kind: Kind::LatencyMap,
            name: name.into(),
            generation: Some(generation),
            resource_version: None,
            source: PathBuf::from(format!("hub:ns/latencymaps/{name}")),
            document: json!({
                "apiVersion": "causeway.dev/v1alpha1", "kind": "LatencyMap",
                "metadata": {"name": name}, "spec": {"value": value},
            }),
            status: None,
        }
    }

    /// A loader that refuses negative values and returns the sum.
    fn sum(docs: &[Document]) -> Result<i64, ConfigError> {
        let mut total = 0;
        for d in docs {
            #[derive(serde::Deserialize)]
            struct S {
                value: i64,
            }
            let s: S = d.spec()?;
            if s.value < 0 {
                return Err(d.error("spec.value", "must not be negative"));
            }
            total += s.value;
        }
        Ok(total)
    }

    fn snap(objects: Vec<HubObject>) -> Snapshot {
        Snapshot { objects }
    }

    #[test]
    fn a_bad_change_keeps_the_last_good_version_and_the_others_apply() {
        let mut lg = LastGood::default();
        let first = lg.load(&[], &snap(vec![obj("a", 1, 1), obj("b", 1, 10)]), sum);
        assert_eq!(first.config.unwrap(), 11);
        assert!(first.verdicts.iter().all(|v| v.result.is_ok()));

        // a breaks, b changes: b's change applies, a stays at 1.
        let second = lg.load(&[], &snap(vec![obj("a", 2, -5), obj("b", 2, 20)]), sum);
        assert_eq!(second.config.unwrap(), 21);
        let a = &second.verdicts[0];
        assert_eq!((a.name.as_str(), a.generation), ("a", Some(2)));
        let why = a.result.clone().unwrap_err();
        assert!(
            why.contains("hub:ns/latencymaps/a") && why.contains("must not be negative"),
            "{why}"
        );
        assert!(second.verdicts[1].result.is_ok());

        // A new object that never loaded is left out.
        let third = lg.load(
            &[],
            &snap(vec![obj("a", 2, -5), obj("b", 2, 20), obj("c", 1, -1)]),
            sum,
        );
        assert_eq!(third.config.unwrap(), 21);
        assert!(third.verdicts[2].result.is_err());

        // Fixed: in use again.
        let fourth = lg.load(&[], &snap(vec![obj("a", 3, 3), obj("b", 2, 20)]), sum);
        assert_eq!(fourth.config.unwrap(), 23);
        assert!(fourth.verdicts.iter().all(|v| v.result.is_ok()));
    }

    #[test]
    fn statuses_already_written_are_not_written_again() {
        let v = Verdict {
            kind: Kind::Zone,
            name: "z".into(),
            generation: Some(4),
            result: Err("bad".into()),
        };
        assert!(says(&status::rejected(Some(4), "bad"), &v));
        assert!(!says(&status::rejected(Some(3), "bad"), &v));
        assert!(!says(&status::accepted(Some(4)), &v));
        assert!(!says(&status::rejected(Some(4), "other"), &v));
    }
}
