//! A worker's reusable output buffers: the heads it writes (to upstreams and to clients), taken
//! per request and handed back by simply being dropped once written.
//!
//! Each slot is a `BytesMut` whose allocation is lent out whole: [`BufPool::take`] splits the
//! slot's full capacity off as the buffer to write into, and the slot keeps a handle on the same
//! allocation. Once every piece lent out (the buffer, and any `Bytes` frozen from it) is dropped,
//! the slot is the allocation's only owner again and `try_reclaim` takes it back without
//! allocating or copying. A slot still lent out is skipped; when every slot is, a new slot is
//! made while there are fewer than `max_slots`, else a buffer of just the size asked for.

use std::cell::RefCell;

use bytes::BytesMut;

/// Reusable buffers of one worker (single-threaded: `RefCell`).
#[derive(Debug)]
pub struct BufPool {
    slots: RefCell<Vec<BytesMut>>,
    size: usize,
    max_slots: usize,
}

impl BufPool {
    /// A pool of at most `max_slots` buffers of `size` bytes each, allocated as first needed.
    pub fn new(size: usize, max_slots: usize) -> Self {
        BufPool {
            slots: RefCell::new(Vec::new()),
            size,
            max_slots,
        }
    }

    /// An empty buffer with room for at least `min` bytes: a free slot's allocation when one
    /// is free and large enough, else a fresh one.
    pub fn take(&self, min: usize) -> BytesMut {
        if min > self.size {
            return BytesMut::with_capacity(min);
        }
        let mut slots = self.slots.borrow_mut();
        for slot in slots.iter_mut() {
            slot.clear();
            // Succeeds without allocating exactly when nothing lent from the slot is alive.
            if slot.try_reclaim(self.size) {
                return slot.split_off(0);
            }
        }
        if slots.len() < self.max_slots {
            let mut fresh = BytesMut::with_capacity(self.size);
            let lent = fresh.split_off(0);
            slots.push(fresh);
            return lent;
        }
        // Every slot is lent (many requests in flight): just what was asked for, so requests
        // beyond the pool hold no more than they need.
        BytesMut::with_capacity(min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_reused() {
        let pool = BufPool::new(1024, 2);
        let mut a = pool.take(10);
        assert!(a.capacity() >= 1024);
        a.extend_from_slice(b"hello");
        let ptr = a.as_ptr();
        let frozen = a.freeze();
        // Still lent out (the frozen bytes live): another slot is used.
        let b = pool.take(10);
        assert_ne!(b.as_ptr(), ptr);
        drop(frozen);
        let c = pool.take(10);
        assert_eq!(c.as_ptr(), ptr, "the first slot's allocation came back");
        assert!(c.is_empty() && c.capacity() >= 1024);
        // Both slots lent: a fresh, unpooled buffer of the size asked for.
        let d = pool.take(10);
        assert!(d.as_ptr() != ptr && d.as_ptr() != b.as_ptr());
        assert!(d.capacity() < 1024);
        // Larger than a slot: its own allocation.
        assert!(pool.take(4096).capacity() >= 4096);
    }
}
