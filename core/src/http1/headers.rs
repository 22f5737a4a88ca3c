//! The headers of a decoded head: `Bytes` slices of the frozen head buffer, in a `Vec` that is
//! reused. Decoding records where httparse found each header (on the stack), freezes the head,
//! then slices it; the `Vec` comes from a small per-thread pool and goes back to it when the
//! head is dropped, so a worker decoding one head after another allocates no header lists.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use bytes::Bytes;

use super::Header;

/// Byte offsets of one header inside the head buffer: name start and length, value start and
/// length.
type HeaderOffsets = (usize, usize, usize, usize);

/// Headers whose offsets are recorded on the stack (a typical head has 5 to 20); a head with more
/// records the rest on the heap. Small, as the array is zeroed for every head decoded.
const STACK_HEADERS: usize = 32;

/// Where httparse's borrowed headers sit in the head buffer, recorded so they can be sliced
/// once the buffer is frozen (which ends httparse's borrow).
pub(crate) struct Offsets {
    stack: [HeaderOffsets; STACK_HEADERS],
    len: usize,
    heap: Vec<HeaderOffsets>,
}

impl Offsets {
    /// Record every header of `raw`, parsed from `base`.
    pub(crate) fn record(base: &[u8], raw: &[httparse::Header<'_>]) -> Self {
        let start = base.as_ptr() as usize;
        let mut o = Offsets {
            stack: [(0, 0, 0, 0); STACK_HEADERS],
            len: 0,
            heap: Vec::new(),
        };
        for h in raw {
            let n = h.name.as_ptr() as usize - start;
            let v = h.value.as_ptr() as usize - start;
            let off = (n, h.name.len(), v, h.value.len());
            if o.len < STACK_HEADERS {
                o.stack[o.len] = off;
                o.len += 1;
            } else {
                o.heap.push(off);
            }
        }
        o
    }

    fn iter(&self) -> impl Iterator<Item = &HeaderOffsets> {
        self.stack[..self.len].iter().chain(&self.heap)
    }
}

/// Turn recorded offsets into `Bytes` slices of the frozen head (refcount bumps, no copies).
pub(crate) fn slice_headers(frozen: &Bytes, offs: &Offsets) -> Headers {
    let mut list = Headers::with_capacity(offs.len + offs.heap.len());
    list.extend(offs.iter().map(|&(n, nl, v, vl)| Header {
        name: frozen.slice(n..n + nl),
        value: frozen.slice(v..v + vl),
    }));
    list
}

/// Header lists kept per thread for reuse, and the longest list kept.
const POOLED_LISTS: usize = 32;
const POOLED_CAPACITY: usize = 128;

thread_local! {
    static POOL: RefCell<Vec<Vec<Header>>> = const { RefCell::new(Vec::new()) };
}

/// The headers of a head, in order. Dereferences to the `Vec`; its storage is reused by the
/// next head decoded on the same thread once this one is dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// An empty list with room for `n` headers, reusing a pooled one when there is one.
    pub fn with_capacity(n: usize) -> Self {
        let pooled = POOL
            .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
            .ok()
            .flatten();
        let mut v = pooled.unwrap_or_default();
        v.reserve(n);
        Headers(v)
    }
}

impl Drop for Headers {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        if v.capacity() == 0 || v.capacity() > POOLED_CAPACITY {
            return;
        }
        v.clear();
        let _ = POOL.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if p.len() < POOLED_LISTS {
                    p.push(v);
                }
            }
        });
    }
}

impl Clone for Headers {
    fn clone(&self) -> Self {
        let mut c = Headers::with_capacity(self.0.len());
        c.0.extend_from_slice(&self.0);
        c
    }
}

impl From<Vec<Header>> for Headers {
    fn from(v: Vec<Header>) -> Self {
        Headers(v)
    }
}

impl Deref for Headers {
    type Target = Vec<Header>;
    fn deref(&self) -> &Vec<Header> {
        &self.0
    }
}

impl DerefMut for Headers {
    fn deref_mut(&mut self) -> &mut Vec<Header> {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_list_is_reused() {
        let mut a = Headers::with_capacity(4);
        a.push(Header {
            name: Bytes::from_static(b"a"),
            value: Bytes::from_static(b"1"),
        });
        let ptr = a.as_ptr();
        drop(a);
        let b = Headers::with_capacity(2);
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr, "the same storage, emptied");
    }
}
