//! Response rate limiting per client prefix (governor), with slip.
//!
//! Each client network (the source address cut to `ipv4PrefixLength` /
//! `ipv6PrefixLength`) gets `responsesPerSecond` with a burst. Over the limit, every
//! `slip`-th reply is sent truncated (TC, no answer) so a real client retries over
//! TCP, where spoofed sources cannot follow; the others are dropped. TCP is never
//! limited here (the connection cap bounds it).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::RateLimitSpec;

/// What to do with one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Allow,
    /// Send a truncated reply instead.
    Slip,
    /// Send nothing.
    Drop,
}

/// A keyed limiter over client networks.
pub struct ResponseLimiter {
    limiter: DefaultKeyedRateLimiter<(bool, u128)>,
    v4_len: u8,
    v6_len: u8,
    slip: u32,
    exempt: Vec<IpNet>,
}

impl std::fmt::Debug for ResponseLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseLimiter")
            .field("slip", &self.slip)
            .finish_non_exhaustive()
    }
}

impl ResponseLimiter {
    /// Builds a limiter from validated settings.
    pub fn new(spec: &RateLimitSpec) -> Self {
        let rate = NonZeroU32::new(spec.responses_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = spec.burst.and_then(NonZeroU32::new).unwrap_or(rate);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            v4_len: spec.ipv4_prefix_length.min(32),
            v6_len: spec.ipv6_prefix_length.min(128),
            slip: spec.slip,
            exempt: spec.exempt.clone(),
        }
    }

    /// Checks one reply to `ip`. `limited` counts this worker's limited replies (for slip).
    pub fn check(&self, ip: IpAddr, limited: &mut u32) -> Verdict {
        if self.exempt.iter().any(|n| n.contains(&ip)) {
            return Verdict::Allow;
        }
        let key = match ip {
            IpAddr::V4(a) => (false, mask(u128::from(u32::from(a)), 32, self.v4_len)),
            IpAddr::V6(a) => (true, mask(u128::from(a), 128, self.v6_len)),
        };
        if self.limiter.check_key(&key).is_ok() {
            return Verdict::Allow;
        }
        *limited = limited.wrapping_add(1);
        if self.slip > 0 && (*limited).is_multiple_of(self.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Forgets client networks that are back under their limit (bounds memory).
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

fn mask(v: u128, width: u32, len: u8) -> u128 {
    let drop = width - u32::from(len);
    if drop >= 128 { 0 } else { (v >> drop) << drop }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate: u32, slip: u32) -> RateLimitSpec {
        RateLimitSpec {
            responses_per_second: rate,
            burst: Some(rate),
            slip,
            ipv4_prefix_length: 24,
            ipv6_prefix_length: 56,
            exempt: vec!["127.0.0.1/32".parse().unwrap()],
        }
    }

    #[test]
    fn limits_per_prefix_with_slip() {
        let l = ResponseLimiter::new(&spec(5, 2));
        let mut n = 0;
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.200".parse().unwrap(); // same /24
        let c: IpAddr = "198.51.100.1".parse().unwrap();
        let verdicts: Vec<_> = (0..20)
            .map(|i| l.check(if i % 2 == 0 { a } else { b }, &mut n))
            .collect();
        let allowed = verdicts.iter().filter(|v| **v == Verdict::Allow).count();
        assert!((5..=7).contains(&allowed), "{verdicts:?}");
        assert!(verdicts.contains(&Verdict::Slip) && verdicts.contains(&Verdict::Drop));
        assert_eq!(l.check(c, &mut n), Verdict::Allow);
        for _ in 0..100 {
            assert_eq!(
                l.check("127.0.0.1".parse().unwrap(), &mut n),
                Verdict::Allow
            );
        }
    }
}
