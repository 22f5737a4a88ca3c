//! The hostile battery: black-box tests that play a malicious caller, a broken upstream or a
//! confused config against a real `aigw` process, under both monoio drivers. Each test names the
//! finding it guards against; each failed on the main branch before its fix.
//!
//! - `framing.rs`: values that cross into the upstream request (smuggling through `model`, path
//!   walking), validation before any member is picked, body `model` against the path, the front
//!   door (authentication before the body, `100 Continue`).
//! - `upstream.rs`: a hostile or broken upstream (interim 1xx, compressed answers, odd framing,
//!   stray bytes on pooled connections, stale connections).
//! - `breaker.rs`: upstream hints and breaker timing (huge `Retry-After`, half-open epochs).
//! - `admission.rs`: limits and memory before authentication (client numbers, counter keys,
//!   labels, log bytes, multipart bodies).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;
#[path = "hostile/admission.rs"]
mod admission;
#[path = "hostile/breaker.rs"]
mod breaker;
#[path = "hostile/compress.rs"]
mod compress;
#[path = "hostile/framing.rs"]
mod framing;
#[path = "hostile/upstream.rs"]
mod upstream;
