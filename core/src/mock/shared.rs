//! State shared by every worker serving one mock: counters, stats and the ring of recent requests.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use serde_json::{Map, Value};

use super::MockRequest;

/// How many recent requests [`MockShared`] keeps.
pub const RECENT_CAPACITY: usize = 64;
/// Bodies kept in the ring are cut to this many bytes.
pub const RECENT_BODY_LIMIT: usize = 64 * 1024;

/// How many Responses API objects a mock keeps for retrieval (the oldest are forgotten first).
pub const STORED_CAPACITY: usize = 256;

/// The operations the mock counts, in stats order.
pub(crate) const OPERATIONS: [&str; 6] = [
    "chat/completions",
    "completions",
    "embeddings",
    "models",
    "responses",
    "other",
];

/// Index of an operation in [`OPERATIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Chat = 0,
    Completions = 1,
    Embeddings = 2,
    Models = 3,
    Responses = 4,
    Other = 5,
}

/// Most bytes of Responses API objects a mock keeps (each holds its request's input, and a
/// request may be as large as the mock's body limit): the oldest are forgotten first, and the
/// latest is always kept, alone if it is larger.
pub const STORED_BYTES: usize = 64 * 1024 * 1024;

/// A stored Responses API object.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) id: String,
    pub(crate) response: Bytes,
    pub(crate) input_items: Bytes,
}

impl Stored {
    /// The bytes it holds.
    fn bytes(&self) -> usize {
        self.id.len() + self.response.len() + self.input_items.len()
    }
}

/// One request as the mock saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// Counters and recent requests of one mock upstream, shared by all its workers (`Send + Sync`).
#[derive(Debug)]
pub struct MockShared {
    region: String,
    seq: AtomicU64,
    by_op: [AtomicU64; 6],
    failed: AtomicU64,
    tokens: AtomicU64,
    recent: Mutex<VecDeque<Seen>>,
    stored: Mutex<VecDeque<Stored>>,
    nonce: String,
}

impl MockShared {
    /// Fresh counters for a mock reporting `region` in its stats.
    pub fn new(region: impl Into<String>) -> Self {
        MockShared {
            region: region.into(),
            seq: AtomicU64::new(0),
            by_op: Default::default(),
            failed: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_CAPACITY)),
            stored: Mutex::new(VecDeque::new()),
            // Response ids are unique across mocks and runs, as the real service's are.
            nonce: format!("{:016x}", RandomState::new().hash_one(0u8)),
        }
    }

    /// The part of response ids that is this mock's own.
    pub(crate) fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Keep a Responses API object, forgetting the oldest past [`STORED_CAPACITY`] objects or
    /// [`STORED_BYTES`] bytes.
    pub(crate) fn store(&self, s: Stored) {
        let mut q = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        let mut held: usize = q.iter().map(Stored::bytes).sum();
        while q.len() >= STORED_CAPACITY || (!q.is_empty() && held + s.bytes() > STORED_BYTES) {
            if let Some(old) = q.pop_front() {
                held -= old.bytes();
            }
        }
        q.push_back(s);
    }

    /// The stored object `id`.
    pub(crate) fn stored(&self, id: &str) -> Option<Stored> {
        let q = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        q.iter().find(|s| s.id == id).cloned()
    }

    /// Forget the stored object `id`.
    pub(crate) fn unstore(&self, id: &str) {
        let mut q = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        q.retain(|s| s.id != id);
    }

    /// The region given to [`MockShared::new`].
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Requests seen since creation or the last [`reset`](Self::reset).
    pub fn total(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Requests seen for `operation` ("chat/completions", "completions", "embeddings", "models",
    /// "responses", "other").
    pub fn count_for(&self, operation: &str) -> u64 {
        OPERATIONS
            .iter()
            .position(|o| *o == operation)
            .map_or(0, |i| self.by_op[i].load(Ordering::Relaxed))
    }

    /// Answers with status >= 400 so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Zero every counter and forget the recent requests (restarts the `fail_every` pattern too).
    pub fn reset(&self) {
        self.seq.store(0, Ordering::Relaxed);
        for c in &self.by_op {
            c.store(0, Ordering::Relaxed);
        }
        self.failed.store(0, Ordering::Relaxed);
        self.tokens.store(0, Ordering::Relaxed);
        self.lock().clear();
    }

    /// `{"total":N,"by_operation":{"chat/completions":N,…},"failed":N,"region":"…"}`.
    pub fn stats_json(&self) -> Bytes {
        let by_op: Map<String, Value> = OPERATIONS
            .iter()
            .zip(&self.by_op)
            .map(|(name, c)| ((*name).to_owned(), Value::from(c.load(Ordering::Relaxed))))
            .collect();
        let v = serde_json::json!({
            "total": self.total(),
            "by_operation": by_op,
            "failed": self.failed(),
            "region": self.region,
        });
        Bytes::from(v.to_string())
    }

    /// `{"requests":[{"method","path","headers":{name: value},"body"}…]}`, oldest first.
    ///
    /// Header names are lowercased; repeated headers are joined with ", ". `path` includes the query.
    pub fn requests_json(&self) -> Bytes {
        let requests: Vec<Value> = self
            .lock()
            .iter()
            .map(|s| {
                let mut headers = Map::new();
                for (name, value) in &s.headers {
                    match headers.get_mut(name) {
                        Some(Value::String(prev)) => {
                            prev.push_str(", ");
                            prev.push_str(value);
                        }
                        _ => {
                            headers.insert(name.clone(), Value::String(value.clone()));
                        }
                    }
                }
                serde_json::json!({
                    "method": s.method,
                    "path": s.path,
                    "headers": headers,
                    "body": s.body,
                })
            })
            .collect();
        Bytes::from(serde_json::json!({ "requests": requests }).to_string())
    }

    /// Count `req` under `op`, remember it, and return its sequence number (1 for the first).
    pub(crate) fn begin(&self, op: Op, req: &MockRequest<'_>) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.by_op[op as usize].fetch_add(1, Ordering::Relaxed);
        let mut path = req.path.to_owned();
        if !req.query.is_empty() {
            path.push('?');
            path.push_str(req.query);
        }
        let body = &req.body[..req.body.len().min(RECENT_BODY_LIMIT)];
        let seen = Seen {
            method: String::from_utf8_lossy(req.method).into_owned(),
            path,
            headers: req
                .headers
                .iter()
                .map(|h| {
                    (
                        String::from_utf8_lossy(&h.name).to_ascii_lowercase(),
                        String::from_utf8_lossy(&h.value).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let mut ring = self.lock();
        if ring.len() >= RECENT_CAPACITY {
            ring.pop_front();
        }
        ring.push_back(seen);
        seq
    }

    /// Note the outcome of a request; returns the tokens used so far (for the rate-limit headers).
    pub(crate) fn finish(&self, status: u16, tokens: u64) -> u64 {
        if status >= 400 {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.tokens.fetch_add(tokens, Ordering::Relaxed) + tokens
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Seen>> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::Header;

    fn req<'a>(path: &'a str, headers: &'a [Header], body: &'a [u8]) -> MockRequest<'a> {
        MockRequest {
            method: b"POST",
            path,
            query: "api-version=1",
            headers,
            body,
        }
    }

    #[test]
    fn ring_keeps_the_last_64_oldest_first() {
        let shared = MockShared::new("east");
        let headers = [
            Header {
                name: Bytes::from_static(b"X-Tag"),
                value: Bytes::from_static(b"a"),
            },
            Header {
                name: Bytes::from_static(b"x-tag"),
                value: Bytes::from_static(b"b"),
            },
        ];
        for i in 0..70u32 {
            let body = i.to_string();
            let seq = shared.begin(
                Op::Chat,
                &req("/v1/chat/completions", &headers, body.as_bytes()),
            );
            assert_eq!(seq, u64::from(i) + 1);
        }
        let v: Value = serde_json::from_slice(&shared.requests_json()).unwrap();
        let list = v["requests"].as_array().unwrap();
        assert_eq!(list.len(), RECENT_CAPACITY);
        assert_eq!(list[0]["body"], "6");
        assert_eq!(list[63]["body"], "69");
        assert_eq!(list[0]["method"], "POST");
        assert_eq!(list[0]["path"], "/v1/chat/completions?api-version=1");
        assert_eq!(list[0]["headers"]["x-tag"], "a, b");
    }

    /// Stored responses are bounded in bytes, not only in count: each holds the request's input
    /// (up to the mock's 64 MiB body limit), so 256 of them could hold gigabytes.
    #[test]
    fn stored_responses_are_bounded_in_bytes() {
        let shared = MockShared::new("east");
        let big = Bytes::from(vec![b'x'; 1 << 20]);
        for i in 0..100 {
            shared.store(Stored {
                id: format!("resp_{i}"),
                response: big.clone(),
                input_items: Bytes::from(vec![b'y'; 1 << 20]),
            });
        }
        let held: usize = {
            let q = shared.stored.lock().unwrap();
            q.iter().map(Stored::bytes).sum()
        };
        assert!(held <= STORED_BYTES, "{held} bytes held");
        assert!(shared.stored("resp_99").is_some());
        assert!(shared.stored("resp_0").is_none());
        // One larger than the whole budget is still kept (alone): the latest is always found.
        shared.store(Stored {
            id: "resp_huge".into(),
            response: Bytes::from(vec![b'z'; STORED_BYTES + 1]),
            input_items: Bytes::new(),
        });
        assert!(shared.stored("resp_huge").is_some());
        assert_eq!(shared.stored.lock().unwrap().len(), 1);
    }

    #[test]
    fn stats_and_reset() {
        let shared = MockShared::new("west");
        shared.begin(Op::Chat, &req("/", &[], b""));
        shared.begin(Op::Embeddings, &req("/", &[], b""));
        shared.begin(Op::Chat, &req("/", &[], b""));
        shared.finish(500, 0);
        let v: Value = serde_json::from_slice(&shared.stats_json()).unwrap();
        assert_eq!(v["total"], 3);
        assert_eq!(v["by_operation"]["chat/completions"], 2);
        assert_eq!(v["by_operation"]["embeddings"], 1);
        assert_eq!(v["by_operation"]["other"], 0);
        assert_eq!(v["failed"], 1);
        assert_eq!(v["region"], "west");
        assert_eq!(shared.count_for("chat/completions"), 2);
        assert_eq!(shared.count_for("nope"), 0);
        shared.reset();
        assert_eq!(shared.total(), 0);
        assert_eq!(shared.count_for("chat/completions"), 0);
        let v: Value = serde_json::from_slice(&shared.requests_json()).unwrap();
        assert_eq!(v["requests"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MockShared>();
    }
}
