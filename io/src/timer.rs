//! Timeouts without a runtime timer each: [`within`] bounds a wait (a read, an idle keep-alive
//! connection's wait for its next request) by a deadline kept in a small per-thread table that
//! one ticker task sweeps. monoio's `Sleep` is 640 bytes (cache-padded), which made every waiting
//! connection's task that much larger; an entry here is a slot index in the future and 40 bytes
//! in the table.
//!
//! A deadline fires between the instant it is due and twice [`GRANULARITY`] later. The ticker runs only
//! while something waits, sleeping until the earliest deadline but never longer than [`MAX_NAP`]
//! (an entry due before the ticker's planned wake-up wakes it early, which with the nap bounded
//! happens only for waits shorter than that). Nothing is shared between threads: each worker
//! runtime has its own table and its own ticker.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How late a deadline may fire: expiries due within this window are swept together.
const GRANULARITY: Duration = Duration::from_millis(10);
/// Longest sleep of the ticker while waits are pending.
const MAX_NAP: Duration = Duration::from_secs(1);

/// One pending wait.
struct Slot {
    deadline: Instant,
    waker: Option<Waker>,
    expired: bool,
}

/// The pending waits of this thread, and its ticker's state.
#[derive(Default)]
struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    live: usize,
    /// A ticker task is running, planning to sweep at `planned`.
    ticking: bool,
    planned: Option<Instant>,
    /// The ticker's waker while it sleeps, to wake it before `planned`.
    ticker: Option<Waker>,
    poked: bool,
    /// When the ticker last swept (a runtime that ended took its ticker with it).
    swept: Option<Instant>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

impl Table {
    fn insert(&mut self, deadline: Instant) -> usize {
        let slot = Some(Slot {
            deadline,
            waker: None,
            expired: false,
        });
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) {
        if self.slots.get_mut(i).and_then(Option::take).is_some() {
            self.live -= 1;
            self.free.push(i);
        }
    }

    /// Mark every wait due by `now` expired (their wakers go to `wake`); when to sweep next, or
    /// `None` (and the ticker stops) when nothing waits.
    fn sweep(&mut self, now: Instant, wake: &mut Vec<Waker>) -> Option<Instant> {
        self.swept = Some(now);
        let mut next = now + MAX_NAP;
        for s in self.slots.iter_mut().flatten().filter(|s| !s.expired) {
            if s.deadline <= now {
                s.expired = true;
                wake.extend(s.waker.take());
            } else {
                next = next.min(s.deadline);
            }
        }
        if self.live == 0 {
            // Nothing waits: give the memory back and let the ticker end.
            *self = Table {
                swept: self.swept,
                ..Table::default()
            };
            return None;
        }
        let next = next.max(now + GRANULARITY);
        self.planned = Some(next);
        Some(next)
    }
}

/// A registered deadline; dropping it forgets the deadline.
struct Entry(usize);

impl Entry {
    fn new(deadline: Instant) -> Self {
        let (i, start, poke) = TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let i = t.insert(deadline);
            // A ticker that has not swept for a while died with an earlier runtime on this thread.
            let stale = t.swept.is_some_and(|s| s.elapsed() > 3 * MAX_NAP);
            let start = !t.ticking || stale;
            t.ticking = true;
            let early = t.planned.is_some_and(|p| deadline + GRANULARITY < p);
            if early {
                t.poked = true;
            }
            (i, start, early.then(|| t.ticker.take()).flatten())
        });
        if start {
            monoio::spawn(ticker());
        }
        if let Some(w) = poke {
            w.wake();
        }
        Entry(i)
    }

    /// Has the deadline passed? If not, `waker` is woken when it does.
    fn expired(&self, waker: &Waker) -> bool {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            match t.slots.get_mut(self.0).and_then(Option::as_mut) {
                Some(s) if s.expired => true,
                Some(s) => {
                    if !s.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                        s.waker = Some(waker.clone());
                    }
                    false
                }
                None => true,
            }
        })
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        TABLE.with(|t| t.borrow_mut().remove(self.0));
    }
}

/// Sweep the table until nothing waits.
async fn ticker() {
    let mut wake = Vec::new();
    loop {
        let now = Instant::now();
        let next = TABLE.with(|t| t.borrow_mut().sweep(now, &mut wake));
        // Woken outside the borrow: a woken task may register or drop an entry when it runs.
        wake.drain(..).for_each(Waker::wake);
        let Some(next) = next else {
            return;
        };
        let mut nap = pin!(monoio::time::sleep(next.saturating_duration_since(now)));
        poll_fn(|cx| {
            if nap.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            TABLE.with(|t| {
                let mut t = t.borrow_mut();
                if std::mem::take(&mut t.poked) {
                    return Poll::Ready(());
                }
                t.ticker = Some(cx.waker().clone());
                Poll::Pending
            })
        })
        .await;
    }
}

/// `fut`'s output, or `None` once `limit` has passed (then `fut` is dropped unfinished).
pub(crate) async fn within<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let entry = Entry::new(Instant::now() + limit);
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if entry.expired(cx.waker()) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: Future>(f: F) -> F::Output {
        crate::runtime::block_on(crate::runtime::DriverKind::Legacy, || f)
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    fn close_to(got: Duration, want: Duration) -> bool {
        got >= want && got < want + 20 * GRANULARITY
    }

    #[test]
    fn a_wait_ends_at_its_deadline_or_with_its_future() {
        run(async {
            let t = Instant::now();
            let never = within(Duration::from_millis(100), std::future::pending::<()>()).await;
            assert_eq!(never, None);
            assert!(close_to(t.elapsed(), Duration::from_millis(100)));
            let soon = monoio::time::sleep(Duration::from_millis(10));
            assert_eq!(within(Duration::from_secs(5), soon).await, Some(()));
            // Both entries are gone; the ticker ends once it sees the table empty.
            monoio::time::sleep(MAX_NAP + GRANULARITY).await;
            TABLE.with(|t| {
                let t = t.borrow();
                assert_eq!((t.live, t.slots.len(), t.ticking), (0, 0, false));
            });
        });
    }

    #[test]
    fn a_short_wait_behind_a_long_one_fires_on_time() {
        run(async {
            let t = Instant::now();
            let long = monoio::spawn(within(Duration::from_secs(3), std::future::pending::<()>()));
            // The ticker now naps up to MAX_NAP; a 100 ms wait registered meanwhile wakes it.
            monoio::time::sleep(Duration::from_millis(50)).await;
            let t1 = Instant::now();
            within(Duration::from_millis(100), std::future::pending::<()>()).await;
            assert!(
                close_to(t1.elapsed(), Duration::from_millis(100)),
                "{:?}",
                t1.elapsed()
            );
            let mut waits = Vec::new();
            for ms in [300u64, 150, 200] {
                waits.push(monoio::spawn(async move {
                    let t = Instant::now();
                    within(Duration::from_millis(ms), std::future::pending::<()>()).await;
                    (t.elapsed(), Duration::from_millis(ms))
                }));
            }
            for w in waits {
                let (got, want) = w.await;
                assert!(close_to(got, want), "{got:?} for {want:?}");
            }
            assert_eq!(long.await, None);
            assert!(
                close_to(t.elapsed(), Duration::from_secs(3)),
                "{:?}",
                t.elapsed()
            );
        });
    }
}
