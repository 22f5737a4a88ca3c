//! A worker's budget for buffered bodies, charged as request body bytes arrive (or for an upstream
//! answer read whole, at once) and given back when each request ends.

use std::cell::Cell;
use std::rc::Rc;

/// A worker's budget for buffered bodies, so many large ones at once cannot exhaust memory: a
/// request body that does not fit is answered 503 with `Retry-After`; an upstream answer that does
/// not fit is relayed as it arrives instead of read whole.
#[derive(Debug)]
pub struct BodyBudget {
    max: Cell<u64>,
    used: Cell<u64>,
}

impl BodyBudget {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> Rc<Self> {
        Rc::new(BodyBudget {
            max: Cell::new(max),
            used: Cell::new(0),
        })
    }

    /// Change the limit (a reload); bodies already admitted keep their share.
    pub fn set_max(&self, max: u64) {
        self.max.set(max);
    }

    /// Bytes held by bodies now.
    pub fn used(&self) -> u64 {
        self.used.get()
    }

    /// Hold `n` bytes until the returned permit is dropped; `None` when they do not fit.
    pub(crate) fn hold(self: &Rc<Self>, n: u64) -> Option<BodyPermit> {
        let mut permit = None;
        self.take(&mut permit, n).then_some(permit).flatten()
    }

    pub(crate) fn take(self: &Rc<Self>, permit: &mut Option<BodyPermit>, n: u64) -> bool {
        let used = self.used.get();
        match used.checked_add(n) {
            Some(total) if total <= self.max.get() => {
                self.used.set(total);
                match permit {
                    Some(p) => p.bytes += n,
                    None => {
                        *permit = Some(BodyPermit {
                            budget: self.clone(),
                            bytes: n,
                        })
                    }
                }
                true
            }
            _ => false,
        }
    }
}

/// Bytes of a [`BodyBudget`] held by one request.
#[derive(Debug)]
pub(crate) struct BodyPermit {
    budget: Rc<BodyBudget>,
    bytes: u64,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let b = &self.budget;
        b.used.set(b.used.get().saturating_sub(self.bytes));
    }
}
