//! `decode_request_head` over arbitrary bytes.
//!
//! 1. Never panics, under the default limits and under small, data-derived limits (including
//!    `max_headers` above the 100 stack slots, which takes the heap path).
//! 2. Differential: decoding the bytes in one piece and in two pieces (split at a data-derived point,
//!    re-decoding after `Ok(None)` as the IO layer does) gives the same head and leaves the same
//!    bytes in the buffer.
#![no_main]

use aigw_core::http1::{decode_request_head, HeadLimits, RequestHead};
use aigw_fuzz::{decode_in_two, mix, split_point};
use libfuzzer_sys::fuzz_target;

fn same_head(a: &RequestHead, b: &RequestHead) -> bool {
    a.method == b.method
        && a.target == b.target
        && a.version_minor == b.version_minor
        && a.headers == b.headers
        && a.framing == b.framing
        && a.keep_alive == b.keep_alive
        && a.expect_continue == b.expect_continue
}

/// Invariants of any successful decode of `data` under `limits`.
fn check_ok(data: &[u8], head: &RequestHead, rest: &[u8], limits: &HeadLimits) {
    assert!(
        data.ends_with(rest),
        "what is left must be the tail of the input"
    );
    let head_len = data.len() - rest.len();
    assert!(
        head_len <= limits.max_head_bytes,
        "accepted a head over max_head_bytes"
    );
    assert!(
        head.headers.len() <= limits.max_headers,
        "accepted more than max_headers"
    );
    assert!(!head.method.is_empty(), "empty method");
    assert!(head.version_minor <= 1, "version other than 1.0/1.1");
    // Each header's name, then its value, appears in the consumed head, in order.
    let consumed = &data[..head_len];
    let mut at = 0;
    for h in &head.headers {
        assert!(!h.name.is_empty(), "empty header name");
        at = find_from(consumed, &h.name, at).expect("header name not in the head") + h.name.len();
        at = find_from(consumed, &h.value, at).expect("header value not in the head")
            + h.value.len();
    }
    // The accessors must not panic, and split the target consistently.
    let (path, query) = (head.path(), head.query());
    if let Ok(t) = std::str::from_utf8(&head.target) {
        if t.contains('?') {
            assert_eq!(t.len(), path.len() + 1 + query.len());
        } else {
            assert_eq!((path, query), (t, ""));
        }
    }
    let _ = head.header("content-length");
    let _ = head.is_method("POST");
}

/// Position of the first `needle` in `hay` at or after `from`.
fn find_from(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from);
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fuzz_target!(|data: &[u8]| {
    let seed = mix(data);

    // Default limits: the whole-vs-split differential.
    let limits = HeadLimits::default();
    let (r1, rest1) = decode_in_two(data, data.len(), |b| decode_request_head(b, &limits));
    let cut = split_point(seed, data.len());
    let (r2, rest2) = decode_in_two(data, cut, |b| decode_request_head(b, &limits));
    match (&r1, &r2) {
        (Ok(Some(a)), Ok(Some(b))) => {
            assert!(
                same_head(a, b),
                "split at {cut} changed the head:\n{a:?}\nvs\n{b:?}"
            );
            assert_eq!(rest1, rest2, "split at {cut} left different bytes");
            check_ok(data, a, &rest1, &limits);
        }
        (Ok(None), Ok(None)) => assert_eq!(rest1, rest2),
        (Err(_), Err(_)) => {}
        _ => panic!("split at {cut} changed the outcome: {r1:?} vs {r2:?}"),
    }
    if let Err(e) = &r1 {
        let s = e.status();
        assert!(s == 400 || s == 431 || s == 505);
    }

    // Small, data-derived limits: only invariants (the outcome legitimately depends on the limits).
    let limits = HeadLimits {
        max_head_bytes: split_point(seed >> 16, data.len() + 64),
        max_headers: ((seed >> 40) % 131) as usize,
    };
    let (r3, rest3) = decode_in_two(data, data.len(), |b| decode_request_head(b, &limits));
    if let Ok(Some(h)) = &r3 {
        check_ok(data, h, &rest3, &limits);
    }
});
