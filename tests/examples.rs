//! Every file in `examples/` is a valid config (`aigw check`), and serves as written: each is
//! started (on free ports instead of its fixed ones) and answers a chat request through its pool.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::*;

both_drivers!(
    every_example_serves,
    circuit_breaker_example_reproduces_the_lab,
    semantic_caching_example_reproduces_the_lab
);

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let names: Vec<_> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str())
        .collect();
    for want in [
        "round-robin.toml",
        "weighted.toml",
        "priority-fallback.toml",
        "advanced.toml",
        "circuit-breaker.toml",
        "semantic-caching.toml",
    ] {
        assert!(names.contains(&want), "examples/{want} missing: {names:?}");
    }
    files
}

#[test]
fn every_example_passes_check() {
    for f in examples() {
        let out = Command::new(AIGW)
            .arg("check")
            .arg("--config")
            .arg(&f)
            .output()
            .expect("run aigw check");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "aigw check --config {}: {text}",
            f.display()
        );
        assert!(text.contains(": ok ("), "{}: {text}", f.display());
    }
}

/// The example as a `Gateway` template: the gateway's own `listen`/`admin_listen` become
/// `{addr:listen}`/`{addr:admin}`, every other `127.0.0.1:PORT` (mocks and backend URLs, also in
/// comments) becomes `{addr:pPORT}`.
fn template(text: &str) -> String {
    const HOST: &str = "127.0.0.1:";
    let port_in = |line: &str| {
        let i = line.find(HOST)? + HOST.len();
        let digits: String = line[i..].chars().take_while(char::is_ascii_digit).collect();
        Some(digits)
    };
    let (mut section, mut listen, mut admin) = ("", None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[gateway]" && line.starts_with("listen") {
            listen = port_in(line);
        } else if section == "[gateway]" && line.starts_with("admin_listen") {
            admin = port_in(line);
        }
    }
    let (listen, admin) = (
        listen.expect("gateway listen"),
        admin.expect("gateway admin_listen"),
    );
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(HOST) {
        out.push_str(&rest[..i]);
        rest = &rest[i + HOST.len()..];
        let n = rest.chars().take_while(char::is_ascii_digit).count();
        let port = &rest[..n];
        let name = if port == listen {
            "listen".to_string()
        } else if port == admin {
            "admin".to_string()
        } else {
            format!("p{port}")
        };
        out.push_str(&format!("{{addr:{name}}}"));
        rest = &rest[n..];
    }
    out.push_str(rest);
    out
}

fn every_example_serves(d: Driver) {
    for f in examples() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let gw = Gateway::start(
            d,
            &template(&std::fs::read_to_string(&f).expect("read example")),
        );
        let v = gw.admin("GET", "/backends").json();
        let backends: BTreeSet<String> = v["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect();
        let mut served = BTreeSet::new();
        let body = chat_body(Some("gpt-4o-mini"), false);
        for _ in 0..6 {
            let r = gw.call("POST", "/v1/chat/completions", &[], body.as_bytes());
            // advanced.toml injects random 429/503 and caps attempts: its last answer may be one.
            let ok = r.status == 200 || (name == "advanced.toml" && [429, 503].contains(&r.status));
            assert!(ok, "{name}: {} {}", r.status, r.text());
            if let Some(b) = r.header("x-aigw-backend") {
                assert!(backends.contains(b), "{name}: {b} not in {backends:?}");
                if r.status == 200 {
                    served.insert(b.to_string());
                }
            }
        }
        assert!(!served.is_empty(), "{name}: no request succeeded");
        if name == "round-robin.toml" {
            assert_eq!(
                served, backends,
                "{name}: six requests must visit all three members"
            );
        }
    }
}

/// `examples/circuit-breaker.toml` shows what the lab shows: three 429s from the backend, then
/// 503 from the gateway without the backend being called.
fn circuit_breaker_example_reproduces_the_lab(d: Driver) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/circuit-breaker.toml");
    let gw = Gateway::start(
        d,
        &template(&std::fs::read_to_string(path).expect("read example")),
    );
    let body = chat_body(Some("gpt-4o-mini"), false);
    let call = || {
        gw.call(
            "POST",
            "/v1/chat/completions",
            &[("x-mock-status", "429")],
            body.as_bytes(),
        )
    };
    for i in 1..=3 {
        let r = call();
        assert_eq!(r.status, 429, "request {i}: {}", r.text());
        assert_eq!(r.header("x-aigw-backend"), Some("openaimock1"));
    }
    let r = call();
    assert_eq!(r.status, 503, "request 4: {}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        gw.mock_requests("p18051").len(),
        3,
        "the fourth reached the backend"
    );
    let v = gw.admin("GET", "/backends").json();
    assert_eq!(v["backends"][0]["breaker"], "open", "{v}");
}

/// `examples/semantic-caching.toml` shows what the APIM semantic-caching lab shows: of the lab's
/// four coffee prompts the first goes to the backend, the other three are served from the cache
/// (`score_threshold = 0.8`, i.e. similarity 0.2; under the mock's bag-of-words embeddings the
/// three share 0.25 to 0.37 with the first), and the backend sees one request.
fn semantic_caching_example_reproduces_the_lab(d: Driver) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/semantic-caching.toml");
    let gw = Gateway::start(
        d,
        &template(&std::fs::read_to_string(path).expect("read example")),
    );
    let prompts = [
        "How to Brew the Perfect Cup of Coffee?",
        "What are the steps to Craft the Ideal Espresso?",
        "Tell me how to create the best steaming Java?",
        "Explain how to make a caffeinated brewed beverage?",
    ];
    let ask = |q: &str| {
        let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": q}]});
        gw.call(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let first = ask(prompts[0]);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.header("x-aigw-cache"),
        Some("miss"),
        "{:?}",
        first.headers
    );
    // The store is asynchronous: wait for it on the admin port.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gw.admin("GET", "/cache").json()["entries"].as_u64() < Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first answer was never stored"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for q in &prompts[1..] {
        let r = ask(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        assert_eq!(
            r.header("x-aigw-cache"),
            Some("hit-semantic"),
            "{q}: {:?}",
            r.headers
        );
        assert_eq!(r.body, first.body, "{q}: not the stored answer");
    }
    assert_eq!(
        gw.mock_requests("p18061").len(),
        1,
        "the backend saw more than the first prompt"
    );
}
