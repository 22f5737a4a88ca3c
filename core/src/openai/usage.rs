//! `UsageTap`: watches a relayed OpenAI response body (JSON or SSE) for `usage` and the reply text.

use serde::Deserialize;
use serde_json::Value;

use super::choices::ChoiceTexts;
use crate::tokens;

/// Token counts of one call, as the response's `usage` object reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Usage {
    /// `usage.prompt_tokens` (0 when missing).
    pub prompt_tokens: u64,
    /// `usage.completion_tokens` (0 when missing, as in embeddings responses).
    pub completion_tokens: u64,
    /// `usage.total_tokens`, or prompt + completion when the response left it out.
    pub total_tokens: u64,
}

/// What a [`UsageTap`] found once the body ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tapped {
    /// The reported usage: the JSON body's `usage`, or the last SSE event whose `usage` is an object
    /// with a token count. `None` when there was none (or the JSON body was over the buffer limit).
    pub usage: Option<Usage>,
    /// The reply text: every choice's `message.content`, `delta.content` or `text`, in order (with
    /// `n > 1` the choices' texts are concatenated, interleaved in streams), cut to `max_text_bytes`.
    pub text: String,
    /// The text was cut at `max_text_bytes`, or lost with an over-limit JSON body.
    pub text_truncated: bool,
    /// The body was an SSE stream (as told to [`UsageTap::new`], or sniffed from its first bytes).
    pub stream: bool,
}

impl Tapped {
    /// The reported usage, or else `prompt_estimate` plus the tokens of [`Tapped::text`] for `model`
    /// (see [`tokens::count`]; a truncated text undercounts).
    pub fn usage_or_count(&self, model: &str, prompt_estimate: u64) -> Usage {
        if let Some(u) = self.usage {
            return u;
        }
        let completion = tokens::count(model, &self.text) as u64;
        Usage {
            prompt_tokens: prompt_estimate,
            completion_tokens: completion,
            total_tokens: prompt_estimate.saturating_add(completion),
        }
    }
}

/// Observes an OpenAI / Azure OpenAI response body as it is relayed, never holding it back.
///
/// Feed it the de-chunked body in pieces split anywhere; the result does not depend on the splits.
/// A JSON body is buffered (up to `max_json_bytes`) and parsed at [`finish`](Self::finish). An SSE
/// body is read line by line as it arrives, keeping only the unfinished last line: each `data:` line
/// (with or without the space, `\n` or `\r\n` ended) holding a JSON object is looked at on its own;
/// `[DONE]`, comments, other fields and lines longer than `max_json_bytes` are skipped.
#[derive(Debug)]
pub struct UsageTap {
    mode: Mode,
    max_json: usize,
    stream: bool,
    found: Found,
}

/// Where the tap is in the body.
#[derive(Debug)]
enum Mode {
    /// Not told SSE: the first non-whitespace bytes (at most 6) decide between JSON and SSE.
    Sniff(Vec<u8>),
    /// A JSON body buffered whole; `over` once it passed the limit (the buffer is then dropped).
    Json { buf: Vec<u8>, over: bool },
    /// An SSE stream: the unfinished last line, or skipping the rest of an over-long one.
    Sse { line: Vec<u8>, skipping: bool },
}

impl Mode {
    /// The start of an SSE stream.
    fn sse() -> Self {
        Mode::Sse {
            line: Vec::new(),
            skipping: false,
        }
    }
}

/// Line starts that mark an SSE body when the caller did not say so.
const SSE_STARTS: [&[u8]; 3] = [b"data:", b"event:", b":"];

impl UsageTap {
    /// A tap for an SSE body (`content-type: text/event-stream`) or else a JSON one; a body not
    /// announced as SSE whose first non-whitespace bytes are `data:`, `event:` or `:` is read as SSE.
    pub fn new(sse: bool, max_json_bytes: usize, max_text_bytes: usize) -> Self {
        UsageTap {
            mode: if sse {
                Mode::sse()
            } else {
                Mode::Sniff(Vec::new())
            },
            max_json: max_json_bytes,
            stream: sse,
            found: Found {
                usage: None,
                text: String::new(),
                max_text: max_text_bytes,
                truncated: false,
            },
        }
    }

    /// The next piece of the body, as relayed.
    pub fn feed(&mut self, data: &[u8]) {
        let rest = self.sniff(data);
        self.feed_decided(rest);
    }

    /// The usage and text found in the whole body.
    pub fn finish(self) -> Tapped {
        let mut found = self.found;
        match self.mode {
            // Still undecided: at most a few bytes that start like SSE but are not; nothing to find.
            Mode::Sniff(_) => {}
            Mode::Json { over: true, .. } => found.truncated = true,
            Mode::Json { buf, over: false } => {
                if let Some(doc) = parse(&buf) {
                    found.take(doc);
                }
            }
            Mode::Sse { line, skipping } => {
                if !skipping && !line.is_empty() {
                    found.line(&line);
                }
            }
        }
        Tapped {
            usage: found.usage,
            text: found.text,
            text_truncated: found.truncated,
            stream: self.stream,
        }
    }

    /// While sniffing, takes bytes until JSON or SSE is decided (then replays them); returns the rest.
    fn sniff<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        let Mode::Sniff(head) = &mut self.mode else {
            return data;
        };
        if head.is_empty() {
            data = data.trim_ascii_start();
        }
        let sse = loop {
            if SSE_STARTS.iter().any(|s| head.starts_with(s)) {
                break true;
            }
            if !SSE_STARTS.iter().any(|s| s.starts_with(head)) {
                break false;
            }
            let Some((&b, rest)) = data.split_first() else {
                return data;
            };
            head.push(b);
            data = rest;
        };
        let head = std::mem::take(head);
        self.mode = if sse {
            Mode::sse()
        } else {
            Mode::Json {
                buf: Vec::new(),
                over: false,
            }
        };
        self.stream = sse;
        self.feed_decided(&head);
        data
    }

    /// Feeds bytes once the body kind is known.
    fn feed_decided(&mut self, data: &[u8]) {
        match &mut self.mode {
            Mode::Sniff(_) => {}
            Mode::Json { over: true, .. } => {}
            Mode::Json { buf, over } => {
                if buf.len().saturating_add(data.len()) > self.max_json {
                    *over = true;
                    *buf = Vec::new();
                } else {
                    buf.extend_from_slice(data);
                }
            }
            Mode::Sse { line, skipping } => {
                let mut data = data;
                while let Some(nl) = data.iter().position(|&b| b == b'\n') {
                    let (end, rest) = data.split_at(nl);
                    if *skipping {
                        *skipping = false;
                    } else if line.is_empty() {
                        if end.len() <= self.max_json {
                            self.found.line(end);
                        }
                    } else if line.len() + end.len() <= self.max_json {
                        line.extend_from_slice(end);
                        self.found.line(line);
                    }
                    line.clear();
                    data = rest.get(1..).unwrap_or_default();
                }
                if *skipping {
                    return;
                }
                if line.len() + data.len() > self.max_json {
                    *skipping = true;
                    *line = Vec::new();
                } else {
                    line.extend_from_slice(data);
                }
            }
        }
    }
}

/// The usage and text found so far.
#[derive(Debug)]
struct Found {
    usage: Option<Usage>,
    text: String,
    max_text: usize,
    truncated: bool,
}

impl Found {
    /// One whole SSE line (without its `\n`).
    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(payload) = line.strip_prefix(b"data:") else {
            return;
        };
        // `[DONE]` and empty data are not objects: `parse` skips them.
        if let Some(doc) = parse(payload) {
            self.take(doc);
        }
    }

    /// A parsed JSON body or SSE event: its usage (when it has one) and its choices' text.
    fn take(&mut self, doc: Doc<'_>) {
        if let Some(u) = doc.usage.as_ref().and_then(usage_of) {
            self.usage = Some(u);
        }
        for t in doc.choices.iter().flat_map(|c| &c.0) {
            self.push_text(t);
        }
    }

    /// Appends to the text, cutting at a char boundary at the cap; nothing more once cut.
    fn push_text(&mut self, piece: &str) {
        if self.truncated || piece.is_empty() {
            return;
        }
        let room = self.max_text.saturating_sub(self.text.len());
        if piece.len() <= room {
            self.text.push_str(piece);
            return;
        }
        let mut cut = room;
        while !piece.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(piece.get(..cut).unwrap_or_default());
        self.truncated = true;
    }
}

/// A `usage` object with at least one token count; the total defaults to prompt + completion.
fn usage_of(v: &Value) -> Option<Usage> {
    let o = v.as_object()?;
    let n = |key: &str| o.get(key).and_then(count_of);
    let (p, c, t) = (
        n("prompt_tokens"),
        n("completion_tokens"),
        n("total_tokens"),
    );
    if p.is_none() && c.is_none() && t.is_none() {
        return None;
    }
    let (p, c) = (p.unwrap_or(0), c.unwrap_or(0));
    Some(Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: t.unwrap_or(p.saturating_add(c)),
    })
}

/// A token count: a non-negative number (fractions dropped) or a decimal string.
fn count_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The first JSON value in `bytes` (trailing bytes ignored), when it is an object.
fn parse(bytes: &[u8]) -> Option<Doc<'_>> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Doc>()
        .next()?
        .ok()
}

/// The parts of a response object the tap reads; everything else is skipped unparsed.
#[derive(Debug, Default, Deserialize)]
struct Doc<'a> {
    usage: Option<Value>,
    #[serde(borrow, default)]
    choices: Option<ChoiceTexts<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there.","refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;

    /// A mock-like chat stream: role frame, content frames, finish frame, optional usage frame, `[DONE]`.
    fn chat_stream(words: &[&str], usage: bool, eol: &str) -> Vec<u8> {
        let head = r#""object":"chat.completion.chunk","model":"gpt-4o""#;
        let u = if usage { r#","usage":null"# } else { "" };
        let frame =
            |choices: String| format!("data: {{{head},\"choices\":[{choices}]{u}}}{eol}{eol}");
        let mut s =
            frame(r#"{"index":0,"delta":{"role":"assistant"},"finish_reason":null}"#.into());
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
}
