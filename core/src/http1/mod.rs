//! HTTP/1.1 framing: head decoding (httparse), chunked bodies, and the head we send upstream.

mod chunked;
mod encode;
mod headers;
mod request;
mod response;

pub use chunked::{ChunkError, ChunkedDecoder, Progress};
pub use encode::{
    encode_chunk_header, is_hop_by_hop, is_safe_target, is_safe_value, is_token, put_header,
    EncodeError, UpstreamHead,
};
pub use headers::Headers;
pub(crate) use headers::{slice_headers, Offsets};
pub use request::{decode_request_head, HeadLimits, RequestHead};
pub use response::{decode_response_head, ResponseHead};

use bytes::Bytes;

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs until the peer closes (responses only).
    UntilClose,
}

/// One header, both halves sliced from the frozen head buffer (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as sent (compare with [`eq_ignore_ascii_case`](slice::eq_ignore_ascii_case)).
    pub name: Bytes,
    /// The raw value bytes.
    pub value: Bytes,
}

/// Errors of head and body framing; each maps to one HTTP status at the edge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// httparse rejected the bytes.
    #[error("malformed HTTP head: {0}")]
    Parse(#[from] httparse::Error),
    /// The head did not end within the size limit.
    #[error("request head is larger than {0} bytes")]
    HeadTooLarge(usize),
    /// More headers than the limit.
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    /// Both Content-Length and Transfer-Encoding, or conflicting Content-Lengths.
    #[error("ambiguous message framing: {0}")]
    Framing(&'static str),
    /// A Content-Length that is not a plain decimal number.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// Only HTTP/1.0 and HTTP/1.1 are spoken.
    #[error("unsupported HTTP version")]
    Version,
}

impl DecodeError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::HeadTooLarge(_) | DecodeError::TooManyHeaders(_) => 431,
            DecodeError::Version => 505,
            _ => 400,
        }
    }
}

/// Find the first header named `name` (ASCII case-insensitive).
pub fn find_header<'h>(headers: &'h [Header], name: &str) -> Option<&'h Bytes> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| &h.value)
}

/// Does a comma-separated header value contain `token` (case-insensitive, trimmed)?
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// May the connection carry another message? HTTP/1.1 defaults to yes, 1.0 to no, and a
/// `Connection: close` or `keep-alive` token says otherwise.
pub(crate) fn keep_alive(headers: &[Header], version_minor: u8) -> bool {
    let mut keep = version_minor == 1;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"connection"))
    {
        if has_token(&h.value, "close") {
            keep = false;
        } else if has_token(&h.value, "keep-alive") {
            keep = true;
        }
    }
    keep
}

/// Parse a Content-Length value: digits only, no sign, no whitespace inside, no overflow.
pub(crate) fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Work out body framing from the headers, rejecting the shapes used for request smuggling.
pub(crate) fn framing_from_headers(
    headers: &[Header],
    is_request: bool,
) -> Result<BodyFraming, DecodeError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case(b"content-length") {
            // A list like "5, 5" is also a conflict for us: refuse rather than guess.
            let n = parse_content_length(&h.value).ok_or(DecodeError::BadContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(DecodeError::Framing("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_seen = true;
            // chunked must be the final coding; anything else in a request is unframeable.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(&[]);
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            if is_request && !chunked {
                return Err(DecodeError::Framing("unsupported Transfer-Encoding"));
            }
        }
    }
    if te_seen && length.is_some() {
        return Err(DecodeError::Framing(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    Ok(match (chunked, te_seen, length) {
        (true, _, _) => BodyFraming::Chunked,
        (false, true, _) => BodyFraming::UntilClose,
        (false, false, Some(0)) => BodyFraming::Empty,
        (false, false, Some(n)) => BodyFraming::Length(n),
        (false, false, None) if is_request => BodyFraming::Empty,
        (false, false, None) => BodyFraming::UntilClose,
    })
}
