//! Tokens as the currency: a lock-free tokens-per-minute bucket and a per-UTC-window token quota.
//!
//! Both take the time as an argument and are shared by all workers through `&self`: reserve the
//! estimate up front, then settle the real count (refund or debit) once usage is known.

mod bucket;
mod quota;
mod window;

pub use bucket::{Denied, Reservation, TokenBucket};
pub use quota::{Quota, QuotaDenied, QuotaReservation, MAX_QUOTA};
pub use window::{window_end, window_start, Period};
