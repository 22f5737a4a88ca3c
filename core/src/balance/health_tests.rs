//! Breaker and bench tests: the cycle, stale outcomes (tickets), every interleaving of a few
//! attempts, deadlines near the end of the clock, and the cache layout.

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

fn one_failure_opens(open_for: Duration) -> BreakerConfig {
    BreakerConfig {
        failures: 1,
        open_for,
        ..cfg()
    }
}

/// Pick (acquire) and take a ticket, as the failover loop does.
fn start(s: &BackendState, now: u64) -> Option<Ticket> {
    s.try_acquire(now).then(|| s.ticket())
}

#[test]
fn opens_after_failures_within_window_then_half_open_then_closes() {
    let s = BackendState::default();
    let c = cfg();
    let t = s.ticket();
    assert_eq!(s.record(Some(&c), t, 1000, true, None), Verdict::Same);
    assert_eq!(s.record(Some(&c), t, 2000, true, None), Verdict::Same);
    assert_eq!(s.record(Some(&c), t, 3000, true, None), Verdict::Opened);
    assert!(!s.available(3000));
    assert!(!s.try_acquire(62_999));
    assert!(s.available(63_000));
    assert!(s.try_acquire(63_000), "first caller gets the probe");
    let probe = s.ticket();
    assert!(!s.try_acquire(63_000), "exactly one probe");
    assert_eq!(s.breaker(), BreakerState::HalfOpen);
    assert_eq!(
        s.record(Some(&c), probe, 63_100, false, None),
        Verdict::Closed
    );
    assert!(s.available(63_100));
}

#[test]
fn failures_outside_window_do_not_trip_and_probe_failure_reopens() {
    let s = BackendState::default();
    let c = cfg();
    let t = s.ticket();
    s.record(Some(&c), t, 0, true, None);
    s.record(Some(&c), t, 5_000, true, None);
    assert_eq!(
        s.record(Some(&c), t, 20_000, true, None),
        Verdict::Same,
        "first failure aged out"
    );
    assert_eq!(
        s.record(Some(&c), t, 21_000, true, None),
        Verdict::Same,
        "5 s one is 16 s old now"
    );
    assert_eq!(
        s.record(Some(&c), t, 22_000, true, Some(2_000)),
        Verdict::Opened
    );
    assert_eq!(s.open_until(), 24_000, "Retry-After honoured");
    let probe = start(&s, 24_000).unwrap();
    assert_eq!(
        s.record(Some(&c), probe, 24_500, true, None),
        Verdict::Opened
    );
    assert_eq!(s.open_until(), 84_500);
}

#[test]
fn breaker_removed_while_open_releases_the_backend_after_its_probe() {
    let s = BackendState::default();
    let c = cfg();
    let t = s.ticket();
    for now in [1000, 2000, 3000] {
        s.record(Some(&c), t, now, true, None);
    }
    assert_eq!(s.breaker(), BreakerState::Open);
    // A reload drops the breaker: the old open period still runs out, then one probe...
    assert!(!s.try_acquire(62_999));
    let probe = start(&s, 63_000).unwrap();
    // ...a stale outcome still decides nothing...
    assert_eq!(s.record(None, t, 63_050, true, None), Verdict::Same);
    // ...and the probe's, recorded without a breaker, closes it even when it failed.
    assert_eq!(s.record(None, probe, 63_100, true, None), Verdict::Closed);
    assert_eq!(s.breaker(), BreakerState::Closed);
    let t = start(&s, 63_100).unwrap();
    assert_eq!(s.record(None, t, 63_200, true, None), Verdict::Same);
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

/// The finding: a slow request sent while closed fails while the probe is out. It must not
/// reopen the breaker, and the probe's success must close it.
#[test]
fn slow_request_from_before_the_opening_cannot_decide_the_probe() {
    let s = BackendState::default();
    let c = one_failure_opens(Duration::from_secs(1));
    let slow = start(&s, 0).unwrap();
    let fast = start(&s, 10).unwrap();
    assert_eq!(s.record(Some(&c), fast, 20, true, None), Verdict::Opened);
    let probe = start(&s, 1020).unwrap();
    assert_eq!(s.record(Some(&c), slow, 3000, true, None), Verdict::Same);
    assert_eq!(s.breaker(), BreakerState::HalfOpen);
    assert_eq!(
        s.record(Some(&c), probe, 4000, false, None),
        Verdict::Closed
    );

    // And the other way round: a stale success does not close while the probe is out.
    let slow = start(&s, 5000).unwrap();
    let fast = start(&s, 5001).unwrap();
    assert_eq!(s.record(Some(&c), fast, 5002, true, None), Verdict::Opened);
    let probe = start(&s, 6002).unwrap();
    assert_eq!(s.record(Some(&c), slow, 6500, false, None), Verdict::Same);
    assert_eq!(s.breaker(), BreakerState::HalfOpen);
    assert_eq!(s.record(Some(&c), probe, 7000, true, None), Verdict::Opened);
}

/// Failures counted in an earlier closed period never help open the breaker in a later one.
#[test]
fn stale_failures_do_not_fill_the_window() {
    let s = BackendState::default();
    let c = BreakerConfig {
        failures: 2,
        ..cfg()
    };
    let old = start(&s, 0).unwrap();
    let t = start(&s, 1).unwrap();
    assert_eq!(s.record(Some(&c), t, 2, true, None), Verdict::Same);
    assert_eq!(s.record(Some(&c), t, 3, true, None), Verdict::Opened);
    let probe = start(&s, 60_003).unwrap();
    assert_eq!(
        s.record(Some(&c), probe, 60_004, false, None),
        Verdict::Closed
    );
    // The ring still holds the two failures of the first period (within the window by time).
    let fresh = start(&s, 60_005).unwrap();
    assert_eq!(s.record(Some(&c), old, 60_006, true, None), Verdict::Same);
    assert_eq!(s.record(Some(&c), fresh, 60_007, true, None), Verdict::Same);
    assert_eq!(s.breaker(), BreakerState::Closed);
    assert_eq!(
        s.record(Some(&c), fresh, 60_008, true, None),
        Verdict::Opened
    );
}

/// A probe that never reports (its request was abandoned) does not hold the backend forever:
/// after the lease a new probe goes out, and the old one's late outcome is ignored.
#[test]
fn abandoned_probe_is_replaced_after_its_lease() {
    let s = BackendState::default();
    let c = one_failure_opens(Duration::from_secs(1));
    let t = start(&s, 0).unwrap();
    s.record(Some(&c), t, 0, true, None);
    let lost = start(&s, 1000).unwrap();
    assert!(!s.available(1000 + PROBE_LEASE_MS - 1));
    assert!(!s.try_acquire(1000 + PROBE_LEASE_MS - 1));
    let probe = start(&s, 1000 + PROBE_LEASE_MS).unwrap();
    assert_ne!(probe, lost);
    assert!(!s.try_acquire(1000 + PROBE_LEASE_MS), "still one probe");
    let now = 1001 + PROBE_LEASE_MS;
    assert_eq!(s.record(Some(&c), lost, now, true, None), Verdict::Same);
    assert_eq!(s.record(Some(&c), probe, now, false, None), Verdict::Closed);
}

/// Every interleaving of four attempts (one trips the breaker at once; open_for 1 ms; the clock
/// ticks 1 ms per step): an outcome changes the breaker only if nothing changed it since its
/// attempt started, and while half-open at most one attempt is admitted.
#[test]
fn every_interleaving_keeps_one_decider() {
    let c = one_failure_opens(Duration::from_millis(1));
    let outcomes = [true, true, false, true]; // failed?
    let n = outcomes.len();
    let mut count = 0;
    // Each attempt is Start then End; enumerate all orders of the 2n events keeping each
    // attempt's Start before its End.
    fn orders(left: &mut Vec<u8>, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if left.iter().all(|&l| l == 0) {
            out.push(cur.clone());
            return;
        }
        for a in 0..left.len() {
            if left[a] > 0 {
                left[a] -= 1;
                cur.push(a);
                orders(left, cur, out);
                cur.pop();
                left[a] += 1;
            }
        }
    }
    let mut all = Vec::new();
    orders(&mut vec![2; n], &mut Vec::new(), &mut all);
    for order in all {
        let s = BackendState::default();
        let mut changes = 0u32; // transitions seen by the model
        let mut started: Vec<Option<(Ticket, u32)>> = vec![None; n];
        let mut begun = vec![false; n];
        let mut admitted_in_half_open = 0;
        for (step, &a) in order.iter().enumerate() {
            let now = step as u64;
            if !begun[a] {
                begun[a] = true;
                let before = s.breaker();
                if s.try_acquire(now) {
                    if before != BreakerState::Closed {
                        changes += 1; // this acquisition switched to half-open
                        admitted_in_half_open = 1;
                    } else {
                        assert_eq!(s.breaker(), BreakerState::Closed);
                    }
                    started[a] = Some((s.ticket(), changes));
                } else if before == BreakerState::HalfOpen {
                    assert_eq!(admitted_in_half_open, 1, "{order:?}");
                }
            } else if let Some((ticket, seen)) = started[a] {
                let v = s.record(Some(&c), ticket, now, outcomes[a], None);
                if v != Verdict::Same {
                    assert_eq!(seen, changes, "a stale outcome decided: {order:?}");
                    changes += 1;
                    admitted_in_half_open = 0;
                }
            }
        }
        let total: u64 = s.transitions.iter().map(|t| t.load(Relaxed)).sum();
        assert_eq!(total, u64::from(changes), "{order:?}");
        count += 1;
    }
    assert_eq!(count, 2520); // 8! / 2^4
}

/// Many threads race for the probe of one due breaker: exactly one wins.
#[test]
fn threads_racing_for_the_probe_get_one() {
    let s = BackendState::default();
    let c = one_failure_opens(Duration::from_secs(1));
    let t = s.ticket();
    s.record(Some(&c), t, 0, true, None);
    let barrier = std::sync::Barrier::new(8);
    let wins: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    barrier.wait();
                    (0..1000).filter(|_| s.try_acquire(1000)).count()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);
}

#[test]
fn deadlines_near_the_end_of_the_clock_never_wrap() {
    let c = one_failure_opens(Duration::from_secs(60));
    for now in [
        u64::MAX,
        u64::MAX - 10,
        u64::MAX / 2,
        crate::balance::word::NEVER - 5,
    ] {
        let s = BackendState::default();
        let t = s.ticket();
        assert_eq!(s.record(Some(&c), t, now, true, None), Verdict::Opened);
        assert!(!s.available(now), "open period skipped at {now}");
        assert!(!s.available(now.saturating_add(5)), "open period skipped");
        assert!(s.available_at(now) >= now);
        // The bench saturates too.
        let s = BackendState::default();
        s.bench(now, 60_000);
        assert!(!s.available(now.saturating_add(59_999).min(u64::MAX - 1)));
        assert_eq!(s.benched_until(), now.saturating_add(60_000));
    }
    // A huge hint (already capped upstream, but not here) cannot wrap either.
    let s = BackendState::default();
    let t = s.ticket();
    assert_eq!(
        s.record(Some(&c), t, 5, true, Some(u64::MAX)),
        Verdict::Opened
    );
    assert!(!s.available(10_000) && !s.available(u64::MAX));
    // A huge window or open_for in the config saturates.
    let c = BreakerConfig {
        failures: 1,
        window: Duration::MAX,
        open_for: Duration::MAX,
        ..cfg()
    };
    let s = BackendState::default();
    let t = s.ticket();
    assert_eq!(s.record(Some(&c), t, 7, true, None), Verdict::Opened);
    assert!(!s.available(u64::MAX - 1));
}

/// The words every pick reads share no 128-byte block with anything an attempt writes.
#[test]
fn pick_words_have_their_own_128_bytes() {
    use std::mem::{align_of, offset_of, size_of};
    assert_eq!(align_of::<PickWords>(), 128);
    assert_eq!(size_of::<PickWords>(), 128);
    let pick = offset_of!(BackendState, pick);
    assert_eq!(pick % 128, 0);
    for other in [
        offset_of!(BackendState, in_flight),
        offset_of!(BackendState, requests),
        offset_of!(BackendState, failures),
        offset_of!(BackendState, transitions),
        offset_of!(BackendState, ring),
        offset_of!(BackendState, ring_head),
    ] {
        assert!(
            !(pick..pick + 128).contains(&other),
            "{other} inside {pick}..+128"
        );
    }
}
