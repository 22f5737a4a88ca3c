//! [`analyse`]: a request body → its keys and the text to embed, or why it bypasses the cache.

use super::canon::{self, Node, ParseError};
use super::key::Keyer;
use super::window::{blank, chat_message, input_item, is_system, Message, Window};
use super::{Analysed, Bypass, EmbedMode, Operation, Shape, VOLATILE};

/// Domain tags of the two keys.
const PARTITION: &[u8] = b"aigw-cache/partition/v1";
const EXACT: &[u8] = b"aigw-cache/exact/v1";

/// Analyse a request body (decoded, as the client sent it) for the cache.
///
/// `context`: what io adds to the partition, in order: operation, model, embedder model,
/// dimensions, each `vary_by` value (already tagged, e.g. `b"consumer=alice"`). See the module
/// docs of [`prompt`](super) for the keys, the window and the bypass rules. Never panics; the
/// work is linear in the body (nesting is capped at 64).
pub fn analyse(
    keyer: &Keyer,
    body: &[u8],
    shape: &Shape,
    context: &[&[u8]],
) -> Result<Analysed, Bypass> {
    let mut root = canon::parse(body).map_err(|e| match e {
        ParseError::NotJson => Bypass::NotJson,
        ParseError::Refused => Bypass::Unsupported,
    })?;
    if !matches!(root, Node::Object(_)) {
        return Err(Bypass::Unsupported);
    }
    let stream = root.is_true("stream");
    let include_usage = root
        .get("stream_options")
        .is_some_and(|o| o.is_true("include_usage"));
    refuse_options(&root, shape.operation)?;
    for k in VOLATILE {
        // A Responses answer's `store` decides whether its id can be retrieved or continued
        // (`previous_response_id`): an id from a `store: false` answer served to a request that
        // asked to store would name nothing.
        if !(k == "store" && shape.operation == Operation::Responses) {
            root.remove(k);
        }
    }
    let window = match shape.operation {
        Operation::Chat => chat(&mut root, shape)?,
        Operation::Completions => completion(&mut root)?,
        Operation::Responses => responses(&mut root, shape)?,
    };

    let mut p = keyer.start(PARTITION);
    p.count(context.len());
    for c in context {
        p.field(c);
    }
    p.field(shape.operation.as_str().as_bytes());
    p.field(match (shape.embed, shape.ignore_system_messages) {
        (EmbedMode::LastUser, _) => b"last_user",
        (EmbedMode::Conversation, false) => b"conversation",
        (EmbedMode::Conversation, true) => b"conversation-ignore-system",
    });
    root.encode(&mut p.0);
    let partition = p.finish();

    let mut x = keyer.start(EXACT);
    x.field(&partition.to_le_bytes());
    x.count(window.contents.len());
    for c in &window.contents {
        c.encode(&mut x.0);
    }
    Ok(Analysed {
        partition,
        exact: x.finish(),
        text: window.text,
        stream,
        include_usage,
    })
}

/// Options whose answers the cache cannot serve (see the module docs): several answers,
/// logprobs, audio, and Responses' mutable server-side state.
fn refuse_options(root: &Node, op: Operation) -> Result<(), Bypass> {
    let over_one = |key: &str| match root.get(key) {
        None | Some(Node::Null) => Ok(()),
        Some(Node::UInt(n)) if *n > 1 => Err(Bypass::Multiple),
        Some(Node::UInt(_)) => Ok(()),
        Some(_) => Err(Bypass::Unsupported),
    };
    let refuse = |yes: bool| {
        if yes {
            Err(Bypass::Unsupported)
        } else {
            Ok(())
        }
    };
    match op {
        Operation::Chat => {
            over_one("n")?;
            refuse(root.is_true("logprobs") || root.has("top_logprobs"))?;
            refuse(root.has("audio") || mentions(root.get("modalities"), "audio"))
        }
        Operation::Completions => {
            over_one("n")?;
            over_one("best_of")?;
            refuse(root.has("logprobs"))
        }
        Operation::Responses => {
            refuse(root.is_true("background"))?;
            refuse(root.has("conversation") || root.has("prompt"))?;
            refuse(!matches!(
                root.get("top_logprobs"),
                None | Some(Node::Null) | Some(Node::UInt(0))
            ))?;
            refuse(mentions(
                root.get("include"),
                "message.output_text.logprobs",
            ))
        }
    }
}

/// `list` is an array holding the string `what`.
fn mentions(list: Option<&Node>, what: &str) -> bool {
    matches!(list, Some(Node::Array(items)) if items.iter().any(|i| i.as_str() == Some(what)))
}

/// Dialog messages past the limit bypass.
fn count(messages: &[Message], shape: &Shape) -> Result<(), Bypass> {
    let dialog = messages.iter().filter(|m| m.is_dialog()).count();
    if shape.max_message_count > 0 && dialog > shape.max_message_count {
        return Err(Bypass::TooManyMessages);
    }
    Ok(())
}

/// Chat completions: `messages`.
fn chat(root: &mut Node, shape: &Shape) -> Result<Window, Bypass> {
    let Some(Node::Array(messages)) = root.get_mut("messages") else {
        return Err(Bypass::Unsupported);
    };
    let read = messages
        .iter()
        .map(chat_message)
        .collect::<Result<Vec<_>, _>>()?;
    count(&read, shape)?;
    window(messages, read, shape, None)
}

/// Responses: `input` (a string, or input items) and `instructions`.
fn responses(root: &mut Node, shape: &Shape) -> Result<Window, Bypass> {
    let instructions = match root.get("instructions") {
        None | Some(Node::Null) => None,
        Some(Node::Str(s)) => Some(s.clone()),
        Some(_) => return Err(Bypass::Unsupported),
    };
    let conversation = shape.embed == EmbedMode::Conversation;
    // In a conversation, `instructions` is the system prompt: left out with
    // `ignore_system_messages`, else its first line. Otherwise it stays in the partition.
    let mut win = Window::default();
    let mut any_text = false;
    if conversation && instructions.is_some() {
        if shape.ignore_system_messages {
            root.remove("instructions");
        } else if let (Some(text), Some(node)) = (&instructions, root.get_mut("instructions")) {
            win.line("system", text);
            any_text |= !blank(text);
            win.take(node);
        }
    }
    match root.get_mut("input") {
        Some(input @ Node::Str(_)) => {
            let text = input.as_str().unwrap_or_default().to_owned();
            if blank(&text) && !any_text {
                return Err(Bypass::EmptyText);
            }
            if conversation {
                win.line("user", &text);
            } else {
                win.text = text;
            }
            win.take(input);
            Ok(win)
        }
        Some(Node::Array(items)) => {
            let read = items
                .iter()
                .map(input_item)
                .collect::<Result<Vec<_>, _>>()?;
            count(&read, shape)?;
            let mut rest = window(items, read, shape, Some(any_text))?;
            if !win.text.is_empty() {
                win.text.push('\n');
            }
            win.text.push_str(&rest.text);
            win.contents.append(&mut rest.contents);
            Ok(win)
        }
        _ => Err(Bypass::Unsupported),
    }
}

/// Text completions: `prompt`, one string.
fn completion(root: &mut Node) -> Result<Window, Bypass> {
    let prompt = root.get_mut("prompt").ok_or(Bypass::Unsupported)?;
    let text = match &*prompt {
        Node::Str(s) => s.clone(),
        Node::Array(items) if items.len() == 1 => items
            .first()
            .and_then(Node::as_str)
            .ok_or(Bypass::Unsupported)?
            .to_owned(),
        Node::Array(items) if items.len() > 1 && items.iter().all(|i| i.as_str().is_some()) => {
            return Err(Bypass::Multiple)
        }
        // Token arrays, empty arrays, other values.
        _ => return Err(Bypass::Unsupported),
    };
    if blank(&text) {
        return Err(Bypass::EmptyText);
    }
    let mut win = Window {
        text,
        contents: Vec::new(),
    };
    win.take(prompt);
    Ok(win)
}

/// Take the window out of `messages` (chat messages or Responses input items, read into `read`).
/// `before`: whether text came before (Responses `instructions`), for the emptiness check.
fn window(
    messages: &mut Vec<Node>,
    read: Vec<Message>,
    shape: &Shape,
    before: Option<bool>,
) -> Result<Window, Bypass> {
    let mut win = Window::default();
    match shape.embed {
        EmbedMode::LastUser => {
            let (Some(node), Some(last)) = (messages.last_mut(), read.last()) else {
                return Err(Bypass::Unsupported);
            };
            let content = node.get_mut("content");
            let (Some(content), Some(text)) = (content, &last.text) else {
                return Err(Bypass::Unsupported);
            };
            if last.role.as_deref() != Some("user") {
                return Err(Bypass::Unsupported);
            }
            if blank(text) {
                return Err(Bypass::EmptyText);
            }
            win.text.clone_from(text);
            win.take(content);
        }
        EmbedMode::Conversation => {
            let mut any_text = before.unwrap_or(false);
            let mut kept = Vec::with_capacity(messages.len());
            for (mut node, m) in std::mem::take(messages).into_iter().zip(read) {
                let role = m.role.as_deref();
                if shape.ignore_system_messages && role.is_some_and(is_system) {
                    continue; // out of the text and the partition (APIM's semantics)
                }
                if let Some(role) = role {
                    let text = m.text.as_deref().unwrap_or_default();
                    any_text |= !blank(text);
                    win.line(role, text);
                    if let Some(c) = node.get_mut("content") {
                        win.take(c);
                    }
                }
                kept.push(node);
            }
            *messages = kept;
            if !any_text {
                return Err(Bypass::EmptyText);
            }
        }
    }
    if messages.is_empty() {
        return Err(Bypass::Unsupported);
    }
    Ok(win)
}
