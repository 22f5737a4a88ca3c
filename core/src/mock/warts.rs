//! Warts of real upstreams the mock plays on request, so the gateway's handling of them can be
//! seen: an interim `1xx` answer before the final one (`x-mock-interim: 103`, as CDNs and some
//! servers send Early Hints), and odd but valid chunked framing (`x-mock-framing: odd`: chunk
//! extensions, a last chunk with an extension, and a trailer section).

use bytes::{BufMut, BytesMut};

use crate::http1::{encode_chunk_header, find_header, put_header, Header};

/// The warts asked for by one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Warts {
    /// Send an interim answer with this status (any 1xx but 101) before the final answer.
    pub interim: Option<u16>,
    /// Send a JSON answer chunked with extensions and trailers instead of with `Content-Length`.
    pub odd_framing: bool,
}

impl Warts {
    /// Read `x-mock-interim` and `x-mock-framing`; unusable values are ignored.
    pub fn parse(headers: &[Header]) -> Self {
        let interim = find_header(headers, "x-mock-interim")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.trim().parse::<u16>().ok())
            .filter(|s| (100..200).contains(s) && *s != 101);
        let odd_framing = find_header(headers, "x-mock-framing")
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"odd"));
        Warts {
            interim,
            odd_framing,
        }
    }

    /// The interim head to send first, if asked for.
    pub fn interim_head(&self) -> Option<BytesMut> {
        let status = self.interim?;
        let mut out = BytesMut::with_capacity(96);
        let mut n = itoa::Buffer::new();
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(n.format(status).as_bytes());
        out.put_slice(if status == 103 {
            &b" Early Hints\r\n"[..]
        } else {
            &b" Interim\r\n"[..]
        });
        if status == 103 {
            put_header(&mut out, b"link", b"</mock.css>; rel=preload; as=style");
        }
        out.put_slice(b"\r\n");
        Some(out)
    }
}

/// Finish a head (status line and headers already in `out`) and write `body` chunked the odd way:
/// two chunks with extensions, a last chunk with an extension, and a trailer.
pub fn encode_odd_chunked(out: &mut BytesMut, body: &[u8]) {
    put_header(out, b"transfer-encoding", b"chunked");
    put_header(out, b"trailer", b"x-mock-trailer");
    out.put_slice(b"\r\n");
    let (a, b) = body.split_at(body.len() / 2);
    for part in [a, b] {
        if part.is_empty() {
            continue; // a zero-size chunk would end the body
        }
        let mut line = BytesMut::new();
        encode_chunk_header(&mut line, part.len());
        // `{len:x}\r\n` becomes `{len:x};mock-ext="odd"\r\n`.
        out.put_slice(&line[..line.len() - 2]);
        out.put_slice(b";mock-ext=\"odd\"\r\n");
        out.put_slice(part);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"0;mock-last\r\nx-mock-trailer: 1\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::ChunkedDecoder;
    use bytes::Bytes;

    fn h(n: &'static str, v: &'static str) -> Header {
        Header {
            name: Bytes::from_static(n.as_bytes()),
            value: Bytes::from_static(v.as_bytes()),
        }
    }

    #[test]
    fn parses_warts() {
        let w = Warts::parse(&[h("x-mock-interim", "103"), h("x-mock-framing", "odd")]);
        assert_eq!(w.interim, Some(103));
        assert!(w.odd_framing);
        let head = w.interim_head().unwrap();
        assert!(head.starts_with(b"HTTP/1.1 103 Early Hints\r\nlink: "));
        assert!(head.ends_with(b"\r\n\r\n"));
        for bad in ["101", "200", "99", "x"] {
            assert_eq!(Warts::parse(&[h("x-mock-interim", bad)]).interim, None);
        }
        assert_eq!(Warts::parse(&[]), Warts::default());
    }

    #[test]
    fn odd_chunked_body_decodes_to_the_body() {
        for body in [&b"{\"a\":1}"[..], b"x", b""] {
            let mut out = BytesMut::new();
            encode_odd_chunked(&mut out, body);
            let s = &out[..];
            let start = s.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let mut d = ChunkedDecoder::new();
            let mut got = Vec::new();
            let p = d.feed(&s[start..], |x| got.extend_from_slice(x)).unwrap();
            assert!(p.done);
            assert_eq!(p.consumed, s.len() - start);
            assert_eq!(got, body);
        }
    }
}
