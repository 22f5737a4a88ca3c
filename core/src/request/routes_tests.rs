//! Routes on hostile paths, without sockets: matching on whole segments, the backend's target,
//! and what the backend's head carries.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::config::parse_str;
use crate::http1::{decode_request_head, HeadLimits};

const CFG: &str = r#"
[backends.llm]
url = "http://127.0.0.1:9"

[backends.search]
url = "http://127.0.0.1:9/base"
dialect = "azure"
api_key = "search-backend-key"

[backends.fn]
url = "http://127.0.0.1:9"
api_key = "fn-backend-key"

[pools.p]
members = [{ backend = "llm" }]

[routes.search]
prefix = "/search"
backend = "search"

[routes.weather]
prefix = "/weather/v2"
backend = "fn"
strip_prefix = true
"#;

fn cfg() -> Config {
    parse_str(CFG, None).unwrap()
}

fn target(path: &str) -> Result<String, RouteError> {
    let cfg = cfg();
    let p = path.split_once('?').map_or(path, |(p, _)| p);
    let id = match_route(&cfg.routes, p).expect("a route");
    let r = &cfg.routes[id];
    route_target(r, &cfg.backends[r.backend], path)
}

#[test]
fn routes_match_whole_segments_only() {
    let cfg = cfg();
    let name = |p: &str| match_route(&cfg.routes, p).map(|i| cfg.routes[i].name.as_str());
    assert_eq!(name("/search"), Some("search"));
    assert_eq!(name("/search/"), Some("search"));
    assert_eq!(name("/search/indexes/x/docs"), Some("search"));
    assert_eq!(name("/weather/v2/today"), Some("weather"));
    for miss in [
        "/searchx",
        "/search.json",
        "/Search",
        "/weather",
        "/weather/v2x",
        "/weather/v3/today",
        "/",
        "",
        "*",
        "http://gw/search",
        "/v1/chat/completions",
    ] {
        assert_eq!(name(miss), None, "{miss}");
    }
}

#[test]
fn the_target_keeps_or_strips_the_prefix_and_drops_the_clients_key() {
    assert_eq!(
        target("/search/indexes/hotels/docs?api-version=2024-07-01&search=*&api-key=client"),
        Ok("/base/search/indexes/hotels/docs?api-version=2024-07-01&search=*".into())
    );
    assert_eq!(target("/search"), Ok("/base/search".into()));
    assert_eq!(
        target("/weather/v2/today?city=Paris"),
        Ok("/today?city=Paris".into())
    );
    assert_eq!(target("/weather/v2/"), Ok("/".into()));
    assert_eq!(target("/weather/v2"), Ok("/".into()), "at least /");
    assert_eq!(target("/weather/v2?api-key=k"), Ok("/".into()));
    assert_eq!(target("/weather/v2?api-key&x=1&&"), Ok("/?x=1".into()));
    assert_eq!(target("/search/a/"), Ok("/base/search/a/".into()));
}

#[test]
fn walking_out_of_the_prefix_is_refused() {
    for walk in [
        "/search/..",
        "/search/../v1/chat/completions",
        "/search/%2e%2e/admin",
        "/search/%2E%2E",
        "/search/a%2fb",
        "/search/.",
        "/search//x",
        "/search/x//",
        "/search/..;/x",
        "/search/a;b",
        "/search/a\\b",
        "/weather/v2/../../v1",
        "/weather/v2/%2e%2e",
    ] {
        assert_eq!(target(walk), Err(RouteError::Segment), "{walk}");
    }
    let cfg = cfg();
    assert_eq!(
        check_route_path(&cfg.routes[0], "/other"),
        Err(RouteError::Segment),
        "a path the route does not cover is never built"
    );
}

fn head(raw: &str) -> RequestHead {
    let mut b = BytesMut::from(raw.as_bytes());
    decode_request_head(&mut b, &HeadLimits::default())
        .unwrap()
        .unwrap()
}

fn request(raw: &str, body: &'static [u8]) -> Result<String, GatewayError> {
    let cfg = cfg();
    let h = head(raw);
    let id = match_route(&cfg.routes, h.path()).unwrap();
    let r = &cfg.routes[id];
    let out = route_request(
        r,
        &cfg.backends[r.backend],
        Some(("api-key", "search-backend-key")),
        &h,
        &Bytes::from_static(body),
        "rid-1",
    )?;
    assert_eq!(&out.body[..], body, "the body goes as it came");
    Ok(String::from_utf8(out.head.to_vec()).unwrap())
}

#[test]
fn the_backend_gets_its_own_key_and_never_the_clients() {
    let s = request(
        "POST /search/indexes/x/docs/search?api-version=1&api-key=qk HTTP/1.1\r\nhost: gw\r\n\
         api-key: client-key\r\nAuthorization: Bearer client-bearer\r\nOcp-Apim-Subscription-Key: sub\r\n\
         x-request-id: client-rid\r\nAccept-Encoding: gzip\r\nx-custom: 1\r\ncontent-length: 4\r\n\r\n",
        b"{\"q\"",
    )
    .unwrap();
    assert!(
        s.starts_with("POST /base/search/indexes/x/docs/search?api-version=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\n"),
        "{s}"
    );
    for gone in [
        "client-key",
        "client-bearer",
        "sub",
        "qk",
        "client-rid",
        "authorization",
    ] {
        assert!(!s.to_ascii_lowercase().contains(gone), "{gone} leaked: {s}");
    }
    assert_eq!(
        s.matches("api-key: search-backend-key\r\n").count(),
        1,
        "{s}"
    );
    assert!(s.contains("x-request-id: rid-1\r\n"), "{s}");
    assert!(
        s.contains("Accept-Encoding: gzip\r\n"),
        "not asked for identity: {s}"
    );
    assert!(!s.contains("identity"), "{s}");
    assert!(
        s.contains("x-custom: 1\r\n") && s.contains("content-length: 4\r\n"),
        "{s}"
    );
}

#[test]
fn methods_and_empty_bodies_go_as_they_came() {
    let s = request("GET /search/x HTTP/1.1\r\nhost: gw\r\n\r\n", b"").unwrap();
    assert!(
        s.starts_with("GET /base/search/x HTTP/1.1\r\n") && !s.contains("content-length"),
        "{s}"
    );
    let s = request("DELETE /search/x HTTP/1.1\r\nhost: gw\r\n\r\n", b"").unwrap();
    assert!(
        s.starts_with("DELETE ") && !s.contains("content-length"),
        "{s}"
    );
    let s = request(
        "PUT /search/x HTTP/1.1\r\nhost: gw\r\ncontent-length: 0\r\n\r\n",
        b"",
    )
    .unwrap();
    assert!(s.contains("content-length: 0\r\n"), "{s}");
    let s = request(
        "PATCH /search/x HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n",
        b"abc",
    )
    .unwrap();
    assert!(
        s.contains("content-length: 3\r\n") && !s.contains("chunked"),
        "{s}"
    );
}

#[test]
fn what_would_break_framing_is_refused() {
    let e = request("POST /search/%2e%2e HTTP/1.1\r\nhost: gw\r\n\r\n", b"").unwrap_err();
    assert_eq!(e.status(), 400);
    // A header value with a bare CR never reaches a head (second depth: the encoder).
    let mut h = head("GET /search/x HTTP/1.1\r\nhost: gw\r\n\r\n");
    h.headers.push(crate::http1::Header {
        name: Bytes::from_static(b"x-a"),
        value: Bytes::from_static(b"1\r\n\r\nGET /admin HTTP/1.1"),
    });
    let cfg = cfg();
    let r = &cfg.routes[0];
    let e = route_request(r, &cfg.backends[r.backend], None, &h, &Bytes::new(), "r").unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
}
