use super::*;
use crate::report::{MeasureReport, StepReport};

const DNS: &str = "dns app.svc.example. from singapore";
const READY_SG: &str = "ready shop/web in aws-sg";
const READY_BJ: &str = "ready shop/web in idc-bj";

/// A quickstart-like drill: a surge, burst to aws-sg, DNS follows, a measure.
fn quickstart(passed: bool) -> Report {
    let mut r = Report {
        scenario: "quickstart".into(),
        file: "scenarios/quickstart.yaml".into(),
        description: "a surge bursts to aws-sg".into(),
        hypothesis: "burst within 30 s".into(),
        started_at_unix_ms: 1_700_000_000_000,
        passed,
        steps: vec![
            StepReport::ran("settle", "wait", "wait 5s", 0, 5_000, Ok(5_000)),
            StepReport::ran("surge", "fault", "scale web to 6", 5_000, 5_200, Ok(5_200)),
            StepReport::ran(
                "burst-ready",
                "expect",
                "ready replicas >= 1 within 30s",
                5_200,
                17_000,
                if passed {
                    Ok(17_000)
                } else {
                    Err("aws-sg: 0 ready".into())
                },
            ),
            StepReport::skipped("scale-back", "expect", "ready replicas = 0 within 1m"),
        ],
        measures: vec![MeasureReport {
            name: "time-to-burst".into(),
            from: "surge".into(),
            to: "burst-ready".into(),
            ms: passed.then_some(11_800),
            at_most_ms: Some(30_000),
            passed,
        }],
        aborted: None,
        samples: Vec::new(),
        faults: Vec::new(),
    };
    r.fault_started("surge", 5_200);
    r.fault_ended("surge", 25_000);
    for t in (0..=30_000).step_by(1_000) {
        let dns = if t < 19_000 {
            "idc-bj"
        } else {
            "aws-sg,idc-bj"
        };
        r.sample(t, DNS, dns);
        r.sample(t, READY_SG, if t < 17_000 { "0" } else { "2" });
        r.sample(t, READY_BJ, "4");
        r.sample(t, "primary db", "idc-bj");
    }
    r
}

#[test]
fn contains_the_svg_and_every_label() {
    let html = quickstart(true).to_html();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<svg class=\"timeline\""), "{html}");
    assert!(html.contains("</svg>") && html.ends_with("</html>\n"));
    for label in [
        DNS,
        READY_SG,
        READY_BJ,
        "primary db",
        "fault surge",
        "expect burst-ready",
        "expect scale-back (skipped)",
        "measure time-to-burst",
        "time-to-burst: 11.8s (at most 30.0s)",
        "PASS",
        "burst within 30 s",
        "2023-11-14 22:13:20 UTC",
        ">aws-sg</text>",
        ">idc-bj</text>",
        "held at 17.0s",
        "marker-end=\"url(#arrow-pass)\"",
    ] {
        assert!(html.contains(label), "{label:?} not in {html}");
    }
    // One colour per cluster, sorted: aws-sg first, idc-bj second.
    assert!(html.contains(&format!("fill=\"{}\"", PALETTE[0])));
    assert!(html.contains(&format!("fill=\"{}\"", PALETTE[1])));
    // Nothing from the network.
    for bad in ["<script", "http://", "https://", "@import", "url(http"] {
        let rest = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!rest.contains(bad), "{bad} in {html}");
    }
}

#[test]
fn a_failure_is_marked_red_with_what_was_observed() {
    let html = quickstart(false).to_html();
    assert!(
        html.contains("<span class=\"verdict fail\">FAIL</span>"),
        "{html}"
    );
    assert!(html.contains("class=\"expect-fail\""), "{html}");
    assert!(html.contains("failed at 17.0s"), "{html}");
    assert!(html.contains("<pre>aws-sg: 0 ready</pre>"), "{html}");
    assert!(
        html.contains("time-to-burst: not measured (surge → burst-ready)"),
        "{html}"
    );
}

#[test]
fn a_hostile_scenario_is_escaped_everywhere() {
    let evil = "<script>alert(1)</script>\"'&";
    let mut r = quickstart(false);
    r.scenario = evil.into();
    r.file = evil.into();
    r.description = evil.into();
    r.hypothesis = evil.into();
    r.aborted = Some(evil.into());
    r.steps[2].name = evil.into();
    r.steps[2].observed = Some(evil.into());
    r.measures[0].name = evil.into();
    r.sample(0, evil, evil);
    r.sample(0, format!("dns {evil}"), evil);
    r.fault_started(evil, 1_000);
    let html = r.to_html();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("alert(1)</"), "{html}");
    assert!(!html.contains("\"'&"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"),
        "{html}"
    );
    // In an attribute too.
    assert!(
        html.contains("aria-label=\"timeline of drill &lt;script&gt;"),
        "{html}"
    );
}

#[test]
fn an_empty_report_renders() {
    let r = Report {
        scenario: String::new(),
        file: String::new(),
        description: String::new(),
        hypothesis: String::new(),
        started_at_unix_ms: 0,
        passed: false,
        steps: Vec::new(),
        measures: Vec::new(),
        aborted: None,
        samples: Vec::new(),
        faults: Vec::new(),
    };
    let html = r.to_html();
    assert!(html.contains("<svg class=\"timeline\""), "{html}");
    assert!(
        html.contains("no steps") && html.contains("no measures"),
        "{html}"
    );
    assert!(html.contains("1970-01-01 00:00:00 UTC"), "{html}");
    assert!(html.ends_with("</html>\n"));
}

#[test]
fn the_output_is_deterministic() {
    assert_eq!(quickstart(true).to_html(), quickstart(true).to_html());
}

#[test]
fn fault_steps_make_bands_when_the_runner_gave_none() {
    let mut r = quickstart(true);
    r.faults.clear();
    let html = r.to_html();
    assert!(html.contains("fault surge: 5.2s → the end"), "{html}");
}

#[test]
fn dns_lanes_stripe_one_colour_per_cluster() {
    let html = quickstart(true).to_html();
    // The answer with two clusters is two stripes of half the lane's height; the
    // last value lasts until the last instant the report knows (the fault's end).
    let dns_groups: Vec<&str> = html
        .split("<g class=\"dns\">")
        .skip(1)
        .map(|g| g.split("</g>").next().unwrap_or(""))
        .collect();
    assert_eq!(dns_groups.len(), 2, "{html}");
    assert_eq!(dns_groups[0].matches("<rect").count(), 1);
    assert_eq!(dns_groups[1].matches("<rect").count(), 2);
    assert!(
        dns_groups[1].contains("aws-sg,idc-bj from 19.0s to 25.0s"),
        "{}",
        dns_groups[1]
    );
}

#[test]
fn helpers() {
    assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    assert_eq!(nice_tick(30_000), 5_000);
    assert_eq!(nice_tick(1), 100);
    assert_eq!(nice_tick(10 * 3_600_000), 1_800_000);
    assert_eq!(tick_label(2_500, 500), "2.5s");
    assert_eq!(tick_label(120_000, 60_000), "2m");
    assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    assert_eq!(split_clusters(" a, ,b").collect::<Vec<_>>(), ["a", "b"]);
}
