//! Small helpers the end-to-end tests share: feeding a manifest to `kubectl apply -f -`
//! and checking bytes round-trip through a forwarded port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs `cmd` (e.g. `kubectl apply -f -`) with `input` on its standard input and
/// returns its output; spawning or writing failures are errors, the exit code is
/// the caller's to check.
pub fn run_with_stdin(mut cmd: Command, input: &[u8]) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    child.wait_with_output()
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
    fn stdin_reaches_the_command() {
        let out = run_with_stdin(Command::new("cat"), b"manifest").unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"manifest");
    }

    #[test]
    fn round_trip_through_an_echo_server_and_a_mismatch() {
        let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = echo.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for (i, conn) in echo.incoming().enumerate() {
                let mut c = conn.unwrap();
                let mut r = c.try_clone().unwrap();
                if i == 0 {
                    std::io::copy(&mut r, &mut c).unwrap();
                } else {
                    // Echo with one byte changed.
                    let mut buf = [0u8; 4096];
                    let n = r.read(&mut buf).unwrap();
                    buf[0] ^= 1;
                    c.write_all(&buf[..n]).unwrap();
                    std::io::copy(&mut r, &mut c).unwrap();
                }
            }
        });
        echo_round_trip(&addr, 100_000, Duration::from_secs(5)).unwrap();
        assert_eq!(
            echo_round_trip(&addr, 100_000, Duration::from_secs(5)),
            Err("bytes differ".into())
        );
    }
}
