//! Noticing that a client went away while the gateway waits on its backend, without reading (and
//! so without ever losing) any byte the client may have sent meanwhile.

use std::future::Future;
use std::os::fd::AsRawFd;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

/// A client connection whose hang-up can be watched for.
pub trait ClientIo: AsyncReadRent + AsyncWriteRent {
    /// Resolves once the peer has closed (or reset) the connection. Never resolves while the
    /// connection is open, and never once the peer has sent more bytes (a pipelined request):
    /// those stay in the socket for the next read. Dropping the future costs nothing.
    fn peer_gone(&self) -> impl Future<Output = ()>;
}

impl ClientIo for TcpStream {
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
    /// TLS listeners serve only the built-in mock, which never waits on a backend.
    async fn peer_gone(&self) {
        std::future::pending::<()>().await
    }
}
