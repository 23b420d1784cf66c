//! Loopback address blocks for tests that run side by side (several test binaries, several
//! people in one checkout): each caller gets its own `127.0.K.10`, held with a lock file
//! until its process exits.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use crate::layout::PORTS;

/// Lock files held for the life of this process (the locks go when the process does).
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A first address `127.0.K.10` (K in 2..=251) for `clusters` clusters whose ports are all
/// free and that no other process using this function holds. Falls back to `127.0.2.10`
/// when every block is taken (the testbed's own port check then reports the clash).
pub fn reserve_addresses(clusters: usize) -> Ipv4Addr {
    let dir = std::env::temp_dir().join("causeway-testbed-locks");
    let _ = std::fs::create_dir_all(&dir);
    let offset = std::process::id() as usize;
    for k in 0..250 {
        let third = (2 + (offset + k) % 250) as u8;
        let base = Ipv4Addr::new(127, 0, third, 10);
        let Ok(file) = File::create(dir.join(format!("127.0.{third}.lock"))) else {
            continue;
        };
        // SAFETY: flock on a file descriptor we own.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            continue;
        }
        let free = (0..clusters).all(|i| {
            let addr = Ipv4Addr::from(u32::from(base) + i as u32);
            PORTS.iter().all(|p| TcpListener::bind((addr, *p)).is_ok())
        });
        if free {
            HELD.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(file);
            return base;
        }
    }
    Ipv4Addr::new(127, 0, 2, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_not_handed_out_twice() {
        let a = reserve_addresses(3);
        let b = reserve_addresses(3);
        assert_ne!(a, b);
        assert_eq!(a.octets()[..2], [127, 0]);
        assert_eq!(a.octets()[3], 10);
    }
}
