//! `/metrics`: the latency, overhead and time-to-first-token histograms by `backend` and
//! `model`, with bounded label values: unrouted requests under `none`, models no pool serves and
//! client-chosen models past the cap under `_other`, never an empty value.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;
mod usage;

use std::collections::BTreeSet;

use common::*;
use usage::*;

both_drivers!(
    histograms_are_labelled_by_backend_and_model,
    a_flood_of_models_folds_past_the_cap,
);

const ALPHA: &[(&str, &str)] = &[("api-key", "key-alpha")];

/// The value of the sample `line` starts with (its name and labels), if `/metrics` has it.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn histograms_are_labelled_by_backend_and_model(d: Driver) {
    let gw = Gateway::start(d, &config(1, "[consumers.alpha]\nkeys = [\"key-alpha\"]\n"));
    let post = |headers: &[(&str, &str)], body: &str| {
        gw.call("POST", "/v1/chat/completions", headers, body.as_bytes())
    };
    // Routed and answered: a JSON answer from oa, a stream from az.
    assert_eq!(chat(&gw, &Ask::to("m-oa"), ALPHA).status(), 200);
    assert_eq!(
        chat(&gw, &Ask::to("m-az").streamed(true), ALPHA).status(),
        200
    );
    // Never routed: no key (401), no such path (404), a body that is no JSON (400), a model no
    // pool serves (400).
    post(&[], &chat_body(Some("m-oa"), false)).assert_openai_error(401);
    let r = gw.call("POST", "/nothing/here", ALPHA, b"{}");
    assert_eq!(r.status, 404, "{}", r.text());
    post(ALPHA, "{not json").assert_openai_error(400);
    post(ALPHA, &chat_body(Some("no-such-model"), false)).assert_openai_error(400);

    let d = "aigw_request_duration_seconds";
    let want = [
        format!("{d}_count{{backend=\"oa\",model=\"m-oa\"}}"),
        format!("{d}_count{{backend=\"az\",model=\"m-az\"}}"),
        format!("{d}_count{{backend=\"none\",model=\"none\"}}"),
        format!("{d}_count{{backend=\"none\",model=\"_other\"}}"),
    ];
    let counts = [1, 1, 3, 1];
    let ok = |m: &str| {
        want.iter()
            .zip(counts)
            .all(|(s, n)| sample(m, s) == Some(n))
    };
    assert!(
        gw.metrics_within(ok),
        "{want:?} not {counts:?} in\n{}",
        gw.admin("GET", "/metrics").text()
    );
    let m = gw.admin("GET", "/metrics").text();
    // Every bucket carries both labels before `le`, and the buckets are cumulative to the count.
    let inf = format!("{d}_bucket{{backend=\"oa\",model=\"m-oa\",le=\"+Inf\"}}");
    assert_eq!(sample(&m, &inf), Some(1), "{m}");
    let le = format!("{d}_bucket{{backend=\"oa\",model=\"m-oa\",le=\"120\"}}");
    assert_eq!(sample(&m, &le), Some(1), "{m}");
    assert!(m.contains(&format!("{d}_sum{{backend=\"oa\",model=\"m-oa\"}} ")));
    let o = "aigw_gateway_overhead_seconds";
    assert_eq!(
        sample(&m, &format!("{o}_count{{backend=\"none\",model=\"none\"}}")),
        Some(3)
    );
    assert_eq!(
        sample(&m, &format!("{o}_count{{backend=\"oa\",model=\"m-oa\"}}")),
        Some(1)
    );
    // Time to first token: the stream only.
    let t = "aigw_time_to_first_token_seconds";
    assert_eq!(
        sample(&m, &format!("{t}_count{{backend=\"az\",model=\"m-az\"}}")),
        Some(1),
        "{m}"
    );
    assert!(!m.contains(&format!("{t}_count{{backend=\"oa\"")), "{m}");
    // The request counter uses the same labels: never an empty value anywhere.
    let unrouted = r#"aigw_requests_total{model="none",backend="none",status="401"}"#;
    assert_eq!(sample(&m, unrouted), Some(1), "{m}");
    assert!(!m.contains("=\"\""), "an empty label value:\n{m}");
    assert!(!m.contains("no-such-model"), "{m}");
}

fn a_flood_of_models_folds_past_the_cap(d: Driver) {
    // `"*"` routes every model: the names are the client's.
    let gw = Gateway::start(d, &config(1, "\"*\" = \"p_oa\"\n"));
    const CAP: usize = 64;
    let mut c = gw.client();
    for i in 0..CAP + 16 {
        let model = format!("flood-{i}");
        assert_eq!(chat_on(&mut c, &Ask::to(&model), &[]).status(), 200);
    }
    // A configured model is itself whatever clients sent before it.
    assert_eq!(chat_on(&mut c, &Ask::to("m-oa"), &[]).status(), 200);
    let prefix = "aigw_request_duration_seconds_count{";
    let folded = format!("{prefix}backend=\"oa\",model=\"_other\"}} 16");
    assert!(
        gw.metrics_within(|m| m.lines().any(|l| l == folded)),
        "{folded} not in\n{}",
        gw.admin("GET", "/metrics").text()
    );
    let m = gw.admin("GET", "/metrics").text();
    let models: BTreeSet<&str> = m
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split("model=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(models.len(), CAP + 2, "{models:?}");
    assert!(models.contains("flood-0") && models.contains("m-oa"));
    assert!(!models.contains(format!("flood-{CAP}").as_str()));
    // The request counter folds the same names.
    let counted = r#"aigw_requests_total{model="_other",backend="oa",status="200"} 16"#;
    assert!(m.lines().any(|l| l == counted), "{m}");
}
