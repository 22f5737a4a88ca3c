//! Criterion benchmarks for aigw (no library code).
//!
//! The benches live in `benches/`; each measures an aigw-core parser next to the raw crate it wraps,
//! in the same criterion group, so the overhead of the wrapper is read off as a ratio:
//!
//! - `parse`: `decode_request_head` vs `httparse::Request::parse` on the same bytes,
//!   `decode_response_head` vs `httparse::Response::parse`, and the chunked decoder over a 16 KiB
//!   SSE-like body.
//! - `peek`: `openai::peek` vs `serde_json::from_slice::<Value>` on 1 KiB and 64 KiB chat bodies.
//! - `estimate`: `tokens::estimate_prompt` (borrowing visitors) vs the `Value`-tree estimate it
//!   replaced, on a 180-byte and a 64 KiB chat body, with allocations per call.
//!
//! Run with `cargo bench -p aigw-benches --bench parse -- --quick` (or without `--quick` for
//! the full measurement).
