//! `causeway drill FILE` for real: the built binary brings up a sandbox (testbed
//! clusters, stub, agents, dns, scheduler), runs the scenario and writes report.json.
//!
//! * quickstart passes, with its measures and a timeline;
//! * partition passes, and its report shows idc-bj fenced (by its agent) before ali-hz
//!   was promoted, from the role ConfigMaps' `causeway.dev/role-changed-at`;
//! * a scenario with an impossible deadline fails with an account of what was
//!   observed, exit status 1;
//! * SIGINT in the middle of a drill reverts its fault, stops everything and exits
//!   non-zero; no process it started survives.
//!
//! Drills run one at a time (each starts three clusters).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use causeway_drill::Report;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// One drill at a time: each brings up its own clusters.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `causeway drill FILE --work-dir WORK`; (exit code, stdout, stderr, report).
fn drill(file: &Path, work: &Path) -> (Option<i32>, String, String, Report) {
    let out = Command::new(BIN)
        .arg("drill")
        .arg(file)
        .arg("--work-dir")
        .arg(work)
        .env("CAUSEWAY_LOG", "warn")
        .output()
        .expect("run causeway drill");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = std::fs::read_to_string(work.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e})\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    let report = Report::from_json(&json).expect("report.json parses");
    (out.status.code(), stdout, stderr, report)
}

/// Every PID the drill recorded in `<work>/pids` is gone, and no process has the work
/// directory in its command line or as its working directory.
fn assert_nothing_left(work: &Path) {
    let pids = std::fs::read_to_string(work.join("pids")).expect("pids file");
    assert!(
        pids.lines().count() >= 5,
        "too few children recorded: {pids}"
    );
    let work_s = work.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left: Vec<String> = Vec::new();
        for line in pids.lines() {
            let pid = line.split_whitespace().next().unwrap_or_default();
            if running(pid) {
                left.push(format!("{line} (recorded)"));
            }
        }
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || !running(&pid) {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
            if cmdline.contains(&work_s) || cwd.starts_with(work) {
                left.push(format!("{pid}: {cmdline}"));
            }
        }
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the drill survived:\n{}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `pid` runs (a zombie does not count).
fn running(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

/// The last value of `series` in the report's samples.
fn last_sample<'a>(r: &'a Report, series: &str) -> Option<&'a str> {
    r.samples
        .iter()
        .rev()
        .find(|s| s.series == series)
        .map(|s| s.value.as_str())
}

/// `ROLE at TIME by WHO` → (ROLE, TIME, WHO).
fn role_sample(v: &str) -> (String, SystemTime, String) {
    let (role, rest) = v.split_once(" at ").unwrap_or_else(|| panic!("{v:?}"));
    let (at, by) = rest.split_once(" by ").unwrap_or_else(|| panic!("{v:?}"));
    let at = humantime::parse_rfc3339_weak(at.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(at))
        .unwrap_or_else(|e| panic!("{at:?}: {e}"));
    (role.to_string(), at, by.to_string())
}

#[test]
fn quickstart_passes_with_its_measures_and_a_timeline() {
    let _one = lock();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let (code, stdout, stderr, r) = drill(&scenario("quickstart.yaml"), &work);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(r.passed && r.aborted.is_none(), "{}", r.summary());
    assert!(stdout.contains("PASSED"), "{stdout}");
    assert_eq!(r.steps.len(), 7);
    assert!(r.steps.iter().all(|s| s.passed && s.at_ms.is_some()));
    let burst = r
        .measures
        .iter()
        .find(|m| m.name == "time-to-burst")
        .unwrap();
    assert!(burst.passed && burst.ms.unwrap() <= 30_000, "{burst:?}");
    // The timeline: aws-sg went 0 → ≥1 → 0, DNS answered aws-sg at some point.
    let aws: Vec<&str> = r
        .samples
        .iter()
        .filter(|s| s.series == "ready shop/web in aws-sg")
        .map(|s| s.value.as_str())
        .collect();
    assert!(aws.len() >= 2 && aws.last() == Some(&"0"), "{aws:?}");
    assert!(
        r.samples.iter().any(
            |s| s.series == "dns app.svc.example. from singapore" && s.value.contains("aws-sg")
        ),
        "{:?}",
        r.samples
    );
    assert!(
        r.faults
            .iter()
            .any(|f| f.name == "surge" && f.to_ms.is_some())
    );
    println!("{}", r.summary());
    assert_nothing_left(&work);
}

#[test]
fn partition_fences_the_old_primary_before_the_backup_is_promoted() {
    let _one = lock();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let (code, stdout, stderr, r) = drill(&scenario("partition.yaml"), &work);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(r.passed, "{}", r.summary());
    let idc = last_sample(&r, "role db in idc-bj").expect("idc-bj role samples");
    let ali = last_sample(&r, "role db in ali-hz").expect("ali-hz role samples");
    let (idc_role, fenced_at, fenced_by) = role_sample(idc);
    let (ali_role, promoted_at, promoted_by) = role_sample(ali);
    assert_eq!(
        (idc_role.as_str(), fenced_by.as_str()),
        ("fenced", "agent/idc-bj")
    );
    assert_eq!(
        (ali_role.as_str(), promoted_by.as_str()),
        ("primary", "scheduler")
    );
    assert!(
        fenced_at < promoted_at,
        "idc-bj fenced at {idc}, ali-hz promoted at {ali}"
    );
    // Never two primaries in any sample.
    for s in r.samples.iter().filter(|s| s.series == "primary db") {
        assert!(!s.value.contains(','), "two primaries: {s:?}");
    }
    let cut = r.faults.iter().find(|f| f.name == "cut").expect("cut band");
    assert!(cut.to_ms.is_some(), "the cut was healed: {cut:?}");
    println!(
        "{}fenced {:.1}s before the promotion",
        r.summary(),
        promoted_at
            .duration_since(fenced_at)
            .unwrap_or_default()
            .as_secs_f64()
    );
    assert_nothing_left(&work);
}

#[test]
fn idc_outage_promotes_the_backup_within_its_rto() {
    let _one = lock();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let (code, stdout, stderr, r) = drill(&scenario("idc-outage.yaml"), &work);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(r.passed && r.aborted.is_none(), "{}", r.summary());
    assert!(r.steps.iter().all(|s| s.passed && s.at_ms.is_some()));
    let rto = r.measures.iter().find(|m| m.name == "rto").expect("rto");
    assert!(rto.passed && rto.ms.unwrap() <= 30_000, "{rto:?}");
    // Never two primaries in any sample, and ali-hz ends primary.
    for s in r.samples.iter().filter(|s| s.series == "primary db") {
        assert!(!s.value.contains(','), "two primaries: {s:?}");
    }
    assert_eq!(
        last_sample(&r, "primary db"),
        Some("ali-hz"),
        "{:?}",
        r.samples
    );
    // Every fault band was closed (reverted at the end).
    assert!(r.faults.iter().all(|f| f.to_ms.is_some()), "{:?}", r.faults);
    println!("{}", r.summary());
    assert_nothing_left(&work);
}

#[test]
fn an_impossible_deadline_fails_with_what_was_observed() {
    let _one = lock();
    let dir = tempfile::tempdir().unwrap();
    let web = scenario("quickstart/web.yaml");
    let file = dir.path().join("impossible.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: causeway.dev/v1alpha1
kind: Scenario
metadata: {{name: impossible}}
spec:
  description: Asks for more ready replicas than the cluster can hold, within 2 s.
  topology:
    clusters:
      - {{name: idc-bj, role: idc, nodes: 1, cpu: \"32\"}}
  install:
    workloads:
      - {{file: {}}}
  steps:
    - name: too-many
      expect:
        replicasReady: {{cluster: idc-bj, workload: {{namespace: shop, deployment: web}}, op: \">=\", value: 5}}
        within: 2s
    - {{name: after, wait: 1s}}
",
            web.display()
        ),
    )
    .unwrap();
    let work = dir.path().join("work");
    let (code, stdout, stderr, r) = drill(&file, &work);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!r.passed && r.aborted.is_none(), "{}", r.summary());
    let step = &r.steps[0];
    assert!(!step.passed && !step.skipped);
    assert!(step.took_ms >= 2_000 && step.took_ms < 10_000, "{step:?}");
    let observed = step.observed.as_deref().expect("observed");
    assert!(
        observed.contains("not within 2.0s") && observed.contains("ready in idc-bj"),
        "{observed}"
    );
    assert!(
        observed.contains("ready shop/web: idc-bj"),
        "the account lists replicas per cluster: {observed}"
    );
    assert!(r.steps[1].skipped, "{:?}", r.steps[1]);
    assert!(
        stdout.contains("FAILED") && stdout.contains("observed:"),
        "{stdout}"
    );
    assert_nothing_left(&work);
}

#[test]
fn sigint_mid_drill_reverts_the_fault_and_leaves_no_process() {
    let _one = lock();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let mut child = Command::new(BIN)
        .arg("drill")
        .arg(scenario("partition.yaml"))
        .arg("--work-dir")
        .arg(&work)
        .env("CAUSEWAY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start causeway drill");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Interrupt once the network cut is applied.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !seen.lines().any(|l| l.starts_with("ok   cut")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            Err(e) => panic!("no `ok cut` line ({e}):\n{seen}"),
        }
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the drill did not exit within 60 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    seen.extend(rx.try_iter().map(|l| l + "\n"));
    assert_eq!(status.code(), Some(130), "{status:?}\n{seen}");
    assert!(seen.contains("drill: reverted cut"), "{seen}");
    let report = Report::from_json(&std::fs::read_to_string(work.join("report.json")).unwrap())
        .expect("report.json");
    assert!(
        report
            .aborted
            .as_deref()
            .is_some_and(|a| a.contains("SIGINT")),
        "{report:?}"
    );
    assert!(!report.passed);
    assert!(
        report.faults.iter().all(|f| f.to_ms.is_some()),
        "{:?}",
        report.faults
    );
    assert_nothing_left(&work);
}

#[test]
fn tunnel_ha_keeps_kubectl_working() {
    let _one = lock();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let (code, stdout, stderr, r) = drill(&scenario("tunnel-ha.yaml"), &work);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(r.passed && r.aborted.is_none(), "{}", r.summary());
    assert!(r.steps.iter().all(|s| s.passed && s.at_ms.is_some()));
    let at = |name: &str| {
        r.steps
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.at_ms)
            .unwrap_or_else(|| panic!("no instant for {name}"))
    };
    // The kubectl series: ok (2 agents) → ok after one was killed (held 5 s) →
    // unavailable (none left: 503) → ok (one restored) → unavailable (the active stub
    // killed) → ok (the standby took over). Never "refused" once alice could read:
    // an unavailable cluster is told from a refusal.
    let series = "kubectl get pods -n shop as alice in idc-bj";
    let seen: Vec<(u64, &str)> = r
        .samples
        .iter()
        .filter(|s| s.series == series)
        .map(|s| (s.at_ms, s.value.as_str()))
        .collect();
    let values: Vec<&str> = seen.iter().map(|(_, v)| *v).collect();
    assert!(
        values.ends_with(&["ok", "unavailable", "ok", "unavailable", "ok"]),
        "{series}: {seen:?}"
    );
    let (kill_one, kill_other) = (at("kill-one"), at("kill-other"));
    assert!(
        seen.iter()
            .all(|(t, v)| *v == "ok" || *t < kill_one || *t >= kill_other),
        "failed between the two kills: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(t, v)| *v != "refused" || *t < at("alice-reads")),
        "alice refused after she could read: {seen:?}"
    );
    assert!(kill_other >= kill_one + 5_000, "still-works held 5 s");
    // The member RBAC refused bob (no binding) and alice's write (view only), as 403s.
    for (s, series) in [
        ("bob-refused", "kubectl get pods -n shop as bob in idc-bj"),
        (
            "alice-cannot-write",
            "kubectl scale deployment web -n shop --replicas=3 --dry-run=server as alice in idc-bj",
        ),
    ] {
        assert!(r.steps.iter().any(|x| x.name == s && x.passed), "{s}");
        assert_eq!(last_sample(&r, series), Some("refused"), "{series}");
    }
    let mut audit = String::new();
    for name in ["stub-0-audit.log", "stub-1-audit.log"] {
        audit.push_str(&std::fs::read_to_string(work.join(name)).unwrap_or_default());
    }
    assert!(
        audit.contains("\"code\":403"),
        "the stubs' audit logs record the member's refusals"
    );
    // Stub failover: the active stub SIGKILLed, the standby served within 15 s (its
    // 4 s Lease had to expire first), and kubectl was unavailable in between.
    let takeover = r.measures.iter().find(|m| m.name == "takeover").unwrap();
    let ms = takeover.ms.expect("takeover measured");
    assert!(takeover.passed && ms <= 15_000, "{takeover:?}");
    assert!(
        seen.iter().any(|(t, v)| *v == "unavailable"
            && *t >= at("stub-down")
            && *t < at("standby-serves")),
        "no failure seen after the stub was killed: {seen:?}"
    );
    println!("stub takeover: {ms} ms");
    assert!(r.faults.iter().all(|f| f.to_ms.is_some()), "{:?}", r.faults);
    println!("{}", r.summary());
    assert_nothing_left(&work);
}

/// The values of `series` in the report's samples, in order.
fn series_values<'a>(r: &'a Report, series: &str) -> Vec<&'a str> {
    r.samples
        .iter()
        .filter(|s| s.series == series)
        .map(|s| s.value.as_str())
        .collect()
}

/// The instant of the step named `name`.
fn step_at(r: &Report, name: &str) -> u64 {
    r.steps
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.at_ms)
        .unwrap_or_else(|| panic!("no instant for {name}: {}", r.summary()))
}

#[test]
fn active_active_moves_a_lost_share_and_rejoins_after_rebalance() {
    let _one = lock();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let (code, stdout, stderr, r) = drill(&scenario("active-active.yaml"), &work);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(r.passed && r.aborted.is_none(), "{}", r.summary());
    assert_eq!(r.steps.len(), 12);
    assert!(r.steps.iter().all(|s| s.passed && s.at_ms.is_some()));
    let moved = r
        .measures
        .iter()
        .find(|m| m.name == "time-to-move")
        .unwrap();
    assert!(moved.passed && moved.ms.unwrap() <= 15_000, "{moved:?}");
    // aws-sg is held out of DNS for rebalanceAfter (8 s) once it is back.
    let rejoin = r
        .measures
        .iter()
        .find(|m| m.name == "time-to-rejoin")
        .unwrap();
    let ms = rejoin.ms.unwrap();
    assert!(
        rejoin.passed && (8_000..=30_000).contains(&ms),
        "{rejoin:?}"
    );
    // The timeline: 4/2/2, then 5/3 without aws-sg, then 4/2 again.
    let idc = series_values(&r, "ready shop/cart in idc-bj");
    assert!(
        idc.contains(&"4") && idc.contains(&"5") && idc.last() == Some(&"4"),
        "{idc:?}"
    );
    let ali = series_values(&r, "ready shop/cart in ali-hz");
    assert!(ali.contains(&"3") && ali.last() == Some(&"2"), "{ali:?}");
    let dns = series_values(&r, "dns cart.svc.example.");
    let all = dns.iter().position(|v| *v == "ali-hz,aws-sg,idc-bj");
    let without = dns.iter().rposition(|v| *v == "ali-hz,idc-bj");
    assert!(
        all.is_some() && all < without && dns.last() == Some(&"ali-hz,aws-sg,idc-bj"),
        "{dns:?}"
    );
    // The fault was reverted by its restore step, not at the end.
    let loss = r
        .faults
        .iter()
        .find(|f| f.name == "loss")
        .expect("loss band");
    assert_eq!(loss.to_ms, Some(step_at(&r, "return")), "{loss:?}");
    println!("{}", r.summary());
    assert_nothing_left(&work);
}

#[test]
fn latency_shift_switches_the_clients_answer_and_back() {
    let _one = lock();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let (code, stdout, stderr, r) = drill(&scenario("latency-shift.yaml"), &work);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(r.passed && r.aborted.is_none(), "{}", r.summary());
    assert_eq!(r.steps.len(), 13);
    assert!(r.steps.iter().all(|s| s.passed && s.at_ms.is_some()));
    for name in [
        "time-to-switch",
        "time-to-switch-back",
        "time-to-drop",
        "time-to-return",
    ] {
        let m = r.measures.iter().find(|m| m.name == name).unwrap();
        assert!(m.passed && m.ms.unwrap() <= 5_000, "{m:?}");
        println!("{name}: {} ms", m.ms.unwrap_or_default());
    }
    // singapore: aws-sg → ali-hz (latency) → aws-sg → ali-hz (aws-sg's health check
    // fails) → aws-sg; beijing: idc-bj throughout.
    let sg = series_values(&r, "dns api.svc.example. from singapore");
    assert_eq!(
        sg,
        ["aws-sg", "ali-hz", "aws-sg", "ali-hz", "aws-sg"],
        "{:?}",
        r.samples
    );
    // The drop was dns's prober's doing: it counted aws-sg going unhealthy.
    assert!(r.steps.iter().any(|s| s.name == "probe-saw-it" && s.passed));
    let health = r
        .faults
        .iter()
        .find(|f| f.name == "aws-sg-unhealthy")
        .expect("band");
    assert_eq!(
        health.to_ms,
        Some(step_at(&r, "aws-sg-healthy")),
        "{health:?}"
    );
    let bj = series_values(&r, "dns api.svc.example. from beijing");
    assert_eq!(bj, ["idc-bj"], "{:?}", r.samples);
    let shift = r.faults.iter().find(|f| f.name == "shift").expect("band");
    assert_eq!(shift.to_ms, Some(step_at(&r, "shift-back")), "{shift:?}");
    println!("{}", r.summary());
    assert_nothing_left(&work);
}
