//! A TCP relay that can *cut* the path between two peers, as a network partition does:
//! while cut, bytes in either direction are read and dropped (the peers' kernels still
//! ACK, as across a partition where the last hop swallows packets) and new connections
//! are held without being joined to the target. Nothing is closed or reset, so both
//! sides find out only by their own keep-alive timeouts, as in a real partition.
//!
//! Used between an agent and the stub by the failover tests and by `causeway drill`'s
//! `networkCut` fault.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a connection made while cut waits for the heal before it is dropped.
const HOLD_WHILE_CUT: Duration = Duration::from_secs(60);

/// A relay on `127.0.0.1:<free port>` to one target; stops accepting when dropped.
pub struct Relay {
    /// Where the peer dials (instead of the target).
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Relays every connection to `target` until dropped.
    pub fn start(target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(down) = conn else { continue };
                    let (c, s) = (c.clone(), s.clone());
                    std::thread::spawn(move || join(down, target, c, s));
                }
            })?;
        Ok(Relay { addr, cut, stop })
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

fn join(down: TcpStream, target: SocketAddr, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
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
    let (c, s) = (cut.clone(), stop.clone());
    std::thread::spawn(move || pump(down2, up2, c, s));
    pump(up, down, cut, stop);
}

/// Copies `from` → `to` until either ends; drops what it reads while cut.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if cut.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
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
}
