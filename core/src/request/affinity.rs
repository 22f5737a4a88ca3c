//! Which backend holds a stored response (the Responses API keeps state on the backend that
//! created it): learnt from the answers to `POST responses`, asked by the requests that name a
//! stored response (retrieve, delete, input items, cancel, and `previous_response_id`).
//!
//! One table shared by every worker: a fixed array of atomic words, each holding a tag of
//! (owner, response id) and a tag of the backend's name. Learning is a store, asking is a load:
//! no lock, no allocation, bounded memory whatever callers do. A newer response whose hash lands
//! on the same slot replaces the older one, which is then no longer found (the table remembers
//! the most recent responses, about as many as it has slots).
//!
//! The owner (the consumer's name, "" on an open gateway) is part of the key: a consumer never
//! finds another consumer's response, so it cannot reach it through the gateway's shared
//! backend credential even when it learnt the id.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bits of a slot that hold the backend's name tag.
const BACKEND_BITS: u32 = 24;
const BACKEND_MASK: u64 = (1 << BACKEND_BITS) - 1;

/// Longest response id remembered (OpenAI's are about 50 bytes); a longer one is not learnt.
pub const MAX_RESPONSE_ID_BYTES: usize = 128;

/// The shared table.
#[derive(Debug)]
pub struct Affinity {
    slots: Box<[AtomicU64]>,
    hasher: RandomState,
}

impl Affinity {
    /// A table of `slots` entries (rounded up to a power of two, at least 2), under a key drawn at
    /// random, so a caller cannot aim two ids at one slot.
    pub fn new(slots: usize) -> Self {
        let n = slots.max(2).next_power_of_two();
        Affinity {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Remember that `backend` holds response `id` of `owner`.
    pub fn learn(&self, owner: &str, id: &str, backend: &str) {
        if id.is_empty() || id.len() > MAX_RESPONSE_ID_BYTES {
            return;
        }
        let (slot, tag) = self.place(owner, id);
        self.slots[slot].store(tag | backend_tag(backend), Relaxed);
    }

    /// The backend tag remembered for response `id` of `owner`: compare it with
    /// [`backend_tag`] of the candidates' names.
    pub fn lookup(&self, owner: &str, id: &str) -> Option<u64> {
        if id.is_empty() || id.len() > MAX_RESPONSE_ID_BYTES {
            return None;
        }
        let (slot, tag) = self.place(owner, id);
        let word = self.slots[slot].load(Relaxed);
        (word & !BACKEND_MASK == tag).then_some(word & BACKEND_MASK)
    }

    /// Forget response `id` of `owner` (it was deleted).
    pub fn forget(&self, owner: &str, id: &str) {
        if id.is_empty() || id.len() > MAX_RESPONSE_ID_BYTES {
            return;
        }
        let (slot, tag) = self.place(owner, id);
        let s = &self.slots[slot];
        let word = s.load(Relaxed);
        if word & !BACKEND_MASK == tag {
            // Lost to a concurrent learn of another id in this slot: then that one stays.
            let _ = s.compare_exchange(word, 0, Relaxed, Relaxed);
        }
    }

    /// The slot of (owner, id) and its tag: the hash's upper 40 bits, never 0 (0 is empty).
    fn place(&self, owner: &str, id: &str) -> (usize, u64) {
        let mut h = self.hasher.build_hasher();
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.write_usize(owner.len());
        h.write(owner.as_bytes());
        h.write(id.as_bytes());
        let x = h.finish();
        let slot = (x as usize) & (self.slots.len() - 1);
        let tag = (x & !BACKEND_MASK).max(1 << BACKEND_BITS);
        (slot, tag)
    }
}

/// A backend name's 24-bit tag (FNV-1a, folded): names are the config's, not a caller's, and two
/// of one pool sharing a tag only make a lookup ambiguous, which [`pick_backend`] refuses.
pub fn backend_tag(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h ^ (h >> BACKEND_BITS) ^ (h >> (2 * BACKEND_BITS))) & BACKEND_MASK
}

/// The one name in `names` whose tag is `tag`: `None` when none or several match.
pub fn pick_backend<'a, I: IntoIterator<Item = (usize, &'a str)>>(
    tag: u64,
    names: I,
) -> Option<usize> {
    let mut found = None;
    for (i, name) in names {
        if backend_tag(name) == tag {
            if found.is_some_and(|f| f != i) {
                return None;
            }
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_asks_and_forgets_per_owner() {
        let a = Affinity::new(1024);
        assert_eq!(a.lookup("", "resp_1"), None);
        a.learn("team-a", "resp_1", "eastus");
        let tag = a.lookup("team-a", "resp_1").unwrap();
        assert_eq!(tag, backend_tag("eastus"));
        // Another owner, or the owner/id split moved, finds nothing.
        assert_eq!(a.lookup("team-b", "resp_1"), None);
        assert_eq!(a.lookup("team-", "aresp_1"), None);
        assert_eq!(a.lookup("", "resp_1"), None);
        a.learn("team-a", "resp_1", "westus");
        assert_eq!(a.lookup("team-a", "resp_1"), Some(backend_tag("westus")));
        a.forget("team-a", "resp_1");
        assert_eq!(a.lookup("team-a", "resp_1"), None);
    }

    #[test]
    fn bounded_and_odd_ids_ignored() {
        let a = Affinity::new(3);
        assert_eq!(a.slots.len(), 4);
        let long = "r".repeat(MAX_RESPONSE_ID_BYTES + 1);
        a.learn("", &long, "b");
        a.learn("", "", "b");
        assert!(a.slots.iter().all(|s| s.load(Relaxed) == 0));
        // Far more ids than slots: memory stays four words, the latest ids are found.
        for i in 0..10_000 {
            a.learn("", &format!("resp_{i}"), "b");
        }
        assert_eq!(a.lookup("", "resp_9999"), Some(backend_tag("b")));
        let found = (0..10_000)
            .filter(|i| a.lookup("", &format!("resp_{i}")).is_some())
            .count();
        assert!(found <= 4, "{found}");
    }

    #[test]
    fn picks_the_one_backend_with_the_tag() {
        let names = [(0, "eastus"), (1, "westus"), (2, "eastus")];
        assert_eq!(pick_backend(backend_tag("westus"), names), Some(1));
        // The same backend listed twice (two pools) is still one.
        assert_eq!(
            pick_backend(backend_tag("eastus"), [(0, "eastus"), (0, "eastus")]),
            Some(0)
        );
        assert_eq!(pick_backend(backend_tag("eastus"), names), None);
        assert_eq!(pick_backend(backend_tag("nowhere"), names), None);
    }
}
