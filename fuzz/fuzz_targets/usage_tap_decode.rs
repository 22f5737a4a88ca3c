//! `UsageTap` behind a `Content-Encoding`: never panics on hostile compressed bytes, and reads a
//! valid compressed body exactly as the uncompressed one.
//!
//! The coding (gzip, deflate, br, zstd), the SSE flag, the limits and the split points come from
//! the input's hash. Two checks per input:
//! - the input itself, taken as compressed bytes under that coding (nearly always corrupt): fed
//!   whole and in pieces, decoding fails or succeeds alike, and when it succeeds the `Tapped` does
//!   not depend on the splits (checked with the large JSON limit); the decoded-bytes cap is small,
//!   so bombs hit it;
//! - the input compressed by the mock's encoder, one flushed piece per input piece: fed as the
//!   compressed pieces came, it reads the same as the plain input (no failure reported).
#![no_main]

use aigw_core::config::MockCoding;
use aigw_core::mock::encode;
use aigw_core::openai::{Coding, Tapped, UsageTap, MAX_DECODED_BYTES};
use aigw_fuzz::{mix, pieces, split_points};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const CODINGS: [(Coding, MockCoding); 4] = [
    (Coding::Gzip, MockCoding::Gzip),
    (Coding::Deflate, MockCoding::Deflate),
    (Coding::Brotli, MockCoding::Br),
    (Coding::Zstd, MockCoding::Zstd),
];

fn run(coding: Coding, cap: u64, sse: bool, parts: &[&[u8]], max_json: usize) -> Tapped {
    let mut tap = UsageTap::new(sse, max_json, 4096).decoding_capped(coding, cap);
    for part in parts {
        tap.feed(part);
    }
    tap.finish()
}

fuzz_target!(|input: &[u8]| {
    let seed = mix(input);
    let (coding, mock) = CODINGS[(seed % 4) as usize];
    let sse = seed & 8 != 0;
    let max_json = if seed & 16 == 0 {
        1 << 20
    } else {
        16 + ((seed >> 8) % 512) as usize
    };
    let cap = 1 + (seed >> 20) % (256 << 10);
    let cuts = split_points(seed >> 4, input.len(), 4);
    let many = pieces(input, &cuts);

    // Hostile bytes under the coding. With a small JSON limit, where decoding stops quietly (the
    // JSON limit) or with a failure can depend on how much output was flushed before corrupt
    // bytes, so the differential runs only with the large limit (the cap, below it, stops first).
    let whole = run(coding, cap, sse, &[input], max_json);
    let split = run(coding, cap, sse, &many, max_json);
    if max_json == 1 << 20 {
        assert_eq!(
            whole.undecoded.is_some(),
            split.undecoded.is_some(),
            "failure depends on splits"
        );
        if whole.undecoded.is_none() {
            assert_eq!(whole, split, "a decodable body read differently in pieces");
        }
    }

    // A valid stream of the input.
    let plain = run(Coding::Identity, MAX_DECODED_BYTES, sse, &[input], max_json);
    let chunks: Vec<Bytes> = many.iter().map(|p| Bytes::copy_from_slice(p)).collect();
    let Ok(wire) = encode(mock, &chunks) else {
        return;
    };
    let sent: Vec<&[u8]> = wire.iter().map(|b| &b[..]).collect();
    let decoded = run(coding, MAX_DECODED_BYTES, sse, &sent, max_json);
    assert_eq!(decoded, plain, "a valid {coding:?} body read differently from the plain one");
});
