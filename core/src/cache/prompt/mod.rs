//! The request and response side of the semantic cache, sans IO: what a request is keyed and
//! embedded by ([`analyse`]), whether a candidate's text may answer it ([`guards_pass`]), what of a
//! finished answer is stored ([`storable`]) and how a stored answer is replayed as a stream
//! ([`replay_sse`]).
//!
//! # Keys
//! **Partitioning is the safety.** `partition` hashes what io passes as `context` (operation,
//! model, embedder model and dimension, the `vary_by` values), the shape (operation, embed mode)
//! and the canonical form of the *whole request body* minus the embedded text and minus the
//! volatile fields [`VOLATILE`]. So every sampling parameter (temperature, top_p, n, seed,
//! max_tokens, stop, logit_bias, tools, tool_choice, response_format, …), every message outside
//! the embedded window (system prompt, earlier turns), every non-text field of the window's
//! messages (role, name) and any field a future API adds change the partition: an unknown field
//! can split the cache, never merge two requests that a backend answers differently. `exact`
//! hashes the partition and the canonical form of the embedded window's contents, so it is a
//! canonical hash of the whole body (key order, whitespace and escapes do not matter).
//!
//! The volatile fields change how an answer is delivered or recorded, not what it says:
//! `stream` and `stream_options` (streamed and non-streamed requests share entries, replayed by
//! [`replay_sse`]), `user`, `safety_identifier` and `prompt_cache_key` (end-user ids for abuse
//! monitoring and the provider's own prompt cache; the gateway's `vary_by` decides who shares),
//! `metadata` and `store` (server-side logging of the completion; for Responses `store` stays in
//! the partition: it decides whether the answer's id can be retrieved or continued).
//!
//! # The embedded window
//! - `embed = "last_user"`: the last message (chat) or input item (responses), which must have
//!   role `user` (a conversation ending with an assistant or tool turn is
//!   [`Bypass::Unsupported`]); its text is its string content or its text parts joined by `\n`.
//!   Everything else, system prompt and `instructions` included, is in the partition;
//!   `ignore_system_messages` has no effect.
//! - `embed = "conversation"` (APIM parity): every message; its text is one `role: text` line per
//!   message (Responses `instructions` first, as `system`). With `ignore_system_messages`,
//!   `system` and `developer` messages and `instructions` are left out of the text *and* the
//!   partition (so a different system prompt still hits, as in APIM); the other messages' roles
//!   and non-text fields stay in the partition.
//! - Text completions: the `prompt` string (or an array of one string) in both modes.
//!
//! `max_message_count` counts the *dialog* messages: every message or input item except `system`
//! and `developer` ones (whatever `ignore_system_messages` says; APIM counts "dialog messages");
//! a prompt counts 1. More than `max_message_count` is [`Bypass::TooManyMessages`]; 0 means no
//! limit.
//!
//! # Bypass (never a hit, never stored)
//! Empty or whitespace-only text; `n > 1` or `best_of > 1`; an image, audio or file part in any
//! message; too many messages; and as `Unsupported`: a body that is not a JSON object, nests past
//! 64, repeats a key, has malformed messages, asks for logprobs or audio output, or (for
//! Responses) depends on server-side state that changes: `background`, `conversation` (the
//! conversation's items grow with every response, and a hit would not add to them) and `prompt`
//! (a stored prompt template, whose latest version can change). `previous_response_id` is kept:
//! a stored response is immutable, so the id is just part of the partition. (A Responses hit
//! carries the stored response's `id`: a client that chains on it continues the conversation of
//! the request that was stored, which an exact hit makes identical and a semantic hit makes a
//! paraphrase of its own.)
//!
//! # Parsing
//! Request bodies are parsed once by serde_json into a small sorted tree (`canon.rs`; bodies are
//! already size-capped by the gateway, and the tree is what both keys are hashed from); answers
//! into `serde_json::Value`. simd-json is not worth it here: a request is parsed once per lookup
//! and its keys cost a few µs next to an embeddings call.

mod analyse;
mod canon;
mod guards;
mod key;
mod replay;
mod replay_responses;
mod sse;
mod storable;
mod window;

#[cfg(test)]
mod tests;

pub use analyse::analyse;
pub use guards::guards_pass;
pub use key::Keyer;
pub use replay::{replay_sse, PIECE_CHARS};
pub use storable::storable;

/// Request fields left out of the keys (see the module docs).
pub const VOLATILE: [&str; 7] = [
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "metadata",
    "store",
];

/// The operations the cache serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `chat/completions`.
    Chat,
    /// `completions` (legacy text completions).
    Completions,
    /// `responses`.
    Responses,
}

impl Operation {
    /// The operation of a classified request path (`"chat/completions"`, `"completions"`,
    /// `"responses"`); `None` for every other operation.
    pub fn parse(operation: &str) -> Option<Self> {
        match operation {
            "chat/completions" => Some(Operation::Chat),
            "completions" => Some(Operation::Completions),
            "responses" => Some(Operation::Responses),
            _ => None,
        }
    }

    /// The operation's path name, as [`parse`](Self::parse) reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat/completions",
            Operation::Completions => "completions",
            Operation::Responses => "responses",
        }
    }
}

/// What is embedded (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmbedMode {
    /// The last user turn; everything else goes into the partition.
    LastUser,
    /// The whole conversation (APIM parity).
    Conversation,
}

impl EmbedMode {
    /// The mode's config name (`"last_user"`, `"conversation"`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "last_user" => Some(EmbedMode::LastUser),
            "conversation" => Some(EmbedMode::Conversation),
            _ => None,
        }
    }
}

/// How requests are analysed: one per cached route, from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// The request's operation.
    pub operation: Operation,
    /// What is embedded.
    pub embed: EmbedMode,
    /// With [`EmbedMode::Conversation`]: leave system and developer messages (and Responses
    /// `instructions`) out of the text and the partition.
    pub ignore_system_messages: bool,
    /// More dialog messages than this bypass the cache; 0 = no limit.
    pub max_message_count: usize,
}

/// A request the cache can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysed {
    /// Who may share entries and for which request context (see the module docs).
    pub partition: u128,
    /// The exact-layer key: the partition and the embedded window's canonical contents.
    pub exact: u128,
    /// The text to embed, and to store with the answer for the guards to compare.
    pub text: String,
    /// The client asked for a stream (`stream: true`).
    pub stream: bool,
    /// The client asked for a usage chunk (`stream_options.include_usage: true`).
    pub include_usage: bool,
}

/// Why a request is not served from (nor stored in) the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Bypass {
    /// The body is not JSON.
    #[error("the body is not JSON")]
    NotJson,
    /// The embedded text is empty or whitespace.
    #[error("the text to embed is empty")]
    EmptyText,
    /// More than one answer asked for (`n > 1`, `best_of > 1`, several prompts).
    #[error("more than one answer asked for")]
    Multiple,
    /// An image, audio or file part.
    #[error("a message has non-text content")]
    NonText,
    /// More dialog messages than `max_message_count`.
    #[error("more messages than max_message_count")]
    TooManyMessages,
    /// A request the cache does not serve (see the module docs).
    #[error("a request the cache does not serve")]
    Unsupported,
}

impl Bypass {
    /// A short name for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Bypass::NotJson => "not_json",
            Bypass::EmptyText => "empty_text",
            Bypass::Multiple => "multiple",
            Bypass::NonText => "non_text",
            Bypass::TooManyMessages => "too_many_messages",
            Bypass::Unsupported => "unsupported",
        }
    }
}

/// The lexical checks a semantic candidate must pass on top of the similarity threshold (see
/// [`guards_pass`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guard {
    /// The multisets of numbers in both texts are equal.
    Numbers,
    /// Both texts carry the same number of negation markers.
    Negation,
}

impl Guard {
    /// The guard's config name (`"numbers"`, `"negation"`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "numbers" => Some(Guard::Numbers),
            "negation" => Some(Guard::Negation),
            _ => None,
        }
    }
}

/// What to store of a finished answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storable {
    /// The answer as a non-stream JSON body: the body itself when it was JSON, assembled from the
    /// events when it was a stream.
    pub json: bytes::Bytes,
    /// The answer's `usage.total_tokens` (0 when it reported none).
    pub tokens: u64,
}
