//! `ChunkedDecoder::feed` over arbitrary bytes, fed whole and in 2–3 data-derived pieces.
//!
//! The decoded data, `done`, the number of bytes consumed and the error (if any) must not depend on
//! how the input was split; `consumed` never exceeds the input, and nothing panics.
#![no_main]

use aigw_core::http1::{ChunkError, ChunkedDecoder};
use aigw_fuzz::{mix, pieces, split_points};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    data: Vec<u8>,
    /// Total bytes of the input that belong to the body, or the error.
    result: Result<(usize, bool), ChunkError>,
}

fn run(parts: &[&[u8]]) -> Outcome {
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut offset = 0;
    for part in parts {
        match d.feed(part, |s| data.extend_from_slice(s)) {
            Ok(p) => {
                assert!(p.consumed <= part.len(), "consumed more than was fed");
                assert_eq!(p.done, d.is_done());
                if !p.done {
                    assert_eq!(p.consumed, part.len(), "stopped early without being done");
                }
                offset += p.consumed;
                if p.done {
                    return Outcome {
                        data,
                        result: Ok((offset, true)),
                    };
                }
            }
            Err(e) => {
                return Outcome {
                    data,
                    result: Err(e),
                }
            }
        }
    }
    Outcome {
        data,
        result: Ok((offset, false)),
    }
}

fuzz_target!(|input: &[u8]| {
    let seed = mix(input);
    let single = run(&[input]);
    if let Ok((consumed, _)) = single.result {
        assert!(consumed <= input.len());
        assert!(single.data.len() <= consumed, "more data than framed bytes");
    }

    let n_parts = 2 + (seed & 1) as usize;
    let cuts = split_points(seed, input.len(), n_parts);
    let split = run(&pieces(input, &cuts));
    assert_eq!(single, split, "splitting at {cuts:?} changed the outcome");

    // Once done, further input is never consumed.
    let mut d = ChunkedDecoder::new();
    if let Ok(p) = d.feed(input, |_| {}) {
        if p.done {
            let again = d.feed(input, |_| panic!("data after the end of the body"));
            assert_eq!(
                again,
                Ok(aigw_core::http1::Progress {
                    consumed: 0,
                    done: true
                })
            );
        }
    }
});
