use std::path::Path;

use super::*;
use crate::scenario::parse_str;

const SCENARIO: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Scenario
metadata: {name: r}
spec:
  description: report test
  topology:
    clusters: [{name: idc-bj, role: idc}, {name: aws-sg, role: cloud}]
  steps:
    - name: cut
      fault: {networkCut: {cluster: idc-bj}}
    - name: promoted
      expect:
        primary: {policy: db, cluster: aws-sg}
        within: 30s
    - name: rto
      measure: {from: cut, to: promoted, atMost: 20s}
    - {name: settle, wait: 5s}
";

fn scenario() -> Scenario {
    parse_str(Path::new("r.yaml"), SCENARIO).unwrap()
}

/// A run where `cut` was applied at 100 ms and `promoted` held at `promoted_at`
/// (or failed, observing `Err`).
fn run(promoted: Result<u64, String>) -> Report {
    let s = scenario();
    let mut r = Report::new(&s, 1_700_000_000_000);
    r.steps.push(StepReport::ran(
        "cut",
        "fault",
        detail(&s.steps[0].action),
        0,
        100,
        Ok(100),
    ));
    let end = match &promoted {
        Ok(at) => *at,
        Err(_) => 30_100,
    };
    r.steps.push(StepReport::ran(
        "promoted",
        "expect",
        detail(&s.steps[1].action),
        100,
        end,
        promoted,
    ));
    r.finish(&s);
    r
}

#[test]
fn steps_measures_and_the_verdict() {
    let r = run(Ok(12_600));
    assert_eq!(r.steps.len(), 3, "measures are listed apart from steps");
    assert_eq!(r.steps[1].took_ms, 12_500);
    assert_eq!(r.measures.len(), 1);
    let m = &r.measures[0];
    assert_eq!(
        (m.ms, m.at_most_ms, m.passed),
        (Some(12_500), Some(20_000), true)
    );
    // The wait has not run yet; once it has, the drill passes.
    let s = scenario();
    let mut done = r.clone();
    done.steps.truncate(2);
    done.steps.push(StepReport::ran(
        "settle",
        "wait",
        "wait 5s",
        12_600,
        17_600,
        Ok(17_600),
    ));
    done.finish(&s);
    assert!(done.passed, "{done:?}");
}

#[test]
fn skipped_steps_fail_the_drill() {
    let r = run(Ok(12_600));
    assert!(r.steps[2].skipped && !r.steps[2].passed);
    assert!(!r.passed, "a step that did not run cannot pass");
}

#[test]
fn a_measure_over_budget_fails() {
    let s = scenario();
    let mut r = Report::new(&s, 0);
    r.steps
        .push(StepReport::ran("cut", "fault", "", 0, 100, Ok(100)));
    r.steps.push(StepReport::ran(
        "promoted",
        "expect",
        "",
        100,
        25_100,
        Ok(25_100),
    ));
    r.steps.push(StepReport::ran(
        "settle",
        "wait",
        "",
        25_100,
        30_100,
        Ok(30_100),
    ));
    r.finish(&s);
    assert_eq!(r.measures[0].ms, Some(25_000));
    assert!(!r.measures[0].passed && !r.passed);
    assert!(r.steps.iter().all(|s| s.passed));
}

#[test]
fn a_failed_expectation_keeps_what_was_observed() {
    let r = run(Err(
        "primary of db: idc-bj says primary, aws-sg says replica".into(),
    ));
    assert!(!r.passed);
    let p = &r.steps[1];
    assert!(!p.passed && !p.skipped && p.at_ms.is_none());
    assert_eq!(p.took_ms, 30_000);
    assert!(
        p.observed
            .as_deref()
            .is_some_and(|o| o.contains("aws-sg says replica"))
    );
    // No instant for `promoted`: the measure is not measured and fails.
    assert_eq!((r.measures[0].ms, r.measures[0].passed), (None, false));
    let text = r.summary();
    assert!(
        text.starts_with("drill r (r.yaml): FAILED in 30.1s\n"),
        "{text}"
    );
    assert!(
        text.contains("observed: primary of db: idc-bj says primary"),
        "{text}"
    );
    assert!(text.contains("FAIL promoted"), "{text}");
    assert!(text.contains("not measured (at most 20.0s)"), "{text}");
    assert!(text.contains("skip settle"), "{text}");
}

#[test]
fn json_round_trips_with_camel_case_fields() {
    let mut r = run(Ok(12_600));
    r.aborted = Some("interrupted (Ctrl-C)".into());
    r.finish(&scenario());
    let json = r.to_json();
    for key in [
        "\"startedAtUnixMs\": 1700000000000",
        "\"startedMs\": 100",
        "\"endedMs\": 12600",
        "\"tookMs\": 12500",
        "\"atMs\": 12600",
        "\"atMostMs\": 20000",
        "\"skipped\": true",
        "\"aborted\": \"interrupted (Ctrl-C)\"",
        "\"passed\": false",
    ] {
        assert!(json.contains(key), "{key} not in {json}");
    }
    assert!(
        !json.contains("\"observed\""),
        "absent when nothing failed: {json}"
    );
    assert_eq!(Report::from_json(&json).unwrap(), r);
    assert!(Report::from_json("{\"scenario\": 1}").is_err());
}

#[test]
fn the_summary_of_a_pass() {
    let s = scenario();
    let mut r = Report::new(&s, 0);
    r.steps.push(StepReport::ran(
        "cut",
        "fault",
        detail(&s.steps[0].action),
        0,
        100,
        Ok(100),
    ));
    r.steps.push(StepReport::ran(
        "promoted",
        "expect",
        detail(&s.steps[1].action),
        100,
        12_600,
        Ok(12_600),
    ));
    r.steps.push(StepReport::ran(
        "settle",
        "wait",
        detail(&s.steps[3].action),
        12_600,
        17_600,
        Ok(17_600),
    ));
    r.finish(&s);
    let text = r.summary();
    let expected = "\
drill r (r.yaml): PASSED in 17.6s
  ok   cut       fault      0.0s →    0.1s (   0.1s)  network cut between idc-bj's agents and the stub
  ok   promoted  expect     0.1s →   12.6s (  12.5s)  primary of db is aws-sg within 30s
  ok   settle    wait      12.6s →   17.6s (   5.0s)  wait 5s
  ok   rto       measure cut → promoted: 12.5s (at most 20.0s)
";
    assert_eq!(text, expected);
}

#[test]
fn samples_keep_only_changes_per_series() {
    let mut r = run(Ok(12_600));
    let dns = "dns app.svc.example. from singapore";
    let ready = "ready shop/web in aws-sg";
    r.sample(0, dns, "idc-bj");
    r.sample(0, ready, "0");
    r.sample(1_000, dns, "idc-bj");
    r.sample(1_000, ready, "0");
    r.sample(2_000, ready, "2");
    r.sample(3_000, dns, "aws-sg,idc-bj");
    r.sample(4_000, ready, "2");
    r.sample(5_000, dns, "idc-bj");
    r.sample(6_000, dns, "");
    r.sample(7_000, dns, "");
    let seen: Vec<(u64, &str, &str)> = r
        .samples
        .iter()
        .map(|s| (s.at_ms, s.series.as_str(), s.value.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, dns, "idc-bj"),
            (0, ready, "0"),
            (2_000, ready, "2"),
            (3_000, dns, "aws-sg,idc-bj"),
            (5_000, dns, "idc-bj"),
            (6_000, dns, ""),
        ]
    );
}

#[test]
fn fault_bands_open_and_close_by_name() {
    let mut r = run(Ok(12_600));
    r.fault_started("surge", 100);
    r.fault_started("cut", 200);
    r.fault_ended("surge", 5_000);
    r.fault_ended("never-started", 6_000);
    r.fault_started("surge", 7_000);
    r.fault_ended("surge", 8_000);
    let bands: Vec<(&str, u64, Option<u64>)> = r
        .faults
        .iter()
        .map(|b| (b.name.as_str(), b.from_ms, b.to_ms))
        .collect();
    assert_eq!(
        bands,
        vec![
            ("surge", 100, Some(5_000)),
            ("cut", 200, None),
            ("surge", 7_000, Some(8_000)),
        ]
    );
    // Ending a band before it started cannot make it negative.
    r.fault_started("late", 9_000);
    r.fault_ended("late", 8_500);
    assert_eq!(r.faults[3].to_ms, Some(9_000));
}

#[test]
fn samples_and_faults_round_trip_and_are_absent_when_empty() {
    let mut r = run(Ok(12_600));
    let json = r.to_json();
    assert!(
        !json.contains("\"samples\"") && !json.contains("\"faults\""),
        "empty timelines are not written: {json}"
    );
    // A report written before the timeline existed still reads.
    assert_eq!(Report::from_json(&json).unwrap(), r);
    r.sample(1_500, "primary db", "idc-bj");
    r.fault_started("cut", 100);
    r.fault_started("surge", 200);
    r.fault_ended("surge", 900);
    let json = r.to_json();
    for key in [
        "\"samples\"",
        "\"atMs\": 1500",
        "\"series\": \"primary db\"",
        "\"value\": \"idc-bj\"",
        "\"faults\"",
        "\"fromMs\": 200",
        "\"toMs\": 900",
    ] {
        assert!(json.contains(key), "{key} not in {json}");
    }
    assert_eq!(Report::from_json(&json).unwrap(), r);
    let unknown = json.replacen("\"fromMs\": 200", "\"fromMs\": 200, \"extra\": 1", 1);
    assert!(
        Report::from_json(&unknown).is_err(),
        "unknown fields stay errors"
    );
}

#[test]
fn restore_and_latency_change_steps_are_described() {
    use crate::scenario::{Fault, LatencyChange, StepAction};
    assert_eq!(
        detail(&StepAction::Restore("cut".into())),
        "fault cut reverted"
    );
    let change = StepAction::Fault(Fault::LatencyChange(LatencyChange {
        client: "sg".into(),
        rtt_ms: [(
            causeway_model::ClusterId::new("aws-sg").expect("an ID"),
            120,
        )]
        .into(),
    }));
    assert_eq!(detail(&change), "latency from sg now aws-sg 120 ms");
}
