//! One backend's shared health: bench deadline, circuit breaker and counters, all atomics, so
//! every worker sees a 429 from any other at its next pick, lock-free.
//!
//! The two words every pick reads (the bench deadline and the breaker word) sit alone in a
//! 128-byte aligned block ([`PickWords`]), apart from the counters every attempt writes, so the
//! attempts of one worker do not keep invalidating the cache line the picks of all the others
//! read. The counters and the failure ring share the rest of the struct (the ring is written only
//! on failures).

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::word::{deadline, Word, NEVER};
use crate::config::BreakerConfig;

/// Circuit breaker states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows.
    Closed = 0,
    /// No traffic until the open deadline.
    Open = 1,
    /// One probe is in flight; its outcome (and no other) closes or reopens the breaker.
    HalfOpen = 2,
}

impl BreakerState {
    /// Lower-case name for JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// The breaker epoch an attempt started in ([`BackendState::ticket`]). Its outcome counts only
/// if the breaker has not changed state since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u32);

/// Most failures a breaker window can track (the ring below); larger `failures` are clamped.
const RING: usize = 64;

/// How long a half-open probe may stay out before it is presumed abandoned (its request was
/// cancelled and will never report) and the next pick may send a new probe. Longer than any
/// attempt with the default timeouts; should an attempt outlive it, the newer probe decides and
/// the older one's outcome is ignored like any stale outcome.
pub const PROBE_LEASE_MS: u64 = 10 * 60 * 1000;

/// The words every pick reads, on their own 128 bytes (two 64-byte lines: adjacent-line
/// prefetchers fetch pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
struct PickWords {
    /// Bench deadline (0 = never benched), full u64 range.
    benched_until: AtomicU64,
    /// State, epoch and deadline of the breaker, packed (see `word.rs`).
    breaker: AtomicU64,
}

/// Shared state of one backend. Times are milliseconds on the caller's monotonic clock.
#[derive(Debug)]
pub struct BackendState {
    pick: PickWords,
    /// Requests sent to this backend now.
    pub in_flight: AtomicI64,
    /// Requests sent (attempts).
    pub requests: AtomicU64,
    /// Attempts that failed (retryable status, connect error, timeout).
    pub failures: AtomicU64,
    /// Breaker transitions to closed, open and half-open (indexed by [`BreakerState`]).
    pub transitions: [AtomicU64; 3],
    /// Failures of the breaker's sliding window: (time + 1, epoch) packed like the breaker word;
    /// 0 is empty. Only entries of the current epoch count.
    ring: [AtomicU64; RING],
    ring_head: AtomicU32,
}

impl Default for BackendState {
    fn default() -> Self {
        BackendState {
            pick: PickWords::default(),
            in_flight: AtomicI64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            transitions: std::array::from_fn(|_| AtomicU64::new(0)),
            ring: std::array::from_fn(|_| AtomicU64::new(0)),
            ring_head: AtomicU32::new(0),
        }
    }
}

/// What an attempt's outcome did to the breaker (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed (also: the outcome was stale and ignored).
    Same,
    /// The breaker opened.
    Opened,
    /// The breaker closed after a good probe.
    Closed,
}

/// A duration in milliseconds as u64, saturating.
fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl BackendState {
    fn word(&self) -> Word {
        Word::unpack(self.pick.breaker.load(Relaxed))
    }

    /// Current breaker state.
    pub fn breaker(&self) -> BreakerState {
        self.word().state
    }

    /// The ticket of an attempt starting now: take it right after the pick, before sending, and
    /// hand it to [`record`](Self::record).
    pub fn ticket(&self) -> Ticket {
        Ticket(self.word().epoch)
    }

    /// Bench deadline (0 when never benched).
    pub fn benched_until(&self) -> u64 {
        self.pick.benched_until.load(Relaxed)
    }

    /// Deadline of an open breaker (0 when it is not open).
    pub fn open_until(&self) -> u64 {
        let w = self.word();
        if w.state == BreakerState::Open {
            w.deadline
        } else {
            0
        }
    }

    /// When this backend can take traffic again: `now` or later.
    pub fn available_at(&self, now: u64) -> u64 {
        let mut t = self.benched_until().max(now);
        let w = self.word();
        match w.state {
            BreakerState::Open => t = t.max(w.deadline),
            // A probe is out and its answer decides soon: "shortly".
            BreakerState::HalfOpen => t = t.max(now.saturating_add(1)),
            BreakerState::Closed => {}
        }
        t
    }

    /// Can it be picked at `now` (not benched; breaker closed, or due for a probe)?
    pub fn available(&self, now: u64) -> bool {
        let w = self.word();
        self.benched_until() <= now
            && match w.state {
                BreakerState::Closed => true,
                // Open: its period ran out. Half-open: the probe's lease ran out.
                BreakerState::Open | BreakerState::HalfOpen => w.due(now),
            }
    }

    /// Claim the right to send a request. For a breaker due for its probe exactly one caller
    /// wins the switch to half-open (a new epoch) and sends the probe; the others must pick again.
    pub fn try_acquire(&self, now: u64) -> bool {
        if self.benched_until() > now {
            return false;
        }
        let w = self.word();
        match w.state {
            BreakerState::Closed => true,
            BreakerState::Open | BreakerState::HalfOpen => {
                w.due(now)
                    && self.transition(w, BreakerState::HalfOpen, deadline(now, PROBE_LEASE_MS))
            }
        }
    }

    /// The attempt that took `ticket` ended without an outcome (cancelled: its client hung up).
    /// If it was the half-open probe, its lease is released so the next pick sends a new probe
    /// at once, instead of the backend waiting out [`PROBE_LEASE_MS`].
    pub fn abandon(&self, ticket: Ticket, now: u64) {
        let w = self.word();
        if w.epoch == ticket.0 && w.state == BreakerState::HalfOpen {
            self.transition(w, BreakerState::HalfOpen, now);
        }
    }

    /// Keep it out of every pick until `now + ms` (never shortens an existing bench).
    pub fn bench(&self, now: u64, ms: u64) {
        self.pick
            .benched_until
            .fetch_max(now.saturating_add(ms), Relaxed);
    }

    /// Record the outcome of the attempt that took `ticket`. `failed` is whether the breaker's
    /// status list (or a connect/timeout error) counts it; `retry_after_ms` is the upstream's
    /// hint, already capped. An outcome whose ticket is older than the breaker's last transition
    /// is ignored: only attempts that started in the current state decide.
    pub fn record(
        &self,
        cfg: Option<&BreakerConfig>,
        ticket: Ticket,
        now: u64,
        failed: bool,
        retry_after_ms: Option<u64>,
    ) -> Verdict {
        let w = self.word();
        if w.epoch != ticket.0 {
            return Verdict::Same;
        }
        let Some(cfg) = cfg else {
            // No breaker (any more: a reload may remove it while it is open). An open state left
            // behind still turns half-open when due; its probe must close it, whatever the
            // outcome, or the backend would never be picked again.
            if w.state == BreakerState::HalfOpen && self.transition(w, BreakerState::Closed, 0) {
                return Verdict::Closed;
            }
            return Verdict::Same;
        };
        let open_until = || {
            let open_for = match retry_after_ms {
                Some(hint) if cfg.honor_retry_after => hint,
                _ => ms(cfg.open_for),
            };
            deadline(now, open_for)
        };
        match (w.state, failed) {
            (BreakerState::HalfOpen, false) => {
                if self.transition(w, BreakerState::Closed, 0) {
                    return Verdict::Closed;
                }
            }
            (BreakerState::HalfOpen, true) => {
                if self.transition(w, BreakerState::Open, open_until()) {
                    return Verdict::Opened;
                }
            }
            (BreakerState::Closed, true) => {
                if self.window_full(cfg, w, now)
                    && self.transition(w, BreakerState::Open, open_until())
                {
                    return Verdict::Opened;
                }
            }
            // Open: only an attempt that took its ticket after the breaker opened (between its
            // pick and its ticket) gets here; it decides nothing. Closed and good: nothing to do.
            (BreakerState::Open, _) | (BreakerState::Closed, false) => {}
        }
        Verdict::Same
    }

    /// Add a failure of epoch `w.epoch` at `now` to the ring; are the last `failures` failures
    /// of this epoch all within the window?
    fn window_full(&self, cfg: &BreakerConfig, w: Word, now: u64) -> bool {
        let n = (cfg.failures as usize).clamp(1, RING);
        let i = self.ring_head.fetch_add(1, Relaxed) as usize % n;
        let stamp = |t: u64| Word {
            state: BreakerState::Closed,
            epoch: w.epoch,
            deadline: t,
        };
        // The ring's clock saturates one below the word's range (times past it all look
        // simultaneous, which errs towards opening); + 1 keeps 0 as "empty".
        let t = now.min(NEVER - 1);
        self.ring[i].store(stamp(t + 1).pack(), Relaxed);
        let window = ms(cfg.window);
        self.ring[..n].iter().all(|slot| {
            let e = Word::unpack(slot.load(Relaxed));
            e.epoch == w.epoch && e.deadline != 0 && t.saturating_sub(e.deadline - 1) <= window
        })
    }

    /// Move from exactly `from` to `to` (next epoch); false when another caller changed the
    /// word first.
    fn transition(&self, from: Word, to: BreakerState, deadline: u64) -> bool {
        let ok = self
            .pick
            .breaker
            .compare_exchange(
                from.pack(),
                from.next(to, deadline).pack(),
                Relaxed,
                Relaxed,
            )
            .is_ok();
        if ok {
            self.transitions[to as usize].fetch_add(1, Relaxed);
        }
        ok
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
