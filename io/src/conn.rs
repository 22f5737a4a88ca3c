//! A connection: the socket plus its one read buffer, with reads that append into spare capacity
//! and hand the buffer back (monoio's ownership-passing IO).
//!
//! A connection starts without a buffer (the first read takes one). A client connection gives it
//! back between requests ([`Conn::release`], to a per-worker pool) and waits for its next request
//! with [`Conn::idle`], a readiness wait that holds no buffer: an idle keep-alive connection costs
//! its task and socket, not a read buffer in flight. (A pooled upstream connection keeps its
//! buffer: at most `max_idle_per_backend` of them per backend and worker.)

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use crate::peer::ClientIo;

/// Free space for a read (taken when the first byte is due): enough for a typical head or SSE
/// burst.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// A buffer larger than this is replaced by a fresh one between requests.
const SHRINK_ABOVE: usize = 4 * READ_CHUNK;

/// Most released read buffers a worker keeps for the next reads.
const POOL_MAX: usize = 256;

thread_local! {
    /// Read buffers given back by connections between requests, for the next ones: a busy worker
    /// then takes and frees no memory per request (freeing 16 KiB at a time makes the allocator
    /// give pages back to the kernel and fault them in again, a cost of its own).
    static POOL: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty buffer with room for a read: a pooled one, or a new one.
fn take_buffer() -> BytesMut {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
}

/// Keep `buf` (empty) for another read if its memory is its own and of the usual size.
fn give_buffer(mut buf: BytesMut) {
    if !buf.try_reclaim(READ_CHUNK) || buf.capacity() > SHRINK_ABOVE {
        return; // grown for a large body, or still shared with bytes handed out: let it go
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}

/// Replace a buffer that grew past [`SHRINK_ABOVE`] by a fresh [`READ_CHUNK`] one holding the
/// same bytes (when they fit).
///
/// `capacity()` counts only the room behind bytes already split off: a buffer grown for a large
/// body that was handed on as `Bytes` reports little, yet holds the whole allocation once that
/// body is dropped. Asking for the room back (which moves nothing but the few bytes kept) finds
/// it.
fn shrink(buf: &mut BytesMut) {
    if buf.len() <= READ_CHUNK && (buf.capacity() > SHRINK_ABOVE || buf.try_reclaim(SHRINK_ABOVE)) {
        let mut fresh = BytesMut::with_capacity(READ_CHUNK);
        fresh.extend_from_slice(buf);
        *buf = fresh;
    }
}

/// A stream and the buffer its reads fill.
pub struct Conn<S> {
    /// The socket.
    pub io: S,
    /// Bytes read but not consumed yet.
    pub buf: BytesMut,
}

/// Why a read gave up.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Eof,
    /// Nothing arrived in time. The read was cancelled, so the connection must be closed.
    #[error("timed out")]
    Timeout,
    /// Socket error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl<S: AsyncReadRent + AsyncWriteRent> Conn<S> {
    /// Wrap a stream; no buffer until the first read.
    pub fn new(io: S) -> Self {
        Conn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Give back a buffer that grew for a large body once the request is done, so an idle
    /// keep-alive connection (client, or upstream going back to its pool) holds [`READ_CHUNK`]
    /// at most (bytes already read are kept).
    pub fn shrink(&mut self) {
        shrink(&mut self.buf);
    }

    /// Once a request is done: free the buffer when nothing is left in it, else give back what
    /// it grew for a large body (bytes already read, a pipelined request, are kept).
    pub fn release(&mut self) {
        if self.buf.is_empty() {
            give_buffer(std::mem::take(&mut self.buf));
        } else {
            shrink(&mut self.buf);
        }
    }

    /// Read once, appending to `buf`; returns how many bytes arrived.
    ///
    /// If this future is dropped mid-read the buffer is lost with it (monoio owns it while the
    /// operation is in flight), which is why every timeout around it closes the connection.
    ///
    /// # Errors
    /// EOF and socket errors.
    pub async fn fill(&mut self) -> Result<usize, ReadError> {
        self.fill_max(usize::MAX).await
    }

    /// [`fill`](Self::fill) taking at most `max` bytes: the part of the buffer a read may touch.
    async fn fill_max(&mut self, max: usize) -> Result<usize, ReadError> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            buf = take_buffer();
        } else if buf.is_empty() {
            // Everything was consumed: read from the start of the allocation again (no copy), so
            // short reads keep touching the same few pages.
            let _ = buf.try_reclaim(READ_CHUNK);
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let end = cap.min(len.saturating_add(max));
        let (res, slice) = self.io.read(buf.slice_mut(len..end)).await;
        self.buf = slice.into_inner();
        match res {
            Ok(0) => Err(ReadError::Eof),
            Ok(n) => Ok(n),
            Err(e) => Err(ReadError::Io(e)),
        }
    }

    /// [`fill`](Self::fill) bounded by `limit`.
    ///
    /// # Errors
    /// As `fill`, plus [`ReadError::Timeout`].
    pub async fn fill_within(&mut self, limit: Duration) -> Result<usize, ReadError> {
        self.fill_within_max(limit, usize::MAX).await
    }

    /// [`fill_within`](Self::fill_within) taking at most `max` bytes (at least one).
    ///
    /// # Errors
    /// As `fill_within`.
    pub async fn fill_within_max(
        &mut self,
        limit: Duration,
        max: usize,
    ) -> Result<usize, ReadError> {
        crate::timer::within(limit, self.fill_max(max.max(1)))
            .await
            .unwrap_or(Err(ReadError::Timeout))
    }

    /// Write all of `data` (anything monoio can send: `Bytes`, `BytesMut`, `Vec<u8>`), returning it.
    ///
    /// # Errors
    /// Socket errors.
    pub async fn write<B: monoio::buf::IoBuf + 'static>(&mut self, data: B) -> (io::Result<()>, B) {
        let (res, data) = self.io.write_all(data).await;
        (res.map(|_| ()), data)
    }
}

impl<S: ClientIo> Conn<S> {
    /// Wait up to `limit` for the peer to send something, holding no buffer while waiting, and
    /// take what arrived (see [`ClientIo::try_read`]). False when the time ran out, the peer
    /// closed or the socket failed: the connection is done. Bytes already buffered count.
    pub async fn idle(&mut self, limit: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !matches!(
                crate::timer::within(left, self.io.readable()).await,
                Some(Ok(()))
            ) {
                return false;
            }
            if self.buf.capacity() == 0 {
                self.buf = take_buffer();
            }
            match self.io.try_read(&mut self.buf, READ_CHUNK / 4) {
                None | Some(Ok(1..)) => return true,
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    // A readiness that did not hold: wait again, without the buffer.
                    give_buffer(std::mem::take(&mut self.buf));
                }
                Some(Ok(0) | Err(_)) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer grown for a large body that was then split off (handed on as `Bytes`, as a
    /// request body or a response read whole is) reports only the capacity left behind the body,
    /// yet still holds the whole allocation once the body is dropped: an idle connection must
    /// not keep it.
    #[test]
    fn a_buffer_whose_large_body_was_split_off_shrinks() {
        let n = 2 << 20;
        let mut buf = BytesMut::with_capacity(n + READ_CHUNK / 4);
        buf.extend_from_slice(&vec![b'x'; n]);
        let body = buf.split_to(n).freeze();
        assert!(buf.capacity() <= READ_CHUNK, "only the slack is reported");
        drop(body);
        shrink(&mut buf);
        assert!(
            !buf.try_reclaim(SHRINK_ABOVE),
            "the idle buffer still holds the body's allocation"
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn a_grown_buffer_shrinks_and_keeps_its_bytes() {
        let mut buf = BytesMut::with_capacity(8 * 1024 * 1024);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
        shrink(&mut buf);
        assert_eq!(buf.capacity(), READ_CHUNK);
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
        let mut small = BytesMut::with_capacity(READ_CHUNK);
        let ptr = small.as_ptr();
        shrink(&mut small);
        assert_eq!(small.as_ptr(), ptr, "a normal buffer is kept");
        let mut full = BytesMut::with_capacity(8 * READ_CHUNK);
        full.extend_from_slice(&vec![b'x'; 2 * READ_CHUNK]);
        shrink(&mut full);
        assert_eq!(full.len(), 2 * READ_CHUNK, "unread bytes are never dropped");
    }
}
