//! Tests of the usage tap: shapes, every split point, limits.
use super::*;
use crate::openai::UsageTap;

const CHAT: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there.","refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;

/// A mock-like chat stream: role frame, content frames, finish frame, optional usage frame, `[DONE]`.
fn chat_stream(words: &[&str], usage: bool, eol: &str) -> Vec<u8> {
    let head = r#""object":"chat.completion.chunk","model":"gpt-4o""#;
    let u = if usage { r#","usage":null"# } else { "" };
    let frame = |choices: String| format!("data: {{{head},\"choices\":[{choices}]{u}}}{eol}{eol}");
    let mut s = frame(r#"{"index":0,"delta":{"role":"assistant"},"finish_reason":null}"#.into());
    for w in words {
        s += &frame(format!(
            r#"{{"index":0,"delta":{{"content":"{w}"}},"finish_reason":null}}"#
        ));
    }
    s += &frame(r#"{"index":0,"delta":{},"finish_reason":"stop"}"#.into());
    if usage {
        s += &format!("data: {{{head},\"choices\":[],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":{},\"total_tokens\":{}}}}}{eol}{eol}", words.len(), 9 + words.len());
    }
    s += &format!("data: [DONE]{eol}{eol}");
    s.into_bytes()
}

fn tap(sse: bool, pieces: &[&[u8]], max_json: usize, max_text: usize) -> Tapped {
    let mut t = UsageTap::new(sse, max_json, max_text);
    pieces.iter().for_each(|p| t.feed(p));
    t.finish()
}

fn whole(sse: bool, body: &[u8]) -> Tapped {
    tap(sse, &[body], 1 << 20, 1 << 16)
}

/// Every two-piece split (and byte-by-byte feeding) gives the one-piece answer.
fn assert_split_free(sse: bool, body: &[u8], max_json: usize, max_text: usize) -> Tapped {
    let one = tap(sse, &[body], max_json, max_text);
    for cut in 0..=body.len() {
        let (a, b) = body.split_at(cut);
        assert_eq!(tap(sse, &[a, b], max_json, max_text), one, "cut at {cut}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(tap(sse, &bytes, max_json, max_text), one);
    one
}

fn usage(p: u64, c: u64, t: u64) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: t,
    })
}

#[test]
fn json_chat_completion_embeddings_and_text_completion() {
    let t = assert_split_free(false, CHAT.as_bytes(), 1 << 20, 1 << 10);
    assert_eq!(
        (t.usage, t.text.as_str(), t.text_truncated, t.stream),
        (usage(9, 3, 12), "Hi there.", false, false)
    );
    let emb = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2,3e-5]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    let t = whole(false, emb);
    assert_eq!((t.usage, t.text.as_str()), (usage(8, 0, 8), ""));
    let cmpl = br#"{"object":"text_completion","choices":[{"text":"Once","index":0}],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#;
    assert_eq!(whole(false, cmpl).usage, usage(2, 1, 3));
    assert_eq!(whole(false, cmpl).text, "Once");
    for body in [
        &br#"{"choices":[{"message":{"content":"x"}}],"usage":null}"#[..],
        br#" {"choices":[{"message":{"content":"x"}}]} "#,
    ] {
        let t = whole(false, body);
        assert_eq!((t.usage, t.text.as_str()), (None, "x"));
    }
    let t = whole(
        false,
        br#"{"error":{"message":"nope","type":"invalid_request_error"}}"#,
    );
    assert_eq!(t, Tapped::default());
}

#[test]
fn sse_stream_split_anywhere() {
    let body = chat_stream(&["Mock", " response", " from", " eastus."], true, "\n");
    let t = assert_split_free(true, &body, 1 << 20, 1 << 10);
    assert_eq!(t.usage, usage(9, 4, 13));
    assert_eq!(
        (t.text.as_str(), t.text_truncated, t.stream),
        ("Mock response from eastus.", false, true)
    );
    // Not announced as SSE: sniffed from `data:`.
    assert_eq!(assert_split_free(false, &body, 1 << 20, 1 << 10), t);
    // CRLF lines and `data:` without the space read the same.
    let crlf = chat_stream(&["Mock", " response", " from", " eastus."], true, "\r\n");
    assert_eq!(assert_split_free(true, &crlf, 1 << 20, 1 << 10), t);
    let tight = String::from_utf8(body).unwrap().replace("data: ", "data:");
    assert_eq!(whole(true, tight.as_bytes()), t);
}

#[test]
fn stream_without_usage_is_counted() {
    let body = chat_stream(&["Hello", " world"], false, "\n");
    let t = assert_split_free(true, &body, 1 << 20, 1 << 10);
    assert_eq!((t.usage, t.text.as_str()), (None, "Hello world"));
    let counted = tokens::count("gpt-4o", "Hello world") as u64;
    assert_eq!(
        t.usage_or_count("gpt-4o", 7),
        usage(7, counted, 7 + counted).unwrap()
    );
    let cmpl = b"data: {\"choices\":[{\"text\":\"a\",\"index\":0}]}\n\n: keep-alive\nevent: x\nid: 1\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\ndata: [DONE]";
    let t = assert_split_free(true, cmpl, 1 << 20, 1 << 10);
    assert_eq!((t.usage, t.text.as_str()), (None, "ab"));
    assert_eq!(
        whole(
            true,
            b"data: {\"usage\":{\"total_tokens\":5},\"choices\":[]}"
        )
        .usage,
        usage(0, 0, 5)
    );
    assert_eq!(whole(true, b"data: {\"usage\":{}}\n").usage, None);
}

#[test]
fn limits() {
    let n = CHAT.len();
    assert_eq!(tap(false, &[CHAT.as_bytes()], n, 64).usage, usage(9, 3, 12));
    let over = assert_split_free(false, CHAT.as_bytes(), n - 1, 64);
    assert_eq!(
        (over.usage, over.text.as_str(), over.text_truncated),
        (None, "", true)
    );
    // An SSE line over the limit is skipped; the lines after it still count.
    let mut body = format!(
        "data: {{\"choices\":[{{\"text\":\"{}\"}}]}}\n",
        "x".repeat(200)
    )
    .into_bytes();
    body.extend_from_slice(b"data: {\"choices\":[{\"text\":\"ok\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n");
    let t = assert_split_free(true, &body, 120, 64);
    assert_eq!((t.usage, t.text.as_str()), (usage(1, 2, 3), "ok"));
    // The text is cut at a char boundary, and nothing is added after the cut.
    let s = b"data: {\"choices\":[{\"text\":\"ab\xc3\xa9\"}]}\ndata: {\"choices\":[{\"text\":\"c\"}]}\n";
    let t = assert_split_free(true, s, 1 << 10, 3);
    assert_eq!((t.text.as_str(), t.text_truncated), ("ab", true));
}

#[test]
fn garbage_never_panics() {
    let mut bodies: Vec<Vec<u8>> = vec![
        b"data".to_vec(),
        b"  \n\r\n".to_vec(),
        b"\xff\xfe{".to_vec(),
        b"data: {\"usage\":[1]".to_vec(),
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for len in [0, 1, 7, 64, 300] {
        let mut stream = chat_stream(&["a", "b"], true, "\n");
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % stream.len() as u64) as usize;
            stream[i] = (x >> 32) as u8;
        }
        bodies.push(stream);
        bodies.push((0..len).map(|i| (x >> (i % 56)) as u8).collect());
    }
    for body in &bodies {
        for sse in [false, true] {
            let t = assert_split_free(sse, body, 100, 5);
            assert!(t.text.len() <= 5);
        }
    }
}

/// A Responses API object as OpenAI documents it (reasoning item, message with two parts).
const RESPONSE: &str = r#"{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response","created_at":1741476542,"status":"completed","error":null,"model":"gpt-4.1-2025-04-14","output":[{"type":"reasoning","id":"rs_1","summary":[]},{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"In a peaceful grove","annotations":[]},{"type":"output_text","text":", a unicorn.","annotations":[]}]}],"previous_response_id":null,"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;

/// The Responses event stream: typed events, text in `response.output_text.delta`, usage in
/// `response.completed`, no `[DONE]`. The `done` events repeat the text, which must count once.
fn response_stream(eol: &str) -> Vec<u8> {
    let events = [
        ("response.created", r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_9","object":"response","status":"in_progress","output":[],"usage":null}}"#.to_owned()),
        ("response.output_item.added", r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"message","id":"msg_1","content":[]}}"#.to_owned()),
        ("response.output_text.delta", r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}"#.to_owned()),
        ("response.output_text.delta", r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":" \"there\""}"#.to_owned()),
        ("response.function_call_arguments.delta", r#"{"type":"response.function_call_arguments.delta","delta":"{}"}"#.to_owned()),
        ("response.output_text.done", r#"{"type":"response.output_text.done","text":"Hi \"there\""}"#.to_owned()),
        ("response.completed", r#"{"type":"response.completed","response":{"id":"resp_9","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hi \"there\""}]}],"usage":{"input_tokens":5,"output_tokens":2,"total_tokens":7}}}"#.to_owned()),
    ];
    let mut s = String::new();
    for (name, data) in events {
        s += &format!("event: {name}{eol}data: {data}{eol}{eol}");
    }
    s.into_bytes()
}

#[test]
fn responses_api_json_and_stream() {
    let t = assert_split_free(false, RESPONSE.as_bytes(), 1 << 20, 1 << 10);
    assert_eq!(t.usage, usage(36, 87, 123));
    assert_eq!(t.text, "In a peaceful grove, a unicorn.");
    assert_eq!(
        t.response_id.as_deref(),
        Some("resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b")
    );
    for eol in ["\n", "\r\n"] {
        let body = response_stream(eol);
        let t = assert_split_free(true, &body, 1 << 20, 1 << 10);
        assert_eq!((t.usage, t.stream), (usage(5, 2, 7), true));
        assert_eq!(t.text, "Hi \"there\"");
        assert_eq!(t.response_id.as_deref(), Some("resp_9"));
        // Sniffed as SSE when not announced.
        assert_eq!(whole(false, &body), t);
    }
    // A chat completion's id is not a response id.
    assert_eq!(whole(false, CHAT.as_bytes()).response_id, None);
    // Usage without a total: input + output.
    let t = whole(
        false,
        br#"{"object":"response","usage":{"input_tokens":4,"output_tokens":6}}"#,
    );
    assert_eq!(t.usage, usage(4, 6, 10));
    // A hostile id of the wrong type is ignored, the usage still read.
    let t = whole(
        false,
        br#"{"object":"response","id":{"x":1},"usage":{"input_tokens":1}}"#,
    );
    assert_eq!((t.response_id, t.usage), (None, usage(1, 0, 1)));
}

#[test]
fn a_counting_tap_counts_the_whole_reply_and_keeps_only_what_the_store_may_take() {
    let words: Vec<String> = (0..20_000).map(|i| format!(" word{}", i % 97)).collect();
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let text = words.concat();
    let whole_count = tokens::count("gpt-4o", &text) as u64;
    for (usage_frame, max_text) in [(false, 0), (false, 64), (true, 0)] {
        let body = chat_stream(&refs, usage_frame, "\n");
        for piece in [1usize, 333, 1 << 20] {
            let mut t =
                UsageTap::new(true, 1 << 20, max_text).counting(tokens::encoding_for("gpt-4o"));
            body.chunks(piece).for_each(|p| t.feed(p));
            let t = t.finish();
            assert_eq!(
                t.text,
                text[..max_text],
                "the text is kept up to the cap only"
            );
            assert_eq!(t.text_truncated, max_text < text.len());
            let u = t.usage_or_count("gpt-4o", 7);
            if usage_frame {
                assert_eq!(Some(u), usage(9, 20_000, 20_009), "reported usage wins");
            } else {
                assert_eq!(u.completion_tokens, whole_count, "pieces of {piece}");
                assert_eq!(u.total_tokens, 7 + whole_count);
            }
        }
    }
    // A JSON body's text is counted the same way.
    let json = format!(r#"{{"choices":[{{"message":{{"content":"{text}"}}}}]}}"#);
    let mut t = UsageTap::new(false, 1 << 22, 0).counting(tokens::Encoding::O200k);
    t.feed(json.as_bytes());
    let t = t.finish();
    assert_eq!(
        (
            t.text.as_str(),
            t.usage_or_count("gpt-4o", 0).completion_tokens
        ),
        ("", whole_count)
    );
}

/// The whole-body parse (simd-json from 4 KiB on, serde_json below) reads exactly what
/// serde_json reads: each body as it is, and padded past 4 KiB by a leading member.
#[test]
fn simd_and_serde_read_the_same_bodies() {
    let bodies: &[&str] = &[
        CHAT,
        RESPONSE,
        r#"{"choices":[{"message":{"content":"a\"b\\c\n\u00e9\ud83d\ude00 \/"}}],"usage":{"prompt_tokens":1}}"#,
        r#"{"usage":{"prompt_tokens":"7","completion_tokens":2.9,"total_tokens":1e1}}"#,
        r#"{"choices":"not a list","usage":{},"object":"response","id":"resp_\u0031"}"#,
        r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
        r#"{"choices":[{"text":"x"}]} trailing"#,
        r#"{"choices":[{"text":"x"}]}{"choices":[{"text":"y"}]}"#,
        "\u{feff}{\"usage\":{\"prompt_tokens\":3}}",
        r#"  {"usage":{"prompt_tokens":3}}  "#,
        r#"{"usage":{"prompt_tokens":3}"#,
        r#"{"usage":{"prompt_tokens":-3,"completion_tokens":18446744073709551616}}"#,
        "{}",
    ];
    let pad = format!("\"pad\":\"{}\"", "x\\n".repeat(2048));
    let padded: Vec<String> = bodies
        .iter()
        .map(|b| match b.find('{') {
            Some(i) if b[i + 1..].trim_start().starts_with('}') => {
                format!("{}{{{pad}{}", &b[..i], &b[i + 1..])
            }
            Some(i) => format!("{}{{{pad},{}", &b[..i], &b[i + 1..]),
            None => (*b).to_owned(),
        })
        .collect();
    assert!(padded.iter().all(|b| b.len() > 4096));
    for body in bodies
        .iter()
        .copied()
        .chain(padded.iter().map(String::as_str))
    {
        let mut reference = Found {
            usage: None,
            text: String::new(),
            count: None,
            max_text: 1 << 16,
            truncated: false,
            response_id: None,
        };
        if let Some(doc) = parse(body.as_bytes()) {
            reference.take(doc);
        }
        let t = whole(false, body.as_bytes());
        assert_eq!(t.usage, reference.usage, "{body}");
        assert_eq!(t.text, reference.text, "{body}");
        assert_eq!(t.response_id, reference.response_id, "{body}");
    }
}
