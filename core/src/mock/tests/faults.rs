//! Faults: config failures, header overrides, the simulation object, rate-limit headers, recording.

use serde_json::Value;

use super::*;

#[test]
fn fail_every_pattern_and_stats() {
    let o = MockOptions {
        fail_status: Some(503),
        fail: FailMode::Every(3),
        ..opts("r")
    };
    let s = MockShared::new("r");
    let statuses: Vec<u16> = (0..7)
        .map(|_| call(&o, &s, "POST", "/v1/chat/completions", &[], CHAT).status)
        .collect();
    assert_eq!(statuses, [200, 200, 503, 200, 200, 503, 200]);
    assert_eq!(s.count_for("chat/completions"), 7);
    assert_eq!(s.failed(), 2);
    s.reset();
    assert_eq!(
        call(&o, &s, "POST", "/v1/chat/completions", &[], CHAT).status,
        200
    );
    let rate = MockOptions {
        fail_status: Some(500),
        fail: FailMode::Rate(0.6),
        ..opts("r")
    };
    let req = MockRequest {
        method: b"POST",
        path: "/v1/chat/completions",
        query: "",
        headers: &[],
        body: CHAT.as_bytes(),
    };
    assert_eq!(handle(&rate, &s, &req, 0.59).status, 500);
    assert_eq!(handle(&rate, &s, &req, 0.61).status, 200);
}

#[test]
fn header_overrides_win() {
    let o = MockOptions {
        fail_status: Some(500),
        fail: FailMode::Every(1),
        latency_ms: 10,
        ..opts("r")
    };
    let s = MockShared::new("r");
    let h = [
        header("X-Mock-Status", "200"),
        header("x-mock-latency-ms", "40"),
    ];
    let r = call(&o, &s, "POST", "/v1/chat/completions", &h, CHAT);
    assert_eq!(r.status, 200);
    assert_eq!(r.delay_ms, 50);
    let h = [
        header("x-mock-status", "429"),
        header("x-mock-retry-after", "9"),
    ];
    let r = call(&o, &s, "POST", "/v1/chat/completions", &h, CHAT);
    assert_eq!(r.status, 429);
    assert_eq!(header_of(&r, "retry-after"), Some("9"));
    assert_eq!(header_of(&r, "retry-after-ms"), Some("9000"));
    assert_eq!(
        json(&r)["error"]["message"],
        "Rate limit is exceeded. Try again in 9 seconds."
    );
    // A header status also beats an unparsable body.
    let r = call(
        &o,
        &s,
        "POST",
        "/v1/chat/completions",
        &[header("x-mock-status", "503")],
        "{",
    );
    assert_eq!(r.status, 503);
    assert_eq!(
        json(&r)["error"]["message"],
        "The engine is currently overloaded, please try again later"
    );
}

#[test]
fn injected_429_headers_from_config() {
    let o = MockOptions {
        fail_status: Some(429),
        fail: FailMode::Every(1),
        retry_after_secs: 5,
        ..opts("r")
    };
    let r = post(&o, "/v1/chat/completions", CHAT);
    assert_eq!(r.status, 429);
    assert_eq!(header_of(&r, "Retry-After"), Some("5"));
    assert_eq!(header_of(&r, "retry-after-ms"), Some("5000"));
    assert_eq!(header_of(&r, "x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(header_of(&r, "x-ms-region"), Some("r"));
    let v = json(&r);
    assert_eq!(v["error"]["code"], "429");
    assert_eq!(
        v["error"]["message"],
        "Rate limit is exceeded. Try again in 5 seconds."
    );
    let o = MockOptions {
        fail_status: Some(500),
        ..o
    };
    let r = post(&o, "/v1/chat/completions", CHAT);
    assert_eq!(json(&r)["error"]["message"], "Internal server error");
    assert_eq!(header_of(&r, "retry-after"), None);
}

#[test]
fn simulation_object_by_region_and_default() {
    let body = r#"{"messages":[{"role":"user","content":{"simulation":{
        "eastus":{"response_status_code":429,"wait_time_ms":120},
        "default":{"response_status_code":200,"wait_time_ms":30}}}}]}"#;
    let o = MockOptions {
        latency_ms: 5,
        ..opts("eastus")
    };
    let r = post(&o, "/openai/deployments/gpt-4o/chat/completions", body);
    assert_eq!((r.status, r.delay_ms), (429, 125));
    let o = MockOptions {
        latency_ms: 5,
        ..opts("westus")
    };
    let r = post(&o, "/openai/deployments/gpt-4o/chat/completions", body);
    assert_eq!((r.status, r.delay_ms), (200, 35));
    // The simulation beats the config; a header beats the simulation.
    let o = MockOptions {
        fail_status: Some(500),
        fail: FailMode::Every(1),
        ..opts("westus")
    };
    assert_eq!(post(&o, "/v1/chat/completions", body).status, 200);
    let s = MockShared::new("eastus");
    let r = call(
        &opts("eastus"),
        &s,
        "POST",
        "/v1/chat/completions",
        &[header("x-mock-status", "200")],
        body,
    );
    assert_eq!((r.status, r.delay_ms), (200, 120));
}

/// A region entry without `wait_time_ms` (the labs' usual `{"response_status_code": 429}`)
/// takes `default`'s, and one without a status takes `default`'s status, key by key.
#[test]
fn region_entries_inherit_missing_keys_from_default() {
    let body = r#"{"messages":[{"role":"user","content":{"simulation":{
        "eastus":{"response_status_code":429},
        "westus":{"wait_time_ms":40},
        "default":{"response_status_code":503,"wait_time_ms":30}}}}]}"#;
    let r = post(&opts("eastus"), "/v1/chat/completions", body);
    assert_eq!((r.status, r.delay_ms), (429, 30));
    let r = post(&opts("westus"), "/v1/chat/completions", body);
    assert_eq!((r.status, r.delay_ms), (503, 40));
    let r = post(&opts("northus"), "/v1/chat/completions", body);
    assert_eq!((r.status, r.delay_ms), (503, 30));
}

#[test]
fn rate_limit_headers_count_down() {
    let o = opts("r");
    let s = MockShared::new("r");
    let first = call(&o, &s, "POST", "/v1/chat/completions", &[], CHAT);
    let second = call(&o, &s, "POST", "/v1/chat/completions", &[], CHAT);
    let num = |r: &MockReply, n: &str| header_of(r, n).unwrap().parse::<u64>().unwrap();
    assert!(
        num(&second, "x-ratelimit-remaining-requests")
            < num(&first, "x-ratelimit-remaining-requests")
    );
    assert!(
        num(&second, "x-ratelimit-remaining-tokens") < num(&first, "x-ratelimit-remaining-tokens")
    );
}

#[test]
fn requests_are_recorded() {
    let o = opts("r");
    let s = MockShared::new("r");
    let h = [header("Api-Key", "secret"), header("X-Trace", "t1")];
    let req = MockRequest {
        method: b"POST",
        path: "/openai/deployments/d/chat/completions",
        query: "api-version=2024-10-21",
        headers: &h,
        body: CHAT.as_bytes(),
    };
    handle(&o, &s, &req, 0.0);
    let v: Value = serde_json::from_slice(&s.requests_json()).unwrap();
    let r = &v["requests"][0];
    assert_eq!(r["method"], "POST");
    assert_eq!(
        r["path"],
        "/openai/deployments/d/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(r["headers"]["api-key"], "secret");
    assert_eq!(r["headers"]["x-trace"], "t1");
    assert_eq!(r["body"], CHAT);
}
