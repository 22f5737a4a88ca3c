//! The sans-IO brain of the built-in mock upstream: routes, replies, faults; the IO layer does the rest.
//!
//! [`handle`] turns one request into a [`MockReply`]: status, headers, a delay the IO layer waits
//! before answering, and either a full JSON body or SSE frames. Every worker serving the same mock
//! shares one [`MockShared`] (counters, stats, the last requests seen).

mod compress;
mod embed;
mod faults;
mod responses;
mod shared;
mod stream;
mod text;
mod warts;

#[cfg(test)]
mod tests;

pub use compress::{encode, FORCE_HEADER};
pub use embed::{cosine, embed, DEFAULT_DIMENSIONS};
pub use shared::{MockShared, RECENT_BODY_LIMIT, RECENT_CAPACITY, STORED_BYTES, STORED_CAPACITY};
pub use stream::{Events, SseEvents};
pub use warts::{encode_odd_chunked, Warts};

use bytes::Bytes;
use serde_json::Value;

use crate::config::MockOptions;
use crate::http1::Header;
use shared::Op;

/// `created` in every reply (fixed, so the mock stays deterministic).
const CREATED: u64 = 1_735_689_600;
/// Model reported when neither the body nor the path names one.
const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// The request budget behind `x-ratelimit-remaining-requests`.
const LIMIT_REQUESTS: u64 = 1_000;
/// The token budget behind `x-ratelimit-remaining-tokens`.
const LIMIT_TOKENS: u64 = 1_000_000;

/// One request, as handed over by the IO layer.
#[derive(Debug, Clone, Copy)]
pub struct MockRequest<'a> {
    /// The method, e.g. `b"POST"`.
    pub method: &'a [u8],
    /// The path, without the query.
    pub path: &'a str,
    /// The query without `?` (empty when none).
    pub query: &'a str,
    /// The request headers.
    pub headers: &'a [Header],
    /// The whole (de-chunked) body.
    pub body: &'a [u8],
}

/// What to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MockReply {
    /// The status code.
    pub status: u16,
    /// Response headers, `content-type` first; the IO layer adds framing headers itself.
    pub headers: Vec<(&'static str, String)>,
    /// Wait this long before sending the head.
    pub delay_ms: u64,
    /// The body.
    pub body: MockBody,
}

/// A mock reply body.
#[derive(Debug, Clone, PartialEq)]
pub enum MockBody {
    /// A JSON body, sent with `content-length`.
    Full(Bytes),
    /// Server-sent events, each a complete frame (`data: …\n\n`, the last `data: [DONE]\n\n`, for
    /// completions; `event: …\ndata: …\n\n` for the Responses API).
    Sse {
        /// The frames, in order, made as they are sent.
        events: SseEvents,
        /// Wait this long between frames.
        chunk_delay_ms: u64,
    },
}

/// What a route handler produced, before the common headers.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: MockBody,
    pub(crate) tokens: u64,
}

impl Answer {
    fn json(status: u16, body: Bytes) -> Self {
        Answer {
            status,
            body: MockBody::Full(body),
            tokens: 0,
        }
    }
}

/// Where a path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Root,
    Chat,
    Completions,
    Embeddings,
    ModelList,
    Model(&'a str),
    Responses,
    /// A stored response: its id and what follows it ("", "input_items", "cancel").
    Response(&'a str, &'a str),
    Unknown,
}

impl Route<'_> {
    fn op(self) -> Op {
        match self {
            Route::Chat => Op::Chat,
            Route::Completions => Op::Completions,
            Route::Embeddings => Op::Embeddings,
            Route::ModelList | Route::Model(_) => Op::Models,
            Route::Responses | Route::Response(..) => Op::Responses,
            Route::Root | Route::Unknown => Op::Other,
        }
    }

    /// Does the route take a JSON body?
    fn takes_body(self) -> bool {
        matches!(
            self,
            Route::Chat | Route::Completions | Route::Embeddings | Route::Responses
        )
    }

    fn allows(self, method: &[u8]) -> bool {
        match self {
            Route::Response(_, "") => method == b"GET" || method == b"DELETE",
            Route::Response(_, "cancel") => method == b"POST",
            r if r.takes_body() => method == b"POST",
            _ => method == b"GET",
        }
    }
}

/// Classify `/v1/{op}`, `/openai/v1/{op}`, `/openai/{op}` and `/openai/deployments/{dep}/{op}`;
/// also returns the deployment.
fn route(path: &str) -> (Route<'_>, Option<&str>) {
    if path.is_empty() || path == "/" {
        return (Route::Root, None);
    }
    let (deployment, op) = if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        match rest.split_once('/') {
            Some((dep, op)) if !dep.is_empty() => (Some(dep), op),
            _ => return (Route::Unknown, None),
        }
    } else if let Some(op) = ["/openai/v1/", "/v1/", "/openai/"]
        .iter()
        .find_map(|p| path.strip_prefix(p))
    {
        (None, op)
    } else {
        return (Route::Unknown, None);
    };
    let r = match op.trim_end_matches('/') {
        "chat/completions" => Route::Chat,
        "completions" => Route::Completions,
        "embeddings" => Route::Embeddings,
        "models" => Route::ModelList,
        "responses" => Route::Responses,
        other => match (
            other.strip_prefix("models/"),
            other.strip_prefix("responses/"),
        ) {
            (Some(id), _) if !id.is_empty() && !id.contains('/') => Route::Model(id),
            (_, Some(rest)) => match rest.split_once('/').unwrap_or((rest, "")) {
                (id, tail @ ("" | "input_items" | "cancel")) if !id.is_empty() => {
                    Route::Response(id, tail)
                }
                _ => Route::Unknown,
            },
            _ => Route::Unknown,
        },
    };
    (r, deployment)
}

/// Answer one request. `rand01` is a uniform draw from `0.0..1.0` (used by [`FailMode::Rate`]).
///
/// Faults, strongest first: the `x-mock-status` / `x-mock-latency-ms` / `x-mock-retry-after` headers,
/// then the labs' `simulation` object in the first message's content (region entry, else `default`),
/// then the config (`fail_status` with `fail`). The delay is `latency_ms` plus the header or
/// simulation wait. Every request is counted in `shared`, failed or not.
///
/// [`FailMode::Rate`]: crate::config::FailMode::Rate
pub fn handle(
    opts: &MockOptions,
    shared: &MockShared,
    req: &MockRequest<'_>,
    rand01: f64,
) -> MockReply {
    let (route, deployment) = route(req.path);
    let seq = shared.begin(route.op(), req);
    let hdr = faults::HeaderFaults::parse(req.headers);
    let body: Option<Result<Value, ()>> =
        (route.takes_body() && req.method == b"POST").then(|| {
            serde_json::from_slice::<Value>(req.body)
                .ok()
                .filter(Value::is_object)
                .ok_or(())
        });
    let parsed = body.as_ref().and_then(|b| b.as_ref().ok());
    let sim = parsed.and_then(|v| faults::simulation(v, &opts.region));
    let retry_secs = hdr.retry_after_secs.unwrap_or(opts.retry_after_secs);
    let delay_ms = opts
        .latency_ms
        .saturating_add(hdr.latency_ms.or(sim.map(|s| s.wait_ms)).unwrap_or(0));

    let bad_json = hdr.status.is_none() && matches!(body, Some(Err(())));
    let forced = hdr
        .status
        .or(sim.map(|s| s.status))
        .or_else(|| faults::config_status(opts, seq, rand01));
    let answer = match forced {
        _ if bad_json => Answer::json(400, faults::invalid_request(BAD_JSON, None)),
        Some(s) if s >= 400 => Answer::json(s, faults::error_body(s, retry_secs)),
        other => {
            let model = parsed
                .and_then(|v| v.get("model"))
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .or(deployment)
                .unwrap_or(DEFAULT_MODEL);
            let mut a = dispatch(opts, shared, seq, req, route, model, parsed);
            if let Some(s) = other.filter(|_| a.status == 200) {
                a.status = s;
            }
            a
        }
    };

    let used = shared.finish(answer.status, answer.tokens);
    let content_type = match answer.body {
        MockBody::Full(_) => "application/json",
        MockBody::Sse { .. } => "text/event-stream",
    };
    let remaining_requests = if answer.status == 429 {
        0
    } else {
        LIMIT_REQUESTS - 1 - (seq - 1) % LIMIT_REQUESTS
    };
    let mut headers = vec![
        ("content-type", content_type.to_owned()),
        ("x-ms-region", opts.region.clone()),
        ("x-request-id", format!("mock-{seq}")),
        ("x-ratelimit-limit-requests", LIMIT_REQUESTS.to_string()),
        ("x-ratelimit-limit-tokens", LIMIT_TOKENS.to_string()),
        (
            "x-ratelimit-remaining-requests",
            remaining_requests.to_string(),
        ),
        (
            "x-ratelimit-remaining-tokens",
            (LIMIT_TOKENS - used % LIMIT_TOKENS).to_string(),
        ),
    ];
    if let MockBody::Sse { .. } = answer.body {
        headers.push(("cache-control", "no-cache".to_owned()));
    }
    if answer.status == 429 || (answer.status >= 400 && hdr.retry_after_secs.is_some()) {
        headers.push(("Retry-After", retry_secs.to_string()));
        headers.push((
            "retry-after-ms",
            retry_secs.saturating_mul(1000).to_string(),
        ));
    }
    let mut reply = MockReply {
        status: answer.status,
        headers,
        delay_ms,
        body: answer.body,
    };
    compress::apply(&compress::plan(opts.compress, req.headers), &mut reply);
    reply
}

/// The message of the 400 sent for a body that is not a JSON object.
const BAD_JSON: &str =
    "We could not parse the JSON body of your request. The API expects a JSON object.";

/// Serve `route` without faults.
fn dispatch(
    opts: &MockOptions,
    shared: &MockShared,
    seq: u64,
    req: &MockRequest<'_>,
    route: Route<'_>,
    model: &str,
    body: Option<&Value>,
) -> Answer {
    if route != Route::Unknown && !route.allows(req.method) {
        let method = String::from_utf8_lossy(req.method);
        let msg = format!("Method {method} is not allowed on {}", req.path);
        return Answer::json(
            405,
            faults::invalid_request(&msg, Some("method_not_allowed")),
        );
    }
    let empty = Value::Null;
    let ask = text::Ask {
        seq,
        model,
        region: &opts.region,
        chunks: opts.chunks,
        chunk_delay_ms: opts.chunk_delay_ms,
        body: body.unwrap_or(&empty),
    };
    match route {
        Route::Root => Answer::json(
            200,
            Bytes::from_static(br#"{"message":"aigw mock upstream is running"}"#),
        ),
        Route::Chat => text::chat(&ask),
        Route::Completions => text::completion(&ask),
        Route::Embeddings => embed::embeddings(model, ask.body),
        Route::ModelList => {
            let v = serde_json::json!({ "object": "list", "data": [model_object(model)] });
            Answer::json(200, Bytes::from(v.to_string()))
        }
        Route::Model(id) => Answer::json(200, Bytes::from(model_object(id).to_string())),
        Route::Responses => responses::create(&ask, shared),
        Route::Response(id, tail) => responses::object(shared, req.method, id, tail),
        Route::Unknown => {
            let method = String::from_utf8_lossy(req.method);
            let msg = format!("Invalid URL ({method} {})", req.path);
            Answer::json(404, faults::invalid_request(&msg, Some("not_found")))
        }
    }
}

/// One entry of a models list.
fn model_object(id: &str) -> Value {
    serde_json::json!({ "id": id, "object": "model", "created": CREATED, "owned_by": "aigw-mock" })
}
