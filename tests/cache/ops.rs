//! The other cached operations (completions, the Responses API) and their stream replays, the
//! `operations` list, and reloads of the threshold and of the embedder (issue 10, "done when" 10).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::probe::*;
use crate::setup::*;

both_drivers!(
    completions_and_responses_are_cached_and_replayed,
    only_listed_operations_are_cached,
    reload_applies_the_threshold_and_a_new_embedder_starts_empty,
);

/// The text of a Responses API answer: its `output[0].content[0].text`.
fn response_text(v: &Value) -> String {
    v["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `completions` (prompt) and `responses` (input) are cached like chat: miss, exact hit with the
/// same body, and a streamed request replays the stored answer as that operation's SSE. A
/// Responses request that continues a stored response (`previous_response_id`) carries context
/// the body does not show: it is never served from the cache.
fn completions_and_responses_are_cached_and_replayed(d: Driver) {
    let gw = Setup::default().start(d);

    // Completions.
    let body = json!({"model": "m", "prompt": COFFEE});
    let a = expect(
        post(&gw, "/v1/completions", &[], &body),
        "miss",
        "completions",
    );
    let stored = a.json()["choices"][0]["text"].as_str().unwrap().to_string();
    wait_entries(&gw, 1, "the completion");
    let before = calls(&gw, "llm", "completions");
    let h = expect(
        post(&gw, "/v1/completions", &[], &body),
        "hit-exact",
        "completions again",
    );
    assert_eq!(h.resp.text(), a.resp.text());
    let s = expect_hit(
        post(&gw, "/v1/completions", &[], &streamed(body.clone(), true)),
        "completions, streamed, after a stored JSON answer",
    );
    assert!(s.is_sse(), "a streamed request got {}", s.describe());
    let ev = events(&s.resp);
    assert_eq!(ev.last().map(|e| e.0.as_str()), Some("[DONE]"), "{ev:?}");
    let text: String = ev
        .iter()
        .filter_map(|(_, v)| v["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, stored, "replayed completion text");
    assert!(
        ev.iter()
            .any(|(_, v)| v["choices"][0]["finish_reason"] == "stop"),
        "no finish_reason stop in the replay: {ev:?}"
    );
    assert_eq!(
        calls(&gw, "llm", "completions"),
        before,
        "a hit reached the backend"
    );

    // The Responses API.
    let body = json!({"model": "m", "input": MOUNTAIN});
    let r = expect(post(&gw, "/v1/responses", &[], &body), "miss", "responses");
    let stored = response_text(&r.json());
    assert!(!stored.is_empty(), "{}", r.describe());
    wait_entries(&gw, 2, "the response");
    let before = calls(&gw, "llm", "responses");
    let h = expect(
        post(&gw, "/v1/responses", &[], &body),
        "hit-exact",
        "responses again",
    );
    assert_eq!(h.resp.text(), r.resp.text());
    let s = expect_hit(
        post(&gw, "/v1/responses", &[], &streamed(body.clone(), false)),
        "responses, streamed, after a stored JSON answer",
    );
    assert!(s.is_sse(), "{}", s.describe());
    let ev = events(&s.resp);
    let kinds: Vec<&str> = ev
        .iter()
        .map(|(_, v)| v["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds.first(), Some(&"response.created"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"response.completed"), "{kinds:?}");
    let deltas: String = ev
        .iter()
        .filter(|(_, v)| v["type"] == "response.output_text.delta")
        .filter_map(|(_, v)| v["delta"].as_str())
        .collect();
    assert_eq!(deltas, stored, "replayed Responses deltas");
    let done = &ev.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(response_text(done), stored);
    assert!(done["usage"]["total_tokens"].as_u64() > Some(0), "{done}");
    assert_eq!(
        calls(&gw, "llm", "responses"),
        before,
        "a hit reached the backend"
    );

    // A continuation is never a hit, even of a byte-identical input.
    let first = expect(
        post(
            &gw,
            "/v1/responses",
            &[],
            &json!({"model": "m", "input": "hello"}),
        ),
        "miss",
        "a response to continue",
    );
    let id = first.json()["id"].as_str().unwrap().to_string();
    let follow = json!({"model": "m", "input": MOUNTAIN, "previous_response_id": id});
    let f = expect_not_hit(
        post(&gw, "/v1/responses", &[], &follow),
        &["miss", "bypass"],
        "a continuation of another response",
    );
    assert_eq!(
        f.json()["previous_response_id"],
        json!(id),
        "{}",
        f.describe()
    );
}

/// With `operations = ["chat/completions"]`, completions and responses are relayed every time.
fn only_listed_operations_are_cached(d: Driver) {
    let gw = Setup::with(CacheCfg {
        operations: r#"["chat/completions"]"#,
        ..CacheCfg::default()
    })
    .start(d);
    for (path, body, op) in [
        (
            "/v1/completions",
            json!({"model": "m", "prompt": COFFEE}),
            "completions",
        ),
        (
            "/v1/responses",
            json!({"model": "m", "input": COFFEE}),
            "responses",
        ),
    ] {
        for i in 0..2 {
            let a = post(&gw, path, &[], &body);
            assert_eq!(a.resp.status, 200, "{}", a.describe());
            assert!(!a.is_hit(), "{op} is not in operations: {}", a.describe());
            if i == 0 {
                settle(&gw);
            }
        }
        assert_eq!(
            calls(&gw, "llm", op),
            2,
            "{op}: both calls reach the backend"
        );
    }
    // Chat is.
    let before = entries(&gw);
    expect(ask(&gw, &[], &chat(COFFEE)), "miss", "chat");
    wait_entries(&gw, before + 1, "chat");
    expect(ask(&gw, &[], &chat(COFFEE)), "hit-exact", "chat again");
}

/// The model and dimensions of the last embeddings request the `emb` mock saw.
fn last_embedding_request(gw: &Gateway) -> (String, u64) {
    let reqs = gw.mock_requests("emb");
    let last = reqs.last().expect("no embeddings request recorded");
    let body: Value = serde_json::from_str(last["body"].as_str().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("embeddings request body is not JSON ({e}): {last}"));
    (
        body["model"].as_str().unwrap_or_default().to_string(),
        body["dimensions"].as_u64().unwrap_or(0),
    )
}

/// Issue 10, "done when" 10: a new `similarity_threshold` applies to the next lookup, both ways,
/// and keeps the stored answers; a new embedder model or `dimensions` (by SIGHUP and by
/// `POST /reload`) starts an empty index: old answers are never compared with new vectors, even
/// for a byte-identical body.
fn reload_applies_the_threshold_and_a_new_embedder_starts_empty(d: Driver) {
    let mut setup = Setup::default();
    let mut gw = setup.start(d);
    expect(ask(&gw, &[], &chat(COFFEE)), "miss", "first");
    wait_entries(&gw, 1, "first");
    expect(
        ask(&gw, &[], &chat(COFFEE_WORK)),
        "hit-semantic",
        "cos 0.928 at 0.85",
    );
    assert_eq!(
        last_embedding_request(&gw),
        ("text-embedding-3-small".into(), DIMS)
    );

    // Stricter: a paraphrase as close as the last one now misses.
    setup.cache = setup.cache.similarity(0.99);
    gw.rewrite(&setup.toml());
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    expect(
        ask(&gw, &[], &chat(COFFEE_GREAT)),
        "miss",
        "cos 0.927 at 0.99",
    );
    // Back to 0.85: the answers stored before both reloads are still there.
    setup.cache = setup.cache.similarity(THRESHOLD);
    gw.rewrite(&setup.toml());
    assert_eq!(gw.admin("POST", "/reload").status, 200);
    let h = expect(
        ask(&gw, &[], &chat(COFFEE_MAKE)),
        "hit-semantic",
        "cos 0.922 at 0.85",
    );
    assert!(h.similarity() >= THRESHOLD);

    // A new embedder model, by SIGHUP (a marker model tells when it is loaded).
    setup.cache.embedder_model = "text-embedding-3-large";
    setup.models = "\"m-marker\" = \"chat\"".into();
    gw.rewrite(&setup.toml());
    gw.proc.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let marker = chat_msgs("m-marker", json!([{"role": "user", "content": "marker"}]));
    while ask(&gw, &[("cache-control", "no-cache")], &marker)
        .resp
        .status
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload: {}",
            gw.proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let calls = llm_calls(&gw);
    expect(
        ask(&gw, &[], &chat(COFFEE)),
        "miss",
        "after the embedder model changed",
    );
    assert_eq!(llm_calls(&gw), calls + 1);
    assert_eq!(
        last_embedding_request(&gw),
        ("text-embedding-3-large".into(), DIMS),
        "the new model is asked for"
    );
    // GET /cache may still count the old index while it is dropped: retry until stored.
    let deadline = Instant::now() + STORE_WAIT;
    loop {
        let a = ask(&gw, &[], &chat(COFFEE));
        if a.cache() == "hit-exact" {
            break;
        }
        let a = expect(a, "miss", "not stored yet under the new model");
        assert!(
            Instant::now() < deadline,
            "never stored under the new model: {}",
            a.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // New dimensions, by POST /reload.
    setup.cache.dimensions = DIMS / 2;
    gw.rewrite(&setup.toml());
    assert_eq!(gw.admin("POST", "/reload").status, 200);
    expect(
        ask(&gw, &[], &chat(COFFEE)),
        "miss",
        "after dimensions changed",
    );
    assert_eq!(
        last_embedding_request(&gw),
        ("text-embedding-3-large".into(), DIMS / 2)
    );
    assert!(gw.proc.alive(), "{}", gw.proc.stderr());
}
