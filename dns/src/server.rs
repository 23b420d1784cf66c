//! Sockets: UDP and TCP on every listen address, IPv4 and IPv6.
//!
//! * UDP: `udpSocketsPerAddress` sockets per address bound with `SO_REUSEPORT` (the
//!   kernel spreads queries over them), each served by its own OS thread doing
//!   blocking, batched `recvmmsg`/`sendmmsg` ([`udp`]) with its own [`Handler`] and
//!   cache. No async machinery sits between the socket and the handler.
//! * TCP (RFC 7766): tokio tasks ([`tcp`]); queries on a connection are read and
//!   answered as they come (pipelining), replies are flushed when no more queries are
//!   buffered; idle connections close after `tcp.idleTimeout`; at most
//!   `tcp.maxConnectionsPerPrefix` per client network and `tcp.maxConnections` in all
//!   are open, and a new connection over a cap closes the one idle longest.
//!
//! The caller binds ([`bind`]) and then serves ([`serve`]), so tests can use port 0
//! and read the bound addresses; every bound socket is logged as
//! `listening on dns udp://ADDR` / `listening on dns tcp://ADDR`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub mod tcp;
mod udp;

use crate::config::TcpSpec;
use crate::state::ServerState;

/// Kernel receive buffer asked for on UDP sockets (absorbs bursts).
const UDP_RCVBUF: usize = 4 << 20;

/// Error binding a socket.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {proto} {addr}: {source}")]
pub struct BindError {
    /// `udp` or `tcp`.
    pub proto: &'static str,
    /// Address.
    pub addr: SocketAddr,
    /// Cause.
    #[source]
    pub source: io::Error,
}

/// Bound sockets of one address.
#[derive(Debug)]
pub struct BoundAddr {
    /// The address actually bound (port filled in when 0 was asked).
    pub addr: SocketAddr,
    /// UDP sockets sharing the address.
    pub udp: Vec<UdpSocket>,
    /// The TCP listener.
    pub tcp: std::net::TcpListener,
}

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    Ok(s)
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = socket(addr, Type::DGRAM, Protocol::UDP)?;
    let _ = s.set_recv_buffer_size(UDP_RCVBUF);
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = socket(addr, Type::STREAM, Protocol::TCP)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Binds UDP (`per_addr` sockets) and TCP on each address. Port 0 picks one free
/// port for UDP and TCP alike.
pub fn bind(addrs: &[SocketAddr], per_addr: usize) -> Result<Vec<BoundAddr>, BindError> {
    let mut out = Vec::new();
    for &want in addrs {
        let mut attempt = 0;
        let bound = loop {
            attempt += 1;
            let first = bind_udp(want).map_err(|source| BindError {
                proto: "udp",
                addr: want,
                source,
            })?;
            let addr = first.local_addr().map_err(|source| BindError {
                proto: "udp",
                addr: want,
                source,
            })?;
            match bind_tcp(addr) {
                Ok(tcp) => break (addr, first, tcp),
                // Port 0: the UDP port may be taken for TCP; try another.
                Err(_) if want.port() == 0 && attempt < 20 => continue,
                Err(source) => {
                    return Err(BindError {
                        proto: "tcp",
                        addr,
                        source,
                    });
                }
            }
        };
        let (addr, first, tcp) = bound;
        let mut udp = vec![first];
        for _ in 1..per_addr.max(1) {
            udp.push(bind_udp(addr).map_err(|source| BindError {
                proto: "udp",
                addr,
                source,
            })?);
        }
        out.push(BoundAddr { addr, udp, tcp });
    }
    Ok(out)
}

/// Running servers; dropping or [`Servers::stop`] ends them.
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    /// Stops the UDP threads and waits for them (at most one read timeout).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Starts serving `bound` sockets. TCP tasks end on `shutdown`.
pub fn serve(
    bound: Vec<BoundAddr>,
    shared: Arc<ServerState>,
    tcp: &TcpSpec,
    shutdown: CancellationToken,
) -> io::Result<Servers> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let conns = tcp::ConnTable::new(tcp, shared.clone());
    for b in bound {
        for (i, sock) in b.udp.into_iter().enumerate() {
            sock.set_read_timeout(Some(Duration::from_millis(200)))?;
            let shared = shared.clone();
            let stop = stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || udp::worker(sock, shared, stop))?;
            threads.push(t);
        }
        info!("listening on dns udp://{}", b.addr);
        let listener = tokio::net::TcpListener::from_std(b.tcp)?;
        info!("listening on dns tcp://{}", b.addr);
        tokio::spawn(tcp::accept(
            listener,
            shared.clone(),
            conns.clone(),
            tcp.idle_timeout.0,
            shutdown.clone(),
        ));
    }
    Ok(Servers { stop, threads })
}
