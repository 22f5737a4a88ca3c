//! When a backend's host name is resolved again, and what a resolution does to the addresses
//! connects use. Sans-IO: the resolver thread drives it with the system resolver, tests with a
//! fake one.

use std::fmt::Display;
use std::net::SocketAddr;

/// When one backend's host name is next due for resolving (ms on the caller's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsSchedule {
    next_at: u64,
}

impl DnsSchedule {
    /// A name resolved at `now` (e.g. when the config was loaded): due again `ttl_ms` later.
    pub fn resolved_at(now: u64, ttl_ms: u64) -> Self {
        DnsSchedule {
            next_at: now.saturating_add(ttl_ms),
        }
    }

    /// When it is due.
    pub fn next_at(&self) -> u64 {
        self.next_at
    }
}

/// What one [`resolve_step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Not due yet; nothing was resolved.
    NotDue,
    /// Resolved to the addresses in use (in any order).
    Unchanged,
    /// Resolved to other addresses: connects use these from now on.
    Changed(Vec<SocketAddr>),
    /// The resolution failed or gave no address: the last good addresses stay in use.
    Failed(String),
}

/// At `now`, if `sched` is due: resolve, and compare with `current` (the addresses in use).
/// Whatever the outcome the name is due again `ttl_ms` later, so a failing resolver is asked
/// once per TTL, not in a loop.
pub fn resolve_step<E: Display>(
    sched: &mut DnsSchedule,
    current: &[SocketAddr],
    now: u64,
    ttl_ms: u64,
    resolve: impl FnOnce() -> Result<Vec<SocketAddr>, E>,
) -> Refresh {
    if now < sched.next_at {
        return Refresh::NotDue;
    }
    *sched = DnsSchedule::resolved_at(now, ttl_ms);
    let mut got = match resolve() {
        Ok(got) => got,
        Err(e) => return Refresh::Failed(e.to_string()),
    };
    // Keep the resolver's order (it may prefer some addresses) but drop repeats.
    let mut seen = Vec::with_capacity(got.len());
    got.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
    if got.is_empty() {
        return Refresh::Failed("resolved to no address".into());
    }
    let (mut a, mut b) = (got.clone(), current.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    b.dedup();
    if a == b {
        Refresh::Unchanged
    } else {
        Refresh::Changed(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn not_due_before_the_ttl_and_resolves_when_it_elapsed() {
        let current = [addr("10.0.0.1:443")];
        let mut sched = DnsSchedule::resolved_at(1000, 30_000);
        let mut calls = 0;
        let step = |sched: &mut DnsSchedule, now, calls: &mut u32| {
            resolve_step(sched, &current, now, 30_000, || {
                *calls += 1;
                Ok::<_, String>(vec![addr("10.0.0.2:443")])
            })
        };
        assert_eq!(step(&mut sched, 30_999, &mut calls), Refresh::NotDue);
        assert_eq!(calls, 0, "not resolved before the TTL");
        assert_eq!(
            step(&mut sched, 31_000, &mut calls),
            Refresh::Changed(vec![addr("10.0.0.2:443")])
        );
        assert_eq!(calls, 1);
        assert_eq!(sched.next_at(), 61_000);
        assert_eq!(step(&mut sched, 60_999, &mut calls), Refresh::NotDue);
    }

    #[test]
    fn failure_keeps_the_last_good_addresses_and_waits_a_ttl() {
        let current = [addr("10.0.0.1:443")];
        let mut sched = DnsSchedule::resolved_at(0, 1000);
        let r = resolve_step(&mut sched, &current, 1000, 1000, || {
            Err::<Vec<SocketAddr>, _>("no such host")
        });
        assert_eq!(r, Refresh::Failed("no such host".into()));
        assert_eq!(sched.next_at(), 2000, "not retried in a loop");
        let r = resolve_step(&mut sched, &current, 2000, 1000, || {
            Ok::<_, String>(Vec::new())
        });
        assert!(
            matches!(r, Refresh::Failed(_)),
            "an empty answer is no answer"
        );
    }

    #[test]
    fn same_set_in_another_order_is_unchanged_and_repeats_are_dropped() {
        let current = [addr("10.0.0.1:443"), addr("10.0.0.2:443")];
        let mut sched = DnsSchedule::resolved_at(0, 10);
        let r = resolve_step(&mut sched, &current, 10, 10, || {
            Ok::<_, String>(vec![
                addr("10.0.0.2:443"),
                addr("10.0.0.1:443"),
                addr("10.0.0.2:443"),
            ])
        });
        assert_eq!(r, Refresh::Unchanged);
        let r = resolve_step(&mut sched, &current, 20, 10, || {
            Ok::<_, String>(vec![addr("10.0.0.3:443"), addr("10.0.0.3:443")])
        });
        assert_eq!(r, Refresh::Changed(vec![addr("10.0.0.3:443")]));
    }

    #[test]
    fn clock_near_its_end_does_not_wrap() {
        let mut sched = DnsSchedule::resolved_at(u64::MAX - 5, 30_000);
        assert_eq!(sched.next_at(), u64::MAX);
        let r = resolve_step(&mut sched, &[], u64::MAX, 30_000, || {
            Ok::<_, String>(vec![addr("10.0.0.1:1")])
        });
        assert_eq!(r, Refresh::Changed(vec![addr("10.0.0.1:1")]));
    }
}
