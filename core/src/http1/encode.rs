//! Writing heads: the request we send upstream and the response head we relay to the client.

use bytes::{BufMut, BytesMut};

use super::{has_token, BodyFraming, Header, ResponseHead};

/// Headers that describe one hop and never cross the proxy (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Client credentials: the gateway's own keys, never passed to a backend.
const CREDENTIALS: [&str; 3] = ["api-key", "authorization", "ocp-apim-subscription-key"];

/// Is `name` a hop-by-hop header?
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Is `name` listed in any `Connection` header (which makes it hop-by-hop too)?
fn named_by_connection(headers: &[Header], name: &[u8]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case(b"connection")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
    })
}

/// Everything needed to write the request head sent to a backend.
#[derive(Debug)]
pub struct UpstreamHead<'a> {
    /// The method, unchanged.
    pub method: &'a [u8],
    /// Path and query for the backend (already rewritten for its dialect).
    pub target: &'a str,
    /// `Host` value: the backend's authority.
    pub host: &'a str,
    /// The backend credential header, e.g. `("api-key", key)` or `("authorization", "Bearer …")`.
    pub auth: Option<(&'a str, &'a str)>,
    /// The request id, sent as `x-request-id`.
    pub request_id: &'a str,
    /// Body length; bodies are always sent with Content-Length (chunked requests are de-chunked).
    pub content_length: Option<u64>,
    /// The client's headers; hop-by-hop, Host, framing and credentials are dropped from them.
    pub client_headers: &'a [Header],
    /// Ask for `accept-encoding: identity` instead of the client's `Accept-Encoding` (on the
    /// operations whose usage the gateway reads, so it never has to decompress to account).
    pub identity_encoding: bool,
}

/// A head the encoder refuses to write because a value would break HTTP/1.1 framing. Callers
/// validate names and paths at their own boundary first; this is the second depth, so that no
/// caller (today's or a future one) can inject a request line or a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The method is not an RFC 9110 token.
    #[error("the method is not an HTTP token")]
    Method,
    /// The target holds a space, a control character or a non-ASCII byte.
    #[error("the upstream request target holds a space or control character")]
    Target,
    /// A header name is not a token.
    #[error("a header name is not an HTTP token")]
    HeaderName,
    /// A header value holds CR, LF, NUL or another control character.
    #[error("the value of header '{0}' holds a control character")]
    HeaderValue(String),
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty token.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A request target we write: visible ASCII only (no space, no control, no obs-text).
pub fn is_safe_target(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| (0x21..=0x7e).contains(&b))
}

/// A field value we write: no CR, LF, NUL or other control character (HTAB is allowed).
pub fn is_safe_value(s: &[u8]) -> bool {
    // A fold without early exit, so the compiler can check many bytes at a time.
    s.iter()
        .fold(true, |ok, &b| ok & (b == b'\t' || (b >= 0x20 && b != 0x7f)))
}

fn check_header(name: &[u8], value: &[u8]) -> Result<(), EncodeError> {
    if !is_token(name) {
        return Err(EncodeError::HeaderName);
    }
    if !is_safe_value(value) {
        return Err(EncodeError::HeaderValue(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    Ok(())
}

impl UpstreamHead<'_> {
    /// Append the encoded head to `out`; on error nothing usable was written (the caller drops
    /// `out`).
    ///
    /// # Errors
    /// [`EncodeError`] when a method, target, header name or value would break the framing.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        if !is_token(self.method) {
            return Err(EncodeError::Method);
        }
        if !is_safe_target(self.target.as_bytes()) {
            return Err(EncodeError::Target);
        }
        check_header(b"host", self.host.as_bytes())?;
        if let Some((name, value)) = self.auth {
            check_header(name.as_bytes(), value.as_bytes())?;
        }
        check_header(b"x-request-id", self.request_id.as_bytes())?;
        out.reserve(256 + self.client_headers.len() * 32);
        out.put_slice(self.method);
        out.put_u8(b' ');
        out.put_slice(self.target.as_bytes());
        out.put_slice(b" HTTP/1.1\r\nhost: ");
        out.put_slice(self.host.as_bytes());
        out.put_slice(b"\r\n");
        for h in self.client_headers {
            let n = &h.name[..];
            if is_hop_by_hop(n)
                || n.eq_ignore_ascii_case(b"host")
                || n.eq_ignore_ascii_case(b"content-length")
                || n.eq_ignore_ascii_case(b"expect")
                || n.eq_ignore_ascii_case(b"x-request-id")
                || CREDENTIALS
                    .iter()
                    .any(|c| n.eq_ignore_ascii_case(c.as_bytes()))
                || named_by_connection(self.client_headers, n)
                || (self.identity_encoding && n.eq_ignore_ascii_case(b"accept-encoding"))
            {
                continue;
            }
            check_header(n, &h.value)?;
            put_header(out, n, &h.value);
        }
        if self.identity_encoding {
            put_header(out, b"accept-encoding", b"identity");
        }
        if let Some((name, value)) = self.auth {
            put_header(out, name.as_bytes(), value.as_bytes());
        }
        put_header(out, b"x-request-id", self.request_id.as_bytes());
        if let Some(len) = self.content_length {
            let mut b = itoa::Buffer::new();
            put_header(out, b"content-length", b.format(len).as_bytes());
        }
        out.put_slice(b"\r\n");
        Ok(())
    }
}

/// Append one `name: value\r\n` line to a head being written.
pub fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

impl ResponseHead {
    /// Write this head for the client: same status, reason and headers, minus the hop-by-hop ones,
    /// minus any header in `replace`, plus `extra`.
    ///
    /// The framing headers are always the gateway's, written from the framing it decoded, never
    /// copied: the body is re-framed by the relay (`Content-Length` of the decoded length, chunks of
    /// its own), so an upstream `Content-Length`, `Transfer-Encoding` or a `Connection` header
    /// naming either cannot misframe what the client reads. With `unframed` (an HTTP/1.0 client of
    /// a chunked body) the data goes out plain and the connection closes after it; a body delimited
    /// by the upstream's close is delimited by the gateway's close too.
    pub fn encode_for_client(
        &self,
        out: &mut BytesMut,
        replace: &[&str],
        extra: &[(&str, &[u8])],
        unframed: bool,
    ) {
        let mut code = itoa::Buffer::new();
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(code.format(self.status).as_bytes());
        out.put_u8(b' ');
        out.put_slice(&self.reason);
        out.put_slice(b"\r\n");
        for h in &self.headers {
            let n = &h.name[..];
            if is_hop_by_hop(n)
                || n.eq_ignore_ascii_case(b"content-length")
                || named_by_connection(&self.headers, n)
                || replace.iter().any(|r| n.eq_ignore_ascii_case(r.as_bytes()))
            {
                continue;
            }
            put_header(out, n, &h.value);
        }
        let no_body = (100..200).contains(&self.status) || self.status == 204 || self.status == 304;
        match self.framing {
            BodyFraming::Empty if no_body => {}
            // An empty body with a non-zero Content-Length is the answer to a HEAD: the number
            // (validated by the decoder) describes the resource, so it is relayed, re-written.
            BodyFraming::Empty => {
                let n = super::find_header(&self.headers, "content-length")
                    .and_then(|v| super::parse_content_length(v))
                    .unwrap_or(0);
                put_header(out, b"content-length", code.format(n).as_bytes());
            }
            BodyFraming::Length(n) => {
                put_header(out, b"content-length", code.format(n).as_bytes());
            }
            BodyFraming::Chunked if !unframed => {
                put_header(out, b"transfer-encoding", b"chunked");
            }
            BodyFraming::Chunked | BodyFraming::UntilClose => {
                put_header(out, b"connection", b"close");
            }
        }
        for (n, v) in extra {
            put_header(out, n.as_bytes(), v);
        }
        out.put_slice(b"\r\n");
    }

    /// Was `name` named by a `Connection: close`-style token? (exposed for the keep-alive decision)
    pub fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(b"connection") && has_token(&h.value, token))
    }
}

/// Write a chunk-size line for `len` bytes of data (used when the gateway itself streams).
pub fn encode_chunk_header(out: &mut BytesMut, len: usize) {
    let _ = std::fmt::Write::write_fmt(&mut HexWriter(out), format_args!("{len:x}\r\n"));
}

struct HexWriter<'a>(&'a mut BytesMut);

impl std::fmt::Write for HexWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode_request_head, HeadLimits};
    use super::*;

    #[test]
    fn strips_credentials_and_hop_by_hop() {
        let mut buf = BytesMut::from(
            &b"POST /x HTTP/1.1\r\nHost: gw\r\napi-key: secret\r\nAuthorization: Bearer s\r\nOcp-Apim-Subscription-Key: k\r\nConnection: keep-alive, x-drop\r\nX-Drop: 1\r\nX-Keep: 2\r\nTransfer-Encoding: chunked\r\nx-request-id: abc\r\n\r\n"[..],
        );
        let h = decode_request_head(&mut buf, &HeadLimits::default())
            .unwrap()
            .unwrap();
        let mut out = BytesMut::new();
        UpstreamHead {
            method: b"POST",
            target: "/v1/chat/completions",
            host: "up:1",
            auth: Some(("api-key", "backend")),
            request_id: "abc",
            content_length: Some(7),
            client_headers: &h.headers,
            identity_encoding: false,
        }
        .encode(&mut out)
        .unwrap();
        let s = String::from_utf8(out.to_vec()).unwrap();
        assert!(s.starts_with("POST /v1/chat/completions HTTP/1.1\r\nhost: up:1\r\n"));
        for gone in [
            "secret",
            "Bearer s",
            "Ocp-Apim",
            "X-Drop",
            "Transfer-Encoding",
            "Connection",
        ] {
            assert!(!s.contains(gone), "{gone} leaked: {s}");
        }
        assert!(s.contains("X-Keep: 2\r\n"));
        assert!(s.contains("api-key: backend\r\n"));
        assert!(s.contains("content-length: 7\r\n"));
        assert_eq!(s.matches("x-request-id").count(), 1);
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn refuses_what_would_break_the_framing() {
        let good = UpstreamHead {
            method: b"POST",
            target: "/v1/chat/completions",
            host: "up:1",
            auth: Some(("api-key", "k")),
            request_id: "abc",
            content_length: Some(0),
            client_headers: &[],
            identity_encoding: false,
        };
        let enc = |h: &UpstreamHead<'_>| h.encode(&mut BytesMut::new());
        assert_eq!(enc(&good), Ok(()));
        let smuggled = "/openai/deployments/x/chat/completions?api-version=1 HTTP/1.1\r\nhost: h\r\n\r\nDELETE /x";
        for target in [smuggled, "/a b", "/a\tb", "", "/caf\u{e9}"] {
            let h = UpstreamHead { target, ..good };
            assert_eq!(enc(&h), Err(EncodeError::Target), "{target:?}");
        }
        for method in [&b"PO ST"[..], b"", b"GET\r\n"] {
            let h = UpstreamHead { method, ..good };
            assert_eq!(enc(&h), Err(EncodeError::Method));
        }
        let h = UpstreamHead {
            auth: Some(("api-key", "k\r\nx-evil: 1")),
            ..good
        };
        assert!(matches!(enc(&h), Err(EncodeError::HeaderValue(_))));
        let h = UpstreamHead {
            request_id: "a\nb",
            ..good
        };
        assert!(matches!(enc(&h), Err(EncodeError::HeaderValue(_))));
        let bad = [super::super::Header {
            name: bytes::Bytes::from_static(b"x-a"),
            value: bytes::Bytes::from_static(b"1\r\n\r\nGET / HTTP/1.1"),
        }];
        let h = UpstreamHead {
            client_headers: &bad,
            ..good
        };
        assert!(matches!(enc(&h), Err(EncodeError::HeaderValue(_))));
        let bad = [super::super::Header {
            name: bytes::Bytes::from_static(b"x a"),
            value: bytes::Bytes::from_static(b"1"),
        }];
        let h = UpstreamHead {
            client_headers: &bad,
            ..good
        };
        assert_eq!(enc(&h), Err(EncodeError::HeaderName));
    }

    #[test]
    fn identity_encoding_replaces_the_clients_accept_encoding() {
        let mut buf = BytesMut::from(
            &b"POST /x HTTP/1.1\r\nHost: gw\r\nAccept-Encoding: gzip, deflate\r\naccept-encoding: br\r\nX-Keep: 1\r\n\r\n"[..],
        );
        let h = decode_request_head(&mut buf, &HeadLimits::default())
            .unwrap()
            .unwrap();
        let head = |identity_encoding| {
            let mut out = BytesMut::new();
            UpstreamHead {
                method: b"POST",
                target: "/v1/chat/completions",
                host: "up:1",
                auth: None,
                request_id: "r",
                content_length: Some(0),
                client_headers: &h.headers,
                identity_encoding,
            }
            .encode(&mut out)
            .unwrap();
            String::from_utf8(out.to_vec())
                .unwrap()
                .to_ascii_lowercase()
        };
        let s = head(true);
        assert_eq!(s.matches("accept-encoding").count(), 1, "{s}");
        assert!(
            s.contains("accept-encoding: identity\r\n") && s.contains("x-keep: 1\r\n"),
            "{s}"
        );
        let s = head(false);
        assert!(
            s.contains("accept-encoding: gzip, deflate\r\n")
                && s.contains("accept-encoding: br\r\n"),
            "{s}"
        );
        assert!(!s.contains("identity"), "{s}");
    }

    #[test]
    fn chunk_header_is_hex() {
        let mut out = BytesMut::new();
        encode_chunk_header(&mut out, 255);
        assert_eq!(&out[..], b"ff\r\n");
    }

    fn client_head(upstream: &[u8], unframed: bool) -> String {
        let mut b = BytesMut::from(upstream);
        let h = super::super::decode_response_head(&mut b, false, 65536)
            .unwrap()
            .unwrap();
        let mut out = BytesMut::new();
        h.encode_for_client(&mut out, &["x-drop"], &[("x-extra", b"1")], unframed);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn client_framing_is_the_gateways_own() {
        // `Connection: transfer-encoding` used to drop the header while the body stayed chunked.
        let s = client_head(
            b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n",
            false,
        );
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\nX-Keep: 2\r\ntransfer-encoding: chunked\r\nx-extra: 1\r\n\r\n"
        );
        let s = client_head(
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 007\r\n\r\n",
            false,
        );
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nx-extra: 1\r\n\r\n"
        );
        let s = client_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        );
        assert!(
            s.contains("connection: close\r\n") && !s.contains("chunked"),
            "{s}"
        );
        let s = client_head(b"HTTP/1.0 200 OK\r\n\r\n", false);
        assert!(s.contains("connection: close\r\n"), "{s}");
        let s = client_head(b"HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\n\r\n", false);
        assert!(s.contains("content-length: 0\r\n"), "{s}");
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 0042\r\n\r\n"[..]);
        let head = super::super::decode_response_head(&mut b, true, 65536)
            .unwrap()
            .unwrap();
        let mut out = BytesMut::new();
        head.encode_for_client(&mut out, &[], &[], false);
        assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n");
        let s = client_head(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!s.contains("content-length"), "{s}");
    }
}
