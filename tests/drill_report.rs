//! The HTML drill report opens in headless Chromium (the Debian `chromium` package,
//! listed in `.ci/packages.txt`): no script errors, the DOM holds the SVG timeline
//! and its lane labels, and a screenshot of it is not a blank page. The screenshot is
//! kept as `target/drill-report-screenshot.png` for a look.
//!
//! Skipped (with a message) only when chromium is absent and `CI` is unset; on CI it
//! must run.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use causeway_drill::report::{MeasureReport, Report, StepReport};

const CHROMIUM: &str = "chromium";
const TIMEOUT: Duration = Duration::from_secs(90);
const DNS_SG: &str = "dns app.svc.example. from singapore";
const DNS_BJ: &str = "dns app.svc.example. from beijing";
const READY_BJ: &str = "ready shop/web in idc-bj";
const READY_SG: &str = "ready shop/web in aws-sg";

/// A quickstart-like drill as the runner would record it: settle, a surge, the burst
/// to aws-sg, DNS following, the surge reverted and the scale back.
fn quickstart() -> Report {
    let step = |name: &str, kind: &str, detail: &str, from: u64, to: u64| {
        StepReport::ran(name, kind, detail, from, to, Ok(to))
    };
    let mut r = Report {
        scenario: "quickstart".into(),
        file: "scenarios/quickstart.yaml".into(),
        description: "A surge in idc-bj bursts to aws-sg within 30 s, DNS follows, and it \
                      scales back."
            .into(),
        hypothesis: "Burst replicas are Ready within 30 s and Singapore is answered aws-sg.".into(),
        started_at_unix_ms: 1_700_000_000_000,
        passed: true,
        steps: vec![
            step("settle", "wait", "wait 5s", 0, 5_000),
            step(
                "surge",
                "fault",
                "load surge: scale shop/web in idc-bj to 6 replicas",
                5_000,
                5_300,
            ),
            step(
                "burst-ready",
                "expect",
                "replicas Ready of shop/web in aws-sg >= 1 within 30s",
                5_300,
                18_400,
            ),
            step(
                "dns-follows",
                "expect",
                "dns app.svc.example. from singapore contains aws-sg within 10s",
                18_400,
                21_200,
            ),
            step("calm", "wait", "wait 20s", 21_200, 41_200),
            step(
                "scaled-back",
                "expect",
                "replicas Ready of shop/web in aws-sg = 0 within 1m",
                41_200,
                52_700,
            ),
        ],
        measures: vec![MeasureReport {
            name: "time-to-burst".into(),
            from: "surge".into(),
            to: "burst-ready".into(),
            ms: Some(13_100),
            at_most_ms: Some(30_000),
            passed: true,
        }],
        aborted: None,
        samples: Vec::new(),
        faults: Vec::new(),
    };
    r.fault_started("surge", 5_300);
    r.fault_ended("surge", 41_200);
    for t in (0..=52_000).step_by(1_000) {
        let sg = match t {
            0..21_000 => "idc-bj",
            21_000..47_000 => "aws-sg,idc-bj",
            _ => "idc-bj",
        };
        r.sample(t, DNS_SG, sg);
        r.sample(t, DNS_BJ, "idc-bj");
        r.sample(t, READY_BJ, if t < 7_000 { "2" } else { "4" });
        let ready_sg = match t {
            0..16_000 => "0",
            16_000..18_000 => "1",
            18_000..46_000 => "2",
            _ => "0",
        };
        r.sample(t, READY_SG, ready_sg);
        r.sample(t, "primary db", "idc-bj");
    }
    r
}

/// Chromium's path, or `None` (and a message) when the test may be skipped.
fn chromium() -> Option<&'static str> {
    let found = Command::new(CHROMIUM)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(CHROMIUM);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium is not installed but CI is set: .ci/packages.txt lists it, scripts/setup \
         installs it"
    );
    eprintln!(
        "SKIPPED drill_report: chromium is not installed (apt-get install -y chromium); \
         on CI this test runs"
    );
    None
}

/// Runs chromium headless on `page` with `args`, bounded by [`TIMEOUT`]; returns
/// (success, stdout, stderr).
fn headless(profile: &Path, page: &Path, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    (status.success(), stdout, stderr)
}

/// The PNG's width, height and the total size of its IDAT (image data) chunks.
fn png_facts(png: &[u8]) -> (u32, u32, usize) {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    assert!(png.len() > 33, "too short for a PNG: {} bytes", png.len());
    assert_eq!(png[..8], SIGNATURE, "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!(&png[12..16], b"IHDR", "the first chunk is not IHDR");
    let (width, height) = (be(&png[16..20]), be(&png[20..24]));
    let mut idat = 0;
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = be(&png[at..at + 4]) as usize;
        if &png[at + 4..at + 8] == b"IDAT" {
            idat += len;
        }
        at += 12 + len;
    }
    (width, height, idat)
}

fn screenshot(profile: &Path, page: &Path, png: &Path) -> (Vec<u8>, String) {
    let (ok, _, stderr) = headless(
        profile,
        page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1400,900",
            // A whole frame, not one caught half-painted on a loaded machine.
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=3000",
            "--enable-logging=stderr",
            "--v=0",
        ],
    );
    assert!(ok, "chromium --screenshot failed:\n{stderr}");
    let bytes = std::fs::read(png).unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", png.display()));
    (bytes, stderr)
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let Some(_) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let report = quickstart();
    assert!(report.samples.len() < 20, "only changes are kept");
    let page = dir.path().join("report.html");
    std::fs::write(&page, report.to_html()).expect("write report.html");
    let blank = dir.path().join("blank.html");
    std::fs::write(
        &blank,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>blank</title></head>\
         <body></body></html>",
    )
    .expect("write blank.html");
    let profile = dir.path().join("profile");

    // The DOM as Chromium parsed it: the timeline and every lane's label.
    let (ok, dom, stderr) = headless(&profile, &page, &["--dump-dom"]);
    assert!(ok, "chromium --dump-dom failed:\n{stderr}");
    assert!(dom.contains("<svg class=\"timeline\""), "no SVG in:\n{dom}");
    for label in [
        DNS_SG,
        DNS_BJ,
        READY_BJ,
        READY_SG,
        "primary db",
        "fault surge",
        "expect burst-ready",
        "measure time-to-burst",
        "time-to-burst: 13.1s (at most 30.0s)",
    ] {
        assert!(dom.contains(label), "{label:?} not in the DOM:\n{dom}");
    }

    // A screenshot, compared with one of an empty page taken the same way.
    let png = dir.path().join("report.png");
    let (shot, log) = screenshot(&profile, &page, &png);
    for bad in ["Uncaught", "ERR_FILE_NOT_FOUND", "Refused to"] {
        assert!(!log.contains(bad), "{bad} in chromium's log:\n{log}");
    }
    let (width, height, idat) = png_facts(&shot);
    assert_eq!((width, height), (1400, 900), "the window size");
    let (blank_shot, _) = screenshot(&profile, &blank, &dir.path().join("blank.png"));
    let (_, _, blank_idat) = png_facts(&blank_shot);
    assert!(
        idat > 20 * 1024 && idat > 10 * blank_idat,
        "the screenshot looks blank: {idat} bytes of image data, an empty page gives {blank_idat}"
    );
    let keep: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/drill-report-screenshot.png");
    if let Some(parent) = keep.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&keep, &shot).expect("keep the screenshot");
    std::fs::write(keep.with_extension("html"), report.to_html()).expect("keep the page");
}
