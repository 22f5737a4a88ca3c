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
}

/// A body that claims JSON but is not.
#[derive(Debug, thiserror::Error)]
#[error("request body is not valid JSON: {0}")]
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
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<serde_json::Value>,
}

/// serde builds `Option<Cow<str>>` as owned; this visitor keeps the borrow unless the JSON
/// string had escapes (then it must be unescaped into a new string).
fn borrowed_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
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
    }
}

/// The value of the form field `name` in a `multipart/form-data` body (audio transcription and
/// image edit calls carry `model` this way). Borrowed from the body; `None` when absent or not
/// UTF-8.
pub fn multipart_field<'a>(body: &'a [u8], content_type: &[u8], name: &str) -> Option<&'a str> {
    let ct = std::str::from_utf8(content_type).ok()?;
    let (kind, params) = ct.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"'))
    })?;
    let delim = format!("--{boundary}");
    let mut rest = body;
    while let Some(at) = find(rest, delim.as_bytes()) {
        rest = &rest[at + delim.len()..];
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let wanted = head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("content-disposition:")
                && l.split(';')
                    .any(|p| p.trim() == format!("name=\"{}\"", name.to_ascii_lowercase()))
        });
        if wanted {
            let value = &rest[head_end + 4..];
            let end = find(value, format!("\r\n{delim}").as_bytes())?;
            return std::str::from_utf8(&value[..end]).ok();
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod multipart_tests {
    use super::multipart_field;

    #[test]
    fn finds_the_model_field() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\x00\x01model\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ--\r\n";
        let ct = b"multipart/form-data; boundary=XyZ";
        assert_eq!(multipart_field(body, ct, "model"), Some("whisper-1"));
        assert_eq!(multipart_field(body, ct, "language"), None);
        assert_eq!(multipart_field(body, b"application/json", "model"), None);
        assert_eq!(multipart_field(b"--XyZ\r\nbroken", ct, "model"), None);
        let quoted = b"multipart/form-data; boundary=\"XyZ\"";
        assert_eq!(multipart_field(body, quoted, "model"), Some("whisper-1"));
    }
}
