//! Request-head decoding: httparse over the connection buffer, then freeze and slice.

use bytes::{Bytes, BytesMut};

use super::{
    framing_from_headers, keep_alive, slice_headers, BodyFraming, DecodeError, Headers, Offsets,
};

/// Limits applied while decoding a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Largest head in bytes (request line plus headers); beyond it the answer is 431.
    pub max_head_bytes: usize,
    /// Most headers; beyond it the answer is 431.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

/// A decoded request head; every field is a slice of one frozen buffer.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method token, e.g. `POST`.
    pub method: Bytes,
    /// The request target as sent, including the query string.
    pub target: Bytes,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// All headers in order.
    pub headers: Headers,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The first header with this name, if any.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        super::find_header(&self.headers, name)
    }

    /// The path without the query string, as UTF-8 (httparse only admits visible ASCII here).
    pub fn path(&self) -> &str {
        let t = std::str::from_utf8(&self.target).unwrap_or("");
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query string without the `?`, or "".
    pub fn query(&self) -> &str {
        let t = std::str::from_utf8(&self.target).unwrap_or("");
        t.split_once('?').map_or("", |(_, q)| q)
    }

    /// Is the method exactly `m`?
    pub fn is_method(&self, m: &str) -> bool {
        self.method == m.as_bytes()
    }
}

/// Decode one request head from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. On success the head's bytes are split off `buf`
/// (what follows, the body or a pipelined request, stays in `buf`).
///
/// # Errors
/// Malformed heads, oversized heads, too many headers and ambiguous framing (the request
/// smuggling shapes: CL with TE, conflicting CLs, a TE other than chunked).
pub fn decode_request_head(
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, DecodeError> {
    // Stack space for the common case; a larger limit falls back to the heap.
    let mut stack = [httparse::EMPTY_HEADER; 100];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= stack.len() {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap
    };
    let mut req = httparse::Request::new(slots);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(DecodeError::TooManyHeaders(limits.max_headers))
        }
        Err(e) => return Err(e.into()),
    };
    let head_len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            // Checked only while incomplete: a complete head that fits is never refused for
            // what follows it (body bytes or pipelined requests) in the same read.
            if buf.len() > limits.max_head_bytes {
                return Err(DecodeError::HeadTooLarge(limits.max_head_bytes));
            }
            return Ok(None);
        }
    };
    if head_len > limits.max_head_bytes {
        return Err(DecodeError::HeadTooLarge(limits.max_head_bytes));
    }
    let version_minor = req.version.unwrap_or(1);
    let base: &[u8] = buf;
    let start = base.as_ptr() as usize;
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let m_off = (method.as_ptr() as usize - start, method.len());
    let t_off = (target.as_ptr() as usize - start, target.len());
    let offs = Offsets::record(base, req.headers);

    let frozen = buf.split_to(head_len).freeze();
    let headers = slice_headers(&frozen, &offs);
    let framing = framing_from_headers(&headers, true)?;
    let keep_alive = keep_alive(&headers, version_minor);
    let expect_continue = version_minor == 1
        && super::find_header(&headers, "expect")
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    Ok(Some(RequestHead {
        method: frozen.slice(m_off.0..m_off.0 + m_off.1),
        target: frozen.slice(t_off.0..t_off.0 + t_off.1),
        version_minor,
        headers,
        framing,
        keep_alive,
        expect_continue,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(input: &[u8]) -> Vec<Result<Option<RequestHead>, DecodeError>> {
        // Feed the input in two parts at every boundary: the answer must not depend on the split.
        (0..=input.len())
            .map(|cut| {
                let mut buf = BytesMut::from(&input[..cut]);
                let first = decode_request_head(&mut buf, &HeadLimits::default());
                match first {
                    Ok(None) => {
                        buf.extend_from_slice(&input[cut..]);
                        decode_request_head(&mut buf, &HeadLimits::default())
                    }
                    other => other,
                }
            })
            .collect()
    }

    #[test]
    fn decodes_at_every_split() {
        let req =
            b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        for r in decode_split(req) {
            let h = r.unwrap().unwrap();
            assert_eq!(&h.method[..], b"POST");
            assert_eq!(h.path(), "/v1/chat/completions");
            assert_eq!(h.query(), "x=1");
            assert_eq!(h.framing, BodyFraming::Length(5));
            assert!(h.keep_alive);
            assert_eq!(&h.header("host").unwrap()[..], b"a");
        }
    }

    #[test]
    fn leaves_body_and_pipelined_bytes_in_buffer() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"[..]);
        let h = decode_request_head(&mut buf, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.path(), "/");
        assert_eq!(&buf[..], b"GET /b HTTP/1.1\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Empty);
    }

    fn err(input: &[u8]) -> DecodeError {
        let mut buf = BytesMut::from(input);
        decode_request_head(&mut buf, &HeadLimits::default()).unwrap_err()
    }

    #[test]
    fn refuses_smuggling_shapes() {
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
                .status(),
            400
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").status(),
            400
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n").status(),
            400
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").status(),
            400
        );
        // obs-fold: a header line starting with whitespace.
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n").status(),
            400
        );
        assert_eq!(err(b"GARBAGE\r\n\r\n").status(), 400);
    }

    #[test]
    fn same_content_length_twice_is_fine() {
        let mut buf = BytesMut::from(
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n"[..],
        );
        let h = decode_request_head(&mut buf, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, BodyFraming::Length(3));
    }

    #[test]
    fn limits_give_431() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 70 * 1024));
        assert_eq!(err(&big), DecodeError::HeadTooLarge(64 * 1024));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(err(&many).status(), 431);
    }

    #[test]
    fn connection_and_expect() {
        let mut buf = BytesMut::from(
            &b"POST / HTTP/1.1\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"[..],
        );
        let h = decode_request_head(&mut buf, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert!(h.expect_continue);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.0\r\n\r\n"[..]);
        assert!(
            !decode_request_head(&mut buf, &HeadLimits::default())
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }
}
