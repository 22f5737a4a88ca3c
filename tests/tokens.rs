//! Tokens as the currency: consumer keys (401/403), tokens-per-minute buckets charged with the
//! mock's real usage (429, Retry-After, x-ratelimit-*-tokens, recovery, one bucket per consumer),
//! prompts too big for the whole budget, streamed usage, the bound across workers, and quotas.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;
mod usage;

use std::time::{Duration, Instant};

use common::*;
use usage::*;

both_drivers!(
    keys_are_checked_in_every_place,
    open_gateway_without_consumers,
    budget_spent_then_429_then_recovers,
    prompt_larger_than_budget_never_reaches_upstream,
    streamed_usage_is_counted,
    bucket_holds_across_workers,
    quota_spent_gives_403,
);

const KEYS: &str = r#"
[consumers.alpha]
keys = ["key-alpha", "key-alpha-2"]
models = ["m-oa"]

[consumers.beta]
keys = ["key-beta"]
"#;

const OA: Ask<'static> = Ask::to("m-oa");
const ALPHA: &[(&str, &str)] = &[("api-key", "key-alpha")];
const BETA: &[(&str, &str)] = &[("api-key", "key-beta")];

/// `name: value` as a header list (none when `name` is empty).
fn one(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    if name.is_empty() {
        vec![]
    } else {
        vec![(name, value)]
    }
}

fn keys_are_checked_in_every_place(d: Driver) {
    let gw = Gateway::start(d, &config(1, KEYS));
    // Refused: no key, an unknown key, an empty one, another scheme, a header that is no place.
    let missing = "missing subscription key";
    let refused = [
        ("", "", missing),
        ("api-key", "key-gamma", "invalid subscription key"),
        ("api-key", " ", missing),
        ("Authorization", "Basic a2V5LWFscGhh", missing),
        ("x-api-key", "key-alpha", missing),
    ];
    for (name, value, says) in refused {
        let r = chat(&gw, &OA, &one(name, value));
        let msg = r.resp.assert_openai_error(401);
        assert!(msg.contains(says), "{name}: {value}: {msg}");
        assert_eq!(r.resp.json()["error"]["code"], "invalid_api_key");
        assert!(r.header("x-request-id").is_some(), "{:?}", r.resp.headers);
    }
    assert_eq!(
        mock_total(&gw, "oa"),
        0,
        "a refused request reached the upstream"
    );

    // Accepted from each place a key can come in (and a second key of the same consumer).
    let path = "/v1/chat/completions";
    let places = [
        (path, "api-key", "key-alpha"),
        (path, "Authorization", "Bearer key-alpha"),
        (path, "Ocp-Apim-Subscription-Key", "key-alpha"),
        ("/v1/chat/completions?api-key=key-alpha", "", ""),
        (path, "authorization", "bearer   key-alpha-2 "),
    ];
    for (target, name, value) in places {
        let r = chat_at(&mut gw.client(), target, &OA, &one(name, value));
        assert_eq!(r.status(), 200, "{target} {name}: {}", r.resp.text());
        assert!(r.text.contains("Mock response from oa."), "{}", r.text);
    }
    let seen = gw.mock_requests("oa");
    assert_eq!(seen.len(), places.len());
    for s in &seen {
        // The consumer's key goes nowhere upstream (neither the query nor any header).
        let (path, headers) = (s["path"].as_str().unwrap(), s["headers"].to_string());
        let leaked = path.contains("api-key") || headers.contains("key-alpha");
        assert!(!leaked, "client key forwarded: {s}");
    }

    // A key known but not allowed the model: 403, and the upstream never hears of it.
    let r = chat(&gw, &Ask::to("m-az"), ALPHA);
    let msg = r.resp.assert_openai_error(403);
    assert!(msg.contains("alpha") && msg.contains("m-az"), "{msg}");
    assert_eq!(r.resp.json()["error"]["code"], "model_not_allowed");
    assert_eq!(mock_total(&gw, "az"), 0);
    // An unknown key is refused with 401 even for a model nobody has (nothing learnt about models).
    let r = chat(&gw, &Ask::to("no-such-model"), &[("api-key", "nope")]);
    r.resp.assert_openai_error(401);
    // A consumer without a models list may use any model.
    let r = chat(&gw, &Ask::to("m-az"), BETA);
    assert_eq!(r.status(), 200, "{}", r.resp.text());
    assert!(r.text.contains("from az."), "{}", r.text);
    let seen = gw.mock_requests("az");
    assert!(
        !seen[0]["headers"].to_string().contains("key-beta"),
        "forwarded: {}",
        seen[0]
    );
    // Listing models also needs a key.
    assert_eq!(gw.call("GET", "/v1/models", &[], b"").status, 401);
    assert_eq!(gw.call("GET", "/v1/models", BETA, b"").status, 200);
}

fn open_gateway_without_consumers(d: Driver) {
    let gw = Gateway::start(d, &config(1, ""));
    for (name, value) in [
        ("", ""),
        ("api-key", "anything"),
        ("Authorization", "Bearer x"),
    ] {
        let r = chat(&gw, &OA, &one(name, value));
        assert_eq!(r.status(), 200, "{name}: {}", r.resp.text());
        // No bucket of its own: the upstream's rate headers pass through untouched.
        assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("1000000"));
    }
    assert_eq!(gw.call("GET", "/v1/models", &[], b"").status, 200);
}

const BUCKETS: &str = r#"
[consumers.alpha]
keys = ["key-alpha"]
tokens_per_minute = 100

[consumers.beta]
keys = ["key-beta"]
tokens_per_minute = 100
"#;

fn budget_spent_then_429_then_recovers(d: Driver) {
    let gw = Gateway::start(d, &config(1, BUCKETS));
    let mut c = gw.client();
    let start = Instant::now();
    let (ok, refused) = until_refused(&mut c, &OA, ALPHA, 50);
    let refill = start.elapsed().as_secs_f64() * 100.0 / 60.0;
    let (mut spent, mut largest, mut remaining) = (0, 0, Vec::new());
    for r in &ok {
        let t = r.tokens();
        assert!(t.2 > 0 && t.2 == t.0 + t.1, "{t:?}");
        (spent, largest) = (spent + t.2, largest.max(t.2));
        assert_eq!(r.num_header("x-ratelimit-limit-tokens"), 100);
        remaining.push(r.num_header("x-ratelimit-remaining-tokens"));
        assert!(
            r.header("x-ratelimit-reset-tokens").is_some(),
            "{:?}",
            r.resp.headers
        );
    }
    assert!(ok.len() >= 2, "refused too early: {}", refused.resp.text());
    let down = remaining.windows(2).all(|w| w[1] < w[0]);
    assert!(
        down && remaining[0] < 100,
        "remaining must go down: {remaining:?}"
    );
    // Admitted until the budget was spent: no more than one request over it, no less than one under.
    assert!(
        spent + largest >= 100,
        "refused with budget left: {spent} spent, largest {largest}"
    );
    assert!(
        spent as f64 <= 100.0 + largest as f64 + refill + 1.0,
        "spent {spent} of 100"
    );

    let msg = refused.resp.assert_openai_error(429);
    let (secs, ms) = (
        refused.num_header("retry-after"),
        refused.num_header("retry-after-ms"),
    );
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    assert_eq!(
        secs,
        ms.div_ceil(1000).max(1),
        "Retry-After {secs} vs retry-after-ms {ms}"
    );
    assert_eq!(
        msg,
        format!("Token limit is exceeded. Try again in {secs} seconds.")
    );
    assert_eq!(refused.resp.json()["error"]["code"], "rate_limit_exceeded");
    // The refusal still reports the caller's bucket, with the budget spent.
    assert_eq!(refused.resp.header("x-ratelimit-limit-tokens"), Some("100"));
    assert!(
        refused.num_header("x-ratelimit-remaining-tokens") < 100,
        "{:?}",
        refused.resp.headers
    );
    assert!(refused.resp.header("x-ratelimit-reset-tokens").is_some());
    assert_eq!(
        mock_total(&gw, "oa"),
        ok.len() as u64,
        "the 429 came from the gateway"
    );

    // Another consumer's key has its own bucket.
    let r = chat(&gw, &OA, BETA);
    assert_eq!(
        r.status(),
        200,
        "beta shares alpha's bucket: {}",
        r.resp.text()
    );
    assert_eq!(r.num_header("x-ratelimit-limit-tokens"), 100);
    assert!(r.num_header("x-ratelimit-remaining-tokens") > 50);
    assert_metric_line(
        &gw,
        r#"aigw_ratelimit_rejections_total{consumer="alpha",reason="tokens_per_minute"} 1"#,
    );
    // Waiting as long as told is enough.
    std::thread::sleep(Duration::from_millis(ms + 250));
    let r = chat_on(&mut c, &OA, ALPHA);
    assert_eq!(
        r.status(),
        200,
        "not recovered after Retry-After: {}",
        r.resp.text()
    );
}

fn prompt_larger_than_budget_never_reaches_upstream(d: Driver) {
    let gw = Gateway::start(d, &config(1, "[token_limit]\ntokens_per_minute = 100\n"));
    let big = "lorem ipsum dolor sit amet ".repeat(60);
    let r = chat(&gw, &OA.with_content(&big), &[]);
    // It can never fit: told so (400, no Retry-After that would fail again, and nothing an SDK
    // retries on its own), with the numbers.
    let msg = r.resp.assert_openai_error(400);
    assert!(
        msg.contains("can never be admitted") && msg.contains("limit of 100 tokens"),
        "{msg}"
    );
    assert_eq!(r.resp.json()["error"]["code"], "tokens_exceed_limit");
    assert!(
        r.resp.header("retry-after").is_none(),
        "{:?}",
        r.resp.headers
    );
    assert_eq!(r.num_header("x-ratelimit-limit-tokens"), 100);
    assert_eq!(
        mock_total(&gw, "oa"),
        0,
        "an oversize prompt reached the mock"
    );
    // It took nothing: a small request still has the whole budget, less its own (settled) usage.
    let r = chat(&gw, &OA, &[]);
    assert_eq!(r.status(), 200, "{}", r.resp.text());
    assert_eq!(r.num_header("x-ratelimit-limit-tokens"), 100);
    assert!(r.num_header("x-ratelimit-remaining-tokens") >= 100 - r.tokens().2);
    assert_eq!(mock_total(&gw, "oa"), 1);
}

fn streamed_usage_is_counted(d: Driver) {
    let gw = Gateway::start(d, &config(1, ""));
    let wait_total = |want: u64| {
        let sums = || Some(token_sums(&gw, &[])).filter(|t| t.2 >= want);
        wait_for(Duration::from_secs(5), sums)
            .unwrap_or_else(|| panic!("tokens never reached {want}: {:?}", token_sums(&gw, &[])))
    };
    // With include_usage: the usage chunk is what is counted.
    let r = chat(&gw, &OA.streamed(true), &[]);
    assert_eq!(r.status(), 200, "{}", r.resp.text());
    let u = r.tokens();
    assert!(r.sse && u.1 > 0 && u.2 == u.0 + u.1, "{u:?}");
    assert!(r.text.starts_with("Mock response from oa."), "{}", r.text);
    assert_eq!(wait_total(u.2), u);

    // Without include_usage the client sees no usage, but the streamed text is counted.
    let r2 = chat(&gw, &OA.streamed(false), &[]);
    assert_eq!(r2.status(), 200, "{}", r2.resp.text());
    assert!(
        r2.usage.is_none(),
        "usage without include_usage: {}",
        r2.resp.text()
    );
    assert_eq!(r2.text, r.text, "the same reply, streamed");
    let after = wait_total(u.2 + 1);
    let counted = (after.0 - u.0, after.1 - u.1, after.2 - u.2);
    assert!(
        counted.1 > 0,
        "no completion tokens counted from the stream: {counted:?}"
    );
    // Same prompt and same reply text as the first stream: the count matches the real usage.
    assert_eq!(
        counted, u,
        "counted from the text vs reported by the upstream"
    );
}

fn bucket_holds_across_workers(d: Driver) {
    const TPM: u64 = 1000;
    let extra = format!("[consumers.alpha]\nkeys = [\"key-alpha\"]\ntokens_per_minute = {TPM}\n");
    let gw = Gateway::start(d, &config(2, &extra));
    let start = Instant::now();
    let ask = OA.with_max_tokens(30);
    let (ok, limited) = hammer(gw.addr("listen"), 32, Duration::from_secs(3), ask, ALPHA);
    let elapsed = start.elapsed().as_secs_f64();
    let (n, sum): (usize, u64) = (ok.len(), ok.iter().sum());
    let largest = ok.iter().copied().max().unwrap_or(0);
    let bound = TPM as f64 + elapsed * TPM as f64 / 60.0 + 2.0 * largest as f64;
    let seen =
        format!("{n} ok ({sum} tokens, largest {largest}), {limited} limited in {elapsed:.2}s");
    eprintln!("{seen}; bound {bound:.0}");
    assert!(sum as f64 <= bound, "{seen}: over the bound {bound:.0}");
    assert!(limited > 0, "{seen}: nothing was rate limited");
    assert!(
        sum as f64 >= 0.6 * TPM as f64,
        "{seen}: the limiter starved"
    );
    assert_eq!(mock_total(&gw, "oa"), ok.len() as u64);
}

fn quota_spent_gives_403(d: Driver) {
    let extra = r#"
[consumers.alpha]
keys = ["key-alpha"]
token_quota = { tokens = 60, period = "day" }
"#;
    let gw = Gateway::start(d, &config(1, extra));
    let mut c = gw.client();
    let (ok, refused) = until_refused(&mut c, &OA, ALPHA, 20);
    let spent: u64 = ok.iter().map(|r| r.tokens().2).sum();
    let largest = ok.iter().map(|r| r.tokens().2).max().unwrap_or(0);
    let fair = !ok.is_empty() && spent + largest >= 60 && spent <= 60 + largest;
    assert!(fair, "{} ok, {spent} tokens", ok.len());
    let msg = refused.resp.assert_openai_error(403);
    assert!(msg.starts_with("Token quota is exceeded"), "{msg}");
    assert_eq!(refused.resp.json()["error"]["code"], "quota_exceeded");
    // APIM's wording, and a Retry-After to the end of the day's window (UTC).
    assert!(
        msg.starts_with("Token quota is exceeded. Try again in "),
        "{msg}"
    );
    let retry = refused.num_header("retry-after");
    let now = unix_now();
    let to_midnight = 86_400 - now % 86_400;
    assert!(
        retry >= to_midnight.saturating_sub(60) && retry <= to_midnight + 60,
        "retry-after {retry}, {to_midnight} s to midnight UTC"
    );
    assert_eq!(
        refused.num_header("x-ratelimit-remaining-quota-tokens"),
        60u64.saturating_sub(spent)
    );
    // Every admitted answer said what was left of the quota, falling as it was spent.
    let left: Vec<u64> = ok
        .iter()
        .map(|r| r.num_header("x-ratelimit-remaining-quota-tokens"))
        .collect();
    assert!(left.windows(2).all(|w| w[1] <= w[0]), "{left:?}");
    // Still refused, and the mock saw only the admitted requests.
    chat_on(&mut c, &OA, ALPHA).resp.assert_openai_error(403);
    assert_eq!(mock_total(&gw, "oa"), ok.len() as u64);
    assert_metric_line(
        &gw,
        r#"aigw_ratelimit_rejections_total{consumer="alpha",reason="quota"} 2"#,
    );
}
