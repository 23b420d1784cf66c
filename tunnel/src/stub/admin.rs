//! The metrics listener (plain HTTP): `/metrics`, `/healthz`, `/readyz` (ready only
//! while this stub is active), `/sessions` (live sessions per cluster, JSON).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::state::StubState;
use crate::body::TunnelBody;
use crate::transport;

/// Serves the metrics listener until `shutdown`.
pub async fn serve_admin(
    shared: Arc<StubState>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    transport::serve_plain_http(listener, shutdown, move |req| answer(&shared, req)).await;
}

fn answer(shared: &StubState, req: &Request<Incoming>) -> Response<TunnelBody> {
    let path = req.uri().path();
    if let Some(r) = transport::common_endpoint(path, || shared.metrics.encode()) {
        return r;
    }
    let text = transport::text_response;
    match path {
        "/readyz" if shared.is_active() => text(StatusCode::OK, "active\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "standby\n".into()),
        "/sessions" => {
            let map: serde_json::Map<String, serde_json::Value> = shared
                .registry
                .clusters()
                .into_iter()
                .map(|(c, n)| (c.to_string(), n.into()))
                .collect();
            text(StatusCode::OK, serde_json::Value::Object(map).to_string())
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}
