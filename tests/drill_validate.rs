//! `causeway drill --list` and `--validate` against the shipped scenarios and broken
//! copies of them, through the built binary. A scenario the runner cannot run is refused
//! before anything starts (running scenarios: tests/drill_run.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");
const SHIPPED: [&str; 6] = [
    "active-active",
    "idc-outage",
    "latency-shift",
    "partition",
    "quickstart",
    "tunnel-ha",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn drill(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("drill")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run the causeway binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn list_shows_every_shipped_scenario_with_its_description() {
    let out = drill(&["--list"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for name in SHIPPED {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{stdout}"));
        assert!(line.len() > name.len() + 20, "no description: {line:?}");
        assert!(
            stdout.contains(&format!("scenarios/{name}.yaml")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("A surge in idc-bj bursts to ali-hz and aws-sg"),
        "{stdout}"
    );
}

#[test]
fn every_shipped_scenario_validates() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= SHIPPED.len(), "{files:?}");
    for f in files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let out = drill(&[&rel, "--validate"]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{rel}: {}\n{stdout}",
            text(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!("ok: {rel}: Scenario/")),
            "{stdout}"
        );
        assert!(stdout.contains("  steps:\n"), "{stdout}");
    }
}

#[test]
fn a_scenario_the_runner_cannot_run_is_refused_before_anything_starts() {
    // Running a scenario is tested in tests/drill_run.rs; a networkCut with two stubs is
    // not supported by the runner and must be refused up front, not half-run.
    let (dir, file) = broken_copy("quickstart.yaml", |s| {
        s.replace("  install:\n", "    stub: {replicas: 2}\n  install:\n")
            .replace(
                "  steps:\n",
                "  steps:\n    - {name: cut, fault: {networkCut: {cluster: idc-bj}}}\n",
            )
    });
    let out = drill(&[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("step cut: networkCut with topology.stub.replicas: 2 is not supported"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    drop(dir);
}

/// A copy of the quickstart scenario and the files it installs in a temp folder, with
/// `edit` applied to the file `name` (relative to `scenarios/`).
fn broken_copy(name: &str, edit: impl Fn(&str) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "quickstart.yaml",
        "quickstart/burst.yaml",
        "quickstart/web.yaml",
        "shared/zone.yaml",
    ] {
        let to = dir.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let body = std::fs::read_to_string(root().join("scenarios").join(f)).unwrap();
        let body = if f == name { edit(&body) } else { body };
        std::fs::write(&to, body).unwrap();
    }
    let file = dir.path().join("quickstart.yaml");
    (dir, file)
}

/// The 1-based line and column where `needle` starts in `body`.
fn position(body: &str, needle: &str) -> (usize, usize) {
    for (i, l) in body.lines().enumerate() {
        if let Some(c) = l.find(needle) {
            return (i + 1, c + 1);
        }
    }
    panic!("{needle:?} not found");
}

fn fails_with(file: &Path, expected: &str) {
    let out = drill(&[file.to_str().unwrap(), "--validate"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
}

#[test]
fn a_broken_copy_fails_at_file_line_column() {
    // A bad deadline: the field's value, by line and column.
    let (_dir, file) = broken_copy("quickstart.yaml", |b| {
        b.replacen("within: 30s", "within: soon", 2)
    });
    let body = std::fs::read_to_string(&file).unwrap();
    let (line, col) = position(&body, "soon");
    fails_with(
        &file,
        &format!(
            "{}:{line}:{col}: Scenario/quickstart: spec.steps[0].expect.within: invalid duration \"soon\"",
            file.display()
        ),
    );

    // A measure naming a step that does not exist.
    let (_dir, file) = broken_copy("quickstart.yaml", |b| {
        b.replace("to: burst-ready", "to: burst-redy")
    });
    let body = std::fs::read_to_string(&file).unwrap();
    let (line, _) = position(&body, "to: burst-redy");
    fails_with(&file, &format!("{}:{line}:", file.display()));
    fails_with(
        &file,
        "spec.steps[4].measure.to: no earlier step named \"burst-redy\"",
    );

    // A DNS expectation on a name no installed zone has.
    let (_dir, file) = broken_copy("quickstart.yaml", |b| {
        b.replacen("app.svc.example.", "ap.svc.example.", 1)
    });
    let body = std::fs::read_to_string(&file).unwrap();
    let (line, col) = position(&body, "ap.svc.example.");
    fails_with(
        &file,
        &format!(
            "{}:{line}:{col}: Scenario/quickstart: spec.steps[0].expect.dns.name: ap.svc.example. is not a GSLB name",
            file.display()
        ),
    );
}

#[test]
fn a_broken_installed_file_is_reported_where_it_is_wrong() {
    // The policy names a cluster outside the topology.
    let (_dir, file) = broken_copy("quickstart/burst.yaml", |b| {
        b.replace("- {cluster: aws-sg", "- {cluster: gcp-us")
    });
    fails_with(
        &file,
        "policy web (install.policies) names cluster gcp-us, which is not in the topology",
    );

    // The scheduler's own loader finds an error in the policy file: its file:line:col.
    let (dir, file) = broken_copy("quickstart/burst.yaml", |b| {
        b.replace("maxReplicas: 10", "maxReplicas: ten")
    });
    let policy = dir.path().join("quickstart/burst.yaml");
    let body = std::fs::read_to_string(&policy).unwrap();
    let (line, col) = position(&body, "ten}");
    fails_with(
        &file,
        &format!(
            "{}:{line}:{col}: BurstPolicy/web: spec.burst[1].maxReplicas:",
            policy.display()
        ),
    );
}

#[test]
fn list_marks_an_invalid_file_and_fails() {
    let (dir, _file) = broken_copy("quickstart.yaml", |b| {
        b.replace("kind: Scenario", "kind: Senario")
    });
    let out = drill(&["--list", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("(invalid)") && stdout.contains("unknown kind \"Senario\""),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("1 of 1 scenario files are invalid"));
}
