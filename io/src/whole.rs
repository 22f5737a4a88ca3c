//! Reading an upstream response body whole before the client's head is written, so that the head
//! can carry what only the body tells: the token usage the answer is charged, and with it the
//! caller's settled `x-ratelimit-remaining-tokens`.
//!
//! Bounded: a body longer than the cap (or delimited only by the connection's close) is not read
//! whole, and nothing of it is consumed, so the caller relays it as it arrives, as for any other
//! answer. A `Content-Length` body read whole is the upstream read buffer's own bytes, sent as
//! they are: room for the rest of it is reserved once, so at most the bytes that came with the
//! head are moved (once), never the body as it grows. A chunked one is its chunks' data, copied
//! out of their framing, as relaying would re-frame it. Either way the connection is left a
//! buffer of its own, of normal size, once a large body is taken: it goes back to the pool, and
//! must not keep the body's allocation alive there.

use std::time::{Duration, Instant};

use aigw_core::http1::{BodyFraming, ChunkedDecoder};
use bytes::{Buf, Bytes, BytesMut};

use crate::conn::READ_CHUNK;
use crate::upstream::UpConn;

/// How reading a body whole ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Whole {
    /// The whole body, de-chunked; the upstream buffer holds only what came after it.
    Body(Bytes),
    /// Not read whole (over the cap, or ended by the connection's close); nothing was consumed.
    Relay,
    /// The upstream broke the body before it ended (closed, timed out, malformed chunking).
    Failed(&'static str),
}

/// The sans-IO part: looks at the upstream bytes of one body as they accumulate.
#[derive(Debug)]
pub struct WholeReader {
    framing: BodyFraming,
    cap: usize,
    decoder: ChunkedDecoder,
    /// Bytes of a chunked body's framing looked at so far (not consumed until the body ends).
    scanned: usize,
    /// A chunked body's data so far.
    data: BytesMut,
}

/// What [`WholeReader::step`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The body is complete (and consumed from the buffer).
    Done(Bytes),
    /// More bytes are needed.
    More,
    /// Not to be read whole; nothing was consumed.
    Relay,
    /// The chunked framing is malformed.
    Malformed,
}

impl WholeReader {
    /// A reader of a body with `framing`, read whole only up to `cap` bytes as sent (a chunked
    /// body's framing counts).
    pub fn new(framing: BodyFraming, cap: usize) -> Self {
        WholeReader {
            framing,
            cap,
            decoder: ChunkedDecoder::new(),
            scanned: 0,
            data: BytesMut::new(),
        }
    }

    /// Look at `buf`, the upstream's bytes from the start of the body (grown between calls);
    /// consumes the body from it only once the body is complete.
    pub fn step(&mut self, buf: &mut BytesMut) -> Step {
        match self.framing {
            BodyFraming::Empty => Step::Done(Bytes::new()),
            BodyFraming::UntilClose => Step::Relay,
            BodyFraming::Length(n) => match usize::try_from(n) {
                Ok(n) if n > self.cap => Step::Relay,
                Ok(n) if buf.len() >= n => {
                    let body = buf.split_to(n).freeze();
                    if n > READ_CHUNK {
                        own_buffer(buf);
                    }
                    Step::Done(body)
                }
                Ok(_) => Step::More,
                Err(_) => Step::Relay,
            },
            BodyFraming::Chunked => {
                let data = &mut self.data;
                let fed = self
                    .decoder
                    .feed(&buf[self.scanned..], |d| data.extend_from_slice(d));
                let Ok(p) = fed else {
                    return Step::Malformed;
                };
                self.scanned += p.consumed;
                if p.done {
                    buf.advance(self.scanned);
                    if self.scanned > READ_CHUNK {
                        own_buffer(buf);
                    }
                    Step::Done(std::mem::take(&mut self.data).freeze())
                } else if self.scanned > self.cap {
                    Step::Relay
                } else {
                    Step::More
                }
            }
        }
    }
}

/// Give `buf` (what follows a large body read whole, normally nothing) a fresh allocation of
/// normal size, so it no longer shares or holds the one grown for the body.
fn own_buffer(buf: &mut BytesMut) {
    let mut fresh = BytesMut::with_capacity(READ_CHUNK.max(buf.len()));
    fresh.extend_from_slice(buf);
    *buf = fresh;
}

/// Read the body of a response with `framing` from `up` whole, when it is at most `cap` bytes.
/// Each read waits at most `timeout`; time spent waiting is added to `wait`.
pub async fn read_whole(
    up: &mut UpConn,
    framing: BodyFraming,
    cap: usize,
    timeout: Duration,
    wait: &mut Duration,
) -> Whole {
    let mut reader = WholeReader::new(framing, cap);
    if let BodyFraming::Length(n) = framing {
        let missing = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_sub(up.conn.buf.len());
        if n <= cap as u64 && missing > 0 {
            // Room for the rest of the body at once (and the slack `fill` wants): the buffer is
            // not grown again, so not copied, while the body arrives.
            up.conn.buf.reserve(missing + READ_CHUNK / 4);
        }
    }
    loop {
        match reader.step(&mut up.conn.buf) {
            Step::Done(body) => return Whole::Body(body),
            Step::Relay => return Whole::Relay,
            Step::Malformed => return Whole::Failed("malformed chunked body"),
            Step::More => {}
        }
        let t0 = Instant::now();
        let r = up.conn.fill_within(timeout).await;
        *wait += t0.elapsed();
        if r.is_err() {
            return Whole::Failed("body cut short");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_body_is_the_read_buffer_itself() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"{\"usage\":");
        let start = buf.as_ptr();
        let mut r = WholeReader::new(BodyFraming::Length(12), 100);
        assert_eq!(r.step(&mut buf), Step::More);
        buf.extend_from_slice(b"{}}NEXT");
        let Step::Done(body) = r.step(&mut buf) else {
            panic!("not done")
        };
        assert_eq!(&body[..], b"{\"usage\":{}}");
        // Not copied: the body is the bytes as read, in the buffer's own allocation.
        assert_eq!(body.as_ptr(), start);
        assert_eq!(&buf[..], b"NEXT");
        // Over the cap: relayed, nothing consumed.
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        assert_eq!(
            WholeReader::new(BodyFraming::Length(101), 100).step(&mut buf),
            Step::Relay
        );
        assert_eq!(buf.len(), 10);
    }

    /// A body read whole into a buffer grown for it leaves the connection a buffer of normal
    /// size: the connection goes back to the pool, and would otherwise pin the body's allocation
    /// (up to the 4 MiB cap) for as long as it lives, one per pooled connection.
    #[test]
    fn a_large_body_leaves_the_connection_a_small_buffer() {
        let n = 2 << 20;
        let mut buf = BytesMut::with_capacity(n + READ_CHUNK / 4);
        buf.extend_from_slice(&vec![b'x'; n]);
        let Step::Done(body) =
            WholeReader::new(BodyFraming::Length(n as u64), 4 << 20).step(&mut buf)
        else {
            panic!("not done")
        };
        assert_eq!(body.len(), n);
        drop(body);
        assert!(
            !buf.try_reclaim(4 * READ_CHUNK),
            "the pooled connection's buffer still holds the body's allocation"
        );
        // Chunked: the framing was scanned in place, in a buffer grown for it.
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        for _ in 0..64 {
            buf.extend_from_slice(b"8000\r\n");
            buf.extend_from_slice(&vec![b'y'; 0x8000]);
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"0\r\n\r\n");
        let mut r = WholeReader::new(BodyFraming::Chunked, 4 << 20);
        assert!(matches!(r.step(&mut buf), Step::Done(b) if b.len() == 64 * 0x8000));
        assert!(buf.is_empty());
        assert!(
            !buf.try_reclaim(4 * READ_CHUNK),
            "the pooled connection's buffer still holds the chunked body's framing allocation"
        );
    }

    #[test]
    fn a_chunked_body_is_its_data() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        // Split anywhere, the result is the same.
        for split in 0..wire.len() {
            let mut r = WholeReader::new(BodyFraming::Chunked, 1000);
            let mut buf = BytesMut::from(&wire[..split]);
            let mut step = r.step(&mut buf);
            buf.extend_from_slice(&wire[split..]);
            if step == Step::More {
                step = r.step(&mut buf);
            }
            assert_eq!(
                step,
                Step::Done(Bytes::from_static(b"hello world")),
                "{split}"
            );
            assert_eq!(&buf[..], b"NEXT", "{split}");
        }
        // Past the cap (framing counted): relayed, nothing consumed.
        let mut buf = BytesMut::from(&b"1\r\na\r\n".repeat(5)[..]);
        let mut r = WholeReader::new(BodyFraming::Chunked, 20);
        assert_eq!(r.step(&mut buf), Step::Relay);
        assert_eq!(buf.len(), 30);
        // Malformed framing.
        let mut buf = BytesMut::from(&b"zz\r\nhello\r\n"[..]);
        assert_eq!(
            WholeReader::new(BodyFraming::Chunked, 100).step(&mut buf),
            Step::Malformed
        );
    }

    #[test]
    fn empty_and_close_delimited_bodies() {
        let mut buf = BytesMut::from(&b"rest"[..]);
        assert_eq!(
            WholeReader::new(BodyFraming::Empty, 0).step(&mut buf),
            Step::Done(Bytes::new())
        );
        assert_eq!(
            WholeReader::new(BodyFraming::UntilClose, 100).step(&mut buf),
            Step::Relay
        );
        assert_eq!(&buf[..], b"rest");
    }
}
