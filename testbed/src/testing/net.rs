//! Raw TCP for tests: an echo server on loopback and a byte round trip through it
//! (behind a `kubectl port-forward` or a tunnel).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Starts a TCP echo server on 127.0.0.1 that serves up to 64 connections, each on
/// its own thread, and returns its address.
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind an echo server on loopback: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("echo server address: {e}"));
    std::thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Connects to `addr`, writes `len` patterned bytes while reading them back (an echo
/// server behind a port-forward), and checks they are the same.
pub fn echo_round_trip(addr: &str, len: usize, timeout: Duration) -> Result<(), String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut w = conn.try_clone().map_err(|e| e.to_string())?;
        let payload = payload.clone();
        std::thread::spawn(move || w.write_all(&payload))
    };
    let mut got = vec![0u8; payload.len()];
    conn.read_exact(&mut got)
        .map_err(|e| format!("read back: {e}"))?;
    let _ = writer.join();
    if got == payload {
        Ok(())
    } else {
        Err("bytes differ".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_echo_server_and_a_mismatch() {
        let good = echo_server().to_string();
        echo_round_trip(&good, 100_000, Duration::from_secs(5)).unwrap();

        // An echo that changes one byte.
        let bad = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = bad.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut c, _) = bad.accept().unwrap();
            let mut r = c.try_clone().unwrap();
            let mut buf = [0u8; 4096];
            let n = r.read(&mut buf).unwrap();
            buf[0] ^= 1;
            c.write_all(&buf[..n]).unwrap();
            std::io::copy(&mut r, &mut c).unwrap();
        });
        assert_eq!(
            echo_round_trip(&addr, 100_000, Duration::from_secs(5)),
            Err("bytes differ".into())
        );
    }
}
