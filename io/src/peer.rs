//! Readiness on a client connection, without reading (and so without ever losing, or holding a
//! buffer for) any byte the client sends: noticing that it went away while the gateway waits on
//! its backend, and waiting for its next request.

use std::future::Future;
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

/// A client connection whose hang-up can be watched for.
pub trait ClientIo: AsyncReadRent + AsyncWriteRent {
    /// Resolves once the peer has closed (or reset) the connection. Never resolves while the
    /// connection is open, and never once the peer has sent more bytes (a pipelined request):
    /// those stay in the socket for the next read. Dropping the future costs nothing.
    fn peer_gone(&self) -> impl Future<Output = ()>;

    /// Resolves once a read would not wait (bytes arrived, the peer closed, or an error), without
    /// reading: no buffer is lent to the kernel while it waits. Dropping the future cancels the
    /// wait and loses nothing.
    fn readable(&self) -> impl Future<Output = std::io::Result<()>>;

    /// Read what the socket holds now into `buf`'s spare capacity (at least `room` bytes of it),
    /// without waiting: after [`readable`](Self::readable) this takes the bytes in one system
    /// call instead of a second trip through the runtime. `Ok(0)` is end of file, `WouldBlock`
    /// a readiness that did not hold. `None`: this stream cannot (TLS), read it the usual way.
    fn try_read(&self, _buf: &mut BytesMut, _room: usize) -> Option<std::io::Result<usize>> {
        None
    }
}

impl ClientIo for TcpStream {
    async fn readable(&self) -> std::io::Result<()> {
        // Not relaxed: under the epoll driver a cached readiness from the last read must not
        // end the wait early (the read that follows would then wait holding its buffer).
        TcpStream::readable(self, false).await
    }

    fn try_read(&self, buf: &mut BytesMut, room: usize) -> Option<std::io::Result<usize>> {
        buf.reserve(room);
        let spare = buf.spare_capacity_mut();
        // SAFETY: `recv` writes at most `spare.len()` bytes into the buffer's spare capacity,
        // which `spare` borrows for the call; the descriptor is owned by `self`, and no read of
        // the runtime is in flight on it (the caller's wait for readiness has completed).
        let n = unsafe {
            libc::recv(
                self.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Some(Err(std::io::Error::last_os_error()));
        }
        let n = n as usize;
        // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Some(Ok(n))
    }

    async fn peer_gone(&self) {
        loop {
            if self.readable(false).await.is_err() {
                return;
            }
            let mut byte = 0u8;
            // SAFETY: `recv` writes at most 1 byte into `byte`, which lives across the call; the
            // descriptor is owned by `self` and open for as long as `self` is borrowed.
            let n = unsafe {
                libc::recv(
                    self.as_raw_fd(),
                    (&raw mut byte).cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => return,                                      // orderly close
                n if n > 0 => std::future::pending::<()>().await, // data waits for its read
                _ => match std::io::Error::last_os_error().kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {}
                    _ => return, // reset
                },
            }
        }
    }
}

impl ClientIo for monoio_rustls::ServerTlsStream<TcpStream> {
    /// TLS records may already sit decrypted in the stream: only a read can tell, so this does
    /// not wait (a TLS connection keeps its read buffer while idle).
    async fn readable(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// TLS listeners serve only the built-in mock, which never waits on a backend.
    async fn peer_gone(&self) {
        std::future::pending::<()>().await
    }
}
