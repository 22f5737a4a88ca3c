//! Response-head decoding for what upstreams send back.

use bytes::{Bytes, BytesMut};

use super::{
    framing_from_headers, keep_alive, slice_headers, BodyFraming, DecodeError, Header, Headers,
    Offsets,
};

/// Most headers accepted from an upstream.
const MAX_RESPONSE_HEADERS: usize = 128;

/// A decoded response head; fields are slices of one frozen buffer.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase as sent.
    pub reason: Bytes,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// All headers in order.
    pub headers: Headers,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the upstream connection can be reused after the body.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// The first header with this name, if any.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        super::find_header(&self.headers, name)
    }
}

/// Decode one response head from the front of `buf`; `Ok(None)` means "read more".
///
/// `head_request` says the request was `HEAD`, which makes the body empty whatever the headers say.
///
/// # Errors
/// Malformed or oversized heads and ambiguous framing.
pub fn decode_response_head(
    buf: &mut BytesMut,
    head_request: bool,
    max_head_bytes: usize,
) -> Result<Option<ResponseHead>, DecodeError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_head_bytes {
                return Err(DecodeError::HeadTooLarge(max_head_bytes));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(DecodeError::TooManyHeaders(MAX_RESPONSE_HEADERS))
        }
        Err(e) => return Err(e.into()),
    };
    // As for requests: a complete head over the limit is refused too, so the answer does not
    // depend on how the bytes were split across reads (found by the `response_head` fuzz target).
    if head_len > max_head_bytes {
        return Err(DecodeError::HeadTooLarge(max_head_bytes));
    }
    let status = res.code.unwrap_or(0);
    // httparse takes any three digits; 1xx to 5xx are the only classes with known meaning.
    if !(100..=599).contains(&status) {
        return Err(DecodeError::Parse(httparse::Error::Status));
    }
    let version_minor = res.version.unwrap_or(1);
    let base: &[u8] = buf;
    let reason = res.reason.unwrap_or("");
    let r_off = (reason.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
    let r_len = reason.len();
    let offs = Offsets::record(base, res.headers);
    let frozen = buf.split_to(head_len).freeze();
    let headers = slice_headers(&frozen, &offs);
    let reason = if r_len == 0 {
        Bytes::new()
    } else {
        frozen.slice(r_off..r_off + r_len)
    };

    let mut framing = framing_from_headers(&headers, false)?;
    check_transfer_coding(&headers)?;
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        framing = BodyFraming::Empty;
    }
    let mut keep_alive = keep_alive(&headers, version_minor);
    if framing == BodyFraming::UntilClose {
        keep_alive = false;
    }
    Ok(Some(ResponseHead {
        status,
        reason,
        version_minor,
        headers,
        framing,
        keep_alive,
    }))
}

/// A response's transfer codings must be exactly `chunked`: the gateway decodes that framing and
/// re-frames the body itself, and cannot undo any other coding (`gzip, chunked` would reach the
/// client still gzip-coded but unlabelled; `gzip` alone is not even delimited).
fn check_transfer_coding(headers: &[Header]) -> Result<(), DecodeError> {
    let mut codings = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"transfer-encoding"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(DecodeError::Framing(
            "a response transfer coding other than chunked",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_at_every_split() {
        let input =
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 2\r\n\r\n{}";
        for cut in 0..=input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            let mut r = decode_response_head(&mut buf, false, 65536).unwrap();
            if r.is_none() {
                buf.extend_from_slice(&input[cut..]);
                r = decode_response_head(&mut buf, false, 65536).unwrap();
            } else {
                buf.extend_from_slice(&input[cut..]);
            }
            let h = r.unwrap();
            assert_eq!(h.status, 429);
            assert_eq!(&h.reason[..], b"Too Many Requests");
            assert_eq!(h.framing, BodyFraming::Length(2));
            assert_eq!(&h.header("retry-after").unwrap()[..], b"2");
            assert_eq!(&buf[..], b"{}");
        }
    }

    #[test]
    fn head_over_limit_is_refused_whole_or_split() {
        // Fuzz regression (fuzz/corpus/response_head/seed-regress-head-over-limit): a complete head
        // larger than the limit was accepted in one read but refused when split across two.
        let input =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8q\x89_123\r\n\r\n\
                      1a\r\ndata: {\"choices\":[]}\n\n\r\n";
        let mut whole = BytesMut::from(&input[..]);
        assert_eq!(
            decode_response_head(&mut whole, false, 39).unwrap_err(),
            DecodeError::HeadTooLarge(39)
        );
        let mut part = BytesMut::from(&input[..66]);
        assert_eq!(
            decode_response_head(&mut part, false, 39).unwrap_err(),
            DecodeError::HeadTooLarge(39)
        );
        // Exactly at the limit is still fine.
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        assert!(decode_response_head(&mut b, false, 19).unwrap().is_some());
    }

    #[test]
    fn framing_rules() {
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..]);
        assert_eq!(
            decode_response_head(&mut b, false, 65536)
                .unwrap()
                .unwrap()
                .framing,
            BodyFraming::Chunked
        );
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        let h = decode_response_head(&mut b, false, 65536).unwrap().unwrap();
        assert_eq!(h.framing, BodyFraming::UntilClose);
        assert!(!h.keep_alive);
        let mut b = BytesMut::from(&b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..]);
        assert_eq!(
            decode_response_head(&mut b, false, 65536)
                .unwrap()
                .unwrap()
                .framing,
            BodyFraming::Empty
        );
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..]);
        assert_eq!(
            decode_response_head(&mut b, true, 65536)
                .unwrap()
                .unwrap()
                .framing,
            BodyFraming::Empty
        );
        let mut b = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        );
        assert!(decode_response_head(&mut b, false, 65536).is_err());
    }

    /// Decode `input` whole and split at every byte; both must agree.
    fn decode_split(input: &[u8]) -> Result<ResponseHead, DecodeError> {
        let mut whole = BytesMut::from(input);
        let first = decode_response_head(&mut whole, false, 65536).map(|r| r.map(|h| h.status));
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            let r = match decode_response_head(&mut buf, false, 65536) {
                Ok(None) => {
                    buf.extend_from_slice(&input[cut..]);
                    decode_response_head(&mut buf, false, 65536)
                }
                other => other,
            };
            assert_eq!(r.map(|r| r.map(|h| h.status)), first, "split at {cut}");
        }
        let mut whole = BytesMut::from(input);
        decode_response_head(&mut whole, false, 65536).map(|r| r.expect("complete head"))
    }

    #[test]
    fn hostile_upstream_heads_are_refused_at_every_split() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
            b"HTTP/1.1 999 Nine\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
        ] {
            assert!(
                decode_split(bad).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn interim_heads_decode_without_a_body() {
        let h =
            decode_split(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n").unwrap();
        assert_eq!(h.status, 103);
        assert_eq!(h.framing, BodyFraming::Empty);
        let h = decode_split(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked \r\n\r\n").unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
    }
}
