//! Deterministic identifiers and randomness.
//!
//! A run seeded the same way and driven in the same order hands out the
//! same uuids, MACs and fault rolls, so a failing test can be replayed.

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Version-4-shaped uuids derived from `sha256(seed, counter)`.
#[derive(Debug)]
pub struct UuidSource {
    seed: u64,
    counter: AtomicU64,
}

impl UuidSource {
    pub fn new(seed: u64) -> Self {
        UuidSource {
            seed,
            counter: AtomicU64::new(0),
        }
    }

    pub fn next_uuid(&self) -> uuid::Uuid {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(b"tritonctl-sim-uuid");
        h.update(self.seed.to_be_bytes());
        h.update(n.to_be_bytes());
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// The next uuid, hyphenated lower-case as every Triton API prints it.
    pub fn next(&self) -> String {
        self.next_uuid().hyphenated().to_string()
    }
}

/// SplitMix64: tiny, seedable, good enough for fault dice and MACs.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// True when `s` looks like a hyphenated uuid (what VMAPI's `validUUID`
/// accepts).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_uuids() {
        let a = UuidSource::new(7);
        let b = UuidSource::new(7);
        let c = UuidSource::new(8);
        let (a1, b1, c1) = (a.next(), b.next(), c.next());
        assert_eq!(a1, b1);
        assert_ne!(a1, c1);
        assert_ne!(a.next(), a1);
        assert!(is_uuid(&a1));
        assert_eq!(&a1[14..15], "4");
    }

    #[test]
    fn splitmix_is_deterministic_and_in_range() {
        let mut r = SplitMix64::new(1);
        let mut s = SplitMix64::new(1);
        for _ in 0..100 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert_eq!(x, s.next_f64());
        }
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid("930896af-bf8c-48d4-885c-6573a94b1853"));
        assert!(!is_uuid("930896af-bf8c-48d4-885c-6573a94b185"));
        assert!(!is_uuid("invalid_uuid"));
    }
}
