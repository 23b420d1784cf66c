use std::time::Duration;

use causeway_config::HumanDuration;
use causeway_model::ClusterId;

use super::*;
use crate::policy::{ScalingPolicy, ScalingPolicyType::*};

fn rules(policies: &[(ScalingPolicyType, u32, u32)], select: SelectPolicy) -> ScalingRules {
    ScalingRules {
        stabilization_window: HumanDuration(Duration::ZERO),
        policies: policies
            .iter()
            .map(|(kind, value, period_seconds)| ScalingPolicy {
                kind: *kind,
                value: *value,
                period_seconds: *period_seconds,
            })
            .collect(),
        select_policy: select,
    }
}

/// Scale-down without a limit in effect (Percent 100 lets it reach 0 at once).
fn free_down() -> ScalingRules {
    rules(&[(Percent, 100, 15)], SelectPolicy::Max)
}

/// Scale-up without a limit in effect.
fn free_up() -> ScalingRules {
    rules(&[(Pods, 100_000, 15)], SelectPolicy::Max)
}

/// One round: (time in s, current, recommendation) → (replicas, words in `why`; "" = empty).
type Step = (u64, u32, u32, u32, &'static str);

fn run(name: &str, behavior: &Behavior, steps: &[Step]) {
    let mut m = Memory::default();
    let c = ClusterId::new("ali-hz").unwrap();
    for (i, (t, current, rec, want, why)) in steps.iter().enumerate() {
        let s = m.stabilize("web", &c, behavior, *current, *rec, Duration::from_secs(*t));
        assert_eq!(s.replicas, *want, "{name}: step {i} at {t}s: {}", s.why);
        if why.is_empty() {
            assert_eq!(s.why, "", "{name}: step {i} at {t}s");
        } else {
            assert!(s.why.contains(why), "{name}: step {i} at {t}s: {:?}", s.why);
        }
    }
}

#[test]
fn scale_up_limits() {
    let up = |r: ScalingRules| Behavior {
        scale_up: r,
        scale_down: free_down(),
    };
    let cases: Vec<(&str, Behavior, Vec<Step>)> = vec![
        (
            "Pods: +4 per 15 s, the period slides",
            up(rules(&[(Pods, 4, 15)], SelectPolicy::Max)),
            vec![
                (0, 0, 20, 4, "scale-up limited to 4 by Pods 4/15s"),
                // 10 s later the 4 are still in the period: no more yet.
                (10, 4, 20, 4, "scale-up limited to 4 by Pods 4/15s"),
                // 15 s after the change it has left the period.
                (15, 4, 20, 8, "scale-up limited to 8 by Pods 4/15s"),
                (20, 8, 10, 8, "scale-up limited to 8"),
                (30, 8, 10, 10, ""),
            ],
        ),
        (
            "Percent: +100 % of the period's start, rounded up",
            up(rules(&[(Percent, 50, 60)], SelectPolicy::Max)),
            vec![
                (0, 3, 100, 5, "scale-up limited to 5 by Percent 50/60s"),
                (30, 5, 100, 5, "scale-up limited to 5"),
                (60, 5, 100, 8, "scale-up limited to 8 by Percent 50/60s"),
            ],
        ),
        (
            "the HPA default, Max: the larger of +100 % and +4",
            up(ScalingRules::up()),
            vec![
                (0, 0, 20, 4, "scale-up limited to 4 by Pods 4/15s"),
                (15, 4, 20, 8, "scale-up limited to 8"),
                (30, 8, 40, 16, "scale-up limited to 16 by Percent 100/15s"),
                (45, 16, 20, 20, ""),
            ],
        ),
        (
            "Min: the smaller of +100 % and +4",
            up(rules(
                &[(Percent, 100, 15), (Pods, 4, 15)],
                SelectPolicy::Min,
            )),
            vec![
                (0, 1, 40, 2, "scale-up limited to 2 by Percent 100/15s"),
                (15, 2, 40, 4, "scale-up limited to 4 by Percent 100/15s"),
                (30, 10, 40, 14, "scale-up limited to 14 by Pods 4/15s"),
            ],
        ),
        (
            "Disabled: no scale-up, scale-down still works",
            up(rules(&[(Pods, 4, 15)], SelectPolicy::Disabled)),
            vec![(0, 2, 10, 2, "scale-up disabled"), (1, 2, 1, 1, "")],
        ),
        (
            "a scale-down inside the period counts: the start is current minus the net change",
            up(rules(&[(Pods, 4, 60)], SelectPolicy::Max)),
            vec![
                (0, 0, 4, 4, ""),
                (10, 4, 2, 2, ""),
                // start = 2 - (+4 - 2) = 0: at most 4.
                (20, 2, 10, 4, "scale-up limited to 4"),
                // the +4 at 0 s left the period: start = 4 - (-2 + 2) = 4.
                (60, 4, 10, 8, "scale-up limited to 8"),
            ],
        ),
        (
            "the period is the policy's own, not the longest kept",
            Behavior {
                scale_up: rules(&[(Pods, 4, 15)], SelectPolicy::Max),
                scale_down: rules(&[(Pods, 1, 60)], SelectPolicy::Max),
            },
            vec![
                (0, 0, 20, 4, "scale-up limited to 4"),
                (14, 4, 20, 4, "scale-up limited to 4"),
                (15, 4, 20, 8, "scale-up limited to 8"),
            ],
        ),
        (
            "a change not applied yet (refused or throttled write) is not counted twice",
            up(rules(&[(Pods, 4, 15)], SelectPolicy::Max)),
            vec![
                (0, 0, 20, 4, "limited to 4"),
                (1, 0, 20, 4, "limited to 4"),
                (2, 0, 20, 4, "limited to 4"),
                (3, 4, 20, 4, "limited to 4"),
                (15, 4, 20, 4, "limited to 4"),
                // 15 s after the last plan from 0.
                (17, 4, 20, 8, "limited to 8"),
            ],
        ),
        (
            "a second plan at the same instant replaces the first",
            up(rules(&[(Pods, 4, 15)], SelectPolicy::Max)),
            vec![
                (0, 0, 20, 4, "limited to 4"),
                (0, 0, 20, 4, "limited to 4"),
                (5, 4, 20, 4, "limited to 4"),
            ],
        ),
    ];
    for (name, b, steps) in &cases {
        run(name, b, steps);
    }
}

#[test]
fn scale_down_limits() {
    let down = |r: ScalingRules| Behavior {
        scale_up: free_up(),
        scale_down: r,
    };
    let cases: Vec<(&str, Behavior, Vec<Step>)> = vec![
        (
            "Pods: -2 per 60 s, the period slides",
            down(rules(&[(Pods, 2, 60)], SelectPolicy::Max)),
            vec![
                (0, 10, 0, 8, "scale-down limited to 8 by Pods 2/60s"),
                (30, 8, 0, 8, "scale-down limited to 8"),
                (60, 8, 0, 6, "scale-down limited to 6 by Pods 2/60s"),
                (120, 6, 5, 5, ""),
            ],
        ),
        (
            "Percent: -50 % of the period's start, rounded down",
            down(rules(&[(Percent, 50, 30)], SelectPolicy::Max)),
            vec![
                (0, 9, 0, 4, "scale-down limited to 4 by Percent 50/30s"),
                (29, 4, 0, 4, "scale-down limited to 4"),
                (30, 4, 0, 2, "scale-down limited to 2"),
            ],
        ),
        (
            "Max: the larger change of -2 and -50 %",
            down(rules(
                &[(Pods, 2, 60), (Percent, 50, 60)],
                SelectPolicy::Max,
            )),
            vec![(0, 10, 0, 5, "scale-down limited to 5 by Percent 50/60s")],
        ),
        (
            "Min: the smaller change of -2 and -50 %",
            down(rules(
                &[(Pods, 2, 60), (Percent, 50, 60)],
                SelectPolicy::Min,
            )),
            vec![
                (0, 10, 0, 8, "scale-down limited to 8 by Pods 2/60s"),
                // at 2 replicas -50 % is the smaller change.
                (60, 2, 0, 1, "scale-down limited to 1 by Percent 50/60s"),
            ],
        ),
        (
            "Disabled: no scale-down, scale-up still works",
            down(rules(&[(Pods, 2, 60)], SelectPolicy::Disabled)),
            vec![(0, 10, 0, 10, "scale-down disabled"), (1, 10, 12, 12, "")],
        ),
        (
            "the HPA default (-100 % per 15 s) does not limit",
            down(ScalingRules {
                stabilization_window: HumanDuration(Duration::ZERO),
                ..ScalingRules::down()
            }),
            vec![(0, 10, 0, 0, "")],
        ),
    ];
    for (name, b, steps) in &cases {
        run(name, b, steps);
    }
}

#[test]
fn the_limit_applies_after_the_window_and_both_are_told() {
    let b = Behavior {
        scale_up: ScalingRules {
            stabilization_window: HumanDuration(Duration::from_secs(10)),
            ..rules(&[(Pods, 2, 15)], SelectPolicy::Max)
        },
        scale_down: free_down(),
    };
    run(
        "window then limit",
        &b,
        &[
            (0, 0, 6, 2, "scale-up limited to 2 by Pods 2/15s"),
            // the window holds at min(6, 10) = 6, the limit at 2 (the +2 is in the period).
            (
                5,
                2,
                10,
                2,
                "scale-up window 10s holds it at 6; scale-up limited to 2",
            ),
        ],
    );
}

#[test]
fn changes_are_kept_only_for_the_longest_period() {
    let b = Behavior {
        scale_up: rules(&[(Pods, 1, 20)], SelectPolicy::Max),
        scale_down: rules(&[(Pods, 1, 40)], SelectPolicy::Max),
    };
    let mut m = Memory::default();
    let c = ClusterId::new("ali-hz").unwrap();
    let mut current = 0;
    for t in 0..200u64 {
        current = m
            .stabilize("web", &c, &b, current, 1_000, Duration::from_secs(t))
            .replicas;
    }
    // +1 every 20 s.
    assert_eq!(current, 10);
    let track = &m.tracks[&("web".to_string(), c)];
    assert!(track.changes.len() <= 2, "{:?}", track.changes);
}
