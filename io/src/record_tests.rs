//! Tests of counting and logging a finished request: log fields and the access-log line.
use super::*;

#[test]
fn log_fields_are_capped_and_cleaned() {
    assert!(matches!(log_field("gpt-4o", 256), Cow::Borrowed("gpt-4o")));
    let huge = format!("m\r\n{{\"x\":1}}\u{1b}[2J\u{9b}{}", "é".repeat(1 << 16));
    let f = log_field(&huge, MAX_LOG_FIELD_BYTES);
    assert!(f.len() <= MAX_LOG_FIELD_BYTES && f.len() > MAX_LOG_FIELD_BYTES - 4);
    assert!(!f.chars().any(char::is_control), "{f:?}");
    assert!(f.starts_with("m\u{fffd}\u{fffd}{\"x\":1}\u{fffd}[2J\u{fffd}é"));
    // As a JSON line: one line, bounded.
    let line = json!({ "model": f }).to_string();
    assert!(!line.contains('\n') && line.len() < 2 * MAX_LOG_FIELD_BYTES);
    assert_eq!(cut("héllo", 2), ("h", true));
}

/// The hand-written access-log line is the line the `serde_json` map wrote, byte for byte.
#[test]
fn access_line_matches_the_json_map() {
    let rec = Record {
        request_id: RequestId::copy_of("id-\"quoted\"").unwrap_or_default(),
        operation: Cow::Borrowed("chat/completions"),
        model: Cow::Owned(format!("m\u{1b}[2J\\é{}", "x".repeat(300))),
        attempts: 2,
        status: 200,
        upstream_wait: Duration::from_micros(1_234),
        stream: true,
        ..Record::default()
    };
    let usage = Usage {
        prompt_tokens: 3,
        completion_tokens: 4,
        total_tokens: 7,
    };
    let total = Duration::from_micros(5_000_001);
    for (consumer, backend) in [("", ""), ("team \"a\"", "east")] {
        let mut out = Vec::new();
        access_line(
            &mut out,
            &AccessFields {
                rec: &rec,
                method: b"POST",
                path: "/v1/chat/completions",
                now_ms: 1_835_395_200_123,
                consumer,
                backend,
                ip: "::1",
                total,
                usage,
            },
        );
        let expected = json!({
            "time": rfc3339_ms(1_835_395_200_123),
            "request_id": log_field(&rec.request_id, MAX_LOG_FIELD_BYTES),
            "consumer": none_if_empty(consumer),
            "client_ip": "::1",
            "method": "POST",
            "path": "/v1/chat/completions",
            "operation": "chat/completions",
            "model": log_field(&rec.model, MAX_LOG_FIELD_BYTES),
            "backend": none_if_empty(backend),
            "status": 200,
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "total_tokens": 7,
            "attempts": 2,
            "total_ms": millis(total),
            "upstream_ms": millis(rec.upstream_wait),
            "overhead_us": 5_000_001u64 - 1_234,
            "stream": true,
        });
        assert_eq!(String::from_utf8(out).unwrap(), expected.to_string());
    }
}
