//! Who may call and what they may spend: the key check, then the caller's token bucket and quota,
//! reserved before forwarding and settled against the real usage afterwards.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::inline::InlineStr;
use aigw_core::auth::KeyTable;
use aigw_core::config::{Config, Counter, QuotaConfig, QuotaPeriod};
use aigw_core::error::GatewayError;
use aigw_core::limit::{
    plausible_usage, KeyHasher, Period, Quota, QuotaReservation, Reservation, TokenBucket,
};
use aigw_core::openai::{Tapped, Usage};
use crossbeam_skiplist::SkipMap;

/// Limits of one consumer, shared by every worker.
#[derive(Debug)]
pub struct ConsumerLimits {
    bucket: Option<TokenBucket>,
    quota: Option<Quota>,
    sig: (Option<u64>, Option<QuotaConfig>),
}

/// Every worker's shared view of budgets: consumers by name, other counter keys in a lock-free map.
#[derive(Debug, Default)]
pub struct Limiters {
    // Taken when a worker rebuilds its snapshot after a reload, never per request.
    consumers: Mutex<HashMap<String, Arc<ConsumerLimits>>>,
    /// Buckets of the `ip` and `header:` counters, by [`DynKey`].
    dynamic: SkipMap<DynKey, Arc<TokenBucket>>,
    /// Hashes counter values into keys under this process's random key.
    keys: KeyHasher,
}

/// A dynamic bucket's key: its tokens per minute (a reload that changes the limit starts fresh
/// buckets; the old ones fill up unused and are pruned), the counter key, and whether this is the
/// shared overflow bucket of that limit.
type DynKey = (u64, u64, bool);

/// Counter keys tracked at most: past this, callers with a new key share one overflow bucket per
/// limit until pruning makes room, so a flood of fresh addresses or header values costs a bounded
/// amount of memory (about 100 bytes a key) and limits itself.
const MAX_DYNAMIC_KEYS: usize = 1 << 18;

/// How often the pruning thread drops full buckets.
const PRUNE_EVERY: Duration = Duration::from_secs(5);

impl Limiters {
    /// The limits of `cfg`'s consumers by index; a consumer whose limits did not change keeps its
    /// spent budget across reloads.
    pub fn resolve(&self, cfg: &Config) -> Vec<Arc<ConsumerLimits>> {
        let mut map = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        let default_tpm = cfg
            .token_limit
            .as_ref()
            .filter(|t| t.counter == Counter::Consumer)
            .map(|t| t.tokens_per_minute);
        cfg.consumers
            .iter()
            .map(|c| {
                let sig = (c.tokens_per_minute.or(default_tpm), c.quota);
                match map.get(&c.name) {
                    Some(l) if l.sig == sig => l.clone(),
                    _ => {
                        let l = Arc::new(ConsumerLimits {
                            bucket: sig.0.map(TokenBucket::new),
                            quota: sig.1.map(|q| Quota::new(period(q.period), q.tokens)),
                            sig,
                        });
                        map.insert(c.name.clone(), l.clone());
                        l
                    }
                }
            })
            .collect()
    }

    /// The shared bucket for a non-consumer counter key at `tpm` tokens per minute. Never prunes
    /// (that is [`prune`](Self::prune)'s job, off the request path).
    fn dynamic(&self, key: u64, tpm: u64) -> Arc<TokenBucket> {
        let own = (tpm, key, false);
        if let Some(e) = self.dynamic.get(&own) {
            return e.value().clone();
        }
        // Soft cap: racing inserts can pass it by at most one key per worker.
        let k = if self.dynamic.len() >= MAX_DYNAMIC_KEYS {
            (tpm, 0, true)
        } else {
            own
        };
        // Get-or-insert in one step: two first requests of one key racing here share one bucket.
        self.dynamic
            .get_or_insert_with(k, || Arc::new(TokenBucket::new(tpm)))
            .value()
            .clone()
    }

    /// The counter key of a caller that no consumer bucket covers.
    fn counter_key(&self, counter: &Counter, caller: &Caller<'_>) -> u64 {
        match counter {
            Counter::Header(h) => {
                let value = aigw_core::http1::find_header(caller.headers, h);
                self.keys.header(value.map(|v| &v[..]))
            }
            // A caller without a consumer is counted by its address.
            Counter::Ip | Counter::Consumer => self.keys.ip(caller.ip),
        }
    }
}

impl Limiters {
    /// Forget counter keys whose bucket is full again (a fresh bucket behaves the same); returns
    /// how many were dropped. Runs on the pruning thread, never on the request path. A request that
    /// fetched a bucket just before it was dropped still draws from it, so a key can be granted at
    /// most one extra request's worth at the moment its idle bucket goes.
    pub fn prune(&self, now_ns: u64) -> usize {
        let mut dropped = 0;
        for e in self.dynamic.iter() {
            if e.value().remaining(now_ns) >= e.value().limit() && e.remove() {
                dropped += 1;
            }
        }
        dropped
    }

    /// Counter keys currently tracked.
    pub fn dynamic_keys(&self) -> usize {
        self.dynamic.len()
    }
}

/// Start the thread that prunes `limiters`' idle counter keys every few seconds; it ends once the
/// limiters are gone.
///
/// # Errors
/// The thread cannot be spawned.
pub fn start_pruner(limiters: Weak<Limiters>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("aigw-limits".into())
        .spawn(move || loop {
            std::thread::sleep(PRUNE_EVERY);
            let Some(l) = limiters.upgrade() else { return };
            l.prune(clock_ns());
        })
        .map(drop)
}

/// The buckets' monotonic clock in nanoseconds (the same reading the request path uses).
fn clock_ns() -> u64 {
    crate::health::now_ms().saturating_mul(1_000_000)
}

fn period(p: QuotaPeriod) -> Period {
    match p {
        QuotaPeriod::Hour => Period::Hour,
        QuotaPeriod::Day => Period::Day,
        QuotaPeriod::Week => Period::Week,
        QuotaPeriod::Month => Period::Month,
        QuotaPeriod::Year => Period::Year,
    }
}

/// The per-snapshot part: the key table and consumer limits of one config.
pub struct Policy {
    /// Consumers' keys, hashed.
    pub(crate) keys: KeyTable,
    consumers: Vec<Arc<ConsumerLimits>>,
}

impl Policy {
    /// Build for `cfg`.
    pub fn new(cfg: &Config, limiters: &Limiters) -> Self {
        Policy {
            keys: KeyTable::new(&cfg.consumers),
            consumers: limiters.resolve(cfg),
        }
    }
}

/// Which bucket a request draws from.
enum Bucket {
    Consumer(Arc<ConsumerLimits>),
    Dynamic(Arc<TokenBucket>),
}

impl Bucket {
    fn get(&self) -> Option<&TokenBucket> {
        match self {
            Bucket::Consumer(c) => c.bucket.as_ref(),
            Bucket::Dynamic(b) => Some(b),
        }
    }
}

/// An admitted request's claims, settled once its usage is known.
pub struct Admission {
    /// The consumer's index in the config, when keys are configured.
    pub consumer: Option<usize>,
    /// Tokens reserved up front (prompt estimate plus the client's completion cap).
    pub estimate: u64,
    /// The prompt estimate, once computed (at most once per request: see `prompt_estimate`).
    prompt: Option<u64>,
    /// The bucket drawn from, and the reservation until it is settled (the bucket is kept after,
    /// for the rate headers of the answer).
    bucket: Option<(Bucket, Option<Reservation>)>,
    /// The quota drawn from, and the reservation until it is settled.
    quota: Option<(Arc<ConsumerLimits>, Option<QuotaReservation>)>,
}

/// What a request brings to admission.
pub struct Caller<'a> {
    /// Request headers.
    pub headers: &'a [aigw_core::http1::Header],
    /// The model asked for.
    pub model: &'a str,
    /// The body (for the prompt estimate).
    pub body: &'a [u8],
    /// The completion cap the client set.
    pub max_tokens: Option<u64>,
    /// Choices asked for (`n`, default 1).
    pub choices: u64,
    /// The client's address.
    pub ip: IpAddr,
}

/// Reserve the request's estimate from its consumer's (or counter key's) bucket and quota.
/// `now_ns` is the buckets' monotonic clock, `now_unix` the quota windows' wall clock.
///
/// # Errors
/// 429 when the bucket has no room, 403 when the quota is spent, 400 when `max_tokens × n` plus
/// the prompt estimate overflows a u64.
pub fn reserve(
    cfg: &Config,
    policy: &Policy,
    limiters: &Limiters,
    consumer: Option<usize>,
    caller: &Caller<'_>,
    now_ns: u64,
    now_unix: u64,
) -> Result<Admission, Refusal> {
    // The completion cap counts once per choice asked for. A product past u64 cannot be reserved
    // truthfully: it is refused as the client's error (not as "try again later"), before any
    // bucket is looked up or created.
    let completion_cap = caller
        .max_tokens
        .unwrap_or(0)
        .checked_mul(caller.choices.max(1))
        .ok_or_else(too_many_tokens)?;
    let limits = consumer.and_then(|i| policy.consumers.get(i)).cloned();
    let bucket = match (&limits, &cfg.token_limit) {
        (Some(l), _) if l.bucket.is_some() => Some(Bucket::Consumer(l.clone())),
        (_, Some(t)) => {
            let key = limiters.counter_key(&t.counter, caller);
            Some(Bucket::Dynamic(limiters.dynamic(key, t.tokens_per_minute)))
        }
        _ => None,
    };
    let quota = limits.filter(|l| l.quota.is_some());
    let mut adm = Admission {
        consumer,
        estimate: 0,
        prompt: None,
        bucket: None,
        quota: None,
    };
    if bucket.is_none() && quota.is_none() {
        return Ok(adm);
    }
    let estimate_prompt = cfg
        .token_limit
        .as_ref()
        .is_none_or(|t| t.estimate_prompt_tokens);
    adm.estimate = completion_cap
        .checked_add(if estimate_prompt {
            adm.prompt_estimate(caller.model, caller.body)
        } else {
            0
        })
        .ok_or_else(too_many_tokens)?;
    if let Some(b) = bucket {
        if let Some(tb) = b.get() {
            match tb.try_reserve(adm.estimate, now_ns) {
                Ok(r) => adm.bucket = Some((b, Some(r))),
                Err(d) => {
                    // A request bigger than the whole bucket never fits, however long the client
                    // waits: a 400 that says so, not a 429 whose Retry-After would fail again
                    // (and that SDKs retry on their own).
                    let error = if d.too_large {
                        GatewayError::TooLargeForLimit {
                            requested: adm.estimate,
                            limit: tb.limit(),
                        }
                    } else {
                        GatewayError::RateLimited {
                            retry_after_ms: d.retry_after_ns.div_ceil(1_000_000).max(1),
                        }
                    };
                    return Err(Refusal {
                        error,
                        rate: Some(Box::new(bucket_headers(tb, now_ns))),
                        reason: Some("tokens_per_minute"),
                        quota_left: quota
                            .as_ref()
                            .and_then(|l| l.quota.as_ref())
                            .map(|q| q.remaining(now_unix)),
                    });
                }
            }
        }
    }
    if let Some(l) = quota {
        if let Some(q) = &l.quota {
            match q.try_reserve(adm.estimate, now_unix) {
                Ok(r) => adm.quota = Some((l.clone(), Some(r))),
                Err(d) => {
                    // Hand the bucket reservation back, then report the bucket as it now stands.
                    let mut rate = None;
                    if let Some((b, Some(r))) = adm.bucket.take() {
                        if let Some(tb) = b.get() {
                            tb.settle(r, 0, now_ns);
                            rate = Some(Box::new(bucket_headers(tb, now_ns)));
                        }
                    }
                    let error = if d.too_large {
                        GatewayError::QuotaExceeded {
                            message: format!(
                                "Token quota is exceeded: this request needs an estimated {} tokens, more than the whole quota of {} tokens: it can never be admitted.",
                                adm.estimate,
                                q.limit()
                            ),
                            retry_after_secs: None,
                        }
                    } else {
                        let secs = d.resets_at_unix_secs.saturating_sub(now_unix).max(1);
                        GatewayError::QuotaExceeded {
                            message: format!(
                                "Token quota is exceeded. Try again in {}.",
                                in_words(secs)
                            ),
                            retry_after_secs: Some(secs),
                        }
                    };
                    return Err(Refusal {
                        error,
                        reason: Some("quota"),
                        rate,
                        quota_left: Some(q.remaining(now_unix)),
                    });
                }
            }
        }
    }
    Ok(adm)
}

/// The refusal of a request whose `max_tokens × n` (plus the prompt) does not fit in 64 bits.
fn too_many_tokens() -> Refusal {
    Refusal {
        error: GatewayError::BadRequest(
            "max_tokens × n (plus the prompt) is too large to count: it overflows 64 bits. \
             Lower max_tokens or n."
                .into(),
        ),
        rate: None,
        reason: None,
        quota_left: None,
    }
}

/// APIM's wording of a wait: `21 minutes and 33 seconds`, `1 hour and 2 minutes`, `5 seconds`.
pub fn in_words(secs: u64) -> String {
    let unit = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts: Vec<String> = [(d, "day"), (h, "hour"), (m, "minute"), (s, "second")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| unit(*n, u))
        .take(2)
        .collect();
    match parts.as_slice() {
        [] => unit(0, "second"),
        [a] => a.clone(),
        [a, b, ..] => format!("{a} and {b}"),
    }
}

/// The header that tells a caller with a quota what is left of it (an estimate while requests
/// are in flight), on every answer.
pub const QUOTA_HEADER: &str = "x-ratelimit-remaining-quota-tokens";

impl Admission {
    /// Settle the reservations against the real total (0 when the upstream answered an error).
    /// A total reported past [`aigw_core::limit::MAX_REQUEST_TOKENS`] is not believable and is
    /// charged at that ceiling. Only the first call settles; later ones do nothing, and the
    /// buckets stay known for [`rate_headers`](Self::rate_headers) and
    /// [`quota_left`](Self::quota_left).
    pub fn settle(&mut self, actual: u64, now_ns: u64) {
        let actual = plausible_usage(actual, self.estimate);
        if let Some((b, r)) = self.bucket.as_mut() {
            if let (Some(tb), Some(r)) = (b.get(), r.take()) {
                tb.settle(r, actual, now_ns);
            }
        }
        if let Some((l, r)) = self.quota.as_mut() {
            if let (Some(q), Some(r)) = (&l.quota, r.take()) {
                q.settle(r, actual);
            }
        }
    }

    /// Whether the caller has a bucket or a quota (whose headers the answer carries).
    pub fn is_limited(&self) -> bool {
        self.bucket.is_some() || self.quota.is_some()
    }

    /// `x-ratelimit-{limit,remaining,reset}-tokens` for the caller's bucket, if it has one.
    pub fn rate_headers(&self, now_ns: u64) -> Option<RateHeaders> {
        let (b, _) = self.bucket.as_ref()?;
        Some(bucket_headers(b.get()?, now_ns))
    }
}

impl Admission {
    /// What is left of the caller's quota now, when it has one.
    pub fn quota_left(&self, now_unix: u64) -> Option<u64> {
        let (l, _) = self.quota.as_ref()?;
        Some(l.quota.as_ref()?.remaining(now_unix))
    }

    /// The prompt estimate of the request (`model`, `body`), computed on first use and kept: the
    /// reservation and the settlement share one walk of the body.
    pub fn prompt_estimate(&mut self, model: &str, body: &[u8]) -> u64 {
        *self
            .prompt
            .get_or_insert_with(|| aigw_core::tokens::estimate_prompt(model, body) as u64)
    }

    /// What a 2xx answer is charged (and recorded with): the usage the backend reported; else the
    /// prompt estimate plus the counted reply; and at least the reservation when the tap could not
    /// decode the body (an unknown or corrupt `Content-Encoding`, or past the decoding cap), so an
    /// unreadable answer never settles below what was admitted. Logs a warning for those.
    pub fn usage_of(&mut self, tapped: &Tapped, model: &str, body: &[u8]) -> Usage {
        if let (None, Some(why)) = (tapped.usage, tapped.undecoded) {
            tracing::warn!(
                reason = why.as_str(),
                reserved = self.estimate,
                "answer body could not be decoded to read its usage; charging at least the reservation"
            );
        }
        let reserved = self.estimate;
        tapped.charge(model, || self.prompt_estimate(model, body), reserved)
    }
}

/// `x-ratelimit-{limit,remaining,reset}-tokens` of one bucket, formatted inline (a `u64` is
/// at most 20 digits; the longest duration, `{u64 minutes}m59s`, fits too).
pub type RateHeaders = [(&'static str, HeaderNum); 3];

/// One rate-limit header value.
pub type HeaderNum = InlineStr<24>;

/// A request refused by a limit, with the caller's bucket state for the response headers.
#[derive(Debug)]
pub struct Refusal {
    /// The answer.
    pub error: GatewayError,
    /// The caller's bucket as it stands, when it has one (boxed: refusals are the rare path).
    pub rate: Option<Box<RateHeaders>>,
    /// Which limit refused (`tokens_per_minute`, `quota`), for the rejection metric; `None` when
    /// the request's own numbers do not add up.
    pub reason: Option<&'static str>,
    /// What is left of the caller's quota, when it has one.
    pub quota_left: Option<u64>,
}

fn bucket_headers(tb: &TokenBucket, now_ns: u64) -> RateHeaders {
    [
        (
            "x-ratelimit-limit-tokens",
            HeaderNum::format(format_args!("{}", tb.limit())),
        ),
        (
            "x-ratelimit-remaining-tokens",
            HeaderNum::format(format_args!("{}", tb.remaining(now_ns))),
        ),
        (
            "x-ratelimit-reset-tokens",
            openai_duration(tb.reset_after_ns(now_ns)),
        ),
    ]
}

/// OpenAI's duration style: `20ms`, `1s`, `6m0s`.
pub fn openai_duration(ns: u64) -> HeaderNum {
    let ms = ns.div_ceil(1_000_000);
    if ms < 1000 {
        return HeaderNum::format(format_args!("{ms}ms"));
    }
    let s = ms.div_ceil(1000);
    if s < 60 {
        HeaderNum::format(format_args!("{s}s"))
    } else {
        HeaderNum::format(format_args!("{}m{}s", s / 60, s % 60))
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
