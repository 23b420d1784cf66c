//! The HTTP API (hyper 1, HTTP/1.1): inputs from probers and the scheduler, and ops.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v1/latency` | `{"measurements":[{"prefix":"198.51.100.0/24","cluster":"idc-bj","rttMs":12.5}]}`, optionally with `"prober":"ID"` (who measured) |
//! | `GET /v1/latency?client=198.51.100.7&cluster=idc-bj` | JSON: the live posted measurements (both filters optional), each with prober and age |
//! | `PUT /v1/latency/map` | a whole latency map in the line format ([`crate::latency::MapParser`]), streamed, at most [`MAX_MAP_BODY`]: replaces the config's map at once; a bad one is refused naming its line and the old map keeps serving |
//! | `DELETE /v1/latency/map` | back to the config's map |
//! | `POST /v1/health` | a `causeway_model::HealthReport`, or `{"reports":[...]}` |
//! | `POST /v1/placement` | a `causeway_model::Placement`, or `{"placements":[...]}` ([`crate::inputs`]) |
//! | `GET /v1/explain?name=app.svc.example.&client=198.51.100.0/24&type=A` | JSON [`crate::explain::Explanation`], plus `measured`: the matched prefix's posted RTTs with prober and age |
//! | `GET /metrics` | Prometheus text |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once sockets are bound and a snapshot is published, else 503 |
//!
//! Bodies are limited to [`MAX_BODY`]; bad input gets a 400 with the reason (an unknown
//! service or cluster is named in it).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use causeway_model::{ClusterId, HealthReport, Placement};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::builder::Event;
use crate::inputs::{InputError, Inputs};
use crate::latency::LatencyStore;
use crate::policy::Family;
use crate::state::ServerState;

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 << 20;
/// Largest `PUT /v1/latency/map` body (about 25 bytes a prefix: some 40 million).
pub const MAX_MAP_BODY: usize = 1 << 30;
/// Most measurements in one POST.
pub const MAX_MEASUREMENTS: usize = 200_000;

/// What the API handlers need.
#[derive(Clone)]
pub struct Api {
    /// Shared server state.
    pub shared: Arc<ServerState>,
    /// Builder input.
    pub events: mpsc::UnboundedSender<Event>,
    /// Posted measurements.
    pub latency: LatencyStore,
    /// Placements and health reports.
    pub inputs: Inputs,
}

/// One latency measurement.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Measurement {
    /// Client network.
    pub prefix: IpNet,
    /// Cluster.
    pub cluster: ClusterId,
    /// RTT in milliseconds.
    pub rtt_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyPost {
    /// Who measured (e.g. `causeway probe`'s `cluster/name`); shown by `GET /v1/latency`.
    #[serde(default)]
    prober: Option<String>,
    measurements: Vec<Measurement>,
}

/// Longest prober identity accepted.
pub const MAX_PROBER_LEN: usize = 253;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthPost {
    reports: Vec<HealthReport>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementPost {
    placements: Vec<Placement>,
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Resp {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn bad(reason: impl std::fmt::Display) -> Resp {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": reason.to_string() }),
    )
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, api: Api, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "api accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let api = api.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(route(&api, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => if let Err(e) = r { debug!(error = %e, "api connection ended") },
                () = shutdown.cancelled() => {}
            }
        });
    }
}

async fn route(api: &Api, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if api.shared.ready.load(Ordering::SeqCst) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, api.shared.metrics.encode());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/v1/explain") => explain(api, &query),
        (&Method::GET, "/v1/latency") => list_latency(api, &query),
        (&Method::POST, "/v1/latency") => match body(req).await {
            Ok(b) => post_latency(api, &b),
            Err(r) => r,
        },
        (&Method::PUT, "/v1/latency/map") => put_latency_map(api, req).await,
        (&Method::DELETE, "/v1/latency/map") => swap_latency_map(api, None).await,
        (&Method::POST, "/v1/health") => match body(req).await {
            Ok(b) => post_health(api, &b),
            Err(r) => r,
        },
        (&Method::POST, "/v1/placement") => match body(req).await {
            Ok(b) => post_placement(api, &b),
            Err(r) => r,
        },
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/v1/explain" | "/v1/latency" | "/v1/health"
            | "/v1/placement" | "/v1/latency/map",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn body(req: Request<Incoming>) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("cannot read body: {e}\n"),
        )),
    }
}

/// `PUT /v1/latency/map`: parses the body as it arrives (only the current line is
/// buffered), sorts the table on a blocking thread, then swaps it in. Queries see the
/// old map until the new one is whole; a bad body changes nothing.
async fn put_latency_map(api: &Api, req: Request<Incoming>) -> Resp {
    let mut parser = crate::latency::MapParser::new("body");
    let mut body = req.into_body();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return bad(format!("cannot read body: {e}")),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > MAX_MAP_BODY {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: larger than {MAX_MAP_BODY} bytes\n"),
            );
        }
        if let Err(e) = parser.feed(&data) {
            return map_error(e);
        }
    }
    match tokio::task::spawn_blocking(move || parser.finish()).await {
        Ok(Ok(table)) => swap_latency_map(api, Some(Arc::new(table))).await,
        Ok(Err(e)) => map_error(e),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "error": format!("building the map failed: {e}") }),
        ),
    }
}

fn map_error(e: crate::latency::MapError) -> Resp {
    warn!(line = e.line, reason = %e.reason, "latency map upload refused");
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": e.to_string(), "line": e.line }),
    )
}

/// Hands `map` (or `None`: the config's) to the builder and answers once queries see it.
async fn swap_latency_map(api: &Api, map: Option<Arc<crate::latency::LatencyTable>>) -> Resp {
    let (prefixes, clusters) = map.as_ref().map_or((0, Vec::new()), |m| {
        (
            m.len(),
            m.clusters()
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
        )
    });
    let uploaded = map.is_some();
    let (done, published) = tokio::sync::oneshot::channel();
    if api.events.send(Event::LatencyMap { map, done }).is_err() || published.await.is_err() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "error": InputError::Stopped.to_string() }),
        );
    }
    if !uploaded {
        return json(StatusCode::OK, &serde_json::json!({ "deleted": true }));
    }
    json(
        StatusCode::OK,
        &serde_json::json!({ "prefixes": prefixes, "clusters": clusters }),
    )
}

fn post_latency(api: &Api, body: &[u8]) -> Resp {
    let post: LatencyPost = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return bad(format!("body: {e}")),
    };
    if post.measurements.len() > MAX_MEASUREMENTS {
        return bad(format!(
            "at most {MAX_MEASUREMENTS} measurements per request"
        ));
    }
    for (i, m) in post.measurements.iter().enumerate() {
        if !m.rtt_ms.is_finite() || m.rtt_ms < 0.0 || m.rtt_ms > 600_000.0 {
            return bad(format!(
                "measurements[{i}].rttMs: must be 0 to 600000 milliseconds"
            ));
        }
    }
    let prober: Option<Arc<str>> = match post.prober {
        Some(p) if p.is_empty() || p.len() > MAX_PROBER_LEN || p.chars().any(char::is_control) => {
            return bad(format!(
                "prober: must be 1 to {MAX_PROBER_LEN} printable characters"
            ));
        }
        p => p.map(Arc::from),
    };
    let n = post.measurements.len();
    for m in post.measurements {
        api.latency
            .insert_from(m.prefix, m.cluster, m.rtt_ms as f32, prober.clone());
    }
    let _ = api.events.send(Event::Latency);
    json(StatusCode::OK, &serde_json::json!({ "accepted": n }))
}

/// `GET /v1/latency`: the live posted measurements, longest prefix first, each with the
/// prober that reported it, when (`postedAtUnixMs`, milliseconds since the epoch) and how long ago (`ageMs`). `client` keeps the prefixes containing
/// that address or prefix, `cluster` one cluster's.
fn list_latency(api: &Api, query: &str) -> Resp {
    let mut client = None;
    let mut cluster = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "client" => match parse_client(&v) {
                Ok(c) => client = Some(c),
                Err(e) => return bad(format!("client: {e}")),
            },
            "cluster" => cluster = Some(v.into_owned()),
            _ => {}
        }
    }
    let out = measured_rows(api, |prefix, c| {
        client.is_none_or(|cl| prefix.contains(&cl))
            && cluster.as_deref().is_none_or(|want| c.as_str() == want)
    });
    json(StatusCode::OK, &serde_json::json!({ "measurements": out }))
}

/// The live posted measurements that `keep`, longest prefix first, as JSON rows.
fn measured_rows(api: &Api, keep: impl Fn(&IpNet, &ClusterId) -> bool) -> Vec<serde_json::Value> {
    let now = std::time::SystemTime::now();
    let mut rows = api.latency.posted();
    rows.retain(|(prefix, c, _)| keep(prefix, c));
    rows.sort_by(|a, b| {
        b.0.prefix_len()
            .cmp(&a.0.prefix_len())
            .then(a.0.cmp(&b.0))
            .then(a.1.as_str().cmp(b.1.as_str()))
    });
    rows.into_iter()
        .map(|(prefix, c, p)| {
            let since_epoch =
                p.at.duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
            serde_json::json!({
                "prefix": prefix.to_string(),
                "cluster": c.as_str(),
                "rttMs": (f64::from(p.rtt_ms) * 1000.0).round() / 1000.0,
                "prober": p.prober.as_deref(),
                "postedAtUnixMs": since_epoch.as_millis() as u64,
                "ageMs": now.duration_since(p.at).unwrap_or_default().as_millis() as u64,
            })
        })
        .collect()
}

fn post_health(api: &Api, body: &[u8]) -> Resp {
    let reports = match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => return bad(format!("body: {e}")),
        Ok(v) if v.get("reports").is_some() => {
            serde_json::from_value::<HealthPost>(v).map(|p| p.reports)
        }
        Ok(v) => serde_json::from_value::<HealthReport>(v).map(|r| vec![r]),
    };
    let reports = match reports {
        Ok(r) => r,
        Err(e) => return bad(format!("body: {e}")),
    };
    accepted(api.inputs.health(reports))
}

fn post_placement(api: &Api, body: &[u8]) -> Resp {
    let parsed = match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => {
            api.shared.metrics.placement_update("invalid");
            return bad(format!("body: {e}"));
        }
        Ok(v) if v.get("placements").is_some() => {
            serde_json::from_value::<PlacementPost>(v).map(|p| (p.placements, true))
        }
        Ok(v) => serde_json::from_value::<Placement>(v).map(|p| (vec![p], false)),
    };
    let (placements, many) = match parsed {
        Ok(p) => p,
        Err(e) => {
            api.shared.metrics.placement_update("invalid");
            return bad(format!("body: {e}"));
        }
    };
    let r = api.inputs.placements_at(placements, |i| {
        if many {
            format!("placements[{i}]")
        } else {
            "placement".into()
        }
    });
    match r {
        Ok((n, ignored)) if !ignored.is_empty() => json(
            StatusCode::OK,
            &serde_json::json!({ "accepted": n, "ignored": ignored }),
        ),
        other => accepted(other.map(|(n, _)| n)),
    }
}

/// `{"accepted": n}`, or the input's error: 400 naming the field, 503 when stopping.
fn accepted(r: Result<usize, InputError>) -> Resp {
    match r {
        Ok(n) => json(StatusCode::OK, &serde_json::json!({ "accepted": n })),
        Err(InputError::Stopped) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "error": InputError::Stopped.to_string() }),
        ),
        Err(e) => bad(e),
    }
}

fn explain(api: &Api, query: &str) -> Resp {
    let (name, client, family) = match explain_params(query) {
        Ok(p) => p,
        Err(reason) => return bad(reason),
    };
    match crate::explain::explain(&api.shared.state.load(), &name, client, family) {
        Ok(e) => {
            // Who measured the matched prefix's posted RTTs, and when (`measured`).
            let prefix = e
                .latency_prefix
                .as_deref()
                .and_then(|p| p.parse::<IpNet>().ok());
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            if let (Some(prefix), Some(obj)) = (prefix, v.as_object_mut()) {
                let rows = measured_rows(api, |p, _| *p == prefix);
                obj.insert("measured".into(), serde_json::Value::Array(rows));
            }
            json(StatusCode::OK, &v)
        }
        Err(e) => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": e.to_string() }),
        ),
    }
}

/// The path and query of `GET /v1/explain` for `name`, `client` and `qtype`, each
/// value form-urlencoded (what [`explain_params`] reads back).
pub fn explain_path(name: &str, client: &str, qtype: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("name", name)
        .append_pair("client", client)
        .append_pair("type", qtype)
        .finish();
    format!("/v1/explain?{query}")
}

/// Reads the query of `GET /v1/explain` (`application/x-www-form-urlencoded`):
/// `name` and `client` are required, `type` is `A` (default) or `AAAA`.
fn explain_params(query: &str) -> Result<(String, IpNet, Family), String> {
    let mut name = None;
    let mut client = None;
    let mut family = Family::V4;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "name" => name = Some(v.into_owned()),
            "client" => client = Some(v.into_owned()),
            "type" => {
                family = match v.to_ascii_uppercase().as_str() {
                    "A" => Family::V4,
                    "AAAA" => Family::V6,
                    other => return Err(format!("type: {other:?} must be A or AAAA")),
                }
            }
            _ => {}
        }
    }
    let name = name.ok_or("name: required")?;
    let client = match client.as_deref().map(parse_client) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(format!("client: {e}")),
        None => return Err("client: required (an address or prefix)".into()),
    };
    Ok((name, client, family))
}

/// Parses `198.51.100.0/24` or a bare address (full length).
pub fn parse_client(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not an address or prefix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_query_round_trips_special_characters() {
        for (name, client) in [
            ("app.svc.example.", "198.51.100.0/24"),
            ("a b+c&d=e%2F/?#\u{e9}.svc.example.", "2001:db8::/48"),
            ("%zz%2+", "198.51.100.7"),
        ] {
            let path = explain_path(name, client, "AAAA");
            let (p, query) = path.split_once('?').unwrap();
            assert_eq!(p, "/v1/explain");
            assert!(
                !query[..query.find("&client=").unwrap()].contains(['/', ' ', '#', '?']),
                "{query}"
            );
            let (n, c, f) = explain_params(query).unwrap();
            assert_eq!(n, name);
            assert_eq!(c, parse_client(client).unwrap());
            assert_eq!(f, Family::V6);
        }
        // What other clients send: `%2F`, `+` for a space, a bad escape kept as is.
        let (n, c, f) = explain_params("name=a+b%2Fc%zz&client=198.51.100.0%2F24").unwrap();
        assert_eq!(n, "a b/c%zz");
        assert_eq!(c.to_string(), "198.51.100.0/24");
        assert_eq!(f, Family::V4);
        assert!(
            explain_params("client=198.51.100.0")
                .unwrap_err()
                .contains("name")
        );
        assert!(
            explain_params("name=x&client=1.2.3.4&type=MX")
                .unwrap_err()
                .contains("type")
        );
    }

    #[test]
    fn parses_clients() {
        assert_eq!(
            parse_client("198.51.100.7/24").unwrap().to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(parse_client("2001:db8::1").unwrap().prefix_len(), 128);
        assert!(parse_client("nope").is_err());
    }
}
