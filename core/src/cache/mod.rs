//! The semantic cache (exact and semantic layers shared by every core).
//!
//! - [`prompt`]: the request and response side, sans IO: cache keys and the text to embed from a
//!   request body, the lexical guards, what of a finished answer is stored, and the SSE replay of
//!   a stored answer.
pub mod prompt;
