//! Findings of the security and correctness review of the cache (branch `cache-review`), each
//! pinned by the test that showed it.

use serde_json::json;

use crate::common::*;
use crate::probe::*;
use crate::setup::*;

both_drivers!(
    a_repeated_vary_by_header_is_not_a_partition,
    a_caller_the_limits_refuse_costs_no_embeddings,
    a_prompt_over_max_entry_bytes_is_neither_embedded_nor_stored,
);

/// `vary_by = ["header:x-tenant"]` trusts a header a proxy in front sets; a proxy that appends
/// its value leaves the client's own first. A request carrying the header twice has no single
/// partition: it must not be served the partition of either value (it bypasses).
fn a_repeated_vary_by_header_is_not_a_partition(d: Driver) {
    let gw = Setup::with(CacheCfg {
        vary_by: r#"["header:x-tenant"]"#,
        ..CacheCfg::default()
    })
    .start(d);
    let a = expect(
        ask(&gw, &[("x-tenant", "victim")], &chat(COFFEE)),
        "miss",
        "victim",
    );
    wait_entries(&gw, 1, "the victim's answer");
    expect(
        ask(&gw, &[("x-tenant", "victim")], &chat(COFFEE)),
        "hit-exact",
        "the victim again",
    );
    // The attacker's own value comes second, as an appending proxy would add it.
    for body in [chat(COFFEE), chat(COFFEE_WORK)] {
        let b = ask(
            &gw,
            &[("x-tenant", "victim"), ("x-tenant", "attacker")],
            &body,
        );
        assert_eq!(b.resp.status, 200, "{}", b.describe());
        assert_ne!(
            b.id(),
            a.id(),
            "the victim's answer served to a request that also names another tenant\n{}",
            b.describe()
        );
        assert_eq!(b.cache(), "bypass", "{}", b.describe());
    }
}

const TIGHT: &str = r#"
[consumers.alice]
keys = ["key-alice"]
tokens_per_minute = 200
"#;

/// The embeddings call costs money: a caller whose request the token limits refuse must not get
/// one per request (the lookup used to embed first and admit after). An exact hit is still
/// served free of charge.
fn a_caller_the_limits_refuse_costs_no_embeddings(d: Driver) {
    let gw = Setup {
        extra: TIGHT.into(),
        ..Setup::default()
    }
    .start(d);
    let alice = ("api-key", "key-alice");
    let a = expect(ask(&gw, &[alice], &chat(COFFEE)), "miss", "first");
    wait_entries(&gw, 1, "the answer");
    let before = emb_calls(&gw);
    for (i, text) in [MOUNTAIN, TOASTER, KETTLE, MOUNTAIN_NOW].iter().enumerate() {
        // max_tokens past the whole bucket: never admitted.
        let mut body = chat(&format!("{text} {i}"));
        body["max_tokens"] = json!(100_000);
        let r = ask(&gw, &[alice], &body);
        assert_eq!(r.resp.status, 400, "{}", r.describe());
    }
    assert_eq!(
        emb_calls(&gw),
        before,
        "refused requests reached the embedder"
    );
    // Hits are free: the exact one needs no admission.
    let h = expect(ask(&gw, &[alice], &chat(COFFEE)), "hit-exact", "again");
    assert_eq!(h.id(), a.id());
}

/// `max_entry_bytes` bounds what one entry holds: the stored text counts (a 32 MiB request body
/// could otherwise pin 32 MiB per entry, and send all of it to the embedder per lookup).
fn a_prompt_over_max_entry_bytes_is_neither_embedded_nor_stored(d: Driver) {
    let gw = Setup::with(CacheCfg {
        threshold: format!("similarity_threshold = {THRESHOLD}\nmax_entry_bytes = 4096"),
        ..CacheCfg::default()
    })
    .start(d);
    let long: String = (0..1500).map(|i| format!("w{i} ")).collect();
    assert!(long.len() > 4096);
    let before = emb_calls(&gw);
    expect(ask(&gw, &[], &chat(&long)), "bypass", "a long prompt");
    assert_eq!(emb_calls(&gw), before, "a long prompt was embedded");
    settle(&gw);
    expect(
        ask(&gw, &[], &chat(&long)),
        "bypass",
        "the long prompt again",
    );
}
