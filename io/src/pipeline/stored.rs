//! Stored responses (the Responses API): a response lives on the backend that created it, so a
//! request that names one (retrieve, delete, input items, cancel, or a `previous_response_id`
//! continuation) must go there and nowhere else. The shared [`Affinity`] table remembers, per
//! caller, which backend answered each `POST responses`; what it does not know is refused rather
//! than guessed: another backend would answer "not found" at best, and at worst (one backend key
//! shared by every consumer) serve one consumer's stored conversation to another.
//!
//! [`Affinity`]: aigw_core::request::Affinity

use aigw_core::config::PoolId;
use aigw_core::error::GatewayError;
use aigw_core::request::{pick_backend, Affinity, MAX_RESPONSE_ID_BYTES};

use super::RequestCtx;

/// The caller's name in the table: the consumer's, "" on an open gateway.
fn owner<'c>(ctx: &'c RequestCtx<'_>) -> &'c str {
    ctx.rec
        .identity
        .and_then(|i| i.consumer())
        .and_then(|i| ctx.snap.cfg.consumers.get(i))
        .map_or("", |c| c.name.as_str())
}

/// An id as a message may show it: capped and escaped.
fn shown(id: &str) -> String {
    let mut end = id.len().min(MAX_RESPONSE_ID_BYTES);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id[..end].escape_debug().to_string()
}

/// Is the caller anonymous (no consumers configured)? Only then may an unknown id go to the one
/// backend that could hold it: there is no other caller to confuse it with.
fn open(ctx: &RequestCtx<'_>) -> bool {
    ctx.rec.identity.is_some_and(|i| i.consumer().is_none())
}

/// The pool and backend of a request about stored response `id` (it names no model).
///
/// # Errors
/// 404 when the gateway does not know where this caller's response is.
pub(super) fn place_object(
    ctx: &RequestCtx<'_>,
    id: &str,
) -> Result<(PoolId, usize), GatewayError> {
    let cfg = &ctx.snap.cfg;
    let members = || {
        cfg.pools.iter().enumerate().flat_map(|(p, pool)| {
            pool.members
                .iter()
                .map(move |m| (p, m.backend, cfg.backends[m.backend].name.as_str()))
        })
    };
    let bid = match ctx.shard.affinity.lookup(owner(ctx), id) {
        Some(tag) => pick_backend(tag, members().map(|(_, b, n)| (b, n))),
        None if open(ctx) => {
            let mut all = members().map(|(_, b, _)| b);
            let first = all.next();
            first.filter(|f| all.all(|b| b == *f))
        }
        None => None,
    };
    let Some(bid) = bid else {
        return Err(GatewayError::UnknownResponse {
            message: format!(
                "No response with id '{}' was created through this gateway by this caller \
                 (the gateway remembers which backend holds each recent response, in memory)",
                shown(id)
            ),
            previous: false,
        });
    };
    let pool = members()
        .find(|(_, b, _)| *b == bid)
        .map_or(0, |(p, _, _)| p);
    Ok((pool, bid))
}

/// The backend of `pool` that must continue stored response `id` (`previous_response_id`);
/// `None` when any member may (an open gateway's one-member pool, which holds it if anyone does).
///
/// # Errors
/// 400 when the response is unknown for this caller, or held outside the pool.
pub(super) fn place_previous(
    ctx: &RequestCtx<'_>,
    pool: PoolId,
    id: &str,
) -> Result<Option<usize>, GatewayError> {
    let cfg = &ctx.snap.cfg;
    let p = &cfg.pools[pool];
    let names = || {
        p.members
            .iter()
            .map(|m| (m.backend, cfg.backends[m.backend].name.as_str()))
    };
    let refuse = |why: &str| GatewayError::UnknownResponse {
        message: format!("Previous response with id '{}' not found: {why}", shown(id)),
        previous: true,
    };
    match ctx.shard.affinity.lookup(owner(ctx), id) {
        Some(tag) => match pick_backend(tag, names()) {
            Some(b) => Ok(Some(b)),
            None => Err(refuse(&format!(
                "it is held by a backend that does not serve model '{}'",
                ctx.model().escape_debug()
            ))),
        },
        None if open(ctx) && p.members.len() == 1 => Ok(None),
        None => Err(refuse(
            "it was not created through this gateway by this caller, or was forgotten since",
        )),
    }
}

/// Where the stored response a `POST responses` answer creates lives, to remember as soon as its
/// id is seen.
pub(super) struct Learner<'c> {
    affinity: &'c Affinity,
    owner: &'c str,
    backend: &'c str,
}

impl Learner<'_> {
    /// Remember that response `id` lives here, for this caller.
    pub(super) fn learn(&self, id: &str) {
        self.affinity.learn(self.owner, id, self.backend);
    }
}

/// The [`Learner`] of a request whose answer from backend `bid` with `status` creates a stored
/// response: a successful `POST responses`. `respond` uses it while a stream is relayed (its
/// client knows the id from the first event and may retrieve, cancel or continue it before the
/// stream ends), `complete` once the answer is over.
pub(super) fn learner<'c>(ctx: &'c RequestCtx<'_>, bid: usize, status: u16) -> Option<Learner<'c>> {
    let path = ctx.path?;
    let creates = path.operation == "responses" && ctx.req.head.is_method("POST");
    if !creates || !(200..300).contains(&status) {
        return None;
    }
    Some(Learner {
        affinity: &ctx.shard.affinity,
        owner: owner(ctx),
        backend: ctx.snap.cfg.backends.get(bid)?.name.as_str(),
    })
}

/// `complete`'s part: remember where a new stored response lives; forget a deleted one.
pub(super) fn remember(ctx: &RequestCtx<'_>) {
    let (Some(path), Some(bid)) = (ctx.path, ctx.rec.backend) else {
        return;
    };
    if let Some(l) = learner(ctx, bid, ctx.rec.status) {
        if let Some(id) = &ctx.response_id {
            l.learn(id);
        }
    } else if ctx.req.head.is_method("DELETE")
        && (200..300).contains(&ctx.rec.status)
        && path.operation.matches('/').count() == 1
    {
        if let Some(id) = path.response_object() {
            ctx.shard.affinity.forget(owner(ctx), id);
        }
    }
}
