//! The agent's prober mode (`causeway agent --probe-config FILE`): the measuring loop of
//! `causeway probe` ([`causeway_probe::measure()`]) runs inside the agent, and the stub
//! polls its smoothed RTTs over the session and reports them to dns for the cluster of
//! the agent's certificate (`crate::stub::latency`). The agent only measures.
//!
//! The poll is an internal request: `GET` [`LATENCY_PATH`] with
//! [`protocol::HDR_INTERNAL`]` = `[`protocol::INTERNAL_LATENCY`]. Every request carrying
//! [`protocol::HDR_INTERNAL`] is answered here and never forwarded (users cannot send
//! it: the stub strips `x-causeway-*` from their requests); a request to the same path
//! without it is an ordinary request and goes to the API server like any other.

use std::sync::Arc;

use causeway_probe::report::Measured;
use causeway_probe::{ProberConfig, Snapshot};
use http::{Method, Request, Response, StatusCode, header};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::forward::{Carrier, Forwarder};
use crate::body::{self, TunnelBody};
use crate::protocol;

pub use crate::protocol::LATENCY_PATH;

/// The measuring loop's latest results.
pub struct Prober {
    name: String,
    latest: watch::Receiver<Snapshot>,
}

impl Prober {
    /// Starts measuring `config`'s beacons until `shutdown`.
    pub fn start(config: ProberConfig, shutdown: CancellationToken) -> Arc<Prober> {
        let (tx, rx) = watch::channel(Snapshot::default());
        let name = config.name.clone();
        tokio::spawn(causeway_probe::measure(config, tx, shutdown));
        Arc::new(Prober { name, latest: rx })
    }

    /// The current measurements as the stub reads them.
    pub fn measured(&self) -> Measured {
        Measured::new(&self.name, &self.latest.borrow())
    }
}

/// Whether `req` is internal (carries [`protocol::HDR_INTERNAL`]): answered by the
/// agent itself, never forwarded.
pub fn is_internal<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(&protocol::HDR_INTERNAL)
}

/// The agent's answer to an internal request: the measurements for `GET`
/// [`LATENCY_PATH`] with value [`protocol::INTERNAL_LATENCY`] when a prober runs; 404
/// otherwise.
pub fn answer<B>(prober: Option<&Prober>, req: &Request<B>) -> Response<TunnelBody> {
    let latency = req.method() == Method::GET
        && req.uri().path() == LATENCY_PATH
        && req
            .headers()
            .get(&protocol::HDR_INTERNAL)
            .is_some_and(|v| v.as_bytes() == protocol::INTERNAL_LATENCY.as_bytes());
    let (status, text) = match (latency, prober) {
        (true, Some(p)) => (
            StatusCode::OK,
            serde_json::to_string(&p.measured()).unwrap_or_default(),
        ),
        (true, None) => (
            StatusCode::NOT_FOUND,
            r#"{"error":"no prober in this agent (--probe-config)"}"#.to_string(),
        ),
        (false, _) => (
            StatusCode::NOT_FOUND,
            r#"{"error":"unknown internal request"}"#.to_string(),
        ),
    };
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// What a session or data connection does with one request from the stub: internal
/// requests are answered here, everything else goes to the [`Forwarder`].
pub async fn dispatch(
    prober: Option<Arc<Prober>>,
    forwarder: Arc<Forwarder>,
    req: Request<hyper::body::Incoming>,
    carrier: Carrier,
) -> Response<TunnelBody> {
    if is_internal(&req) {
        return answer(prober.as_deref(), &req);
    }
    forwarder.handle(req, carrier).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http_body_util::BodyExt;

    use super::*;

    fn prober(rtts: &[(&str, f64)]) -> Prober {
        let snap = Snapshot {
            rtts: rtts
                .iter()
                .map(|(p, ms)| (p.parse().expect("prefix"), *ms))
                .collect::<BTreeMap<_, _>>(),
            rounds: 4,
        };
        let (_tx, rx) = watch::channel(snap);
        Prober {
            name: "edge".into(),
            latest: rx,
        }
    }

    fn req(path: &str, internal: Option<&'static str>) -> Request<()> {
        let mut r = Request::get(path).body(()).expect("request");
        if let Some(v) = internal {
            r.headers_mut()
                .insert(protocol::HDR_INTERNAL, http::HeaderValue::from_static(v));
        }
        r
    }

    async fn text(r: Response<TunnelBody>) -> (StatusCode, String) {
        let status = r.status();
        let b = r.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn answers_the_latency_poll_only_with_the_header() {
        let p = prober(&[("10.1.0.0/24", 12.5)]);
        let r = req(LATENCY_PATH, Some(protocol::INTERNAL_LATENCY));
        assert!(is_internal(&r));
        let (status, body) = text(answer(Some(&p), &r)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let m = Measured::parse(body.as_bytes()).expect("measured");
        assert_eq!(m.prober, "edge");
        assert_eq!(m.rounds, 4);
        assert_eq!(m.rtts().values().copied().collect::<Vec<_>>(), vec![12.5]);

        // The same path without the header is an ordinary request: forwarded.
        assert!(!is_internal(&req(LATENCY_PATH, None)));
        // Internal, but not the poll (another value, path or no prober): 404, here.
        for (r, p) in [
            (req(LATENCY_PATH, Some("other")), Some(&p)),
            (req("/api/v1/pods", Some("latency")), Some(&p)),
            (req(LATENCY_PATH, Some("latency")), None),
        ] {
            assert!(is_internal(&r));
            let (status, body) = text(answer(p, &r)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        }
    }
}
