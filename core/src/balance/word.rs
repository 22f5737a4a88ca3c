//! The circuit breaker's state, deadline and epoch packed into one `u64`, so a transition is one
//! compare-and-swap and no reader ever sees a state with another state's deadline.
//!
//! Layout, most significant bit first:
//!
//! ```text
//!  63                       22 21                 2 1    0
//! +---------------------------+--------------------+------+
//! |  deadline (42 bits, ms)   |  epoch (20 bits)   | state|
//! +---------------------------+--------------------+------+
//! ```
//!
//! - `state`: [`BreakerState`] (0 closed, 1 open, 2 half-open).
//! - `epoch`: bumped (mod 2^20) by every transition. An attempt takes the epoch as its ticket
//!   when it starts; its outcome counts only while the epoch is unchanged, so an attempt that
//!   started before the last transition cannot decide anything. A stale ticket could only match
//!   again after exactly 2^20 transitions during one attempt: each open → half-open → open cycle
//!   needs a finished probe, and attempts are bounded by the (capped) upstream timeout.
//! - `deadline`: milliseconds on the caller's monotonic clock (the gateway's starts at process
//!   start): when an open breaker is due for its probe, or when a half-open probe is presumed
//!   abandoned. 42 bits hold 139 years; a deadline past that is stored as [`NEVER`].
//!
//! The failure ring stores its timestamps in the same layout (state unused), so a failure
//! recorded for an old epoch never counts towards opening the breaker in a newer one.

use super::health::BreakerState;

const STATE_BITS: u32 = 2;
const EPOCH_BITS: u32 = 20;
const DEADLINE_BITS: u32 = 64 - STATE_BITS - EPOCH_BITS;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

/// The largest deadline the word holds; it means "not before the clock runs out": never due.
pub(crate) const NEVER: u64 = (1 << DEADLINE_BITS) - 1;

/// The unpacked breaker word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) state: BreakerState,
    pub(super) epoch: u32,
    pub(super) deadline: u64,
}

impl Word {
    /// The closed state of epoch 0 with no deadline: packs to 0 (what `Default` starts with).
    #[cfg(test)]
    pub(super) const INITIAL: Word = Word {
        state: BreakerState::Closed,
        epoch: 0,
        deadline: 0,
    };

    pub(super) fn unpack(w: u64) -> Word {
        Word {
            state: match w & STATE_MASK {
                1 => BreakerState::Open,
                2 => BreakerState::HalfOpen,
                _ => BreakerState::Closed,
            },
            epoch: ((w >> STATE_BITS) & EPOCH_MASK) as u32,
            deadline: w >> (STATE_BITS + EPOCH_BITS),
        }
    }

    pub(super) fn pack(self) -> u64 {
        (self.deadline.min(NEVER) << (STATE_BITS + EPOCH_BITS))
            | ((u64::from(self.epoch) & EPOCH_MASK) << STATE_BITS)
            | (self.state as u64 & STATE_MASK)
    }

    /// The word after a transition to `state` with `deadline`: the next epoch.
    pub(super) fn next(self, state: BreakerState, deadline: u64) -> Word {
        Word {
            state,
            epoch: ((u64::from(self.epoch) + 1) & EPOCH_MASK) as u32,
            deadline,
        }
    }

    /// Is the deadline reached at `now`? [`NEVER`] never is.
    pub(super) fn due(self, now: u64) -> bool {
        self.deadline != NEVER && self.deadline <= now
    }
}

/// `now + ms` as a deadline the word can hold: [`NEVER`] when it would pass it (or wrap).
pub(super) fn deadline(now: u64, ms: u64) -> u64 {
    now.checked_add(ms).filter(|&d| d < NEVER).unwrap_or(NEVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_masks() {
        for w in [
            Word::INITIAL,
            Word {
                state: BreakerState::HalfOpen,
                epoch: (1 << EPOCH_BITS) - 1,
                deadline: NEVER,
            },
            Word {
                state: BreakerState::Open,
                epoch: 12345,
                deadline: 987_654_321,
            },
        ] {
            assert_eq!(Word::unpack(w.pack()), w);
        }
        assert_eq!(Word::INITIAL.pack(), 0);
        // A deadline too large saturates instead of spilling into the epoch.
        let w = Word {
            state: BreakerState::Open,
            epoch: 7,
            deadline: u64::MAX,
        };
        assert_eq!(Word::unpack(w.pack()).deadline, NEVER);
        assert_eq!(Word::unpack(w.pack()).epoch, 7);
    }

    #[test]
    fn epoch_wraps_inside_its_field() {
        let w = Word {
            state: BreakerState::Closed,
            epoch: (1 << EPOCH_BITS) - 1,
            deadline: 5,
        };
        let n = w.next(BreakerState::Open, 9);
        assert_eq!((n.epoch, n.state, n.deadline), (0, BreakerState::Open, 9));
    }

    #[test]
    fn deadlines_saturate_to_never() {
        assert_eq!(deadline(10, 5), 15);
        assert_eq!(deadline(u64::MAX - 1, 5), NEVER);
        assert_eq!(deadline(NEVER - 1, 1), NEVER);
        assert_eq!(deadline(0, u64::MAX), NEVER);
        let w = Word::INITIAL.next(BreakerState::Open, NEVER);
        assert!(!w.due(u64::MAX), "never is never due");
        let w = Word::INITIAL.next(BreakerState::Open, 100);
        assert!(!w.due(99) && w.due(100) && w.due(u64::MAX));
    }
}
