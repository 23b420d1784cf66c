//! The users' HTTPS listener (HTTP/1.1 and HTTP/2) and the life of one request, in
//! order: [`target`] read (for the audit record) → [`gate`]: authenticate → authorize →
//! impersonate → [`route`] to a live connection of the cluster → [`forward`] the
//! answer; every request, served or refused, ends in its [`Exchange`].

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::exchange::Exchange;
use super::gate::{self, ConnInfo, Impersonated, Refusal};
use super::state::StubState;
use super::{forward, route, target};
use crate::audit::{self, AuditEvent};
use crate::authz::{self, Verb};
use crate::body::{self, TunnelBody};
use crate::transport;

/// Accepts user connections until `shutdown`.
pub async fn serve_users(
    shared: Arc<StubState>,
    listener: TcpListener,
    tls: transport::TlsServer,
    shutdown: CancellationToken,
) {
    let serve = move |tls: tokio_rustls::server::TlsStream<transport::BufTcp>,
                      peer,
                      shutdown: CancellationToken| {
        let shared = shared.clone();
        async move {
            let conn = Arc::new(ConnInfo {
                peer,
                cert: transport::peer_leaf(&tls),
            });
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                let conn = conn.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(shared, conn, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http2()
                .timer(TokioTimer::new())
                .initial_stream_window_size(crate::protocol::STREAM_WINDOW)
                .initial_connection_window_size(crate::protocol::SESSION_WINDOW)
                .max_concurrent_streams(1000)
                // Clients that cancel many requests (timeouts, watch restarts) reset
                // streams before the stub accepted them; h2's default of 20 such
                // resets would end the whole connection (rapid-reset protection).
                .max_pending_accept_reset_streams(512);
            builder.http1().timer(TokioTimer::new());
            let served = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::select! {
                r = served => if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "user connection ended");
                },
                () = shutdown.cancelled() => {}
            }
        }
    };
    transport::serve_tls(
        listener,
        tls,
        transport::SMALL_READ_BUFFER,
        shutdown,
        false,
        serve,
    )
    .await;
}

/// Serves one request.
pub async fn handle(
    shared: Arc<StubState>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<TunnelBody> {
    let audit_id = audit::audit_id(req.headers());
    let raw_path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let target = target::parse(&raw_path, query.as_deref());
    let (k8s_path, verb) = match &target {
        Ok(t) => (
            t.path.clone(),
            authz::verb_of(req.method(), &t.path, query.as_deref()),
        ),
        Err(_) => (raw_path.clone(), Verb::Unknown),
    };
    let request_uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| raw_path.clone(), |p| p.as_str().to_owned());
    let event = AuditEvent::new(
        audit_id.clone(),
        req.method(),
        request_uri,
        &k8s_path,
        query.as_deref(),
    )
    .with_client(Some(conn.peer.ip()), req.headers());
    let mut ex = Exchange::begin(event, verb, shared.audit.clone(), shared.metrics.clone());
    let span =
        tracing::debug_span!("tunnel.request", %audit_id, method = %req.method(), path = %raw_path);
    let result = async {
        if !shared.is_active() {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this stub is on standby; another stub holds the lease",
            ));
        }
        let a = gate::authenticate(&shared, &conn, req)?;
        ex.set_user(&a.identity);
        let target = target.map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))?;
        let known = shared.is_enrolled(&target.cluster);
        ex.set_cluster(&target.cluster, known);
        let a = gate::authorize(&shared, a, target, verb)?;
        if !known {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!(
                    "cluster {:?} is not known to this stub",
                    a.target.cluster.as_str()
                ),
            ));
        }
        let bytes = (ex.byte_counter(true), ex.byte_counter(false));
        let Impersonated {
            req,
            target,
            upgrade,
        } = gate::impersonate(a, ex.audit_id(), bytes.0.clone())?;
        // Not an upgrade and not long-running: a data connection may carry it.
        let short = upgrade.is_none() && !ex.is_long_running();
        // `upgrade` lives on: dropping its pipe would end the stream's body.
        let routed = route::route(&shared, &target.cluster, req, short, &mut ex).await?;
        Ok((routed, upgrade, bytes))
    }
    .instrument(span.clone())
    .await;
    match result {
        Ok((routed, upgrade, (bytes_up, bytes_down))) => {
            let _in_span = span.enter();
            forward::respond(routed, upgrade, ex, bytes_up, bytes_down)
        }
        Err(r) => refuse(r, ex, &audit_id),
    }
}

fn refuse(r: Refusal, mut ex: Exchange, audit_id: &str) -> Response<TunnelBody> {
    let reason = crate::status::reason_for(r.code);
    ex.refuse(r.code, reason, &r.message);
    tracing::debug!(code = r.code.as_u16(), message = %r.message, "refused");
    let mut resp = crate::status::status_response(r.code, reason, &r.message).map(body::boxed);
    if let Ok(v) = http::HeaderValue::from_str(audit_id) {
        resp.headers_mut().insert("audit-id", v);
    }
    if r.code == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"causeway\""),
        );
    }
    drop(ex);
    resp
}
