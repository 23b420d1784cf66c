//! The report as one self-contained HTML page: a header with the verdict, an SVG
//! timeline, and tables of the steps and measures.
//!
//! The page loads nothing (inline CSS and SVG, no scripts, no web fonts) and is
//! deterministic: the same report gives the same bytes. Every text of the report is
//! escaped, in text and in attributes, since scenario files are user input.
//!
//! The timeline's x axis is milliseconds from the drill's start. From top to bottom:
//! the steps; one row per fault band (and a shading over every lane); one row per
//! expectation with its window and a green (held, at its instant) or red (failed,
//! at its end) marker; one lane per `dns …` series (a stripe per answered cluster,
//! one colour per cluster, see the legend); one lane per `ready …` series (a step
//! line); `primary …` and any other series as labelled segments; one row per measure
//! with an arrow between its two instants.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{Report, Sample, StepReport, secs};

/// One colour per cluster, in the sorted order of cluster names (Tableau 10).
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
const PASS: &str = "#2e7d32";
const FAIL: &str = "#c62828";
/// Faults are slate grey and hatched, unlike any cluster's colour.
const FAULT: &str = "#455a64";
const FAULT_FILL: &str = "url(#fault-hatch)";
/// Width of the SVG, of its label column, and the plot's left and right edges.
const WIDTH: f64 = 1320.0;
const LABEL_X: f64 = 8.0;
const LABEL_CHARS: usize = 44;
const PLOT_X0: f64 = 320.0;
const PLOT_X1: f64 = WIDTH - 40.0;
/// Vertical sizes: the axis, a section title, a lane.
const AXIS_H: f64 = 30.0;
const TITLE_H: f64 = 22.0;
const LANE_H: f64 = 26.0;
const READY_H: f64 = 40.0;

/// Escapes `s` for HTML text and (double- or single-quoted) attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Report {
    /// The report as one self-contained HTML page (see the module docs of
    /// `report::html`): header, SVG timeline, steps and measures.
    pub fn to_html(&self) -> String {
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>drill {}: {verdict}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
            escape(&self.scenario)
        );
        self.header(&mut out, verdict);
        out.push_str("<section>\n<h2>Timeline</h2>\n");
        out.push_str(&Timeline::new(self).render());
        out.push_str("</section>\n");
        self.steps_table(&mut out);
        self.measures_table(&mut out);
        out.push_str("</body>\n</html>\n");
        out
    }

    fn header(&self, out: &mut String, verdict: &str) {
        let class = if self.passed { "pass" } else { "fail" };
        let total = self.steps.iter().map(|s| s.ended_ms).max().unwrap_or(0);
        let _ = write!(
            out,
            "<header>\n<h1><span class=\"verdict {class}\">{verdict}</span> drill {}</h1>\n\
             <p class=\"meta\">{} · started {} · took {}</p>\n",
            escape(&self.scenario),
            escape(&self.file),
            utc(self.started_at_unix_ms),
            secs(total)
        );
        if !self.description.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", escape(&self.description));
        }
        if !self.hypothesis.is_empty() {
            let _ = writeln!(
                out,
                "<p><b>Hypothesis:</b> {}</p>",
                escape(&self.hypothesis)
            );
        }
        if let Some(why) = &self.aborted {
            let _ = writeln!(
                out,
                "<p class=\"aborted\"><b>Aborted:</b> {}</p>",
                escape(why)
            );
        }
        out.push_str("</header>\n");
    }

    fn steps_table(&self, out: &mut String) {
        out.push_str(
            "<section>\n<h2>Steps</h2>\n<table>\n<thead><tr><th></th><th>step</th><th>kind</th>\
             <th>started</th><th>ended</th><th>took</th><th>what</th></tr></thead>\n<tbody>\n",
        );
        if self.steps.is_empty() {
            out.push_str("<tr><td colspan=\"7\" class=\"none\">no steps</td></tr>\n");
        }
        for s in &self.steps {
            let (mark, class) = mark(s);
            if s.skipped {
                let _ = writeln!(
                    out,
                    "<tr class=\"{class}\"><td class=\"mark\">{mark}</td><td>{}</td><td>{}</td>\
                     <td colspan=\"3\">did not run</td><td>{}</td></tr>",
                    escape(&s.name),
                    escape(&s.kind),
                    escape(&s.detail)
                );
                continue;
            }
            let _ = write!(
                out,
                "<tr class=\"{class}\"><td class=\"mark\">{mark}</td><td>{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}",
                escape(&s.name),
                escape(&s.kind),
                secs(s.started_ms),
                secs(s.ended_ms),
                secs(s.took_ms),
                escape(&s.detail)
            );
            if let Some(seen) = &s.observed {
                let _ = write!(
                    out,
                    "<div class=\"observed\"><b>observed:</b><pre>{}</pre></div>",
                    escape(seen)
                );
            }
            out.push_str("</td></tr>\n");
        }
        out.push_str("</tbody>\n</table>\n</section>\n");
    }

    fn measures_table(&self, out: &mut String) {
        out.push_str(
            "<section>\n<h2>Measures</h2>\n<table>\n<thead><tr><th></th><th>measure</th>\
             <th>between</th><th>value</th><th>budget</th></tr></thead>\n<tbody>\n",
        );
        if self.measures.is_empty() {
            out.push_str("<tr><td colspan=\"5\" class=\"none\">no measures</td></tr>\n");
        }
        for m in &self.measures {
            let (mark, class) = if m.passed {
                ("ok", "pass")
            } else {
                ("FAIL", "fail")
            };
            let value = m.ms.map_or_else(|| "not measured".to_string(), secs);
            let budget = m.at_most_ms.map_or_else(|| "—".to_string(), secs);
            let _ = writeln!(
                out,
                "<tr class=\"{class}\"><td class=\"mark\">{mark}</td><td>{}</td><td>{} → {}</td>\
                 <td class=\"num\">{value}</td><td class=\"num\">{budget}</td></tr>",
                escape(&m.name),
                escape(&m.from),
                escape(&m.to)
            );
        }
        out.push_str("</tbody>\n</table>\n</section>\n");
    }
}

fn mark(s: &StepReport) -> (&'static str, &'static str) {
    if s.skipped {
        ("skip", "skip")
    } else if s.passed {
        ("ok", "pass")
    } else {
        ("FAIL", "fail")
    }
}

const CSS: &str = "
body { font-family: 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif; margin: 16px 24px;
  color: #212121; background: #fff; font-size: 14px; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
h2 { font-size: 16px; margin: 18px 0 6px 0; }
header p { margin: 4px 0; }
.meta { color: #616161; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; }
.verdict.pass { background: #2e7d32; }
.verdict.fail { background: #c62828; }
.aborted { color: #c62828; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid #e0e0e0; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mark { font-weight: bold; }
tr.pass td.mark { color: #2e7d32; }
tr.fail td.mark { color: #c62828; }
tr.skip { color: #9e9e9e; }
td.none { color: #9e9e9e; }
.observed pre { margin: 2px 0 0 0; white-space: pre-wrap; background: #fff3f3; padding: 4px; }
svg.timeline { display: block; border: 1px solid #e0e0e0; background: #fff; }
svg text { font-family: 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif; font-size: 12px; fill: #212121; }
svg text.title { font-weight: bold; font-size: 12px; fill: #424242; }
svg text.tick { fill: #757575; font-size: 11px; }
svg text.in { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
";

/// A step function of one series: `(from_ms, to_ms, value)` in time order.
type Segments<'a> = Vec<(u64, u64, &'a str)>;

/// The SVG timeline of one report, built top to bottom.
struct Timeline<'a> {
    report: &'a Report,
    /// The right end of the axis (a whole number of ticks, ≥ every instant).
    end_ms: u64,
    tick_ms: u64,
    /// Clusters named by `dns` and `primary` values, sorted: a colour each.
    clusters: Vec<&'a str>,
    /// Series names in order of first appearance.
    series: Vec<&'a str>,
    body: String,
    y: f64,
}

impl<'a> Timeline<'a> {
    fn new(report: &'a Report) -> Self {
        let mut last = 0;
        for s in &report.steps {
            last = last.max(s.ended_ms).max(s.at_ms.unwrap_or(0));
        }
        for s in &report.samples {
            last = last.max(s.at_ms);
        }
        for f in &report.faults {
            last = last.max(f.from_ms).max(f.to_ms.unwrap_or(0));
        }
        let tick_ms = nice_tick(last.max(1));
        let end_ms = last.div_ceil(tick_ms).max(1) * tick_ms;
        let mut series: Vec<&str> = Vec::new();
        let mut clusters = BTreeSet::new();
        for s in &report.samples {
            if !series.contains(&s.series.as_str()) {
                series.push(&s.series);
            }
            if s.series.starts_with("dns ") || s.series.starts_with("primary ") {
                clusters.extend(split_clusters(&s.value));
            }
        }
        Self {
            report,
            end_ms,
            tick_ms,
            clusters: clusters.into_iter().collect(),
            series,
            body: String::new(),
            y: AXIS_H,
        }
    }

    fn x(&self, ms: u64) -> f64 {
        let ms = ms.min(self.end_ms) as f64;
        PLOT_X0 + ms * (PLOT_X1 - PLOT_X0) / self.end_ms as f64
    }

    fn colour(&self, cluster: &str) -> &'static str {
        match self.clusters.iter().position(|c| *c == cluster) {
            Some(i) => PALETTE[i % PALETTE.len()],
            None => "#9e9e9e",
        }
    }

    fn render(mut self) -> String {
        self.steps_lane();
        self.fault_rows();
        self.expectation_rows();
        let lanes_top = self.y;
        self.series_lanes();
        self.measure_rows();
        let plot_bottom = self.y;
        self.legend();
        let height = self.y + 8.0;

        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
             height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\" role=\"img\" \
             aria-label=\"timeline of drill {}\">",
            escape(&self.report.scenario)
        );
        let _ = writeln!(
            out,
            "<defs>{}{}<pattern id=\"fault-hatch\" width=\"8\" height=\"8\" \
             patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"8\" \
             height=\"8\" fill=\"#cfd8dc\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" \
             stroke=\"{FAULT}\" stroke-width=\"3\"/></pattern></defs>",
            arrow_marker("arrow-pass", PASS),
            arrow_marker("arrow-fail", FAIL)
        );
        // Fault shading first, so the lanes are drawn over it.
        for (from, to, _) in self.fault_bands() {
            let (x0, x1) = (self.x(from), self.x(to));
            let _ = writeln!(
                out,
                "<rect class=\"fault-shade\" x=\"{x0:.1}\" y=\"{AXIS_H}\" width=\"{:.1}\" \
                 height=\"{:.1}\" fill=\"{FAULT}\" fill-opacity=\"0.08\"/>",
                (x1 - x0).max(1.0),
                plot_bottom - AXIS_H
            );
        }
        self.axis(&mut out, plot_bottom);
        let _ = writeln!(
            out,
            "<line x1=\"{PLOT_X0}\" y1=\"{lanes_top:.1}\" x2=\"{PLOT_X1}\" y2=\"{lanes_top:.1}\" \
             stroke=\"#bdbdbd\"/>"
        );
        out.push_str(&self.body);
        out.push_str("</svg>\n");
        out
    }

    /// Ticks and grid lines at the top, over the whole plot.
    fn axis(&self, out: &mut String, bottom: f64) {
        let mut t = 0;
        while t <= self.end_ms {
            let x = self.x(t);
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#eeeeee\"/>\
                 <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                AXIS_H - 6.0,
                AXIS_H - 10.0,
                tick_label(t, self.tick_ms)
            );
            t += self.tick_ms;
        }
        let _ = writeln!(
            out,
            "<text class=\"title\" x=\"{LABEL_X}\" y=\"{:.1}\">time from the start</text>",
            AXIS_H - 10.0
        );
    }

    fn title(&mut self, text: &str) {
        let _ = writeln!(
            self.body,
            "<text class=\"title\" x=\"{LABEL_X}\" y=\"{:.1}\">{}</text>",
            self.y + 15.0,
            escape(text)
        );
        self.y += TITLE_H;
    }

    /// The lane's label in the left column (shortened, the whole text as a tooltip).
    fn label(&mut self, text: &str, height: f64, colour: Option<&str>) {
        let shown: String = if text.chars().count() > LABEL_CHARS {
            let mut s: String = text.chars().take(LABEL_CHARS - 1).collect();
            s.push('…');
            s
        } else {
            text.to_string()
        };
        // A style, not a `fill` attribute: the page's CSS would override that.
        let fill = colour
            .map(|c| format!(" style=\"fill:{c}\""))
            .unwrap_or_default();
        let _ = writeln!(
            self.body,
            "<text class=\"lane\" x=\"{:.1}\" y=\"{:.1}\"{fill}><title>{}</title>{}</text>",
            LABEL_X + 8.0,
            self.y + height / 2.0 + 4.0,
            escape(text),
            escape(&shown)
        );
    }

    /// A text inside the plot at `x`, only if it fits before `limit`.
    fn text_in(&mut self, x: f64, limit: f64, y: f64, text: &str) {
        if x + text_width(text) <= limit {
            let _ = writeln!(
                self.body,
                "<text class=\"in\" x=\"{x:.1}\" y=\"{y:.1}\">{}</text>",
                escape(text)
            );
        }
    }

    fn steps_lane(&mut self) {
        let steps: Vec<&StepReport> = self.report.steps.iter().filter(|s| !s.skipped).collect();
        if steps.is_empty() {
            return;
        }
        self.title("steps");
        self.label("steps", LANE_H, None);
        for (i, s) in steps.iter().enumerate() {
            let (x0, x1) = (self.x(s.started_ms), self.x(s.ended_ms));
            let fill = if s.passed {
                if i % 2 == 0 { "#e0e0e0" } else { "#f0f0f0" }
            } else {
                "#ffcdd2"
            };
            let _ = writeln!(
                self.body,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" \
                 stroke=\"#fff\"><title>{} ({}) {} → {}: {}</title></rect>",
                self.y + 4.0,
                (x1 - x0).max(1.0),
                LANE_H - 8.0,
                escape(&s.name),
                escape(&s.kind),
                secs(s.started_ms),
                secs(s.ended_ms),
                escape(&s.detail)
            );
            let y = self.y + LANE_H / 2.0 + 4.0;
            self.text_in(x0 + 3.0, x1, y, &s.name);
        }
        self.y += LANE_H;
    }

    /// Fault bands: the report's, or else each applied fault step until the end.
    fn fault_bands(&self) -> Vec<(u64, u64, String)> {
        if !self.report.faults.is_empty() {
            return self
                .report
                .faults
                .iter()
                .map(|f| (f.from_ms, f.to_ms.unwrap_or(self.end_ms), f.name.clone()))
                .collect();
        }
        self.report
            .steps
            .iter()
            .filter(|s| s.kind == "fault")
            .filter_map(|s| s.at_ms.map(|at| (at, self.end_ms, s.name.clone())))
            .collect()
    }

    fn fault_rows(&mut self) {
        let bands = self.fault_bands();
        if bands.is_empty() {
            return;
        }
        self.title("faults");
        for (from, to, name) in bands {
            self.label(&format!("fault {name}"), LANE_H, Some(FAULT));
            let (x0, x1) = (self.x(from), self.x(to));
            let until = if to >= self.end_ms && self.is_open(&name, from) {
                "the end".to_string()
            } else {
                secs(to)
            };
            let _ = writeln!(
                self.body,
                "<rect class=\"fault\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"{FAULT_FILL}\" stroke=\"{FAULT}\"><title>fault {}: {} → {until}</title></rect>",
                self.y + 4.0,
                (x1 - x0).max(2.0),
                LANE_H - 8.0,
                escape(&name),
                secs(from)
            );
            let y = self.y + LANE_H / 2.0 + 4.0;
            let text = format!("{name} ({} → {until})", secs(from));
            if x0 + 4.0 + text_width(&text) <= x1 {
                self.text_in(x0 + 4.0, x1, y, &text);
            } else {
                self.text_in(x0 + 4.0, x1, y, &name);
            }
            self.y += LANE_H;
        }
    }

    fn is_open(&self, name: &str, from: u64) -> bool {
        !self
            .report
            .faults
            .iter()
            .any(|f| f.name == name && f.from_ms == from && f.to_ms.is_some())
    }

    fn expectation_rows(&mut self) {
        let expects: Vec<&StepReport> = self
            .report
            .steps
            .iter()
            .filter(|s| s.kind == "expect")
            .collect();
        if expects.is_empty() {
            return;
        }
        self.title("expectations");
        for s in expects {
            let y = self.y + LANE_H / 2.0;
            if s.skipped {
                self.label(
                    &format!("expect {} (skipped)", s.name),
                    LANE_H,
                    Some("#9e9e9e"),
                );
                self.y += LANE_H;
                continue;
            }
            self.label(&format!("expect {}", s.name), LANE_H, None);
            let (x0, x1) = (self.x(s.started_ms), self.x(s.ended_ms));
            // The window awaited, from the step's start to its end.
            let _ = writeln!(
                self.body,
                "<line x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{x1:.1}\" y2=\"{y:.1}\" stroke=\"#9e9e9e\" \
                 stroke-width=\"2\"/><line x1=\"{x0:.1}\" y1=\"{:.1}\" x2=\"{x0:.1}\" y2=\"{:.1}\" \
                 stroke=\"#9e9e9e\"/>",
                y - 5.0,
                y + 5.0
            );
            let detail = escape(&s.detail);
            let (mx, text) = match s.at_ms {
                Some(at) if s.passed => {
                    let mx = self.x(at);
                    let _ = writeln!(
                        self.body,
                        "<circle class=\"expect-pass\" cx=\"{mx:.1}\" cy=\"{y:.1}\" r=\"6\" \
                         fill=\"{PASS}\"><title>{}: held at {} ({detail})</title></circle>",
                        escape(&s.name),
                        secs(at)
                    );
                    (mx, format!("held at {}", secs(at)))
                }
                _ => {
                    let observed = s
                        .observed
                        .as_deref()
                        .map(|o| format!("; observed: {}", escape(o)))
                        .unwrap_or_default();
                    let _ = writeln!(
                        self.body,
                        "<g class=\"expect-fail\"><title>{}: failed at {} ({detail}){observed}</title>\
                         <path d=\"M{:.1},{:.1} l12,12 m0,-12 l-12,12\" stroke=\"{FAIL}\" \
                         stroke-width=\"3\"/></g>",
                        escape(&s.name),
                        secs(s.ended_ms),
                        x1 - 6.0,
                        y - 6.0
                    );
                    (x1, format!("failed at {}", secs(s.ended_ms)))
                }
            };
            // The outcome right of the marker if it fits, else above the window's line,
            // ending at the marker (or only in the tooltip).
            let w = text_width(&text);
            if mx + 10.0 + w <= WIDTH {
                self.text_in(mx + 10.0, WIDTH, y + 4.0, &text);
            } else if mx - 10.0 - w >= PLOT_X0 {
                self.text_in(mx - 10.0 - w, mx, y - 3.0, &text);
            }
            self.y += LANE_H;
        }
    }

    fn segments(&self, series: &str) -> Segments<'a> {
        let mut samples: Vec<&'a Sample> = self
            .report
            .samples
            .iter()
            .filter(|s| s.series == series)
            .collect();
        samples.sort_by_key(|s| s.at_ms);
        samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let to = samples.get(i + 1).map_or(self.end_ms, |n| n.at_ms);
                (s.at_ms, to, s.value.as_str())
            })
            .filter(|(from, to, _)| to > from)
            .collect()
    }

    fn series_lanes(&mut self) {
        let kinds: [(&str, &str); 3] = [
            ("dns ", "DNS answers (clusters)"),
            ("ready ", "ready replicas"),
            ("primary ", "primary"),
        ];
        for (prefix, title) in kinds {
            let names: Vec<&str> = self
                .series
                .iter()
                .copied()
                .filter(|s| s.starts_with(prefix))
                .collect();
            if names.is_empty() {
                continue;
            }
            self.title(title);
            for name in names {
                match prefix {
                    "dns " => self.dns_lane(name),
                    "ready " => self.ready_lane(name),
                    _ => self.segment_lane(name, true),
                }
            }
        }
        let others: Vec<&str> = self
            .series
            .iter()
            .copied()
            .filter(|s| !kinds.iter().any(|(p, _)| s.starts_with(p)))
            .collect();
        if !others.is_empty() {
            self.title("other observations");
            for name in others {
                self.segment_lane(name, false);
            }
        }
    }

    /// One stripe per answered cluster, in the cluster's colour; grey for no answer.
    fn dns_lane(&mut self, series: &str) {
        self.label(series, LANE_H, None);
        let top = self.y + 3.0;
        let height = LANE_H - 6.0;
        for (from, to, value) in self.segments(series) {
            let (x0, x1) = (self.x(from), self.x(to));
            let clusters: Vec<&str> = split_clusters(value).collect();
            let tip = format!(
                "{series}: {} from {} to {}",
                if clusters.is_empty() {
                    "no answer"
                } else {
                    value
                },
                secs(from),
                secs(to)
            );
            let _ = write!(
                self.body,
                "<g class=\"dns\"><title>{}</title>",
                escape(&tip)
            );
            if clusters.is_empty() {
                let _ = write!(
                    self.body,
                    "<rect x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{height:.1}\" \
                     fill=\"#eeeeee\" stroke=\"#bdbdbd\" stroke-dasharray=\"3 2\"/>",
                    (x1 - x0).max(1.0)
                );
            }
            let stripe = height / clusters.len().max(1) as f64;
            for (i, c) in clusters.iter().enumerate() {
                let _ = write!(
                    self.body,
                    "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{stripe:.1}\" \
                     fill=\"{}\"/>",
                    top + stripe * i as f64,
                    (x1 - x0).max(1.0),
                    self.colour(c)
                );
            }
            self.body.push_str("</g>\n");
            let text = if clusters.is_empty() {
                "no answer".to_string()
            } else {
                clusters.join(" + ")
            };
            self.text_in(x0 + 4.0, x1, self.y + LANE_H / 2.0 + 4.0, &text);
        }
        self.y += LANE_H;
    }

    /// A step line of a count, scaled to the lane's largest value, labelled at each
    /// change; a value that is not a number is shown as a labelled segment.
    fn ready_lane(&mut self, series: &str) {
        let segments = self.segments(series);
        let numbers: Option<Vec<u64>> = segments
            .iter()
            .map(|(_, _, v)| v.trim().parse::<u64>().ok())
            .collect();
        let Some(numbers) = numbers else {
            self.segment_lane(series, false);
            return;
        };
        self.label(series, READY_H, None);
        let max = numbers.iter().copied().max().unwrap_or(0).max(1) as f64;
        let bottom = self.y + READY_H - 4.0;
        let span = READY_H - 18.0;
        let vy = |v: u64| bottom - span * v as f64 / max;
        let _ = writeln!(
            self.body,
            "<line x1=\"{PLOT_X0}\" y1=\"{bottom:.1}\" x2=\"{PLOT_X1}\" y2=\"{bottom:.1}\" \
             stroke=\"#e0e0e0\"/>"
        );
        if let Some(&(first, _, _)) = segments.first() {
            let mut line = format!("M{:.1},{:.1}", self.x(first), bottom);
            let mut area = line.clone();
            let mut last_label = f64::NEG_INFINITY;
            let mut labels = Vec::new();
            for (&(from, to, _), &v) in segments.iter().zip(&numbers) {
                let (x0, x1, y) = (self.x(from), self.x(to), vy(v));
                let _ = write!(line, " V{y:.1} H{x1:.1}");
                let _ = write!(area, " V{y:.1} H{x1:.1}");
                if x0 - last_label >= 14.0 {
                    labels.push((x0 + 3.0, y - 3.0, v));
                    last_label = x0;
                }
            }
            let _ = write!(area, " V{bottom:.1} Z");
            let _ = writeln!(
                self.body,
                "<g class=\"ready\"><title>{}</title><path d=\"{area}\" fill=\"#4e79a7\" \
                 fill-opacity=\"0.15\"/><path d=\"{line}\" fill=\"none\" stroke=\"#1f4e79\" \
                 stroke-width=\"2\"/></g>",
                escape(&self.tooltip(series, &segments))
            );
            for (x, y, v) in labels {
                let _ = writeln!(
                    self.body,
                    "<text class=\"in\" x=\"{x:.1}\" y=\"{y:.1}\">{v}</text>"
                );
            }
        }
        self.y += READY_H;
    }

    /// Labelled segments, in the cluster's colour when `clusters` (a primary).
    fn segment_lane(&mut self, series: &str, clusters: bool) {
        self.label(series, LANE_H, None);
        let segments = self.segments(series);
        for (i, &(from, to, value)) in segments.iter().enumerate() {
            let (x0, x1) = (self.x(from), self.x(to));
            let fill = if clusters && !value.is_empty() {
                self.colour(value)
            } else if i % 2 == 0 {
                "#cfd8dc"
            } else {
                "#eceff1"
            };
            let shown = if value.is_empty() { "none" } else { value };
            let _ = writeln!(
                self.body,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" \
                 stroke=\"#fff\"><title>{}</title></rect>",
                self.y + 3.0,
                (x1 - x0).max(1.0),
                LANE_H - 6.0,
                escape(&format!(
                    "{series}: {shown} from {} to {}",
                    secs(from),
                    secs(to)
                ))
            );
            self.text_in(x0 + 4.0, x1, self.y + LANE_H / 2.0 + 4.0, shown);
        }
        self.y += LANE_H;
    }

    fn tooltip(&self, series: &str, segments: &Segments<'_>) -> String {
        let mut s = series.to_string();
        for (from, _, v) in segments {
            let _ = write!(s, "; {v} at {}", secs(*from));
        }
        s
    }

    fn measure_rows(&mut self) {
        if self.report.measures.is_empty() {
            return;
        }
        self.title("measures");
        let at = |name: &str| {
            self.report
                .steps
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.at_ms)
        };
        let rows: Vec<_> = self
            .report
            .measures
            .iter()
            .map(|m| (m, at(&m.from), at(&m.to)))
            .collect();
        for (m, from, to) in rows {
            let (colour, id) = if m.passed {
                (PASS, "arrow-pass")
            } else {
                (FAIL, "arrow-fail")
            };
            self.label(&format!("measure {}", m.name), LANE_H, Some(colour));
            let budget = m
                .at_most_ms
                .map(|b| format!(" (at most {})", secs(b)))
                .unwrap_or_default();
            let y = self.y + LANE_H / 2.0 + 2.0;
            match (from, to, m.ms) {
                (Some(from), Some(to), Some(ms)) => {
                    let (x0, x1) = (self.x(from), self.x(to));
                    let text = format!("{}: {}{budget}", m.name, secs(ms));
                    let _ = writeln!(
                        self.body,
                        "<g class=\"measure\"><title>{} → {}: {}{budget}</title>\
                         <line x1=\"{x0:.1}\" y1=\"{:.1}\" x2=\"{x0:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>\
                         <line x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" \
                         stroke-width=\"2\" marker-end=\"url(#{id})\"/></g>",
                        escape(&m.from),
                        escape(&m.to),
                        secs(ms),
                        y - 7.0,
                        y + 7.0,
                        x1.max(x0 + 1.0)
                    );
                    // The value above the arrow's middle, or beside it when short.
                    let w = text_width(&text);
                    let mid = (x0 + x1) / 2.0 - w / 2.0;
                    if x1 - x0 >= w + 8.0 {
                        self.text_in(mid, WIDTH, y - 4.0, &text);
                    } else if x1 + 8.0 + w <= WIDTH {
                        self.text_in(x1 + 8.0, WIDTH, y + 4.0, &text);
                    } else {
                        self.text_in(x0 - 8.0 - w, x0, y + 4.0, &text);
                    }
                }
                _ => {
                    let text = format!("{}: not measured ({} → {}){budget}", m.name, m.from, m.to);
                    let _ = writeln!(
                        self.body,
                        "<text class=\"in\" x=\"{:.1}\" y=\"{:.1}\" style=\"fill:{FAIL}\">{}</text>",
                        PLOT_X0 + 4.0,
                        y + 4.0,
                        escape(&text)
                    );
                }
            }
            self.y += LANE_H;
        }
    }

    /// One swatch per cluster, and the meaning of the other marks.
    fn legend(&mut self) {
        self.y += 8.0;
        let y = self.y + 12.0;
        let _ = writeln!(
            self.body,
            "<text class=\"title\" x=\"{LABEL_X}\" y=\"{:.1}\">legend</text>",
            y + 4.0
        );
        let mut items: Vec<(String, Mark)> = self
            .clusters
            .iter()
            .map(|c| (c.to_string(), Mark::Swatch(self.colour(c), "")))
            .collect();
        items.push((
            "no answer".into(),
            Mark::Swatch("#eeeeee", " stroke=\"#bdbdbd\" stroke-dasharray=\"3 2\""),
        ));
        items.push((
            "fault".into(),
            Mark::Swatch(FAULT_FILL, " stroke=\"#455a64\""),
        ));
        items.push(("expectation held".into(), Mark::Held));
        items.push(("expectation failed".into(), Mark::Failed));
        let mut x = LABEL_X + 64.0;
        for (text, shape) in items {
            let _ = writeln!(
                self.body,
                "<g class=\"legend\">{}<text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
                shape.svg(x, y),
                x + 18.0,
                y + 4.0,
                escape(&text)
            );
            x += 30.0 + text_width(&text);
        }
        self.y += 24.0;
    }
}

/// A mark of the legend.
enum Mark {
    /// A square of this fill, with these extra attributes.
    Swatch(&'static str, &'static str),
    /// An expectation that held.
    Held,
    /// An expectation that failed.
    Failed,
}

impl Mark {
    /// The mark with its left edge at `x`, centred on `y`.
    fn svg(&self, x: f64, y: f64) -> String {
        match self {
            Self::Swatch(fill, extra) => format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"14\" height=\"14\" fill=\"{fill}\"{extra}/>",
                y - 7.0
            ),
            Self::Held => format!(
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"6\" fill=\"{PASS}\"/>",
                x + 7.0
            ),
            Self::Failed => format!(
                "<path d=\"M{:.1},{:.1} l12,12 m0,-12 l-12,12\" stroke=\"{FAIL}\" stroke-width=\"3\"/>",
                x + 1.0,
                y - 6.0
            ),
        }
    }
}

fn arrow_marker(id: &str, colour: &str) -> String {
    format!(
        "<marker id=\"{id}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" \
         fill=\"{colour}\"/></marker>"
    )
}

/// The clusters of a DNS or primary value: comma-separated, blanks dropped.
fn split_clusters(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|c| !c.is_empty())
}

/// An estimate of the width of `text` at 12 px (for placing labels only where they fit).
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 7.0
}

/// A tick interval giving at most 12 ticks over `last_ms`.
fn nice_tick(last_ms: u64) -> u64 {
    const STEPS: [u64; 14] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| last_ms.div_ceil(*s) <= 12)
        .unwrap_or(1_800_000)
}

fn tick_label(ms: u64, tick_ms: u64) -> String {
    if tick_ms < 1_000 {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    } else if tick_ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// `unix_ms` as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian, Howard Hinnant's
/// days-to-civil).
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
