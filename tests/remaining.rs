//! `x-ratelimit-remaining-tokens` (and `x-ratelimit-remaining-quota-tokens`) on an answer are
//! what is left once that answer is charged, whenever the charge is known before the head goes
//! out: a non-streamed answer (Content-Length or chunked) is read whole first, an error answer is
//! charged nothing. A stream's head carries the value at admission (after its reservation).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;
mod usage;

use std::time::Instant;

use common::*;
use usage::*;

both_drivers!(
    remaining_tokens_are_the_settled_ones,
    an_answer_the_budget_cannot_hold_is_relayed_with_admission_headers,
);

/// Tokens per minute of the caller's bucket.
const N: u64 = 1000;
/// The caller's daily quota.
const QUOTA: u64 = 100_000;

const ALPHA: &[(&str, &str)] = &[("api-key", "key-alpha")];

fn remaining_tokens_are_the_settled_ones(d: Driver) {
    let extra = format!(
        "[consumers.alpha]\nkeys = [\"key-alpha\"]\ntokens_per_minute = {N}\n\
         token_quota = {{ tokens = {QUOTA}, period = \"day\" }}\n"
    );
    let gw = Gateway::start(d, &config(1, &extra));
    let t0 = Instant::now();
    // What the bucket may have refilled since the first request: it refills N tokens a minute.
    let refill = || (t0.elapsed().as_secs_f64() * N as f64 / 60.0).ceil() as u64 + 1;
    let left = |r: &Reply| r.num_header("x-ratelimit-remaining-tokens");
    let quota = |r: &Reply| r.num_header("x-ratelimit-remaining-quota-tokens");
    let mut c = gw.client();

    // A large reservation (max_tokens 900), a small answer: the header is N minus the answer's
    // usage, not N minus the reservation.
    let r1 = chat_on(&mut c, &Ask::to("m-oa").with_max_tokens(900), ALPHA);
    assert_eq!(r1.status(), 200, "{}", r1.resp.text());
    let u1 = r1.tokens().2;
    assert!(u1 < 100, "the mock's answer is small: {u1}");
    assert!(
        (N - u1..=N - u1 + refill()).contains(&left(&r1)),
        "remaining {} after an answer of {u1} tokens (reserved over 900)",
        left(&r1)
    );
    assert_eq!(quota(&r1), QUOTA - u1);
    assert_eq!(r1.num_header("x-ratelimit-limit-tokens"), N);

    // A stream's head goes out before its usage exists: it carries the bucket after its
    // reservation (at least the 500 of max_tokens), which already shows the first answer settled.
    let ask = Ask::to("m-oa").with_max_tokens(500).streamed(true);
    let r2 = chat_on(&mut c, &ask, ALPHA);
    assert_eq!(r2.status(), 200, "{}", r2.resp.text());
    let u2 = r2.tokens().2;
    let reserved = N - u1 - 500; // the prompt's estimate is reserved too
    let l2 = left(&r2);
    assert!(
        l2 <= reserved + refill() && l2 + 50 >= reserved,
        "stream: remaining {l2}, {reserved} after its reservation"
    );
    assert!(quota(&r2) <= QUOTA - u1 - 500 && quota(&r2) + 50 >= QUOTA - u1 - 500);

    // The next answer sees the stream settled; a chunked JSON answer is read whole too (and
    // framed by its length).
    let r3 = chat_on(
        &mut c,
        &Ask::to("m-oa").with_max_tokens(300),
        &[ALPHA[0], ("x-mock-framing", "odd")],
    );
    assert_eq!(r3.status(), 200, "{}", r3.resp.text());
    assert!(
        r3.header("transfer-encoding").is_none(),
        "{:?}",
        r3.resp.headers
    );
    assert_eq!(
        r3.num_header("content-length"),
        r3.resp.body.len() as u64,
        "{:?}",
        r3.resp.headers
    );
    let u3 = r3.tokens().2;
    let spent = u1 + u2 + u3;
    assert!(
        (N - spent..=N - spent + refill()).contains(&left(&r3)),
        "remaining {} after {spent} tokens spent",
        left(&r3)
    );
    assert_eq!(quota(&r3), QUOTA - spent);

    // An error answer is charged nothing: its header shows the reservation handed back.
    let r4 = chat_on(
        &mut c,
        &Ask::to("m-oa").with_max_tokens(300),
        &[ALPHA[0], ("x-mock-status", "400")],
    );
    assert_eq!(r4.status(), 400, "{}", r4.resp.text());
    assert!(
        (N - spent..=N - spent + refill()).contains(&left(&r4)),
        "remaining {} after an error answer, {spent} spent",
        left(&r4)
    );
    assert_eq!(quota(&r4), QUOTA - spent);
}

/// Answers read whole share the worker's body budget (`max_buffered_body_bytes`): one that does
/// not fit is relayed as it arrives, with the bucket as admission left it, never refused. Here the
/// budget (600 bytes) holds a request body but not a chat answer twice over (the body and the tap's
/// copy of it).
fn an_answer_the_budget_cannot_hold_is_relayed_with_admission_headers(d: Driver) {
    let extra = format!("[consumers.alpha]\nkeys = [\"key-alpha\"]\ntokens_per_minute = {N}\n");
    let cfg = config(1, &extra).replacen(
        "workers = 1\n",
        "workers = 1\nmax_body_bytes = 600\nmax_buffered_body_bytes = 600\n",
        1,
    );
    let gw = Gateway::start(d, &cfg);
    let mut c = gw.client();
    let r = chat_on(&mut c, &Ask::to("m-oa").with_max_tokens(900), ALPHA);
    assert_eq!(r.status(), 200, "{}", r.resp.text());
    assert!(
        r.resp.body.len() > 300,
        "the answer is larger than half the budget"
    );
    // The reservation (over 900) still shows: the answer was not read whole.
    let left = r.num_header("x-ratelimit-remaining-tokens");
    assert!(
        left < N - 900,
        "remaining {left}: the answer was read whole after all"
    );
    // Settled at the end all the same: the next answer sees the first one's real usage.
    let u1 = r.tokens().2;
    let r2 = chat_on(&mut c, &Ask::to("m-oa").with_max_tokens(10), ALPHA);
    assert_eq!(r2.status(), 200);
    let left2 = r2.num_header("x-ratelimit-remaining-tokens");
    assert!(
        left2 > N - u1 - 10 - 100 && left2 < N,
        "remaining {left2} after {u1}"
    );
}
