//! DNS over TCP (RFC 7766) and the connection limits that keep a slowloris out.
//!
//! Queries on a connection are read and answered as they come (pipelining); replies
//! are flushed when no more queries are buffered; a connection idle for
//! `tcp.idleTimeout` is closed.
//!
//! Limits ([`ConnTable`]): at most `tcp.maxConnectionsPerPrefix` connections per client
//! network (the peer address cut to `tcp.ipv4PrefixLength` / `tcp.ipv6PrefixLength`) and
//! `tcp.maxConnections` in all. A new connection over either cap is not refused:
//! the connection that has been idle longest (of that network, or of all) is closed to
//! make room. A flood of idle connections therefore only pushes out other idle
//! connections, and a client that connects and asks at once is answered; the flood's
//! own connections of one network never number more than the per-network cap.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::TcpSpec;
use crate::handler::{Handler, Transport};
use crate::state::ServerState;

/// A client network: (IPv6, address bits cut to the prefix length).
type Prefix = (bool, u128);

/// One open connection as the table sees it.
struct Conn {
    prefix: Prefix,
    /// Milliseconds since the table's start of the last complete query (or of accept).
    active: Arc<AtomicU64>,
    /// Cancelled to close the connection.
    evict: CancellationToken,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    per_prefix: HashMap<Prefix, usize>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.per_prefix.get_mut(&c.prefix) {
            *n -= 1;
            if *n == 0 {
                self.per_prefix.remove(&c.prefix);
            }
        }
        Some(c)
    }

    /// The connection idle longest (ties: the older one), of `prefix` when given.
    fn oldest(&self, prefix: Option<Prefix>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| prefix.is_none_or(|p| c.prefix == p))
            .min_by_key(|(id, c)| (c.active.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id)
    }
}

/// Open TCP connections by client network, with the caps and the eviction.
pub struct ConnTable {
    inner: Mutex<Inner>,
    start: Instant,
    max_total: usize,
    max_per_prefix: usize,
    v4_len: u8,
    v6_len: u8,
    shared: Arc<ServerState>,
    evicted_prefix: IntCounter,
    evicted_total: IntCounter,
}

/// A connection's place in the [`ConnTable`]; dropping it frees the place.
pub struct Admitted {
    table: Arc<ConnTable>,
    id: u64,
    /// Where the connection records its last complete query.
    pub active: Arc<AtomicU64>,
    /// Cancelled when the connection is evicted (or the server stops).
    pub evict: CancellationToken,
}

impl Admitted {
    /// Records a complete query now (the connection is not idle).
    pub fn touch(&self) {
        self.active.store(self.table.now(), Ordering::Relaxed);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.table.release(self.id);
    }
}

impl ConnTable {
    /// A table with the limits of `spec`.
    pub fn new(spec: &TcpSpec, shared: Arc<ServerState>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            start: Instant::now(),
            max_total: spec.max_connections.max(1),
            max_per_prefix: spec.max_connections_per_prefix.max(1),
            v4_len: spec.ipv4_prefix_length.min(32),
            v6_len: spec.ipv6_prefix_length.min(128),
            evicted_prefix: shared.metrics.dropped("tcp_evicted_prefix"),
            evicted_total: shared.metrics.dropped("tcp_evicted_total"),
            shared,
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn prefix(&self, ip: IpAddr) -> Prefix {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.v4_len))
                    .unwrap_or(0);
                (false, u128::from(bits & mask))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.v6_len))
                    .unwrap_or(0);
                (true, bits & mask)
            }
        }
    }

    /// Admits a connection from `peer`, first closing the longest-idle connection of
    /// its network when that network is at its cap, then the longest-idle of all when
    /// the table is full.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, shutdown: &CancellationToken) -> Admitted {
        let prefix = self.prefix(peer);
        let active = Arc::new(AtomicU64::new(self.now()));
        let evict = shutdown.child_token();
        let mut evicted = Vec::new();
        let (id, open) = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            while inner.per_prefix.get(&prefix).copied().unwrap_or(0) >= self.max_per_prefix {
                let Some(c) = inner.oldest(Some(prefix)).and_then(|id| inner.remove(id)) else {
                    break;
                };
                self.evicted_prefix.inc();
                evicted.push(c);
            }
            while inner.conns.len() >= self.max_total {
                let Some(c) = inner.oldest(None).and_then(|id| inner.remove(id)) else {
                    break;
                };
                self.evicted_total.inc();
                evicted.push(c);
            }
            let id = inner.next_id;
            inner.next_id += 1;
            inner.conns.insert(
                id,
                Conn {
                    prefix,
                    active: active.clone(),
                    evict: evict.clone(),
                },
            );
            *inner.per_prefix.entry(prefix).or_insert(0) += 1;
            (id, inner.conns.len())
        };
        for c in evicted {
            c.evict.cancel();
        }
        self.shared.metrics.tcp_connections.set(open as i64);
        Admitted {
            table: self.clone(),
            id,
            active,
            evict,
        }
    }

    fn release(&self, id: u64) {
        let open = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.remove(id);
            inner.conns.len()
        };
        self.shared.metrics.tcp_connections.set(open as i64);
    }

    /// Open connections (tests).
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.conns.len())
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Accepts connections on `listener` until `shutdown`, each admitted by `table`.
pub async fn accept(
    listener: tokio::net::TcpListener,
    shared: Arc<ServerState>,
    table: Arc<ConnTable>,
    idle: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let admitted = table.admit(peer.ip(), &shutdown);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let evict = admitted.evict.clone();
                    // Eviction or shutdown drops the connection wherever it is.
                    tokio::select! {
                        () = evict.cancelled() => {}
                        () = conn(stream, peer, &shared, idle, &admitted) => {}
                    }
                    drop(admitted);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn conn(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<ServerState>,
    idle: Duration,
    admitted: &Admitted,
) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut w = BufWriter::new(w);
    let mut handler = Handler::new(shared.clone());
    let mut msg = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    loop {
        let len = match tokio::time::timeout(idle, r.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => break, // idle, closed or reset
        };
        if len == 0 {
            break;
        }
        match tokio::time::timeout(idle, r.read_exact(&mut msg[..len])).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        admitted.touch();
        handler.maybe_flush_metrics();
        if handler.handle(&msg[..len], peer.ip(), Transport::Tcp, &mut out) {
            let Ok(n) = u16::try_from(out.len()) else {
                break;
            };
            if w.write_all(&n.to_be_bytes()).await.is_err() || w.write_all(&out).await.is_err() {
                break;
            }
        }
        // Pipelining: answer everything already received, then flush once.
        if r.buffer().is_empty()
            && tokio::time::timeout(idle, w.flush())
                .await
                .map_or(true, |r| r.is_err())
        {
            break;
        }
    }
    let _ = w.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(total: usize, per_prefix: usize) -> Arc<ConnTable> {
        let zones = Arc::new(crate::zone::Zones::default());
        let shared = Arc::new(ServerState::starting(zones));
        let spec = TcpSpec {
            max_connections: total,
            max_connections_per_prefix: per_prefix,
            ..TcpSpec::default()
        };
        ConnTable::new(&spec, shared)
    }

    #[test]
    fn per_prefix_cap_evicts_that_networks_longest_idle() {
        let t = table(100, 2);
        let stop = CancellationToken::new();
        let a = t.admit("192.0.2.1".parse().unwrap(), &stop);
        let b = t.admit("192.0.2.200".parse().unwrap(), &stop);
        let other = t.admit("198.51.100.1".parse().unwrap(), &stop);
        // a is the most recently active of 192.0.2.0/24 now; b goes.
        a.active.store(10, Ordering::Relaxed);
        b.active.store(5, Ordering::Relaxed);
        other.active.store(0, Ordering::Relaxed);
        let c = t.admit("192.0.2.9".parse().unwrap(), &stop);
        assert!(b.evict.is_cancelled());
        assert!(!a.evict.is_cancelled() && !other.evict.is_cancelled());
        assert!(!c.evict.is_cancelled());
        assert_eq!(t.len(), 3);
        drop(b); // the evicted connection's own release is a no-op
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn full_table_evicts_the_longest_idle_of_all() {
        let t = table(3, 3);
        let stop = CancellationToken::new();
        let conns: Vec<Admitted> = ["10.0.0.1", "10.1.0.1", "10.2.0.1"]
            .iter()
            .map(|a| t.admit(a.parse().unwrap(), &stop))
            .collect();
        conns[0].active.store(50, Ordering::Relaxed);
        conns[1].active.store(7, Ordering::Relaxed);
        conns[2].active.store(60, Ordering::Relaxed);
        let d = t.admit("10.3.0.1".parse().unwrap(), &stop);
        let cancelled: Vec<bool> = conns.iter().map(|c| c.evict.is_cancelled()).collect();
        assert_eq!(cancelled, [false, true, false]);
        assert!(!d.evict.is_cancelled());
        assert_eq!(t.len(), 3);
        drop(conns);
        assert_eq!(t.len(), 1);
        // IPv6 networks are /56 by default: one /56, two addresses, one network.
        let t = table(10, 1);
        let x = t.admit("2001:db8:0:1::1".parse().unwrap(), &stop);
        let _y = t.admit("2001:db8:0:2::1".parse().unwrap(), &stop);
        assert!(x.evict.is_cancelled());
    }
}
