//! Writing heads: the request we send upstream and the response head we relay to the client.

use bytes::{BufMut, BytesMut};

use super::{has_token, Header, ResponseHead};

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

impl UpstreamHead<'_> {
    /// Append the encoded head to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
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
    /// Write this head for the client: same status, reason and headers, minus the hop-by-hop ones
    /// (except `Transfer-Encoding`, because the body is relayed in its original framing), minus any
    /// header in `replace`, plus `extra`.
    pub fn encode_for_client(&self, out: &mut BytesMut, replace: &[&str], extra: &[(&str, &[u8])]) {
        let mut code = itoa::Buffer::new();
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(code.format(self.status).as_bytes());
        out.put_u8(b' ');
        out.put_slice(&self.reason);
        out.put_slice(b"\r\n");
        for h in &self.headers {
            let n = &h.name[..];
            let keep_te = n.eq_ignore_ascii_case(b"transfer-encoding");
            if (!keep_te && is_hop_by_hop(n))
                || named_by_connection(&self.headers, n)
                || replace.iter().any(|r| n.eq_ignore_ascii_case(r.as_bytes()))
            {
                continue;
            }
            put_header(out, n, &h.value);
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
        .encode(&mut out);
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
            .encode(&mut out);
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
}
