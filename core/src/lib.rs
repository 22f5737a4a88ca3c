//! Sans-IO core of aigw: HTTP/1.1 framing, OpenAI request peeking, config and policies.
//!
//! Nothing here touches a socket or a runtime, so every piece can be unit tested, fuzzed and benched on
//! plain bytes. The IO crate (`aigw-io`) owns the reads and writes and calls into these functions.
//!
//! # Key parts
//! - [`http1`]: request/response head decoding, the chunked decoder, upstream head encoding.
//! - [`openai`]: path classification (OpenAI and Azure styles), the body peek, error bodies.
//! - [`config`]: the TOML file, checked once into an immutable [`config::Config`].
//! - [`request`]: the request path's synchronous decisions (names, routing, the upstream request).
//! - [`cache`]: the semantic cache's keys, guards, storing and replay.
//! - [`mock`]: the sans-IO brain of the built-in mock upstream.
#![forbid(unsafe_code)]

pub mod auth;
pub mod balance;
pub mod cache;
pub mod config;
pub mod error;
pub mod http1;
pub mod limit;
pub mod mock;
pub mod openai;
pub mod request;
pub mod tokens;
