//! The enrolment route on the agents' listener, for connections without a client
//! certificate: `POST /v1/enrol` only (see [`crate::enrol`]); nothing else is served
//! to a connection that has not proven it is an agent.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::state::StubState;
use crate::body::{self, TunnelBody};
use crate::enrol::{ENROL_PATH, MAX_REQUEST_BYTES};

/// Serves HTTP/1.1 enrolment requests on `tls`.
pub async fn serve(
    shared: Arc<StubState>,
    tls: TlsStream<crate::transport::BufTcp>,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&shared, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(TokioIo::new(tls), svc);
    tokio::select! {
        r = conn => if let Err(e) = r { tracing::debug!(error = %e, %peer, "enrolment connection ended") },
        () = shutdown.cancelled() => {}
    }
}

async fn answer(shared: &StubState, req: Request<Incoming>) -> http::Response<TunnelBody> {
    let refuse = |code: StatusCode, msg: &str| {
        crate::status::status_response(code, crate::status::reason_for(code), msg).map(body::boxed)
    };
    let Some(enroller) = &shared.enroller else {
        return refuse(
            StatusCode::NOT_FOUND,
            "enrolment is not enabled on this stub",
        );
    };
    if req.uri().path() != ENROL_PATH {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a client certificate is required (only enrolment works without one)",
        );
    }
    if req.method() != Method::POST {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "enrolment takes POST");
    }
    let bytes = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("request body: {e}")),
    };
    enroller.handle(&bytes).await.map(body::boxed)
}
