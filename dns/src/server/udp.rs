//! The UDP worker: one thread per socket, batched with `recvmmsg`/`sendmmsg` on
//! Linux so that under load one system call moves up to [`BATCH`] queries or replies.
//! Each socket blocks in the kernel for its first datagram (`MSG_WAITFORONE`), then
//! takes whatever else is queued; the socket's read timeout lets it see `stop`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::debug;

use crate::handler::{Handler, Transport};
use crate::state::ServerState;

/// Datagrams per system call at most.
pub const BATCH: usize = 32;
/// Largest query accepted over UDP (bigger ones are truncated by the kernel: dropped).
const RECV_BUF: usize = 4096;

/// Serves `sock` until `stop`.
pub fn worker(sock: UdpSocket, shared: Arc<ServerState>, stop: Arc<AtomicBool>) {
    #[cfg(target_os = "linux")]
    batched(&sock, Handler::new(shared), &stop);
    #[cfg(not(target_os = "linux"))]
    simple(&sock, Handler::new(shared), &stop);
}

/// One datagram per system call (portable fallback).
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn simple(sock: &UdpSocket, mut handler: Handler, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        handler.maybe_flush_metrics();
        match sock.recv_from(&mut buf) {
            Ok((n, src)) => {
                if handler.handle(&buf[..n], src.ip(), Transport::Udp, &mut out)
                    && let Err(e) = sock.send_to(&out, src)
                {
                    debug!(error = %e, "udp send failed");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => debug!(error = %e, "udp receive failed"),
        }
    }
}

/// The source address of a received datagram.
#[cfg(target_os = "linux")]
fn source_ip(ss: &libc::sockaddr_storage) -> Option<IpAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says this storage holds a sockaddr_in, which it is
            // large and aligned enough for.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(target_os = "linux")]
fn batched(sock: &UdpSocket, mut handler: Handler, stop: &AtomicBool) {
    use std::os::fd::AsRawFd;
    use std::ptr;

    let fd = sock.as_raw_fd();
    let name_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // Buffers are allocated once; the headers point into them and none of these
    // vectors is resized afterwards, so the pointers stay valid for the loop.
    let mut bufs = vec![[0u8; RECV_BUF]; BATCH];
    // SAFETY (zeroed): plain C structs for which all-zero is a valid value.
    let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: RECV_BUF,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    for (i, m) in msgs.iter_mut().enumerate() {
        m.msg_hdr.msg_name = ptr::from_mut(&mut names[i]).cast();
        m.msg_hdr.msg_iov = ptr::from_mut(&mut iovs[i]);
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1500)).collect();
    let mut out_names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut out_name_lens: Vec<libc::socklen_t> = vec![0; BATCH];
    let mut out_iovs: Vec<libc::iovec> = vec![
        libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0
        };
        BATCH
    ];
    let mut out_msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];

    while !stop.load(Ordering::Relaxed) {
        for m in &mut msgs {
            m.msg_hdr.msg_namelen = name_len;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        handler.maybe_flush_metrics();
        // SAFETY: `msgs` holds BATCH headers whose name and iovec pointers point into
        // live buffers of the sizes given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue; // timeout (to check `stop`), EINTR, or a transient error
        }
        let mut k = 0;
        for i in 0..n as usize {
            let len = (msgs[i].msg_len as usize).min(RECV_BUF);
            if msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                continue;
            }
            let Some(src) = source_ip(&names[i]) else {
                continue;
            };
            if handler.handle(&bufs[i][..len], src, Transport::Udp, &mut outs[k]) {
                out_names[k] = names[i];
                out_name_lens[k] = msgs[i].msg_hdr.msg_namelen;
                k += 1;
            }
        }
        for j in 0..k {
            out_iovs[j] = libc::iovec {
                iov_base: outs[j].as_mut_ptr().cast(),
                iov_len: outs[j].len(),
            };
            let h = &mut out_msgs[j].msg_hdr;
            h.msg_name = ptr::from_mut(&mut out_names[j]).cast();
            h.msg_namelen = out_name_lens[j];
            h.msg_iov = ptr::from_mut(&mut out_iovs[j]);
            h.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < k {
            // SAFETY: headers [sent, k) point at live reply buffers and addresses.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    out_msgs[sent..].as_mut_ptr(),
                    (k - sent) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                debug!(error = %io::Error::last_os_error(), "udp send failed");
                sent += 1; // skip the datagram that failed
            } else {
                sent += r as usize;
            }
        }
    }
}
