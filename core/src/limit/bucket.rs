//! A lock-free tokens-per-minute bucket: GCRA on one atomic theoretical arrival time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Nanoseconds in the bucket's refill period: a full bucket takes one minute to refill.
const MINUTE_NS: u128 = 60_000_000_000;

/// Bits of resolution per minute of refill: a token is split into `2^(36 - bits(tpm))` units so a
/// slow bucket still refills in fine steps, and 2^64 units still span more than 500 years.
const MINUTE_UNIT_BITS: u32 = 36;

/// A token bucket of `tokens_per_minute` capacity, refilled continuously at `tokens_per_minute / 60`
/// tokens per second, shared by every thread without a lock.
///
/// The state is the GCRA "theoretical arrival time" (TAT): the instant at which the bucket would be
/// full again, kept in one `AtomicU64`. The clock is the caller's: every method takes `now_ns` from
/// any monotonic nanosecond clock, so tests can freeze or jump time.
///
/// Time is counted in *units*, a fixed fraction of a token's refill time (`60 s / tpm`), so that a
/// token costs a whole number of units and admission is exact: at a frozen clock, the tokens admitted
/// sum to exactly the capacity, never more, whatever the interleaving. Clock readings are floored to
/// the unit; `retry_after_ns` and `reset_after_ns` are rounded up, so waiting that long always suffices.
#[derive(Debug)]
pub struct TokenBucket {
    /// The theoretical arrival time in units; the bucket is full when it is at or before now.
    tat: AtomicU64,
    /// Capacity in tokens (`tokens_per_minute`).
    limit: u64,
    /// Units one token costs (a power of two).
    unit_per_token: u64,
    /// Capacity in units (`limit * unit_per_token`), which is also the units that elapse per minute.
    tau: u64,
}

/// Tokens taken from a [`TokenBucket`] by [`TokenBucket::try_reserve`], to hand back to
/// [`TokenBucket::settle`] once the real count is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reservation should be settled with the real token count"]
pub struct Reservation {
    /// Tokens reserved (a `Reservation { tokens: 0 }` settles usage that was never reserved).
    pub tokens: u64,
}

/// Why [`TokenBucket::try_reserve`] refused: how long until the request fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("token rate limit: retry after {retry_after_ns} ns")]
pub struct Denied {
    /// Nanoseconds from `now_ns` until the same request would be admitted (barring other traffic);
    /// `u64::MAX` when it never will.
    pub retry_after_ns: u64,
    /// The request is bigger than the whole bucket, so it can never be admitted.
    pub too_large: bool,
}

impl TokenBucket {
    /// A full bucket of `tokens_per_minute` tokens. A limit of 0 admits nothing but zero-token
    /// requests.
    pub fn new(tokens_per_minute: u64) -> Self {
        let bits = u64::BITS - tokens_per_minute.leading_zeros();
        let unit_per_token = 1u64 << MINUTE_UNIT_BITS.saturating_sub(bits);
        Self {
            tat: AtomicU64::new(0),
            limit: tokens_per_minute,
            unit_per_token,
            // bits(tpm) + log2(unit_per_token) <= max(36, 64): cannot overflow.
            tau: tokens_per_minute.saturating_mul(unit_per_token),
        }
    }

    /// The capacity, in tokens per minute.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes `n` tokens if the bucket holds them at `now_ns`; a request bigger than the capacity is
    /// always denied with `too_large`. Zero tokens are always admitted.
    pub fn try_reserve(&self, n: u64, now_ns: u64) -> Result<Reservation, Denied> {
        if n > self.limit {
            return Err(Denied {
                retry_after_ns: u64::MAX,
                too_large: true,
            });
        }
        if n == 0 {
            return Ok(Reservation { tokens: 0 });
        }
        let now = self.units_at(now_ns);
        let cost = n * self.unit_per_token; // n <= limit, so cost <= tau
                                            // One atomic, no data published with it: Relaxed read-modify-writes are totally ordered.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now).saturating_add(cost);
            if new_tat - now > self.tau {
                // Denied only with a backlog (tat > now); it fits once the clock reaches this unit.
                let fits_at = tat.saturating_add(cost) - self.tau;
                return Err(Denied {
                    retry_after_ns: self.ns_at(fits_at).saturating_sub(now_ns),
                    too_large: false,
                });
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(Reservation { tokens: n }),
                Err(current) => tat = current,
            }
        }
    }

    /// Corrects a reservation to the `actual` tokens used: refunds the difference (never refilling
    /// past full) or debits the excess, which may push the bucket over capacity so that later
    /// requests wait it off.
    pub fn settle(&self, reservation: Reservation, actual: u64, now_ns: u64) {
        let reserved = reservation.tokens;
        if actual == reserved {
            return;
        }
        let now = self.units_at(now_ns);
        let per = self.unit_per_token;
        let update = |tat: u64| -> Option<u64> {
            let new_tat = if actual < reserved {
                let refund = (reserved - actual).saturating_mul(per);
                tat.saturating_sub(refund).max(now)
            } else {
                let debit = (actual - reserved).saturating_mul(per);
                tat.max(now).saturating_add(debit)
            };
            (new_tat != tat).then_some(new_tat)
        };
        // `Err` means there was nothing to change (a refund to an already full bucket).
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update);
    }

    /// Whole tokens available at `now_ns` (0 while the bucket is in debt).
    pub fn remaining(&self, now_ns: u64) -> u64 {
        if self.tau == 0 {
            return 0;
        }
        let backlog = self
            .tat
            .load(Ordering::Relaxed)
            .saturating_sub(self.units_at(now_ns));
        self.tau.saturating_sub(backlog) / self.unit_per_token
    }

    /// Nanoseconds from `now_ns` until the bucket is full again (0 if it is full).
    pub fn reset_after_ns(&self, now_ns: u64) -> u64 {
        let tat = self.tat.load(Ordering::Relaxed);
        if self.tau == 0 || tat <= self.units_at(now_ns) {
            return 0;
        }
        self.ns_at(tat).saturating_sub(now_ns)
    }

    /// The clock reading in units, floored: `now_ns * tau / 60 s`.
    fn units_at(&self, now_ns: u64) -> u64 {
        let units = u128::from(now_ns) * u128::from(self.tau) / MINUTE_NS;
        u64::try_from(units).unwrap_or(u64::MAX)
    }

    /// The first nanosecond at which the clock reads at least `units` (the inverse of `units_at`).
    fn ns_at(&self, units: u64) -> u64 {
        if self.tau == 0 {
            return u64::MAX;
        }
        let ns = (u128::from(units) * MINUTE_NS).div_ceil(u128::from(self.tau));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// A clock far from zero (so nothing hides behind `max(tat, now)`), on a whole minute.
    const T0: u64 = 1000 * 3600 * SEC;

    #[test]
    fn spends_and_refills_continuously() {
        let b = TokenBucket::new(6000);
        assert_eq!(b.limit(), 6000);
        assert_eq!(b.remaining(T0), 6000);
        assert_eq!(b.reset_after_ns(T0), 0);
        assert!(b.try_reserve(6000, T0).is_ok());
        assert_eq!(b.remaining(T0), 0);
        assert_eq!(b.reset_after_ns(T0), 60 * SEC);
        assert_eq!(b.remaining(T0 + 30 * SEC), 3000);
        assert_eq!(b.reset_after_ns(T0 + 30 * SEC), 30 * SEC);
        assert_eq!(b.remaining(T0 + 10 * SEC + 5_000_000), 1000); // 10.005 s: 1000.5 tokens
        assert_eq!(b.remaining(T0 + 60 * SEC), 6000);
        assert_eq!(b.remaining(T0 + 3600 * SEC), 6000); // never above capacity
    }

    #[test]
    fn denial_says_exactly_when_it_fits() {
        let b = TokenBucket::new(60); // one token a second
        assert!(b.try_reserve(60, T0).is_ok());
        let d = b.try_reserve(1, T0).err();
        assert_eq!(
            d,
            Some(Denied {
                retry_after_ns: SEC,
                too_large: false
            })
        );
        let d = b.try_reserve(3, T0 + SEC / 2).err();
        assert_eq!(d.map(|d| d.retry_after_ns), Some(3 * SEC - SEC / 2));
        assert!(b.try_reserve(1, T0 + SEC - 1).is_err());
        assert_eq!(b.try_reserve(1, T0 + SEC), Ok(Reservation { tokens: 1 }));
        assert!(b.try_reserve(1, T0 + SEC).is_err());

        // A rate that does not divide a minute: a token every 8.571428571428... s.
        let b = TokenBucket::new(7);
        assert!(b.try_reserve(7, T0).is_ok());
        let d = b.try_reserve(1, T0).unwrap_err();
        assert_eq!(d.retry_after_ns, 8_571_428_572);
        assert!(b.try_reserve(1, T0 + d.retry_after_ns - 1).is_err());
        assert!(b.try_reserve(1, T0 + d.retry_after_ns).is_ok());
    }

    #[test]
    fn too_large_and_zero() {
        let b = TokenBucket::new(100);
        let d = b.try_reserve(101, T0).err();
        assert_eq!(
            d,
            Some(Denied {
                retry_after_ns: u64::MAX,
                too_large: true
            })
        );
        assert_eq!(b.try_reserve(0, T0), Ok(Reservation { tokens: 0 }));
        assert!(b.try_reserve(100, T0).is_ok());
        assert_eq!(b.try_reserve(0, T0), Ok(Reservation { tokens: 0 }));

        let none = TokenBucket::new(0);
        assert!(none.try_reserve(1, T0).is_err_and(|d| d.too_large));
        assert!(none.try_reserve(0, T0).is_ok());
        assert_eq!(none.remaining(T0), 0);
        assert_eq!(none.reset_after_ns(T0), 0);
    }

    #[test]
    fn settle_refunds_and_debits() {
        let b = TokenBucket::new(1000);
        let r = b.try_reserve(600, T0).unwrap();
        b.settle(r, 100, T0);
        assert_eq!(b.remaining(T0), 900);
        // A refund never fills past capacity, even once time has refilled the bucket.
        let r = b.try_reserve(500, T0).unwrap();
        b.settle(r, 0, T0 + 3600 * SEC);
        assert_eq!(b.remaining(T0 + 3600 * SEC), 1000);
        assert_eq!(b.reset_after_ns(T0 + 3600 * SEC), 0);

        // A debit past capacity puts the bucket in debt: 500 tokens over = 30 s of waiting.
        let t1 = T0 + 3600 * SEC;
        let r = b.try_reserve(1000, t1).unwrap();
        b.settle(r, 1500, t1);
        assert_eq!(b.remaining(t1), 0);
        assert_eq!(b.reset_after_ns(t1), 90 * SEC);
        assert_eq!(b.remaining(t1 + 30 * SEC), 0);
        assert_eq!(b.remaining(t1 + 31 * SEC), 16);
        assert_eq!(
            b.try_reserve(1, t1).err().map(|d| d.retry_after_ns),
            Some(30 * SEC + 60_000_000)
        );
        // Usage that was never reserved is settled from an empty reservation.
        b.settle(Reservation { tokens: 0 }, 1000, t1 + 90 * SEC);
        assert_eq!(b.remaining(t1 + 90 * SEC), 0);
        assert_eq!(b.remaining(t1 + 150 * SEC), 1000);
    }

    #[test]
    fn huge_numbers_saturate_instead_of_wrapping() {
        let b = TokenBucket::new(1000);
        assert!(b.try_reserve(u64::MAX, T0).is_err_and(|d| d.too_large));
        // An absurd settlement puts the bucket in debt for good; nothing wraps back to "full".
        let r = b.try_reserve(10, T0).unwrap();
        b.settle(r, u64::MAX, T0);
        for later in [T0, T0 + 3600 * SEC, T0 * 1000] {
            assert_eq!(b.remaining(later), 0);
            assert!(b.try_reserve(1, later).is_err_and(|d| !d.too_large));
            assert!(b.reset_after_ns(later) > 0);
        }
        // A refund from the saturated state lands on "full", not below zero.
        b.settle(Reservation { tokens: u64::MAX }, 0, T0);
        assert_eq!(b.remaining(T0), 1000);

        // Limits at the top of the range: no overflow in the unit arithmetic.
        for tpm in [1 << 40, u64::MAX / 2, u64::MAX] {
            let big = TokenBucket::new(tpm);
            assert!(big.try_reserve(tpm, T0).is_ok());
            big.settle(Reservation { tokens: tpm }, u64::MAX, T0);
            let _ = (big.remaining(T0), big.reset_after_ns(T0));
        }
    }

    #[test]
    fn threads_never_overspend_a_frozen_bucket() {
        for limit in [1000, 99_991, 1_000_000_000] {
            let b = TokenBucket::new(limit);
            let per_thread: Vec<u64> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4u64)
                    .map(|t| {
                        let b = &b;
                        s.spawn(move || {
                            let mut admitted = 0;
                            let mut i = t;
                            // Demand far above capacity: stop only once not even one token fits.
                            loop {
                                let n = 1 + i % 7;
                                i += 1;
                                if let Ok(r) = b.try_reserve(n, T0) {
                                    admitted += r.tokens;
                                } else if let Ok(r) = b.try_reserve(1, T0) {
                                    admitted += r.tokens;
                                } else {
                                    return admitted;
                                }
                                if limit > 1_000_000 && admitted > 200_000 {
                                    return admitted; // demand below capacity: checked below
                                }
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let total: u64 = per_thread.iter().sum();
            assert!(total <= limit);
            if limit > 1_000_000 {
                assert_eq!(b.remaining(T0), limit - total);
            } else {
                assert_eq!(total, limit, "per thread: {per_thread:?}");
                assert_eq!(b.remaining(T0), 0);
            }
        }
    }
}
