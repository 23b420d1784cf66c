//! Data connections on the stub: agent-dialled HTTP/1.1 connections (ALPN
//! [`crate::protocol::ALPN_DATA`]) kept idle per cluster, each carrying one ordinary
//! request at a time. A connection leaves the pool for a request and comes back
//! only when the response body ended cleanly; any other ending drops it, which
//! closes it, and the agent dials another. Each connection carries the [`ConnTag`] of
//! the agent that dialled it, so a retry can keep away from that agent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use causeway_model::cluster::ClusterId;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::registry::Avoid;
use crate::body::TunnelBody;
use crate::mux::session::AgentId;
use crate::transport;

/// Most idle data connections kept per cluster; more are closed.
pub const MAX_IDLE_PER_CLUSTER: usize = 256;

/// Which connection a data connection is, and whose.
#[derive(Clone, Debug)]
pub struct ConnTag {
    /// Unique within this stub process (drawn from the registry's session IDs).
    pub id: u64,
    /// The agent that dialled it.
    pub agent: AgentId,
}

struct Idle {
    conn: SendRequest<TunnelBody>,
    tag: ConnTag,
}

/// Idle data connections by cluster.
#[derive(Clone)]
pub struct DataPool {
    idle: Arc<Mutex<HashMap<ClusterId, Vec<Idle>>>>,
    gauge: IntGauge,
}

/// What happened to a request offered to the pool.
pub enum DataSent {
    /// Answered over the connection `ConnTag`; it goes back to the pool when the body
    /// ends cleanly.
    Response(Response<Returning>, ConnTag),
    /// No idle data connection could take it; the request is intact.
    NotSent(Request<TunnelBody>),
    /// Sent (maybe partly) over the connection `ConnTag` and then failed.
    Failed(hyper::Error, ConnTag),
}

impl DataPool {
    /// An empty pool counting idle connections in `gauge`.
    pub fn new(gauge: IntGauge) -> Self {
        DataPool {
            idle: Arc::default(),
            gauge,
        }
    }

    /// Adds an idle connection of `cluster` (dropped, so closed, if the pool is full
    /// or the connection is closing).
    pub fn put(&self, cluster: &ClusterId, conn: SendRequest<TunnelBody>, tag: ConnTag) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(cluster.clone()).or_default();
        if list.len() < MAX_IDLE_PER_CLUSTER {
            list.push(Idle { conn, tag });
            self.gauge.inc();
        }
    }

    /// Takes the most recently returned idle connection of `cluster` that `avoid`
    /// allows (closed ones met on the way are dropped).
    fn take(&self, cluster: &ClusterId, avoid: &Avoid) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(cluster)?;
        while let Some(pos) = list
            .iter()
            .rposition(|i| avoid.allows(i.tag.id, &i.tag.agent))
        {
            let i = list.remove(pos);
            self.gauge.dec();
            if !i.conn.is_closed() {
                return Some(i);
            }
        }
        None
    }

    /// Forgets the closed idle connections of `cluster` (its last one ending removes
    /// the cluster's entry).
    fn prune(&self, cluster: &ClusterId) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = idle.get_mut(cluster) {
            let before = list.len();
            list.retain(|i| !i.conn.is_closed());
            self.gauge.sub((before - list.len()) as i64);
            if list.is_empty() {
                idle.remove(cluster);
            }
        }
    }

    /// Idle connections of `cluster` (one that just closed may count until pruned).
    pub fn idle(&self, cluster: &ClusterId) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.get(cluster).map_or(0, Vec::len)
    }

    /// Sends `req` (HTTP/1.1, absolute URI) over an idle data connection of `cluster`
    /// that `avoid` allows.
    pub async fn send(
        &self,
        cluster: &ClusterId,
        mut req: Request<TunnelBody>,
        avoid: &Avoid,
    ) -> DataSent {
        loop {
            let Some(Idle { mut conn, tag }) = self.take(cluster, avoid) else {
                return DataSent::NotSent(req);
            };
            if conn.ready().await.is_err() {
                continue;
            }
            match conn.try_send_request(req).await {
                Ok(resp) => {
                    let back = (
                        self.clone(),
                        cluster.clone(),
                        Idle {
                            conn,
                            tag: tag.clone(),
                        },
                    );
                    return DataSent::Response(resp.map(|b| Returning::new(b, back)), tag);
                }
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return DataSent::Failed(e.into_error(), tag),
                },
            }
        }
    }
}

/// A response body from a data connection that puts the connection back into the
/// pool the moment the body has ended cleanly (and drops it otherwise).
pub struct Returning {
    inner: Incoming,
    back: Option<(DataPool, ClusterId, Idle)>,
}

impl Returning {
    fn new(inner: Incoming, back: (DataPool, ClusterId, Idle)) -> Self {
        let mut r = Returning {
            inner,
            back: Some(back),
        };
        // An empty body may never be polled.
        if r.inner.is_end_stream() {
            r.give_back();
        }
        r
    }

    fn give_back(&mut self) {
        if let Some((pool, cluster, Idle { conn, tag })) = self.back.take() {
            pool.put(&cluster, conn, tag);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            // Servers stop polling once `is_end_stream` says so: check after each frame.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.give_back(),
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one accepted data connection of `cluster` dialled by the agent of `tag`: the
/// stub becomes its HTTP/1.1 client, the connection joins the pool, and this task
/// drives it until it closes.
pub async fn serve(
    pool: DataPool,
    cluster: ClusterId,
    tag: ConnTag,
    tls: TlsStream<transport::BufTcp>,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    transport::watch_liveness(tls.get_ref().0.get_ref());
    let (sender, conn) = match hyper::client::conn::http1::Builder::new()
        .handshake::<_, TunnelBody>(TokioIo::new(tls))
        .await
    {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(%cluster, %peer, error = %e, "data connection handshake failed");
            return;
        }
    };
    pool.put(&cluster, sender, tag);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(%cluster, %peer, error = %e, "data connection ended");
            }
        }
        () = shutdown.cancelled() => {}
    }
    pool.prune(&cluster);
}
