//! One backend's shared health: bench deadline, circuit breaker and counters, all atomics on
//! their own cache line, so every worker sees a 429 from any other at its next pick, lock-free.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::config::BreakerConfig;

/// Circuit breaker states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows.
    Closed = 0,
    /// No traffic until `open_until`.
    Open = 1,
    /// One probe is in flight; its outcome closes or reopens the breaker.
    HalfOpen = 2,
}

impl BreakerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Lower-case name for JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Most failures a breaker window can track (the ring below); larger `failures` are clamped.
const RING: usize = 64;

/// Shared state of one backend. Times are milliseconds on the caller's monotonic clock.
#[derive(Debug)]
#[repr(align(128))]
pub struct BackendState {
    benched_until: AtomicU64,
    breaker: AtomicU8,
    open_until: AtomicU64,
    /// Failure timestamps (+1, so 0 means empty) of the breaker's sliding window.
    ring: [AtomicU64; RING],
    ring_head: AtomicU32,
    /// Requests sent to this backend now.
    pub in_flight: AtomicI64,
    /// Requests sent (attempts).
    pub requests: AtomicU64,
    /// Attempts that failed (retryable status, connect error, timeout).
    pub failures: AtomicU64,
    /// Breaker transitions to open, half-open and closed.
    pub transitions: [AtomicU64; 3],
}

impl Default for BackendState {
    fn default() -> Self {
        BackendState {
            benched_until: AtomicU64::new(0),
            breaker: AtomicU8::new(BreakerState::Closed as u8),
            open_until: AtomicU64::new(0),
            ring: std::array::from_fn(|_| AtomicU64::new(0)),
            ring_head: AtomicU32::new(0),
            in_flight: AtomicI64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            transitions: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// What an attempt's outcome did to the breaker (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed.
    Same,
    /// The breaker opened.
    Opened,
    /// The breaker closed after a good probe.
    Closed,
}

impl BackendState {
    /// Current breaker state.
    pub fn breaker(&self) -> BreakerState {
        BreakerState::from_u8(self.breaker.load(Relaxed))
    }

    /// Bench deadline (0 when never benched).
    pub fn benched_until(&self) -> u64 {
        self.benched_until.load(Relaxed)
    }

    /// Breaker open deadline.
    pub fn open_until(&self) -> u64 {
        self.open_until.load(Relaxed)
    }

    /// When this backend can take traffic again: `now` or later.
    pub fn available_at(&self, now: u64) -> u64 {
        let mut t = self.benched_until().max(now);
        match self.breaker() {
            BreakerState::Open => t = t.max(self.open_until()),
            // A probe is out; its answer decides. Until then, assume the open period again.
            BreakerState::HalfOpen => t = t.max(now + 1),
            BreakerState::Closed => {}
        }
        t
    }

    /// Can it be picked at `now` (not benched; breaker closed or due for its half-open probe)?
    pub fn available(&self, now: u64) -> bool {
        self.benched_until() <= now
            && match self.breaker() {
                BreakerState::Closed => true,
                BreakerState::Open => self.open_until() <= now,
                BreakerState::HalfOpen => false,
            }
    }

    /// Claim the right to send a request. For an open breaker past its deadline exactly one
    /// caller wins the switch to half-open and sends the probe; the others must pick again.
    pub fn try_acquire(&self, now: u64) -> bool {
        if self.benched_until() > now {
            return false;
        }
        match self.breaker() {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => false,
            BreakerState::Open => {
                self.open_until() <= now
                    && self
                        .breaker
                        .compare_exchange(
                            BreakerState::Open as u8,
                            BreakerState::HalfOpen as u8,
                            Relaxed,
                            Relaxed,
                        )
                        .is_ok()
                    && {
                        self.transitions[BreakerState::HalfOpen as usize].fetch_add(1, Relaxed);
                        true
                    }
            }
        }
    }

    /// Keep it out of every pick until `now + ms` (never shortens an existing bench).
    pub fn bench(&self, now: u64, ms: u64) {
        self.benched_until
            .fetch_max(now.saturating_add(ms), Relaxed);
    }

    /// Record an attempt's outcome. `failed` is whether the breaker's status list (or a
    /// connect/timeout error) counts it; `retry_after_ms` is the upstream's hint, if any.
    pub fn record(
        &self,
        cfg: Option<&BreakerConfig>,
        now: u64,
        failed: bool,
        retry_after_ms: Option<u64>,
    ) -> Verdict {
        let Some(cfg) = cfg else {
            // No breaker (any more: a reload may remove it while it is open). An open state left
            // behind still turns half-open when due; its probe must close it, whatever the
            // outcome, or the backend would never be picked again.
            if self.swap(BreakerState::HalfOpen, BreakerState::Closed) {
                self.clear_ring();
                return Verdict::Closed;
            }
            return Verdict::Same;
        };
        let open_for = |cfg: &BreakerConfig| match retry_after_ms {
            Some(ms) if cfg.honor_retry_after => ms,
            _ => cfg.open_for.as_millis() as u64,
        };
        match (self.breaker(), failed) {
            (BreakerState::HalfOpen, false) => {
                if self.swap(BreakerState::HalfOpen, BreakerState::Closed) {
                    self.clear_ring();
                    return Verdict::Closed;
                }
                Verdict::Same
            }
            (BreakerState::HalfOpen, true) => {
                self.open_until.store(now + open_for(cfg), Relaxed);
                if self.swap(BreakerState::HalfOpen, BreakerState::Open) {
                    return Verdict::Opened;
                }
                Verdict::Same
            }
            (BreakerState::Closed, true) => {
                let n = (cfg.failures as usize).clamp(1, RING);
                let i = self.ring_head.fetch_add(1, Relaxed) as usize % n;
                self.ring[i].store(now + 1, Relaxed);
                let window = cfg.window.as_millis() as u64;
                let within = self.ring[..n].iter().all(|t| {
                    let t = t.load(Relaxed);
                    t != 0 && now + 1 - t.min(now + 1) <= window
                });
                if within {
                    self.open_until.store(now + open_for(cfg), Relaxed);
                    if self.swap(BreakerState::Closed, BreakerState::Open) {
                        return Verdict::Opened;
                    }
                }
                Verdict::Same
            }
            _ => Verdict::Same,
        }
    }

    fn clear_ring(&self) {
        for slot in &self.ring {
            slot.store(0, Relaxed);
        }
    }

    fn swap(&self, from: BreakerState, to: BreakerState) -> bool {
        let ok = self
            .breaker
            .compare_exchange(from as u8, to as u8, Relaxed, Relaxed)
            .is_ok();
        if ok {
            self.transitions[to as usize].fetch_add(1, Relaxed);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(60),
            honor_retry_after: true,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn opens_after_failures_within_window_then_half_open_then_closes() {
        let s = BackendState::default();
        let c = cfg();
        assert_eq!(s.record(Some(&c), 1000, true, None), Verdict::Same);
        assert_eq!(s.record(Some(&c), 2000, true, None), Verdict::Same);
        assert_eq!(s.record(Some(&c), 3000, true, None), Verdict::Opened);
        assert!(!s.available(3000));
        assert!(!s.try_acquire(62_999));
        assert!(s.available(63_000));
        assert!(s.try_acquire(63_000), "first caller gets the probe");
        assert!(!s.try_acquire(63_000), "exactly one probe");
        assert_eq!(s.breaker(), BreakerState::HalfOpen);
        assert_eq!(s.record(Some(&c), 63_100, false, None), Verdict::Closed);
        assert!(s.available(63_100));
    }

    #[test]
    fn failures_outside_window_do_not_trip_and_probe_failure_reopens() {
        let s = BackendState::default();
        let c = cfg();
        s.record(Some(&c), 0, true, None);
        s.record(Some(&c), 5_000, true, None);
        assert_eq!(
            s.record(Some(&c), 20_000, true, None),
            Verdict::Same,
            "first failure aged out"
        );
        assert_eq!(
            s.record(Some(&c), 21_000, true, None),
            Verdict::Same,
            "5 s one is 16 s old now"
        );
        assert_eq!(
            s.record(Some(&c), 22_000, true, Some(2_000)),
            Verdict::Opened
        );
        assert_eq!(s.open_until(), 24_000, "Retry-After honoured");
        assert!(s.try_acquire(24_000));
        assert_eq!(s.record(Some(&c), 24_500, true, None), Verdict::Opened);
        assert_eq!(s.open_until(), 84_500);
    }

    #[test]
    fn breaker_removed_while_open_releases_the_backend_after_its_probe() {
        let s = BackendState::default();
        let c = cfg();
        for t in [1000, 2000, 3000] {
            s.record(Some(&c), t, true, None);
        }
        assert_eq!(s.breaker(), BreakerState::Open);
        // A reload drops the breaker: the old open period still runs out, then one probe...
        assert!(!s.try_acquire(62_999));
        assert!(s.try_acquire(63_000));
        // ...whose outcome, recorded without a breaker, closes it even when it failed.
        assert_eq!(s.record(None, 63_100, true, None), Verdict::Closed);
        assert_eq!(s.breaker(), BreakerState::Closed);
        assert!(s.available(63_100) && s.try_acquire(63_100));
        assert_eq!(s.record(None, 63_200, true, None), Verdict::Same);
    }

    #[test]
    fn bench_never_shortens() {
        let s = BackendState::default();
        s.bench(0, 5000);
        s.bench(1000, 1000);
        assert_eq!(s.benched_until(), 5000);
        assert_eq!(s.available_at(100), 5000);
        assert!(!s.try_acquire(4999));
        assert!(s.try_acquire(5000));
    }
}
