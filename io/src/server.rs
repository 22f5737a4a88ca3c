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

pub use crate::budget::BodyBudget;
use crate::budget::BodyPermit;
use crate::conn::{Conn, ReadError};
use crate::peer::ClientIo;

/// One decoded request with its whole body.
#[derive(Debug)]
pub struct Request {
    /// The head, sliced from the connection buffer.
    pub head: RequestHead,
    /// The body (de-chunked if it came chunked); empty when the service answered on the head.
    pub body: Bytes,
    /// The client's address.
    pub peer: SocketAddr,
    /// When the head was complete.
    pub started: Instant,
    /// The connection closes after the answer (a refused request's body was left unread): say
    /// so with `connection: close`.
    pub closing: bool,
    /// The body's share of the worker's buffering budget, given back when the request ends.
    _permit: Option<BodyPermit>,
}

impl Request {
    /// A request the gateway makes itself (the semantic cache's embeddings call): no client
    /// connection behind it, no share of the body budget.
    pub fn internal(head: RequestHead, body: Bytes, peer: SocketAddr) -> Self {
        Request {
            head,
            body,
            peer,
            started: Instant::now(),
            closing: false,
            _permit: None,
        }
    }
}

/// What a service decided on a head, before any of its body is read.
#[derive(Debug)]
pub enum HeadVerdict<P> {
    /// Read the body (answering `100 Continue` if asked), then [`Service::call`].
    Read(P),
    /// Do not read the body: [`Service::call`] answers with what it knows (an empty body), and
    /// the connection closes afterwards if a body was announced. Nothing a caller that failed
    /// authentication sends is buffered or parsed.
    Answer(P),
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
    /// Time for a whole head once its first byte arrived; a body gets this or 30 s, whichever
    /// is longer (large uploads on slow links).
    pub header: Duration,
}

/// What answers requests on a connection. Static dispatch: one concrete type per listener.
pub trait Service {
    /// What [`on_head`](Self::on_head) learnt, handed to [`call`](Self::call).
    type Pre;

    /// The limits for the next request.
    fn limits(&self) -> ServerLimits;

    /// Decide on a request head before its body is read (synchronously: identity, routes).
    fn on_head(&self, head: &RequestHead, peer: SocketAddr) -> HeadVerdict<Self::Pre>;

    /// The worker's budget for buffered bodies, if the service keeps one.
    fn body_budget(&self) -> Option<&Rc<BodyBudget>> {
        None
    }

    /// A fresh request id for an answer the front door makes itself (a malformed request), if
    /// the service tags its answers with one.
    fn request_id(&self) -> Option<String> {
        None
    }

    /// True once the process is draining: connections close after their current request.
    fn draining(&self) -> bool {
        false
    }

    /// Answer `req` by writing to `conn`; return whether the connection may carry another request.
    fn call<S: ClientIo>(
        &self,
        pre: Self::Pre,
        req: Request,
        conn: &mut Conn<S>,
    ) -> impl Future<Output = bool>;
}

/// Serve one client connection until it closes, errs or times out.
pub async fn serve_conn<S, Svc>(io: S, peer: SocketAddr, svc: Rc<Svc>)
where
    S: ClientIo,
    Svc: Service,
{
    let mut conn = Conn::new(io);
    loop {
        let limits = svc.limits();
        // The idle timer runs until the first byte of a request, waited for without a buffer.
        if !conn.idle(limits.idle).await {
            return;
        }
        // Boxed: the head, the body, the answer and the whole pipeline's state machine are
        // allocated for the request only, so the task of an idle connection is sized for the
        // wait above alone.
        if !Box::pin(serve_request(&mut conn, &limits, peer, &*svc)).await {
            return;
        }
        conn.release();
    }
}

/// Read a request (its body, or not, as the service decides), answer it, and drop a refused
/// body; true when the connection may carry another request.
async fn serve_request<S: ClientIo, Svc: Service>(
    conn: &mut Conn<S>,
    limits: &ServerLimits,
    peer: SocketAddr,
    svc: &Svc,
) -> bool {
    let head = match read_head(conn, limits).await {
        Ok(h) => h,
        Err(HeadError::Closed) => return false,
        Err(HeadError::Reply(e)) => {
            refuse_and_close(conn, svc, &e).await;
            return false;
        }
    };
    let started = Instant::now();
    let keep_alive = head.keep_alive;
    let mut permit = None;
    let verdict = svc.on_head(&head, peer);
    let verdict_read = matches!(verdict, HeadVerdict::Read(_));
    let (pre, body) = match verdict {
        HeadVerdict::Read(pre) => {
            match read_body(conn, &head, limits, svc.body_budget(), &mut permit).await {
                Ok(b) => (pre, b),
                Err(HeadError::Closed) => return false,
                Err(HeadError::Reply(e)) => {
                    refuse_and_close(conn, svc, &e).await;
                    return false;
                }
            }
        }
        HeadVerdict::Answer(pre) => (pre, Bytes::new()),
    };
    // A refused request's body is never buffered: a small one is read and dropped after the
    // answer (the connection stays usable), anything else closes the connection.
    let unread = match (&verdict_read, head.framing) {
        (true, _) | (false, BodyFraming::Empty) => Unread::Nothing,
        (false, BodyFraming::Length(n)) if n <= DISCARD_MAX && !head.expect_continue => {
            Unread::Discard(n as usize)
        }
        (false, _) => Unread::Close,
    };
    let closing = matches!(unread, Unread::Close);
    let req = Request {
        head,
        body,
        peer,
        started,
        closing,
        _permit: permit,
    };
    let reusable = svc.call(pre, req, conn).await;
    let again = reusable && keep_alive && !svc.draining();
    match unread {
        Unread::Close => {
            linger(conn).await;
            false
        }
        Unread::Discard(_) if !again => {
            linger(conn).await;
            false
        }
        Unread::Discard(n) => discard(conn, n, limits).await.is_ok(),
        Unread::Nothing => again,
    }
}

/// The front door's own refusal, then the connection closes (draining what the client still
/// sends for a moment, see [`linger`]).
async fn refuse_and_close<S: AsyncReadRent + AsyncWriteRent, Svc: Service>(
    conn: &mut Conn<S>,
    svc: &Svc,
    e: &GatewayError,
) {
    refuse(conn, svc, e).await;
    linger(conn).await;
}

/// A refused request's body left on the connection.
enum Unread {
    /// There was none, or it was read.
    Nothing,
    /// This many bytes follow the head: dropped as they arrive, never kept.
    Discard(usize),
    /// Too large, chunked or awaiting `100 Continue`: the connection closes after the answer.
    Close,
}

/// Largest unread body dropped to keep a refused client's connection open.
const DISCARD_MAX: u64 = 64 * 1024;

/// Drop the next `n` body bytes (within the header timeout), keeping what follows them.
async fn discard<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    mut n: usize,
    limits: &ServerLimits,
) -> Result<(), HeadError> {
    let deadline = Instant::now() + limits.header;
    loop {
        let take = n.min(conn.buf.len());
        conn.buf.advance(take);
        n -= take;
        if n == 0 {
            return Ok(());
        }
        fill_until(conn, deadline).await?;
    }
}

/// Before closing a connection whose request body went unread, stop writing and drain what the
/// client still sends for a moment (bounded in time and bytes), so the kernel does not answer
/// the unread bytes with a reset that could destroy our answer before the client reads it.
async fn linger<S: AsyncReadRent + AsyncWriteRent>(conn: &mut Conn<S>) {
    let _ = conn.io.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut drained = 0usize;
    while drained < LINGER_BYTES {
        conn.buf.clear();
        match conn
            .fill_within(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Ok(n) => drained += n,
            Err(_) => return,
        }
    }
}

/// How long [`linger`] drains, and how much.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// How much of the body budget a body takes at a time, as it arrives.
const STEP: u64 = 64 * 1024;

/// Why no request came out of the connection.
enum HeadError {
    /// Closed, idle timeout or socket error: nothing to answer.
    Closed,
    /// Answer this and close.
    Reply(GatewayError),
}

/// Read a request head from a connection the client has sent something on (see `Conn::idle`).
async fn read_head<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    limits: &ServerLimits,
) -> Result<RequestHead, HeadError> {
    // From the first byte on the whole head must arrive within `header`, so a client dribbling
    // one byte at a time cannot hold the slot.
    let mut deadline = (!conn.buf.is_empty()).then(|| Instant::now() + limits.header);
    // Bytes already searched for the end of the head: a head dribbled in small reads is parsed
    // when a blank line has arrived (or it is too large), not once per read. The first attempt
    // parses directly (a head almost always arrives whole in one read); only after a partial parse
    // does the cheap scan guard the next one. Empty lines before the request line (which httparse
    // skips) pass the scan and cost a parse each; that stays bounded by `max_head_bytes` and the
    // header timeout.
    let mut scanned = 0;
    let mut partial = false;
    loop {
        if !conn.buf.is_empty() {
            let complete = !partial || head_end(&conn.buf, &mut scanned);
            if complete || conn.buf.len() > limits.head.max_head_bytes {
                partial = true;
                match decode_request_head(&mut conn.buf, &limits.head) {
                    Ok(Some(h)) => return Ok(h),
                    Ok(None) => {}
                    Err(e) => return Err(HeadError::Reply(e.into())),
                }
            }
        }
        // Without a deadline nothing has arrived yet: the socket said readable (a TLS one always
        // does, see `ClientIo::readable`), so this read is still the idle wait.
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

/// Has `buf` a blank line (the end of a head: `\n\n` or `\n\r\n`) past `scanned - 2`? Moves
/// `scanned` on, so each byte is looked at about once however the head arrives.
fn head_end(buf: &[u8], scanned: &mut usize) -> bool {
    let from = scanned.saturating_sub(2);
    let found = memchr::memchr_iter(b'\n', &buf[from..]).any(|i| {
        let rest = &buf[from + i + 1..];
        rest.first() == Some(&b'\n') || rest.starts_with(b"\r\n")
    });
    *scanned = buf.len();
    found
}

fn busy() -> HeadError {
    HeadError::Reply(GatewayError::Busy(
        "the gateway is buffering too many request bodies; try again shortly".into(),
    ))
}

async fn read_body<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    head: &RequestHead,
    limits: &ServerLimits,
    budget: Option<&Rc<BodyBudget>>,
    permit: &mut Option<BodyPermit>,
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
            // The budget is charged as bytes arrive, not as announced: a client that announces a
            // large body and sends nothing holds nothing.
            let mut held = 0u64;
            loop {
                if let Some(b) = budget {
                    let have = conn.buf.len().min(n) as u64;
                    while have > held {
                        let step = STEP.min(n as u64 - held);
                        if !b.take(permit, step) {
                            return Err(busy());
                        }
                        held += step;
                    }
                }
                if conn.buf.len() >= n {
                    break;
                }
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
            let mut held = 0u64;
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
                // The budget grows with the body, 64 KiB at a time.
                if let Some(b) = budget {
                    while (body.len() as u64) > held {
                        if !b.take(permit, STEP) {
                            return Err(busy());
                        }
                        held += STEP;
                    }
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

/// The front door's own refusal (malformed head or body, too large, too slow, busy): the error,
/// the service's request id if it keeps them, and `connection: close`.
async fn refuse<S: AsyncReadRent + AsyncWriteRent, Svc: Service>(
    conn: &mut Conn<S>,
    svc: &Svc,
    e: &GatewayError,
) {
    let id = svc.request_id();
    let headers: Vec<(&str, &str)> = id.iter().map(|i| ("x-request-id", i.as_str())).collect();
    send_error_with(conn, e, true, &headers).await;
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

#[cfg(test)]
mod tests {
    use super::head_end;

    /// Fed in two reads split at every byte, the end of the head is found exactly when the
    /// blank line is complete, whatever the split.
    #[test]
    fn head_end_is_found_across_any_split() {
        for head in [
            &b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\nhost: a\n\n",
            b"GET / HTTP/1.1\r\nhost: a\n\r\n",
        ] {
            for cut in 0..=head.len() {
                let mut scanned = 0;
                let first = head_end(&head[..cut], &mut scanned);
                assert_eq!(first, cut == head.len(), "cut {cut} of {head:?}");
                assert_eq!(scanned, cut);
                if !first {
                    assert!(head_end(head, &mut scanned), "cut {cut} of {head:?}");
                }
            }
        }
        let mut scanned = 0;
        assert!(!head_end(b"GET / HTTP/1.1\r\nhost: a\r\n", &mut scanned));
    }
}
