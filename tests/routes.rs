//! Other APIs behind the gateway (`[routes.NAME]`): a hostile caller against a route, with the
//! route's backend played by the scripted upstream (`common/evil.rs`), which records every byte
//! it receives. Under both drivers.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;
#[path = "common/evil.rs"]
mod evil;
#[path = "routes/setup.rs"]
mod setup;
mod usage;

use std::time::{Duration, Instant};

use common::*;
use setup::*;
use usage::{json_lines, toml_path, wait_lines};

both_drivers!(
    keys_are_swapped_and_the_prefix_kept_or_stripped,
    walking_out_and_lookalikes_never_reach_the_backend,
    keys_and_the_allow_list_decide_on_the_head,
    request_ids_travel_both_ways,
    answers_are_relayed_as_they_arrive,
    bodies_and_methods_go_as_they_came,
    a_route_is_counted_and_logged_without_tokens,
    an_open_gateway_routes_without_a_key_and_the_breaker_applies,
);

/// The backend gets its own key (in its dialect's header) and never the client's, from any of the
/// four places a client key can be; the prefix is kept, or stripped down to `/` at least.
fn keys_are_swapped_and_the_prefix_kept_or_stripped(d: Driver) {
    let (gw, evil) = start(d, &with_consumers());
    let r = gw.call(
        "POST",
        "/search/indexes/hotels/docs/search?api-version=2024-07-01&api-key=team-a-key",
        &[
            A,
            ("authorization", "Bearer team-a-key"),
            ("ocp-apim-subscription-key", "team-a-key"),
        ],
        b"{\"search\":\"*\"}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.text().as_str(), r.header("x-backend")),
        ("{\"ok\":true}", Some("yes"))
    );
    assert_eq!(r.header("x-aigw-backend"), Some("search-be"));
    let (head, _) = received(&evil, 0);
    assert!(
        head.starts_with(
            "POST /base/search/indexes/hotels/docs/search?api-version=2024-07-01 HTTP/1.1\r\n"
        ),
        "{head}"
    );
    assert_eq!(
        head.matches("api-key: search-backend-key\r\n").count(),
        1,
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("authorization"),
        "{head}"
    );

    let r = gw.call("GET", "/weather/today?city=Paris", &[B], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let (head, body) = received(&evil, 1);
    assert!(
        head.starts_with("GET /today?city=Paris HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("authorization: Bearer fn-backend-key\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("api-key") && !head.contains("content-length") && body.is_empty(),
        "{head}"
    );
    let r = gw.call("GET", "/weather?api-key=team-b-key", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(received(&evil, 2).0.starts_with("GET / HTTP/1.1\r\n"));
    assert_eq!(
        evil.count_containing("team-a-key") + evil.count_containing("team-b-key"),
        0
    );
}

/// Lookalike prefixes are not the route (404); dot segments, `%2e%2e`, `%2f`, `;` and empty
/// segments below the prefix are refused (400) before anything reaches the backend.
fn walking_out_and_lookalikes_never_reach_the_backend(d: Driver) {
    let (gw, evil) = start(d, &with_consumers());
    for (target, status) in [
        ("/searchx", 404),
        ("/search.json", 404),
        ("/Search/x", 404),
        ("/search/..", 400),
        ("/search/../v1/models", 400),
        ("/search/%2e%2e/admin", 400),
        ("/search/%2E%2E", 400),
        ("/search/a%2fb", 400),
        ("/search//x", 400),
        ("/search/..;/x", 400),
        ("/weather/./x", 400),
        ("/weather/%2e%2e/%2e%2e/etc/passwd", 400),
    ] {
        let r = gw.call("GET", target, &[A], b"");
        r.assert_openai_error(status);
        assert!(r.header("x-request-id").is_some(), "{target}");
    }
    let r = gw.call("GET", "/search/x/", &[A], b"");
    assert_eq!(r.status, 200, "a trailing slash is one");
    assert_eq!(evil.requests().len(), 1, "{:?}", evil.requests());
    // The LLM paths are untouched by the routes.
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[A],
        chat_body(Some("m-oa"), false).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Missing and unknown keys get 401, a consumer outside the allow-list 403 `route_not_allowed`,
/// all on the head: the backend sees none of them.
fn keys_and_the_allow_list_decide_on_the_head(d: Driver) {
    let (gw, evil) = start(d, &with_consumers());
    gw.call("GET", "/search/x", &[], b"")
        .assert_openai_error(401);
    gw.call("GET", "/search/x", &[("api-key", "nope")], b"")
        .assert_openai_error(401);
    gw.call("GET", "/weather/x", &[], b"")
        .assert_openai_error(401);
    let r = gw.call("POST", "/search/x", &[B], b"{}");
    let msg = r.assert_openai_error(403);
    assert_eq!(r.json()["error"]["code"], "route_not_allowed", "{msg}");
    assert!(msg.contains("team-b") && msg.contains("/search"), "{msg}");
    // A refused caller's large body is never read (the connection closes instead).
    let mut c = gw.client();
    c.send(&request(
        "POST",
        "/search/x",
        &[B, ("content-length", "10000000")],
        b"",
    ));
    c.read_response().assert_openai_error(403);
    assert_eq!(evil.requests().len(), 0, "nothing reached the backend");
    assert_eq!(gw.call("GET", "/weather/x", &[B], b"").status, 200);
}

/// The client's `x-request-id` (or the gateway's own) reaches the backend once and comes back in
/// place of the backend's.
fn request_ids_travel_both_ways(d: Driver) {
    let (gw, evil) = start(d, &with_consumers());
    let r = gw.call(
        "GET",
        "/search/x",
        &[A, ("x-request-id", "client-id-42")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-request-id"),
        Some("client-id-42"),
        "{:?}",
        r.headers
    );
    assert!(
        !r.headers.iter().any(|(_, v)| v == "upstream-id"),
        "{:?}",
        r.headers
    );
    let (head, _) = received(&evil, 0);
    assert_eq!(
        head.matches("x-request-id: client-id-42\r\n").count(),
        1,
        "{head}"
    );
    // Without one, the gateway's own id goes to the backend and back.
    let r = gw.call("GET", "/search/x", &[A], b"");
    let id = r.header("x-request-id").unwrap().to_string();
    assert!(received(&evil, 1)
        .0
        .contains(&format!("x-request-id: {id}\r\n")));
}

/// A chunked answer is relayed piece by piece as it arrives, and a compressed one untouched (no
/// identity encoding is asked for: nothing is accounted).
fn answers_are_relayed_as_they_arrive(d: Driver) {
    let (gw, evil) = start(d, &with_consumers());
    let mut c = gw.client();
    let t0 = Instant::now();
    c.send(&request(
        "GET",
        "/search/stream",
        &[A, ("accept-encoding", "gzip, br")],
        b"",
    ));
    let mut first = None;
    let r = c
        .read_response_with(|body| {
            if body.starts_with(b"first") {
                first.get_or_insert_with(|| t0.elapsed());
            }
        })
        .unwrap();
    let done = t0.elapsed();
    assert_eq!((r.status, r.text().as_str()), (200, "first\nsecond\n"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let first = first.expect("the first chunk");
    assert!(
        first + Duration::from_millis(250) < done,
        "{first:?} vs {done:?}"
    );
    // Nothing is accounted: the client's Accept-Encoding goes on, a compressed answer comes back
    // as it was.
    let (head, _) = received(&evil, 0);
    assert!(
        head.contains("accept-encoding: gzip, br\r\n") && !head.contains("identity"),
        "{head}"
    );
    let r = c.call("GET", "/search/gzip", &[A], b"");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, b"\x1fnot-really-gzip");
}

/// Any method, and the body byte for byte: binary, larger than the coalescing limit, empty, or
/// uploaded chunked (then sent with its length).
fn bodies_and_methods_go_as_they_came(d: Driver) {
    let (gw, evil) = start(d, &with_consumers());
    let small: Vec<u8> = (0..=255u8).collect();
    let large: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut c = gw.client();
    for (i, (method, body)) in [("POST", &small), ("PUT", &large), ("PATCH", &Vec::new())]
        .into_iter()
        .enumerate()
    {
        let len = body.len().to_string();
        let headers = [
            B,
            ("content-type", "application/octet-stream"),
            ("content-length", &len),
        ];
        let r = c.call(method, "/weather/upload", &headers, body);
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        let (head, got) = received(&evil, i);
        assert!(
            head.starts_with(&format!("{method} /upload HTTP/1.1\r\n")),
            "{head}"
        );
        assert!(
            head.contains(&format!("content-length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(got == *body, "{method}: the body changed on the way");
    }
    // A chunked upload arrives whole, with a length.
    c.send(b"DELETE /weather/x HTTP/1.1\r\nhost: t\r\nauthorization: Bearer team-b-key\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    let (head, got) = received(&evil, 3);
    assert!(
        head.starts_with("DELETE /x ") && head.contains("content-length: 3\r\n"),
        "{head}"
    );
    assert_eq!(got, b"abc");
}

/// A route request has its access-log line (`operation` `route:search`) and request metrics, and
/// no token limit, token header or token metric applies to it.
fn a_route_is_counted_and_logged_without_tokens(d: Driver) {
    let dir = TempDir::new("routes-log");
    let log = dir.path("access.log");
    // A token limit no LLM call could pass: routes are not token-accounted, so it never applies.
    let template = format!(
        "{ROUTES}{CONSUMERS}\n[token_limit]\ntokens_per_minute = 1\n\n[log]\naccess = {}\n",
        toml_path(&log)
    );
    let (gw, _evil) = start(d, &template);
    let ok = gw.call("GET", "/search/indexes?api-key=team-a-key", &[], b"");
    assert_eq!(ok.status, 200, "{}", ok.text());
    gw.call("GET", "/search/x", &[B], b"")
        .assert_openai_error(403);
    let lines = wait_lines(&log, 2);
    let line = lines
        .iter()
        .find(|l| l["request_id"] == ok.header("x-request-id").unwrap())
        .expect("the line of the 200");
    assert_eq!(line["operation"], "route:search", "{line}");
    assert_eq!(
        (&line["consumer"], &line["backend"], &line["status"]),
        (&"team-a".into(), &"search-be".into(), &200.into()),
        "{line}"
    );
    assert_eq!(line["path"], "/search/indexes", "{line}");
    assert_eq!(line["total_tokens"], 0, "{line}");
    let refused = json_lines(&log)
        .into_iter()
        .find(|l| l["status"] == 403)
        .unwrap();
    assert_eq!(
        (&refused["operation"], &refused["consumer"]),
        (&"route:search".into(), &"team-b".into())
    );
    assert!(!std::fs::read_to_string(&log)
        .unwrap()
        .contains("team-a-key"));
    for want in [
        r#"aigw_route_requests_total{route="search",status="200"} 1"#,
        r#"aigw_route_requests_total{route="search",status="403"} 1"#,
        r#"aigw_requests_total{model="none",backend="search-be",status="200"} 1"#,
        r#"aigw_consumer_requests_total{consumer="team-b",status="403"} 1"#,
    ] {
        assert!(
            gw.metrics_within(|m| m.contains(want)),
            "{want} not in\n{}",
            gw.admin("GET", "/metrics").text()
        );
    }
    for _ in 0..3 {
        let r = gw.call(
            "POST",
            "/search/x",
            &[A],
            b"{\"a large prompt\":\"is no prompt here\"}",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.header("x-ratelimit-remaining-tokens").is_none(),
            "{:?}",
            r.headers
        );
    }
    let metrics = gw.admin("GET", "/metrics").text();
    assert!(!metrics.contains("aigw_tokens_total{"), "{metrics}");
    assert!(
        !metrics.contains("aigw_ratelimit_rejections_total{"),
        "{metrics}"
    );
}

/// Without consumers a route is open, as the LLM paths are; the backend's breaker opens on its
/// statuses and keeps the next request away with a 503.
fn an_open_gateway_routes_without_a_key_and_the_breaker_applies(d: Driver) {
    let template = ROUTES
        .replace("consumers = [\"team-a\"]\n", "")
        .replace(
            "api_key = \"fn-backend-key\"",
            "api_key = \"fn-backend-key\"\ncircuit_breaker = { failures = 1, window = \"60s\", open_for = \"60s\" }",
        );
    let (gw, evil) = start(d, &template);
    assert_eq!(gw.call("GET", "/search/x", &[], b"").status, 200);
    let r = gw.call("GET", "/weather/fail", &[], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "boom"),
        "relayed as it was"
    );
    let r = gw.call("GET", "/weather/x", &[], b"");
    r.assert_openai_error(503);
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert_eq!(
        evil.requests().len(),
        2,
        "the open breaker kept the third away"
    );
    assert_eq!(gw.backend("fn-be")["breaker"], "open");
}
