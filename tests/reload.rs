//! Reloading the config file: `POST /reload` on the admin port and SIGHUP. A good file takes effect
//! for the next request; a bad one is refused with its file and line, and the old config serves on.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;

both_drivers!(reload_via_admin_endpoint, reload_via_sighup);

/// [`TWO_DIALECTS`] plus one more model line in `[models]`.
fn with_model(line: &str) -> String {
    format!("{TWO_DIALECTS}{line}\n")
}

/// `template` with `needle` replaced, and the 1-based line of the replacement's last line.
fn broken(template: &str, needle: &str, replacement: &str) -> (String, usize) {
    let at = template.find(needle).expect("needle in template");
    let line = template[..at].matches('\n').count() + 1 + replacement.matches('\n').count();
    (template.replacen(needle, replacement, 1), line)
}

fn chat(gw: &Gateway, model: &str) -> Response {
    gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some(model), false).as_bytes(),
    )
}

fn reload(gw: &Gateway) -> Response {
    gw.admin("POST", "/reload")
}

fn reload_via_admin_endpoint(d: Driver) {
    let mut gw = Gateway::start(d, TWO_DIALECTS);
    let msg = chat(&gw, "m-new").assert_openai_error(400);
    assert!(msg.contains("Invalid model or deployment-id"), "{msg}");
    let mut kept = gw.client(); // opened before the reload, used after it
    assert_eq!(kept.call("GET", "/v1/models", &[], b"").status, 200);

    // A good file: the new model works on new and existing connections.
    let good = with_model("\"m-new\" = \"p_az\"");
    gw.rewrite(&good);
    let r = reload(&gw);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "reloaded", "{}", r.text());
    let generation = r.json()["generation"].as_u64().expect("generation");
    let r = chat(&gw, "m-new");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-aigw-backend"), Some("az"));
    let r = kept.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("m-new"), false).as_bytes(),
    );
    assert_eq!(
        r.status,
        200,
        "kept-alive connection still on the old config: {}",
        r.text()
    );
    let ids = kept.call("GET", "/v1/models", &[], b"").json()["data"].to_string();
    assert!(ids.contains("m-new"), "{ids}");

    // Bad files: refused with the file and line; the running config keeps serving.
    let config_path = gw.config.display().to_string();
    let bad_files = [
        broken(&good, "dialect = \"azure\"", "dialect = \"bogus\""),
        broken(
            &good,
            "\"m-new\" = \"p_az\"",
            "\"m-new\" = \"no_such_pool\"",
        ),
        broken(&good, "[pools.p_az]", "[pools.p_az"),
        broken(&good, "workers = 1", "workers = 1\nno_such_key = 3"),
    ];
    for (text, line) in &bad_files {
        gw.rewrite(text);
        let r = reload(&gw);
        let msg = r.assert_openai_error(400);
        assert!(
            msg.contains(&config_path),
            "message does not name the file {config_path}: {msg}"
        );
        assert!(
            msg.contains(&format!("{config_path}:{line}:")),
            "message does not name line {line}: {msg}"
        );
        for model in ["m-new", "m-oa", "m-az"] {
            let r = chat(&gw, model);
            assert_eq!(
                r.status,
                200,
                "after a refused reload, {model}: {}",
                r.text()
            );
        }
        assert_eq!(health(gw.addr("admin")), Some(200));
    }

    // Fixed again: accepted, with a later generation; a limit change applies to the next request.
    gw.rewrite(&good.replace("workers = 1\n", "workers = 1\nmax_body_bytes = 64\n"));
    let r = reload(&gw);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["generation"].as_u64().unwrap() > generation);
    chat(&gw, "m-new").assert_openai_error(413);
    // Removing a model takes it away.
    gw.rewrite(TWO_DIALECTS);
    assert_eq!(reload(&gw).status, 200);
    chat(&gw, "m-new").assert_openai_error(400);
    assert_eq!(chat(&gw, "m-oa").status, 200);
    // Only POST reloads.
    gw.admin("GET", "/reload").assert_openai_error(405);
}

/// Retry `f` until it is true or `limit` passes.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reload_via_sighup(d: Driver) {
    let mut gw = Gateway::start(d, TWO_DIALECTS);
    // A SIGHUP right after start (unchanged file) must not kill the process.
    gw.proc.signal("HUP");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        gw.proc.alive(),
        "SIGHUP right after start killed aigw: {}",
        gw.proc.stderr()
    );
    chat(&gw, "m-sig").assert_openai_error(400);

    let good = with_model("\"m-sig\" = \"p_oa\"");
    gw.rewrite(&good);
    gw.proc.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || chat(&gw, "m-sig").status == 200),
        "SIGHUP did not load the new model: {}",
        gw.proc.stderr()
    );
    assert_eq!(chat(&gw, "m-sig").header("x-aigw-backend"), Some("oa"));

    // A bad file on SIGHUP: logged with file and line, the old config serves on.
    let (bad, line) = broken(&good, "api_version = \"2024-06-01\"", "api_version = \"\"");
    gw.rewrite(&bad);
    gw.proc.signal("HUP");
    let config_path = gw.config.display().to_string();
    let expected = format!("{config_path}:{line}:");
    assert!(
        eventually(Duration::from_secs(5), || gw
            .proc
            .stderr()
            .contains(&expected)),
        "no refusal naming {expected} in the log: {}",
        gw.proc.stderr()
    );
    assert!(gw.proc.alive());
    for model in ["m-sig", "m-oa", "m-az"] {
        let r = chat(&gw, model);
        assert_eq!(
            r.status,
            200,
            "after a refused SIGHUP reload, {model}: {}",
            r.text()
        );
    }
    assert_eq!(health(gw.addr("admin")), Some(200));
}
