//! The state one request carries through the phases.

use std::borrow::Cow;
use std::time::Duration;

use aigw_core::config::{PoolId, RouteId};
use aigw_core::error::GatewayError;
use aigw_core::openai::{classify, ApiPath};
use aigw_core::request::{match_route, Inspected};

use crate::admission::{Admission, RateHeaders};
use crate::failover::{Tried, Won};
use crate::record::{Record, RequestId};
use crate::server::Request;
use crate::shard::{Shard, Snapshot};

/// One request on its way through the phases: the config snapshot it started with, what each
/// phase learnt, and the record that `complete` counts and logs.
pub struct RequestCtx<'r> {
    /// The config the request started with (a reload never changes a request in flight).
    pub snap: &'r Snapshot,
    /// The worker.
    pub shard: &'r Shard,
    /// The request.
    pub req: &'r Request,
    /// The classified path (`on_head` refused the request if it had none, or it is a route's).
    pub path: Option<ApiPath<'r>>,
    /// The `[routes.NAME]` the path belongs to, when it is not an LLM call.
    pub route: Option<RouteId>,
    /// What the body asks for (`on_body`).
    pub body: Option<Inspected<'r>>,
    /// The pool serving it (`route`).
    pub pool: Option<PoolId>,
    /// The one backend of the pool that may serve it (it holds the stored response the request
    /// names), when `route` pinned one.
    pub pin: Option<usize>,
    /// The id of the stored response the answer created (a Responses API `POST responses`).
    pub response_id: Option<String>,
    /// Its token reservations (`admit`), settled by `respond` (before the head, when the charge is
    /// known by then) or `complete`.
    pub admission: Option<Admission>,
    /// The caller's rate-limit headers, as admission left them (or, once `respond` settled the
    /// answer before its head, as that left them).
    pub rate: Option<RateHeaders>,
    /// What is left of the caller's quota, when it has one (`x-ratelimit-remaining-quota-tokens`).
    pub quota_left: Option<u64>,
    /// What is known so far, for metrics and logs.
    pub rec: Record<'r>,
    /// The worker's budget for buffered bodies (an answer read whole takes its share).
    pub budget: Option<std::rc::Rc<crate::server::BodyBudget>>,
    /// The `x-aigw-cache` value of a forwarded answer (the semantic cache's lookup).
    pub cache_header: Option<&'static str>,
    /// What to store once the answer is complete.
    pub cache_plan: Option<crate::cache::StorePlan>,
}

impl<'r> RequestCtx<'r> {
    /// A context for `req` under `snap`.
    pub fn new(snap: &'r Snapshot, req: &'r Request, shard: &'r Shard) -> Self {
        let target = std::str::from_utf8(&req.head.target).unwrap_or("");
        let routes = &snap.cfg.routes;
        let route = match_route(routes, req.head.path());
        let path = if route.is_some() {
            None
        } else {
            classify(target).ok()
        };
        let operation = match (route, path) {
            (Some(id), _) => Cow::Owned(format!("route:{}", routes[id].name)),
            (None, Some(p)) => Cow::Borrowed(p.operation),
            (None, None) => Cow::Borrowed(""),
        };
        let rec = Record {
            request_id: request_id(req, shard),
            operation,
            route,
            ..Record::default()
        };
        RequestCtx {
            snap,
            shard,
            req,
            path,
            route,
            body: None,
            pool: None,
            pin: None,
            response_id: None,
            admission: None,
            rate: None,
            quota_left: None,
            rec,
            budget: None,
            cache_header: None,
            cache_plan: None,
        }
    }

    /// The model asked for ("" before `on_body`).
    pub fn model(&self) -> &str {
        self.body.as_ref().map_or("", |b| &b.model)
    }

    /// Note a refusal in the record. It costs nothing: the reservations are handed back, and the
    /// answer's rate-limit headers show the buckets after that.
    pub fn refused(&mut self, e: &GatewayError) {
        self.rec.status = e.status();
        self.settle(0);
    }

    /// Settle the reservations on `total` tokens now (only the first settlement counts) and take
    /// the rate-limit headers from the buckets as they then stand.
    pub fn settle(&mut self, total: u64) {
        let Some(adm) = self.admission.as_mut().filter(|a| a.is_limited()) else {
            return;
        };
        let now = crate::health::now_ms().saturating_mul(1_000_000);
        adm.settle(total, now);
        self.rate = adm.rate_headers(now);
        self.quota_left = adm.quota_left(crate::health::unix_secs());
    }

    /// Add time spent waiting on upstreams.
    pub fn waited(&mut self, d: Duration) {
        self.rec.upstream_wait += d;
    }

    /// Note the attempts made at backends (`wait` spent waiting on them), answered or not.
    pub fn attempted(&mut self, wait: Duration, tried: Tried) {
        self.waited(wait);
        self.rec.backend = tried.backend;
        self.rec.attempts = tried.attempts;
    }

    /// Note the backend response about to be relayed.
    pub fn answered(&mut self, won: &Won) {
        self.rec.backend = Some(won.backend);
        self.rec.attempts = won.attempts;
        self.rec.status = won.resp.status;
        self.rec.region = won.resp.header("x-ms-region").cloned();
    }
}

/// Longest client-chosen request id kept; a longer or odd one is replaced by ours.
const MAX_REQUEST_ID: usize = 200;

/// The client's `x-request-id` when it is short visible ASCII, else a fresh one.
fn request_id(req: &Request, shard: &Shard) -> RequestId {
    match req.head.header("x-request-id") {
        Some(v)
            if !v.is_empty()
                && v.len() <= MAX_REQUEST_ID
                && v.iter().all(|&b| (0x21..=0x7e).contains(&b)) =>
        {
            // Visible ASCII is UTF-8, and at most MAX_REQUEST_ID bytes fit a `RequestId`.
            let id = std::str::from_utf8(v).ok().and_then(RequestId::copy_of);
            id.unwrap_or_else(|| shard.next_request_id())
        }
        _ => shard.next_request_id(),
    }
}
