//! Backend pools that survive: shared per-backend health (bench and circuit breaker, lock-free),
//! the per-worker pick (priority groups, smooth weighted round-robin or random), the upstream
//! hints that say how long a failed member should sit out, and when a backend's host name is
//! resolved again.

mod dns;
mod health;
mod hints;
mod pick;
mod word;

pub use dns::{resolve_step, DnsSchedule, Refresh};
pub use health::{BackendState, BreakerState, Ticket, Verdict, PROBE_LEASE_MS};
pub use hints::{bench_hint_ms, parse_http_date, parse_openai_duration_ms};
pub use pick::{pick, Candidate, Picked, WrrState};
