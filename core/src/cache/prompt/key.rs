//! The cache keys: keyed SipHash-1-3 with a 128-bit output over length-prefixed fields.
//!
//! Keyed, with a key drawn per process, so nobody outside can compute a key, aim two different
//! requests at one key on purpose, or learn from timing which keys exist; 128 bits, so accidental
//! collisions do not happen at any cache size. Every field is written with its length first (and
//! the request material with the prefix-free encoding of [`Node::encode`](super::canon::Node)),
//! so `["ab","c"]` and `["a","bc"]` never hash alike.

use std::hash::{BuildHasher, Hasher};

use siphasher::sip128::{Hasher128, SipHasher13};

use super::canon::bytes;

/// The secret key of the cache keys, one per process (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Keyer {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for Keyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyer(..)") // the key is a secret: never in logs
    }
}

impl Keyer {
    /// A key from the operating system's randomness.
    ///
    /// Drawn through std's `RandomState` (the OS random source behind every `HashMap`, so no
    /// new dependency): each `RandomState` is a random SipHash key; hashing a constant under two
    /// of them gives 128 unpredictable bits.
    pub fn random() -> Self {
        let a = std::collections::hash_map::RandomState::new().hash_one(0x6b65_7930_u64);
        let b = std::collections::hash_map::RandomState::new().hash_one(0x6b65_7931_u64);
        Keyer { k0: a, k1: b }
    }

    /// A fixed key, for tests and fuzzing (keys then repeat across runs).
    pub fn fixed(key: u128) -> Self {
        Keyer {
            k0: key as u64,
            k1: (key >> 64) as u64,
        }
    }

    /// A hasher for one key, starting with a domain tag so partition and exact keys never meet.
    pub(crate) fn start(&self, domain: &[u8]) -> Fields {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        bytes(&mut h, domain);
        Fields(h)
    }
}

/// A key being built.
pub(crate) struct Fields(pub(crate) SipHasher13);

impl Fields {
    /// One length-prefixed field.
    pub(crate) fn field(&mut self, b: &[u8]) -> &mut Self {
        bytes(&mut self.0, b);
        self
    }

    /// A count, as a fixed-size field (so a list of fields is length-prefixed too).
    pub(crate) fn count(&mut self, n: usize) -> &mut Self {
        self.0.write(&(n as u64).to_le_bytes());
        self
    }

    /// The 128-bit key.
    pub(crate) fn finish(&self) -> u128 {
        self.0.finish128().as_u128()
    }
}
