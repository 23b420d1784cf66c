//! ICMP echo timing (`method: icmp`): the network-level RTT to a beacon host, "where
//! permitted". The socket is an unprivileged ICMP datagram socket when
//! `net.ipv4.ping_group_range` admits the process's group (the kernel then fills in the
//! identifier and hands back only this socket's replies), else a raw ICMP socket, which
//! needs `CAP_NET_RAW` (root, or the capability granted to the agent's container).
//! Neither permitted: [`permitted`] says so, and the prober refuses to start.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Sequence numbers of this process's echo requests.
static SEQUENCE: AtomicU16 = AtomicU16::new(0);

/// Bytes of payload after the 8-byte ICMP header: a token that ties a reply to its
/// request even on a raw socket, which sees every ICMP packet of the host.
const TOKEN_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `SOCK_DGRAM` + ICMP: the kernel sets the identifier and the checksum, and
    /// delivers only replies to this socket, without the IP header.
    Ping,
    /// `SOCK_RAW`: every ICMP packet of the host; IPv4 ones with their IP header.
    Raw,
}

fn open(ip: IpAddr) -> io::Result<(Socket, Kind)> {
    let (domain, protocol) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(s) => Ok((s, Kind::Ping)),
        Err(ping) => match Socket::new(domain, Type::RAW, Some(protocol)) {
            Ok(s) => Ok((s, Kind::Raw)),
            Err(raw) => Err(io::Error::new(
                raw.kind(),
                format!(
                    "ICMP is not permitted here: ping socket: {ping} (net.ipv4.ping_group_range \
                     does not admit this group); raw socket: {raw} (needs CAP_NET_RAW)"
                ),
            )),
        },
    }
}

/// Whether this process may send ICMP echo requests to `ip`'s family; the error says
/// what would permit it.
pub fn permitted(ip: IpAddr) -> io::Result<()> {
    open(ip).map(|_| ())
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request: type 8 (ICMPv4) or 128 (ICMPv6), `id`, `seq`, `token`.
fn echo_request(v4: bool, id: u16, seq: u16, token: [u8; TOKEN_LEN]) -> Vec<u8> {
    let mut p = vec![if v4 { 8 } else { 128 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&token);
    if v4 {
        // ICMPv6's checksum covers a pseudo-header; the kernel fills it in.
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Whether `packet` (as read from a socket of `kind`) is the echo reply to the request
/// with `id` (raw sockets only), `seq` and `token`.
fn is_reply(v4: bool, kind: Kind, packet: &[u8], id: u16, seq: u16, token: &[u8]) -> bool {
    let icmp = if v4 && kind == Kind::Raw {
        let Some(&first) = packet.first() else {
            return false;
        };
        let header = usize::from(first & 0x0f) * 4;
        match packet.get(header..) {
            Some(rest) if header >= 20 => rest,
            _ => return false,
        }
    } else {
        packet
    };
    if icmp.len() < 8 + TOKEN_LEN {
        return false;
    }
    let reply_type = if v4 { 0 } else { 129 };
    icmp[0] == reply_type
        && icmp[1] == 0
        && (kind == Kind::Ping || icmp[4..6] == id.to_be_bytes())
        && icmp[6..8] == seq.to_be_bytes()
        && &icmp[8..8 + TOKEN_LEN] == token
}

/// Times one ICMP echo to `ip` within `timeout`.
pub async fn once(ip: IpAddr, timeout: Duration) -> io::Result<Duration> {
    let v4 = ip.is_ipv4();
    let (socket, kind) = open(ip)?;
    socket.set_nonblocking(true)?;
    socket.connect(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    // tokio's UDP socket only sends and receives datagrams on a connected fd, which
    // is what an ICMP socket of either kind is.
    let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let id = (std::process::id() as u16) ^ 0x5ca1;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let token = (now ^ (u64::from(seq) << 48)).to_be_bytes();
    let request = echo_request(v4, id, seq, token);
    let exchange = async {
        let start = Instant::now();
        socket.send(&request).await?;
        let mut buf = [0u8; 1500];
        loop {
            let n = socket.recv(&mut buf).await?;
            if is_reply(v4, kind, &buf[..n], id, seq, &token) {
                return Ok(start.elapsed());
            }
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no echo reply within {timeout:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc_1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2 (one's complement 220d).
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        let p = echo_request(true, 7, 9, [1; TOKEN_LEN]);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn replies_are_matched_by_type_id_sequence_and_token() {
        let token = [3; TOKEN_LEN];
        let mut reply = echo_request(true, 7, 9, token);
        reply[0] = 0;
        assert!(
            is_reply(true, Kind::Ping, &reply, 1, 9, &token),
            "the kernel owns the id"
        );
        assert!(is_reply(
            true,
            Kind::Raw,
            &[&[0x45; 20][..], &reply].concat(),
            7,
            9,
            &token
        ));
        assert!(!is_reply(
            true,
            Kind::Raw,
            &[&[0x45; 20][..], &reply].concat(),
            8,
            9,
            &token
        ));
        assert!(!is_reply(true, Kind::Ping, &reply, 7, 10, &token));
        assert!(!is_reply(true, Kind::Ping, &reply, 7, 9, &[4; TOKEN_LEN]));
        let request = echo_request(true, 7, 9, token);
        assert!(
            !is_reply(true, Kind::Ping, &request, 7, 9, &token),
            "our own request"
        );
        assert!(!is_reply(true, Kind::Raw, &[0x4f], 7, 9, &token));
        let mut v6 = echo_request(false, 7, 9, token);
        v6[0] = 129;
        assert!(is_reply(false, Kind::Raw, &v6, 7, 9, &token));
    }

    /// Real echo to the loopback: runs where this process may send ICMP (root here and
    /// in CI), and says why when it may not.
    #[tokio::test]
    async fn loopback_answers_an_echo() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        if let Err(e) = permitted(ip) {
            eprintln!("skipped: {e}");
            return;
        }
        let rtt = once(ip, Duration::from_secs(2))
            .await
            .expect("echo reply from 127.0.0.1");
        assert!(rtt < Duration::from_secs(2));
    }
}
