//! When the cache must not answer (issue 10, "done when" 4 and 5): the lexical guards after a
//! vector hit (numbers, negation), and the requests that bypass the cache altogether.

use serde_json::json;

use crate::common::*;
use crate::probe::*;
use crate::setup::*;

both_drivers!(
    guards_refuse_other_numbers_and_negations,
    bypasses_reach_the_backend,
    no_store_is_answered_but_not_stored,
);

/// Bag-of-words cosines at 256 dimensions, all above the 0.7 threshold used here, so the vector
/// layer alone would serve each probe and the guard decides.
const USD10: &str = "Convert 10 USD to EUR";
/// 0.824 with [`USD10`].
const USD20: &str = "Convert 20 USD to EUR";
/// 0.920 with [`USD10`] (one more number).
const USD10_20: &str = "Convert 10 USD to EUR 20";
/// 0.920 with [`USD10`]: same numbers, passes.
const USD10_PLEASE: &str = "Convert 10 USD to EUR please";
const SAFE: &str = "Is it safe to take ibuprofen with alcohol";
/// 0.880 with [`SAFE`].
const UNSAFE: &str = "Is it unsafe to take ibuprofen with alcohol";
/// 0.943 with [`SAFE`], 0.844 with [`UNSAFE`]: no negation, passes against [`SAFE`] only.
const SAFE_TODAY: &str = "Is it safe to take ibuprofen with alcohol today";
const BIKE: &str = "Should I store my bicycle outside in winter";
/// 0.934 with [`BIKE`].
const BIKE_NOT: &str = "Should I not store my bicycle outside in winter";
/// 0.934 with [`BIKE`], 0.877 with [`BIKE_NOT`].
const BIKE_PLEASE: &str = "Should I store my bicycle outside in winter please";

/// With the threshold at 0.7 every probe is a vector hit; `guards = ["numbers", "negation"]`
/// turns those with other numbers or another negation into misses, and the passing paraphrases
/// are served the right entry. With `guards = []` the same pairs hit, so the guard is what
/// decided.
fn guards_refuse_other_numbers_and_negations(d: Driver) {
    let gw = Setup::with(CacheCfg::default().similarity(0.7)).start(d);
    let usd10 = expect(ask(&gw, &[], &chat(USD10)), "miss", "10 USD");
    wait_entries(&gw, 1, "10 USD");
    expect(
        ask(&gw, &[], &chat(USD20)),
        "miss",
        "numbers guard: 20 vs 10",
    );
    expect(
        ask(&gw, &[], &chat(USD10_20)),
        "miss",
        "numbers guard: 10 20 vs 10",
    );
    let p = expect(
        ask(&gw, &[], &chat(USD10_PLEASE)),
        "hit-semantic",
        "same numbers",
    );
    assert_eq!(
        p.id(),
        usd10.id(),
        "served the wrong entry: {}",
        p.describe()
    );

    let safe = expect(ask(&gw, &[], &chat(SAFE)), "miss", "safe");
    let bike = expect(ask(&gw, &[], &chat(BIKE)), "miss", "bike");
    settle(&gw);
    expect(
        ask(&gw, &[], &chat(UNSAFE)),
        "miss",
        "negation guard: unsafe vs safe",
    );
    expect(
        ask(&gw, &[], &chat(BIKE_NOT)),
        "miss",
        "negation guard: not vs none",
    );
    settle(&gw);
    let p = expect(
        ask(&gw, &[], &chat(SAFE_TODAY)),
        "hit-semantic",
        "no negation either side",
    );
    assert_eq!(
        p.id(),
        safe.id(),
        "served the negated entry: {}",
        p.describe()
    );
    let p = expect(
        ask(&gw, &[], &chat(BIKE_PLEASE)),
        "hit-semantic",
        "no negation either side",
    );
    assert_eq!(
        p.id(),
        bike.id(),
        "served the negated entry: {}",
        p.describe()
    );

    let gw = Setup::with(CacheCfg {
        guards: "[]",
        ..CacheCfg::default().similarity(0.7)
    })
    .start(d);
    expect(ask(&gw, &[], &chat(USD10)), "miss", "10 USD, no guards");
    expect(ask(&gw, &[], &chat(SAFE)), "miss", "safe, no guards");
    wait_entries(&gw, 2, "two answers");
    expect(
        ask(&gw, &[], &chat(USD20)),
        "hit-semantic",
        "without guards 0.824 ≥ 0.7 hits",
    );
    expect(
        ask(&gw, &[], &chat(UNSAFE)),
        "hit-semantic",
        "without guards 0.880 ≥ 0.7 hits",
    );
}

/// A bypass case: what it is, the headers, the body.
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    serde_json::Value,
);

/// Each bypass is answered by the backend with `x-aigw-cache: bypass`, although an answer for
/// the same text is stored: empty or blank text, `n > 1` (plain and streamed), an image part,
/// more messages than `max_message_count`, `Cache-Control: no-cache`. Text given as content
/// parts is still text, and the stored answer still serves afterwards. With
/// `respect_cache_control = false` no-cache is ignored.
fn bypasses_reach_the_backend(d: Driver) {
    let gw = Setup::with(CacheCfg {
        max_message_count: 4,
        ..CacheCfg::default()
    })
    .start(d);
    let a = expect(ask(&gw, &[], &chat(COFFEE)), "miss", "the stored answer");
    wait_entries(&gw, 1, "the stored answer");

    let with = |key: &str, value: serde_json::Value| {
        let mut b = chat(COFFEE);
        b[key] = value;
        b
    };
    let image = chat_msgs(
        "m",
        json!([{"role": "user", "content": [
            {"type": "text", "text": COFFEE},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]}]),
    );
    let long = chat_msgs(
        "m",
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "I like coffee"},
            {"role": "assistant", "content": "so do I"},
            {"role": "user", "content": COFFEE},
        ]),
    );
    let cases: Vec<Case> = vec![
        ("empty text", vec![], chat("")),
        ("blank text", vec![], chat("  \n\t  ")),
        ("n = 2", vec![], with("n", json!(2))),
        (
            "n = 2, streamed",
            vec![],
            streamed(with("n", json!(2)), true),
        ),
        ("an image part", vec![], image),
        ("5 messages, max_message_count = 4", vec![], long),
        (
            "Cache-Control: no-cache",
            vec![("cache-control", "no-cache")],
            chat(COFFEE),
        ),
        (
            "Cache-Control: max-age=0, no-cache",
            vec![("cache-control", "max-age=0, no-cache")],
            chat(COFFEE),
        ),
    ];
    for (what, headers, body) in &cases {
        let calls = llm_calls(&gw);
        let r = expect(ask(&gw, headers, body), "bypass", what);
        assert_eq!(
            llm_calls(&gw),
            calls + 1,
            "{what}: the backend was not called"
        );
        assert_ne!(r.id(), a.id(), "{what}: served the stored answer");
        if body["stream"] == json!(true) {
            assert!(r.is_sse(), "{what}: {}", r.describe());
        }
    }

    // Text in content parts is text; three messages are within the limit.
    let parts = chat_msgs(
        "m",
        json!([{"role": "user", "content": [{"type": "text", "text": COFFEE}]}]),
    );
    let h = expect_hit(ask(&gw, &[], &parts), "the same text as a text part");
    assert_eq!(h.id(), a.id());
    let three = chat_msgs(
        "m",
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": COFFEE},
        ]),
    );
    expect(
        ask(&gw, &[], &three),
        "miss",
        "3 messages, max_message_count = 4",
    );
    expect(
        ask(&gw, &[], &chat(COFFEE)),
        "hit-exact",
        "after the bypasses",
    );

    // respect_cache_control = false: no-cache is ignored.
    let gw = Setup::with(CacheCfg {
        respect_cache_control: false,
        ..CacheCfg::default()
    })
    .start(d);
    expect(ask(&gw, &[], &chat(COFFEE)), "miss", "first");
    wait_entries(&gw, 1, "first");
    expect(
        ask(&gw, &[("cache-control", "no-cache")], &chat(COFFEE)),
        "hit-exact",
        "no-cache with respect_cache_control = false",
    );
}

/// `Cache-Control: no-store` (with `respect_cache_control`): looked up, answered, not stored.
fn no_store_is_answered_but_not_stored(d: Driver) {
    let gw = Setup::default().start(d);
    expect(
        ask(&gw, &[("cache-control", "no-store")], &chat(COFFEE)),
        "miss",
        "no-store is still looked up",
    );
    settle(&gw);
    let calls = llm_calls(&gw);
    expect(
        ask(&gw, &[], &chat(COFFEE)),
        "miss",
        "after a no-store answer",
    );
    assert_eq!(llm_calls(&gw), calls + 1);
}
