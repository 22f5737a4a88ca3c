//! Tests of reading through `Content-Encoding`: every coding at every split, unknown, corrupt and
//! truncated bodies, the decoded-bytes cap, and what each outcome is charged.

use std::io::Write;

use bytes::Bytes;

use super::*;
use crate::config::MockCoding;
use crate::mock::encode;
use crate::openai::Usage;

const CHAT: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;

/// A chat stream: content events, a usage event, `[DONE]`; one `Bytes` per event.
fn stream_events() -> Vec<Bytes> {
    let mut ev: Vec<String> = ["Hi", " there", "."]
        .iter()
        .map(|w| {
            format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}}}}]}}\n\n")
        })
        .collect();
    ev.push("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n".into());
    ev.push("data: [DONE]\n\n".into());
    ev.into_iter().map(Bytes::from).collect()
}

const CODINGS: [(MockCoding, Coding); 4] = [
    (MockCoding::Gzip, Coding::Gzip),
    (MockCoding::Deflate, Coding::Deflate),
    (MockCoding::Br, Coding::Brotli),
    (MockCoding::Zstd, Coding::Zstd),
];

fn squeeze(c: MockCoding, pieces: &[Bytes]) -> Vec<Bytes> {
    encode(c, pieces).unwrap()
}

fn concat(pieces: &[Bytes]) -> Vec<u8> {
    pieces.iter().flat_map(|p| p.to_vec()).collect()
}

fn tap(coding: Coding, sse: bool, pieces: &[&[u8]], cap: u64) -> Tapped {
    let mut t = UsageTap::new(sse, 1 << 20, 1 << 16).decoding_capped(coding, cap);
    pieces.iter().for_each(|p| t.feed(p));
    t.finish()
}

fn whole(coding: Coding, sse: bool, body: &[u8]) -> Tapped {
    tap(coding, sse, &[body], MAX_DECODED_BYTES)
}

fn header(name: &'static str, value: &'static str) -> Header {
    Header {
        name: Bytes::from_static(name.as_bytes()),
        value: Bytes::from_static(value.as_bytes()),
    }
}

const TWELVE: Option<Usage> = Some(Usage {
    prompt_tokens: 9,
    completion_tokens: 3,
    total_tokens: 12,
});

#[test]
fn every_coding_reads_like_plain_at_every_split() {
    let json = CHAT.as_bytes();
    let events = stream_events();
    let sse = concat(&events);
    let plain_json = whole(Coding::Identity, false, json);
    let plain_sse = whole(Coding::Identity, true, &sse);
    assert_eq!(plain_json.usage, TWELVE);
    assert_eq!(
        (plain_sse.usage, plain_sse.text.as_str()),
        (TWELVE, "Hi there.")
    );
    for (mc, c) in CODINGS {
        for (sse_mode, body, pieces, plain) in [
            (false, json, vec![Bytes::copy_from_slice(json)], &plain_json),
            (true, &sse[..], events.clone(), &plain_sse),
        ] {
            let wire = squeeze(mc, &pieces);
            let bytes = concat(&wire);
            assert_ne!(bytes, body, "{mc:?} did not compress");
            // As the pieces came (each flushed event decodes on arrival), then every two-piece cut.
            let as_sent: Vec<&[u8]> = wire.iter().map(|b| &b[..]).collect();
            let got = tap(c, sse_mode, &as_sent, MAX_DECODED_BYTES);
            assert_eq!(&got, plain, "{mc:?} sse={sse_mode}");
            for cut in 0..=bytes.len() {
                let (a, b) = bytes.split_at(cut);
                let got = tap(c, sse_mode, &[a, b], MAX_DECODED_BYTES);
                assert_eq!(&got, plain, "{mc:?} sse={sse_mode} cut at {cut}");
            }
            let ones: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(
                &tap(c, sse_mode, &ones, MAX_DECODED_BYTES),
                plain,
                "{mc:?} bytewise"
            );
        }
    }
}

#[test]
fn raw_deflate_and_concatenated_gzip_members_are_read() {
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    raw.write_all(CHAT.as_bytes()).unwrap();
    let raw = raw.finish().unwrap();
    let t = whole(Coding::Deflate, false, &raw);
    assert_eq!((t.usage, t.undecoded), (TWELVE, None));
    // A stream sent as two gzip members (some servers restart the compressor per flush).
    let events = stream_events();
    let (first, rest) = events.split_at(2);
    let mut members = concat(&squeeze(MockCoding::Gzip, first));
    members.extend(concat(&squeeze(MockCoding::Gzip, rest)));
    let t = whole(Coding::Gzip, true, &members);
    assert_eq!(
        (t.usage, t.text.as_str(), t.undecoded),
        (TWELVE, "Hi there.", None)
    );
}

#[test]
fn content_encoding_headers_are_read_strictly() {
    let of = |hs: &[Header]| coding_of(hs);
    assert_eq!(of(&[]), Coding::Identity);
    assert_eq!(
        of(&[header("Content-Encoding", "identity")]),
        Coding::Identity
    );
    assert_eq!(of(&[header("content-encoding", " GZIP ")]), Coding::Gzip);
    assert_eq!(of(&[header("content-encoding", "x-gzip")]), Coding::Gzip);
    assert_eq!(
        of(&[header("content-encoding", "deflate")]),
        Coding::Deflate
    );
    assert_eq!(of(&[header("content-encoding", "br")]), Coding::Brotli);
    assert_eq!(of(&[header("content-encoding", "zstd")]), Coding::Zstd);
    assert_eq!(
        of(&[header("content-encoding", "identity, br")]),
        Coding::Brotli
    );
    // Unknown, layered (in one header or two): not decoded.
    assert_eq!(
        of(&[header("content-encoding", "compress")]),
        Coding::Unknown
    );
    assert_eq!(
        of(&[header("content-encoding", "gzip, br")]),
        Coding::Unknown
    );
    let two = [
        header("content-encoding", "gzip"),
        header("Content-Encoding", "gzip"),
    ];
    assert_eq!(of(&two), Coding::Unknown);
    assert_eq!(of(&[header("content-type", "gzip")]), Coding::Identity);
    // The builder reads the headers.
    let gz = concat(&squeeze(
        MockCoding::Gzip,
        &[Bytes::from_static(CHAT.as_bytes())],
    ));
    let mut t =
        UsageTap::new(false, 1 << 20, 1 << 10).decoding(&[header("content-encoding", "gzip")]);
    t.feed(&gz);
    assert_eq!(t.finish().usage, TWELVE);
}

#[test]
fn an_unknown_coding_is_reported_and_not_read() {
    // Even a body that happens to be plain JSON is not trusted under an unknown label.
    let t = whole(Coding::Unknown, false, CHAT.as_bytes());
    assert_eq!((t.usage, t.undecoded), (None, Some(Undecoded::Unknown)));
    assert_eq!(t.text, "");
}

#[test]
fn corrupt_and_truncated_bodies_are_reported() {
    let gz = concat(&squeeze(
        MockCoding::Gzip,
        &[Bytes::from_static(CHAT.as_bytes())],
    ));
    // Scrambled after the header: nothing readable.
    let mut bad = gz.clone();
    bad.iter_mut().skip(10).for_each(|b| *b ^= 0x55);
    let t = whole(Coding::Gzip, false, &bad);
    assert_eq!((t.usage, t.undecoded), (None, Some(Undecoded::Corrupt)));
    // Cut in the middle of the data: no usage, corrupt.
    let t = whole(Coding::Gzip, false, &gz[..gz.len() / 2]);
    assert_eq!((t.usage, t.undecoded), (None, Some(Undecoded::Corrupt)));
    // Only the trailer missing: the usage was read, and the body is still reported.
    let t = whole(Coding::Gzip, false, &gz[..gz.len() - 4]);
    assert_eq!((t.usage, t.undecoded), (TWELVE, Some(Undecoded::Corrupt)));
    // Bytes after the end of a brotli or zstd stream, or of the last gzip member.
    for (mc, c) in [
        (MockCoding::Br, Coding::Brotli),
        (MockCoding::Zstd, Coding::Zstd),
    ] {
        let mut tail = concat(&squeeze(mc, &[Bytes::from_static(CHAT.as_bytes())]));
        tail.extend_from_slice(b"trailing junk");
        let t = whole(c, false, &tail);
        assert_eq!(t.undecoded, Some(Undecoded::Corrupt), "{mc:?}");
    }
    let mut tail = gz.clone();
    tail.extend_from_slice(b"trailing junk");
    assert_eq!(
        whole(Coding::Gzip, false, &tail).undecoded,
        Some(Undecoded::Corrupt)
    );
    // Not compressed at all, yet labelled.
    for (_, c) in CODINGS {
        let t = whole(c, false, CHAT.as_bytes());
        assert_eq!(
            (t.usage, t.undecoded),
            (None, Some(Undecoded::Corrupt)),
            "{c:?}"
        );
    }
    // A one-byte deflate body; an empty body has nothing to decode.
    assert_eq!(
        whole(Coding::Deflate, false, b"x").undecoded,
        Some(Undecoded::Corrupt)
    );
    for (_, c) in CODINGS {
        assert_eq!(
            whole(c, false, b""),
            whole(Coding::Identity, false, b""),
            "{c:?}"
        );
    }
}

#[test]
fn a_decompression_bomb_stops_at_the_cap() {
    // 4 MiB of newlines in a few KiB: an SSE reader would read all of it.
    let bomb = vec![b'\n'; 4 << 20];
    for (mc, c) in CODINGS {
        let wire = concat(&squeeze(mc, &[Bytes::from(bomb.clone())]));
        assert!(wire.len() < 64 << 10, "{mc:?}: {} bytes", wire.len());
        let t = tap(c, true, &[&wire], 1 << 20);
        assert_eq!(
            (t.usage, t.undecoded),
            (None, Some(Undecoded::TooLarge)),
            "{mc:?}"
        );
        // Under the default cap it is read through (4 MiB < 64 MiB) and found empty.
        let t = tap(c, true, &[&wire], MAX_DECODED_BYTES);
        assert_eq!(t.undecoded, None, "{mc:?}");
    }
    // A JSON body stops quietly at its own limit, as an uncompressed one would.
    let mut big = b"{\"pad\":\"".to_vec();
    big.resize(4 << 20, b' ');
    big.extend_from_slice(b"\",\"usage\":{\"total_tokens\":5}}");
    let wire = concat(&squeeze(MockCoding::Gzip, &[Bytes::from(big.clone())]));
    let mut t =
        UsageTap::new(false, 64 << 10, 1 << 10).decoding_capped(Coding::Gzip, MAX_DECODED_BYTES);
    t.feed(&wire);
    let t = t.finish();
    let mut plain = UsageTap::new(false, 64 << 10, 1 << 10);
    plain.feed(&big);
    assert_eq!(t, plain.finish());
    assert_eq!((t.usage, t.text_truncated, t.undecoded), (None, true, None));
}

#[test]
fn a_zstd_window_over_8_mib_is_refused() {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    e.window_log(24).unwrap();
    e.write_all(CHAT.as_bytes()).unwrap();
    let wire = e.finish().unwrap();
    let t = whole(Coding::Zstd, false, &wire);
    assert_eq!((t.usage, t.undecoded), (None, Some(Undecoded::Corrupt)));
    // The same body with the default window is read.
    let ok = concat(&squeeze(
        MockCoding::Zstd,
        &[Bytes::from_static(CHAT.as_bytes())],
    ));
    assert_eq!(whole(Coding::Zstd, false, &ok).usage, TWELVE);
}

#[test]
fn charges_fail_closed_when_the_body_was_unreadable() {
    let reported = whole(Coding::Identity, false, CHAT.as_bytes());
    let never = || -> u64 { panic!("the estimate is not needed when usage was reported") };
    assert_eq!(Some(reported.charge("gpt-4o", never, 500)), TWELVE);
    // Read fine but without usage: the prompt estimate plus the counted text.
    let counted = whole(
        Coding::Identity,
        false,
        br#"{"choices":[{"message":{"content":"hello world"}}]}"#,
    );
    let u = counted.charge("gpt-4o", || 7, 500);
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (7, 2, 9)
    );
    // Unreadable: at least the reservation, split as estimate + the rest.
    let unknown = whole(Coding::Unknown, false, CHAT.as_bytes());
    let u = unknown.charge("gpt-4o", || 7, 500);
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (7, 493, 500)
    );
    // ...and never less than what was counted (no reservation without limits).
    let u = unknown.charge("gpt-4o", || 7, 0);
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (7, 0, 7)
    );
    // A usage read before the body broke is the backend's own count: it stands.
    let gz = concat(&squeeze(
        MockCoding::Gzip,
        &[Bytes::from_static(CHAT.as_bytes())],
    ));
    let cut = whole(Coding::Gzip, false, &gz[..gz.len() - 4]);
    assert_eq!(Some(cut.charge("gpt-4o", never, 500)), TWELVE);
}

#[test]
fn accounted_operations() {
    for op in ["chat/completions", "completions", "embeddings", "responses"] {
        assert!(is_accounted(op), "{op}");
    }
    for op in ["models", "audio/speech", "files", "responses/resp_1"] {
        assert!(!is_accounted(op), "{op}");
    }
}
