//! The `status` Causeway writes on its objects: an `Accepted` condition (did the object
//! load?) with the generation it is about, plus whatever the part adds (the scheduler's
//! decision, dns's health).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// `status` of an object that loaded: `Accepted=True` for `generation`.
pub fn accepted(generation: Option<i64>) -> Value {
    condition(generation, true, "Loaded", "loaded and in use")
}

/// `status` of an object that did not load: `Accepted=False` with `error` (the loader's
/// `object: field: reason`); the part keeps its last good version.
pub fn rejected(generation: Option<i64>, error: &str) -> Value {
    condition(generation, false, "Invalid", error)
}

fn condition(generation: Option<i64>, ok: bool, reason: &str, message: &str) -> Value {
    json!({
        "observedGeneration": generation,
        "conditions": [{
            "type": "Accepted",
            "status": if ok { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "lastTransitionTime": rfc3339(SystemTime::now()),
            "observedGeneration": generation,
        }],
    })
}

/// `t` as RFC 3339 UTC, whole seconds (`2026-11-27T21:30:00Z`), as Kubernetes writes times.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs)
        .ok()
        .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
        .map(|ts| ts.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_815_000)),
            "2026-11-27T21:30:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn conditions_say_why() {
        let s = rejected(Some(3), "BurstPolicy/web: spec.home: unknown cluster");
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["conditions"][0]["status"], "False");
        assert!(
            s["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("spec.home")
        );
        assert_eq!(accepted(None)["conditions"][0]["status"], "True");
    }
}
