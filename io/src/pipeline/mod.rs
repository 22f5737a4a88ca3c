//! The gateway's request path as named phases over one [`RequestCtx`], statically dispatched:
//!
//! `on_head` (identity, before the body is read) → `on_body` (what the body asks, validated) →
//! `route` (pool and model permission) → `short_circuit` (answers that need no backend) →
//! `cache` (the semantic cache's lookup: a hit is answered here, see [`crate::cache`]) → `admit`
//! (token limits and quotas) → `upstream_request` (per attempt, in `forward`) → `response_head` →
//! `response_body` (relay with the usage tap) → `complete` (settle, count, log).
//!
//! A request for a `[routes.NAME]` prefix is identified on its head the same way, then leaves
//! the LLM phases: `relay_route` forwards it to the route's backend and relays the answer, and
//! `complete` counts and logs it (nothing to settle).
//!
//! Every phase but the forwarding and relaying ones is synchronous: decisions never await. A
//! phase that refuses returns a [`GatewayError`], answered at the edge in one OpenAI shape.

mod admit;
mod complete;
mod ctx;
mod forward;
mod identity;
mod inspect;
mod relay_route;
mod respond;
mod short_circuit;
mod stored;

use std::net::SocketAddr;
use std::rc::Rc;

use aigw_core::error::GatewayError;
use aigw_core::http1::RequestHead;

pub use ctx::RequestCtx;
pub(crate) use forward::watched;

/// `admit`, for a cache hit that is charged (`charge_hits`).
///
/// # Errors
/// The limit's refusal.
pub(crate) fn admit(ctx: &mut RequestCtx<'_>) -> Result<(), GatewayError> {
    admit::run(ctx)
}
use identity::HeadOutcome;

use crate::cache::Lookup;
use crate::conn::Conn;
use crate::metrics::WorkerMetrics;
use crate::peer::ClientIo;
use crate::server::{BodyBudget, HeadVerdict, Request, ServerLimits, Service};
use crate::shard::{Shard, Snapshot};

/// The client-facing service of one worker.
pub struct Gateway {
    /// The worker's state.
    pub shard: Rc<Shard>,
    budget: Rc<BodyBudget>,
}

impl Gateway {
    /// The gateway service over `shard`.
    pub fn new(shard: Rc<Shard>) -> Self {
        let max = shard.snapshot().cfg.gateway.max_buffered_body_bytes;
        Gateway {
            shard,
            budget: BodyBudget::new(max),
        }
    }
}

/// What `on_head` decided, carried to the rest of the path.
pub struct Pre {
    snap: Rc<Snapshot>,
    outcome: HeadOutcome,
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a WorkerMetrics);

impl<'a> InFlight<'a> {
    fn new(m: &'a WorkerMetrics) -> Self {
        WorkerMetrics::gauge_add(&m.in_flight, 1);
        InFlight(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        WorkerMetrics::gauge_add(&self.0.in_flight, -1);
    }
}

impl Service for Gateway {
    type Pre = Pre;

    fn limits(&self) -> ServerLimits {
        let snap = self.shard.snapshot();
        let g = &snap.cfg.gateway;
        ServerLimits {
            head: aigw_core::http1::HeadLimits {
                max_head_bytes: g.max_head_bytes,
                max_headers: g.max_headers,
            },
            max_body: g.max_body_bytes,
            idle: g.idle_timeout,
            header: g.header_timeout,
        }
    }

    fn draining(&self) -> bool {
        self.shard.shutdown.is_draining()
    }

    fn on_head(&self, head: &RequestHead, _peer: SocketAddr) -> HeadVerdict<Pre> {
        let snap = self.shard.snapshot();
        self.budget
            .set_max(snap.cfg.gateway.max_buffered_body_bytes);
        let outcome = identity::on_head(&snap, head);
        let read = matches!(outcome, HeadOutcome::Proceed(_));
        let pre = Pre { snap, outcome };
        if read {
            HeadVerdict::Read(pre)
        } else {
            HeadVerdict::Answer(pre)
        }
    }

    fn body_budget(&self) -> Option<&Rc<BodyBudget>> {
        Some(&self.budget)
    }

    fn request_id(&self) -> Option<String> {
        Some(self.shard.next_request_id().to_string())
    }

    async fn call<S: ClientIo>(&self, pre: Pre, req: Request, conn: &mut Conn<S>) -> bool {
        let shard = &self.shard;
        let _guard = InFlight::new(&shard.metrics.shared);
        let mut ctx = RequestCtx::new(&pre.snap, &req, shard);
        ctx.budget = Some(self.budget.clone());
        let keep = match run(&mut ctx, pre.outcome, conn).await {
            Ok(keep) => keep,
            Err(e @ GatewayError::ClientClosed) => {
                ctx.refused(&e);
                false
            }
            Err(e) => {
                ctx.refused(&e);
                respond::send_refusal(conn, &ctx, &e).await;
                true
            }
        };
        complete::finish(&mut ctx);
        keep
    }
}

/// The phases in order; `Ok(keep)` says whether the client connection may carry another request.
async fn run<S: ClientIo>(
    ctx: &mut RequestCtx<'_>,
    outcome: HeadOutcome,
    conn: &mut Conn<S>,
) -> Result<bool, GatewayError> {
    let identity = match outcome {
        HeadOutcome::Proceed(id) => id,
        HeadOutcome::Status => return Ok(short_circuit::status(ctx, conn).await),
        HeadOutcome::Refuse(e) => return Err(e),
        HeadOutcome::RefuseKnown(id, e) => {
            ctx.rec.identity = Some(id);
            return Err(e);
        }
    };
    ctx.rec.identity = Some(identity);
    if ctx.route.is_some() {
        return relay_route::run(ctx, conn).await;
    }
    inspect::on_body(ctx)?;
    inspect::route(ctx)?;
    match short_circuit::decide(ctx)? {
        short_circuit::Plan::Forward => {}
        short_circuit::Plan::Models => return Ok(short_circuit::models(ctx, conn).await),
    }
    match crate::cache::lookup::run(ctx, conn).await {
        Lookup::Off => {}
        Lookup::ClientGone => return Err(GatewayError::ClientClosed),
        Lookup::Refused(e) => return Err(e),
        Lookup::Hit(served) => match crate::cache::serve::render(&served) {
            Some(out) => {
                ctx.rec.cache = Some(served.header);
                return crate::cache::serve::hit(ctx, served, out, conn).await;
            }
            None => ctx.cache_header = Some("miss"),
        },
        Lookup::Forward { header, plan } => {
            ctx.cache_header = Some(header);
            ctx.cache_plan = plan;
        }
    }
    ctx.rec.cache = ctx.cache_header;
    admit::run(ctx)?;
    let won = forward::run(ctx, conn).await?;
    Ok(respond::run(ctx, won, conn).await)
}
