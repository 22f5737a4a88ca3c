//! Talking to one upstream: send the request, read the response head, then relay the body to the
//! client as it arrives (chunk by chunk, no whole-response buffering), in its original framing.

use std::time::{Duration, Instant};

use aigw_core::http1::{decode_response_head, BodyFraming, ChunkedDecoder, ResponseHead};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::conn::{Conn, ReadError};
use crate::upstream::UpConn;

/// Bodies up to this size are copied behind the head so both leave in one write; above it the
/// extra syscall is cheaper than the copy.
const COALESCE_MAX: usize = 16 * 1024;
/// Largest upstream response head.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Socket error or EOF before a complete response head.
    #[error("upstream connection failed: {0}")]
    Io(String),
    /// No response head in time.
    #[error("upstream timed out")]
    Timeout,
    /// The response head was malformed.
    #[error("upstream sent a malformed response: {0}")]
    Malformed(String),
}

/// One request as it goes to a backend: its encoded head and its body.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The encoded head (see `aigw_core::request::upstream_request`).
    pub head: Bytes,
    /// The body.
    pub body: Bytes,
    /// A `HEAD` request: the response has no body whatever its headers say.
    pub head_only: bool,
}

/// Send the request and wait for the response head. Time spent waiting is added to `wait`.
///
/// # Errors
/// [`UpstreamError`]; the connection must then be dropped.
pub async fn exchange_head(
    up: &mut UpConn,
    sent: &Sent,
    timeout: Duration,
    wait: &mut Duration,
) -> Result<ResponseHead, UpstreamError> {
    let body = &sent.body;
    let mut out = BytesMut::with_capacity(sent.head.len() + body.len().min(COALESCE_MAX));
    out.put_slice(&sent.head);
    let t0 = Instant::now();
    if body.len() <= COALESCE_MAX {
        out.put_slice(body);
        let (res, _) = up.conn.write(out).await;
        res.map_err(|e| UpstreamError::Io(e.to_string()))?;
    } else {
        let (res, _) = up.conn.write(out).await;
        res.map_err(|e| UpstreamError::Io(e.to_string()))?;
        // The body is a refcounted slice of what the client sent: written as is, never copied.
        let (res, _) = up.conn.write(body.clone()).await;
        res.map_err(|e| UpstreamError::Io(e.to_string()))?;
    }
    let head_req = sent.head_only;
    let deadline = t0 + timeout;
    let result = loop {
        match decode_response_head(&mut up.conn.buf, head_req, MAX_RESPONSE_HEAD) {
            Ok(Some(h)) if h.status == 100 => continue,
            Ok(Some(h)) => break Ok(h),
            Ok(None) => {}
            Err(e) => break Err(UpstreamError::Malformed(e.to_string())),
        }
        match up
            .conn
            .fill_within(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Ok(_) => {}
            Err(ReadError::Timeout) => break Err(UpstreamError::Timeout),
            Err(e) => break Err(UpstreamError::Io(e.to_string())),
        }
    };
    *wait += t0.elapsed();
    result
}

/// How to relay one body.
#[derive(Debug, Clone, Copy)]
pub struct RelayMode {
    /// Longest wait for the next upstream read.
    pub timeout: Duration,
    /// Send a chunked body's data unframed (for an HTTP/1.0 client); the client is closed after.
    pub dechunk: bool,
}

/// How relaying a response ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayEnd {
    /// The whole body went through; the upstream connection may be reused if `reusable`.
    Complete {
        /// Framing and keep-alive allow reuse.
        reusable: bool,
        /// The client connection may carry another request.
        client_keep: bool,
    },
    /// The upstream failed mid-body: the client got a truncated response and must be closed.
    UpstreamFailed,
    /// The client went away.
    ClientGone,
}

/// Relay `head` (already decided on) and its body from `up` to `client`.
///
/// `head_out` is the encoded head for the client; body bytes already read are sent with it.
/// `tap` sees every run of body data (de-chunked) as it passes, for usage accounting.
pub async fn relay_body<S: AsyncReadRent + AsyncWriteRent>(
    client: &mut Conn<S>,
    up: &mut UpConn,
    head: &ResponseHead,
    mut head_out: BytesMut,
    mode: RelayMode,
    wait: &mut Duration,
    mut tap: impl FnMut(&[u8]),
) -> RelayEnd {
    let RelayMode { timeout, dechunk } = mode;
    let mut decoder = ChunkedDecoder::new();
    // For an HTTP/1.0 client a chunked body is sent as plain data, ended by closing.
    let mut plain = BytesMut::new();
    let mut remaining = match head.framing {
        BodyFraming::Length(n) => n,
        _ => 0,
    };
    // What of the first bytes belongs to this body.
    let mut take = |buf: &BytesMut, plain: &mut BytesMut| -> Result<(usize, bool), ()> {
        match head.framing {
            BodyFraming::Empty => Ok((0, true)),
            BodyFraming::Length(_) => {
                let n = (buf.len() as u64).min(remaining) as usize;
                tap(&buf[..n]);
                remaining -= n as u64;
                Ok((n, remaining == 0))
            }
            BodyFraming::Chunked => {
                let p = decoder
                    .feed(buf, |d| {
                        tap(d);
                        if dechunk {
                            plain.extend_from_slice(d);
                        }
                    })
                    .map_err(|_| ())?;
                Ok((p.consumed, p.done))
            }
            BodyFraming::UntilClose => {
                tap(buf);
                Ok((buf.len(), false))
            }
        }
    };
    let Ok((n, mut done)) = take(&up.conn.buf, &mut plain) else {
        return RelayEnd::UpstreamFailed;
    };
    let dechunk = dechunk && head.framing == BodyFraming::Chunked;
    // The head and the first body bytes leave together: one write for small responses.
    if dechunk {
        head_out.put_slice(&plain);
        plain.clear();
    } else {
        head_out.put_slice(&up.conn.buf[..n]);
    }
    up.conn.buf.advance(n);
    if client.write(head_out).await.0.is_err() {
        return RelayEnd::ClientGone;
    }
    while !done {
        let t0 = Instant::now();
        let r = up.conn.fill_within(timeout).await;
        *wait += t0.elapsed();
        match r {
            Ok(_) => {}
            Err(ReadError::Eof) if head.framing == BodyFraming::UntilClose => {
                return RelayEnd::Complete {
                    reusable: false,
                    client_keep: false,
                };
            }
            Err(_) => return RelayEnd::UpstreamFailed,
        }
        let Ok((n, d)) = take(&up.conn.buf, &mut plain) else {
            return RelayEnd::UpstreamFailed;
        };
        done = d;
        // Relay what arrived right away (an SSE event must not wait for the next one); the
        // split-off part shares the read buffer's allocation, which is reclaimed once written.
        let chunk = up.conn.buf.split_to(n);
        let out = if dechunk { plain.split() } else { chunk };
        if !out.is_empty() && client.write(out).await.0.is_err() {
            return RelayEnd::ClientGone;
        }
    }
    RelayEnd::Complete {
        reusable: head.keep_alive && up.conn.buf.is_empty(),
        client_keep: head.framing != BodyFraming::UntilClose && !dechunk,
    }
}
