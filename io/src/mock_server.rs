//! The built-in mock upstream on the same stack as the gateway: core decides the answer, this
//! file sleeps, frames and writes it (JSON with Content-Length, SSE as chunks).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use aigw_core::config::MockOptions;
use aigw_core::error::reason;
use aigw_core::http1::{encode_chunk_header, put_header, HeadLimits};
use aigw_core::mock::{encode_odd_chunked, handle, MockBody, MockRequest, MockShared, Warts};
use bytes::{BufMut, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::conn::Conn;
use crate::server::{send_response, HeadVerdict, Request, ServerLimits, Service};
use crate::shard::Shard;

/// One mock listener's service on one worker.
pub struct MockService {
    /// How it behaves.
    pub options: MockOptions,
    /// Counters shared by every worker serving this mock.
    pub shared: Arc<MockShared>,
    /// The worker (for its random numbers).
    pub shard: Rc<Shard>,
}

impl Service for MockService {
    type Pre = ();

    fn on_head(
        &self,
        _: &aigw_core::http1::RequestHead,
        _: std::net::SocketAddr,
    ) -> HeadVerdict<()> {
        HeadVerdict::Read(())
    }

    fn limits(&self) -> ServerLimits {
        ServerLimits {
            head: HeadLimits::default(),
            max_body: 64 * 1024 * 1024,
            idle: Duration::from_secs(120),
            header: Duration::from_secs(30),
        }
    }

    async fn call<S: AsyncReadRent + AsyncWriteRent>(
        &self,
        _: (),
        req: Request,
        conn: &mut Conn<S>,
    ) -> bool {
        match req.head.path() {
            "/mock/stats" => return json(conn, &self.shared.stats_json()).await,
            "/mock/requests" => return json(conn, &self.shared.requests_json()).await,
            "/mock/reset" if req.head.is_method("POST") => {
                self.shared.reset();
                return json(conn, b"{\"status\":\"reset\"}").await;
            }
            _ => {}
        }
        let mreq = MockRequest {
            method: &req.head.method,
            path: req.head.path(),
            query: req.head.query(),
            headers: &req.head.headers,
            body: &req.body,
        };
        let reply = handle(&self.options, &self.shared, &mreq, self.shard.rand01());
        // A real upstream's interim answer comes at once; the final one after the delay.
        let warts = Warts::parse(&req.head.headers);
        if let Some(interim) = warts.interim_head() {
            if conn.write(interim).await.0.is_err() {
                return false;
            }
        }
        if reply.delay_ms > 0 {
            monoio::time::sleep(Duration::from_millis(reply.delay_ms)).await;
        }
        let mut out = BytesMut::with_capacity(1024);
        let mut code = itoa::Buffer::new();
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(code.format(reply.status).as_bytes());
        out.put_u8(b' ');
        out.put_slice(reason(reply.status).as_bytes());
        out.put_slice(b"\r\n");
        for (k, v) in &reply.headers {
            put_header(&mut out, k.as_bytes(), v.as_bytes());
        }
        match reply.body {
            MockBody::Full(body) if warts.odd_framing => {
                encode_odd_chunked(&mut out, &body);
                conn.write(out).await.0.is_ok()
            }
            MockBody::Full(body) => {
                put_header(
                    &mut out,
                    b"content-length",
                    code.format(body.len()).as_bytes(),
                );
                out.put_slice(b"\r\n");
                out.put_slice(&body);
                conn.write(out).await.0.is_ok()
            }
            MockBody::Sse {
                events,
                chunk_delay_ms,
            } => {
                put_header(&mut out, b"transfer-encoding", b"chunked");
                out.put_slice(b"\r\n");
                // The head goes out first, so a client sees the response start before the first
                // delay; then each event is its own chunk, written as soon as it is due.
                let (res, mut out) = conn.write(out).await;
                if res.is_err() {
                    return false;
                }
                // Each frame is made (and compressed) as it is due, not before.
                let last = events.len();
                for (i, ev) in events.iter().enumerate() {
                    if i > 0 && chunk_delay_ms > 0 {
                        monoio::time::sleep(Duration::from_millis(chunk_delay_ms)).await;
                    }
                    out.clear();
                    encode_chunk_header(&mut out, ev.len());
                    out.put_slice(&ev);
                    out.put_slice(b"\r\n");
                    if i + 1 == last {
                        out.put_slice(b"0\r\n\r\n");
                    }
                    let (res, o) = conn.write(out).await;
                    out = o;
                    if res.is_err() {
                        return false;
                    }
                }
                if events.is_empty() {
                    return conn.write(&b"0\r\n\r\n"[..]).await.0.is_ok();
                }
                true
            }
        }
    }
}

async fn json<S: AsyncReadRent + AsyncWriteRent>(conn: &mut Conn<S>, body: &[u8]) -> bool {
    send_response(conn, 200, &[], "application/json", body).await
}
