//! A fixed upstream for the allocation bench, on the bench's own (uncounted) threads: a chat
//! completion with `usage` as JSON, or with a request header `x-events: N`, an SSE stream of N
//! content events, a usage event and `[DONE]`, chunked, one chunk (one write) per event, as
//! OpenAI sends them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

const JSON: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello, gateway, from the bench!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":9,"total_tokens":35}}"#;
const EVENT: &str = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}"#;
const USAGE: &str = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":26,"completion_tokens":9,"total_tokens":35}}"#;

/// Start listening; returns the address.
pub(crate) fn start() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        super::exclude_this_thread();
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                super::exclude_this_thread();
                let _ = serve(s);
            });
        }
    });
    addr
}

fn serve(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(1 << 16);
    let mut chunk = [0u8; 16384];
    let json = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{JSON}",
        JSON.len()
    );
    loop {
        // One request: its head, then its Content-Length body.
        let (end, len, events) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let field = |name: &str| {
                    head.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                };
                break (
                    end + 4,
                    field("content-length:").unwrap_or(0),
                    field("x-events:"),
                );
            }
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        while buf.len() < end + len {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..end + len);
        match events {
            None => s.write_all(json.as_bytes())?,
            Some(n) => {
                s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                )?;
                let chunk = |data: &str| format!("{:x}\r\n{data}\n\n\r\n", data.len() + 2);
                let event = chunk(EVENT);
                for _ in 0..n {
                    s.write_all(event.as_bytes())?;
                }
                s.write_all(chunk(USAGE).as_bytes())?;
                s.write_all(chunk("data: [DONE]").as_bytes())?;
                s.write_all(b"0\r\n\r\n")?;
            }
        }
    }
}
