//! `decode_response_head` over arbitrary bytes: never panics, and decoding in one piece or in two
//! (split at a data-derived point) gives the same head and leaves the same bytes behind.
#![no_main]

use aigw_core::http1::{decode_response_head, BodyFraming, ResponseHead};
use aigw_fuzz::{decode_in_two, mix, split_point};
use libfuzzer_sys::fuzz_target;

fn same_head(a: &ResponseHead, b: &ResponseHead) -> bool {
    a.status == b.status
        && a.reason == b.reason
        && a.version_minor == b.version_minor
        && a.headers == b.headers
        && a.framing == b.framing
        && a.keep_alive == b.keep_alive
}

fn check_ok(data: &[u8], head: &ResponseHead, rest: &[u8], head_request: bool) {
    assert!(
        data.ends_with(rest),
        "what is left must be the tail of the input"
    );
    assert!(head.version_minor <= 1);
    assert!(head.headers.len() <= 128);
    if head_request || head.status == 204 || head.status == 304 || (100..200).contains(&head.status)
    {
        assert_eq!(head.framing, BodyFraming::Empty);
    }
    if head.framing == BodyFraming::UntilClose {
        assert!(
            !head.keep_alive,
            "a close-delimited body cannot keep the connection"
        );
    }
    let _ = head.header("content-type");
}

fuzz_target!(|data: &[u8]| {
    let seed = mix(data);
    let head_request = seed & 1 == 1;
    let max = if seed & 2 == 0 {
        64 * 1024
    } else {
        split_point(seed >> 24, data.len() + 64)
    };

    let (r1, rest1) = decode_in_two(data, data.len(), |b| {
        decode_response_head(b, head_request, max)
    });
    let cut = split_point(seed >> 8, data.len());
    let (r2, rest2) = decode_in_two(data, cut, |b| decode_response_head(b, head_request, max));
    match (&r1, &r2) {
        (Ok(Some(a)), Ok(Some(b))) => {
            assert!(
                same_head(a, b),
                "split at {cut} changed the head:\n{a:?}\nvs\n{b:?}"
            );
            assert_eq!(rest1, rest2, "split at {cut} left different bytes");
            check_ok(data, a, &rest1, head_request);
        }
        (Ok(None), Ok(None)) => assert_eq!(rest1, rest2),
        (Err(_), Err(_)) => {}
        _ => panic!("split at {cut} changed the outcome: {r1:?} vs {r2:?}"),
    }
});
