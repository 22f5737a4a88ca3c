//! A loopback round trip through the gateway (client → aigw → mock → back) against the same
//! request sent to the mock directly: the difference is what the gateway adds per request.
// criterion_group! generates undocumented functions; a failed bench setup may panic.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use aigw_core::config::parse_str;
use aigw_io::runtime::DriverKind;
use aigw_io::workers::{run, Plan};
use criterion::{criterion_group, criterion_main, Criterion};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// One keep-alive client that reads Content-Length responses.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Client {
            s,
            buf: Vec::with_capacity(4096),
        }
    }

    fn call(&mut self, req: &[u8]) -> usize {
        self.s.write_all(req).expect("write");
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.s.read(&mut chunk).expect("read");
            assert!(n > 0, "closed");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("content-length");
                while self.buf.len() < end + 4 + len {
                    let n = self.s.read(&mut chunk).expect("read body");
                    assert!(n > 0, "closed mid-body");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return len;
            }
        }
    }
}

fn wait_up(addr: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{addr} did not come up");
}

fn roundtrip(c: &mut Criterion) {
    let (gw, admin, mock) = (free_port(), free_port(), free_port());
    let toml = format!(
        "[gateway]\nlisten = \"127.0.0.1:{gw}\"\nadmin_listen = \"127.0.0.1:{admin}\"\nworkers = 1\n\
         [log]\naccess = \"off\"\n\
         [mocks.m]\nlisten = \"127.0.0.1:{mock}\"\n\
         [backends.m]\nurl = \"http://127.0.0.1:{mock}\"\n\
         [pools.p]\nmembers = [{{ backend = \"m\" }}]\n[models]\n\"*\" = \"p\"\n"
    );
    let cfg = parse_str(&toml, None).expect("bench config");
    let plan = Plan {
        gateway: true,
        mocks: cfg.mocks.clone(),
        workers: 1,
        driver: DriverKind::from_env().expect("AIGW_DRIVER"),
    };
    // The gateway and its mock run in this process on their own threads for the whole bench.
    std::thread::spawn(move || run(cfg, None, plan, || {}));
    let (gw_addr, mock_addr): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{gw}").parse().expect("addr"),
        format!("127.0.0.1:{mock}").parse().expect("addr"),
    );
    wait_up(gw_addr);
    wait_up(mock_addr);

    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}"#;
    let req = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let direct_req = req("/v1/chat/completions");
    let gw_req = req("/v1/chat/completions");
    let mut direct = Client::connect(mock_addr);
    let mut via = Client::connect(gw_addr);
    // Warm both paths (tokenizer, upstream connection).
    direct.call(&direct_req);
    via.call(&gw_req);

    let mut g = c.benchmark_group("roundtrip");
    g.bench_function("mock_direct", |b| b.iter(|| direct.call(&direct_req)));
    g.bench_function("through_aigw", |b| b.iter(|| via.call(&gw_req)));
    g.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
