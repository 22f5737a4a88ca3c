//! Messages and their contents: the text of a message, which content bypasses, and the embedded
//! window being taken out of the request (its contents go to the exact key, a hole stays).

use super::canon::Node;
use super::Bypass;

/// Content part types whose text is read: chat (`text`, `refusal`) and Responses (`input_text`,
/// `output_text`, `refusal`) alike; a part of the other API's kind gets the backend's 400, which
/// is never stored.
const TEXT_PARTS: [(&str, &str); 4] = [
    ("text", "text"),
    ("input_text", "text"),
    ("output_text", "text"),
    ("refusal", "refusal"),
];
/// Content part types that are not text: a request carrying one bypasses ([`Bypass::NonText`]).
const NON_TEXT_PARTS: [&str; 6] = [
    "image_url",
    "input_audio",
    "file",
    "input_image",
    "input_file",
    "input_audio_url",
];

/// The text of a message's `content`: a string, or its text parts joined by `\n`; `None` for
/// `null` or no content (an assistant turn that only calls tools). Non-text parts are
/// [`Bypass::NonText`]; any other shape, or an unknown part type, is [`Bypass::Unsupported`].
pub(crate) fn content_text(content: Option<&Node>) -> Result<Option<String>, Bypass> {
    let parts = match content {
        None | Some(Node::Null) => return Ok(None),
        Some(Node::Str(s)) => return Ok(Some(s.clone())),
        Some(Node::Array(parts)) => parts,
        Some(_) => return Err(Bypass::Unsupported),
    };
    let mut text = String::new();
    for (i, part) in parts.iter().enumerate() {
        let kind = part
            .get("type")
            .and_then(Node::as_str)
            .ok_or(Bypass::Unsupported)?;
        if NON_TEXT_PARTS.contains(&kind) {
            return Err(Bypass::NonText);
        }
        let field = TEXT_PARTS
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, f)| *f)
            .ok_or(Bypass::Unsupported)?;
        let piece = part
            .get(field)
            .and_then(Node::as_str)
            .ok_or(Bypass::Unsupported)?;
        if i > 0 {
            text.push('\n');
        }
        text.push_str(piece);
    }
    Ok(Some(text))
}

/// `system` and `developer` messages: left out of the dialog count, and with
/// `ignore_system_messages` out of a conversation's text and partition.
pub(crate) fn is_system(role: &str) -> bool {
    matches!(role, "system" | "developer")
}

/// One message of the request, read.
#[derive(Debug)]
pub(crate) struct Message {
    /// Its role; `None` for a Responses input item that is not a message (a function call or
    /// its output, a reasoning item, an item reference).
    pub(crate) role: Option<String>,
    /// Its content's text (`None` when null or absent).
    pub(crate) text: Option<String>,
}

impl Message {
    /// A dialog message (counted against `max_message_count`).
    pub(crate) fn is_dialog(&self) -> bool {
        !self.role.as_deref().is_some_and(is_system)
    }
}

/// Read a chat message: an object with a known `role` and a valid `content`.
pub(crate) fn chat_message(m: &Node) -> Result<Message, Bypass> {
    let role = m.get("role").and_then(Node::as_str);
    let role = match role {
        Some(r @ ("system" | "developer" | "user" | "assistant" | "tool" | "function")) => r,
        _ => return Err(Bypass::Unsupported),
    };
    Ok(Message {
        role: Some(role.to_owned()),
        text: content_text(m.get("content"))?,
    })
}

/// Read a Responses input item: a message (`role`, `type` absent or `"message"`) or another
/// typed item.
pub(crate) fn input_item(item: &Node) -> Result<Message, Bypass> {
    let kind = item.get("type");
    let Some(role) = item.get("role") else {
        return match kind.and_then(Node::as_str) {
            Some(k) if k != "message" => Ok(Message {
                role: None,
                text: None,
            }),
            _ => Err(Bypass::Unsupported),
        };
    };
    if !matches!(kind, None | Some(Node::Null)) && kind.and_then(Node::as_str) != Some("message") {
        return Err(Bypass::Unsupported);
    }
    let role = match role.as_str() {
        Some(r @ ("system" | "developer" | "user" | "assistant")) => r,
        _ => return Err(Bypass::Unsupported),
    };
    Ok(Message {
        role: Some(role.to_owned()),
        text: content_text(item.get("content"))?,
    })
}

/// The embedded window: the text to embed, and the contents taken out of the request for the
/// exact key.
#[derive(Debug, Default)]
pub(crate) struct Window {
    pub(crate) text: String,
    pub(crate) contents: Vec<Node>,
}

impl Window {
    /// Take `node` out of the request into the window, leaving a hole.
    pub(crate) fn take(&mut self, node: &mut Node) {
        self.contents.push(std::mem::replace(node, Node::Hole));
    }

    /// Add a `role: text` line (conversation mode).
    pub(crate) fn line(&mut self, role: &str, text: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(role);
        self.text.push_str(": ");
        self.text.push_str(text);
    }
}

/// Whitespace-only (or empty) text: nothing to embed.
pub(crate) fn blank(text: &str) -> bool {
    text.trim().is_empty()
}
