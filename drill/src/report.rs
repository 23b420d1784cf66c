//! The result of a drill: JSON (serde) and a plain-text summary.
//!
//! Times are milliseconds from the start of the first step (`startedMs`, `endedMs`,
//! `atMs`), so two reports of the same scenario line up. The instant of a step
//! (`atMs`) is when its effect happened: a fault when it was applied, an expectation
//! when its condition first held, a wait when it ended; measures are differences of
//! these instants.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::scenario::{Measure, Scenario, StepAction};

/// The JSON report of one drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file, as given.
    pub file: String,
    /// Its description.
    pub description: String,
    /// Its hypothesis.
    pub hypothesis: String,
    /// Wall-clock start of the first step, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Every step passed, every measure is within its budget, and the drill was not
    /// aborted.
    pub passed: bool,
    /// Wait, fault and expect steps, in order.
    pub steps: Vec<StepReport>,
    /// Measure steps, in order.
    pub measures: Vec<MeasureReport>,
    /// Why the drill stopped before its last step (sandbox failed, interrupted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// Samples of what was observed, for the timeline (may be empty). Only changes
    /// are kept, plus the first sample of each series (see [`Report::sample`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// Fault intervals, for the timeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultBand>,
}

/// One observation of a series, for the timeline.
///
/// Series are named by what they observe, e.g. `dns app.svc.example. from singapore`
/// (value: the answered clusters, sorted, comma-separated, `""` for no answer),
/// `ready shop/web in aws-sg` (value: ready replicas) or `primary db` (value: the
/// primary cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sample {
    /// When it was observed, ms from the drill's start.
    pub at_ms: u64,
    /// What was observed.
    pub series: String,
    /// The value seen.
    pub value: String,
}

/// A fault's interval, for the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultBand {
    /// The fault (its step's name, or a description).
    pub name: String,
    /// When it was applied, ms from the drill's start.
    pub from_ms: u64,
    /// When it was reverted; absent: until the end of the drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<u64>,
}

/// One wait, fault or expect step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// `wait`, `fault` or `expect`.
    pub kind: String,
    /// What the step did or awaited, in words.
    pub detail: String,
    /// It ran and held (a wait or fault that ran passes).
    pub passed: bool,
    /// It did not run (an earlier step failed or the drill was aborted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skipped: bool,
    /// When it started, ms from the drill's start.
    pub started_ms: u64,
    /// When it ended, ms from the drill's start.
    pub ended_ms: u64,
    /// `endedMs − startedMs`.
    pub took_ms: u64,
    /// The step's instant (see the module docs); absent when it failed or did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// What was seen last when an expectation failed (DNS answers, replicas per
    /// cluster, events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One measure step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeasureReport {
    /// The measure's (step's) name.
    pub name: String,
    /// The earlier step.
    pub from: String,
    /// The later step.
    pub to: String,
    /// `to`'s instant minus `from`'s; absent when either has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// The budget, if the scenario gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most_ms: Option<u64>,
    /// Measured, and within the budget.
    pub passed: bool,
}

impl StepReport {
    /// A step that ran from `started_ms` to `ended_ms`; `at_ms` is its instant when it
    /// passed, `observed` what was seen when it failed.
    pub fn ran(
        name: &str,
        kind: &str,
        detail: impl Into<String>,
        started_ms: u64,
        ended_ms: u64,
        outcome: Result<u64, String>,
    ) -> Self {
        let (passed, at_ms, observed) = match outcome {
            Ok(at) => (true, Some(at), None),
            Err(seen) => (false, None, Some(seen)),
        };
        Self {
            name: name.to_string(),
            kind: kind.to_string(),
            detail: detail.into(),
            passed,
            skipped: false,
            started_ms,
            ended_ms,
            took_ms: ended_ms.saturating_sub(started_ms),
            at_ms,
            observed,
        }
    }

    /// A step that did not run.
    pub fn skipped(name: &str, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            kind: kind.to_string(),
            detail: detail.into(),
            passed: false,
            skipped: true,
            started_ms: 0,
            ended_ms: 0,
            took_ms: 0,
            at_ms: None,
            observed: None,
        }
    }
}

impl MeasureReport {
    /// The measure `name` over the step reports so far.
    pub fn compute(name: &str, measure: &Measure, steps: &[StepReport]) -> Self {
        let at = |step: &str| steps.iter().find(|s| s.name == step).and_then(|s| s.at_ms);
        let ms = match (at(&measure.from), at(&measure.to)) {
            (Some(from), Some(to)) => Some(to.saturating_sub(from)),
            _ => None,
        };
        let at_most_ms = measure
            .at_most
            .map(|d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX));
        let passed = match (ms, at_most_ms) {
            (Some(ms), Some(max)) => ms <= max,
            (Some(_), None) => true,
            (None, _) => false,
        };
        Self {
            name: name.to_string(),
            from: measure.from.clone(),
            to: measure.to.clone(),
            ms,
            at_most_ms,
            passed,
        }
    }
}

impl Report {
    /// An empty report for `scenario`, started at `started_at_unix_ms`.
    pub fn new(scenario: &Scenario, started_at_unix_ms: u64) -> Self {
        Self {
            scenario: scenario.name.clone(),
            file: scenario.file.display().to_string(),
            description: scenario.description.clone(),
            hypothesis: scenario.hypothesis.clone(),
            started_at_unix_ms,
            passed: false,
            steps: Vec::new(),
            measures: Vec::new(),
            aborted: None,
            samples: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// Records that `series` had `value` at `at_ms`. A sample equal to the last value
    /// recorded for the same series is dropped, so only changes are kept (plus the
    /// first sample of each series).
    pub fn sample(&mut self, at_ms: u64, series: impl Into<String>, value: impl Into<String>) {
        let series = series.into();
        let value = value.into();
        let last = self.samples.iter().rev().find(|s| s.series == series);
        if last.is_some_and(|s| s.value == value) {
            return;
        }
        self.samples.push(Sample {
            at_ms,
            series,
            value,
        });
    }

    /// Records that the fault `name` was applied at `at_ms` (open until
    /// [`Report::fault_ended`]).
    pub fn fault_started(&mut self, name: &str, at_ms: u64) {
        self.faults.push(FaultBand {
            name: name.to_string(),
            from_ms: at_ms,
            to_ms: None,
        });
    }

    /// Records that the fault `name` was reverted at `at_ms`: closes its latest open
    /// band. Without an open band of that name (it was never started), nothing changes.
    pub fn fault_ended(&mut self, name: &str, at_ms: u64) {
        if let Some(band) = self
            .faults
            .iter_mut()
            .rev()
            .find(|b| b.name == name && b.to_ms.is_none())
        {
            band.to_ms = Some(at_ms.max(band.from_ms));
        }
    }

    /// Completes the report: every step of `scenario` without a report is added as
    /// skipped, every measure is computed, and `passed` is set.
    pub fn finish(&mut self, scenario: &Scenario) {
        self.measures.clear();
        let mut steps = Vec::with_capacity(scenario.steps.len());
        for step in &scenario.steps {
            if let StepAction::Measure(m) = &step.action {
                self.measures
                    .push(MeasureReport::compute(&step.name, m, &self.steps));
                continue;
            }
            let report = match self.steps.iter().find(|s| s.name == step.name) {
                Some(r) => r.clone(),
                None => StepReport::skipped(&step.name, step.action.kind(), detail(&step.action)),
            };
            steps.push(report);
        }
        self.steps = steps;
        self.passed = self.aborted.is_none()
            && self.steps.iter().all(|s| s.passed)
            && self.measures.iter().all(|m| m.passed);
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // A Report has only strings, integers, bools and options: it always serializes.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Reads a report written by [`Report::to_json`].
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A plain-text summary: the verdict, one line per step, what was observed when a
    /// step failed, and the measures.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let total = self.steps.iter().map(|s| s.ended_ms).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "drill {} ({}): {verdict} in {}",
            self.scenario,
            self.file,
            secs(total)
        );
        if let Some(why) = &self.aborted {
            let _ = writeln!(out, "  aborted: {why}");
        }
        let width = self
            .steps
            .iter()
            .map(|s| s.name.len())
            .chain(self.measures.iter().map(|m| m.name.len()))
            .max()
            .unwrap_or(0);
        for s in &self.steps {
            let mark = if s.skipped {
                "skip"
            } else if s.passed {
                "ok"
            } else {
                "FAIL"
            };
            if s.skipped {
                let _ = writeln!(
                    out,
                    "  {mark:<4} {:<width$}  {:<6}  {}",
                    s.name, s.kind, s.detail
                );
                continue;
            }
            let _ = writeln!(
                out,
                "  {mark:<4} {:<width$}  {:<6}  {:>7} → {:>7} ({:>7})  {}",
                s.name,
                s.kind,
                secs(s.started_ms),
                secs(s.ended_ms),
                secs(s.took_ms),
                s.detail
            );
            if let Some(seen) = &s.observed {
                for line in seen.lines() {
                    let _ = writeln!(out, "       observed: {line}");
                }
            }
        }
        for m in &self.measures {
            let mark = if m.passed { "ok" } else { "FAIL" };
            let value = m.ms.map_or_else(|| "not measured".to_string(), secs);
            let budget = m
                .at_most_ms
                .map(|b| format!(" (at most {})", secs(b)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {mark:<4} {:<width$}  measure {} → {}: {value}{budget}",
                m.name, m.from, m.to
            );
        }
        out
    }
}

/// What a step does, in words (for the report).
pub fn detail(action: &StepAction) -> String {
    match action {
        StepAction::Wait(d) => format!("wait {}", causeway_config::HumanDuration(*d)),
        StepAction::Fault(f) => f.to_string(),
        StepAction::Expect(e) => {
            let mut s = format!(
                "{} within {}",
                e.condition,
                causeway_config::HumanDuration(e.within)
            );
            if let Some(h) = e.hold {
                let _ = write!(s, ", for {}", causeway_config::HumanDuration(h));
            }
            s
        }
        StepAction::Measure(m) => match m.at_most {
            Some(max) => format!("{} → {}, at most {max}", m.from, m.to),
            None => format!("{} → {}", m.from, m.to),
        },
        StepAction::Restore(step) => format!("fault {step} reverted"),
    }
}

fn secs(ms: u64) -> String {
    format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
}

mod html;

#[cfg(test)]
mod tests;
