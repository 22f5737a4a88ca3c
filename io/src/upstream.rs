//! Per-worker upstream connection pools: keep-alive connections by backend, never shared across
//! threads, never reused after an error. A connection is plain TCP or TLS over TCP ([`UpStream`]).
//!
//! A connection goes back to the pool only when its response was read to the end with nothing
//! behind it. Idle connections expire after the configured `upstream_idle_timeout` (met when
//! taken, and swept by [`UpstreamPools::sweep`]); one with bytes waiting or closed by the upstream
//! while idle is dropped when taken, which is no failure of the backend.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::ClientTlsStream;

use crate::conn::Conn;
use crate::metrics::WorkerMetrics;
use crate::tls::Transport;

/// The stream of an upstream connection: plain TCP, or TLS over it (boxed: a TLS session is large
/// and pooled connections move around).
pub enum UpStream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`, handshake done.
    Tls(Box<TlsUp>),
}

/// A TLS upstream stream that remembers an operation cut short.
///
/// monoio-rustls (safe IO mode) lends its own buffer to the socket during a read or write; if
/// that future is dropped (a timeout) the buffer goes with it and the next operation would
/// panic. Callers close a connection after any timeout anyway; this turns a slip into an error.
pub struct TlsUp {
    stream: ClientTlsStream<TcpStream>,
    interrupted: bool,
    /// The TCP socket under the TLS session (monoio-rustls does not lend it out), for peeking.
    fd: RawFd,
}

fn interrupted() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "TLS stream unusable after an interrupted operation",
    )
}

impl UpStream {
    /// False once a TLS operation was cut short: the connection must not be reused.
    pub fn usable(&self) -> bool {
        match self {
            UpStream::Plain(_) => true,
            UpStream::Tls(t) => !t.interrupted,
        }
    }

    /// The TCP socket.
    fn raw_fd(&self) -> RawFd {
        match self {
            UpStream::Plain(s) => s.as_raw_fd(),
            UpStream::Tls(t) => t.fd,
        }
    }

    /// Is the socket silent: no bytes waiting, no EOF, no error? Only such an idle connection may
    /// carry a request. Bytes on an idle connection are an answer nobody asked for (or, for TLS,
    /// records we would have to read first); EOF means the upstream closed it meanwhile.
    fn quiet(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: the fd is the socket this stream owns and keeps open while `self` lives; the
        // buffer is one valid writable byte, as the length says. MSG_PEEK leaves any data in the
        // socket and MSG_DONTWAIT makes the call return at once whatever the socket's mode; no
        // other operation is in flight on an idle pooled connection.
        let n = unsafe {
            libc::recv(
                self.raw_fd(),
                std::ptr::addr_of_mut!(byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

impl AsyncReadRent for UpStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Plain(s) => s.read(buf).await,
            UpStream::Tls(t) if t.interrupted => (Err(interrupted()), buf),
            UpStream::Tls(t) => {
                t.interrupted = true;
                let r = t.stream.read(buf).await;
                t.interrupted = false;
                r
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Plain(s) => s.readv(buf).await,
            UpStream::Tls(t) if t.interrupted => (Err(interrupted()), buf),
            UpStream::Tls(t) => {
                t.interrupted = true;
                let r = t.stream.readv(buf).await;
                t.interrupted = false;
                r
            }
        }
    }
}

impl AsyncWriteRent for UpStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Plain(s) => s.write(buf).await,
            UpStream::Tls(t) if t.interrupted => (Err(interrupted()), buf),
            UpStream::Tls(t) => {
                t.interrupted = true;
                let r = t.stream.write(buf).await;
                t.interrupted = false;
                r
            }
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpStream::Plain(s) => s.writev(buf).await,
            UpStream::Tls(t) if t.interrupted => (Err(interrupted()), buf),
            UpStream::Tls(t) => {
                t.interrupted = true;
                let r = t.stream.writev(buf).await;
                t.interrupted = false;
                r
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            UpStream::Plain(s) => s.flush().await,
            UpStream::Tls(t) if t.interrupted => Err(interrupted()),
            UpStream::Tls(t) => {
                t.interrupted = true;
                let r = t.stream.flush().await;
                t.interrupted = false;
                r
            }
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            UpStream::Plain(s) => s.shutdown().await,
            UpStream::Tls(t) if t.interrupted => Err(interrupted()),
            UpStream::Tls(t) => {
                t.interrupted = true;
                let r = t.stream.shutdown().await;
                t.interrupted = false;
                r
            }
        }
    }
}

/// A request that failed on a reused connection before any byte of an answer may be sent again
/// on a new one only if the connection had been idle at least this long: then the likely story is
/// the upstream's keep-alive timer closing it as we wrote (servers use 2 s and more). A connection
/// idle for less that fails is a real failure, and the request may have been acted on.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// An upstream connection; the open-connections gauge follows its life.
pub struct UpConn {
    /// The connection and its read buffer.
    pub conn: Conn<UpStream>,
    /// It came from the pool (so it may have been closed by the upstream meanwhile).
    pub reused: bool,
    /// How long it sat idle in the pool before this use (zero for a new connection).
    pub idle_for: Duration,
    /// When it was last returned to the pool.
    idle_since: Instant,
    metrics: Arc<WorkerMetrics>,
}

impl UpConn {
    /// May a request that failed on this connection with nothing of an answer read be sent again
    /// on a new connection? Only for a pooled one idle for [`STALE_AFTER`] or more.
    pub fn may_resend(&self) -> bool {
        self.reused && self.idle_for >= STALE_AFTER
    }
}

impl Drop for UpConn {
    fn drop(&mut self) {
        WorkerMetrics::gauge_add(&self.metrics.upstream_conns, -1);
    }
}

/// Idle connections of one worker, by backend key.
pub struct UpstreamPools {
    idle: RefCell<HashMap<String, Vec<UpConn>>>,
    metrics: Arc<WorkerMetrics>,
}

impl UpstreamPools {
    /// Empty pools reporting into `metrics`.
    pub fn new(metrics: Arc<WorkerMetrics>) -> Self {
        UpstreamPools {
            idle: RefCell::new(HashMap::new()),
            metrics,
        }
    }

    /// The most recently returned idle connection for `key` (warmest first) that is still
    /// usable: one idle for `idle_timeout` or more, or with bytes waiting, or closed by the
    /// upstream, is dropped on the way (no failure of the backend: nothing was asked of it).
    pub fn take(&self, key: &str, idle_timeout: Duration) -> Option<UpConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some(mut c) = list.pop() {
            let idle_for = c.idle_since.elapsed();
            if idle_for >= idle_timeout || !c.conn.io.quiet() {
                continue;
            }
            c.reused = true;
            c.idle_for = idle_for;
            return Some(c);
        }
        None
    }

    /// Return a healthy connection whose last response was read completely.
    pub fn put(&self, key: &str, mut conn: UpConn, max_idle: usize) {
        if !conn.conn.buf.is_empty() || !conn.conn.io.usable() {
            return; // leftover bytes mean the framing is off, or a TLS operation was cut: never reuse.
        }
        conn.idle_since = Instant::now();
        // A buffer that grew for a large answer (read whole first, or relayed after being
        // scanned) is not kept idle, one per pooled connection.
        conn.conn.shrink();
        let mut idle = self.idle.borrow_mut();
        // The key is copied only the first time a backend's list is made (lists are kept even
        // when empty, so that is once per backend and config).
        if let Some(list) = idle.get_mut(key) {
            if list.len() < max_idle {
                list.push(conn);
            }
        } else if max_idle > 0 {
            idle.insert(key.to_string(), vec![conn]);
        }
    }

    /// Close idle connections that expired or that the upstream closed (or wrote to) meanwhile,
    /// so they do not hold sockets until the next request for their backend. Called periodically
    /// by each worker.
    pub fn sweep(&self, idle_timeout: Duration) {
        let mut idle = self.idle.borrow_mut();
        for list in idle.values_mut() {
            list.retain(|c| c.idle_since.elapsed() < idle_timeout && c.conn.io.quiet());
        }
    }

    /// Drop idle connections of backends whose key is not in `keep` (after a reload).
    pub fn retain(&self, keep: &[String]) {
        self.idle
            .borrow_mut()
            .retain(|k, _| keep.iter().any(|x| x == k));
    }

    /// Open a new connection to the first address that answers within `timeout`; for TLS the
    /// handshake is part of the attempt (and of its timeout).
    ///
    /// A TLS failure (certificate not trusted, name mismatch, handshake refused) ends the attempt
    /// at once: other addresses of the same name would present the same certificate.
    ///
    /// # Errors
    /// The last connect error, a TLS error, or `TimedOut`.
    pub async fn connect(
        &self,
        addrs: &[SocketAddr],
        timeout: Duration,
        how: &Transport,
    ) -> io::Result<UpConn> {
        if let Transport::Unusable(why) = how {
            return Err(io::Error::other(why.clone()));
        }
        let mut last = io::Error::new(io::ErrorKind::NotFound, "backend has no address");
        for addr in addrs {
            match monoio::time::timeout(timeout, open(*addr, how)).await {
                Ok(Ok(s)) => {
                    WorkerMetrics::gauge_add(&self.metrics.upstream_conns, 1);
                    let c = &self.metrics.upstream_connects;
                    c.store(
                        c.load(std::sync::atomic::Ordering::Relaxed) + 1,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    return Ok(UpConn {
                        conn: Conn::new(s),
                        reused: false,
                        idle_for: Duration::ZERO,
                        idle_since: Instant::now(),
                        metrics: self.metrics.clone(),
                    });
                }
                Ok(Err(Failed::Tcp(e))) => last = e,
                Ok(Err(Failed::Tls(e))) => return Err(e),
                Err(_) => {
                    let what = if matches!(how, Transport::Tls { .. }) {
                        "connect and TLS handshake"
                    } else {
                        "connect"
                    };
                    last = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{what} to {addr} timed out"),
                    );
                }
            }
        }
        Err(last)
    }
}

/// Why opening one address failed.
enum Failed {
    /// Before or while connecting: the next address may do better.
    Tcp(io::Error),
    /// The TLS handshake: final.
    Tls(io::Error),
}

/// Connect to `addr` and, for TLS, handshake.
async fn open(addr: SocketAddr, how: &Transport) -> Result<UpStream, Failed> {
    let s = TcpStream::connect(addr).await.map_err(Failed::Tcp)?;
    // Heads and small bodies go out in one write; without this, Nagle would hold a second small
    // segment for the upstream's delayed ACK.
    s.set_nodelay(true).map_err(Failed::Tcp)?;
    let fd = s.as_raw_fd();
    match how {
        Transport::Plain => Ok(UpStream::Plain(s)),
        Transport::Tls {
            connector,
            server_name,
        } => match connector.connect(server_name.clone(), s).await {
            Ok(stream) => Ok(UpStream::Tls(Box::new(TlsUp {
                stream,
                interrupted: false,
                fd,
            }))),
            Err(e) => {
                let e = io::Error::from(e);
                let kind = e.kind();
                let e = io::Error::new(
                    kind,
                    format!(
                        "TLS handshake with {addr} (server name {}) failed: {e}",
                        server_name.to_str()
                    ),
                );
                // rustls' own verdicts (InvalidData, Other) are final; a reset or EOF mid-handshake
                // is the network's, and the next address may do better.
                Err(
                    if matches!(kind, io::ErrorKind::InvalidData | io::ErrorKind::Other) {
                        Failed::Tls(e)
                    } else {
                        Failed::Tcp(e)
                    },
                )
            }
        },
        Transport::Unusable(why) => Err(Failed::Tls(io::Error::other(why.clone()))),
    }
}
