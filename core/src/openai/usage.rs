//! Reading a (decoded) OpenAI response body, JSON or SSE, for `usage` and the reply text.

use std::borrow::Cow;

use serde::Deserialize;

use super::choices::{ChoiceTexts, Lenient};
use super::counts::UsageCounts;
use super::keep::Keep;
use super::responses::{EventResponse, OutputTexts};
use super::tap::Undecoded;
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

/// What a [`UsageTap`](super::UsageTap) found once the body ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tapped {
    /// The reported usage: the JSON body's `usage`, or the last SSE event whose `usage` is an object
    /// with a token count. `None` when there was none (or the JSON body was over the buffer limit).
    pub usage: Option<Usage>,
    /// The reply text: every choice's `message.content`, `delta.content` or `text`, in order (with
    /// `n > 1` the choices' texts are concatenated, interleaved in streams), cut to `max_text_bytes`.
    pub text: String,
    /// The tokens of the whole reply text, uncut, counted as it passed (see
    /// [`UsageTap::counting`](super::UsageTap::counting)); `None` when the tap was not asked to.
    pub count: Option<tokens::TextCount>,
    /// The text was cut at `max_text_bytes`, or lost with an over-limit JSON body.
    pub text_truncated: bool,
    /// The body was an SSE stream (as told to [`UsageTap::new`](super::UsageTap::new), or sniffed
    /// from its first bytes).
    pub stream: bool,
    /// The body's `Content-Encoding` could not be read through (unknown, corrupt or over the
    /// decoding cap): what was found before the failure is kept, the rest is unknown.
    pub undecoded: Option<Undecoded>,
    /// The id of the Responses API object the body carried (a JSON body whose `object` is
    /// `"response"`, or the first SSE event with a `response.id`), when it had one.
    pub response_id: Option<String>,
    /// The whole decoded body (after `Content-Encoding`), when the tap was asked to keep it
    /// ([`UsageTap::keeping`](super::UsageTap::keeping)) and it was read to its end within the
    /// limit: what the semantic cache stores from. `None` otherwise.
    pub kept: Option<Vec<u8>>,
    /// Keeping was asked for but the body is not kept: over the limit, not decodable to its end
    /// ([`Tapped::undecoded`]), or a JSON body past the tap's own `max_json_bytes`.
    pub kept_dropped: bool,
}

impl Tapped {
    /// The reported usage, or else `prompt_estimate` plus the reply's tokens: [`Tapped::count`]
    /// when the tap counted, else the tokens of [`Tapped::text`] for `model` (see
    /// [`tokens::count`]; a truncated text undercounts).
    pub fn usage_or_count(&self, model: &str, prompt_estimate: u64) -> Usage {
        if let Some(u) = self.usage {
            return u;
        }
        let completion = match &self.count {
            Some(c) => c.total(),
            None => tokens::count(model, &self.text) as u64,
        };
        Usage {
            prompt_tokens: prompt_estimate,
            completion_tokens: completion,
            total_tokens: prompt_estimate.saturating_add(completion),
        }
    }

    /// What a successful answer is charged: the reported usage; else the prompt estimate plus the
    /// counted text ([`usage_or_count`](Self::usage_or_count)), raised to `reservation` when the
    /// body could not be decoded ([`Tapped::undecoded`]): an unreadable answer is charged what was
    /// reserved for it (fail closed), never less. `prompt_estimate` runs only when needed.
    pub fn charge(
        &self,
        model: &str,
        prompt_estimate: impl FnOnce() -> u64,
        reservation: u64,
    ) -> Usage {
        if let Some(u) = self.usage {
            return u;
        }
        let counted = self.usage_or_count(model, prompt_estimate());
        if self.undecoded.is_none() || counted.total_tokens >= reservation {
            return counted;
        }
        Usage {
            prompt_tokens: counted.prompt_tokens,
            completion_tokens: reservation.saturating_sub(counted.prompt_tokens),
            total_tokens: reservation,
        }
    }
}

/// Reads a de-encoded OpenAI / Azure OpenAI response body for `usage` and the reply text; the
/// public [`UsageTap`](super::UsageTap) puts it behind the body's `Content-Encoding`.
///
/// Feed it the de-chunked body in pieces split anywhere; the result does not depend on the splits.
/// A JSON body is buffered (up to `max_json_bytes`) and parsed at [`finish`](Self::finish). An SSE
/// body is read line by line as it arrives, keeping only the unfinished last line: each `data:` line
/// (with or without the space, `\n` or `\r\n` ended) holding a JSON object is looked at on its own;
/// `[DONE]`, comments, other fields and lines longer than `max_json_bytes` are skipped.
#[derive(Debug)]
pub(crate) struct Reader {
    mode: Mode,
    max_json: usize,
    stream: bool,
    found: Found,
    /// The decoded body kept whole, when asked (see [`Reader::keep`]).
    keep: Option<Keep>,
}

/// Where the tap is in the body.
#[derive(Debug)]
enum Mode {
    /// Not told SSE: the first non-whitespace bytes (at most 6, kept inline) decide between JSON
    /// and SSE.
    Sniff([u8; 6], usize),
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

impl Reader {
    /// A reader for an SSE body (`content-type: text/event-stream`) or else a JSON one; a body not
    /// announced as SSE whose first non-whitespace bytes are `data:`, `event:` or `:` is read as SSE.
    pub(crate) fn new(sse: bool, max_json_bytes: usize, max_text_bytes: usize) -> Self {
        Reader {
            mode: if sse {
                Mode::sse()
            } else {
                Mode::Sniff([0; 6], 0)
            },
            max_json: max_json_bytes,
            stream: sse,
            found: Found {
                usage: None,
                text: String::new(),
                count: None,
                max_text: max_text_bytes,
                truncated: false,
                response_id: None,
            },
            keep: None,
        }
    }

    /// Keep the whole decoded body, up to `max_bytes` (see [`Tapped::kept`]).
    pub(crate) fn keep(&mut self, max_bytes: usize) {
        self.keep = Some(Keep::new(max_bytes));
    }

    /// Count the tokens of the whole reply text under `enc` as it passes (see [`Tapped::count`]).
    pub(crate) fn count_tokens(&mut self, enc: tokens::Encoding) {
        self.found.count = Some(tokens::TextCount::new(enc));
    }

    /// The next piece of the (decoded) body.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        if let Some(k) = &mut self.keep {
            k.push(data);
        }
        let rest = self.sniff(data);
        self.feed_decided(rest);
    }

    /// The id of the Responses API object found so far (an SSE body's first `response.id`, known
    /// from its first event; a JSON body's only once it is finished).
    pub(crate) fn response_id(&self) -> Option<&str> {
        self.found.response_id.as_deref()
    }

    /// A JSON body past `max_json_bytes`: nothing more can be learnt from the rest of it.
    pub(crate) fn saturated(&self) -> bool {
        matches!(self.mode, Mode::Json { over: true, .. })
    }

    /// The usage and text found in the whole body.
    pub(crate) fn finish(self) -> Tapped {
        let saturated = self.saturated();
        let kept = self.keep.map(|k| k.take().filter(|_| !saturated));
        let mut found = self.found;
        match self.mode {
            // Still undecided: at most a few bytes that start like SSE but are not; nothing to find.
            Mode::Sniff(..) => {}
            Mode::Json { over: true, .. } => found.truncated = true,
            Mode::Json { buf, over: false } => take_whole(&mut found, &buf),
            Mode::Sse { line, skipping } => {
                if !skipping && !line.is_empty() {
                    found.line(&line);
                }
            }
        }
        Tapped {
            usage: found.usage,
            text: found.text,
            count: found.count,
            text_truncated: found.truncated,
            stream: self.stream,
            undecoded: None,
            response_id: found.response_id,
            kept_dropped: matches!(kept, Some(None)),
            kept: kept.flatten(),
        }
    }

    /// While sniffing, takes bytes until JSON or SSE is decided (then replays them); returns the rest.
    fn sniff<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        let Mode::Sniff(buf, len) = &mut self.mode else {
            return data;
        };
        if *len == 0 {
            data = data.trim_ascii_start();
        }
        let sse = loop {
            let head = &buf[..*len];
            if SSE_STARTS.iter().any(|s| head.starts_with(s)) {
                break true;
            }
            if !SSE_STARTS.iter().any(|s| s.starts_with(head)) {
                break false;
            }
            // Still a prefix of a start (so shorter than the longest, 6 bytes): take one more.
            let Some((&b, rest)) = data.split_first() else {
                return data;
            };
            buf[*len] = b;
            *len += 1;
            data = rest;
        };
        let (buf, len) = (*buf, *len);
        let head = &buf[..len];
        self.mode = if sse {
            Mode::sse()
        } else {
            // Room for what is known so far, so a body that came in one piece is copied once.
            let first = (head.len() + data.len()).min(self.max_json);
            Mode::Json {
                buf: Vec::with_capacity(first),
                over: false,
            }
        };
        self.stream = sse;
        self.feed_decided(head);
        data
    }

    /// Feeds bytes once the body kind is known.
    fn feed_decided(&mut self, data: &[u8]) {
        match &mut self.mode {
            Mode::Sniff(..) => {}
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
    count: Option<tokens::TextCount>,
    max_text: usize,
    truncated: bool,
    response_id: Option<String>,
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

    /// A parsed JSON body or SSE event: its usage (when it has one) and its text. Chat and text
    /// completions carry both in `usage` and `choices`; a Responses object in `usage` and
    /// `output`, its stream in `response.usage` and `response.output_text.delta` events.
    fn take(&mut self, doc: Doc<'_>) {
        if let Some(u) = doc.usage.as_ref().and_then(UsageCounts::usage) {
            self.usage = Some(u);
        }
        let kind = doc.kind.and_then(|k| k.0);
        if let Some(r) = doc.response {
            if let Some(u) = r.usage.as_ref().and_then(UsageCounts::usage) {
                self.usage = Some(u);
            }
            if self.response_id.is_none() {
                self.response_id = r.id.map(Cow::into_owned);
            }
        }
        if doc.object.and_then(|o| o.0).as_deref() == Some("response") && self.response_id.is_none()
        {
            self.response_id = doc.id.and_then(|i| i.0).map(Cow::into_owned);
        }
        for t in doc.choices.iter().flat_map(|c| c.0.iter()) {
            self.push_text(t);
        }
        for t in doc.output.iter().flat_map(|c| c.0.iter()) {
            self.push_text(t);
        }
        if kind.as_deref() == Some("response.output_text.delta") {
            if let Some(d) = doc.delta.and_then(|d| d.0) {
                self.push_text(&d);
            }
        }
    }

    /// Counts the piece (when counting) and appends it to the text, cutting at a char boundary at
    /// the cap; nothing more is kept once cut.
    fn push_text(&mut self, piece: &str) {
        if let Some(c) = &mut self.count {
            c.push(piece);
        }
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

/// Simd-json's scratch space and the copy it parses, kept per thread between bodies unless a
/// large one grew them.
const SIMD_KEEP: usize = 256 * 1024;
/// Bodies shorter than this are read by serde_json: simd-json allocates its tape per document,
/// and below a few KiB its speed-up (0.4 µs at 1 KiB) is not worth an allocation per answer.
const SIMD_MIN: usize = 4 * 1024;

thread_local! {
    static SIMD: std::cell::RefCell<(simd_json::Buffers, Vec<u8>)> =
        std::cell::RefCell::new((simd_json::Buffers::new(16 * 1024), Vec::new()));
}

/// Read a whole JSON body (the tap's buffer) into `found`: from [`SIMD_MIN`] on, simd-json (1.3–1.8×
/// faster than serde_json on chat answers of 1 KiB to 1 MiB: `benches/json.rs`, BENCHMARKS.md)
/// parses a per-thread copy in place (it unescapes strings into its input), so a body it refuses (bytes
/// after the object, which serde_json's reader here ignores; or anything malformed) is read by
/// [`parse`] from the untouched original: both read exactly the same bodies.
fn take_whole(found: &mut Found, body: &[u8]) {
    let read = body.len() >= SIMD_MIN
        && SIMD.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (scratch, copy) = &mut *guard;
            copy.clear();
            copy.extend_from_slice(body);
            let read = match simd_json::serde::from_slice_with_buffers::<Doc<'_>>(copy, scratch) {
                Ok(doc) => {
                    found.take(doc);
                    true
                }
                Err(_) => false,
            };
            if body.len() > SIMD_KEEP {
                *guard = (simd_json::Buffers::new(16 * 1024), Vec::new());
            }
            read
        });
    if !read {
        if let Some(doc) = parse(body) {
            found.take(doc);
        }
    }
}

/// The parts of a response object the tap reads; everything else is skipped unparsed.
#[derive(Default, Deserialize)]
struct Doc<'a> {
    /// Read into its counts (no `Value` tree); present only on the answer or event that has it.
    #[serde(default)]
    usage: Option<UsageCounts>,
    #[serde(borrow, default)]
    choices: Option<ChoiceTexts<'a>>,
    /// A Responses SSE event's type.
    #[serde(rename = "type", borrow, default)]
    kind: Option<Lenient<'a>>,
    /// A Responses `response.output_text.delta` event's text.
    #[serde(borrow, default)]
    delta: Option<Lenient<'a>>,
    #[serde(borrow, default)]
    object: Option<Lenient<'a>>,
    #[serde(borrow, default)]
    id: Option<Lenient<'a>>,
    /// The response object of a Responses SSE event.
    #[serde(borrow, default)]
    response: Option<EventResponse<'a>>,
    /// A Responses object's output items.
    #[serde(borrow, default)]
    output: Option<OutputTexts<'a>>,
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
