//! The request path's decisions on hostile input, without sockets.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::config::parse_str;
use crate::http1::{decode_request_head, HeadLimits};
use crate::openai::classify;

/// An open gateway with one backend per dialect behind `"*"`-style routes.
const CFG: &str = r#"
[backends.oa]
url = "http://127.0.0.1:9"
dialect = "openai"
api_key = "oa-key"

[backends.az]
url = "http://127.0.0.1:9"
dialect = "azure"
api_key = "az-key"

[pools.p_oa]
members = [{ backend = "oa" }]

[pools.p_az]
members = [{ backend = "az" }]

[models]
"gpt-4o-mini" = "p_oa"
"meta-llama/Llama-3.1-8B-Instruct" = "p_oa"
"*" = "p_az"
"#;

fn cfg() -> Config {
    parse_str(CFG, None).unwrap()
}

fn backend_id(cfg: &Config, name: &str) -> usize {
    cfg.backends.iter().position(|b| b.name == name).unwrap()
}

fn pool_id(cfg: &Config, name: &str) -> usize {
    cfg.pools.iter().position(|p| p.name == name).unwrap()
}

fn head(target: &str, extra: &str) -> RequestHead {
    let mut b =
        BytesMut::from(format!("POST {target} HTTP/1.1\r\nhost: gw\r\n{extra}\r\n").as_bytes());
    decode_request_head(&mut b, &HeadLimits::default())
        .unwrap()
        .unwrap()
}

fn inspect(target: &str, body: &str) -> Result<(String, bool), GatewayError> {
    let h = head(target, "");
    let path = classify(std::str::from_utf8(&h.target).unwrap()).unwrap();
    let body = body.as_bytes();
    inspect_body(&path, &h, body).map(|i| (i.model.into_owned(), i.model_in_body))
}

#[test]
fn the_review_smuggling_payload_never_reaches_a_request_line() {
    let model = "x/chat/completions?api-version=2024-10-21 HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\nDELETE /openai/files/file-123?api-version=2024-10-21&x=";
    let body = serde_json::json!({ "model": model, "messages": [] }).to_string();
    let e = inspect("/v1/chat/completions", &body).unwrap_err();
    assert_eq!(e.status(), 400);
    // Without control characters, the path-walking form is still refused for an Azure pool.
    let body = r#"{"model":"x/chat/completions?api-version=1&"}"#;
    let (m, _) = inspect("/v1/chat/completions", body).unwrap();
    assert_eq!(
        route(&cfg(), &m, "chat/completions").unwrap_err().status(),
        400
    );
    for walk in ["../../openai/files", "..", "%2e%2e", "a#b", "a b"] {
        assert_eq!(
            route(&cfg(), walk, "chat/completions")
                .unwrap_err()
                .status(),
            400,
            "{walk}"
        );
    }
}

#[test]
fn body_names_keep_their_forms_for_openai_pools() {
    let body = r#"{"model":"meta-llama/Llama-3.1-8B-Instruct"}"#;
    let (m, in_body) = inspect("/v1/chat/completions", body).unwrap();
    assert!(in_body);
    let cfg = cfg();
    assert_eq!(
        route(&cfg, &m, "chat/completions").unwrap(),
        pool_id(&cfg, "p_oa")
    );
}

#[test]
fn a_model_is_checked_before_any_member_is_picked() {
    let (m, in_body) = inspect("/v1/chat/completions", "{}").unwrap();
    assert_eq!((m.as_str(), in_body), ("", false));
    let e = route(&cfg(), &m, "chat/completions").unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("model is required"), "{e}");
}

#[test]
fn a_body_model_that_conflicts_with_the_deployment_is_refused() {
    let t = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=1";
    let e = inspect(t, r#"{"model":"o1-pro"}"#).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("conflicts"), "{e}");
    assert_eq!(
        inspect(t, r#"{"model":"gpt-4o-mini"}"#).unwrap().0,
        "gpt-4o-mini"
    );
    assert_eq!(
        inspect(t, r#"{"messages":[]}"#).unwrap(),
        ("gpt-4o-mini".into(), false)
    );
    // A deployment in the client's path is one plain segment too (classify refuses the path).
    assert!(classify("/openai/deployments/a%2fb/chat/completions").is_err());
}

/// Send `target` + `body` through the pure path and return the bytes the backend would get.
fn upstream_bytes(target: &str, body: &str, backend: &str) -> Result<Vec<u8>, GatewayError> {
    let cfg = cfg();
    let backend = backend_id(&cfg, backend);
    let h = head(target, &format!("content-length: {}\r\n", body.len()));
    let path = classify(std::str::from_utf8(&h.target).unwrap()).unwrap();
    let body = Bytes::copy_from_slice(body.as_bytes());
    let i = inspect_body(&path, &h, &body)?;
    route(&cfg, &i.model, path.operation)?;
    let r = upstream_request(
        bytes::BytesMut::new(),
        &cfg.backends[backend],
        Some(("api-key", "k")),
        &path,
        &i.model,
        i.model_in_body,
        &h,
        &body,
        "rid",
    )?;
    let mut out = r.head.to_vec();
    out.extend_from_slice(&r.body);
    Ok(out)
}

#[test]
fn azure_style_calls_to_openai_backends_carry_the_checked_model() {
    let t = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=1";
    let out = upstream_bytes(t, r#"{"messages":[]}"#, "oa").unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{head}"
    );
    assert_eq!(body, r#"{"model":"gpt-4o-mini","messages":[]}"#);
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
}

#[test]
fn the_encoder_is_the_second_depth() {
    // Bypass the name checks and hand the builder a smuggling model directly.
    let cfg = cfg();
    let h = head("/v1/chat/completions", "content-length: 2\r\n");
    let path = classify("/v1/chat/completions").unwrap();
    let az = &cfg.backends[backend_id(&cfg, "az")];
    let r = upstream_request(
        bytes::BytesMut::new(),
        az,
        None,
        &path,
        "x HTTP/1.1\r\nhost: h",
        true,
        &h,
        &Bytes::from_static(b"{}"),
        "rid",
    );
    assert_eq!(r.unwrap_err().status(), 400);
    let target = crate::openai::backend_target(az, &path, "x y");
    let up = crate::http1::UpstreamHead {
        method: b"POST",
        target: &target,
        host: "h",
        auth: None,
        request_id: "r",
        content_length: None,
        client_headers: &[],
        identity_encoding: false,
    };
    assert!(up.encode(&mut BytesMut::new()).is_err());
}
