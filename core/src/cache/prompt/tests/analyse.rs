//! `analyse` on chat bodies: keys, the window, partition rules, bypasses.

use super::*;

const ONE: &str = r#"[{"role":"user","content":"What is the capital of France?"}]"#;

#[test]
fn a_simple_question_is_analysed() {
    let a = run(&chat(ONE, ""), &CHAT).unwrap();
    assert_eq!(a.text, "What is the capital of France?");
    assert!(!a.stream && !a.include_usage);
    assert_ne!(a.partition, a.exact);
    // Deterministic for one key, different under another.
    assert_eq!(run(&chat(ONE, ""), &CHAT).unwrap(), a);
    let other = analyse(&Keyer::fixed(KEY + 1), chat(ONE, "").as_bytes(), &CHAT, &[]).unwrap();
    let mine = analyse(&Keyer::fixed(KEY), chat(ONE, "").as_bytes(), &CHAT, &[]).unwrap();
    assert_ne!(other.partition, mine.partition);
    assert_ne!(other.exact, mine.exact);
    // Two random keys differ.
    let (r1, r2) = (Keyer::random(), Keyer::random());
    assert_ne!(r1, r2);
    assert_eq!(format!("{r1:?}"), "Keyer(..)");
}

#[test]
fn key_order_whitespace_and_escapes_do_not_change_the_keys() {
    let a = run(&chat(ONE, r#""temperature":0.2"#), &CHAT).unwrap();
    let b = run(
        "\n{ \"temperature\" : 0.2 ,\t\"messages\": [ {\"content\":\"What is the capital of Fr\\u0061nce?\", \"role\":\"user\"} ],\"model\":\"gpt-4o\" }  ",
        &CHAT,
    )
    .unwrap();
    assert_eq!((a.partition, a.exact), (b.partition, b.exact));
}

#[test]
fn volatile_fields_do_not_change_the_keys() {
    let base = run(&chat(ONE, ""), &CHAT).unwrap();
    for extra in [
        r#""stream":true"#,
        r#""stream":true,"stream_options":{"include_usage":true}"#,
        r#""user":"u-17""#,
        r#""metadata":{"k":"v"},"store":true"#,
        r#""safety_identifier":"x","prompt_cache_key":"y""#,
    ] {
        let a = run(&chat(ONE, extra), &CHAT).unwrap();
        assert_eq!(
            (a.partition, a.exact),
            (base.partition, base.exact),
            "{extra}"
        );
    }
    let s = run(
        &chat(
            ONE,
            r#""stream":true,"stream_options":{"include_usage":true}"#,
        ),
        &CHAT,
    );
    let s = s.unwrap();
    assert!(s.stream && s.include_usage);
}

#[test]
fn every_other_parameter_changes_the_partition() {
    let base = run(&chat(ONE, ""), &CHAT).unwrap();
    let mut seen = vec![base.partition];
    for extra in [
        r#""temperature":0.2"#,
        r#""temperature":0.3"#,
        r#""temperature":1"#,
        r#""temperature":1.0"#,
        r#""top_p":0.5"#,
        r#""n":1"#,
        r#""seed":7"#,
        r#""seed":8"#,
        r#""max_tokens":10"#,
        r#""max_completion_tokens":10"#,
        r#""stop":["\n"]"#,
        r#""logit_bias":{"50256":-100}"#,
        r#""response_format":{"type":"json_object"}"#,
        r#""tools":[{"type":"function","function":{"name":"f","parameters":{}}}]"#,
        r#""tool_choice":"none""#,
        r#""presence_penalty":0.1"#,
        r#""frequency_penalty":0.1"#,
        r#""reasoning_effort":"low""#,
        r#""service_tier":"flex""#,
        r#""some_future_field":true"#,
    ] {
        let a = run(&chat(ONE, extra), &CHAT).unwrap();
        assert!(!seen.contains(&a.partition), "{extra} shares a partition");
        assert_eq!(a.text, base.text);
        seen.push(a.partition);
    }
    // A different model in the body, too (io also passes it in the context).
    let m = run(&chat(ONE, "").replace("gpt-4o", "gpt-4o-mini"), &CHAT).unwrap();
    assert_ne!(m.partition, base.partition);
}

#[test]
fn context_fields_are_length_prefixed_and_ordered() {
    let body = chat(ONE, "");
    let p = |ctx: &[&[u8]]| run_ctx(&body, &CHAT, ctx).unwrap().partition;
    assert_ne!(p(&[b"ab", b"c"]), p(&[b"a", b"bc"]));
    assert_ne!(p(&[b"abc"]), p(&[b"ab", b"c"]));
    assert_ne!(p(&[b"a", b"b"]), p(&[b"b", b"a"]));
    assert_ne!(p(&[b""]), p(&[]));
    // Two consumers never share; no vary_by values: everyone shares.
    let alice = p(&[b"chat/completions", b"gpt-4o", b"consumer=alice"]);
    let bob = p(&[b"chat/completions", b"gpt-4o", b"consumer=bob"]);
    assert_ne!(alice, bob);
    assert_eq!(
        p(&[b"chat/completions", b"gpt-4o"]),
        p(&[b"chat/completions", b"gpt-4o"])
    );
    // The embedder's model and dimension are part of it.
    assert_ne!(p(&[b"m", b"e5", b"384"]), p(&[b"m", b"e5", b"512"]));
    // The exact key follows the partition.
    let e = |ctx: &[&[u8]]| run_ctx(&body, &CHAT, ctx).unwrap().exact;
    assert_ne!(e(&[b"consumer=alice"]), e(&[b"consumer=bob"]));
}

#[test]
fn the_exact_key_is_the_whole_text() {
    let a = run(&chat(ONE, ""), &CHAT).unwrap();
    let b = run(&chat(&ONE.replace("France", "Spain"), ""), &CHAT).unwrap();
    assert_eq!(a.partition, b.partition, "same context, same partition");
    assert_ne!(a.exact, b.exact);
    // Text parts: joined for the embedding, but the exact key sees the structure.
    let parts = r#"[{"role":"user","content":[{"type":"text","text":"What is the capital"},{"type":"text","text":"of France?"}]}]"#;
    let p = run(&chat(parts, ""), &CHAT).unwrap();
    assert_eq!(p.text, "What is the capital\nof France?");
    let joined = run(
        &chat(
            r#"[{"role":"user","content":"What is the capital\nof France?"}]"#,
            "",
        ),
        &CHAT,
    )
    .unwrap();
    assert_eq!(p.partition, joined.partition);
    assert_ne!(p.exact, joined.exact);
}

const SYS_A: &str = r#"{"role":"system","content":"You are terse."}"#;
const SYS_B: &str = r#"{"role":"system","content":"You are a pirate."}"#;
const Q: &str = r#"{"role":"user","content":"Tell me about ships."}"#;

#[test]
fn a_system_prompt_change_splits_last_user_but_not_conversation_ignoring_it() {
    let a = format!("[{SYS_A},{Q}]");
    let b = format!("[{SYS_B},{Q}]");
    let none = format!("[{Q}]");
    let last = |m: &str| run(&chat(m, ""), &CHAT).unwrap();
    assert_ne!(last(&a).partition, last(&b).partition);
    assert_ne!(last(&a).partition, last(&none).partition);
    assert_eq!(last(&a).text, "Tell me about ships.");

    let conv = shape(Operation::Chat, EmbedMode::Conversation);
    let c = |m: &str, s: &Shape| run(&chat(m, ""), s).unwrap();
    assert_eq!(c(&a, &conv), c(&b, &conv), "ignored: same keys, same text");
    assert_eq!(c(&a, &conv), c(&none, &conv));
    assert_eq!(c(&a, &conv).text, "user: Tell me about ships.");
    // Not ignored: the system prompt is in the text (and so in the exact key).
    let keep = Shape {
        ignore_system_messages: false,
        ..conv
    };
    assert_eq!(
        c(&a, &keep).text,
        "system: You are terse.\nuser: Tell me about ships."
    );
    assert_eq!(c(&a, &keep).partition, c(&b, &keep).partition);
    assert_ne!(c(&a, &keep).exact, c(&b, &keep).exact);
    assert_ne!(
        c(&a, &keep).partition,
        c(&a, &conv).partition,
        "modes never share"
    );
    assert_ne!(last(&none).partition, c(&none, &conv).partition);
}

#[test]
fn an_earlier_turn_change_splits_last_user() {
    let turns = |prev: &str| {
        format!(
            r#"[{{"role":"user","content":"{prev}"}},{{"role":"assistant","content":"Sure."}},{Q}]"#
        )
    };
    let a = run(&chat(&turns("Be brief."), ""), &CHAT).unwrap();
    let b = run(&chat(&turns("Be long."), ""), &CHAT).unwrap();
    assert_ne!(a.partition, b.partition);
    assert_eq!(a.text, b.text);
    // A message's name is part of it as well.
    let named = chat(
        r#"[{"role":"user","name":"bob","content":"Tell me about ships."}]"#,
        "",
    );
    assert_ne!(
        run(&named, &CHAT).unwrap().partition,
        run(&chat(&format!("[{Q}]"), ""), &CHAT).unwrap().partition
    );
    // Conversation mode: the earlier turns are in the text.
    let conv = shape(Operation::Chat, EmbedMode::Conversation);
    let c = run(&chat(&turns("Be brief."), ""), &conv).unwrap();
    assert_eq!(
        c.text,
        "user: Be brief.\nassistant: Sure.\nuser: Tell me about ships."
    );
}

#[test]
fn bypasses() {
    let b = |body: &str| run(body, &CHAT).unwrap_err();
    assert_eq!(
        b(&chat(r#"[{"role":"user","content":"   \n\t"}]"#, "")),
        Bypass::EmptyText
    );
    assert_eq!(
        b(&chat(r#"[{"role":"user","content":""}]"#, "")),
        Bypass::EmptyText
    );
    assert_eq!(
        b(&chat(r#"[{"role":"user","content":[]}]"#, "")),
        Bypass::EmptyText
    );
    assert_eq!(b(&chat(ONE, r#""n":2"#)), Bypass::Multiple);
    assert!(run(&chat(ONE, r#""n":1"#), &CHAT).is_ok());
    assert_eq!(b(&chat(ONE, r#""n":"2""#)), Bypass::Unsupported);
    assert_eq!(b(&chat(ONE, r#""n":2.0"#)), Bypass::Unsupported);
    let image = r#"[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]"#;
    assert_eq!(b(&chat(image, "")), Bypass::NonText);
    // An image in an earlier turn bypasses too.
    let earlier = format!(
        r#"[{},{{"role":"assistant","content":"ok"}},{Q}]"#,
        &image[1..image.len() - 1]
    );
    assert_eq!(b(&chat(&earlier, "")), Bypass::NonText);
    let audio = r#"[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"","format":"wav"}}]}]"#;
    assert_eq!(b(&chat(audio, "")), Bypass::NonText);
    let file = r#"[{"role":"user","content":[{"type":"file","file":{"file_id":"f"}}]}]"#;
    assert_eq!(b(&chat(file, "")), Bypass::NonText);
    assert_eq!(b(&chat(ONE, r#""logprobs":true"#)), Bypass::Unsupported);
    assert_eq!(
        b(&chat(ONE, r#""modalities":["text","audio"]"#)),
        Bypass::Unsupported
    );
    assert_eq!(
        b(&chat(ONE, r#""audio":{"voice":"alloy","format":"wav"}"#)),
        Bypass::Unsupported
    );
    assert!(run(&chat(ONE, r#""logprobs":false"#), &CHAT).is_ok());
}

#[test]
fn too_many_messages_count_dialog_messages() {
    let many = |n: usize, sys: bool| {
        let mut m: Vec<String> = Vec::new();
        if sys {
            m.push(SYS_A.into());
        }
        for i in 0..n - 1 {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            m.push(format!(r#"{{"role":"{role}","content":"turn {i}"}}"#));
        }
        m.push(Q.into());
        chat(&format!("[{}]", m.join(",")), "")
    };
    let limit = |n| Shape {
        max_message_count: n,
        ..CHAT
    };
    assert!(run(&many(10, false), &limit(10)).is_ok());
    assert!(
        run(&many(10, true), &limit(10)).is_ok(),
        "the system prompt is not counted"
    );
    assert_eq!(
        run(&many(11, false), &limit(10)),
        Err(Bypass::TooManyMessages)
    );
    assert_eq!(run(&many(2, true), &limit(1)), Err(Bypass::TooManyMessages));
    assert!(run(&many(500, true), &limit(0)).is_ok(), "0 = no limit");
    let conv = Shape {
        embed: EmbedMode::Conversation,
        ..limit(3)
    };
    assert_eq!(run(&many(4, true), &conv), Err(Bypass::TooManyMessages));
}
