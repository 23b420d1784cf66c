//! EDNS Client Subnet (RFC 7871): parse the option from a query, write it in a reply.
//!
//! RFC 7871 §6, the option's fields:
//!
//! > FAMILY, 2 octets, indicating the family of the address contained in the option,
//! > using address family codes as assigned by IANA in Address Family Numbers.
//! >
//! > SOURCE PREFIX-LENGTH, an unsigned octet representing the leftmost number of
//! > significant bits of ADDRESS to be used for the lookup. In responses, it mirrors
//! > the same value as in the queries.
//! >
//! > SCOPE PREFIX-LENGTH, an unsigned octet representing the leftmost number of
//! > significant bits of ADDRESS that the response covers. In queries, it MUST be set
//! > to 0.
//! >
//! > ADDRESS, variable number of octets, containing either an IPv4 or IPv6 address,
//! > depending on FAMILY, which MUST be truncated to the number of bits indicated by
//! > the SOURCE PREFIX-LENGTH field, padding with 0 bits to pad to the end of the last
//! > octet needed.
//! >
//! > A server receiving an ECS option that uses either too few or too many ADDRESS
//! > octets, or that has non-zero ADDRESS bits set beyond SOURCE PREFIX-LENGTH, SHOULD
//! > return FORMERR to reject the packet.
//!
//! The reply echoes FAMILY, SOURCE PREFIX-LENGTH and ADDRESS and sets SCOPE to the
//! prefix length that decided the answer, 0 when the answer does not depend on the
//! client (see [`crate::policy::Choice::scope`]). A reply never carries ECS when the
//! query had none.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// EDNS option code of ECS.
pub const OPTION_CODE: u16 = 8;

/// A parsed ECS option (from a query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// FAMILY: 1 = IPv4, 2 = IPv6.
    pub family: u16,
    /// SOURCE PREFIX-LENGTH.
    pub source_len: u8,
    /// The address, zero-padded.
    pub addr: IpAddr,
}

/// Why an ECS option is malformed (the query gets FORMERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// Shorter than the fixed 4 octets.
    #[error("ECS option shorter than 4 octets")]
    Short,
    /// FAMILY is neither 1 nor 2.
    #[error("ECS family {0} is not IPv4 (1) or IPv6 (2)")]
    Family(u16),
    /// SOURCE PREFIX-LENGTH longer than the address.
    #[error("ECS source prefix length {0} is longer than the address")]
    SourceLen(u8),
    /// ADDRESS is not exactly ceil(SOURCE/8) octets.
    #[error("ECS address has the wrong number of octets")]
    AddressLen,
    /// Bits set beyond SOURCE PREFIX-LENGTH.
    #[error("ECS address has bits set beyond the source prefix length")]
    StrayBits,
}

impl ClientSubnet {
    /// Parses the option data (after the option code and length).
    pub fn parse(data: &[u8]) -> Result<Self, EcsError> {
        let [f0, f1, source_len, _scope, addr @ ..] = data else {
            return Err(EcsError::Short);
        };
        let family = u16::from_be_bytes([*f0, *f1]);
        let width: u8 = match family {
            1 => 32,
            2 => 128,
            f => return Err(EcsError::Family(f)),
        };
        if *source_len > width {
            return Err(EcsError::SourceLen(*source_len));
        }
        let need = usize::from(source_len.div_ceil(8));
        if addr.len() != need {
            return Err(EcsError::AddressLen);
        }
        let mut full = [0u8; 16];
        full[..need].copy_from_slice(addr);
        if source_len % 8 != 0 {
            let last = full[need - 1];
            let keep = 0xffu8 << (8 - source_len % 8);
            if last & !keep != 0 {
                return Err(EcsError::StrayBits);
            }
        }
        let addr = if width == 32 {
            IpAddr::V4(Ipv4Addr::new(full[0], full[1], full[2], full[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(full))
        };
        Ok(Self {
            family,
            source_len: *source_len,
            addr,
        })
    }

    /// Appends the reply option (code, length, data) with `scope` to `out`.
    pub fn write_reply(&self, scope: u8, out: &mut Vec<u8>) {
        let n = usize::from(self.source_len.div_ceil(8));
        out.extend_from_slice(&OPTION_CODE.to_be_bytes());
        out.extend_from_slice(&((4 + n) as u16).to_be_bytes());
        out.extend_from_slice(&self.family.to_be_bytes());
        out.push(self.source_len);
        out.push(scope);
        match self.addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_v6() {
        let e = ClientSubnet::parse(&[0, 1, 24, 0, 198, 51, 100]).unwrap();
        assert_eq!(e.addr, "198.51.100.0".parse::<IpAddr>().unwrap());
        assert_eq!(e.source_len, 24);
        let e = ClientSubnet::parse(&[0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 1]).unwrap();
        assert_eq!(e.addr, "2001:db8:1::".parse::<IpAddr>().unwrap());
        let e = ClientSubnet::parse(&[0, 1, 0, 0]).unwrap();
        assert_eq!(e.source_len, 0);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(ClientSubnet::parse(&[0, 1, 24]), Err(EcsError::Short));
        assert_eq!(ClientSubnet::parse(&[0, 3, 0, 0]), Err(EcsError::Family(3)));
        assert_eq!(
            ClientSubnet::parse(&[0, 1, 33, 0, 1, 2, 3, 4, 5]),
            Err(EcsError::SourceLen(33))
        );
        assert_eq!(
            ClientSubnet::parse(&[0, 1, 24, 0, 198, 51]),
            Err(EcsError::AddressLen)
        );
        assert_eq!(
            ClientSubnet::parse(&[0, 1, 24, 0, 198, 51, 100, 0]),
            Err(EcsError::AddressLen)
        );
        assert_eq!(
            ClientSubnet::parse(&[0, 1, 23, 0, 198, 51, 101]),
            Err(EcsError::StrayBits)
        );
    }

    #[test]
    fn reply_round_trip() {
        let e = ClientSubnet::parse(&[0, 1, 22, 0, 198, 51, 100]).unwrap();
        let mut out = Vec::new();
        e.write_reply(16, &mut out);
        assert_eq!(out, vec![0, 8, 0, 7, 0, 1, 22, 16, 198, 51, 100]);
    }
}
