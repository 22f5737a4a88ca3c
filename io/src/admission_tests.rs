//! Tests of admission: counter keys, pruning, the get-or-insert race, overflowing numbers.
use super::*;

#[test]
fn idle_counter_keys_are_pruned_off_the_request_path() {
    let l = Limiters::default();
    for i in 0..4096u64 {
        let b = l.dynamic(i, 100);
        if i % 2 == 0 {
            let r = b.try_reserve(10, 0).unwrap();
            b.settle(r, 10, 0);
        }
    }
    // Looking buckets up never prunes: every key is still there.
    assert_eq!(l.dynamic_keys(), 4096);
    // Pruning drops the full (unused) buckets and keeps the spent ones.
    assert_eq!(l.prune(0), 2048);
    assert_eq!(l.dynamic_keys(), 2048);
    // Once they refill (a minute later), they go too.
    assert_eq!(l.prune(60_000_000_000), 2048);
    assert_eq!(l.dynamic_keys(), 0);
}

#[test]
fn racing_first_requests_of_a_key_share_one_bucket() {
    let l = Limiters::default();
    let barrier = std::sync::Barrier::new(2);
    for key in 0..2000u64 {
        let (a, b) = std::thread::scope(|s| {
            let one = s.spawn(|| {
                barrier.wait();
                l.dynamic(key, 100)
            });
            let two = s.spawn(|| {
                barrier.wait();
                l.dynamic(key, 100)
            });
            (one.join().unwrap(), two.join().unwrap())
        });
        assert!(Arc::ptr_eq(&a, &b), "key {key}: two buckets");
    }
    assert_eq!(l.dynamic_keys(), 2000);
}

#[test]
fn a_changed_limit_starts_a_fresh_bucket() {
    let l = Limiters::default();
    let b = l.dynamic(7, 100);
    let _spent = b.try_reserve(100, 0).unwrap();
    assert_eq!(l.dynamic(7, 100).remaining(0), 0);
    assert_eq!(l.dynamic(7, 500).remaining(0), 500);
}

#[test]
fn past_the_key_cap_new_keys_share_an_overflow_bucket() {
    let l = Limiters::default();
    for k in 0..MAX_DYNAMIC_KEYS as u64 {
        let _ = l.dynamic(k, 100);
    }
    let a = l.dynamic(u64::MAX, 100);
    let b = l.dynamic(u64::MAX - 1, 100);
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(l.dynamic_keys(), MAX_DYNAMIC_KEYS + 1);
    // Known keys keep their own bucket.
    assert!(!Arc::ptr_eq(&l.dynamic(5, 100), &a));
}

const LIMITED: &str = r#"
[gateway]
listen = "127.0.0.1:1"

[backends.b]
url = "http://127.0.0.1:2"
dialect = "openai"

[pools.p]
members = [{ backend = "b" }]

[models]
"m" = "p"

[consumers.alpha]
keys = ["key-alpha"]
tokens_per_minute = 1000
token_quota = { tokens = 5000, period = "day" }
"#;

fn caller(max_tokens: Option<u64>, choices: u64) -> Caller<'static> {
    Caller {
        headers: &[],
        model: "m",
        body: br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        max_tokens,
        choices,
        ip: IpAddr::from([127, 0, 0, 1]),
    }
}

#[test]
fn overflowing_caps_are_a_clear_400_and_take_nothing() {
    let cfg = aigw_core::config::parse_str(LIMITED, None).unwrap();
    let l = Limiters::default();
    let policy = Policy::new(&cfg, &l);
    for (max, n) in [
        (u64::MAX, 1),
        (u64::MAX, 0),
        (1 << 63, 2),
        (2, u64::MAX),
        (u64::MAX, u64::MAX),
    ] {
        let r = reserve(&cfg, &policy, &l, Some(0), &caller(Some(max), n), 0, 0);
        let e = r.err().map(|r| r.error);
        assert!(
            matches!(&e, Some(GatewayError::BadRequest(m)) if m.contains("max_tokens × n")),
            "{max} × {n}: {e:?}"
        );
    }
    // Nothing was reserved: the whole bucket and quota are still there.
    let c = &policy.consumers[0];
    assert_eq!(c.bucket.as_ref().unwrap().remaining(0), 1000);
    assert_eq!(c.quota.as_ref().unwrap().remaining(0), 5000);
    // A caller counted by address: the refusal comes before any bucket is created for it.
    let by_ip = format!("{LIMITED}\n[token_limit]\ntokens_per_minute = 100\ncounter = \"ip\"\n");
    let cfg_ip = aigw_core::config::parse_str(&by_ip, None).unwrap();
    let policy_ip = Policy::new(&cfg_ip, &l);
    let r = reserve(
        &cfg_ip,
        &policy_ip,
        &l,
        None,
        &caller(Some(u64::MAX), 2),
        0,
        0,
    );
    assert_eq!(r.err().map(|r| r.error.status()), Some(400));
    assert_eq!(l.dynamic_keys(), 0);
    assert!(reserve(&cfg_ip, &policy_ip, &l, None, &caller(Some(5), 2), 0, 0).is_ok());
    assert_eq!(l.dynamic_keys(), 1);
    // A cap that fits but is bigger than the whole bucket can never be admitted: a 400 that
    // says so (no Retry-After), counted as a token-limit rejection.
    let r = reserve(
        &cfg,
        &policy,
        &l,
        Some(0),
        &caller(Some(u64::MAX / 2), 1),
        0,
        0,
    );
    let r = r.err().unwrap();
    assert_eq!(r.error.status(), 400);
    assert_eq!(r.error.code(), "tokens_exceed_limit");
    assert_eq!(r.error.retry_after(), None);
    assert_eq!(r.reason, Some("tokens_per_minute"));
}

#[test]
fn absurd_usage_is_charged_at_the_ceiling() {
    let cfg = aigw_core::config::parse_str(LIMITED, None).unwrap();
    let l = Limiters::default();
    let policy = Policy::new(&cfg, &l);
    let mut adm = reserve(&cfg, &policy, &l, Some(0), &caller(Some(10), 1), 0, 0).unwrap();
    assert!(adm.estimate > 10);
    adm.settle(u64::MAX, 0);
    let c = &policy.consumers[0];
    let bucket = c.bucket.as_ref().unwrap();
    assert_eq!(bucket.remaining(0), 0);
    // In debt by the ceiling, not by u64::MAX: the wait is what 2^32 tokens cost at 1000/min.
    let minutes = aigw_core::limit::MAX_REQUEST_TOKENS / 1000;
    let wait = bucket.reset_after_ns(0) / 60_000_000_000;
    assert!(wait.abs_diff(minutes) <= 1, "{wait} vs {minutes}");
    assert_eq!(c.quota.as_ref().unwrap().remaining(0), 0);
    // Settling twice is a no-op.
    adm.settle(u64::MAX, 0);
}

#[test]
fn headers_after_settling_show_the_charge_not_the_reservation() {
    let cfg = aigw_core::config::parse_str(LIMITED, None).unwrap();
    let l = Limiters::default();
    let policy = Policy::new(&cfg, &l);
    let mut adm = reserve(&cfg, &policy, &l, Some(0), &caller(Some(500), 1), 0, 0).unwrap();
    assert!(adm.is_limited());
    let remaining = |adm: &Admission| {
        let h = adm.rate_headers(0).unwrap();
        assert_eq!(h[1].0, "x-ratelimit-remaining-tokens");
        h[1].1.parse::<u64>().unwrap()
    };
    // At admission: the whole reservation is taken.
    assert_eq!(remaining(&adm), 1000 - adm.estimate);
    assert_eq!(adm.quota_left(0), Some(5000 - adm.estimate));
    // Settled on 20 tokens: the headers show the bucket and quota after the real charge.
    adm.settle(20, 0);
    assert_eq!(remaining(&adm), 980);
    assert_eq!(adm.quota_left(0), Some(4980));
    // Only the first settlement counts (`complete` settles again after `respond` did).
    adm.settle(0, 0);
    assert_eq!(remaining(&adm), 980);
    assert_eq!(adm.quota_left(0), Some(4980));
}

#[test]
fn durations_read_like_openai() {
    assert_eq!(openai_duration(0), "0ms");
    assert_eq!(openai_duration(20_000_000), "20ms");
    assert_eq!(openai_duration(1_500_000_000), "2s");
    assert_eq!(openai_duration(360_000_000_000), "6m0s");
}

#[test]
fn the_prompt_estimate_is_computed_once_and_unreadable_answers_pay_the_reservation() {
    let mut adm = Admission {
        consumer: None,
        estimate: 50,
        prompt: None,
        bucket: None,
        quota: None,
    };
    let body = br#"{"messages":[{"role":"user","content":"hello world"}]}"#;
    assert_eq!(adm.prompt_estimate("gpt-4o", body), 9);
    // Kept: a later call does not walk the body again (another body would not change it).
    assert_eq!(adm.prompt_estimate("gpt-4o", b"{}"), 9);
    let unreadable = Tapped {
        undecoded: Some(aigw_core::openai::Undecoded::Corrupt),
        ..Tapped::default()
    };
    let u = adm.usage_of(&unreadable, "gpt-4o", b"{}");
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (9, 41, 50)
    );
    let u = adm.usage_of(&Tapped::default(), "gpt-4o", b"{}");
    assert_eq!((u.prompt_tokens, u.total_tokens), (9, 9));
}

#[test]
fn waits_read_like_apim() {
    assert_eq!(in_words(0), "0 seconds");
    assert_eq!(in_words(1), "1 second");
    assert_eq!(in_words(53), "53 seconds");
    assert_eq!(in_words(21 * 60 + 33), "21 minutes and 33 seconds");
    assert_eq!(in_words(3600 + 120 + 5), "1 hour and 2 minutes");
    assert_eq!(in_words(86_400 * 3 + 7), "3 days and 7 seconds");
}
