//! Table tests of [`parse_lease`] and [`decide`].

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::*;

/// The wall clock at t = 0 of every case.
fn base() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn at(secs: f64) -> SystemTime {
    if secs >= 0.0 {
        base() + Duration::from_secs_f64(secs)
    } else {
        base() - Duration::from_secs_f64(-secs)
    }
}

fn micros(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// A Lease as the scheduler writes it: renewed at `renew` (seconds from t = 0), `l`
/// seconds long.
fn lease_json(name: &str, renew: f64, l: i64) -> Value {
    json!({
        "metadata": {
            "namespace": "shop",
            "name": name,
            "labels": {"causeway.dev/role-lease": "true", "causeway.dev/policy": "web"},
            "annotations": {
                "causeway.dev/fence-deployment": "web",
                "causeway.dev/fence-configmap": "web-role",
                "causeway.dev/fence-mode": "scale-to-zero",
            },
        },
        "spec": {
            "holderIdentity": "causeway-scheduler",
            "leaseDurationSeconds": l,
            "renewTime": micros(at(renew)),
            "acquireTime": micros(at(renew)),
        },
    })
}

#[test]
fn parse_lease_table() {
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit, Result<(), &str>)] = &[
        ("as written by the scheduler", |_| {}, Ok(())),
        (
            "mode role",
            |v| v["metadata"]["annotations"]["causeway.dev/fence-mode"] = json!("role"),
            Ok(()),
        ),
        (
            "renewTime with whole seconds",
            |v| v["spec"]["renewTime"] = json!("2027-01-15T08:00:00Z"),
            Ok(()),
        ),
        (
            "no duration",
            |v| v["spec"]["leaseDurationSeconds"] = Value::Null,
            Err("leaseDurationSeconds is missing"),
        ),
        (
            "duration 0",
            |v| v["spec"]["leaseDurationSeconds"] = json!(0),
            Err("below 1"),
        ),
        (
            "negative duration",
            |v| v["spec"]["leaseDurationSeconds"] = json!(-5),
            Err("below 1"),
        ),
        (
            "duration as a string",
            |v| v["spec"]["leaseDurationSeconds"] = json!("3"),
            Err("not an integer"),
        ),
        (
            "fractional duration",
            |v| v["spec"]["leaseDurationSeconds"] = json!(2.5),
            Err("not an integer"),
        ),
        (
            "no renewTime",
            |v| v["spec"]["renewTime"] = Value::Null,
            Err("renewTime is missing"),
        ),
        (
            "garbage renewTime",
            |v| v["spec"]["renewTime"] = json!("yesterday"),
            Err("renewTime \"yesterday\""),
        ),
        (
            "no spec at all",
            |v| v["spec"] = Value::Null,
            Err("leaseDurationSeconds is missing"),
        ),
        (
            "no annotations",
            |v| v["metadata"]["annotations"] = Value::Null,
            Err("is missing"),
        ),
        (
            "no deployment",
            |v| v["metadata"]["annotations"]["causeway.dev/fence-deployment"] = Value::Null,
            Err("fence-deployment is missing"),
        ),
        (
            "deployment name with a path in it",
            |v| {
                v["metadata"]["annotations"]["causeway.dev/fence-deployment"] =
                    json!("../../../api/v1/secrets")
            },
            Err("not a DNS name"),
        ),
        (
            "configmap name with a query",
            |v| v["metadata"]["annotations"]["causeway.dev/fence-configmap"] = json!("a?b=c"),
            Err("not a DNS name"),
        ),
        (
            "configmap as a number",
            |v| v["metadata"]["annotations"]["causeway.dev/fence-configmap"] = json!(7),
            Err("fence-configmap is missing"),
        ),
        (
            "unknown mode",
            |v| v["metadata"]["annotations"]["causeway.dev/fence-mode"] = json!("delete"),
            Err("neither scale-to-zero nor role"),
        ),
        (
            "no mode",
            |v| v["metadata"]["annotations"]["causeway.dev/fence-mode"] = Value::Null,
            Err("fence-mode is missing"),
        ),
        (
            "no namespace",
            |v| v["metadata"]["namespace"] = Value::Null,
            Err("not a DNS name"),
        ),
        (
            "not an object",
            |v| *v = json!([1, 2]),
            Err("not a DNS name"),
        ),
    ];
    for (name, edit, want) in cases {
        let mut v = lease_json("causeway-role-web", 0.0, 3);
        edit(&mut v);
        match (parse_lease(&v), want) {
            (Listed::Valid(l), Ok(())) => {
                assert_eq!(l.duration, Duration::from_secs(3), "{name}");
                assert_eq!(l.policy, "web", "{name}");
                assert_eq!(
                    (l.deployment.as_str(), l.configmap.as_str()),
                    ("web", "web-role"),
                    "{name}"
                );
            }
            (Listed::Invalid { reason, .. }, Err(part)) => {
                assert!(reason.contains(part), "{name}: {reason:?} lacks {part:?}")
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
    let l = match parse_lease(&lease_json("x", 0.0, 3)) {
        Listed::Valid(l) => l,
        other => panic!("{other:?}"),
    };
    assert_eq!(l.renewed_at, at(0.0));
    assert_eq!(l.mode, FenceMode::ScaleToZero);
    assert_eq!(l.fenced_at, None);
}

/// What a round should decide for one Lease.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Want {
    Live,
    Fence,
    Fenced,
    Invalid { warn: bool },
}

/// A Lease listed in a round.
#[derive(Clone)]
enum L {
    /// `name`, renewed at (s from t = 0), duration (s).
    Ok(&'static str, f64, i64),
    /// Like `Ok`, with a `fenced-at` annotation at (s).
    FencedAt(&'static str, f64, i64, f64),
    /// `name` with a broken duration (the reason is "duration N").
    Bad(&'static str, i64),
}

impl L {
    fn listed(&self) -> Listed {
        match self {
            L::Ok(n, renew, l) => parse_lease(&lease_json(n, *renew, *l)),
            L::FencedAt(n, renew, l, f) => {
                let mut v = lease_json(n, *renew, *l);
                v["metadata"]["annotations"]["causeway.dev/fenced-at"] = json!(micros(at(*f)));
                parse_lease(&v)
            }
            L::Bad(n, l) => parse_lease(&lease_json(n, 0.0, *l)),
        }
    }
}

/// One round: monotonic time (s from t = 0), the wall clock's offset from it (s),
/// the Leases listed, the decisions wanted (same order).
type Round = (f64, f64, Vec<L>, Vec<Want>);

fn run_case(name: &str, fence_succeeds: bool, rounds: &[Round]) {
    let start = Instant::now();
    let mut memory = Memory::default();
    for (i, (t, skew, leases, want)) in rounds.iter().enumerate() {
        let now = Now {
            mono: start + Duration::from_secs_f64(*t),
            wall: at(t + skew),
        };
        let listed: Vec<Listed> = leases.iter().map(L::listed).collect();
        let decisions = decide(&mut memory, &listed, now);
        let got: Vec<Want> = decisions
            .iter()
            .map(|d| match d {
                Decision::Live { .. } => Want::Live,
                Decision::Fence { .. } => Want::Fence,
                Decision::Fenced(_) => Want::Fenced,
                Decision::Invalid { warn, .. } => Want::Invalid { warn: *warn },
            })
            .collect();
        assert_eq!(&got, want, "{name}: round {i} at t={t}");
        if fence_succeeds {
            for d in &decisions {
                if let Decision::Fence { lease, .. } = d {
                    memory.fenced(lease);
                }
            }
        }
    }
}

#[test]
fn decide_table() {
    use Want::*;
    let a = |renew, l| L::Ok("causeway-role-a", renew, l);
    let b = |renew, l| L::Ok("causeway-role-b", renew, l);
    let cases: Vec<(&str, bool, Vec<Round>)> = vec![
        (
            "renewed lease stays live up to L, fences just past it",
            true,
            vec![
                (0.0, 0.0, vec![a(0.0, 3)], vec![Live]),
                (2.0, 0.0, vec![a(0.0, 3)], vec![Live]),
                (3.0, 0.0, vec![a(0.0, 3)], vec![Live]),
                (3.1, 0.0, vec![a(0.0, 3)], vec![Fence]),
            ],
        ),
        (
            "every renewal restarts the age",
            true,
            vec![
                (0.0, 0.0, vec![a(0.0, 3)], vec![Live]),
                (2.5, 0.0, vec![a(2.0, 3)], vec![Live]),
                (5.4, 0.0, vec![a(2.0, 3)], vec![Live]),
                (5.6, 0.0, vec![a(2.0, 3)], vec![Fence]),
            ],
        ),
        (
            "stale by the wall clock at first sight: fence at once",
            true,
            vec![(10.0, 0.0, vec![a(0.0, 3)], vec![Fence])],
        ),
        (
            "partly stale at first sight: the rest on the monotonic clock",
            true,
            vec![
                (2.0, 0.0, vec![a(0.0, 3)], vec![Live]),
                (2.9, 0.0, vec![a(0.0, 3)], vec![Live]),
                (3.1, 0.0, vec![a(0.0, 3)], vec![Fence]),
            ],
        ),
        (
            "a renewTime in the future (skew) counts as now",
            true,
            vec![
                (0.0, 0.0, vec![a(100.0, 3)], vec![Live]),
                (3.0, 0.0, vec![a(100.0, 3)], vec![Live]),
                (3.5, 0.0, vec![a(100.0, 3)], vec![Fence]),
            ],
        ),
        (
            "a changed renewTime resets even if the wall clock calls it old",
            true,
            vec![
                (0.0, 0.0, vec![a(0.0, 3)], vec![Live]),
                (2.0, 0.0, vec![a(-100.0, 3)], vec![Live]),
                (4.9, 0.0, vec![a(-100.0, 3)], vec![Live]),
                (5.1, 0.0, vec![a(-100.0, 3)], vec![Fence]),
            ],
        ),
        (
            "the wall clock jumping later does not age a lease already seen",
            true,
            vec![
                (0.0, 0.0, vec![a(0.0, 3)], vec![Live]),
                (2.0, 3600.0, vec![a(0.0, 3)], vec![Live]),
                (3.5, -3600.0, vec![a(0.0, 3)], vec![Fence]),
            ],
        ),
        (
            "fence once per renewTime; a new renewal arms it again",
            true,
            vec![
                (4.0, 0.0, vec![a(0.0, 3)], vec![Fence]),
                (5.0, 0.0, vec![a(0.0, 3)], vec![Fenced]),
                (6.0, 0.0, vec![a(0.0, 3)], vec![Fenced]),
                (7.0, 0.0, vec![a(7.0, 3)], vec![Live]),
                (10.5, 0.0, vec![a(7.0, 3)], vec![Fence]),
            ],
        ),
        (
            "a failed fence is retried every round",
            false,
            vec![
                (4.0, 0.0, vec![a(0.0, 3)], vec![Fence]),
                (5.0, 0.0, vec![a(0.0, 3)], vec![Fence]),
            ],
        ),
        (
            "history survives rounds without a list (API down)",
            true,
            vec![
                (0.0, 0.0, vec![a(0.0, 3)], vec![Live]),
                (30.0, -30.0, vec![a(0.0, 3)], vec![Fence]),
            ],
        ),
        (
            "a deleted lease is forgotten, never fenced",
            true,
            vec![
                (0.0, 0.0, vec![a(0.0, 3), b(0.0, 3)], vec![Live, Live]),
                (1.0, 0.0, vec![b(0.0, 3)], vec![Live]),
                (4.0, 0.0, vec![], vec![]),
                // Back, and the wall clock says it is fresh: nothing of the old one is left.
                (4.5, -4.5, vec![a(0.0, 3)], vec![Live]),
            ],
        ),
        (
            "two leases decided independently",
            true,
            vec![
                (0.0, 0.0, vec![a(0.0, 3), b(0.0, 5)], vec![Live, Live]),
                (4.0, 0.0, vec![a(0.0, 3), b(0.0, 5)], vec![Fence, Live]),
                (6.0, 0.0, vec![a(0.0, 3), b(0.0, 5)], vec![Fenced, Fence]),
            ],
        ),
        (
            "fenced-at at or after renewTime: already fenced (agent restarted)",
            true,
            vec![(
                10.0,
                0.0,
                vec![L::FencedAt("causeway-role-a", 0.0, 3, 4.0)],
                vec![Fenced],
            )],
        ),
        (
            "fenced-at before renewTime: an old fence, fence again",
            true,
            vec![(
                10.0,
                0.0,
                vec![L::FencedAt("causeway-role-a", 2.0, 3, 1.0)],
                vec![Fence],
            )],
        ),
        (
            "an invalid lease warns once per reason and is never fenced",
            true,
            vec![
                (0.0, 0.0, vec![L::Bad("x", 0)], vec![Invalid { warn: true }]),
                (
                    1.0,
                    0.0,
                    vec![L::Bad("x", 0)],
                    vec![Invalid { warn: false }],
                ),
                (
                    2.0,
                    0.0,
                    vec![L::Bad("x", -1)],
                    vec![Invalid { warn: true }],
                ),
                (
                    60.0,
                    0.0,
                    vec![L::Bad("x", -1)],
                    vec![Invalid { warn: false }],
                ),
                (61.0, 0.0, vec![], vec![]),
                (
                    62.0,
                    0.0,
                    vec![L::Bad("x", -1)],
                    vec![Invalid { warn: true }],
                ),
            ],
        ),
        (
            "a lease turned invalid loses its history",
            true,
            vec![
                (0.0, 0.0, vec![a(0.0, 3)], vec![Live]),
                (
                    1.0,
                    0.0,
                    vec![L::Bad("causeway-role-a", 0)],
                    vec![Invalid { warn: true }],
                ),
                // Valid again, fresh by the wall clock: aged from here, not from t = 0.
                (2.0, -2.0, vec![a(0.0, 3)], vec![Live]),
                (3.1, -2.0, vec![a(0.0, 3)], vec![Live]),
                (5.1, -2.0, vec![a(0.0, 3)], vec![Fence]),
            ],
        ),
    ];
    for (name, ok, rounds) in &cases {
        run_case(name, *ok, rounds);
    }
}

#[test]
fn fence_reports_time_since_renewal() {
    let listed = [lease_json("a", 0.0, 3)].map(|v| parse_lease(&v));
    let mut memory = Memory::default();
    let now = Now {
        mono: Instant::now(),
        wall: at(7.5),
    };
    match decide(&mut memory, &listed, now).as_slice() {
        [Decision::Fence { since_renewal, .. }] => {
            assert_eq!(*since_renewal, Duration::from_secs_f64(7.5))
        }
        other => panic!("{other:?}"),
    }
}
