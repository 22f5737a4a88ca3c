//! The hostile battery: black-box tests that play a malicious caller, a broken upstream or a
//! confused config against a real `aigw` process, under both monoio drivers. Each test names the
//! finding it guards against; each failed on the main branch before its fix.
//!
//! - `framing.rs`: values that cross into the upstream request (smuggling through `model`, path
//!   walking), validation before any member is picked, body `model` against the path, the front
//!   door (authentication before the body, `100 Continue`, the body budget, client hang-ups).
//! - `upstream.rs`: a hostile or broken upstream (interim 1xx, odd framing, stray bytes on pooled
//!   connections, stale connections), played by the scripted upstream in `common/evil.rs`.
//! - `compress.rs`: compressed answers are still accounted (identity asked, the tap decodes, an
//!   unreadable answer pays its reservation).
//! - `breaker.rs`: upstream hints and breaker timing (huge `Retry-After`, half-open epochs, DNS).
//! - `admission.rs`: limits and memory (client numbers, counter keys, labels, log bytes).
//! - `review.rs`: the reproductions of an independent review of these fixes.
//! - `idle.rs`: idle keep-alive connections (no read buffer while waiting) still serve after a
//!   long wait and still close on the idle and header timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;
#[path = "hostile/admission.rs"]
mod admission;
#[path = "hostile/breaker.rs"]
mod breaker;
#[path = "hostile/compress.rs"]
mod compress;
#[path = "common/evil.rs"]
mod evil;
#[path = "hostile/framing.rs"]
mod framing;
#[path = "hostile/idle.rs"]
mod idle;
#[path = "hostile/review.rs"]
mod review;
#[path = "hostile/upstream.rs"]
mod upstream;
