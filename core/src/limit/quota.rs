//! A lock-free token quota per fixed UTC window (hour, day, week, month).

use std::sync::atomic::{AtomicU64, Ordering};

use super::window::{window_end, window_start, Period};

/// Low bits of the state: tokens used in the current window.
const USED_BITS: u32 = 42;
/// The most tokens a window can count (about 4.4e12); limits above are clamped to it.
pub const MAX_QUOTA: u64 = (1 << USED_BITS) - 1;
/// High bits of the state: the window's start in hours since the epoch (every window starts on an
/// hour), enough until the year 2448.
const TAG_MAX: u64 = (1 << (u64::BITS - USED_BITS)) - 1;
/// Seconds in an hour, the unit of the window tag.
const HOUR: u64 = 3600;

/// A budget of `limit` tokens per [`Period`] window, shared by every thread without a lock.
///
/// The window and its usage live together in one `AtomicU64` (window start in hours since the epoch,
/// tokens used), so a rollover that resets the usage and a reservation racing it cannot both win: a
/// reservation lands wholly in one window. Each reservation carries its window's start, and a
/// settlement for a window that has since rolled over is dropped rather than charged to the new one.
/// A thread whose clock reads a little behind another's charges the newer window the other thread
/// opened instead of rolling the quota back.
#[derive(Debug)]
pub struct Quota {
    /// `(window start in hours) << USED_BITS | tokens used`.
    state: AtomicU64,
    /// Tokens per window, at most [`MAX_QUOTA`].
    limit: u64,
    /// The window length.
    period: Period,
}

/// Tokens taken from a [`Quota`] by [`Quota::try_reserve`], tagged with their window, to hand back
/// to [`Quota::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reservation should be settled with the real token count"]
pub struct QuotaReservation {
    /// Tokens reserved (settling `tokens: 0` charges usage that was never reserved).
    pub tokens: u64,
    /// Unix second at which the reservation's window started.
    pub window_start: u64,
}

/// Why [`Quota::try_reserve`] refused: the window is spent until it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("token quota exhausted until unix time {resets_at_unix_secs}")]
pub struct QuotaDenied {
    /// Unix second at which the window ends and the usage resets; `u64::MAX` when `too_large`.
    pub resets_at_unix_secs: u64,
    /// The request is bigger than the whole quota, so no window can ever admit it.
    pub too_large: bool,
}

impl Quota {
    /// An unused quota of `limit` tokens per `period` window (`limit` is clamped to [`MAX_QUOTA`]).
    pub fn new(period: Period, limit: u64) -> Self {
        Self {
            state: AtomicU64::new(0),
            limit: limit.min(MAX_QUOTA),
            period,
        }
    }

    /// Tokens per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window length.
    pub fn period(&self) -> Period {
        self.period
    }

    /// Takes `n` tokens from the window holding `now_unix_secs`, starting a fresh window (usage 0) if
    /// that one is new. `n == 0` always succeeds and gives a reservation to settle unestimated usage.
    pub fn try_reserve(&self, n: u64, now_unix_secs: u64) -> Result<QuotaReservation, QuotaDenied> {
        if n > self.limit {
            return Err(QuotaDenied {
                resets_at_unix_secs: u64::MAX,
                too_large: true,
            });
        }
        let start = window_start(self.period, now_unix_secs);
        let now_tag = tag_of(start);
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (tag, used) = match unpack(cur) {
                (tag, _) if tag < now_tag => (now_tag, 0),
                state => state,
            };
            let window_start = if tag == now_tag { start } else { tag * HOUR };
            let used = used + n; // both <= MAX_QUOTA: no overflow
            if n > 0 && used > self.limit {
                return Err(QuotaDenied {
                    resets_at_unix_secs: window_end(self.period, window_start),
                    too_large: false,
                });
            }
            let reservation = QuotaReservation {
                tokens: n,
                window_start,
            };
            let new = pack(tag, used);
            if new == cur {
                return Ok(reservation);
            }
            // One atomic, no data published with it: Relaxed read-modify-writes are totally ordered.
            match self
                .state
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(reservation),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Corrects a reservation to the `actual` tokens used: refunds the difference or charges the
    /// excess (usage may then exceed the limit; later requests of the window are denied). Dropped if
    /// the reservation's window is over.
    pub fn settle(&self, reservation: QuotaReservation, actual: u64) {
        let reserved = reservation.tokens;
        if actual == reserved {
            return;
        }
        let res_tag = tag_of(reservation.window_start);
        let update = |cur: u64| -> Option<u64> {
            let (tag, used) = match unpack(cur) {
                (tag, _) if tag < res_tag => (res_tag, 0), // a window nobody reserved in yet
                (tag, _) if tag > res_tag => return None,  // the reservation's window is over
                state => state,
            };
            let used = if actual < reserved {
                used.saturating_sub(reserved - actual)
            } else {
                used.saturating_add(actual - reserved).min(MAX_QUOTA)
            };
            Some(pack(tag, used))
        };
        // `Err` means the settlement was for an old window and is dropped on purpose.
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update);
    }

    /// Tokens left in the window holding `now_unix_secs` (0 once usage reached or passed the limit).
    pub fn remaining(&self, now_unix_secs: u64) -> u64 {
        let now_tag = tag_of(window_start(self.period, now_unix_secs));
        match unpack(self.state.load(Ordering::Relaxed)) {
            (tag, _) if tag < now_tag => self.limit,
            (_, used) => self.limit.saturating_sub(used),
        }
    }
}

/// The state tag of a window starting at `window_start` (hours since the epoch, saturating).
fn tag_of(window_start: u64) -> u64 {
    (window_start / HOUR).min(TAG_MAX)
}

/// Packs a window tag and a usage into the state word.
fn pack(tag: u64, used: u64) -> u64 {
    tag << USED_BITS | used
}

/// Splits the state word into its window tag and usage.
fn unpack(state: u64) -> (u64, u64) {
    (state >> USED_BITS, state & MAX_QUOTA)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2028-02-28T00:00:00Z, a Monday.
    const MON: u64 = 1_835_308_800;
    const DAY: u64 = 86_400;

    #[test]
    fn reserve_settle_and_deny() {
        let q = Quota::new(Period::Day, 1000);
        assert_eq!((q.limit(), q.period()), (1000, Period::Day));
        assert_eq!(q.remaining(MON), 1000);
        let r = q.try_reserve(700, MON + 10).unwrap();
        assert_eq!(
            r,
            QuotaReservation {
                tokens: 700,
                window_start: MON
            }
        );
        assert_eq!(q.remaining(MON + 20), 300);
        let denied = QuotaDenied {
            resets_at_unix_secs: MON + DAY,
            too_large: false,
        };
        assert_eq!(q.try_reserve(301, MON + 30), Err(denied));
        q.settle(r, 200);
        assert_eq!(q.remaining(MON + 40), 800);
        let r = q.try_reserve(800, MON + 50).unwrap();
        q.settle(r, 900); // overspent: usage passes the limit
        assert_eq!(q.remaining(MON + 60), 0);
        assert_eq!(q.try_reserve(1, MON + 70), Err(denied));
        assert_eq!(q.try_reserve(0, MON + 70).map(|r| r.tokens), Ok(0));
        let too_large = q.try_reserve(1001, MON).unwrap_err();
        assert!(too_large.too_large && too_large.resets_at_unix_secs == u64::MAX);
    }

    #[test]
    fn rollover_resets_usage_and_drops_stale_settlements() {
        let q = Quota::new(Period::Week, 100);
        let old = q.try_reserve(100, MON + 6 * DAY).unwrap();
        assert_eq!(q.remaining(MON + 7 * DAY - 1), 0);
        assert_eq!(q.remaining(MON + 7 * DAY), 100);
        let new = q.try_reserve(30, MON + 7 * DAY).unwrap();
        assert_eq!(new.window_start, MON + 7 * DAY);
        // The old window's settlement, refund or debit, must not touch the new one.
        q.settle(old, 0);
        assert_eq!(q.remaining(MON + 7 * DAY + 1), 70);
        q.settle(QuotaReservation { tokens: 0, ..old }, 500);
        assert_eq!(q.remaining(MON + 7 * DAY + 1), 70);
        q.settle(new, 50);
        assert_eq!(q.remaining(MON + 8 * DAY), 50);
    }

    #[test]
    fn a_late_clock_charges_the_newer_window() {
        let q = Quota::new(Period::Hour, 100);
        let next = MON + HOUR;
        let _ = q.try_reserve(10, next).unwrap();
        // Another thread read its clock just before the hour: it must not roll the quota back.
        let r = q.try_reserve(20, next - 1).unwrap();
        assert_eq!(r.window_start, next);
        assert_eq!(q.remaining(next), 70);
        let d = q.try_reserve(71, next - 1).unwrap_err();
        assert_eq!(d.resets_at_unix_secs, next + HOUR);
        q.settle(r, 0);
        assert_eq!(q.remaining(next), 90);
    }

    #[test]
    fn settling_unreserved_usage_opens_its_window() {
        let q = Quota::new(Period::Month, 1000);
        let _ = q.try_reserve(900, MON).unwrap();
        let mar_1_2028 = 1_835_481_600;
        let start = window_start(Period::Month, mar_1_2028 + 5);
        let unreserved = QuotaReservation {
            tokens: 0,
            window_start: start,
        };
        q.settle(unreserved, 250);
        assert_eq!(q.remaining(mar_1_2028 + 6), 750);
    }

    #[test]
    fn huge_numbers_are_refused_or_clamped() {
        let q = Quota::new(Period::Day, u64::MAX);
        assert_eq!(q.limit(), MAX_QUOTA);
        assert!(q.try_reserve(u64::MAX, MON).unwrap_err().too_large);
        let r = q.try_reserve(MAX_QUOTA, MON).unwrap();
        q.settle(r, u64::MAX);
        assert_eq!(q.remaining(MON), 0);
        // The usage stayed in its bits: the window tag is intact and the next day is fresh.
        assert_eq!(q.remaining(MON + DAY), MAX_QUOTA);

        let q = Quota::new(Period::Hour, 10);
        let unreserved = QuotaReservation {
            tokens: 0,
            window_start: MON,
        };
        q.settle(unreserved, u64::MAX);
        assert_eq!(q.remaining(MON), 0);
        assert_eq!(q.remaining(MON + HOUR), 10);
        // A clock at the end of time saturates the window tag instead of spilling into the usage.
        let r = q.try_reserve(5, u64::MAX).unwrap();
        assert_eq!(q.remaining(u64::MAX), 5);
        q.settle(r, u64::MAX);
        assert_eq!(q.remaining(u64::MAX), 0);
    }

    #[test]
    fn threads_never_overspend_a_window() {
        let q = Quota::new(Period::Day, 50_000);
        let per_window = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut by_window = [0u64; 2];
                        let mut take = |r: QuotaReservation| {
                            by_window[usize::from(r.window_start == MON)] += r.tokens;
                        };
                        // Straddle midnight: a thread still on the old day, once another thread
                        // opened the new one, charges the new day.
                        for now in [MON - 1, MON] {
                            let mut i = 0;
                            while let Ok(r) = q.try_reserve(1 + i % 3, now) {
                                take(r);
                                i += 1;
                            }
                            while let Ok(r) = q.try_reserve(1, now) {
                                take(r);
                            }
                        }
                        by_window
                    })
                })
                .collect();
            handles.into_iter().fold([0, 0], |acc, h| {
                let w = h.join().unwrap();
                [acc[0] + w[0], acc[1] + w[1]]
            })
        });
        assert!(per_window[0] <= 50_000, "{per_window:?}");
        assert_eq!(per_window[1], 50_000);
        assert_eq!(q.remaining(MON), 0);
    }
}
