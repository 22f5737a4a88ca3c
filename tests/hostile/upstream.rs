//! A hostile or broken upstream: interim 1xx answers, stray bytes on pooled connections, stale
//! connections, odd framing. Most tests play the upstream with the scripted [`Evil`] server so the
//! exact bytes and timing are the test's; the mock's warts are checked too.

use std::net::TcpStream;
use std::time::Duration;

#[allow(unused_imports)]
use crate::common::*;
use crate::evil::*;

both_drivers!(
    interim_103_is_skipped_and_the_pool_stays_in_step,
    switching_protocols_unasked_is_a_bad_gateway,
    endless_interim_answers_are_capped,
    mock_interim_wart_through_the_gateway,
    unsolicited_bytes_on_an_idle_connection_close_it_without_benching,
    stray_bytes_right_after_a_response_are_not_pooled,
    a_request_failed_on_a_fresh_reused_connection_is_not_resent,
    a_request_failed_on_a_long_idle_connection_is_resent_once,
    idle_upstream_connections_expire,
    framing_headers_are_the_gateways_own,
    trailers_and_extensions_never_reach_the_client,
    bare_lf_in_trailers_is_refused,
    ambiguous_upstream_framing_is_a_bad_gateway,
    mock_odd_framing_wart_through_the_gateway,
);

/// One backend `e` at the scripted upstream, one worker (so one pool), model `m`.
const EVIL_GW: &str = r#"
[gateway]
listen = "{addr:listen}"
admin_listen = "{addr:admin}"
workers = 1
upstream_timeout = "5s"
EXTRA

[backends.e]
url = "http://{addr:evil}"
dialect = "openai"
api_key = "k"

[pools.p]
members = [{ backend = "e" }]
POOLEXTRA

[models]
"m" = "p"
"#;

fn start(d: Driver, evil: &Evil, extra: &str) -> Gateway {
    start_pool(d, evil, extra, "")
}

/// [`start`] with extra keys for the pool too.
fn start_pool(d: Driver, evil: &Evil, extra: &str, pool: &str) -> Gateway {
    let t = EVIL_GW.replace("POOLEXTRA", pool).replace("EXTRA", extra);
    Gateway::start_with(d, &t, &[("evil", evil.addr)])
}

/// A chat request tagged `who` (a header the scripted upstream can see), on `c`.
fn ask(c: &mut Client, who: &str) -> Response {
    c.call(
        "POST",
        "/v1/chat/completions",
        &[("x-who", who)],
        chat_body(Some("m"), false).as_bytes(),
    )
}

/// Does this request carry `x-who: who`?
fn is(req: &[u8], who: &str) -> bool {
    let needle = format!("x-who: {who}\r\n");
    req.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The backend's failure count from the admin port.
fn failures(gw: &Gateway) -> u64 {
    let r = gw.admin("GET", "/backends");
    r.json()["backends"][0]["failures"].as_u64().unwrap()
}

/// Item: a 103 Early Hints was taken as the final answer; the real 200 stayed on the pooled
/// connection and the next client got it.
fn interim_103_is_skipped_and_the_pool_stays_in_step(d: Driver) {
    let evil = Evil::start(|_, _, req| {
        if is(req, "A") {
            vec![
                send("HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"),
                Step::Sleep(Duration::from_millis(300)),
                send(&ok_json(&completion("A"))),
            ]
        } else {
            vec![send(&ok_json(&completion("B")))]
        }
    });
    let gw = start(d, &evil, "");
    let a = ask(&mut gw.client(), "A");
    assert_eq!(a.status, 200, "{:?} {}", a.headers, a.text());
    assert_eq!(a.json()["id"], "A");
    let b = ask(&mut gw.client(), "B");
    assert_eq!(b.status, 200, "{}", b.text());
    assert_eq!(b.json()["id"], "B", "B got someone else's answer");
    assert_eq!(evil.accepted(), 1, "B should reuse A's pooled connection");
}

/// A 101 when no upgrade was asked for is a malformed answer: 502, connection dropped.
fn switching_protocols_unasked_is_a_bad_gateway(d: Driver) {
    let evil = Evil::start(|_, _, _| {
        vec![send(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        )]
    });
    let gw = start(d, &evil, "");
    let r = ask(&mut gw.client(), "A");
    r.assert_openai_error(502);
}

/// An upstream that sends interim answers forever does not hold a worker: after a bounded number
/// the answer is a 502.
fn endless_interim_answers_are_capped(d: Driver) {
    let evil = Evil::start(|_, _, _| {
        vec![send(
            &"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n".repeat(1000),
        )]
    });
    let gw = start(d, &evil, "");
    let r = ask(&mut gw.client(), "A");
    r.assert_openai_error(502);
}

/// The built-in mock plays the 103 wart on request (`x-mock-interim: 103`, here with a delay before
/// the final answer); through the gateway each client still gets its own answer.
fn mock_interim_wart_through_the_gateway(d: Driver) {
    // Straight at the mock: a 103 head first, then the 200.
    let gw = Gateway::start(d, TWO_DIALECTS);
    let mut m = Client::connect(gw.addr("oa"));
    m.send(&request(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-interim", "103")],
        chat_body(Some("m-oa"), false).as_bytes(),
    ));
    let first = m.read_response();
    assert_eq!(first.status, 103);
    assert_eq!(m.read_response().status, 200);
    // Through the gateway: A (with the wart and a late final answer), then B streamed on the
    // same pooled connection.
    let a = gw.client().call(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-interim", "103"), ("x-mock-latency-ms", "300")],
        chat_body(Some("m-oa"), false).as_bytes(),
    );
    assert_eq!(a.status, 200, "{:?}", a.headers);
    assert_eq!(a.json()["object"], "chat.completion");
    let b = gw.client().stream(
        "/v1/chat/completions",
        chat_body(Some("m-oa"), true).as_bytes(),
    );
    assert!(b.response.text().contains("data: [DONE]"));
}

/// Item: bytes that arrive on an idle pooled connection (an unsolicited response) were read as
/// the next client's answer. Now the connection is closed when taken, without benching.
fn unsolicited_bytes_on_an_idle_connection_close_it_without_benching(d: Driver) {
    let evil = Evil::start(|_, _, req| {
        if is(req, "A") {
            vec![
                send(&ok_json(&completion("A"))),
                Step::Sleep(Duration::from_millis(50)),
                send(&ok_json(&completion("EVIL"))),
            ]
        } else {
            vec![send(&ok_json(&completion("B")))]
        }
    });
    let gw = start(d, &evil, "");
    let a = ask(&mut gw.client(), "A");
    assert_eq!(a.json()["id"], "A");
    // The stray answer is waiting in the pool (sent 50 ms after A; HTTP/1.1 cannot tell a stray
    // answer that arrives after the next request went out from that request's own answer).
    std::thread::sleep(Duration::from_millis(700));
    let b = ask(&mut gw.client(), "B");
    assert_eq!(b.status, 200, "{}", b.text());
    assert_eq!(b.json()["id"], "B", "B got the unsolicited answer");
    assert_eq!(evil.accepted(), 2, "B must go on a new connection");
    assert_eq!(failures(&gw), 0, "a stray byte is not a backend failure");
    let c = ask(&mut gw.client(), "C");
    assert_eq!(c.status, 200, "the backend was benched: {}", c.text());
}

/// Bytes right behind a complete response (same read) mean the framing is off: never pooled.
fn stray_bytes_right_after_a_response_are_not_pooled(d: Driver) {
    let evil = Evil::start(|_, _, req| {
        if is(req, "A") {
            let mut s = ok_json(&completion("A"));
            s.push_str(&ok_json(&completion("EVIL")));
            vec![send(&s)]
        } else {
            vec![send(&ok_json(&completion("B")))]
        }
    });
    let gw = start(d, &evil, "");
    assert_eq!(ask(&mut gw.client(), "A").json()["id"], "A");
    let b = ask(&mut gw.client(), "B");
    assert_eq!(b.json()["id"], "B");
    assert_eq!(evil.accepted(), 2);
}

/// Item: any IO error on a reused connection made the gateway send the request again on a new
/// one. A connection reused at once that the upstream closes after reading the request is a real
/// failure: the upstream may have acted on it, so it must not see it twice.
fn a_request_failed_on_a_fresh_reused_connection_is_not_resent(d: Driver) {
    let evil = Evil::start(|_, _, req| {
        if is(req, "A") {
            vec![send(&ok_json(&completion("A")))]
        } else {
            vec![Step::Close]
        }
    });
    let gw = start(d, &evil, "");
    assert_eq!(ask(&mut gw.client(), "A").json()["id"], "A");
    let b = ask(&mut gw.client(), "B");
    assert_eq!(b.status, 502, "{}", b.text());
    assert_eq!(evil.count_containing("x-who: B"), 1, "B was sent twice");
}

/// The other side of the rule: a pooled connection idle past the threshold (1 s) that fails before
/// any byte of an answer is the keep-alive race, and the request goes once more on a new one.
fn a_request_failed_on_a_long_idle_connection_is_resent_once(d: Driver) {
    let evil = Evil::start(|_, conn, req| {
        if is(req, "A") {
            vec![send(&ok_json(&completion("A")))]
        } else if conn == 0 {
            vec![Step::Close]
        } else {
            vec![send(&ok_json(&completion("B")))]
        }
    });
    let gw = start(d, &evil, "");
    assert_eq!(ask(&mut gw.client(), "A").json()["id"], "A");
    std::thread::sleep(Duration::from_millis(1500));
    let b = ask(&mut gw.client(), "B");
    assert_eq!(b.status, 200, "{}", b.text());
    assert_eq!(b.json()["id"], "B");
    assert_eq!(evil.count_containing("x-who: B"), 2);
    assert_eq!(failures(&gw), 0);
}

/// Idle upstream connections expire after `upstream_idle_timeout`: they are closed by the sweep
/// even with no traffic, and the next request opens a new one.
fn idle_upstream_connections_expire(d: Driver) {
    let evil = Evil::start(|_, _, req| {
        let who = if is(req, "A") { "A" } else { "B" };
        vec![send(&ok_json(&completion(who)))]
    });
    let gw = start(d, &evil, "upstream_idle_timeout = \"1s\"");
    assert_eq!(ask(&mut gw.client(), "A").json()["id"], "A");
    assert_eq!(evil.closed_by_peer(), 0);
    assert!(
        evil.wait_for(Duration::from_secs(10), |e| e.closed_by_peer() == 1),
        "the idle connection was never closed"
    );
    assert_eq!(ask(&mut gw.client(), "B").json()["id"], "B");
    assert_eq!(evil.accepted(), 2);
}

/// Send one request with `connection: close` and return every byte the gateway wrote back.
fn raw_exchange(gw: &Gateway, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(gw.addr("listen")).unwrap();
    let mut h = vec![("connection", "close")];
    h.extend_from_slice(headers);
    std::io::Write::write_all(
        &mut s,
        &request("POST", "/v1/chat/completions", &h, body.as_bytes()),
    )
    .unwrap();
    read_to_close(&mut s, Duration::from_secs(10))
}

/// Parse a response strictly: exactly one framing header, plain hex chunk sizes with CRLF, no
/// chunk extensions, no trailers, nothing after the body. Returns (status, head, body).
fn strict(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no complete head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let cl: Vec<_> = head
        .lines()
        .filter_map(|l| l.strip_prefix("content-length:"))
        .collect();
    let te: Vec<_> = head
        .lines()
        .filter_map(|l| l.strip_prefix("transfer-encoding:"))
        .collect();
    let rest = &raw[end..];
    let body = match (cl.as_slice(), te.as_slice()) {
        ([n], []) => {
            let n: usize = n.trim().parse().unwrap();
            assert_eq!(rest.len(), n, "content-length does not match: {head}");
            rest.to_vec()
        }
        ([], [t]) => {
            assert_eq!(t.trim(), "chunked", "{head}");
            let mut body = Vec::new();
            let mut i = 0;
            loop {
                let eol = rest[i..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("chunk size line")
                    + i;
                let line = std::str::from_utf8(&rest[i..eol]).unwrap();
                assert!(
                    line.bytes().all(|b| b.is_ascii_hexdigit()),
                    "chunk line {line:?} is not plain hex"
                );
                let n = usize::from_str_radix(line, 16).unwrap();
                i = eol + 2;
                if n == 0 {
                    assert_eq!(&rest[i..], b"\r\n", "trailers or bytes after the body");
                    break;
                }
                body.extend_from_slice(&rest[i..i + n]);
                assert_eq!(&rest[i + n..i + n + 2], b"\r\n");
                i += n + 2;
            }
            body
        }
        ([], []) => {
            assert!(head.contains("connection: close"), "{head}");
            rest.to_vec()
        }
        _ => panic!("ambiguous framing sent to the client: {head}"),
    };
    (status, head, body)
}

/// Item: `Connection: transfer-encoding` from the upstream made the gateway drop the
/// Transfer-Encoding header while relaying the chunked bytes: the client misframed the body.
fn framing_headers_are_the_gateways_own(d: Driver) {
    let body = completion("A");
    let (a, b) = body.split_at(10);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nconnection: transfer-encoding\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let evil = Evil::start(move |_, _, _| vec![send(&answer)]);
    let gw = start(d, &evil, "");
    let (status, head, got) = strict(&raw_exchange(&gw, &[], &chat_body(Some("m"), false)));
    assert_eq!(status, 200, "{head}");
    assert_eq!(String::from_utf8(got).unwrap(), body);
}

/// Chunk extensions and trailers are the upstream's: the client gets clean chunks.
fn trailers_and_extensions_never_reach_the_client(d: Driver) {
    let body = completion("A");
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\ntrailer: x-evil\r\n\r\n{:x};name=\"v\"\r\n{body}\r\n0;last\r\nx-evil: 1\r\ncontent-length: 5\r\n\r\n",
        body.len()
    );
    let evil = Evil::start(move |_, _, _| vec![send(&answer)]);
    let gw = start(d, &evil, "");
    let raw = raw_exchange(&gw, &[], &chat_body(Some("m"), false));
    let (status, head, got) = strict(&raw);
    assert_eq!(status, 200, "{head}");
    assert_eq!(String::from_utf8(got).unwrap(), body);
    assert!(!String::from_utf8_lossy(&raw).contains("x-evil"));
}

/// A bare LF in a trailer section is malformed framing: it never reaches the client, and the
/// client never sees a complete, well-framed answer built from it.
fn bare_lf_in_trailers_is_refused(d: Driver) {
    let body = completion("A");
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\nx-a: 1\nx-evil: 2\r\n\r\n",
        body.len()
    );
    let evil = Evil::start(move |_, _, _| vec![send(&answer)]);
    let gw = start(d, &evil, "");
    let raw = raw_exchange(&gw, &[], &chat_body(Some("m"), false));
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("x-evil"), "{text}");
    assert!(
        !text.contains("\r\n0\r\n\r\n") || text.starts_with("HTTP/1.1 502"),
        "a malformed upstream body was relayed as complete: {text}"
    );
}

/// Ambiguous or unframeable upstream heads are a 502, never relayed.
fn ambiguous_upstream_framing_is_a_bad_gateway(d: Driver) {
    let heads = [
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{} ",
        "HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 2\r\n\r\n{}",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n{}",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "HTTP/1.1 999 Nine\r\ncontent-length: 2\r\n\r\n{}",
    ];
    let evil = Evil::start(move |n, _, _| vec![send(heads[n % heads.len()]), Step::Close]);
    // Each case benches the only member: for a moment only, so the next case reaches it.
    let gw = start_pool(d, &evil, "", "bench_for = \"1ms\"");
    for h in heads {
        std::thread::sleep(Duration::from_millis(20));
        let r = ask(&mut gw.client(), "A");
        assert_eq!(r.status, 502, "{h:?} was relayed: {:?}", r.headers);
    }
}

/// The mock's odd-framing wart (`x-mock-framing: odd`): chunk extensions and a trailer straight
/// from the mock, clean chunks through the gateway.
fn mock_odd_framing_wart_through_the_gateway(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let mut s = TcpStream::connect(gw.addr("oa")).unwrap();
    std::io::Write::write_all(
        &mut s,
        &request(
            "POST",
            "/v1/chat/completions",
            &[("x-mock-framing", "odd"), ("connection", "close")],
            chat_body(Some("m-oa"), false).as_bytes(),
        ),
    )
    .unwrap();
    let direct =
        String::from_utf8_lossy(&read_to_close(&mut s, Duration::from_secs(10))).into_owned();
    assert!(direct.contains("transfer-encoding: chunked"), "{direct}");
    assert!(direct.contains(";"), "no chunk extension: {direct}");
    assert!(
        direct.contains("\r\n0;mock-last\r\nx-mock-trailer: 1\r\n\r\n"),
        "no trailer: {direct}"
    );
    let raw = raw_exchange(
        &gw,
        &[("x-mock-framing", "odd")],
        &chat_body(Some("m-oa"), false),
    );
    let (status, head, body) = strict(&raw);
    assert_eq!(status, 200, "{head}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(!String::from_utf8_lossy(&raw).contains("x-mock-trailer"));
}
