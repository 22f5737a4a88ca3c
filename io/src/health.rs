//! Where every worker finds the one shared [`BackendState`] and the live addresses of a
//! backend, and the clocks that state is kept in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aigw_core::balance::BackendState;
use aigw_core::config::{Backend, Config};
use arc_swap::ArcSwap;

/// The addresses a backend's connects use now: replaced whole by the resolver thread, read
/// lock-free by the workers.
pub type LiveAddrs = Arc<ArcSwap<Vec<SocketAddr>>>;

/// Milliseconds on a process-wide monotonic clock (the unit of all health deadlines), from 1.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let ms = START.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX).saturating_add(1)
}

/// Seconds since the Unix epoch (for HTTP-date `Retry-After`).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (stamps of cached answers: `age`, expiry).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Backend states by name and URL, so a reload keeps the state of unchanged backends.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    // Taken only when a worker rebuilds its snapshot after a reload or by the admin thread,
    // never per request: requests hold the `Arc`s the snapshot resolved.
    map: Mutex<HashMap<String, Arc<BackendState>>>,
    /// Live addresses by the same key, created from the load-time resolution.
    addrs: Mutex<HashMap<String, LiveAddrs>>,
}

/// The registry key of a backend: a reload keeps the state of the same name and URL.
fn key(b: &Backend) -> String {
    format!("{}|{}", b.name, b.url)
}

impl HealthRegistry {
    /// The states of `cfg`'s backends, by backend id.
    pub fn resolve(&self, cfg: &Config) -> Vec<Arc<BackendState>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        cfg.backends
            .iter()
            .map(|b| map.entry(key(b)).or_default().clone())
            .collect()
    }

    /// The live addresses of `cfg`'s backends, by backend id. A backend seen for the first time
    /// starts with the addresses its config resolved at load; the resolver thread keeps them
    /// fresh from then on (see `resolver.rs`).
    pub fn addrs(&self, cfg: &Config) -> Vec<LiveAddrs> {
        let mut map = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
        cfg.backends
            .iter()
            .map(|b| {
                map.entry(key(b))
                    .or_insert_with(|| Arc::new(ArcSwap::from_pointee(b.addrs.clone())))
                    .clone()
            })
            .collect()
    }

    /// JSON for `GET /backends` and the per-backend metrics.
    pub fn report(&self, cfg: &Config) -> (serde_json::Value, String) {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let states = self.resolve(cfg);
        let now = now_ms();
        let mut list = Vec::new();
        let mut text = String::new();
        let _ = writeln!(text, "# HELP aigw_backend_up 1 when the backend can be picked now.\n# TYPE aigw_backend_up gauge");
        for (b, s) in cfg.backends.iter().zip(&states) {
            let _ = writeln!(
                text,
                "aigw_backend_up{{backend=\"{}\"}} {}",
                b.name,
                u8::from(s.available(now))
            );
        }
        let _ = writeln!(
            text,
            "# HELP aigw_breaker_transitions_total Circuit breaker transitions.\n# TYPE aigw_breaker_transitions_total counter"
        );
        for (b, s) in cfg.backends.iter().zip(&states) {
            for (i, to) in ["closed", "open", "half_open"].iter().enumerate() {
                let _ = writeln!(
                    text,
                    "aigw_breaker_transitions_total{{backend=\"{}\",to=\"{to}\"}} {}",
                    b.name,
                    s.transitions[i].load(Relaxed)
                );
            }
        }
        let _ = writeln!(
            text,
            "# HELP aigw_backend_attempts_total Attempts sent to each backend, retries included.\n# TYPE aigw_backend_attempts_total counter"
        );
        for (b, s) in cfg.backends.iter().zip(&states) {
            let _ = writeln!(
                text,
                "aigw_backend_attempts_total{{backend=\"{}\"}} {}",
                b.name,
                s.requests.load(Relaxed)
            );
        }
        for (b, s) in cfg.backends.iter().zip(&states) {
            let benched_ms = s.benched_until().saturating_sub(now);
            let open_ms = s.open_until().saturating_sub(now);
            list.push(serde_json::json!({
                "name": b.name,
                "url": b.url,
                "available": s.available(now),
                // An open breaker whose period ran out lets the next pick through as its probe:
                // it is half-open in all but name, and shown so.
                "breaker": match s.breaker() {
                    aigw_core::balance::BreakerState::Open if s.open_until() <= now => "half_open",
                    st => st.name(),
                },
                "breaker_open_for_ms": open_ms,
                "benched_for_ms": benched_ms,
                "in_flight": s.in_flight.load(Relaxed),
                "requests": s.requests.load(Relaxed),
                "failures": s.failures.load(Relaxed),
            }));
        }
        (serde_json::json!({ "backends": list }), text)
    }
}
