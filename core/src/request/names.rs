//! Model and deployment names: what a client may send, checked where the name crosses into
//! another framing.
//!
//! A name that travels only inside the JSON body (OpenAI-dialect backends) keeps its real-world
//! forms (`meta-llama/Llama-3.1-8B-Instruct` for vLLM, `ft:gpt-4o-mini:org::id`), but it also
//! becomes a metric label and a log field, so it never holds control characters and is bounded in
//! length. A name that becomes a URL path segment (`/openai/deployments/{name}/…` for the Azure
//! dialect) must be one segment and nothing more: no `/`, no dot segments, no `?`, `#`, `%`
//! (no percent-encoding games: the backend would decode what we did not check), no spaces.

/// Longest model or deployment name accepted (OpenAI's and Azure's are far shorter).
pub const MAX_NAME_BYTES: usize = 256;

/// Why a name was refused (answered as 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Longer than [`MAX_NAME_BYTES`].
    #[error("the model name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    /// Holds a control character (CR, LF, NUL, DEL…).
    #[error("the model name contains a control character")]
    Control,
    /// Cannot be a single URL path segment (the Azure dialect puts it in the path).
    #[error("the model name cannot be a deployment name ({0}): use letters, digits and - . _ ~ : only, and not '.' or '..'")]
    NotASegment(&'static str),
}

/// Check a name that travels in a JSON body, a label and a log line.
///
/// # Errors
/// [`NameError::TooLong`] or [`NameError::Control`].
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    Ok(())
}

/// Is `b` allowed in a segment the gateway builds a backend path from? Letters, digits and
/// `-._~:` (Azure's deployment names use `[A-Za-z0-9._-]`): no `%` (the backend would decode what
/// we did not check), no `;` (servers that read path parameters resolve `..;` as `..`).
fn segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:".contains(&b)
}

/// Is `s` one plain path segment: non-empty, not a dot segment, only [`segment_byte`]s?
pub fn is_plain_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.bytes().all(segment_byte)
}

/// Check a name that becomes one URL path segment (the Azure dialect's deployment).
///
/// # Errors
/// As [`check_name`], plus [`NameError::NotASegment`].
pub fn check_segment(name: &str) -> Result<(), NameError> {
    check_name(name)?;
    if name.is_empty() {
        return Err(NameError::NotASegment("it is empty"));
    }
    if name == "." || name == ".." {
        return Err(NameError::NotASegment("it is a dot segment"));
    }
    if !name.bytes().all(segment_byte) {
        return Err(NameError::NotASegment(
            "it has a character a path segment cannot hold",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_names_keep_real_world_forms() {
        for ok in [
            "gpt-4o",
            "meta-llama/Llama-3.1-8B-Instruct",
            "ft:gpt-4o-mini:org::id",
            "qwen2.5:7b",
            "名前",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["a\r\nb", "a\0", "x\u{7f}", "tab\there", "\u{85}next-line"] {
            assert_eq!(check_name(bad), Err(NameError::Control), "{bad:?}");
        }
        assert_eq!(check_name(&"m".repeat(257)), Err(NameError::TooLong));
        assert_eq!(check_name(&"m".repeat(256)), Ok(()));
    }

    #[test]
    fn segments_are_one_segment_only() {
        for ok in [
            "gpt-4o",
            "ft:gpt-4o-mini:org::id",
            "my_dep.v2",
            "a~b",
            "...",
        ] {
            assert_eq!(check_segment(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "..;",
            "a;b",
            "a@b",
            "a/b",
            "x/chat/completions?api-version=1",
            "a#b",
            "%2e%2e",
            "a b",
            "a\r\nb",
            "a\\b",
            "a\"b",
            "meta-llama/Llama-3.1-8B-Instruct",
            "名前",
        ] {
            assert!(check_segment(bad).is_err(), "{bad:?}");
        }
    }

    /// The smuggling payload of the review: refused before it reaches any framing.
    #[test]
    fn the_smuggling_payload_is_refused() {
        let m = "x/chat/completions?api-version=2024-10-21 HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\nDELETE /openai/files/file-123?api-version=2024-10-21&x=";
        assert_eq!(check_name(m), Err(NameError::Control));
        assert!(check_segment(m).is_err());
        assert!(check_segment("x/chat/completions?api-version=2024-10-21").is_err());
    }
}
