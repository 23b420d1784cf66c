//! The Grafana dashboard of the hub chart (charts/causeway-hub/dashboards/causeway.json).
//!
//! 1. `helm template` renders it as a ConfigMap with the Grafana sidecar's label, valid
//!    dashboard JSON whose every query uses the `${datasource}` variable.
//! 2. Every metric a panel or a variable names is one the real binaries export, with the
//!    labels the query uses: a testbed of three clusters, the stub with an agent per cluster,
//!    dns and the scheduler (a burst that fills and a failover that completes, so every
//!    labelled series the dashboard reads exists), their three `/metrics` scraped.
//!    Histograms are compared by the sample names Prometheus stores (`_bucket`, `_sum`,
//!    `_count`): a query on a histogram's bare name names nothing and fails.

#[path = "support/tunnel.rs"]
mod tunnel_support;

#[path = "support/scheduler.rs"]
mod scheduler_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway_testbed::testing::{Kubectl, Spawn, metric_value, run_ok, wait_for};
use scheduler_support::*;
use serde_json::Value;
use tunnel_support::http_get;

const HUB: &str = "charts/causeway-hub";
const DASHBOARD: &str = "charts/causeway-hub/dashboards/causeway.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `helm template h charts/causeway-hub ARGS…`, helm's caches in `home`.
fn helm_template(home: &Path, args: &[&str]) -> Vec<Value> {
    let dir =
        causeway_testbed::bin_dir().unwrap_or_else(|e| panic!("testbed binaries missing: {e}"));
    let mut cmd = Command::new(dir.join("helm"));
    cmd.current_dir(root())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .args(["template", "h", HUB, "-n", "causeway-system"])
        .args(args);
    let text = run_ok(&mut cmd);
    text.split("\n---")
        .filter_map(|part| {
            let doc: Value = serde_yaml_ng::from_str(part.trim_start_matches("---"))
                .unwrap_or_else(|e| panic!("not YAML: {e}\n{part}"));
            (!doc.is_null()).then_some(doc)
        })
        .collect()
}

/// The dashboard ConfigMaps of a rendering.
fn dashboards(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "h-causeway-hub-dashboard")
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

#[test]
fn the_chart_ships_the_dashboard_for_the_grafana_sidecar() {
    let home = tempfile::tempdir().expect("temp dir");
    let docs = helm_template(home.path(), &[]);
    let maps = dashboards(&docs);
    assert_eq!(maps.len(), 1, "one dashboard ConfigMap by default");
    let cm = maps[0];
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1", "{cm}");
    assert_eq!(cm["metadata"]["namespace"], "causeway-system", "{cm}");
    let text = cm["data"]["causeway.json"].as_str().expect("causeway.json");
    let dash: Value = serde_json::from_str(text).expect("the dashboard is JSON");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(DASHBOARD)).expect("the dashboard file"),
    )
    .expect("the file is JSON");
    assert_eq!(dash, file, "the ConfigMap carries the file as is");

    assert_eq!(dash["uid"], "causeway-hub");
    assert!(
        dash["title"].is_string() && dash["schemaVersion"].is_u64(),
        "{dash}"
    );
    let vars = dash["templating"]["list"].as_array().expect("variables");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");

    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels(&dash) {
        let id = p["id"].as_u64().expect("a panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "gridPos.{k} of {}", p["title"]);
        }
        if p["type"] == "row" {
            continue;
        }
        assert!(p["title"].is_string(), "{p}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}: no query", p["title"]);
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(refs.insert(t["refId"].as_str().expect("refId")), "{t}");
            let expr = t["expr"].as_str().expect("expr");
            assert!(!expr.trim().is_empty(), "{}", p["title"]);
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");

    // The label, its value, the namespace and annotations are values; off renders nothing.
    let docs = helm_template(
        home.path(),
        &[
            "--set",
            "grafanaDashboard.label=dash,grafanaDashboard.labelValue=yes",
            "--set",
            "grafanaDashboard.namespace=monitoring,grafanaDashboard.annotations.grafana_folder=Causeway",
        ],
    );
    let cm = dashboards(&docs)[0];
    assert_eq!(cm["metadata"]["labels"]["dash"], "yes", "{cm}");
    assert!(
        cm["metadata"]["labels"]["grafana_dashboard"].is_null(),
        "{cm}"
    );
    assert_eq!(cm["metadata"]["namespace"], "monitoring", "{cm}");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Causeway");
    let docs = helm_template(home.path(), &["--set", "grafanaDashboard.enabled=false"]);
    assert!(dashboards(&docs).is_empty(), "rendered while disabled");
}

/// What a Prometheus scrape of the binaries holds: sample name → label names seen on it.
type Exported = BTreeMap<String, BTreeSet<String>>;

/// Sample names and their label names of a Prometheus text page, added to `out`.
fn parse_exposition(page: &str, out: &mut Exported) {
    for line in page.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            // key="value",… with backslash escapes in the values.
            let mut rest = &line[end + 1..];
            while let Some(eq) = rest.find('=') {
                let key = rest[..eq].trim_start_matches([',', ' ']).trim();
                if key.starts_with('}') || key.is_empty() {
                    break;
                }
                labels.insert(key.to_owned());
                let bytes = rest.as_bytes();
                let mut i = eq + 2; // past ="
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                rest = &rest[(i + 1).min(rest.len())..];
            }
        }
    }
}

/// PromQL words that are neither metrics nor labels: operators, and aggregations (which may
/// be followed by `by (…)` before their parenthesis).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names an expression selects, each with the label names its matchers use, and
/// the label names it groups by (`by`, `without`, `on`, `ignoring`, `group_*`). Grafana
/// variables (`$x`, `${x}`), strings and range durations are skipped; an identifier
/// followed by `(` is a function.
fn promql_names(expr: &str) -> (Vec<(String, BTreeSet<String>)>, BTreeSet<String>) {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut metrics: Vec<(String, BTreeSet<String>)> = Vec::new();
    let mut grouping = BTreeSet::new();
    let (mut i, mut in_braces, mut in_grouping, mut grouping_next) = (0, false, false, false);
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'[' {
            i += expr[i..].find(']').map_or(b.len(), |j| j + 1);
        } else if c == b'$' {
            i += 1;
            if b.get(i) == Some(&b'{') {
                i += expr[i..].find('}').map_or(b.len(), |j| j + 1);
            } else {
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
            }
        } else if c == b'{' {
            in_braces = true;
            i += 1;
        } else if c == b'}' {
            in_braces = false;
            i += 1;
        } else if c == b'(' {
            in_grouping = grouping_next;
            grouping_next = false;
            i += 1;
        } else if c == b')' {
            in_grouping = false;
            i += 1;
        } else if (c.is_ascii_alphabetic() || c == b'_' || c == b':')
            && (i == 0 || !(ident(b[i - 1]) || b[i - 1] == b'.'))
        {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start().chars().next();
            if in_braces {
                if let Some((_, labels)) = metrics.last_mut() {
                    labels.insert(word.to_owned());
                } else {
                    panic!("a matcher without a metric name in {expr}");
                }
            } else if in_grouping {
                grouping.insert(word.to_owned());
            } else if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word)
            {
                grouping_next = next == Some('(');
            } else if next == Some('(') || KEYWORDS.contains(&word) {
                // A function, or an operator word.
            } else {
                metrics.push((word.to_owned(), BTreeSet::new()));
            }
        } else {
            i += 1;
        }
    }
    (metrics, grouping)
}

/// What is wrong with an expression against what the binaries export: metrics that do
/// not exist, matcher labels a metric does not have, grouping labels none of its metrics has.
fn check_expr(expr: &str, exported: &Exported) -> Vec<String> {
    let (metrics, grouping) = promql_names(expr);
    let mut errors = Vec::new();
    if metrics.is_empty() {
        errors.push(format!("names no metric: {expr}"));
    }
    for (name, labels) in &metrics {
        match exported.get(name) {
            None => errors.push(format!("no metric {name} is exported: {expr}")),
            Some(have) => {
                for l in labels.difference(have) {
                    errors.push(format!("{name} has no label {l} (has {have:?}): {expr}"));
                }
            }
        }
    }
    for l in &grouping {
        let found = metrics
            .iter()
            .any(|(m, _)| exported.get(m).is_some_and(|have| have.contains(l)));
        if !found {
            errors.push(format!("no metric of the query has label {l}: {expr}"));
        }
    }
    errors
}

/// Every query of the dashboard: (where, PromQL). A `label_values(metric, label)` variable
/// becomes `metric{label=""}` so that its metric and label are checked alike.
fn queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default().to_owned();
            out.push((format!("panel {:?}", p["title"]), expr));
        }
    }
    for v in dash["templating"]["list"].as_array().expect("variables") {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .expect("a variable's query");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| {
                panic!(
                    "variable {}: only label_values(…) is checked: {q}",
                    v["name"]
                )
            });
        let (metric, label) = inner.split_once(',').expect("label_values(metric, label)");
        out.push((
            format!("variable {}", v["name"]),
            format!("{}{{{}=\"\"}}", metric.trim(), label.trim()),
        ));
    }
    out
}

#[test]
fn the_query_checker_finds_what_is_not_exported() {
    let mut exported = Exported::new();
    parse_exposition(
        "# TYPE causeway_x_seconds histogram\n\
         causeway_x_seconds_bucket{cluster=\"a,b\",le=\"0.5\"} 1\n\
         causeway_x_seconds_count{cluster=\"a\"} 1\n\
         causeway_y 2\n",
        &mut exported,
    );
    assert_eq!(
        exported["causeway_x_seconds_bucket"],
        BTreeSet::from(["cluster".to_owned(), "le".to_owned()])
    );
    let ok = "histogram_quantile(0.99, sum by (le, cluster) (rate(causeway_x_seconds_bucket{cluster=~\"$cluster\"}[$__rate_interval]))) / on() group_left causeway_y";
    assert_eq!(check_expr(ok, &exported), Vec::<String>::new());
    for (bad, why) in [
        (
            "rate(causeway_nope_total[5m])",
            "no metric causeway_nope_total",
        ),
        (
            "rate(causeway_x_seconds[5m])",
            "no metric causeway_x_seconds ",
        ),
        (
            "causeway_y{cluster=\"a\"}",
            "causeway_y has no label cluster",
        ),
        ("sum by (policy) (causeway_x_seconds_count)", "label policy"),
        ("sum(rate(up[1m]))", "no metric up"),
        ("vector(1)", "names no metric"),
    ] {
        let errors = check_expr(bad, &exported);
        assert!(errors.iter().any(|e| e.contains(why)), "{bad}: {errors:?}");
    }
}

/// A FailoverPolicy `db` for db/web: primary IDC, backups ALI and AWS, short lease.
const FAILOVER: &str = "apiVersion: causeway.dev/v1alpha1
kind: FailoverPolicy
metadata: {name: db}
spec:
  workload: {namespace: db, deployment: web}
  primary: sb-idc
  backups: [sb-ali, sb-aws]
  replicas: 1
  lease: {duration: 6s, margin: 3s}
  unhealthyAfter: 3s
  rto: 60s
";

/// Namespace db, Deployment web (Recreate, so a changed template leaves no Ready pod).
fn db_workload(replicas: u32) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: db}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: db, labels: {{app: db}}}}
spec:
  replicas: {replicas}
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      containers: [{{name: db, image: registry.local/db:1}}]
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_panel_names_a_metric_the_binaries_export() {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(DASHBOARD)).expect("the dashboard file"),
    )
    .expect("dashboard JSON");

    let bed = bring_up().await;
    let dir = bed.dir.path();
    let fencer = std::fs::read_to_string(root().join("examples/tunnel/fencer-rbac.yaml"))
        .expect("fencer RBAC");
    for c in bed.tb.clusters() {
        Kubectl::admin(c).apply(&fencer);
        let replicas = u32::from(c.name == IDC);
        Kubectl::admin(c).apply(&db_workload(replicas));
    }
    // 9 pods of 500m at home (room for 4): a burst to ALI and AWS, answered by dns.
    Kubectl::admin(bed.c(IDC)).apply(&source_deployment(9));

    // dns with the burst's name, and `probe.svc.example.` whose one target is health-checked
    // on a closed port: a health transition, then fail-open answers.
    let dns_file = dns_config(dir);
    let mut yaml = std::fs::read_to_string(&dns_file).expect("dns.yaml");
    yaml.push_str(
        "    - name: probe
      ttl: 1
      policy: all-healthy
      targets:
        - cluster: sb-idc
          addresses: [192.0.2.9]
          healthCheck: {protocol: tcp, address: \"127.0.0.1:1\", interval: 200ms, timeout: 100ms, fall: 1}
",
    );
    std::fs::write(&dns_file, yaml).expect("write dns.yaml");
    let dns = Spawn::causeway(BIN)
        .args(["dns", "--config"])
        .arg(&dns_file)
        .name("dns")
        .log_file(dir.join("dns.log"))
        .start();
    let l = dns.wait_listening(&["dns", "api"], Duration::from_secs(20));
    let (dns_udp, dns_api) = (l.addr_of("dns", "udp"), l.addr("api"));
    let policies = format!(
        "{}---\n{FAILOVER}",
        burst_policy(
            "maxReplicas: 2",
            "maxReplicas: 10",
            "  demand: {capacity: {}}\n  dns: {name: app.svc.example., ttl: 3s}\n",
        )
    );
    let config = dir.join("scheduler.yaml");
    std::fs::write(
        &config,
        scheduler_yaml(
            &bed.kubeconfig,
            &format!("  dnsApi: http://{dns_api}\n"),
            &policies,
        ),
    )
    .expect("write scheduler.yaml");
    let scheduler = Spawn::causeway(BIN)
        .args(["scheduler", "--config"])
        .arg(&config)
        .name("scheduler")
        .log_file(dir.join("scheduler.log"))
        .start();
    let sched = scheduler
        .wait_listening(&["scheduler"], Duration::from_secs(20))
        .addr("scheduler");
    let stub = bed._stub.as_ref().expect("the stub").metrics;

    let metric =
        |addr: SocketAddr, series: &str| metric_value(&http_get(addr, "/metrics").1, series);
    wait_for(
        "the burst Ready and the failover policy's primary set",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let burst = metric(
                sched,
                "causeway_scheduler_burst_ready_seconds_count{policy=\"web\"}",
            );
            let primary = metric(
                sched,
                "causeway_scheduler_primary{cluster=\"sb-idc\",policy=\"db\"}",
            );
            match (burst, primary) {
                (Some(b), Some(p)) if b >= 1.0 && p == 1.0 => Ok(()),
                other => Err(format!("{other:?}\n{}", scheduler.log_tail(10))),
            }
        },
    );
    // The primary's pods can no longer be scheduled: no Ready replica, a failover to ALI.
    Kubectl::admin(bed.c(IDC)).run(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "db",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"causeway.dev/nowhere":"x"}}}}}"#,
    ]);
    wait_for(
        "a failover completed",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || match metric(sched, "causeway_scheduler_failovers_total{policy=\"db\"}") {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}\n{}", scheduler.log_tail(10))),
        },
    );
    // DNS answers for the burst's clusters, and one malformed packet.
    wait_for(
        "dns answers the burst",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let a = dig(dns_udp);
            (a.len() == 3).then_some(()).ok_or(format!("{a:?}"))
        },
    );
    wait_for(
        "the probed target unhealthy, answered anyway (fail-open)",
        Duration::from_secs(15),
        Duration::from_millis(300),
        || {
            let a = dig_name(dns_udp, "probe.svc.example.");
            let open = metric(
                dns_api,
                "causeway_dns_fail_open_total{policy=\"all-healthy\"}",
            );
            match (a.as_slice(), open) {
                ([one], Some(n)) if one == "192.0.2.9" && n >= 1.0 => Ok(()),
                other => Err(format!("{other:?}\n{}", dns.log_tail(5))),
            }
        },
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    sock.send_to(b"\x00\x01garbage", dns_udp).expect("send");

    let mut exported = Exported::new();
    for addr in [stub, dns_api, sched] {
        let (code, page) = http_get(addr, "/metrics");
        assert_eq!(code, 200, "{addr}/metrics");
        parse_exposition(&page, &mut exported);
    }
    let mut errors = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in queries(&dash) {
        for e in check_expr(&expr, &exported) {
            errors.push(format!("{place}: {e}"));
        }
        used.extend(promql_names(&expr).0.into_iter().map(|(m, _)| m));
    }
    assert!(
        errors.is_empty(),
        "{}\nexported: {:?}",
        errors.join("\n"),
        exported.keys().collect::<Vec<_>>()
    );
    // What the dashboard leaves out, for the record (a test log line, not a failure).
    let unused: Vec<&String> = exported
        .keys()
        .filter(|m| m.starts_with("causeway_") && !used.contains(*m))
        .collect();
    println!(
        "{} metrics used; exported and not on the dashboard: {unused:?}",
        used.len()
    );
}
