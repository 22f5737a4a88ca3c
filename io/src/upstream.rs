//! Per-worker upstream connection pools: keep-alive connections by backend, never shared across
//! threads, never reused after an error.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::conn::Conn;
use crate::metrics::WorkerMetrics;

/// An upstream connection; the open-connections gauge follows its life.
pub struct UpConn {
    /// The connection and its read buffer.
    pub conn: Conn<TcpStream>,
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
        UpstreamPools { idle: RefCell::new(HashMap::new()), metrics }
    }

    /// The most recently returned idle connection for `key`, if any (warmest first).
    pub fn take(&self, key: &str) -> Option<UpConn> {
        let mut c = self.idle.borrow_mut().get_mut(key)?.pop()?;
        c.reused = true;
        Some(c)
    }

    /// Return a healthy connection whose last response was read completely.
    pub fn put(&self, key: &str, conn: UpConn, max_idle: usize) {
        if !conn.conn.buf.is_empty() {
            return; // leftover bytes mean the framing is off: never reuse.
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key.to_string()).or_default();
        if list.len() < max_idle {
            list.push(conn);
        }
    }

    /// Drop idle connections of backends whose key is not in `keep` (after a reload).
    pub fn retain(&self, keep: &[String]) {
        self.idle.borrow_mut().retain(|k, _| keep.iter().any(|x| x == k));
    }

    /// Open a new connection to the first address that answers within `timeout`.
    ///
    /// # Errors
    /// The last connect error, or `TimedOut`.
    pub async fn connect(&self, addrs: &[SocketAddr], timeout: Duration) -> io::Result<UpConn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "backend has no address");
        for addr in addrs {
            match monoio::time::timeout(timeout, TcpStream::connect(*addr)).await {
                Ok(Ok(s)) => {
                    // Heads and small bodies go out in one write; without this, Nagle would
                    // hold a second small segment for the upstream's delayed ACK.
                    s.set_nodelay(true)?;
                    WorkerMetrics::gauge_add(&self.metrics.upstream_conns, 1);
                    let c = &self.metrics.upstream_connects;
                    c.store(c.load(std::sync::atomic::Ordering::Relaxed) + 1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(UpConn { conn: Conn::new(s), reused: false, metrics: self.metrics.clone() });
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr} timed out")),
            }
        }
        Err(last)
    }
}
