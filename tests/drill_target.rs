//! `causeway drill FILE --target TARGET [--allow-faults]` against an existing deployment:
//! a sandbox kept up by `causeway drill --keep` (which writes `<work>/target.yaml`) stands
//! in for it.
//!
//! * without `--allow-faults` a scenario with a fault is refused before anything
//!   happens, naming its fault steps;
//! * with it, a fault that cannot be produced remotely (healthFailing) is refused up
//!   front, naming the step;
//! * a scenario naming a workload the deployment lacks fails clearly (nothing is
//!   installed in a target);
//! * a scenario with a latencyChange (dns's API), a loadSurge by scaling, dns and
//!   kubectl expectations passes against the target, and its faults are reverted there;
//! * the kept sandbox then stops on SIGINT and leaves no process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use causeway_drill::Report;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The sandbox kept up: 3 clusters, dns with latency-shift's zone, shop/web in idc-bj,
/// user alice.
fn kept_scenario(dir: &Path) -> PathBuf {
    let text = format!(
        "apiVersion: causeway.dev/v1alpha1
kind: Scenario
metadata: {{name: kept}}
spec:
  description: a sandbox to keep up as a target
  topology:
    clusters:
      - {{name: idc-bj, role: idc, nodes: 1, cpu: \"64\"}}
      - {{name: ali-hz, role: cloud, nodes: 1, cpu: \"2\"}}
      - {{name: aws-sg, role: cloud, nodes: 1, cpu: \"2\"}}
    clients:
      - {{name: beijing, subnet: 198.51.100.0/24, rttMs: {{idc-bj: 5, ali-hz: 30, aws-sg: 60}}}}
      - {{name: singapore, subnet: 203.0.113.0/24, rttMs: {{idc-bj: 70, ali-hz: 50, aws-sg: 8}}}}
    users:
      - {{name: alice, group: dev}}
  install:
    zones: [{zone}]
    workloads: [{{file: {web}}}]
  steps:
    - name: up
      expect:
        dns: {{name: api.svc.example., client: beijing, equals: [idc-bj]}}
        within: 15s
",
        zone = repo("scenarios/latency-shift/zone.yaml").display(),
        web = repo("scenarios/quickstart/web.yaml").display(),
    );
    let p = dir.join("kept.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// What runs against the target: the same topology, no install, and faults that can be
/// produced through the deployment's APIs.
fn target_scenario(dir: &Path, extra_steps: &str) -> PathBuf {
    let text = format!(
        "apiVersion: causeway.dev/v1alpha1
kind: Scenario
metadata: {{name: against-target}}
spec:
  description: latency change and a scale surge through the target's APIs
  topology:
    clusters:
      - {{name: idc-bj, role: idc}}
      - {{name: ali-hz, role: cloud}}
      - {{name: aws-sg, role: cloud}}
    clients:
      - {{name: beijing, subnet: 198.51.100.0/24, rttMs: {{idc-bj: 5, ali-hz: 30, aws-sg: 60}}}}
      - {{name: singapore, subnet: 203.0.113.0/24, rttMs: {{idc-bj: 70, ali-hz: 50, aws-sg: 8}}}}
    users:
      - {{name: alice, group: dev}}
  install:
    zones: [{zone}]
  steps:
    - name: singapore-near
      expect:
        dns: {{name: api.svc.example., client: singapore, equals: [aws-sg]}}
        within: 10s
    - name: alice-reads
      expect:
        kubectl: {{user: alice, cluster: idc-bj, args: [get, pods, -n, shop], outcome: ok}}
        within: 10s
{extra_steps}",
        zone = repo("scenarios/latency-shift/zone.yaml").display(),
    );
    let p = dir.join("against-target.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

const FAULT_STEPS: &str = "    - name: shift
      fault: {latencyChange: {client: singapore, rttMs: {aws-sg: 120}}}
    - name: switched
      expect:
        dns: {name: api.svc.example., client: singapore, equals: [ali-hz]}
        within: 5s
    - name: surge
      fault: {loadSurge: {scale: {cluster: idc-bj, workload: {namespace: shop, deployment: web}, replicas: 3}}}
    - name: scaled
      expect:
        replicasReady: {cluster: idc-bj, workload: {namespace: shop, deployment: web}, op: \">=\", value: 3}
        within: 30s
    - name: shift-back
      restore: shift
    - name: back
      expect:
        dns: {name: api.svc.example., client: singapore, equals: [aws-sg]}
        within: 5s
    - name: time-to-switch
      measure: {from: shift, to: switched, atMost: 5s}
";

fn drill(args: &[&Path]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("drill")
        .args(args)
        .env("CAUSEWAY_LOG", "warn")
        .output()
        .expect("run causeway drill");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn running(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

#[test]
fn a_scenario_runs_against_a_kept_sandbox_as_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let kept_work = dir.path().join("kept");
    let mut child = Command::new(BIN)
        .arg("drill")
        .arg(kept_scenario(dir.path()))
        .arg("--keep")
        .arg("--work-dir")
        .arg(&kept_work)
        .env("CAUSEWAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start causeway drill --keep");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !seen.contains("as a target: causeway drill SCENARIO --target") {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            Err(e) => {
                let _ = child.kill();
                panic!("the kept sandbox did not come up ({e}):\n{seen}");
            }
        }
    }
    let target = kept_work.join("target.yaml");
    let result = std::panic::catch_unwind(|| against(dir.path(), &target));

    // Stop the kept sandbox.
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "--keep did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(reader);
    let pids = std::fs::read_to_string(kept_work.join("pids")).unwrap_or_default();
    let t0 = Instant::now();
    loop {
        let left: Vec<&str> = pids
            .lines()
            .filter(|l| running(l.split_whitespace().next().unwrap_or_default()))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "survived: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn against(dir: &Path, target: &Path) {
    let text = std::fs::read_to_string(target).expect("--keep wrote target.yaml");
    assert!(text.contains("kind: DrillTarget"), "{text}");

    // 1. A shipped scenario with faults, without --allow-faults: refused, nothing done.
    let work1 = dir.join("w1");
    let (code, stdout, stderr) = drill(&[
        &repo("scenarios/latency-shift.yaml"),
        Path::new("--target"),
        target,
        Path::new("--work-dir"),
        &work1,
    ]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("fault steps (shift, aws-sg-unhealthy)")
            && stderr.contains("pass --allow-faults"),
        "{stderr}"
    );
    assert!(!work1.exists(), "nothing is done before the refusal");

    // 2. With --allow-faults: healthFailing cannot be produced remotely, named up front.
    let (code, _, stderr) = drill(&[
        &repo("scenarios/latency-shift.yaml"),
        Path::new("--target"),
        target,
        Path::new("--allow-faults"),
        Path::new("--work-dir"),
        &work1,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "step aws-sg-unhealthy: healthFailing cannot be produced against an existing deployment"
        ),
        "{stderr}"
    );
    assert!(!work1.exists());

    // 3. A workload the deployment lacks: a clear failure, nothing installed.
    let missing = target_scenario(
        dir,
        "    - name: surge\n      fault: {loadSurge: {scale: {cluster: idc-bj, workload: {namespace: shop, deployment: nope}, replicas: 3}}}\n",
    );
    let work3 = dir.join("w3");
    let (code, stdout, stderr) = drill(&[
        &missing,
        Path::new("--target"),
        target,
        Path::new("--allow-faults"),
        Path::new("--work-dir"),
        &work3,
    ]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let r =
        Report::from_json(&std::fs::read_to_string(work3.join("report.json")).unwrap()).unwrap();
    let aborted = r.aborted.unwrap_or_default();
    assert!(
        aborted.contains("Deployment shop/nope not found in idc-bj")
            && aborted.contains("installs nothing"),
        "{aborted}"
    );

    // 4. Faults through the APIs: passes, and they are reverted in the deployment.
    let file = target_scenario(dir, FAULT_STEPS);
    let work4 = dir.join("w4");
    let t0 = Instant::now();
    let (code, stdout, stderr) = drill(&[
        &file,
        Path::new("--target"),
        target,
        Path::new("--allow-faults"),
        Path::new("--work-dir"),
        &work4,
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("nothing is installed"), "{stderr}");
    let r =
        Report::from_json(&std::fs::read_to_string(work4.join("report.json")).unwrap()).unwrap();
    assert!(r.passed, "{}", r.summary());
    let m = r
        .measures
        .iter()
        .find(|m| m.name == "time-to-switch")
        .unwrap();
    println!(
        "against the target: PASSED in {:?}; switch {} ms",
        t0.elapsed(),
        m.ms.unwrap_or_default()
    );
    assert_eq!(
        r.samples
            .iter()
            .filter(|s| s.series == "kubectl get pods -n shop as alice in idc-bj")
            .map(|s| s.value.as_str())
            .next_back(),
        Some("ok")
    );
    // The surge was reverted in the target: web back to its 2 replicas.
    let t = causeway_drill::DrillTarget::load(target).unwrap();
    let idc = t.cluster("idc-bj").unwrap();
    let out = Command::new(&t.kubectl)
        .arg("--kubeconfig")
        .arg(&idc.kubeconfig)
        .args(["--context", &idc.context])
        .args([
            "get",
            "deployment",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2",
        "the surge was reverted"
    );
    // Nothing of the target run is a process left: it started none.
    assert!(
        !work4.join("pids").exists(),
        "a target run starts no process"
    );
}
