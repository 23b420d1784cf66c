//! The enrolment route on the agents' listener, for connections without a client
//! certificate. STAND-IN until T2's `crate::enrol` handler lands: answers 404.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::body;

/// Serves HTTP/1.1 enrolment requests on `tls`.
pub async fn serve(
    _shared: Arc<Shared>,
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let svc = service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(
            crate::status::status_response(
                http::StatusCode::NOT_FOUND,
                "NotFound",
                "enrolment is not available",
            )
            .map(body::boxed),
        )
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
    tokio::select! {
        r = conn => if let Err(e) = r { tracing::debug!(error = %e, %peer, "enrolment connection ended") },
        () = shutdown.cancelled() => {}
    }
}
