//! Running a scenario for real on a local sandbox (issue 11).
//!
//! [`run`] brings the sandbox up ([`sandbox`]: testbed clusters, stub, agents — through a
//! relay for a cluster a `networkCut` names —, the scheduler's identity and RBAC, dns with
//! the scenario's zones and a latency map from `topology.clients`, the scheduler with the
//! scenario's policies, the workloads), runs the steps in order, reverts every fault
//! (newest first: at the end, on failure and on SIGINT/SIGTERM), writes `report.json`
//! (and `report.html`), and stops everything it started.
//!
//! Steps: a wait sleeps; a fault is applied ([`faults`]); an expectation is checked
//! every 250 ms until `within`, then must keep holding for `for` ([`expect`]); the
//! instant of an observation is when it was asked (a cluster whose API server is stopped
//! answers after a 1 s timeout, which delays the result, not the instant). The
//! first failing step ends the drill (the later ones are reported skipped). Every
//! second the drill also samples the DNS answers, ready replicas and roles the
//! scenario talks about, for the report's timeline; role samples carry the
//! `causeway.dev/role-changed-at` of each role ConfigMap, so the order of a fence
//! and a promotion can be read from the report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{SignalKind, signal};

use crate::report::{Report, StepReport, detail};
use crate::scenario::{Expect, Fault, Scenario, StepAction};
use crate::target::DrillTarget;

mod expect;
mod faults;
mod health;
mod kube;
mod progress;
mod sandbox;

pub use progress::Progress;

use expect::Observer;
use progress::secs;
use sandbox::Sandbox;

/// How often an expectation is checked.
const POLL: Duration = Duration::from_millis(250);
/// How often the whole timeline is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How to run a drill.
pub struct RunOptions {
    /// The `causeway` binary every child runs (the command passes its own).
    pub exe: PathBuf,
    /// Where configs, logs, state and the testbed go.
    pub work_dir: PathBuf,
    /// Where `report.json` (and `report.html`) are written.
    pub report_dir: PathBuf,
    /// Leave the sandbox up after the drill until SIGINT/SIGTERM.
    pub keep: bool,
    /// Live progress.
    pub progress: Progress,
    /// Run against this existing deployment instead of a sandbox (nothing installed).
    pub target: Option<DrillTarget>,
    /// With `target`: produce the scenario's faults there (those that can be).
    pub allow_faults: bool,
}

/// What a run produced.
pub struct RunOutcome {
    /// The report (also written to `report_dir`).
    pub report: Report,
    /// `report.json`.
    pub report_json: PathBuf,
    /// `report.html`, when the HTML report was written.
    pub report_html: Option<PathBuf>,
    /// The drill was stopped by SIGINT or SIGTERM.
    pub interrupted: bool,
    /// What could not be cleaned up, if anything.
    pub teardown_error: Option<String>,
}

/// Why a drill could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario uses something the runner cannot do yet.
    #[error("{0}")]
    Unsupported(String),
    /// A file or signal handler could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// Steps of the scenario the runner cannot run; checked before anything starts.
pub fn unsupported(scenario: &Scenario) -> Option<String> {
    let ha = scenario.topology.stub.replicas > 1;
    scenario.steps.iter().find_map(|s| match &s.action {
        StepAction::Fault(Fault::NetworkCut(_)) if ha => Some(format!(
            "step {}: networkCut with topology.stub.replicas: 2 is not supported by the \
             runner (the cut relay fronts one stub); see docs/drills.md",
            s.name
        )),
        _ => None,
    })
}

/// Milliseconds since the start of the first step.
struct Clock(Instant);

impl Clock {
    fn ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Runs `scenario` (already validated) on a new sandbox.
pub async fn run(scenario: &Scenario, mut opts: RunOptions) -> Result<RunOutcome, RunError> {
    let why = match &opts.target {
        Some(t) => t.refusal(scenario, opts.allow_faults),
        None => unsupported(scenario),
    };
    if let Some(why) = why {
        return Err(RunError::Unsupported(why));
    }
    for dir in [&opts.work_dir, &opts.report_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| RunError::Setup(format!("{}: {e}", dir.display())))?;
    }
    let sig =
        |k: SignalKind| signal(k).map_err(|e| RunError::Setup(format!("signal handler: {e}")));
    let (mut int, mut term) = (sig(SignalKind::interrupt())?, sig(SignalKind::terminate())?);
    let mut sb = Sandbox::new(&opts.exe, &opts.work_dir);
    let mut report = Report::new(scenario, unix_ms());
    let mut applied: Vec<(String, faults::Applied)> = Vec::new();
    let mut clock = Clock(Instant::now());
    let progress = &mut opts.progress;
    let mut interrupted = false;
    let target = opts.target.as_ref();
    let outcome = tokio::select! {
        r = drive(scenario, target, &mut sb, &mut applied, &mut report, &mut clock, progress) => r,
        _ = int.recv() => { interrupted = true; Err("interrupted (SIGINT)".to_string()) }
        _ = term.recv() => { interrupted = true; Err("interrupted (SIGTERM)".to_string()) }
    };
    if let Err(why) = outcome {
        progress.line(&format!(
            "drill: {}",
            why.lines().next().unwrap_or_default()
        ));
        report.aborted = Some(why);
    }
    revert_all(&mut sb, &mut applied, &mut report, &clock, progress).await;
    report.finish(scenario);
    let report_json = opts.report_dir.join("report.json");
    std::fs::write(&report_json, report.to_json())
        .map_err(|e| RunError::Setup(format!("{}: {e}", report_json.display())))?;
    let report_html = write_html(&report, &opts.report_dir);
    if opts.keep && !interrupted && sb.testbed.is_some() {
        progress.line(&format!(
            "sandbox kept up (--keep), faults reverted; logs in {}; Ctrl-C to stop it",
            opts.work_dir.display()
        ));
        for c in sb.clusters() {
            progress.line(&format!(
                "  {}: kubectl --kubeconfig {}",
                c.name,
                c.kubeconfig.display()
            ));
        }
        match write_target(scenario, &sb, &opts.work_dir) {
            Ok(path) => progress.line(&format!(
                "  as a target: causeway drill SCENARIO --target {} [--allow-faults]",
                path.display()
            )),
            Err(e) => progress.line(&format!("  (no target file: {e})")),
        }
        if let Some(dns) = sb.dns_udp {
            progress.line(&format!("  dns: dig @{} -p {} NAME", dns.ip(), dns.port()));
        }
        if let Some(s) = sb.scheduler_addr {
            progress.line(&format!("  scheduler: curl {s}/v1/plan"));
        }
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    if opts.target.is_none() {
        progress.line("drill: stopping the sandbox");
    }
    let teardown_error = sb.teardown().await;
    Ok(RunOutcome {
        report,
        report_json,
        report_html,
        interrupted,
        teardown_error,
    })
}

/// `<work>/target.yaml`: the kept sandbox as a `DrillTarget`.
fn write_target(scenario: &Scenario, sb: &Sandbox, work: &Path) -> Result<PathBuf, String> {
    let clusters: Vec<(String, PathBuf)> = sb
        .clusters()
        .iter()
        .map(|c| (c.name.clone(), c.kubeconfig.clone()))
        .collect();
    let users: Vec<(String, PathBuf)> = sb
        .users
        .iter()
        .map(|(n, k)| (n.clone(), k.clone()))
        .collect();
    let dns = sb.dns_udp.zip(sb.dns_api);
    let kubectl = sb.kubectl_bin().ok_or("no cluster")?;
    let yaml = crate::target::target_yaml(
        &format!("{}-sandbox", scenario.name),
        &kubectl,
        &clusters,
        &users,
        dns,
        sb.scheduler_addr,
        sb.stub_metrics().first().copied(),
    );
    let path = work.join("target.yaml");
    std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn write_html(report: &Report, dir: &Path) -> Option<PathBuf> {
    let path = dir.join("report.html");
    std::fs::write(&path, report.to_html()).ok()?;
    Some(path)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Reverts every applied fault, newest first.
async fn revert_all(
    sb: &mut Sandbox,
    applied: &mut Vec<(String, faults::Applied)>,
    report: &mut Report,
    clock: &Clock,
    progress: &mut Progress,
) {
    while let Some((name, a)) = applied.pop() {
        match faults::revert(sb, &a).await {
            Ok(()) => progress.line(&format!("drill: reverted {name}")),
            Err(e) => progress.line(&format!("drill: could not revert {name}: {e}")),
        }
        report.fault_ended(&name, clock.ms());
    }
}

/// Brings the sandbox up and runs the steps; `Err` aborts the drill.
async fn drive(
    scenario: &Scenario,
    target: Option<&DrillTarget>,
    sb: &mut Sandbox,
    applied: &mut Vec<(String, faults::Applied)>,
    report: &mut Report,
    clock: &mut Clock,
    progress: &mut Progress,
) -> Result<(), String> {
    match target {
        Some(t) => sb
            .attach(t, scenario, progress)
            .await
            .map_err(|e| format!("target: {e}"))?,
        None => sb
            .bring_up(scenario, progress)
            .await
            .map_err(|e| format!("sandbox: {e}"))?,
    }
    let observer = Observer::new(scenario, sb).map_err(|e| format!("sandbox: {e}"))?;
    *clock = Clock(Instant::now());
    report.started_at_unix_ms = unix_ms();
    let mut sampler = Sampler { last: None };
    let total = scenario.steps.len();
    for (i, step) in scenario.steps.iter().enumerate() {
        let head = format!("[{}/{total}] {}", i + 1, step.name);
        let started = clock.ms();
        let text = detail(&step.action);
        let outcome: Result<u64, String> = match &step.action {
            StepAction::Measure(_) => continue,
            StepAction::Wait(d) => {
                let end = Instant::now() + *d;
                while Instant::now() < end {
                    sampler.tick(&observer, report, clock).await;
                    progress.status(&format!(
                        "{} {head}: {text} ({} left)",
                        secs(clock.0.elapsed()),
                        secs(end.saturating_duration_since(Instant::now()))
                    ));
                    tokio::time::sleep(POLL.min(end.saturating_duration_since(Instant::now())))
                        .await;
                }
                Ok(clock.ms())
            }
            StepAction::Fault(f) => match faults::apply(sb, scenario, f).await {
                Ok(a) => {
                    let at = clock.ms();
                    report.fault_started(&step.name, at);
                    applied.push((step.name.clone(), a));
                    Ok(at)
                }
                Err(e) => Err(format!("could not apply: {e}")),
            },
            StepAction::Restore(name) => match applied.iter().rposition(|(n, _)| n == name) {
                Some(i) => {
                    let (_, a) = applied.remove(i);
                    let result = faults::revert(sb, &a).await;
                    let at = clock.ms();
                    report.fault_ended(name, at);
                    result
                        .map(|()| at)
                        .map_err(|e| format!("could not revert {name}: {e}"))
                }
                None => Err(format!("fault {name} is not applied")),
            },
            StepAction::Expect(e) => {
                await_expect(
                    e,
                    &head,
                    &text,
                    &observer,
                    report,
                    clock,
                    &mut sampler,
                    progress,
                )
                .await
            }
        };
        let ended = clock.ms();
        let ok = outcome.is_ok();
        let line = match &outcome {
            Ok(at) => format!(
                "ok   {:<24} {:>7} → {:>7}  {text}",
                step.name,
                secs(Duration::from_millis(started)),
                secs(Duration::from_millis(*at))
            ),
            Err(seen) => format!(
                "FAIL {:<24} {:>7} → {:>7}  {text}\n     observed: {}",
                step.name,
                secs(Duration::from_millis(started)),
                secs(Duration::from_millis(ended)),
                seen.replace('\n', "\n               ")
            ),
        };
        progress.line(&line);
        report.steps.push(StepReport::ran(
            &step.name,
            step.action.kind(),
            text,
            started,
            ended,
            outcome,
        ));
        if !ok {
            break;
        }
    }
    sampler.last = None;
    sampler.tick(&observer, report, clock).await;
    Ok(())
}

/// The timeline's samples, every [`SAMPLE_EVERY`].
struct Sampler {
    last: Option<Instant>,
}

impl Sampler {
    async fn tick(&mut self, observer: &Observer, report: &mut Report, clock: &Clock) {
        if self.last.is_some_and(|t| t.elapsed() < SAMPLE_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        // Observed when asked: a cluster that does not answer only delays the result.
        let at = clock.ms();
        let snap = observer.snapshot().await;
        for (series, value) in snap.samples() {
            report.sample(at, series, value);
        }
    }
}

/// Checks `e` every [`POLL`] until it holds (its instant) and then keeps holding for
/// `for`; `Err` is the account of what was observed.
#[allow(clippy::too_many_arguments)]
async fn await_expect(
    e: &Expect,
    head: &str,
    text: &str,
    observer: &Observer,
    report: &mut Report,
    clock: &Clock,
    sampler: &mut Sampler,
    progress: &mut Progress,
) -> Result<u64, String> {
    let start = Instant::now();
    let deadline = start + e.within;
    let mut held_since: Option<(Instant, u64)> = None;
    loop {
        // The instant of an observation is when it was asked (the answers reflect that
        // moment; a stopped API server only makes the reply late). The timeline is
        // sampled at the same time, so a slow cluster does not slow the polling twice.
        let now = Instant::now();
        let at = clock.ms();
        let (seen, ()) = tokio::join!(
            observer.check(&e.condition),
            sampler.tick(observer, report, clock)
        );
        if let Some((series, value)) = &seen.sample {
            report.sample(at, series.clone(), value.clone());
        }
        match (seen.holds, held_since) {
            (true, None) => {
                held_since = Some((now, at));
                if e.hold.is_none() {
                    return Ok(at);
                }
            }
            (true, Some((since, at))) => {
                if e.hold.is_some_and(|h| now.duration_since(since) >= h) {
                    return Ok(at);
                }
            }
            (false, Some((since, _))) => {
                return Err(format!(
                    "it held for {} of the {} asked, then: {}\n{}",
                    secs(now.duration_since(since)),
                    secs(e.hold.unwrap_or_default()),
                    seen.text,
                    observer.snapshot().await.account()
                ));
            }
            (false, None) => {
                if now >= deadline {
                    return Err(format!(
                        "not within {}: {}\n{}",
                        secs(e.within),
                        seen.text,
                        observer.snapshot().await.account()
                    ));
                }
            }
        }
        let awaited = match held_since {
            Some((since, _)) => format!(
                "holding {} of {}",
                secs(now.duration_since(since)),
                secs(e.hold.unwrap_or_default())
            ),
            None => format!("{} of {}", secs(now.duration_since(start)), secs(e.within)),
        };
        progress.status(&format!(
            "{} {head}: {text} — seen: {} ({awaited})",
            secs(clock.0.elapsed()),
            seen.text
        ));
        tokio::time::sleep(POLL).await;
    }
}
