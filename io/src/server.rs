//! The HTTP/1.1 front door shared by the gateway, the admin port and the mock: keep-alive,
//! pipelining (answered in order), Content-Length and chunked bodies, `Expect: 100-continue`,
//! limits and timeouts. What to answer is the [`Service`]'s business.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use aigw_core::error::{simple_response, GatewayError};
use aigw_core::http1::{decode_request_head, BodyFraming, ChunkedDecoder, HeadLimits, RequestHead};
use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::conn::{Conn, ReadError};

/// One decoded request with its whole body.
#[derive(Debug)]
pub struct Request {
    /// The head, sliced from the connection buffer.
    pub head: RequestHead,
    /// The body (de-chunked if it came chunked).
    pub body: Bytes,
    /// The client's address.
    pub peer: SocketAddr,
    /// When the head was complete.
    pub started: Instant,
}

/// Limits the front door enforces; read per request so a reload applies to the next one.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Head size and header count.
    pub head: HeadLimits,
    /// Largest body.
    pub max_body: u64,
    /// Idle keep-alive time before the first byte of a request.
    pub idle: Duration,
    /// Time for a whole head (and body) once its first byte arrived.
    pub header: Duration,
}

/// What answers requests on a connection. Static dispatch: one concrete type per listener.
pub trait Service {
    /// The limits for the next request.
    fn limits(&self) -> ServerLimits;

    /// True once the process is draining: connections close after their current request.
    fn draining(&self) -> bool {
        false
    }

    /// Answer `req` by writing to `conn`; return whether the connection may carry another request.
    fn call<S: AsyncReadRent + AsyncWriteRent>(
        &self,
        req: Request,
        conn: &mut Conn<S>,
    ) -> impl Future<Output = bool>;
}

/// Serve one client connection until it closes, errs or times out.
pub async fn serve_conn<S, Svc>(io: S, peer: SocketAddr, svc: Rc<Svc>)
where
    S: AsyncReadRent + AsyncWriteRent,
    Svc: Service,
{
    let mut conn = Conn::new(io);
    loop {
        let limits = svc.limits();
        let head = match read_head(&mut conn, &limits).await {
            Ok(h) => h,
            Err(HeadError::Closed) => return,
            Err(HeadError::Reply(e)) => {
                send_error(&mut conn, &e, true).await;
                return;
            }
        };
        let keep_alive = head.keep_alive;
        let body = match read_body(&mut conn, &head, &limits).await {
            Ok(b) => b,
            Err(HeadError::Closed) => return,
            Err(HeadError::Reply(e)) => {
                send_error(&mut conn, &e, true).await;
                return;
            }
        };
        let req = Request {
            head,
            body,
            peer,
            started: Instant::now(),
        };
        let reusable = svc.call(req, &mut conn).await;
        if !reusable || !keep_alive || svc.draining() {
            return;
        }
    }
}

/// Why no request came out of the connection.
enum HeadError {
    /// Closed, idle timeout or socket error: nothing to answer.
    Closed,
    /// Answer this and close.
    Reply(GatewayError),
}

async fn read_head<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    limits: &ServerLimits,
) -> Result<RequestHead, HeadError> {
    // The idle timer runs until the first byte of a head; from then on the whole head must
    // arrive within `header`, so a client dribbling one byte at a time cannot hold the slot.
    let mut deadline = (!conn.buf.is_empty()).then(|| Instant::now() + limits.header);
    loop {
        if !conn.buf.is_empty() {
            match decode_request_head(&mut conn.buf, &limits.head) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {}
                Err(e) => return Err(HeadError::Reply(e.into())),
            }
        }
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => limits.idle,
        };
        match conn.fill_within(wait).await {
            Ok(_) => {
                deadline.get_or_insert_with(|| Instant::now() + limits.header);
            }
            Err(ReadError::Timeout) if deadline.is_some() => {
                return Err(HeadError::Reply(GatewayError::RequestTimeout))
            }
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

async fn read_body<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    head: &RequestHead,
    limits: &ServerLimits,
) -> Result<Bytes, HeadError> {
    let deadline = Instant::now() + limits.header.max(Duration::from_secs(30));
    match head.framing {
        BodyFraming::Empty | BodyFraming::UntilClose => Ok(Bytes::new()),
        BodyFraming::Length(n) => {
            if n > limits.max_body {
                return Err(HeadError::Reply(GatewayError::BodyTooLarge(
                    limits.max_body,
                )));
            }
            let n = n as usize;
            if head.expect_continue && conn.buf.len() < n {
                send_continue(conn).await?;
            }
            // Reserve what is announced, but at most 1 MiB ahead of what arrived: a client that
            // claims 32 MiB and sends nothing must not make us hold 32 MiB per connection.
            let ahead = (n - conn.buf.len().min(n)).min(1 << 20);
            if conn.buf.capacity() - conn.buf.len() < ahead {
                conn.buf.reserve(ahead);
            }
            while conn.buf.len() < n {
                fill_until(conn, deadline).await?;
            }
            Ok(conn.buf.split_to(n).freeze())
        }
        BodyFraming::Chunked => {
            if head.expect_continue && conn.buf.is_empty() {
                send_continue(conn).await?;
            }
            let mut dec = ChunkedDecoder::new();
            let mut body = BytesMut::new();
            loop {
                let p = dec
                    .feed(&conn.buf, |d| body.extend_from_slice(d))
                    .map_err(|e| HeadError::Reply(GatewayError::BadRequest(e.to_string())))?;
                conn.buf.advance(p.consumed);
                if body.len() as u64 > limits.max_body {
                    return Err(HeadError::Reply(GatewayError::BodyTooLarge(
                        limits.max_body,
                    )));
                }
                if p.done {
                    return Ok(body.freeze());
                }
                fill_until(conn, deadline).await?;
            }
        }
    }
}

async fn fill_until<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    deadline: Instant,
) -> Result<(), HeadError> {
    match conn
        .fill_within(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        Ok(_) => Ok(()),
        Err(ReadError::Timeout) => Err(HeadError::Reply(GatewayError::RequestTimeout)),
        Err(_) => Err(HeadError::Closed),
    }
}

async fn send_continue<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
) -> Result<(), HeadError> {
    let (res, _) = conn.write(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
    res.map_err(|_| HeadError::Closed)
}

/// Write the OpenAI-style error answer for `e`; `close` adds `connection: close`.
pub async fn send_error<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    e: &GatewayError,
    close: bool,
) {
    send_error_with(conn, e, close, &[]).await;
}

/// [`send_error`] with extra headers (e.g. the caller's rate-limit state).
pub async fn send_error_with<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    e: &GatewayError,
    close: bool,
    headers: &[(&str, &str)],
) {
    let mut out = BytesMut::with_capacity(256);
    let retry = e.retry_after().map(|s| s.to_string());
    let retry_ms = e.retry_after_ms().map(|s| s.to_string());
    let mut extra: Vec<(&str, &str)> = retry.iter().map(|s| ("retry-after", s.as_str())).collect();
    extra.extend(retry_ms.iter().map(|s| ("retry-after-ms", s.as_str())));
    extra.extend_from_slice(headers);
    simple_response(
        &mut out,
        e.status(),
        &extra,
        "application/json",
        &e.body(),
        close,
    );
    let _ = conn.write(out).await;
}

/// Write a complete response with a body.
pub async fn send_response<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> bool {
    let mut out = BytesMut::with_capacity(128 + body.len());
    simple_response(&mut out, status, headers, content_type, body, false);
    conn.write(out).await.0.is_ok()
}
