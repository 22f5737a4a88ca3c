//! Tokens as the currency: a lock-free tokens-per-minute bucket and a per-UTC-window token quota.
//!
//! Both take the time as an argument and are shared by all workers through `&self`: reserve the
//! estimate up front, then settle the real count (refund or debit) once usage is known.

mod bucket;
mod key;
mod quota;
mod window;

pub use bucket::{Denied, Reservation, TokenBucket};
pub use key::{KeyHasher, MAX_KEY_VALUE_BYTES};
pub use quota::{Quota, QuotaDenied, QuotaReservation, MAX_QUOTA};
pub use window::{window_end, window_start, Period};

/// The most tokens one request is charged or counted once it is answered. Usage an upstream reports
/// above this is not believable (no model's context comes near 2^32 tokens, even times `n`) and is
/// clamped to it, so that one bogus answer cannot wrap a counter, and sums over many requests stay
/// far from `u64::MAX`.
pub const MAX_REQUEST_TOKENS: u64 = 1 << 32;

/// `reported` usage as it may be charged or counted: at most [`MAX_REQUEST_TOKENS`], unless the
/// request reserved more than that up front (then at most what it reserved).
pub fn plausible_usage(reported: u64, reserved: u64) -> u64 {
    reported.min(MAX_REQUEST_TOKENS.max(reserved))
}
