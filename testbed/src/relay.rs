//! A TCP relay that can *cut* the path between two peers, as a network partition does:
//! while cut, bytes in either direction are read and dropped (the peers' kernels still
//! ACK, as across a partition where the last hop swallows packets) and new connections
//! are held without being joined to the target. Nothing is closed or reset, so both
//! sides find out only by their own keep-alive timeouts, as in a real partition.
//!
//! Used between an agent and the stub by the failover tests and by `causeway drill`'s
//! `networkCut` fault.
//!
//! [`Relay::follow_ready`] is what a Kubernetes Service with a readiness probe does in
//! front of the stub's replicas: new connections go to the backend whose `/readyz`
//! answers 200 (polled every 100 ms); `causeway drill` puts it in front of the users'
//! port of its two stubs.
//!
//! [`Relay::set_delay`] puts distance on the path (this kernel has no `netem`): every
//! chunk is passed on `delay` after it was read, in each direction, so a round trip
//! through the relay takes at least twice the delay. Chunks keep their order and are
//! not serialised behind each other's delays (a pipe, not a queue). The delay can be
//! changed while connections are open; the measured-latency test moves a client network
//! between clusters with it.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a connection made while cut waits for the heal before it is dropped.
const HOLD_WHILE_CUT: Duration = Duration::from_secs(60);
/// How often [`Relay::follow_ready`] asks each backend's `/readyz`.
const READY_POLL: Duration = Duration::from_millis(100);

/// A relay on `127.0.0.1:<free port>` to one target; stops accepting when dropped.
pub struct Relay {
    /// Where the peer dials (instead of the target).
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    target: Arc<Mutex<SocketAddr>>,
    /// One-way delay in microseconds (0 = none).
    delay: Arc<AtomicU64>,
}

/// What every connection of a relay shares.
#[derive(Clone)]
struct Shared {
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    delay: Arc<AtomicU64>,
}

/// A backend of [`Relay::follow_ready`]: where connections go, and its plain-HTTP
/// readiness endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Backend {
    /// Where connections are relayed to while this backend is ready.
    pub target: SocketAddr,
    /// Its plain-HTTP listener answering `GET /readyz` (200 = ready).
    pub readyz: SocketAddr,
}

impl Relay {
    /// Relays every connection to `target` until dropped.
    pub fn start(target: SocketAddr) -> std::io::Result<Relay> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), target)
    }

    /// The same, listening on `listen` (port 0 picks a free one), e.g. the host side of
    /// a veth pair so a network namespace can reach it.
    pub fn start_on(listen: SocketAddr, target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let delay = Arc::new(AtomicU64::new(0));
        let target = Arc::new(Mutex::new(target));
        let shared = Shared {
            cut: cut.clone(),
            stop: stop.clone(),
            delay: delay.clone(),
        };
        let (s, t) = (stop.clone(), target.clone());
        std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(down) = conn else { continue };
                    let to = *t.lock().unwrap_or_else(PoisonError::into_inner);
                    let shared = shared.clone();
                    std::thread::spawn(move || join(down, to, shared));
                }
            })?;
        Ok(Relay {
            addr,
            cut,
            stop,
            target,
            delay,
        })
    }

    /// Delays every chunk by `delay` in each direction from now on (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay.store(micros, Ordering::SeqCst);
    }

    /// The one-way delay now.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay.load(Ordering::SeqCst))
    }

    /// A relay that stands in for a Service with a readiness probe: every 100 ms it asks
    /// each backend's `/readyz`, and new connections go to the first ready one (while none
    /// is ready, to the last that was). Established connections stay where they are (a
    /// backend that dies ends them). `backends` must not be empty.
    pub fn follow_ready(backends: Vec<Backend>) -> std::io::Result<Relay> {
        let first = backends
            .first()
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "no backend"))?;
        let relay = Relay::start(first.target)?;
        let (stop, target) = (relay.stop.clone(), relay.target.clone());
        std::thread::Builder::new()
            .name("relay-readiness".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let current = *target.lock().unwrap_or_else(PoisonError::into_inner);
                    let current_ready = backends
                        .iter()
                        .find(|b| b.target == current)
                        .is_some_and(|b| ready(b.readyz));
                    if !current_ready
                        && let Some(b) = backends
                            .iter()
                            .find(|b| b.target != current && ready(b.readyz))
                    {
                        *target.lock().unwrap_or_else(PoisonError::into_inner) = b.target;
                    }
                    std::thread::sleep(READY_POLL);
                }
            })?;
        Ok(relay)
    }

    /// Where new connections go now.
    pub fn target(&self) -> SocketAddr {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts the path (bytes dropped from now on, new connections held).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Heals it: new connections pass again (the cut ones are broken and get redialled).
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Whether the path is cut now.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// `GET /readyz` on a plain-HTTP listener answered 200 within 300 ms.
fn ready(addr: SocketAddr) -> bool {
    let timeout = Duration::from_millis(300);
    let Ok(mut c) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(timeout));
    let _ = c.set_write_timeout(Some(timeout));
    let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if c.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < head.len() {
        match c.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    line.starts_with("HTTP/1.") && line.get(9..12) == Some("200")
}

fn join(down: TcpStream, target: SocketAddr, shared: Shared) {
    let Shared { cut, stop, .. } = &shared;
    // A connection made while cut waits (bounded) for the heal.
    let step = Duration::from_millis(100);
    for _ in 0..(HOLD_WHILE_CUT.as_millis() / step.as_millis()) {
        if !cut.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(step);
    }
    if cut.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
        return;
    }
    let Ok(up) = TcpStream::connect(target) else {
        return;
    };
    let (Ok(down2), Ok(up2)) = (down.try_clone(), up.try_clone()) else {
        return;
    };
    let s = shared.clone();
    std::thread::spawn(move || pump(down2, up2, s));
    pump(up, down, shared);
}

/// Copies `from` → `to` until either ends; drops what it reads while cut; with a delay
/// set, hands each chunk to a writer thread that passes it on `delay` after it was read.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Shared) {
    let Shared { cut, stop, delay } = shared;
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16 * 1024];
    // Created on the first delayed chunk; from then on every chunk goes through it (order).
    let mut delayed: Option<mpsc::Sender<(Instant, Vec<u8>)>> = None;
    while !stop.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if cut.load(Ordering::SeqCst) {
                    continue;
                }
                let d = Duration::from_micros(delay.load(Ordering::SeqCst));
                if delayed.is_none() && !d.is_zero() {
                    match to.try_clone() {
                        Ok(out) => delayed = Some(delayed_writer(out)),
                        Err(_) => break,
                    }
                }
                if let Some(tx) = &delayed {
                    if tx.send((Instant::now() + d, buf[..n].to_vec())).is_err() {
                        break;
                    }
                } else if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    match delayed {
        // The writer shuts both down after the last delayed chunk.
        Some(tx) => drop(tx),
        None => {
            let _ = to.shutdown(std::net::Shutdown::Both);
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// A thread writing each chunk to `to` at its due time, in order; it shuts `to` down
/// when the sender is dropped (after the chunks still due).
fn delayed_writer(mut to: TcpStream) -> mpsc::Sender<(Instant, Vec<u8>)> {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server; returns its address.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(c: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        c.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn relays_drops_while_cut_and_passes_new_connections_after_heal() {
        let relay = Relay::start(echo()).expect("relay");
        let mut c = TcpStream::connect(relay.addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_millis(600)))
            .expect("timeout");
        assert_eq!(round_trip(&mut c, b"one").expect("echo"), b"one");
        relay.cut();
        assert!(relay.is_cut());
        // Swallowed, not reset: the read times out.
        let err = round_trip(&mut c, b"two").expect_err("cut");
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        relay.heal();
        let mut d = TcpStream::connect(relay.addr).expect("connect");
        d.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(round_trip(&mut d, b"three").expect("echo"), b"three");
    }

    #[test]
    fn delays_each_direction_and_follows_a_change() {
        let relay = Relay::start(echo()).expect("relay");
        let mut c = TcpStream::connect(relay.addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let t = Instant::now();
        assert_eq!(round_trip(&mut c, b"a").expect("echo"), b"a");
        assert!(t.elapsed() < Duration::from_millis(40), "{:?}", t.elapsed());
        relay.set_delay(Duration::from_millis(50));
        assert_eq!(relay.delay(), Duration::from_millis(50));
        let t = Instant::now();
        assert_eq!(round_trip(&mut c, b"b").expect("echo"), b"b");
        let rtt = t.elapsed();
        assert!(
            rtt >= Duration::from_millis(100) && rtt < Duration::from_millis(400),
            "{rtt:?}"
        );
        // A new connection too, and the delay can go back down.
        relay.set_delay(Duration::from_millis(5));
        let mut d = TcpStream::connect(relay.addr).expect("connect");
        d.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let t = Instant::now();
        assert_eq!(round_trip(&mut d, b"c").expect("echo"), b"c");
        let rtt = t.elapsed();
        assert!(
            rtt >= Duration::from_millis(10) && rtt < Duration::from_millis(90),
            "{rtt:?}"
        );
    }

    /// A plain-HTTP server answering every request with `status`, switchable.
    fn readyz(status: Arc<Mutex<u16>>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let code = *status.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = c.write_all(
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        addr
    }

    #[test]
    fn follows_the_ready_backend() {
        let (a_status, b_status) = (Arc::new(Mutex::new(200)), Arc::new(Mutex::new(503)));
        let a = Backend {
            target: echo(),
            readyz: readyz(a_status.clone()),
        };
        let b = Backend {
            target: echo(),
            readyz: readyz(b_status.clone()),
        };
        let relay = Relay::follow_ready(vec![a, b]).expect("relay");
        std::thread::sleep(READY_POLL * 3);
        assert_eq!(relay.target(), a.target);
        *a_status.lock().unwrap() = 503;
        std::thread::sleep(READY_POLL * 3);
        // Neither ready: stays where it was.
        assert_eq!(relay.target(), a.target);
        *b_status.lock().unwrap() = 200;
        let mut switched = false;
        for _ in 0..50 {
            if relay.target() == b.target {
                switched = true;
                break;
            }
            std::thread::sleep(READY_POLL);
        }
        assert!(switched, "the relay did not follow the ready backend");
        let mut c = TcpStream::connect(relay.addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(round_trip(&mut c, b"hi").expect("echo"), b"hi");
        // a ready again does not take it back while b stays ready.
        *a_status.lock().unwrap() = 200;
        std::thread::sleep(READY_POLL * 3);
        assert_eq!(relay.target(), b.target);
    }
}
