//! `UsageTap::keeping`: the decoded body kept whole for the semantic cache, or not at all.

use bytes::Bytes;

use super::*;
use crate::config::MockCoding;
use crate::mock::encode;

const CHAT: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;
const SSE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\ndata: [DONE]\n\n";

fn keep(coding: Coding, sse: bool, max: usize, pieces: &[&[u8]]) -> Tapped {
    let mut t = UsageTap::new(sse, 1 << 20, 1 << 16)
        .keeping(max)
        .decoding_capped(coding, MAX_DECODED_BYTES);
    pieces.iter().for_each(|p| t.feed(p));
    t.finish()
}

#[test]
fn the_plain_body_is_kept_at_every_split() {
    for (body, sse) in [(CHAT, false), (SSE, true), (SSE, false), (" \n{}", false)] {
        let b = body.as_bytes();
        for cut in 0..=b.len() {
            let (x, y) = b.split_at(cut);
            let t = keep(Coding::Identity, sse, 1 << 20, &[x, y]);
            assert_eq!(t.kept.as_deref(), Some(b), "cut at {cut}");
            assert!(!t.kept_dropped);
        }
        let ones: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(
            keep(Coding::Identity, sse, 1 << 20, &ones).kept.as_deref(),
            Some(b)
        );
    }
    // The usage is read as without keeping.
    let t = keep(Coding::Identity, true, 1 << 20, &[SSE.as_bytes()]);
    assert_eq!(t.usage.map(|u| u.total_tokens), Some(12));
}

#[test]
fn a_compressed_body_is_kept_decoded_at_every_split() {
    for (mc, c) in [
        (MockCoding::Gzip, Coding::Gzip),
        (MockCoding::Deflate, Coding::Deflate),
        (MockCoding::Br, Coding::Brotli),
        (MockCoding::Zstd, Coding::Zstd),
    ] {
        for (body, sse) in [(CHAT, false), (SSE, true)] {
            let wire: Vec<u8> = encode(mc, &[Bytes::from_static(body.as_bytes())])
                .unwrap()
                .iter()
                .flat_map(|b| b.to_vec())
                .collect();
            assert_ne!(wire, body.as_bytes());
            for cut in 0..=wire.len() {
                let (x, y) = wire.split_at(cut);
                let t = keep(c, sse, 1 << 20, &[x, y]);
                assert_eq!(
                    t.kept.as_deref(),
                    Some(body.as_bytes()),
                    "{mc:?} cut at {cut}"
                );
            }
            // Truncated: not kept.
            let t = keep(c, sse, 1 << 20, &[&wire[..wire.len() / 2]]);
            assert_eq!((t.kept, t.kept_dropped), (None, true), "{mc:?} truncated");
        }
    }
}

#[test]
fn over_the_limit_nothing_is_kept() {
    let b = CHAT.as_bytes();
    let t = keep(Coding::Identity, false, b.len(), &[b]);
    assert_eq!(t.kept.as_deref(), Some(b), "exactly at the limit");
    for cut in 0..=b.len() {
        let (x, y) = b.split_at(cut);
        let t = keep(Coding::Identity, false, b.len() - 1, &[x, y]);
        assert_eq!((t.kept.as_deref(), t.kept_dropped), (None, true));
        assert_eq!(
            t.usage.map(|u| u.total_tokens),
            Some(12),
            "usage still read"
        );
    }
    let wire: Vec<u8> = encode(MockCoding::Gzip, &[Bytes::from_static(b)])
        .unwrap()
        .iter()
        .flat_map(|b| b.to_vec())
        .collect();
    let t = keep(Coding::Gzip, false, b.len() - 1, &[&wire]);
    assert_eq!((t.kept, t.kept_dropped), (None, true));
    // Not asked: nothing kept, nothing dropped.
    let mut t = UsageTap::new(false, 1 << 20, 1 << 16);
    t.feed(b);
    let t = t.finish();
    assert_eq!((t.kept, t.kept_dropped), (None, false));
}

#[test]
fn an_unreadable_or_oversized_body_is_not_kept() {
    // An unknown coding: nothing decoded.
    let t = keep(Coding::Unknown, false, 1 << 20, &[CHAT.as_bytes()]);
    assert_eq!((t.kept, t.kept_dropped), (None, true));
    // Corrupt gzip.
    let t = keep(Coding::Gzip, false, 1 << 20, &[b"\x1f\x8b\x08\x00garbage"]);
    assert_eq!((t.kept, t.kept_dropped), (None, true));
    // A JSON body past the tap's own JSON limit: not kept, plain or compressed alike.
    let small_json = |coding: Coding, data: &[u8]| {
        let mut t = UsageTap::new(false, 16, 1 << 10)
            .keeping(1 << 20)
            .decoding_capped(coding, MAX_DECODED_BYTES);
        t.feed(data);
        t.finish()
    };
    let t = small_json(Coding::Identity, CHAT.as_bytes());
    assert_eq!((t.kept, t.kept_dropped), (None, true));
    let wire: Vec<u8> = encode(MockCoding::Gzip, &[Bytes::from_static(CHAT.as_bytes())])
        .unwrap()
        .iter()
        .flat_map(|b| b.to_vec())
        .collect();
    let t = small_json(Coding::Gzip, &wire);
    assert_eq!((t.kept, t.kept_dropped), (None, true));
    // An empty body is kept as empty.
    let t = keep(Coding::Gzip, false, 10, &[]);
    assert_eq!(t.kept.as_deref(), Some(&b""[..]));
}
