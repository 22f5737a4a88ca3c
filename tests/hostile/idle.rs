//! Idle keep-alive connections wait for their next request without a read buffer (a readiness
//! wait, then one read) and with their timeouts in the gateway's own timer table: they must still
//! serve after a long wait, read pipelined requests, and close on the idle and header timeouts.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::common::*;

both_drivers!(
    idle_connections_serve_again_after_a_long_wait,
    idle_and_header_timeouts_still_fire_after_a_request,
);

/// [`TWO_DIALECTS`] with an idle timeout of 4 s and a header timeout of 1 s.
fn config() -> String {
    TWO_DIALECTS.replace(
        "workers = 1\n",
        "workers = 1\nidle_timeout = \"4s\"\nheader_timeout = \"1s\"\n",
    )
}

fn chat(c: &mut Client) -> u16 {
    let body = chat_body(Some("m-oa"), false);
    c.call("POST", "/v1/chat/completions", &[], body.as_bytes())
        .status
}

fn idle_connections_serve_again_after_a_long_wait(d: Driver) {
    let gw = Gateway::start(d, &config());
    // Many connections idle at once, each after one answered request...
    let mut clients: Vec<Client> = (0..100).map(|_| gw.client()).collect();
    for c in &mut clients {
        assert_eq!(chat(c), 200);
    }
    // ...for longer than the header timeout, well inside the idle one.
    std::thread::sleep(Duration::from_millis(2500));
    for c in &mut clients {
        assert_eq!(
            chat(c),
            200,
            "an idle keep-alive connection stopped serving"
        );
    }
    // Two requests in one write after a wait: both answered, in order.
    let c = &mut clients[0];
    std::thread::sleep(Duration::from_millis(1500));
    let body = chat_body(Some("m-az"), false);
    let one = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    c.send(format!("{one}GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let first = c.read_response();
    assert_eq!(first.status, 200);
    assert!(
        first.text().contains("Mock response from az."),
        "{}",
        first.text()
    );
    assert_eq!(c.read_response().status, 200);
    assert_eq!(chat(c), 200);
}

fn idle_and_header_timeouts_still_fire_after_a_request(d: Driver) {
    let gw = Gateway::start(d, &config());
    // Idle after a request: closed silently after idle_timeout, not before.
    let mut idle = gw.client();
    assert_eq!(chat(&mut idle), 200);
    let t = Instant::now();
    assert!(
        idle.closed_within(Duration::from_secs(9)),
        "idle connection left open"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(3900) && took < Duration::from_secs(7),
        "idle keep-alive connection closed after {took:?} with idle_timeout = 4s"
    );
    // Half a head after a wait longer than header_timeout: the header timer starts at its first
    // byte (the wait before it is idle time), and then ends the connection within about 1 s.
    let mut slow = gw.client();
    assert_eq!(chat(&mut slow), 200);
    std::thread::sleep(Duration::from_millis(1500));
    slow.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-");
    let t = Instant::now();
    slow.set_timeout(Duration::from_secs(8));
    let mut got = Vec::new();
    let _ = slow.stream.read_to_end(&mut got);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "half a head held for {took:?} with header_timeout = 1s"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 408"),
        "a slow head was answered {text:?}"
    );
    // The worker still serves.
    assert_eq!(chat(&mut gw.client()), 200);
}
