//! The request-body peek: read `model`, `stream` and `stream_options.include_usage` from a JSON body
//! by borrowing from it. Every other field is skipped without being built or copied.
//!
//! simd-json would need a mutable copy of the body (it parses in place), and the body must be
//! forwarded byte for byte, so a borrowing serde_json parse is the cheaper choice here.

use std::borrow::Cow;

use serde::Deserialize;

/// What the gateway needs to know about a request body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Peek<'a> {
    /// The `model` field, borrowed unless it contained escapes.
    pub model: Option<Cow<'a, str>>,
    /// `"stream": true`.
    pub stream: bool,
    /// `"stream_options": {"include_usage": true}`.
    pub include_usage: bool,
    /// The completion cap the client set (`max_tokens`, `max_completion_tokens` or
    /// `max_output_tokens`), which bounds what the answer can cost.
    pub max_tokens: Option<u64>,
    /// Choices asked for (`n`), when given.
    pub n: Option<u64>,
    /// The Responses API's `previous_response_id`: the stored response this one continues,
    /// which only the backend that created it holds.
    pub previous_response_id: Option<Cow<'a, str>>,
    /// The body is a JSON object (what every other field was read from); `false` for an empty
    /// body and anything else (multipart, a byte order mark, compressed bytes).
    pub object: bool,
}

/// A body that claims JSON but is not.
#[derive(Debug, thiserror::Error)]
#[error("request body is not a valid JSON request: {0}")]
pub struct PeekError(#[from] serde_json::Error);

#[derive(Deserialize)]
struct RawPeek<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_completion_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_output_tokens: Option<serde_json::Value>,
    #[serde(default)]
    n: Option<serde_json::Value>,
    /// Strict, unlike the fields the gateway only estimates from: a continuation it cannot read
    /// is one it cannot place, so anything but a string or `null` is refused.
    #[serde(borrow, default, deserialize_with = "str_or_null")]
    previous_response_id: Option<Cow<'a, str>>,
    /// Not read: skipped one message at a time, which costs serde_json no allocation (skipped
    /// whole, an array of objects would; see `Shallow`).
    #[serde(default)]
    #[allow(dead_code)]
    messages: Option<crate::openai::choices::Shallow>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<serde_json::Value>,
}

/// serde builds `Option<Cow<str>>` as owned; this visitor keeps the borrow unless the JSON
/// string had escapes (then it must be unescaped into a new string). Anything but a string is an
/// error, and `null` too unless `null_ok`.
struct StrVisitor {
    null_ok: bool,
}

impl<'de> serde::de::Visitor<'de> for StrVisitor {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.null_ok {
            "a string or null"
        } else {
            "a string"
        })
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        if self.null_ok {
            Ok(None)
        } else {
            Err(E::custom("`model` must be a string, not null"))
        }
    }
}

/// `model`: a string. `"model": null` is refused rather than read as "no model": the gateway
/// would then add a `model` of its own for an OpenAI-dialect backend, and the body would carry two.
fn borrowed_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    d.deserialize_any(StrVisitor { null_ok: false })
}

/// A string (borrowed unless it had escapes) or `null`; anything else is an error.
fn str_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    d.deserialize_any(StrVisitor { null_ok: true })
}

/// Peek into a body. An empty body or a non-object (e.g. multipart audio) peeks as "nothing known".
///
/// # Errors
/// [`PeekError`] when the body starts like a JSON object but does not parse.
pub fn peek(body: &[u8]) -> Result<Peek<'_>, PeekError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Ok(Peek::default());
    }
    let raw: RawPeek<'_> = serde_json::from_slice(body)?;
    let truthy = |v: &Option<serde_json::Value>| matches!(v, Some(serde_json::Value::Bool(true)));
    Ok(Peek {
        model: raw.model,
        stream: truthy(&raw.stream),
        include_usage: raw.stream_options.is_some_and(|o| truthy(&o.include_usage)),
        max_tokens: [
            raw.max_completion_tokens,
            raw.max_tokens,
            raw.max_output_tokens,
        ]
        .iter()
        .find_map(|v| v.as_ref().and_then(serde_json::Value::as_u64)),
        n: raw.n.as_ref().and_then(serde_json::Value::as_u64),
        previous_response_id: raw.previous_response_id,
        object: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_fields_and_borrows() {
        let body = br#"{"messages":[{"role":"user","content":{"simulation":{}}}],"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#;
        let p = peek(body).unwrap();
        assert!(matches!(p.model, Some(Cow::Borrowed("gpt-4o"))));
        assert!(p.stream && p.include_usage);
        assert_eq!(p.max_tokens, None);
        assert_eq!(
            peek(br#"{"model":"m","max_tokens":50}"#)
                .unwrap()
                .max_tokens,
            Some(50)
        );
        assert_eq!(
            peek(br#"{"max_completion_tokens":7,"max_tokens":50}"#)
                .unwrap()
                .max_tokens,
            Some(7)
        );
    }

    #[test]
    fn tolerant_shapes() {
        assert_eq!(peek(b"").unwrap(), Peek::default());
        assert_eq!(peek(b"--boundary\r\n").unwrap(), Peek::default());
        let p = peek(br#"{"model":"a\"b","stream":"yes"}"#).unwrap();
        assert_eq!(p.model.as_deref(), Some("a\"b"));
        assert!(!p.stream);
        assert!(peek(b"{\"model\": ").is_err());
        assert!(peek(br#"{"model": 5}"#).is_err());
        assert!(peek(br#"{"model": null}"#).is_err());
        let p = peek(br#"{"model":"m","input":"hi","previous_response_id":"resp_1"}"#).unwrap();
        assert_eq!(p.previous_response_id.as_deref(), Some("resp_1"));
        assert!(matches!(p.previous_response_id, Some(Cow::Borrowed(_))));
        let p = peek(br#"{"previous_response_id":null}"#).unwrap();
        assert_eq!(p.previous_response_id, None);
        assert!(p.object);
        // A continuation the gateway cannot read is one it cannot place: refused, not skipped.
        for odd in [r#"["resp_1"]"#, r#"{"id":"resp_1"}"#, "5", "true"] {
            let body = format!(r#"{{"previous_response_id":{odd}}}"#);
            assert!(peek(body.as_bytes()).is_err(), "{odd}");
        }
        // Two of one key: refused (a backend may keep either).
        assert!(peek(br#"{"previous_response_id":"a","previous_response_id":"b"}"#).is_err());
        assert!(peek(br#"{"model":"a","model":"b"}"#).is_err());
        // Not an object: nothing known, and said so.
        assert!(!peek("\u{feff}{}".as_bytes()).unwrap().object);
        assert!(!peek(b"").unwrap().object);
    }
}

/// The longest boundary RFC 2046 allows; a body announcing a longer one is not parsed.
pub const MAX_BOUNDARY_BYTES: usize = 70;

/// The value of the form field `name` in a `multipart/form-data` body (audio transcription and
/// image edit calls carry `model` this way). Borrowed from the body; `None` when absent, not UTF-8,
/// or when the boundary is empty or longer than [`MAX_BOUNDARY_BYTES`].
///
/// Linear in the body: every search (`memchr::memmem`, itself linear) starts where the previous
/// one ended: a delimiter, then its part's head up to the blank line, then the part's content up
/// to the next delimiter.
pub fn multipart_field<'a>(
    body: &'a [u8],
    content_type: &[u8],
    name: &str,
) -> Result<Option<&'a str>, MultipartError> {
    let mut found = None;
    let mut seen = |head: &[u8], content: &'a [u8]| match names_field(head, name) {
        Named::No => Ok(()),
        Named::OtherCase => Err(MultipartError::Ambiguous),
        Named::Exactly if found.is_some() => Err(MultipartError::Ambiguous),
        Named::Exactly => {
            found = Some(std::str::from_utf8(content).map_err(|_| MultipartError::NotUtf8)?);
            Ok(())
        }
    };
    walk_parts(body, content_type, &mut seen)?;
    Ok(found)
}

/// A multipart form whose field the gateway cannot read the way every backend would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The field appears twice, or under another case (`Model`): backends differ on which one
    /// they read, so what the gateway checks might not be what runs.
    #[error("the form names its model field more than once or in another case")]
    Ambiguous,
    /// The field's value is not UTF-8.
    #[error("the form's model field is not UTF-8")]
    NotUtf8,
}

/// Call `part(head, content)` for every part of a `multipart/form-data` body, in order, until
/// the close delimiter or the first malformed spot. One linear pass.
fn walk_parts<'a, E>(
    body: &'a [u8],
    content_type: &[u8],
    part: &mut impl FnMut(&'a [u8], &'a [u8]) -> Result<(), E>,
) -> Result<(), E> {
    use memchr::memmem::Finder;

    let Some(ct) = std::str::from_utf8(content_type).ok() else {
        return Ok(());
    };
    let Some((kind, params)) = ct.split_once(';') else {
        return Ok(());
    };
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return Ok(());
    }
    let Some(boundary) = params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"'))
    }) else {
        return Ok(());
    };
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY_BYTES {
        return Ok(());
    }
    // A delimiter is CRLF "--" boundary; the first one may also open the body (no preamble).
    let delim = [b"\r\n--", boundary.as_bytes()].concat();
    let finder = Finder::new(&delim);
    // Only a delimiter followed by `--` or by optional blanks and CRLF counts (RFC 2046), as in
    // strict parsers: `--boundaryX` inside a file's bytes does not start a part.
    let next_delim = |hay: &[u8]| -> Option<usize> {
        let mut from = 0;
        while let Some(i) = finder.find(&hay[from..]) {
            let at = from + i;
            let after = &hay[at + delim.len()..];
            let blanks = after
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            if after.starts_with(b"--") || after[blanks..].starts_with(b"\r\n") {
                return Some(at);
            }
            from = at + 1;
        }
        None
    };
    let blank_line = Finder::new(b"\r\n\r\n");
    let mut at = if body.starts_with(&delim[2..]) {
        delim.len() - 2
    } else {
        match next_delim(body) {
            Some(i) => i + delim.len(),
            None => return Ok(()),
        }
    };
    loop {
        let Some(rest) = body.get(at..) else {
            return Ok(());
        };
        if rest.starts_with(b"--") {
            return Ok(()); // the close delimiter: no more parts
        }
        let Some(head_len) = blank_line.find(rest) else {
            return Ok(());
        };
        let content_at = at + head_len + 4;
        let Some(content) = body.get(content_at..) else {
            return Ok(());
        };
        let Some(content_len) = next_delim(content) else {
            return Ok(());
        };
        part(&rest[..head_len], &content[..content_len])?;
        at = content_at + content_len + delim.len();
    }
}

/// How a part's `Content-Disposition` name compares with the one looked for.
enum Named {
    No,
    Exactly,
    OtherCase,
}

/// Whether a part's head names the field `name`: exactly (`name="model"`), or in any other form
/// some backend's parser would also read as that field (another case, no quotes, spaces around
/// `=`, RFC 5987 `name*=`, a bare-LF line, twice), which the caller refuses as ambiguous.
fn names_field(head: &[u8], name: &str) -> Named {
    let head = String::from_utf8_lossy(head);
    let mut named = Named::No;
    for line in head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if !field.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        for p in value.split(';') {
            let Some((k, raw)) = p.split_once('=') else {
                continue;
            };
            let (k, raw) = (k.trim(), raw.trim());
            let extended = k.eq_ignore_ascii_case("name*");
            if !extended && !k.eq_ignore_ascii_case("name") {
                continue;
            }
            let quoted = raw.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
            let v = match (extended, quoted) {
                (true, _) => raw.rsplit('\'').next().unwrap_or(raw),
                (false, Some(q)) => q,
                (false, None) => raw,
            };
            if !v.eq_ignore_ascii_case(name) {
                continue;
            }
            let exact = !extended
                && quoted == Some(name)
                && p.trim_start()
                    .get(..6)
                    .is_some_and(|k| k.eq_ignore_ascii_case("name=\""))
                && !matches!(named, Named::Exactly);
            if !exact {
                return Named::OtherCase;
            }
            named = Named::Exactly;
        }
    }
    // A bare LF anywhere in a head that names the field: parsers disagree on such lines.
    if matches!(named, Named::Exactly) && head.replace("\r\n", "").contains('\n') {
        return Named::OtherCase;
    }
    named
}

#[cfg(test)]
mod multipart_tests {
    use super::multipart_field;

    #[test]
    fn finds_the_model_field() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\x00\x01model\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ--\r\n";
        let ct = b"multipart/form-data; boundary=XyZ";
        assert_eq!(multipart_field(body, ct, "model"), Ok(Some("whisper-1")));
        assert_eq!(multipart_field(body, ct, "language"), Ok(None));
        assert_eq!(
            multipart_field(body, b"application/json", "model"),
            Ok(None)
        );
        assert_eq!(multipart_field(b"--XyZ\r\nbroken", ct, "model"), Ok(None));
        let quoted = b"multipart/form-data; boundary=\"XyZ\"";
        assert_eq!(
            multipart_field(body, quoted, "model"),
            Ok(Some("whisper-1"))
        );
    }

    /// A form whose `model` field comes after `parts` other parts, with `boundary`.
    fn form(boundary: &str, preamble: &str, parts: usize) -> Vec<u8> {
        let mut b = preamble.as_bytes().to_vec();
        for i in 0..parts {
            b.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nv{i}\r\n"
                )
                .as_bytes(),
            );
        }
        b.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; NAME=\"model\"\r\n\r\nwhisper-1\r\n--{boundary}--\r\n")
                .as_bytes(),
        );
        b
    }

    fn ct(boundary: &str) -> Vec<u8> {
        format!("multipart/form-data; boundary={boundary}").into_bytes()
    }

    #[test]
    fn parts_preambles_and_the_boundary_cap() {
        let b70 = "b".repeat(70);
        for (boundary, preamble, parts) in [
            ("XyZ", "", 0),
            ("XyZ", "", 5),
            ("XyZ", "a preamble\r\n", 3),
            (b70.as_str(), "", 2),
        ] {
            let body = form(boundary, preamble, parts);
            assert_eq!(
                multipart_field(&body, &ct(boundary), "model"),
                Ok(Some("whisper-1")),
                "{boundary} {preamble:?} {parts}"
            );
            assert_eq!(multipart_field(&body, &ct(boundary), "f9"), Ok(None));
        }
        // RFC 2046 caps the boundary at 70 bytes: a longer one is not parsed at all.
        let b71 = "b".repeat(71);
        let body = form(&b71, "", 2);
        assert_eq!(multipart_field(&body, &ct(&b71), "model"), Ok(None));
        assert_eq!(multipart_field(&body, &ct(""), "model"), Ok(None));
        // A delimiter inside a part's content (no CRLF before it) does not end the part.
        let body = b"--X\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nab--X\r\nzz\r\n--X\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm1\r\n--X--";
        assert_eq!(
            multipart_field(body, b"multipart/form-data; boundary=X", "model"),
            Ok(Some("m1"))
        );
    }

    /// A second `model` part, or one in another case, is refused: Starlette (vLLM) reads the
    /// last, others the first, and names are case-sensitive for every backend.
    #[test]
    fn ambiguous_model_fields_are_refused() {
        let part = |name: &str, v: &str| {
            format!("--X\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{v}\r\n")
        };
        let ct = b"multipart/form-data; boundary=X";
        let two = format!(
            "{}{}--X--",
            part("model", "whisper-1"),
            part("model", "gpt-4o")
        );
        assert_eq!(
            multipart_field(two.as_bytes(), ct, "model"),
            Err(super::MultipartError::Ambiguous)
        );
        let cased = format!(
            "{}{}--X--",
            part("Model", "gpt-4o"),
            part("model", "whisper-1")
        );
        assert_eq!(
            multipart_field(cased.as_bytes(), ct, "model"),
            Err(super::MultipartError::Ambiguous)
        );
        let bad = b"--X\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n\xff\r\n--X--";
        assert_eq!(
            multipart_field(bad, ct, "model"),
            Err(super::MultipartError::NotUtf8)
        );
        // The forms other parsers read as the model field too: unquoted, spaced, RFC 5987, a
        // bare-LF head, twice in one head.
        for head in [
            "Content-Disposition: form-data; name=model",
            "Content-Disposition: form-data; name = \"model\"",
            "Content-Disposition: form-data; name*=utf-8''model",
            "Content-Type: text/plain\nContent-Disposition: form-data; name=\"model\"",
            "Content-Disposition: form-data; name=\"model\"; name=\"model\"",
        ] {
            let body = format!(
                "{}--X\r\n{head}\r\n\r\ngpt-4o\r\n--X--",
                part("model", "whisper-1")
            );
            assert_eq!(
                multipart_field(body.as_bytes(), ct, "model"),
                Err(super::MultipartError::Ambiguous),
                "{head:?}"
            );
        }
        // A file whose bytes hold `--X` followed by anything but `--` or CRLF is not split there.
        let body = format!(
            "--X\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nab\r\n--Xjunk\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nfake\r\n{}--X--",
            part("model", "whisper-1")
        );
        assert_eq!(
            multipart_field(body.as_bytes(), ct, "model"),
            Ok(Some("whisper-1"))
        );
        // A file called model.wav is not the model field.
        let body = format!(
            "--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model.wav\"\r\n\r\nRIFF\r\n{}--X--",
            part("model", "whisper-1")
        );
        assert_eq!(
            multipart_field(body.as_bytes(), ct, "model"),
            Ok(Some("whisper-1"))
        );
        let one = format!("{}{}--X--", part("file", "x"), part("model", "whisper-1"));
        assert_eq!(
            multipart_field(one.as_bytes(), ct, "model"),
            Ok(Some("whisper-1"))
        );
    }

    #[test]
    fn hostile_four_mib_bodies_are_searched_in_linear_time() {
        const MIB4: usize = 4 << 20;
        // A 32 KiB boundary over a body of its near-matches: quadratic in a naive search (5.6 s
        // in a release build before the fix); now refused by the 70-byte cap.
        let long = "a".repeat(32 << 10);
        let body = vec![b'a'; MIB4];
        assert_eq!(multipart_field(&body, &ct(&long), "model"), Ok(None));
        // The longest allowed boundary over its near-matches.
        let b70 = "a".repeat(69) + "b";
        let mut body = b"--".repeat(MIB4 / 2);
        body.extend_from_slice(b"\r\n\r\n");
        assert_eq!(multipart_field(&body, &ct(&b70), "model"), Ok(None));
        // Millions of delimiters with no blank line until the very end: each delimiter used to
        // start a fresh search for the blank line over the rest of the body.
        let mut body = b"--a".to_vec();
        while body.len() < MIB4 {
            body.extend_from_slice(b"\r\n--a");
        }
        body.extend_from_slice(b"\r\n\r\nx");
        assert_eq!(multipart_field(&body, &ct("a"), "model"), Ok(None));
        // And the same with the field at the very end, found.
        let mut body = vec![b'-'; MIB4];
        body.extend_from_slice(&form("a", "\r\n", 1));
        assert_eq!(
            multipart_field(&body, &ct("a"), "model"),
            Ok(Some("whisper-1"))
        );
    }
}
