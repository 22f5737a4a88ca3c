//! Per-worker upstream connection pools: keep-alive connections by backend, never shared across
//! threads, never reused after an error. A connection is plain TCP or TLS over TCP ([`UpStream`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// An upstream connection; the open-connections gauge follows its life.
pub struct UpConn {
    /// The connection and its read buffer.
    pub conn: Conn<UpStream>,
    /// It came from the pool (so it may have been closed by the upstream meanwhile).
    pub reused: bool,
    metrics: Arc<WorkerMetrics>,
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

    /// The most recently returned idle connection for `key`, if any (warmest first).
    pub fn take(&self, key: &str) -> Option<UpConn> {
        let mut c = self.idle.borrow_mut().get_mut(key)?.pop()?;
        c.reused = true;
        Some(c)
    }

    /// Return a healthy connection whose last response was read completely.
    pub fn put(&self, key: &str, conn: UpConn, max_idle: usize) {
        if !conn.conn.buf.is_empty() || !conn.conn.io.usable() {
            return; // leftover bytes mean the framing is off, or a TLS operation was cut: never reuse.
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key.to_string()).or_default();
        if list.len() < max_idle {
            list.push(conn);
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
    match how {
        Transport::Plain => Ok(UpStream::Plain(s)),
        Transport::Tls {
            connector,
            server_name,
        } => match connector.connect(server_name.clone(), s).await {
            Ok(stream) => Ok(UpStream::Tls(Box::new(TlsUp {
                stream,
                interrupted: false,
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
