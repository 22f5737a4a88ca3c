//! Tests of the mock's compressing mode: negotiation, forcing, and what goes on the wire.

use std::io::{Read, Write};

use bytes::Bytes;

use super::*;
use crate::config::MockOptions;
use crate::mock::{handle, MockRequest, MockShared};

fn h(name: &'static str, value: &'static str) -> Header {
    Header {
        name: Bytes::from_static(name.as_bytes()),
        value: Bytes::from_static(value.as_bytes()),
    }
}

fn accept(v: &'static str) -> Option<MockCoding> {
    negotiate(&[h("Accept-Encoding", v)])
}

#[test]
fn accept_encoding_is_negotiated_like_a_server() {
    // The OpenAI Python SDK's default.
    assert_eq!(accept("gzip, deflate"), Some(MockCoding::Gzip));
    assert_eq!(accept("deflate"), Some(MockCoding::Deflate));
    assert_eq!(accept("br;q=1.0, gzip;q=0.5"), Some(MockCoding::Br));
    assert_eq!(accept("zstd, gzip;q=0.9"), Some(MockCoding::Zstd));
    assert_eq!(accept("gzip, br, zstd"), Some(MockCoding::Gzip)); // a tie goes to gzip
    assert_eq!(accept("*"), Some(MockCoding::Gzip));
    assert_eq!(accept("*;q=0, zstd"), Some(MockCoding::Zstd));
    assert_eq!(accept("br;q=0, *;q=0.1"), Some(MockCoding::Gzip));
    assert_eq!(accept("identity"), None);
    assert_eq!(accept("gzip;q=0"), None);
    assert_eq!(accept("gzip;q=2"), None); // out of range: not acceptable
    assert_eq!(accept("gzip;q=x, compress"), None);
    assert_eq!(accept(""), None);
    assert_eq!(negotiate(&[]), None);
    let two = [h("accept-encoding", "identity"), h("Accept-Encoding", "br")];
    assert_eq!(negotiate(&two), Some(MockCoding::Br));
}

#[test]
fn the_force_header_wins_over_the_config() {
    let force = |v: &'static str, c: MockCompress| plan(c, &[h("X-Mock-Force-Encoding", v)]);
    let gzip_ok = [h("accept-encoding", "gzip")];
    assert_eq!(plan(MockCompress::Off, &gzip_ok), Plan::Plain);
    assert_eq!(
        plan(MockCompress::Honour, &gzip_ok),
        Plan::Encode(MockCoding::Gzip)
    );
    assert_eq!(plan(MockCompress::Honour, &[]), Plan::Plain);
    let br = MockCompress::Force(MockCoding::Br);
    assert_eq!(
        plan(br, &[h("accept-encoding", "identity")]),
        Plan::Encode(MockCoding::Br)
    );
    assert_eq!(
        force("gzip", MockCompress::Off),
        Plan::Encode(MockCoding::Gzip)
    );
    assert_eq!(
        force(" ZSTD ", MockCompress::Off),
        Plan::Encode(MockCoding::Zstd)
    );
    assert_eq!(force("identity", br), Plan::Plain);
    assert_eq!(force("corrupt", MockCompress::Off), Plan::Corrupt);
    assert_eq!(
        force("Compress", MockCompress::Off),
        Plan::Label("compress".into())
    );
    // Not a token (it would be echoed into a header): ignored, the config decides.
    assert_eq!(force("a b", MockCompress::Off), Plan::Plain);
    assert_eq!(force("x\u{7f}", br), Plan::Encode(MockCoding::Br));
    let long = "x".repeat(33).leak();
    assert_eq!(force(long, MockCompress::Off), Plan::Plain);
}

fn decode(coding: &str, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?,
        "deflate" => flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out)?,
        "br" => brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out)?,
        "zstd" => zstd::stream::read::Decoder::new(bytes)?.read_to_end(&mut out)?,
        other => panic!("no decoder for {other}"),
    };
    Ok(out)
}

fn answer(opts: &MockOptions, headers: &[Header], body: &str) -> MockReply {
    let req = MockRequest {
        method: b"POST",
        path: "/v1/chat/completions",
        query: "",
        headers,
        body: body.as_bytes(),
    };
    handle(opts, &MockShared::new("r"), &req, 0.5)
}

fn header_of<'r>(reply: &'r MockReply, name: &str) -> Option<&'r str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#;
const STREAM: &str = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello world"}]}"#;

#[test]
fn json_and_streams_are_compressed_and_decode_to_the_plain_answer() {
    let plain_opts = MockOptions::default();
    let honour = MockOptions {
        compress: MockCompress::Honour,
        ..MockOptions::default()
    };
    for (accepts, token) in [
        ("gzip, deflate", "gzip"),
        ("deflate", "deflate"),
        ("br", "br"),
        ("zstd", "zstd"),
    ] {
        let ae = [h("accept-encoding", accepts)];
        // JSON: one compressed body.
        let plain = answer(&plain_opts, &ae, CHAT);
        let packed = answer(&honour, &ae, CHAT);
        assert_eq!(header_of(&plain, "content-encoding"), None);
        assert_eq!(header_of(&packed, "content-encoding"), Some(token));
        assert_eq!(header_of(&packed, "vary"), Some("accept-encoding"));
        let (MockBody::Full(p), MockBody::Full(c)) = (&plain.body, &packed.body) else {
            panic!("expected JSON bodies")
        };
        assert_ne!(p, c);
        assert_eq!(&decode(token, c).unwrap(), p, "{token}");
        // SSE: one compressed stream, a piece per event, each decodable on arrival.
        let plain = answer(&plain_opts, &ae, STREAM);
        let packed = answer(&honour, &ae, STREAM);
        let (MockBody::Sse { events: p, .. }, MockBody::Sse { events: c, .. }) =
            (&plain.body, &packed.body)
        else {
            panic!("expected streams")
        };
        assert_eq!(p.len(), c.len());
        let all: Vec<u8> = c.iter().flat_map(|b| b.to_vec()).collect();
        let want: Vec<u8> = p.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(decode(token, &all).unwrap(), want, "{token}");
        if token == "gzip" {
            let mut d = flate2::write::GzDecoder::new(Vec::new());
            d.write_all(&c.iter().next().unwrap()).unwrap();
            d.flush().unwrap();
            assert_eq!(
                d.get_ref(),
                &p.iter().next().unwrap().to_vec(),
                "the first chunk decodes on arrival"
            );
        }
    }
    // Honouring, but nothing acceptable: plain.
    let r = answer(&honour, &[h("accept-encoding", "identity")], CHAT);
    assert_eq!(header_of(&r, "content-encoding"), None);
}

#[test]
fn forced_corrupt_and_unknown_encodings() {
    let opts = MockOptions::default();
    let plain = answer(&opts, &[], CHAT);
    let MockBody::Full(p) = &plain.body else {
        panic!()
    };
    // Forced gzip even though the request asked for identity.
    let forced = [h("accept-encoding", "identity"), h(FORCE_HEADER, "gzip")];
    let r = answer(&opts, &forced, CHAT);
    let MockBody::Full(c) = &r.body else { panic!() };
    assert_eq!(header_of(&r, "content-encoding"), Some("gzip"));
    assert_eq!(&decode("gzip", c).unwrap(), p);
    // Corrupt: labelled gzip, the header intact, the rest unreadable (also as a stream).
    for body in [CHAT, STREAM] {
        let r = answer(&opts, &[h(FORCE_HEADER, "corrupt")], body);
        assert_eq!(header_of(&r, "content-encoding"), Some("gzip"));
        let bytes: Vec<u8> = match &r.body {
            MockBody::Full(b) => b.to_vec(),
            MockBody::Sse { events, .. } => events.iter().flat_map(|b| b.to_vec()).collect(),
        };
        assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
        assert!(decode("gzip", &bytes).is_err());
    }
    // Unknown: the body as it was, under a label no one decodes.
    let r = answer(&opts, &[h(FORCE_HEADER, "x-squeeze")], CHAT);
    assert_eq!(header_of(&r, "content-encoding"), Some("x-squeeze"));
    assert_eq!(r.body, plain.body);
}

#[test]
fn config_values() {
    assert_eq!(MockCompress::parse("off"), Ok(MockCompress::Off));
    assert_eq!(MockCompress::parse("Honour"), Ok(MockCompress::Honour));
    assert_eq!(MockCompress::parse("honor"), Ok(MockCompress::Honour));
    assert_eq!(
        MockCompress::parse("br"),
        Ok(MockCompress::Force(MockCoding::Br))
    );
    let e = MockCompress::parse("lzma").unwrap_err();
    assert!(e.contains("lzma") && e.contains("honour"), "{e}");
}

#[test]
fn config_key_is_validated_with_its_place() {
    let toml = |v: &str| {
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\n\n[mocks.m]\nlisten = \"127.0.0.1:0\"\ncompress = \"{v}\"\n\n[backends.b]\nurl = \"http://127.0.0.1:1\"\n\n[pools.p]\nmembers = [{{ backend = \"b\" }}]\n\n[models]\n\"*\" = \"p\"\n")
    };
    let c = crate::config::parse_str(&toml("honour"), None).unwrap();
    assert_eq!(c.mocks[0].options.compress, MockCompress::Honour);
    let e = crate::config::parse_str(&toml("lzma"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":6:") && e.contains("compress") && e.contains("lzma"),
        "{e}"
    );
}
