//! A scripted upstream for playing broken or hostile backends: a std `TcpListener` thread that
//! reads each request (head plus `Content-Length` body), records it, and answers with whatever
//! bytes, pauses and closes the script returns for it.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One thing the upstream does after reading a request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Wait.
    Sleep(Duration),
    /// Close the connection (no more requests read on it).
    Close,
}

/// `Step::Send` of a string.
pub fn send(s: &str) -> Step {
    Step::Send(s.as_bytes().to_vec())
}

/// A complete `200` JSON answer with `Content-Length`.
pub fn ok_json(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A chat completion body that names `who` (so a test can tell whose answer it got).
pub fn completion(who: &str) -> String {
    format!(
        "{{\"id\":\"{who}\",\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{who}\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}}}"
    )
}

/// What the script gets: the request's number (0-based, over all connections), the number of the
/// connection it came on (0-based, in accept order) and its bytes.
pub type Script = dyn Fn(usize, usize, &[u8]) -> Vec<Step> + Send + Sync;

struct State {
    requests: Mutex<Vec<(usize, Vec<u8>)>>,
    accepted: AtomicUsize,
    /// Connections on which the gateway closed its side (EOF while waiting for a request).
    closed_by_peer: AtomicUsize,
    stop: AtomicBool,
}

/// A running scripted upstream; stops accepting on drop.
pub struct Evil {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Evil {
    pub fn start(
        script: impl Fn(usize, usize, &[u8]) -> Vec<Step> + Send + Sync + 'static,
    ) -> Evil {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind evil upstream");
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            closed_by_peer: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let script: Arc<Script> = Arc::new(script);
        let st = state.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = s else { continue };
                let conn = st.accepted.fetch_add(1, Ordering::SeqCst);
                let (st, script) = (st.clone(), script.clone());
                std::thread::spawn(move || serve(s, conn, &st, &*script));
            }
        });
        Evil { addr, state }
    }

    /// Every request received so far, in order, with the connection number it came on.
    pub fn requests(&self) -> Vec<(usize, Vec<u8>)> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many received requests contain `needle`.
    pub fn count_containing(&self, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(_, r)| r.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .count()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections the gateway closed while they were idle.
    pub fn closed_by_peer(&self) -> usize {
        self.state.closed_by_peer.load(Ordering::SeqCst)
    }

    /// Wait until `cond` holds, up to `limit`.
    pub fn wait_for(&self, limit: Duration, cond: impl Fn(&Evil) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cond(self)
    }
}

impl Drop for Evil {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

fn serve(mut s: TcpStream, conn: usize, st: &State, script: &Script) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut s, &mut buf) else {
            st.closed_by_peer.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let n = {
            let mut r = st.requests.lock().unwrap_or_else(|p| p.into_inner());
            r.push((conn, req.clone()));
            r.len() - 1
        };
        for step in script(n, conn, &req) {
            match step {
                Step::Send(b) => {
                    if s.write_all(&b).is_err() {
                        return;
                    }
                }
                Step::Sleep(d) => std::thread::sleep(d),
                Step::Close => return,
            }
        }
    }
}

/// One request (head and `Content-Length` body) from the front of `buf`, reading as needed;
/// `None` at EOF or on an error.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let total = end + 4 + len;
            if buf.len() >= total {
                return Some(buf.drain(..total).collect());
            }
        }
        let mut tmp = [0u8; 16 * 1024];
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// Read everything until the peer closes (or `limit` passes): for checking exact framing.
pub fn read_to_close(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let _ = s.set_read_timeout(Some(limit));
    let mut out = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    while let Ok(n) = s.read(&mut tmp) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&tmp[..n]);
    }
    out
}
