//! The agents' listener. A connection with an agent certificate becomes a session
//! (the stub then speaks HTTP/2 as the client over it) or, by its ALPN, a data
//! connection (HTTP/1.1, [`super::data`]); a connection without one may only enrol.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::state::StubState;
use crate::mux::Session;
use crate::mux::session::AgentId;
use crate::transport;

/// Accepts agent connections until `shutdown`.
pub async fn serve_agents(
    shared: Arc<StubState>,
    listener: TcpListener,
    tls: transport::TlsServer,
    shutdown: CancellationToken,
) {
    let serve = move |tls: TlsStream<transport::BufTcp>, peer, shutdown| {
        let shared = shared.clone();
        async move {
            match transport::peer_leaf(&tls) {
                Some(cert) => session(shared, tls, peer, cert, shutdown).await,
                None => super::enrol::serve(shared, tls, peer, shutdown).await,
            }
        }
    };
    transport::serve_tls(
        listener,
        tls,
        transport::BULK_READ_BUFFER,
        shutdown,
        true,
        serve,
    )
    .await;
}

async fn session(
    shared: Arc<StubState>,
    tls: TlsStream<transport::BufTcp>,
    peer: SocketAddr,
    cert: rustls::pki_types::CertificateDer<'static>,
    shutdown: CancellationToken,
) {
    let cluster = match crate::pki::agent_cluster_from_cert(&cert) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, %peer, "refused a session: not an agent certificate");
            return;
        }
    };
    if let Err(reason) = (shared.agent_allowed)(&cert, &cluster) {
        tracing::warn!(%cluster, %peer, %reason, "refused a session");
        return;
    }
    // Every connection is tagged with the agent that dialled it (its certificate's
    // serial), so a request lost with one can be retried on another agent.
    let agent = match crate::pki::cert_serial(&cert) {
        Ok(serial) => AgentId::new(&serial),
        Err(e) => {
            tracing::warn!(error = %e, %peer, "refused a session: no certificate serial");
            return;
        }
    };
    let id = shared.registry.next_id();
    match transport::alpn(&tls).as_deref() {
        Some(crate::protocol::ALPN_TUNNEL) => {}
        Some(crate::protocol::ALPN_DATA) => {
            let tag = super::data::ConnTag { id, agent };
            return super::data::serve(shared.data.clone(), cluster, tag, tls, peer, shutdown)
                .await;
        }
        _ => {
            tracing::warn!(%cluster, %peer, "refused a session: ALPN is not causeway-tunnel/1");
            return;
        }
    }
    let span = tracing::info_span!("tunnel.session", session = id, %cluster, %agent, %peer);
    async move {
        let (session, conn) = match Session::handshake(id, cluster.clone(), agent, peer, tls).await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "session handshake failed");
                return;
            }
        };
        shared.registry.add(session);
        tracing::info!(sessions = shared.registry.count(&cluster), "agent session up");
        let result = tokio::select! {
            r = conn => r,
            () = shutdown.cancelled() => Ok(()),
        };
        shared.registry.remove(&cluster, id);
        match result {
            Ok(()) => tracing::info!(sessions = shared.registry.count(&cluster), "agent session closed"),
            Err(e) => tracing::info!(error = %e, sessions = shared.registry.count(&cluster), "agent session lost"),
        }
    }
    .instrument(span)
    .await;
}
