//! Criterion benchmarks for aigw; the library holds only the loopback client the benches share.
//!
//! The benches live in `benches/`; each measures an aigw-core parser next to the raw crate it wraps,
//! in the same criterion group, so the overhead of the wrapper is read off as a ratio:
//!
//! - `parse`: `decode_request_head` vs `httparse::Request::parse` on the same bytes,
//!   `decode_response_head` vs `httparse::Response::parse`, and the chunked decoder over a 16 KiB
//!   SSE-like body.
//! - `peek`: `openai::peek` vs `serde_json::from_slice::<Value>` on 1 KiB and 64 KiB chat bodies.
//! - `estimate`: `tokens::estimate_prompt` (borrowing visitors) vs the `Value`-tree estimate it
//!   replaced, on a 180-byte and a 64 KiB chat body, with allocations per call.
//! - `roundtrip`: a loopback round trip through aigw against the mock alone.
//! - `allocs` (no criterion): heap allocations per request through the gateway in process.
//! - `bodywrite`: a small body copied behind its head and written once, against `writev` and
//!   against two writes.
//!
//! Run with `cargo bench -p aigw-benches --bench parse -- --quick` (or without `--quick` for
//! the full measurement).

/// A blocking keep-alive HTTP/1.1 client over loopback, and helpers to start servers for it.
pub mod loopback {
    // A bench whose setup fails may panic.
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    /// A port that was free a moment ago.
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0)
    }

    /// Wait (up to 10 s) until `addr` accepts connections.
    pub fn wait_up(addr: SocketAddr) {
        for _ in 0..400 {
            if TcpStream::connect(addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{addr} did not come up");
    }

    /// A keep-alive client reading Content-Length and chunked answers.
    pub struct Client {
        s: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        /// Connect to `addr` (no Nagle, 10 s read timeout).
        pub fn connect(addr: SocketAddr) -> Client {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            Client {
                s,
                buf: Vec::with_capacity(1 << 16),
            }
        }

        fn more(&mut self) {
            let mut chunk = [0u8; 16384];
            let n = self.s.read(&mut chunk).expect("read");
            assert!(n > 0, "closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }

        /// Send `req`, read the whole answer; returns its body length.
        pub fn call(&mut self, req: &[u8]) -> usize {
            self.s.write_all(req).expect("write");
            self.buf.clear();
            let end = loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                self.more();
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            if let Some(len) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                while self.buf.len() < end + len {
                    self.more();
                }
                return len;
            }
            // Chunked: walk the chunks until the last one.
            let (mut at, mut body) = (end, 0);
            loop {
                let line = loop {
                    if let Some(p) = self.buf[at..].windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    self.more();
                };
                let size = std::str::from_utf8(&self.buf[at..at + line]).expect("size");
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .expect("chunk size");
                at += line + 2;
                while self.buf.len() < at + size + 2 {
                    self.more();
                }
                at += size + 2;
                body += size;
                if size == 0 {
                    return body;
                }
            }
        }
    }
}
