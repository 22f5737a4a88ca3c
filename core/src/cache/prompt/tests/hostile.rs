//! `analyse` on hostile bodies: malformed, duplicated, deep, huge; never a panic.

use super::*;

const ONE: &str = r#"[{"role":"user","content":"What is the capital of France?"}]"#;

#[test]
fn malformed_requests_are_unsupported_never_a_panic() {
    let u = |body: &str| run(body, &CHAT).unwrap_err();
    assert_eq!(u("not json"), Bypass::NotJson);
    assert_eq!(u(""), Bypass::NotJson);
    assert_eq!(
        u(&format!("\u{feff}{}", chat(ONE, ""))),
        Bypass::NotJson,
        "a BOM"
    );
    assert_eq!(
        u(&format!("{} x", chat(ONE, ""))),
        Bypass::NotJson,
        "trailing bytes"
    );
    assert_eq!(
        analyse(
            &Keyer::fixed(1),
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
            &CHAT,
            &[]
        ),
        Err(Bypass::NotJson),
        "invalid UTF-8"
    );
    assert_eq!(
        u(r#"{"messages":[{"role":"user","content":"\ud800"}]}"#),
        Bypass::NotJson,
        "lone surrogate"
    );
    assert_eq!(u("[1,2]"), Bypass::Unsupported);
    assert_eq!(u("\"a\""), Bypass::Unsupported);
    assert_eq!(u("{}"), Bypass::Unsupported);
    assert_eq!(u(r#"{"messages":{}}"#), Bypass::Unsupported);
    assert_eq!(u(r#"{"messages":"hi"}"#), Bypass::Unsupported);
    assert_eq!(u(r#"{"messages":[]}"#), Bypass::Unsupported);
    assert_eq!(u(r#"{"messages":[null]}"#), Bypass::Unsupported);
    assert_eq!(
        u(r#"{"messages":[{"content":"hi"}]}"#),
        Bypass::Unsupported,
        "no role"
    );
    assert_eq!(
        u(r#"{"messages":[{"role":"wizard","content":"hi"}]}"#),
        Bypass::Unsupported
    );
    assert_eq!(
        u(r#"{"messages":[{"role":"user","content":null}]}"#),
        Bypass::Unsupported
    );
    assert_eq!(u(r#"{"messages":[{"role":"user"}]}"#), Bypass::Unsupported);
    assert_eq!(
        u(r#"{"messages":[{"role":"user","content":5}]}"#),
        Bypass::Unsupported
    );
    assert_eq!(
        u(r#"{"messages":[{"role":"user","content":[{"text":"x"}]}]}"#),
        Bypass::Unsupported
    );
    assert_eq!(
        u(r#"{"messages":[{"role":"user","content":[{"type":"text"}]}]}"#),
        Bypass::Unsupported
    );
    assert_eq!(
        u(r#"{"messages":[{"role":"user","content":[{"type":"hologram"}]}]}"#),
        Bypass::Unsupported
    );
    // Ends with the assistant or a tool: nothing to embed in last_user mode.
    assert_eq!(
        u(&chat(
            r#"[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]"#,
            ""
        )),
        Bypass::Unsupported
    );
    assert_eq!(
        u(&chat(
            r#"[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"t","content":"42"}]"#,
            ""
        )),
        Bypass::Unsupported
    );
    // Duplicate keys anywhere: the backend might read the other one.
    assert_eq!(
        u(
            r#"{"messages":[{"role":"user","content":"a"}],"messages":[{"role":"user","content":"b"}]}"#
        ),
        Bypass::Unsupported
    );
    assert_eq!(
        u(r#"{"messages":[{"role":"user","role":"system","content":"a"}]}"#),
        Bypass::Unsupported
    );
    assert_eq!(
        u(&chat(ONE, r#""tools":[{"a":1,"a":2}]"#)),
        Bypass::Unsupported
    );
}

#[test]
fn deep_nesting_and_huge_numbers_are_bounded() {
    // 63 levels of arrays under the root object: accepted (the root is level 1).
    let ok = |depth: usize| {
        chat(
            ONE,
            &format!(r#""x":{}{}"#, "[".repeat(depth), "]".repeat(depth)),
        )
    };
    assert!(run(&ok(63), &CHAT).is_ok());
    assert_eq!(run(&ok(64), &CHAT), Err(Bypass::Unsupported));
    // Far past serde_json's own limit: refused without recursing (no stack overflow).
    let deep = chat(ONE, &format!(r#""x":{}"#, "[".repeat(100_000)));
    assert!(run(&deep, &CHAT).is_err());
    let objs = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    assert!(run(&objs, &CHAT).is_err());
    // Huge numbers: out of f64 range is not JSON for serde_json; long integers are floats.
    assert_eq!(
        run(&chat(ONE, r#""seed":1e400"#), &CHAT),
        Err(Bypass::NotJson)
    );
    let big = run(&chat(ONE, &format!(r#""seed":{}"#, "9".repeat(300))), &CHAT).unwrap();
    let small = run(&chat(ONE, r#""seed":99"#), &CHAT).unwrap();
    assert_ne!(big.partition, small.partition);
    let u = run(&chat(ONE, r#""seed":18446744073709551615"#), &CHAT).unwrap();
    let i = run(&chat(ONE, r#""seed":-9223372036854775808"#), &CHAT).unwrap();
    assert_ne!(u.partition, i.partition);
}
