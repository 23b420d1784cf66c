//! `causeway drill`: failover drills from scenario files (issue 11).
//!
//! `--list` and `--validate` (the scenario through `causeway-drill`, its policy files
//! through the scheduler's loader and its zone files through dns's); `causeway drill
//! FILE` runs the scenario on a local sandbox (`causeway_drill::run`) and writes its
//! report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::io::IsTerminal as _;

use anyhow::Context;
use causeway_config::ConfigError;
use causeway_drill::Scenario;
use causeway_drill::report::detail;
use causeway_drill::scenario::{Condition, StepAction};
use causeway_model::ClusterId;

/// Exit status of a drill that ran and failed (an expectation or a measure).
const EXIT_FAILED: i32 = 1;
/// Exit status of a drill stopped by SIGINT/SIGTERM.
const EXIT_INTERRUPTED: i32 = 130;

/// Options of `causeway drill`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Runs a failover drill described in a scenario file (a sandbox topology, the \
    policy and zone files to install, and ordered steps: waits, faults, expectations with \
    deadlines, measures) on a local sandbox of real clusters, and writes a report \
    (report.json, report.html).\n\n\
    The sandbox (testbed clusters, stub, agents, dns, scheduler) is started from this \
    binary and torn down at the end; every fault is reverted at the end, on failure and on \
    Ctrl-C. Exit status: 0 passed, 1 an expectation or measure failed (or an error), 130 \
    interrupted. Reference: docs/drills.md.",
    after_help = "Examples:\n  causeway drill --list\n  \
    causeway drill scenarios/quickstart.yaml --validate\n  \
    causeway drill scenarios/quickstart.yaml\n  \
    causeway drill scenarios/partition.yaml --report out/ --keep\n  \
    causeway drill scenarios/latency-shift.yaml --target staging.yaml --allow-faults"
)]
pub struct Args {
    /// The scenario file.
    #[arg(value_name = "FILE", required_unless_present = "list")]
    file: Option<PathBuf>,
    /// List the scenarios in --dir, one line each, and exit.
    #[arg(long, conflicts_with_all = ["file", "validate"])]
    list: bool,
    /// Only check the file (and the files it installs), print a summary and exit.
    #[arg(long, alias = "check")]
    validate: bool,
    /// Where --list looks for scenarios (`*.yaml`).
    #[arg(long, value_name = "DIR", default_value = "scenarios")]
    dir: PathBuf,
    /// Where report.json and report.html go (default: the work directory).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// The drill's work directory: configs, logs, the testbed (default: a new
    /// causeway-drill-NAME-TIME directory in the temporary directory).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Leave the sandbox up after the drill, until Ctrl-C (and write
    /// <work>/target.yaml, a DrillTarget of it for --target).
    #[arg(long, conflicts_with = "validate")]
    keep: bool,
    /// Run against an existing deployment described by this DrillTarget file instead of
    /// a sandbox: nothing is installed; faults need --allow-faults.
    #[arg(long, value_name = "TARGET", conflicts_with = "keep")]
    target: Option<PathBuf>,
    /// With --target: produce the scenario's faults in that deployment (those that can
    /// be made through its APIs: scaling, dns's latency API, the scheduler's external
    /// value), reverted at the end. Without it a scenario with a fault is refused.
    #[arg(long, requires = "target")]
    allow_faults: bool,
}

/// Runs `causeway drill`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.list {
        return list(&args.dir);
    }
    let Some(file) = args.file else {
        anyhow::bail!("give a scenario file, or --list");
    };
    let scenario = validate(&file)?;
    if args.validate {
        print!("{}", summary(&scenario));
        return Ok(());
    }
    let target = match &args.target {
        Some(t) => Some(causeway_drill::DrillTarget::load(t)?),
        None => None,
    };
    let refused = match &target {
        Some(t) => t.refusal(&scenario, args.allow_faults),
        None => causeway_drill::run::unsupported(&scenario),
    };
    if let Some(why) = refused {
        anyhow::bail!("{}: {why}", file.display());
    }
    let work_dir = match args.work_dir {
        Some(d) => d,
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            std::env::temp_dir().join(format!("causeway-drill-{}-{secs}", scenario.name))
        }
    };
    let work_dir = absolute(&work_dir)?;
    let report_dir = absolute(args.report.as_deref().unwrap_or(&work_dir))?;
    let exe = std::env::current_exe().context("cannot find this binary to start the sandbox")?;
    let tty = std::io::stderr().is_terminal();
    eprintln!(
        "drill {}: {}\n  work directory: {}",
        scenario.name,
        scenario.summary_line(),
        work_dir.display()
    );
    let opts = causeway_drill::run::RunOptions {
        exe,
        work_dir: work_dir.clone(),
        report_dir,
        keep: args.keep,
        target,
        allow_faults: args.allow_faults,
        progress: causeway_drill::run::Progress::new(Box::new(std::io::stderr()), tty),
    };
    let outcome = causeway_drill::run::run(&scenario, opts).await?;
    print!("{}", outcome.report.summary());
    println!("report: {}", outcome.report_json.display());
    if let Some(html) = &outcome.report_html {
        println!("        {}", html.display());
    }
    println!("logs:   {}", work_dir.display());
    if let Some(e) = &outcome.teardown_error {
        eprintln!("causeway: warning: {e}");
    }
    if outcome.interrupted {
        std::process::exit(EXIT_INTERRUPTED);
    }
    if !outcome.report.passed {
        std::process::exit(EXIT_FAILED);
    }
    Ok(())
}

/// `p` made absolute against the current directory (children run elsewhere).
fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}", p.display()))
}

/// `--list`: one line per scenario file; an invalid one is shown with its error and
/// makes the command fail.
fn list(dir: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot list scenarios in {} (run from the Causeway checkout, or pass --dir)",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("no scenario files (*.yaml) in {}", dir.display());
    }
    let mut rows = Vec::new();
    let mut bad = 0;
    for f in &files {
        match Scenario::load(f) {
            Ok(s) => rows.push((s.name.clone(), s.summary_line().to_string(), f.clone())),
            Err(e) => {
                bad += 1;
                rows.push(("(invalid)".into(), e.to_string(), f.clone()));
            }
        }
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (name, line, file) in &rows {
        println!("{name:<width$}  {line}");
        println!("{:<width$}  {}", "", file.display());
    }
    if bad > 0 {
        anyhow::bail!("{bad} of {} scenario files are invalid", files.len());
    }
    Ok(())
}

/// Reads and checks the scenario and everything it installs.
fn validate(file: &Path) -> anyhow::Result<Scenario> {
    let scenario = Scenario::load(file)?;
    check_policies(&scenario)?;
    check_zones(&scenario)?;
    Ok(scenario)
}

/// An error at `field` of the scenario document.
fn scenario_error(scenario: &Scenario, field: &str, reason: impl std::fmt::Display) -> ConfigError {
    match causeway_config::read_file(&scenario.file) {
        Ok(docs) if !docs.is_empty() => docs[0].error(field, reason),
        _ => ConfigError::file(&scenario.file, reason),
    }
}

/// The policy files through the scheduler's own loader (with a `Scheduler` document
/// of the drill's when they hold none); every cluster they name must be in the
/// topology.
fn check_policies(scenario: &Scenario) -> anyhow::Result<()> {
    if scenario.install.policies.is_empty() {
        return Ok(());
    }
    let mut files: Vec<PathBuf> = scenario
        .install
        .policies
        .iter()
        .map(|p| scenario.resolve(p))
        .collect();
    let has_scheduler = files.iter().any(|f| {
        causeway_config::read_file(f).is_ok_and(|d| d.iter().any(|d| d.kind == "Scheduler"))
    });
    // The drill's own Scheduler document, as the runner will write it.
    let generated = std::env::temp_dir().join(format!(
        "causeway-drill-validate-{}-scheduler.yaml",
        std::process::id()
    ));
    if !has_scheduler {
        std::fs::write(
            &generated,
            "apiVersion: causeway.dev/v1alpha1\nkind: Scheduler\nmetadata: {name: drill}\n\
             spec: {stubKubeconfig: drill.kubeconfig, interval: 1s}\n",
        )
        .with_context(|| format!("cannot write {}", generated.display()))?;
        files.insert(0, generated.clone());
    }
    let loaded = causeway_scheduler::policy::SchedulerConfig::load(&files);
    if !has_scheduler {
        let _ = std::fs::remove_file(&generated);
    }
    let config = loaded?;
    let topology: BTreeSet<&ClusterId> =
        scenario.topology.clusters.iter().map(|c| &c.name).collect();
    for policy in config.policies().iter() {
        for c in policy.clusters() {
            if !topology.contains(c) {
                return Err(scenario_error(
                    scenario,
                    "spec.topology.clusters",
                    format_args!(
                        "policy {} (install.policies) names cluster {c}, which is not in the topology",
                        policy.name()
                    ),
                )
                .into());
            }
        }
    }
    Ok(())
}

/// The zone files through dns's own loader; every `expect.dns` name must be a GSLB
/// name of them, and every cluster of its answer one of that name's targets.
fn check_zones(scenario: &Scenario) -> anyhow::Result<()> {
    let mut docs = Vec::new();
    for p in &scenario.install.zones {
        docs.extend(causeway_config::read_file(&scenario.resolve(p))?);
    }
    let zone_file = scenario
        .install
        .zones
        .first()
        .map(|p| scenario.resolve(p))
        .unwrap_or_else(|| scenario.file.clone());
    let config = if docs.is_empty() {
        None
    } else {
        Some(causeway_dns::Config::from_documents(&zone_file, &docs)?)
    };
    for (i, step) in scenario.steps.iter().enumerate() {
        let StepAction::Expect(e) = &step.action else {
            continue;
        };
        let Condition::Dns(d) = &e.condition else {
            continue;
        };
        let Some(config) = &config else {
            return Err(scenario_error(
                scenario,
                &format!("spec.steps[{i}].expect.dns"),
                "a dns expectation needs a zone in install.zones",
            )
            .into());
        };
        let wanted = d.name.trim_end_matches('.').to_ascii_lowercase();
        let mut targets: Option<BTreeSet<&ClusterId>> = None;
        for z in &config.zones {
            let origin = z
                .origin
                .to_string()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            for g in &z.spec.gslb {
                let name = g.name.trim_end_matches('.').to_ascii_lowercase();
                let full = if g.name.ends_with('.') {
                    name
                } else {
                    format!("{name}.{origin}")
                };
                if full == wanted {
                    targets = Some(g.targets.iter().map(|t| &t.cluster).collect());
                }
            }
        }
        let Some(targets) = targets else {
            return Err(scenario_error(
                scenario,
                &format!("spec.steps[{i}].expect.dns.name"),
                format_args!(
                    "{} is not a GSLB name of the zones in install.zones",
                    d.name
                ),
            )
            .into());
        };
        let (causeway_drill::scenario::DnsMatch::Equals(list)
        | causeway_drill::scenario::DnsMatch::Contains(list)
        | causeway_drill::scenario::DnsMatch::Excludes(list)) = &d.answer;
        if let Some(c) = list.iter().find(|c| !targets.contains(c)) {
            return Err(scenario_error(
                scenario,
                &format!("spec.steps[{i}].expect.dns"),
                format_args!("{c} is not a target of {} in install.zones", d.name),
            )
            .into());
        }
    }
    Ok(())
}

/// The `--validate` summary.
fn summary(s: &Scenario) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "ok: {}: Scenario/{}", s.file.display(), s.name);
    let _ = writeln!(out, "  {}", s.description);
    let clusters: Vec<String> = s
        .topology
        .clusters
        .iter()
        .map(|c| {
            let role = match c.role {
                causeway_drill::scenario::Role::Idc => "idc",
                causeway_drill::scenario::Role::Cloud => "cloud",
            };
            format!("{} ({role}, {}x{} CPU)", c.name, c.nodes, c.cpu)
        })
        .collect();
    let _ = writeln!(out, "  clusters: {}", clusters.join(", "));
    if !s.topology.clients.is_empty() {
        let clients: Vec<String> = s
            .topology
            .clients
            .iter()
            .map(|c| format!("{} ({})", c.name, c.subnet))
            .collect();
        let _ = writeln!(out, "  clients:  {}", clients.join(", "));
    }
    let _ = writeln!(
        out,
        "  install:  {} policy, {} zone, {} workload file(s)",
        s.install.policies.len(),
        s.install.zones.len(),
        s.install.workloads.len()
    );
    let _ = writeln!(out, "  steps:");
    let width = s.steps.iter().map(|st| st.name.len()).max().unwrap_or(0);
    for (i, st) in s.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>3}. {:<width$}  {:<7}  {}",
            i + 1,
            st.name,
            st.action.kind(),
            detail(&st.action)
        );
    }
    out
}
