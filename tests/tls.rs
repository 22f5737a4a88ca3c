//! HTTPS backends: a mock serving TLS with a self-signed certificate made at test time (rcgen),
//! a gateway trusting it through `ca_file` (by host name, and by IP with `tls_server_name`), JSON
//! and SSE through it, pooled TLS connections; without the root (or with the wrong name) the
//! backend fails verification like a failed connect: 502, benched, failed over, gateway up.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

both_drivers!(
    chat_through_https_backend,
    sse_streams_through_https_backend,
    unverified_backend_is_a_connect_failure,
    aigw_mock_serves_https,
);

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
struct Pki {
    dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("tls");
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("generate a self-signed certificate");
        let cert = dir.path("cert.pem");
        let key = dir.path("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        Pki { dir, cert, key }
    }

    fn cert(&self) -> String {
        self.cert.display().to_string()
    }

    fn key(&self) -> String {
        self.key.display().to_string()
    }
}

/// A gateway with an in-process TLS mock `up` and one backend per `(name, url, extra keys)`,
/// each in its own pool (never benched) serving the model of the same name.
fn gateway(d: Driver, pki: &Pki, mock_keys: &str, backends: &[(&str, &str, &str)]) -> Gateway {
    let up = free_addr();
    let mut text = format!(
        "[gateway]\nlisten = \"{{addr:listen}}\"\nadmin_listen = \"{{addr:admin}}\"\nworkers = 1\nconnect_timeout = \"2s\"\nupstream_timeout = \"2s\"\n\n\
         [mocks.up]\nlisten = \"{{addr:up}}\"\nregion = \"up\"\ntls_cert = '{}'\ntls_key = '{}'\n{mock_keys}\n",
        pki.cert(),
        pki.key()
    );
    let mut models = String::from("[models]\n");
    for (name, url, keys) in backends {
        let url = url.replace("PORT", &up.port().to_string());
        text += &format!("[backends.{name}]\nurl = \"{url}\"\n{keys}\n[pools.{name}]\nmembers = [{{ backend = \"{name}\" }}]\nbench_for = \"0s\"\n\n");
        models += &format!("\"{name}\" = \"{name}\"\n");
    }
    text += &models;
    Gateway::start_with(d, &text, &[("up", up)])
}

fn chat(c: &mut Client, model: &str, stream: bool) -> Response {
    c.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some(model), stream).as_bytes(),
    )
}

fn chat_raw(c: &mut Client, body: &str) -> Response {
    c.call("POST", "/v1/chat/completions", &[], body.as_bytes())
}

fn assert_chat_json(r: &Response, backend: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-aigw-backend"), Some(backend));
    let v = r.json();
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(content.contains("Mock response from up"), "{v}");
}

fn chat_through_https_backend(d: Driver) {
    let pki = Pki::new();
    let ca = format!("ca_file = '{}'\n", pki.cert());
    let by_ip = format!("{ca}tls_server_name = \"localhost\"\n");
    let gw = gateway(
        d,
        &pki,
        "",
        &[
            ("by-host", "https://localhost:PORT", &ca),
            ("by-ip", "https://127.0.0.1:PORT", &ca),
            ("by-ip-named", "https://127.0.0.1:PORT/", &by_ip),
        ],
    );
    // One client connection, several requests per backend: after the first, every request rides
    // the pooled TLS connection of its backend (one upstream connect per backend in all).
    let mut c = gw.client();
    for round in 0..3 {
        for backend in ["by-host", "by-ip", "by-ip-named"] {
            let r = chat(&mut c, backend, false);
            assert_chat_json(&r, backend);
            assert_eq!(r.header("x-aigw-attempts"), Some("1"), "round {round}");
        }
    }
    assert_eq!(gw.metric("aigw_upstream_connects_total"), 3.0);
    assert_eq!(gw.metric("aigw_upstream_connections"), 3.0);
    // Embeddings (a Content-Length body both ways) too.
    let r = c.call(
        "POST",
        "/v1/embeddings",
        &[],
        br#"{"model":"by-host","input":"hello"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["data"][0]["embedding"].is_array(), "{}", r.text());
    // A body far above one TLS record (and above the head+body coalescing limit).
    let big = serde_json::json!({
        "model": "by-ip-named",
        "messages": [{"role": "user", "content": "x".repeat(100_000)}],
    });
    let r = chat_raw(&mut c, &big.to_string());
    assert_chat_json(&r, "by-ip-named");
    assert_eq!(gw.metric("aigw_upstream_connects_total"), 3.0);
    assert!(
        !gw.proc.stderr().contains("attempt failed"),
        "{}",
        gw.proc.stderr()
    );
    // A TLS read cut short by upstream_timeout: 504, that connection is dropped (never pooled),
    // and the next request opens a fresh one.
    let r = c.call(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-latency-ms", "3000")],
        chat_body(Some("by-host"), false).as_bytes(),
    );
    r.assert_openai_error(504);
    let r = chat(&mut gw.client(), "by-host", false);
    assert_chat_json(&r, "by-host");
    assert_eq!(gw.metric("aigw_upstream_connects_total"), 4.0);
}

fn sse_streams_through_https_backend(d: Driver) {
    let pki = Pki::new();
    let ca = format!("ca_file = '{}'\n", pki.cert());
    let gw = gateway(
        d,
        &pki,
        "chunks = 5\nchunk_delay_ms = 150\n",
        &[("s", "https://localhost:PORT", &ca)],
    );
    let mut c = gw.client();
    for _ in 0..2 {
        let s = c.stream(
            "/v1/chat/completions",
            chat_body(Some("s"), true).as_bytes(),
        );
        let (r, first, done) = (s.response, s.first, s.done);
        assert!(
            first + Duration::from_millis(400) < done,
            "first event at {first:?}, [DONE] at {done:?}: not streamed through TLS"
        );
        let text = r.text();
        assert!(
            text.contains("Mock response from up") || text.contains("\"content\""),
            "{text}"
        );
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    }
    // Both streams used one TLS connection (chunked framing ends cleanly, so it is reused).
    assert_eq!(gw.metric("aigw_upstream_connects_total"), 1.0);
}

fn unverified_backend_is_a_connect_failure(d: Driver) {
    let pki = Pki::new();
    let ca = format!("ca_file = '{}'\n", pki.cert());
    let wrong_name = format!("{ca}tls_server_name = \"api.example.com\"\n");
    let up = free_addr();
    // `untrusted` (and `untrusted2`) have no ca_file (web PKI roots only); `misnamed` trusts the
    // root but expects another name; pool `fallback`: untrusted2 first, a good one second.
    let template = format!(
        r#"
[gateway]
listen = "{{addr:listen}}"
admin_listen = "{{addr:admin}}"
workers = 1

[mocks.up]
listen = "{{addr:up}}"
region = "up"
tls_cert = '{cert}'
tls_key = '{key}'

[backends.untrusted]
url = "https://localhost:{port}"

[backends.untrusted2]
url = "https://localhost:{port}"

[backends.misnamed]
url = "https://127.0.0.1:{port}"
{wrong_name}
[backends.good]
url = "https://localhost:{port}"
{ca}
[pools.untrusted]
members = [{{ backend = "untrusted" }}]
bench_for = "30s"

[pools.misnamed]
members = [{{ backend = "misnamed" }}]

[pools.fallback]
members = [{{ backend = "untrusted2", priority = 1 }}, {{ backend = "good", priority = 2 }}]

[models]
"untrusted" = "untrusted"
"misnamed" = "misnamed"
"fallback" = "fallback"
"#,
        cert = pki.cert(),
        key = pki.key(),
        port = up.port(),
    );
    let gw = Gateway::start_with(d, &template, &[("up", up)]);

    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("untrusted"), false).as_bytes(),
    );
    let msg = r.assert_openai_error(502);
    assert!(
        msg.contains("TLS handshake") && msg.contains("certificate"),
        "{msg}"
    );
    // Benched like any connect failure: the next request is not even tried.
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("untrusted"), false).as_bytes(),
    );
    let msg = r.assert_openai_error(503);
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(msg.contains("no backend"), "{msg}");

    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("misnamed"), true).as_bytes(),
    );
    let msg = r.assert_openai_error(502);
    assert!(
        msg.contains("server name api.example.com") && msg.contains("certificate"),
        "{msg}"
    );

    // A pool fails over from the untrusted member to the good one, then skips the benched one.
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("fallback"), false).as_bytes(),
    );
    assert_chat_json(&r, "good");
    assert_eq!(r.header("x-aigw-attempts"), Some("2"));
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("fallback"), true).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-aigw-attempts"), Some("1"));
    assert!(
        r.text().trim_end().ends_with("data: [DONE]"),
        "{}",
        r.text()
    );

    // The gateway stays up and healthy, and says why in its log.
    assert_eq!(health(gw.addr("admin")), Some(200));
    let mut gw = gw;
    assert!(gw.proc.alive());
    let log = gw.proc.stderr();
    assert!(
        log.contains("attempt failed") && log.contains("TLS handshake with 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("invalid peer certificate"), "{log}");
}

/// `aigw mock --tls-cert --tls-key` on its own, behind a gateway.
fn aigw_mock_serves_https(d: Driver) {
    let pki = Pki::new();
    let addr = free_addr();
    let out = pki.dir.path("mock.stdout");
    let err = pki.dir.path("mock.stderr");
    let listen = addr.to_string();
    let child = Command::new(AIGW)
        .args([
            "mock",
            "--listen",
            &listen,
            "--region",
            "up",
            "--tls-cert",
            &pki.cert(),
            "--tls-key",
            &pki.key(),
        ])
        .env("AIGW_DRIVER", d.env())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn aigw mock");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    let deadline = Instant::now() + START_LIMIT;
    let banner = format!("listening on https://{addr}");
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains(&banner)
    {
        assert!(
            matches!(child.0.try_wait(), Ok(None)),
            "aigw mock exited: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "aigw mock not ready");
        std::thread::sleep(Duration::from_millis(30));
    }
    // Plain HTTP at a TLS listener gets no answer but does not hurt it.
    let mut plain = Client::connect(addr);
    plain.set_timeout(Duration::from_secs(2));
    plain.send(&request("GET", "/mock/stats", &[], b""));
    assert!(plain.try_read_response().is_err());

    let template = format!(
        "[gateway]\nlisten = \"{{addr:listen}}\"\nadmin_listen = \"{{addr:admin}}\"\nworkers = 1\n\n\
         [backends.up]\nurl = \"https://localhost:{}\"\ndialect = \"azure\"\nca_file = '{}'\n\n\
         [pools.p]\nmembers = [{{ backend = \"up\" }}]\n\n[models]\n\"*\" = \"p\"\n",
        addr.port(),
        pki.cert()
    );
    let gw = Gateway::start(d, &template);
    let mut c = gw.client();
    let r = chat(&mut c, "gpt-4o", false);
    assert_chat_json(&r, "up");
    let r = c.call(
        "POST",
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        &[],
        chat_body(None, true).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().trim_end().ends_with("data: [DONE]"),
        "{}",
        r.text()
    );
    assert!(matches!(child.0.try_wait(), Ok(None)), "aigw mock died");
}
