//! A raw HTTP/1.1 client over `std::net::TcpStream`: sends exact bytes (pipelining, malformed
//! heads, chunked bodies) and decodes responses, with read timeouts so a hung server fails a test
//! instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Default read timeout of the test client.
pub const READ_LIMIT: Duration = Duration::from_secs(10);

/// Encode a request: `Host` first, then `headers`, then `Content-Length` when there is a body or
/// the method is POST (unless `headers` already frame it).
pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: test.local\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed && (!body.is_empty() || method == "POST") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut v = out.into_bytes();
    v.extend_from_slice(body);
    v
}

/// A chat request body.
pub fn chat_body(model: Option<&str>, stream: bool) -> String {
    let mut v = serde_json::json!({"messages": [{"role": "user", "content": "hello there"}]});
    if let Some(m) = model {
        v["model"] = Value::from(m);
    }
    if stream {
        v["stream"] = Value::from(true);
    }
    v.to_string()
}

/// A streamed response with the times (from the request) its events arrived.
#[derive(Debug)]
pub struct Streamed {
    /// The whole response.
    pub response: Response,
    /// When the first `data:` event arrived.
    pub first: Duration,
    /// When `data: [DONE]` arrived.
    pub done: Duration,
    /// (time, events so far) for every read that brought new events.
    pub arrivals: Vec<(Duration, usize)>,
}

/// One decoded response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// Assert `status` and an OpenAI-shaped `{"error":{"message","type","code"}}` body; returns
    /// the message.
    pub fn assert_openai_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            self.headers
        );
        let v = self.json();
        let e = &v["error"];
        for k in ["message", "type", "code"] {
            assert!(e[k].is_string(), "error.{k} missing or not a string: {v}");
        }
        e["message"].as_str().unwrap_or_default().to_string()
    }
}

/// A blocking HTTP/1.1 client connection that sends exact bytes.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_LIMIT))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_timeout(&mut self, d: Duration) {
        self.stream
            .set_read_timeout(Some(d))
            .expect("set_read_timeout");
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to aigw");
    }

    /// Send one request and read its final response.
    pub fn call(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send(&request(method, target, headers, body));
        self.read_response()
    }

    pub fn read_response(&mut self) -> Response {
        self.try_read_response()
            .unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    pub fn try_read_response(&mut self) -> io::Result<Response> {
        self.read_response_with(|_| {})
    }

    /// POST a streaming request and time its events: when the first `data:` event and the
    /// `data: [DONE]` arrived, and each read that brought new events. Asserts a 200 SSE answer.
    pub fn stream(&mut self, target: &str, body: &[u8]) -> Streamed {
        let start = std::time::Instant::now();
        self.send(&request("POST", target, &[], body));
        let (mut first, mut done) = (None, None);
        let mut arrivals = Vec::new();
        let response = self
            .read_response_with(|body| {
                let t = start.elapsed();
                let events = body.windows(5).filter(|w| w == b"data:").count();
                if events > 0 && first.is_none() {
                    first = Some(t);
                }
                if done.is_none() && body.windows(12).any(|w| w == b"data: [DONE]") {
                    done = Some(t);
                }
                if arrivals.last().is_none_or(|&(_, n)| n < events) {
                    arrivals.push((t, events));
                }
            })
            .expect("streamed response");
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(
            response
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{:?}",
            response.headers
        );
        Streamed {
            first: first.expect("no data: event"),
            done: done.expect("no [DONE]"),
            arrivals,
            response,
        }
    }

    /// Read one response; `progress` sees the decoded body so far after every socket read.
    pub fn read_response_with(&mut self, mut progress: impl FnMut(&[u8])) -> io::Result<Response> {
        let (status, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 128];
            let mut r = httparse::Response::new(&mut slots);
            match r
                .parse(&self.buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                httparse::Status::Complete(n) => {
                    let headers = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    break (r.code.unwrap_or(0), headers, n);
                }
                httparse::Status::Partial => {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed before a response head",
                        ));
                    }
                }
            }
        };
        self.buf.drain(..head_len);
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = resp
            .header("content-length")
            .map(|v| v.trim().parse::<usize>());
        if chunked {
            resp.body = self.read_chunked(&mut progress)?;
        } else if let Some(n) = length {
            let n = n.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            while self.buf.len() < n {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed inside a body",
                    ));
                }
                progress(&self.buf[..self.buf.len().min(n)]);
            }
            resp.body = self.buf.drain(..n).collect();
        } else {
            while self.fill()? > 0 {
                progress(&self.buf);
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    fn read_chunked(&mut self, progress: &mut impl FnMut(&[u8])) -> io::Result<Vec<u8>> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
        let mut body = Vec::new();
        loop {
            // Decode every complete chunk in the buffer.
            while let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = std::str::from_utf8(&self.buf[..eol]).map_err(|_| bad("chunk size"))?;
                let size_hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("chunk size"))?;
                if size == 0 {
                    // Trailers end with an empty line; we send none and expect none.
                    if self.buf.len() < eol + 4 {
                        break;
                    }
                    if &self.buf[eol + 2..eol + 4] != b"\r\n" {
                        return Err(bad("trailers"));
                    }
                    self.buf.drain(..eol + 4);
                    progress(&body);
                    return Ok(body);
                }
                if self.buf.len() < eol + 2 + size + 2 {
                    break;
                }
                body.extend_from_slice(&self.buf[eol + 2..eol + 2 + size]);
                if &self.buf[eol + 2 + size..eol + 4 + size] != b"\r\n" {
                    return Err(bad("chunk data not followed by CRLF"));
                }
                self.buf.drain(..eol + 4 + size);
            }
            progress(&body);
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed inside a chunked body",
                ));
            }
        }
    }

    /// Read more bytes into the buffer; 0 at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Does the server close the connection within `limit` (EOF or reset, with nothing more sent)?
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.set_timeout(limit);
        let mut tmp = [0u8; 1024];
        let r = self.stream.read(&mut tmp);
        self.set_timeout(READ_LIMIT);
        match r {
            Ok(0) => true,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                false
            }
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
        }
    }
}
