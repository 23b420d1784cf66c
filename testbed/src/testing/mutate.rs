//! A seeded random generator and a byte mutator for hostile-packet tests (the DNS
//! query path in process, and the built binary over UDP): the same seed gives the same
//! packets, so a failure reproduces.

/// xorshift64*: small, fast and fixed-seed. Not for anything but tests.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed` (0 is replaced: xorshift would stay at 0).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random byte (the low 8 bits of [`Rng::next_u64`]).
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// A number in `0..n`; 0 when `n` is 0, so `below(len)` of an empty packet is safe.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// Applies 1 to 5 random edits to `packet`: flip a bit, overwrite a byte, truncate,
/// insert a byte, or append up to 39 bytes.
///
/// Two copies of this had drifted: `dns/tests/query_path.rs` made 1-5 edits of these
/// five kinds, `tests/dns_malformed.rs` 1-4 edits of the first four (no appending) and
/// an `Rng::below` that divided by zero for `n == 0`. This keeps the first: it is the
/// superset (trailing garbage after a valid message is a case worth sending the built
/// binary too), and the query-path test keeps its exact packet sequence.
pub fn mutate(rng: &mut Rng, packet: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(5) {
        match rng.below(5) {
            0 if !packet.is_empty() => {
                let at = rng.below(packet.len());
                packet[at] ^= 1 << rng.below(8);
            }
            1 if !packet.is_empty() => {
                let at = rng.below(packet.len());
                packet[at] = rng.byte();
            }
            2 => {
                let at = rng.below(packet.len() + 1);
                packet.truncate(at);
            }
            3 => {
                let at = rng.below(packet.len() + 1);
                let b = rng.byte();
                packet.insert(at, b);
            }
            _ => {
                let n = rng.below(40);
                let tail = rng.bytes(n);
                packet.extend(tail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_packets() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| {
                    let mut p = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec();
                    mutate(&mut rng, &mut p);
                    p
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn xorshift_step_matches_a_hand_computation() {
        // Seed 1: x = 1 ^ (1 << 25) = 0x2000001, times 0x2545f4914f6cdd1d mod 2^64.
        let mut rng = Rng::new(1);
        assert_eq!(rng.next_u64(), 0x47e4_ce4b_896c_dd1d);
    }

    #[test]
    fn empty_packets_and_zero_bounds_are_fine() {
        let mut rng = Rng::new(42);
        assert_eq!(rng.below(0), 0);
        for _ in 0..1000 {
            let mut p = Vec::new();
            mutate(&mut rng, &mut p);
            assert!(p.len() < 5 * 40);
        }
    }
}
