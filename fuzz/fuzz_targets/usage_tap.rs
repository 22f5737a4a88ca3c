//! `UsageTap` over arbitrary bytes in both modes: never panics, and the `Tapped` does not depend on splits.
//!
//! Each input is fed whole, in two pieces at a data-derived cut and in up to four pieces; all three
//! must agree. The limits are data-derived too (tight ones exercise the over-limit paths). A body not
//! announced as SSE but sniffed as SSE must read exactly like the announced stream without its
//! leading whitespace, and the text never exceeds its cap.
#![no_main]

use aigw_core::openai::{Tapped, UsageTap};
use aigw_fuzz::{mix, pieces, split_point, split_points};
use libfuzzer_sys::fuzz_target;

fn run(sse: bool, parts: &[&[u8]], max_json: usize, max_text: usize) -> Tapped {
    let mut tap = UsageTap::new(sse, max_json, max_text);
    for part in parts {
        tap.feed(part);
    }
    tap.finish()
}

fuzz_target!(|input: &[u8]| {
    let seed = mix(input);
    let max_json = if seed & 2 == 0 {
        1 << 20
    } else {
        16 + ((seed >> 8) % 512) as usize
    };
    let max_text = if seed & 4 == 0 {
        4096
    } else {
        ((seed >> 24) % 48) as usize
    };
    let cut = split_point(seed >> 32, input.len());
    let (a, b) = input.split_at(cut);
    let cuts = split_points(seed, input.len(), 4);
    let many = pieces(input, &cuts);
    for sse in [false, true] {
        let whole = run(sse, &[input], max_json, max_text);
        assert_eq!(
            run(sse, &[a, b], max_json, max_text),
            whole,
            "two pieces differ"
        );
        assert_eq!(
            run(sse, &many, max_json, max_text),
            whole,
            "several pieces differ"
        );
        assert!(whole.text.len() <= max_text, "text over its cap");
        let trimmed = input.trim_ascii_start();
        if sse {
            assert!(whole.stream);
        } else if trimmed.first() == Some(&b'{') {
            assert!(!whole.stream, "a JSON object was sniffed as SSE");
        } else if whole.stream {
            assert_eq!(
                run(true, &[trimmed], max_json, max_text),
                whole,
                "sniffed SSE differs"
            );
        }
        let counted = whole.usage_or_count("gpt-4o", 1);
        if let Some(u) = whole.usage {
            assert_eq!(counted, u);
        } else {
            assert_eq!(counted.total_tokens, 1 + counted.completion_tokens);
        }
    }
});
