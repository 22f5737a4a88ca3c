//! `analyse` on Responses and text completion bodies.

use super::*;

const RESP: Shape = Shape {
    operation: Operation::Responses,
    embed: EmbedMode::LastUser,
    ignore_system_messages: true,
    max_message_count: 10,
};
const CMPL: Shape = Shape {
    operation: Operation::Completions,
    embed: EmbedMode::LastUser,
    ignore_system_messages: true,
    max_message_count: 10,
};

fn resp(input: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(r#"{{"model":"gpt-4o","input":{input}{sep}{extra}}}"#)
}

#[test]
fn responses_string_input() {
    let a = run(&resp(r#""Why is the sky blue?""#, ""), &RESP).unwrap();
    assert_eq!(a.text, "Why is the sky blue?");
    let b = run(
        &resp(r#""Why is the sky blue?""#, r#""instructions":"Be terse.""#),
        &RESP,
    )
    .unwrap();
    assert_ne!(
        a.partition, b.partition,
        "instructions are in the partition"
    );
    let c = run(
        &resp(
            r#""Why is the sky blue?""#,
            r#""stream":true,"metadata":{"k":"v"}"#,
        ),
        &RESP,
    )
    .unwrap();
    assert_eq!((a.partition, a.exact), (c.partition, c.exact));
    assert!(c.stream);
    // `store: false` answers have ids that name nothing: never served to a request that stores.
    let q = r#""Why is the sky blue?""#;
    let off = run(&resp(q, r#""store":false"#), &RESP).unwrap();
    let on = run(&resp(q, r#""store":true"#), &RESP).unwrap();
    assert_ne!(a.partition, off.partition);
    assert_ne!(on.partition, off.partition);
    // As one input item: the same text, a different request shape.
    let items =
        r#"[{"role":"user","content":[{"type":"input_text","text":"Why is the sky blue?"}]}]"#;
    let d = run(&resp(items, ""), &RESP).unwrap();
    assert_eq!(d.text, a.text);
    assert_ne!(d.exact, a.exact);
}

#[test]
fn responses_items_and_instructions_in_conversation_mode() {
    let items = r#"[{"role":"developer","content":"Be terse."},{"type":"message","role":"user","content":"Hi"},{"role":"assistant","content":[{"type":"output_text","text":"Hello!","annotations":[]}]},{"role":"user","content":"Why is the sky blue?"}]"#;
    let last = run(&resp(items, ""), &RESP).unwrap();
    assert_eq!(last.text, "Why is the sky blue?");
    let conv = Shape {
        embed: EmbedMode::Conversation,
        ..RESP
    };
    let c = run(&resp(items, r#""instructions":"Answer in French.""#), &conv).unwrap();
    assert_eq!(
        c.text,
        "user: Hi\nassistant: Hello!\nuser: Why is the sky blue?"
    );
    let d = run(&resp(items, r#""instructions":"Answer in German.""#), &conv).unwrap();
    assert_eq!(c, d, "instructions ignored like a system prompt");
    let keep = Shape {
        ignore_system_messages: false,
        ..conv
    };
    let k = run(&resp(items, r#""instructions":"Answer in French.""#), &keep).unwrap();
    assert!(
        k.text
            .starts_with("system: Answer in French.\ndeveloper: Be terse.\nuser: Hi"),
        "{}",
        k.text
    );
    let l = run(&resp(items, r#""instructions":"Answer in German.""#), &keep).unwrap();
    assert_eq!(k.partition, l.partition);
    assert_ne!(k.exact, l.exact);
    // In last_user mode the instructions split the partition.
    let a = run(&resp(items, r#""instructions":"Answer in French.""#), &RESP).unwrap();
    let b = run(&resp(items, r#""instructions":"Answer in German.""#), &RESP).unwrap();
    assert_ne!(a.partition, b.partition);
}

#[test]
fn responses_bypasses() {
    let q = r#""Why is the sky blue?""#;
    let b = |body: String| run(&body, &RESP).unwrap_err();
    assert_eq!(b(resp(q, r#""background":true"#)), Bypass::Unsupported);
    assert_eq!(
        b(resp(q, r#""conversation":"conv_1""#)),
        Bypass::Unsupported
    );
    assert_eq!(
        b(resp(q, r#""prompt":{"id":"pmpt_1"}"#)),
        Bypass::Unsupported
    );
    assert_eq!(b(resp(q, r#""top_logprobs":2"#)), Bypass::Unsupported);
    assert_eq!(
        b(resp(q, r#""include":["message.output_text.logprobs"]"#)),
        Bypass::Unsupported
    );
    assert_eq!(b(resp(q, r#""instructions":["x"]"#)), Bypass::Unsupported);
    assert_eq!(b(resp(r#""  ""#, "")), Bypass::EmptyText);
    assert_eq!(b(resp("5", "")), Bypass::Unsupported);
    assert_eq!(b(r#"{"model":"m"}"#.into()), Bypass::Unsupported);
    let image = r#"[{"role":"user","content":[{"type":"input_text","text":"What is it?"},{"type":"input_image","image_url":"https://x/y.png"}]}]"#;
    assert_eq!(b(resp(image, "")), Bypass::NonText);
    let file = r#"[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]"#;
    assert_eq!(b(resp(file, "")), Bypass::NonText);
    // Ends with a function call output: nothing to embed.
    let tool = r#"[{"role":"user","content":"Weather?"},{"type":"function_call_output","call_id":"c","output":"sunny"}]"#;
    assert_eq!(b(resp(tool, "")), Bypass::Unsupported);
    assert_eq!(b(resp(r#"[{"content":"x"}]"#, "")), Bypass::Unsupported);
    assert_eq!(
        b(resp(
            r#"[{"type":"reasoning_zz","role":"user","content":"x"}]"#,
            ""
        )),
        Bypass::Unsupported
    );
    assert_eq!(b(resp("[]", "")), Bypass::Unsupported);
    // previous_response_id is kept, in the partition.
    let p1 = run(&resp(q, r#""previous_response_id":"resp_1""#), &RESP).unwrap();
    let p2 = run(&resp(q, r#""previous_response_id":"resp_2""#), &RESP).unwrap();
    assert_ne!(p1.partition, p2.partition);
    // Non-message items stay in the partition.
    let with_call = r#"[{"type":"function_call_output","call_id":"c","output":"sunny"},{"role":"user","content":"Weather?"}]"#;
    let other = r#"[{"type":"function_call_output","call_id":"c","output":"rain"},{"role":"user","content":"Weather?"}]"#;
    let conv = Shape {
        embed: EmbedMode::Conversation,
        ..RESP
    };
    for s in [&RESP, &conv] {
        let x = run(&resp(with_call, ""), s).unwrap();
        let y = run(&resp(other, ""), s).unwrap();
        assert_ne!(x.partition, y.partition);
    }
}

#[test]
fn completions() {
    let body = |p: &str, extra: &str| {
        format!(r#"{{"model":"gpt-3.5-turbo-instruct","prompt":{p}{extra}}}"#)
    };
    let a = run(&body(r#""Say this is a test""#, ""), &CMPL).unwrap();
    assert_eq!(a.text, "Say this is a test");
    let one = run(&body(r#"["Say this is a test"]"#, ""), &CMPL).unwrap();
    assert_eq!(one.text, a.text);
    assert_eq!(run(&body(r#"["a","b"]"#, ""), &CMPL), Err(Bypass::Multiple));
    assert_eq!(
        run(&body(r#"[1,2,3]"#, ""), &CMPL),
        Err(Bypass::Unsupported)
    );
    assert_eq!(run(&body(r#"[]"#, ""), &CMPL), Err(Bypass::Unsupported));
    assert_eq!(run(&body(r#"" ""#, ""), &CMPL), Err(Bypass::EmptyText));
    assert_eq!(
        run(&body(r#""x""#, r#","n":3"#), &CMPL),
        Err(Bypass::Multiple)
    );
    assert_eq!(
        run(&body(r#""x""#, r#","best_of":2"#), &CMPL),
        Err(Bypass::Multiple)
    );
    assert_eq!(
        run(&body(r#""x""#, r#","logprobs":2"#), &CMPL),
        Err(Bypass::Unsupported)
    );
    assert_eq!(run(r#"{"model":"m"}"#, &CMPL), Err(Bypass::Unsupported));
    let s = run(&body(r#""x""#, r#","suffix":"end""#), &CMPL).unwrap();
    assert_ne!(
        s.partition,
        run(&body(r#""x""#, ""), &CMPL).unwrap().partition
    );
    // The operation is part of the partition.
    let as_chat = Shape {
        operation: Operation::Chat,
        ..CMPL
    };
    let c = run(&chat(r#"[{"role":"user","content":"x"}]"#, ""), &as_chat).unwrap();
    assert_ne!(
        c.partition,
        run(&body(r#""x""#, ""), &CMPL).unwrap().partition
    );
}

#[test]
fn names() {
    for op in [
        Operation::Chat,
        Operation::Completions,
        Operation::Responses,
    ] {
        assert_eq!(Operation::parse(op.as_str()), Some(op));
    }
    assert_eq!(Operation::parse("embeddings"), None);
    assert_eq!(Guard::parse("numbers"), Some(Guard::Numbers));
    assert_eq!(Guard::parse("negation"), Some(Guard::Negation));
    assert_eq!(Guard::parse("x"), None);
    assert_eq!(EmbedMode::parse("last_user"), Some(EmbedMode::LastUser));
    assert_eq!(
        EmbedMode::parse("conversation"),
        Some(EmbedMode::Conversation)
    );
    assert_eq!(EmbedMode::parse("all"), None);
    let all = [
        Bypass::NotJson,
        Bypass::EmptyText,
        Bypass::Multiple,
        Bypass::NonText,
        Bypass::TooManyMessages,
        Bypass::Unsupported,
    ];
    let names: std::collections::HashSet<_> = all.iter().map(Bypass::as_str).collect();
    assert_eq!(names.len(), all.len());
}
