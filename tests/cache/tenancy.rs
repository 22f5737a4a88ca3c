//! Who may be served whose answer (issue 10, "done when" 3): partitions by consumer and by header,
//! the model, and the conversation around the embedded text. Each answer of the mock has its own
//! `id` (`chatcmpl-mockN`), so "never served X's answer" is checked on ids, whatever the header
//! says.

use serde_json::{json, Value};

use crate::common::*;
use crate::probe::*;
use crate::setup::*;

both_drivers!(
    consumers_never_share_unless_vary_by_is_empty,
    header_partitions_never_leak,
    an_answer_never_crosses_models,
    the_conversation_decides_in_last_user_and_conversation_modes,
);

const CONSUMERS: &str = r#"
[consumers.alice]
keys = ["key-alice"]
tokens_per_minute = 1000

[consumers.bob]
keys = ["key-bob"]
tokens_per_minute = 3000
"#;

const ALICE: (&str, &str) = ("api-key", "key-alice");
const BOB: (&str, &str) = ("api-key", "key-bob");

/// Assert `a` is a 200 that is not one of `theirs` (answers stored for someone else).
#[track_caller]
fn not_theirs(a: &Ans, theirs: &[String], why: &str) {
    assert_eq!(a.resp.status, 200, "{why}: {}", a.describe());
    let id = a.id();
    assert!(
        !theirs.contains(&id),
        "{why}: served another partition's answer {id} ({})\n{}",
        a.cache(),
        a.describe()
    );
}

/// Consumer A's entry is a miss for B, byte-identical body or paraphrase, whatever B forges in
/// headers (including the `x-tenant` value A's partition also varies by); with `vary_by = []`
/// B is served A's answer, with B's own rate-limit headers.
fn consumers_never_share_unless_vary_by_is_empty(d: Driver) {
    let gw = Setup {
        extra: CONSUMERS.into(),
        ..Setup::with(CacheCfg {
            vary_by: r#"["consumer", "header:x-tenant"]"#,
            ..CacheCfg::default()
        })
    }
    .start(d);
    let acme = ("x-tenant", "acme");
    let a1 = expect(ask(&gw, &[ALICE, acme], &chat(COFFEE)), "miss", "alice");
    let a2 = expect(ask(&gw, &[ALICE, acme], &chat(MOUNTAIN)), "miss", "alice");
    let alice = vec![a1.id(), a2.id()];
    wait_entries(&gw, 2, "alice's answers");
    // The partition works for alice herself.
    let h = expect(
        ask(&gw, &[ALICE, acme], &chat(COFFEE)),
        "hit-exact",
        "alice again",
    );
    assert_eq!(h.id(), alice[0]);

    let forged: &[(&str, &str)] = &[
        BOB,
        acme,
        ("x-aigw-consumer", "alice"),
        ("x-consumer", "alice"),
        ("x-user-id", "alice"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-aigw-cache", "hit-exact"),
    ];
    let calls = llm_calls(&gw);
    let b = expect(
        ask(&gw, forged, &chat(COFFEE)),
        "miss",
        "bob, alice's exact body, forged headers",
    );
    not_theirs(&b, &alice, "bob probing with alice's exact body");
    let b = expect(
        ask(&gw, forged, &chat(MOUNTAIN_NOW)),
        "miss",
        "bob, a paraphrase of alice's",
    );
    not_theirs(&b, &alice, "bob probing with a paraphrase");
    assert_eq!(
        llm_calls(&gw),
        calls + 2,
        "bob's probes must reach the backend"
    );
    // Bob's own answers may serve bob (his MOUNTAIN_NOW is a paraphrase), never alice's.
    not_theirs(
        &ask(&gw, &[BOB, acme], &chat(MOUNTAIN)),
        &alice,
        "bob, plain",
    );

    // Shared: vary_by = [].
    let gw = Setup {
        extra: CONSUMERS.into(),
        ..Setup::with(CacheCfg {
            vary_by: "[]",
            ..CacheCfg::default()
        })
    }
    .start(d);
    let a = expect(
        ask(&gw, &[ALICE], &chat(TOASTER)),
        "miss",
        "alice, shared cache",
    );
    wait_entries(&gw, 1, "alice's answer");
    let calls = llm_calls(&gw);
    let b = expect(
        ask(&gw, &[BOB], &chat(TOASTER)),
        "hit-exact",
        "bob, shared cache",
    );
    assert_eq!(b.resp.text(), a.resp.text());
    let p = expect(
        ask(&gw, &[BOB], &chat(KETTLE)),
        "hit-semantic",
        "bob, paraphrase",
    );
    assert_eq!(p.id(), a.id());
    assert_eq!(llm_calls(&gw), calls);
    // Bob's limit headers are bob's, not those of the call that stored the answer.
    for hit in [&b, &p] {
        assert_eq!(
            hit.num("x-ratelimit-limit-tokens"),
            3000,
            "{}",
            hit.describe()
        );
    }
}

/// `vary_by = ["header:x-tenant", "header:x-team"]` on an open gateway: another tenant, a missing
/// or empty header, and values whose concatenation equals the stored one's ("t1"+"red" vs
/// "t1r"+"ed") are never served tenant t1's answer.
fn header_partitions_never_leak(d: Driver) {
    let gw = Setup::with(CacheCfg {
        vary_by: r#"["header:x-tenant", "header:x-team"]"#,
        ..CacheCfg::default()
    })
    .start(d);
    let t1 = [("x-tenant", "t1"), ("x-team", "red")];
    let a = expect(ask(&gw, &t1, &chat(COFFEE)), "miss", "t1/red");
    let theirs = vec![a.id()];
    wait_entries(&gw, 1, "t1's answer");
    expect(ask(&gw, &t1, &chat(COFFEE)), "hit-exact", "t1/red again");
    expect(
        ask(&gw, &t1, &chat(COFFEE_WORK)),
        "hit-semantic",
        "t1/red paraphrase",
    );

    let probes: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "another tenant",
            vec![("x-tenant", "t2"), ("x-team", "red")],
        ),
        ("another team", vec![("x-tenant", "t1"), ("x-team", "blue")]),
        ("no tenant header", vec![("x-team", "red")]),
        ("no headers at all", vec![]),
        ("an empty tenant", vec![("x-tenant", ""), ("x-team", "red")]),
        ("t1r + ed", vec![("x-tenant", "t1r"), ("x-team", "ed")]),
        ("t + 1red", vec![("x-tenant", "t"), ("x-team", "1red")]),
        ("t1red + nothing", vec![("x-tenant", "t1red")]),
        ("both in one", vec![("x-tenant", "t1, red")]),
    ];
    // Each probe may be stored in (and later served from) its own partition; never from t1's.
    for (what, headers) in &probes {
        for body in [chat(COFFEE), chat(COFFEE_GREAT)] {
            not_theirs(&ask(&gw, headers, &body), &theirs, what);
        }
    }
}

/// A cached answer is never served for another model, not even one of the same pool, nor through
/// the Azure deployment path; the mock echoes the model, so the body tells whose answer it is.
fn an_answer_never_crosses_models(d: Driver) {
    let gw = Setup::default().start(d);
    let a = expect(ask(&gw, &[], &chat(COFFEE)), "miss", "model m");
    wait_entries(&gw, 1, "m's answer");
    let twin = |content: &str| chat_msgs("m-twin", json!([{"role": "user", "content": content}]));
    let azure = "/openai/deployments/m-twin/chat/completions?api-version=2024-10-21";
    let no_model = json!({"messages": [{"role": "user", "content": COFFEE}]});
    let calls = llm_calls(&gw);
    // The first must miss; the others may hit m-twin's own answers, never m's.
    let probes = [
        expect(
            ask(&gw, &[], &twin(COFFEE)),
            "miss",
            "m-twin, same body otherwise",
        ),
        ask(&gw, &[], &twin(COFFEE_WORK)),
        post(&gw, azure, &[], &no_model),
    ];
    for p in &probes {
        assert_eq!(p.resp.status, 200, "{}", p.describe());
        assert_eq!(
            p.json()["model"],
            "m-twin",
            "m's answer served for m-twin: {}",
            p.describe()
        );
        assert_ne!(p.id(), a.id(), "{}", p.describe());
    }
    assert!(llm_calls(&gw) > calls, "m-twin never reached the backend");
    // The first model still hits.
    let h = expect(
        ask(&gw, &[], &chat(COFFEE_WORK)),
        "hit-semantic",
        "m paraphrase",
    );
    assert_eq!(h.json()["model"], "m");
}

fn system(text: &str) -> Value {
    json!({"role": "system", "content": text})
}
fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}
fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

/// With `embed = "last_user"` the rest of the conversation partitions the cache: another system
/// prompt or other earlier turns miss, while a paraphrase in the same context hits. With
/// `embed = "conversation", ignore_system_messages = true` (APIM parity) a changed system prompt
/// is a hit.
fn the_conversation_decides_in_last_user_and_conversation_modes(d: Driver) {
    let barista = system("You are a helpful barista.");
    let pirate = system("You are a pirate who answers in rhymes.");
    let one = |sys: &Value, last: &str| chat_msgs("m", json!([sys, user(last)]));
    let turns = |sys: &Value, first: &str, reply: &str, last: &str| {
        chat_msgs("m", json!([sys, user(first), assistant(reply), user(last)]))
    };

    let gw = Setup::default().start(d);
    let a = expect(ask(&gw, &[], &one(&barista, COFFEE)), "miss", "barista");
    let stored = vec![a.id()];
    wait_entries(&gw, 1, "the barista answer");
    let calls = llm_calls(&gw);
    let p = expect(
        ask(&gw, &[], &one(&pirate, COFFEE)),
        "miss",
        "last_user: another system prompt",
    );
    not_theirs(&p, &stored, "another system prompt");
    expect(
        ask(&gw, &[], &one(&barista, COFFEE)),
        "hit-exact",
        "the same conversation",
    );
    expect(
        ask(&gw, &[], &one(&barista, COFFEE_WORK)),
        "hit-semantic",
        "same context, paraphrase",
    );
    let t1 = expect(
        ask(
            &gw,
            &[],
            &turns(&barista, "hi", "hello, how can I help?", COFFEE),
        ),
        "miss",
        "last_user: earlier turns added",
    );
    not_theirs(&t1, &stored, "earlier turns added");
    wait_entries(&gw, 3, "the answer with earlier turns");
    let stored = vec![a.id(), p.id(), t1.id()];
    let t2 = expect(
        ask(
            &gw,
            &[],
            &turns(
                &barista,
                "which grinder should I buy?",
                "a burr grinder",
                COFFEE,
            ),
        ),
        "miss",
        "last_user: other earlier turns",
    );
    not_theirs(&t2, &stored, "other earlier turns");
    assert_eq!(llm_calls(&gw), calls + 3);

    let gw = Setup::with(CacheCfg {
        embed: "conversation",
        ignore_system_messages: true,
        ..CacheCfg::default()
    })
    .start(d);
    let a = expect(
        ask(&gw, &[], &one(&barista, COFFEE)),
        "miss",
        "conversation: barista",
    );
    wait_entries(&gw, 1, "the barista answer");
    let calls = llm_calls(&gw);
    let h = expect_hit(
        ask(&gw, &[], &one(&pirate, COFFEE)),
        "conversation + ignore_system_messages: another system prompt",
    );
    assert_eq!(h.id(), a.id());
    assert_eq!(llm_calls(&gw), calls);
}
