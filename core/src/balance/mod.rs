//! Backend pools that survive: shared per-backend health (bench and circuit breaker, lock-free),
//! the per-worker pick (priority groups, smooth weighted round-robin or random), and the
//! upstream hints that say how long a failed member should sit out.

mod health;
mod hints;
mod pick;

pub use health::{BackendState, BreakerState, Verdict};
pub use hints::{bench_hint_ms, parse_http_date, parse_openai_duration_ms};
pub use pick::{pick, Candidate, Picked, WrrState};
