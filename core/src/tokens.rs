//! Token counting with tiktoken: encodings per model and prompt estimates of OpenAI request bodies
//! (the estimate itself is in `tokens/estimate.rs`).

use std::sync::OnceLock;

use serde_json::Value;
use tiktoken_rs::CoreBPE;

mod canon;
mod estimate;
mod stream;
pub use estimate::estimate_prompt;
pub use stream::{TextCount, TAIL_MAX};

/// The BPE encodings aigw counts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `o200k_base`: gpt-4o, gpt-4.1, gpt-4.5, gpt-5, the o-series; the default.
    O200k,
    /// `cl100k_base`: gpt-4 (not 4o), gpt-3.5, text-embedding-*.
    Cl100k,
}

impl Encoding {
    /// The tiktoken name of the encoding.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200k => "o200k_base",
            Encoding::Cl100k => "cl100k_base",
        }
    }
}

/// Tokens added per chat message (OpenAI's documented `tokens_per_message`).
const PER_MESSAGE: usize = 3;
/// Tokens added when a message has a `name` (OpenAI's `tokens_per_name`).
const PER_NAME: usize = 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const REPLY_PRIMING: usize = 3;

/// The encoding used by `model` (case-insensitive; `ft:` fine-tunes and `org/` prefixes are looked through).
pub fn encoding_for(model: &str) -> Encoding {
    // Compared ignoring ASCII case, without a lowercased copy.
    let starts = |m: &str, p: &str| {
        m.len() >= p.len() && m.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    let mut m = model.trim();
    if starts(m, "ft:") {
        m = &m[3..];
    }
    if let Some((_, tail)) = m.rsplit_once('/') {
        m = tail;
    }
    const O200K: [&str; 6] = [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "chatgpt-4o",
        "gpt-oss",
    ];
    if O200K.iter().any(|p| starts(m, p)) || is_o_series(m) {
        return Encoding::O200k;
    }
    const CL100K: [&str; 4] = ["gpt-4", "gpt-3.5", "gpt-35", "text-embedding-"];
    if CL100K.iter().any(|p| starts(m, p)) {
        return Encoding::Cl100k;
    }
    Encoding::O200k
}

/// `o1`, `o3-mini`, `o4-mini`…: an `o` (either case) followed by a digit.
fn is_o_series(m: &str) -> bool {
    let b = m.as_bytes();
    b.len() >= 2 && b[0].eq_ignore_ascii_case(&b'o') && b[1].is_ascii_digit()
}

/// The BPE of `enc`, built on first use; `None` if the bundled ranks failed to load.
fn bpe(enc: Encoding) -> Option<&'static CoreBPE> {
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    match enc {
        Encoding::O200k => O200K
            .get_or_init(|| tiktoken_rs::o200k_base().ok())
            .as_ref(),
        Encoding::Cl100k => CL100K
            .get_or_init(|| tiktoken_rs::cl100k_base().ok())
            .as_ref(),
    }
}

/// Load both encodings now (they load lazily otherwise, which takes a noticeable moment).
pub fn warm_up() {
    let _ = count_with(Encoding::O200k, "warm up");
    let _ = count_with(Encoding::Cl100k, "warm up");
}

/// Tokens in `text` under `enc`. Special-token text is counted as ordinary text.
pub fn count_with(enc: Encoding, text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    match bpe(enc) {
        Some(bpe) => bpe.encode_ordinary(text).len(),
        // Not expected (the ranks are bundled), but never fail: ~4 bytes per token.
        None => text.len().div_ceil(4),
    }
}

/// Tokens in `text` for `model` (see [`encoding_for`]).
pub fn count(model: &str, text: &str) -> usize {
    count_with(encoding_for(model), text)
}

/// [`estimate_prompt`] on an already parsed body, with the encoding chosen (the mock, which has
/// the parsed body anyway, counts with this; [`estimate_prompt`] gives the same number from the
/// bytes without building the tree).
pub fn estimate_value(enc: Encoding, body: &Value) -> usize {
    let Some(obj) = body.as_object() else {
        return 0;
    };
    let mut n = 0;
    if let Some(messages) = obj.get("messages") {
        n += messages_tokens(enc, messages);
    }
    for key in ["tools", "functions"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            n += count_with(enc, &v.to_string());
        }
    }
    for key in ["prompt", "input", "instructions"] {
        if let Some(v) = obj.get(key) {
            n += input_tokens(enc, v);
        }
    }
    n
}

/// Chat messages with OpenAI's per-message overhead and the reply priming.
fn messages_tokens(enc: Encoding, messages: &Value) -> usize {
    let Some(list) = messages.as_array() else {
        return value_tokens(enc, messages);
    };
    let mut n = REPLY_PRIMING;
    for msg in list {
        n += PER_MESSAGE;
        let Some(fields) = msg.as_object() else {
            n += value_tokens(enc, msg);
            continue;
        };
        for (key, value) in fields {
            n += if key == "content" {
                content_tokens(enc, value)
            } else {
                value_tokens(enc, value)
            };
            if key == "name" {
                n += PER_NAME;
            }
        }
    }
    n
}

/// A message's `content`: a string, an array of parts (text parts count), or any other value.
fn content_tokens(enc: Encoding, content: &Value) -> usize {
    match content {
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => count_with(enc, s),
                Value::Object(o) => o.get("text").map_or(0, |t| value_tokens(enc, t)),
                _ => 0,
            })
            .sum(),
        other => value_tokens(enc, other),
    }
}

/// A string counts as itself, null as nothing, anything else as its serialized JSON.
fn value_tokens(enc: Encoding, v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::String(s) => count_with(enc, s),
        other => count_with(enc, &other.to_string()),
    }
}

/// `prompt` / `input`: a string, an array of strings, a token array, or an array of token arrays.
fn input_tokens(enc: Encoding, v: &Value) -> usize {
    match v {
        Value::String(s) => count_with(enc, s),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => count_with(enc, s),
                Value::Number(_) => 1,
                Value::Array(tokens) => tokens.len(),
                other => value_tokens(enc, other),
            })
            .sum(),
        other => value_tokens(enc, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_by_model() {
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1-nano",
            "o1",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "GPT-5-mini",
        ] {
            assert_eq!(encoding_for(m), Encoding::O200k, "{m}");
        }
        for m in [
            "gpt-4",
            "gpt-4-0613",
            "gpt-4-turbo",
            "gpt-3.5-turbo",
            "gpt-35-turbo",
            "text-embedding-3-small",
        ] {
            assert_eq!(encoding_for(m), Encoding::Cl100k, "{m}");
        }
        assert_eq!(encoding_for("ft:gpt-3.5-turbo:acme::abc"), Encoding::Cl100k);
        assert_eq!(encoding_for("my-deployment"), Encoding::O200k);
        assert_eq!(encoding_for(""), Encoding::O200k);
        assert_eq!(Encoding::Cl100k.name(), "cl100k_base");
    }

    #[test]
    fn known_counts() {
        assert_eq!(count("gpt-4o", "hello world"), 2);
        assert_eq!(count("gpt-4", "hello world"), 2);
        assert_eq!(count("gpt-4o", ""), 0);
        // Special-token text is ordinary text, never an error.
        assert!(count("gpt-4o", "<|endoftext|>") > 1);
    }

    /// The OpenAI cookbook's "How to count tokens with tiktoken" example conversation.
    const COOKBOOK: &str = r#"{"model":"gpt-4","messages":[
        {"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
        {"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
        {"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
        {"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
        {"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
        {"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}]}"#;

    #[test]
    fn cookbook_chat_counts() {
        // The cookbook reports 129 for gpt-4/gpt-3.5-turbo and 124 for gpt-4o/gpt-4o-mini.
        assert_eq!(estimate_prompt("gpt-4", COOKBOOK.as_bytes()), 129);
        assert_eq!(estimate_prompt("gpt-3.5-turbo", COOKBOOK.as_bytes()), 129);
        assert_eq!(estimate_prompt("gpt-4o", COOKBOOK.as_bytes()), 124);
        assert_eq!(estimate_prompt("gpt-4o-mini", COOKBOOK.as_bytes()), 124);
    }

    #[test]
    fn chat_overheads() {
        let one = br#"{"messages":[{"role":"user","content":"hello world"}]}"#;
        // 3 per message + "user" (1) + "hello world" (2) + 3 priming.
        assert_eq!(estimate_prompt("gpt-4o", one), 9);
        let named = br#"{"messages":[{"role":"user","name":"bob","content":"hello world"}]}"#;
        assert_eq!(
            estimate_prompt("gpt-4o", named),
            9 + count("gpt-4o", "bob") + 1
        );
        let parts =
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"hello world"},
            {"type":"image_url","image_url":{"url":"https://x.invalid/a.png"}}]}]}"#;
        assert_eq!(estimate_prompt("gpt-4o", parts), 9);
        let null_content = br#"{"messages":[{"role":"assistant","content":null}]}"#;
        assert_eq!(estimate_prompt("gpt-4o", null_content), 3 + 1 + 3);
    }

    #[test]
    fn object_content_counts_its_json() {
        let body = br#"{"messages":[{"role":"user","content":{"simulation":{"default":{"response_status_code":429}}}}]}"#;
        let json = r#"{"simulation":{"default":{"response_status_code":429}}}"#;
        assert_eq!(
            estimate_prompt("gpt-4o", body),
            3 + 1 + count("gpt-4o", json) + 3
        );
    }

    #[test]
    fn tools_add_their_json() {
        let plain = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
        let tools = br#"{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}"#;
        let extra = estimate_prompt("gpt-4o", tools) - estimate_prompt("gpt-4o", plain);
        let v: Value = serde_json::from_slice(tools).unwrap();
        assert_eq!(extra, count("gpt-4o", &v["tools"].to_string()));
        assert!(extra > 5);
    }

    #[test]
    fn completions_and_embeddings() {
        assert_eq!(
            estimate_prompt("gpt-3.5-turbo-instruct", br#"{"prompt":"hello world"}"#),
            2
        );
        assert_eq!(
            estimate_prompt("gpt-4o", br#"{"prompt":["hello world","hello world"]}"#),
            4
        );
        let m = "text-embedding-3-small";
        assert_eq!(
            estimate_prompt(m, br#"{"model":"x","input":"hello world"}"#),
            2
        );
        assert_eq!(
            estimate_prompt(m, br#"{"input":["hello world","hello"]}"#),
            3
        );
        assert_eq!(estimate_prompt(m, br#"{"input":[1,2,3,4]}"#), 4);
        assert_eq!(estimate_prompt(m, br#"{"input":[[1,2,3],[4,5]]}"#), 5);
    }

    #[test]
    fn never_fails() {
        assert_eq!(estimate_prompt("gpt-4o", b"not json"), 0);
        assert_eq!(estimate_prompt("gpt-4o", b""), 0);
        assert_eq!(estimate_prompt("gpt-4o", b"[1,2]"), 0);
        assert_eq!(
            estimate_prompt("gpt-4o", br#"{"messages":"hello world"}"#),
            2
        );
        assert!(estimate_prompt("gpt-4o", br#"{"messages":[7,{"content":true}]}"#) > 0);
    }
}
