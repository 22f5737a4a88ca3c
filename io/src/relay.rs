//! Talking to one upstream: send the request, read the response head (skipping interim 1xx
//! answers), then relay the body to the client as it arrives (no whole-response buffering),
//! re-framed by the gateway from what it decoded.

use std::time::{Duration, Instant};

use aigw_core::error::GatewayError;
use aigw_core::http1::{
    decode_response_head, encode_chunk_header, BodyFraming, ChunkedDecoder, ResponseHead,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::conn::{Conn, ReadError};
use crate::server::send_error;
use crate::upstream::UpConn;

/// Largest upstream response head.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most bytes taken per read while waiting for a response head: a head and the start of its
/// body, without filling (and so touching) a whole buffer with a stream that may stall.
const HEAD_READ_MAX: usize = 4 * 1024;
/// Most interim (1xx) heads skipped before the final one; their bytes together are capped at
/// [`MAX_RESPONSE_HEAD`] too. An upstream that sends more is broken or hostile.
const MAX_INTERIM: usize = 8;

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Socket error or EOF after part of a response arrived.
    #[error("upstream connection failed: {0}")]
    Io(String),
    /// Socket error or EOF before any byte of a response arrived (the request may or may not
    /// have been acted on; see `UpConn::may_resend`).
    #[error("upstream connection closed before answering: {0}")]
    Closed(String),
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
    /// The encoded head (see `aigw_core::request::upstream_request`), with the body behind it when
    /// the body is small (`aigw_core::request::COALESCE_MAX`).
    pub head: Bytes,
    /// The body when it is not behind the head (empty otherwise).
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
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    // Sending is bounded by the same deadline as the answer: an upstream that stops reading our
    // body must not hold the attempt (and a half-open probe) forever. A cut write leaves the
    // connection unusable; the caller drops it.
    let send = async {
        let closed = |e: std::io::Error| UpstreamError::Closed(e.to_string());
        // A small body already sits behind the head (one write); a large one is written from the
        // request's own `Bytes` (the client's bytes as read, or the de-chunked copy the front door
        // made), not copied again.
        let (res, _) = up.conn.write(sent.head.clone()).await;
        res.map_err(closed)?;
        if !body.is_empty() {
            let (res, _) = up.conn.write(body.clone()).await;
            res.map_err(closed)?;
        }
        Ok(())
    };
    match monoio::time::timeout(timeout, send).await {
        Ok(r) => r?,
        Err(_) => return Err(UpstreamError::Timeout),
    }
    let head_req = sent.head_only;
    // Interim answers skipped so far, and their bytes.
    let (mut interim, mut interim_bytes) = (0usize, 0usize);
    let result = loop {
        let before = up.conn.buf.len();
        match decode_response_head(&mut up.conn.buf, head_req, MAX_RESPONSE_HEAD) {
            // 101 switches protocols, which the gateway never asks for: the answer is not HTTP/1.1
            // any more, so it is malformed for us.
            Ok(Some(h)) if h.status == 101 => {
                break Err(UpstreamError::Malformed(
                    "101 Switching Protocols to a request that asked for no upgrade".into(),
                ))
            }
            // Any other 1xx (100 Continue, 102 Processing, 103 Early Hints) is interim: the final
            // answer follows on the same connection, and taking the interim one for it would
            // leave the final one for the next request on this connection.
            Ok(Some(h)) if h.status < 200 => {
                interim += 1;
                interim_bytes += before - up.conn.buf.len();
                if interim > MAX_INTERIM || interim_bytes > MAX_RESPONSE_HEAD {
                    break Err(UpstreamError::Malformed(format!(
                        "more than {MAX_INTERIM} interim (1xx) answers or {MAX_RESPONSE_HEAD} bytes of them"
                    )));
                }
                continue;
            }
            Ok(Some(h)) => break Ok(h),
            Ok(None) => {}
            Err(e) => break Err(UpstreamError::Malformed(e.to_string())),
        }
        let nothing_yet = interim == 0 && up.conn.buf.is_empty();
        match up
            .conn
            .fill_within_max(
                deadline.saturating_duration_since(Instant::now()),
                HEAD_READ_MAX,
            )
            .await
        {
            Ok(_) => {}
            Err(ReadError::Timeout) => break Err(UpstreamError::Timeout),
            Err(e) if nothing_yet => break Err(UpstreamError::Closed(e.to_string())),
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
    /// Most bytes taken from the upstream per read (and so written to the client at once). A
    /// stream's events are small: a short read bounds what a stream whose client stopped reading
    /// holds in its buffers.
    pub read_max: usize,
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
/// `head_out` is the encoded head for the client (its framing headers written by the gateway, see
/// `ResponseHead::encode_for_client`); body bytes already read are sent with it. Each upstream
/// read is framed and written to the client at once (an SSE event must not wait for the next):
/// a `Content-Length` body is relayed as is (its length is what the head says), a chunked body is
/// decoded and re-chunked with the gateway's own chunk sizes (no upstream chunk extensions, no
/// trailers), or sent plain when `mode.dechunk`. `tap` sees every run of body data (de-chunked)
/// as it passes, for usage accounting.
///
/// The upstream connection is reported reusable only when its response was read exactly to the
/// end with nothing behind it.
pub async fn relay_body<S: AsyncReadRent + AsyncWriteRent>(
    client: &mut Conn<S>,
    up: &mut UpConn,
    head: &ResponseHead,
    head_out: BytesMut,
    mode: RelayMode,
    wait: &mut Duration,
    mut tap: impl FnMut(&[u8]),
) -> RelayEnd {
    let RelayMode {
        timeout,
        dechunk,
        read_max,
    } = mode;
    let dechunk = dechunk && head.framing == BodyFraming::Chunked;
    let mut decoder = ChunkedDecoder::new();
    let mut remaining = match head.framing {
        BodyFraming::Length(n) => n,
        _ => 0,
    };
    let mut done = head.framing == BodyFraming::Empty;
    let mut out = head_out;
    let mut head_sent = false;
    loop {
        // Frame what the upstream sent so far into `out`.
        if !done && !up.conn.buf.is_empty() {
            match head.framing {
                BodyFraming::Empty => {}
                BodyFraming::Length(_) | BodyFraming::UntilClose => {
                    let n = if head.framing == BodyFraming::UntilClose {
                        up.conn.buf.len()
                    } else {
                        let n = (up.conn.buf.len() as u64).min(remaining);
                        remaining -= n;
                        done = remaining == 0;
                        n as usize
                    };
                    tap(&up.conn.buf[..n]);
                    if out.is_empty() {
                        // Shares the read buffer's allocation, reclaimed once written: no copy.
                        out = up.conn.buf.split_to(n);
                    } else {
                        out.put_slice(&up.conn.buf[..n]);
                        up.conn.buf.advance(n);
                    }
                }
                BodyFraming::Chunked => {
                    let fed = decoder.feed(&up.conn.buf, |d| {
                        tap(d);
                        if !dechunk {
                            encode_chunk_header(&mut out, d.len());
                        }
                        out.put_slice(d);
                        if !dechunk {
                            out.put_slice(b"\r\n");
                        }
                    });
                    let Ok(p) = fed else {
                        return upstream_failed(client, head_sent, "malformed chunked body").await;
                    };
                    up.conn.buf.advance(p.consumed);
                    done = p.done;
                    if done && !dechunk {
                        out.put_slice(b"0\r\n\r\n");
                    }
                }
            }
        }
        if !out.is_empty() {
            let (res, written) = client.write(std::mem::take(&mut out)).await;
            if res.is_err() {
                return RelayEnd::ClientGone;
            }
            head_sent = true;
            if head.framing == BodyFraming::Chunked {
                // Re-chunked output is the gateway's own buffer: reuse it for the next read. (A
                // relayed Content-Length piece shares the read buffer, so it is let go at once.)
                out = written;
                out.clear();
            }
        }
        if done {
            break;
        }
        let t0 = Instant::now();
        let r = up.conn.fill_within_max(timeout, read_max).await;
        *wait += t0.elapsed();
        match r {
            Ok(_) => {}
            Err(ReadError::Eof) if head.framing == BodyFraming::UntilClose => {
                return RelayEnd::Complete {
                    reusable: false,
                    client_keep: false,
                };
            }
            Err(_) => return upstream_failed(client, head_sent, "body cut short").await,
        }
    }
    RelayEnd::Complete {
        // Bytes behind a complete response mean the upstream's framing is off: never reuse.
        reusable: head.keep_alive && up.conn.buf.is_empty(),
        client_keep: head.framing != BodyFraming::UntilClose && !dechunk,
    }
}

/// The upstream broke its body. If nothing reached the client yet it gets a 502; otherwise the
/// truncated response ends with the connection (a chunked one without its last chunk, so the
/// client can tell).
async fn upstream_failed<S: AsyncReadRent + AsyncWriteRent>(
    client: &mut Conn<S>,
    head_sent: bool,
    why: &str,
) -> RelayEnd {
    if !head_sent {
        let e = GatewayError::BadGateway(format!("the backend sent a {why}"));
        send_error(client, &e, true).await;
    }
    RelayEnd::UpstreamFailed
}
