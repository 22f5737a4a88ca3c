//! The gateway service: classify the path, check the caller, peek the body, reserve tokens, pick
//! a backend (with failover), relay the answer while tapping its usage, then settle and record.

use std::rc::Rc;
use std::time::{Duration, Instant};

use aigw_core::error::GatewayError;
use aigw_core::http1::BodyFraming;
use aigw_core::openai::{classify, multipart_field, peek, UsageTap};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::admission::{authenticate, reserve, Caller};
use crate::conn::Conn;
use crate::failover::{attempt, client_head, Ask};
use crate::health::{now_ms, unix_secs};
use crate::metrics::WorkerMetrics;
use crate::record::{finish, Record};
use crate::relay::{relay_body, RelayEnd, RelayMode};
use crate::server::{send_error_with, send_response, Request, ServerLimits, Service};
use crate::shard::{Shard, Snapshot};

/// Largest JSON response the usage tap buffers to find `usage` (bigger ones are relayed untouched).
const TAP_MAX_JSON: usize = 4 * 1024 * 1024;
/// Most reply text kept for counting and the message store.
const TAP_MAX_TEXT: usize = 1024 * 1024;

/// The client-facing service of one worker.
pub struct Gateway {
    /// The worker's state.
    pub shard: Rc<Shard>,
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

/// The buckets' monotonic clock in nanoseconds.
fn now_ns() -> u64 {
    now_ms().saturating_mul(1_000_000)
}

impl Service for Gateway {
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

    async fn call<S: AsyncReadRent + AsyncWriteRent>(
        &self,
        req: Request,
        conn: &mut Conn<S>,
    ) -> bool {
        let shard = &self.shard;
        let _guard = InFlight::new(&shard.metrics.shared);
        let snap = shard.snapshot();
        let mut rec = Record {
            request_id: match req.head.header("x-request-id") {
                Some(v) if !v.is_empty() && v.len() <= 200 => {
                    String::from_utf8_lossy(v).into_owned()
                }
                _ => shard.next_request_id(),
            },
            ..Record::default()
        };
        let keep = match self.handle(&snap, &req, conn, &mut rec).await {
            Ok(keep) => keep,
            Err(e) => {
                rec.status = e.status();
                // A refusal by a limit still tells the caller where its bucket stands.
                let mut headers = vec![("x-request-id", rec.request_id.as_str())];
                headers.extend(rec.rate.iter().flatten().map(|(k, v)| (*k, v.as_str())));
                send_error_with(conn, &e, false, &headers).await;
                true
            }
        };
        finish(shard, &snap, &rec, req.peer, req.started, &req);
        keep
    }
}

impl Gateway {
    /// Route and forward one request, filling `rec` as facts become known.
    async fn handle<S: AsyncReadRent + AsyncWriteRent>(
        &self,
        snap: &Snapshot,
        req: &Request,
        conn: &mut Conn<S>,
        rec: &mut Record,
    ) -> Result<bool, GatewayError> {
        let cfg = &snap.cfg;
        let target = std::str::from_utf8(&req.head.target).unwrap_or("");
        let path = match classify(target) {
            Ok(p) => p,
            Err(_) if req.head.path() == "/status-0123456789abcdef" => {
                rec.status = 200;
                return Ok(send_response(
                    conn,
                    200,
                    &[],
                    "application/json",
                    b"{\"status\":\"ok\"}",
                )
                .await);
            }
            Err(e) => return Err(GatewayError::NotFound(e.to_string())),
        };
        rec.operation = path.operation.to_string();
        let query = path.query;
        if path.is_models_list() {
            rec.consumer = authenticate(cfg, &snap.policy, &req.head.headers, query, None)?;
            if !req.head.is_method("GET") {
                return Err(GatewayError::MethodNotAllowed);
            }
            rec.status = 200;
            return Ok(send_response(conn, 200, &[], "application/json", &snap.models_json).await);
        }
        let peeked = peek(&req.body).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        // Multipart calls (audio transcriptions, image edits) carry the model as a form field.
        let form_model = match (&peeked.model, req.head.header("content-type")) {
            (None, Some(ct)) => multipart_field(&req.body, ct, "model"),
            _ => None,
        };
        let model: &str = path
            .deployment
            .or(peeked.model.as_deref())
            .or(form_model)
            .unwrap_or("");
        rec.model = model.to_string();
        rec.stream = peeked.stream;
        // The key is checked before the model is resolved: an unauthenticated caller learns nothing
        // about the configured models.
        rec.consumer = authenticate(cfg, &snap.policy, &req.head.headers, query, Some(model))?;
        let pool_id = cfg
            .models
            .resolve(model)
            .ok_or_else(|| GatewayError::UnknownModel(model.to_string()))?;
        let caller = Caller {
            headers: &req.head.headers,
            model,
            body: &req.body,
            max_tokens: peeked.max_tokens,
            choices: peeked.n.unwrap_or(1),
            ip: req.peer.ip(),
        };
        let mut adm = reserve(
            cfg,
            &snap.policy,
            &self.shard.limiters,
            rec.consumer,
            &caller,
            now_ns(),
            unix_secs(),
        )
        .map_err(|refusal| {
            rec.rejected = Some(if refusal.error.status() == 429 {
                "tokens_per_minute"
            } else {
                "quota"
            });
            rec.rate = refusal.rate.map(|r| *r);
            refusal.error
        })?;
        let rate = adm.rate_headers(now_ns());

        let ask = Ask {
            req,
            path: &path,
            model,
            request_id: &rec.request_id,
        };
        let mut wait = Duration::ZERO;
        let result = attempt(&self.shard, snap, pool_id, &ask, &mut wait).await;
        rec.upstream_wait = wait;
        let mut won = match result {
            Ok(w) => w,
            Err(e) => {
                adm.settle(0, now_ns());
                return Err(e);
            }
        };
        rec.backend = Some(won.backend);
        rec.attempts = won.attempts;
        rec.status = won.resp.status;
        rec.region = won
            .resp
            .header("x-ms-region")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let sse = won
            .resp
            .header("content-type")
            .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
        let rate_refs: Vec<(&str, &[u8])> = rate
            .iter()
            .flatten()
            .map(|(k, v)| (*k, v.as_bytes()))
            .collect();
        // An HTTP/1.0 client cannot read chunked framing: it gets the data, ended by a close.
        let dechunk = req.head.version_minor == 0 && won.resp.framing == BodyFraming::Chunked;
        let head_out = client_head(
            &won,
            &cfg.backends[won.backend].name,
            &rec.request_id,
            &rate_refs,
            dechunk,
        );

        let mut tap = UsageTap::new(sse, TAP_MAX_JSON, TAP_MAX_TEXT).decoding(&won.resp.headers);
        let mut first: Option<Instant> = None;
        let g = &cfg.gateway;
        let end = relay_body(
            conn,
            &mut won.up,
            &won.resp,
            head_out,
            RelayMode {
                timeout: g.upstream_timeout,
                dechunk,
            },
            &mut wait,
            |d| {
                first.get_or_insert_with(Instant::now);
                tap.feed(d);
            },
        )
        .await;
        rec.upstream_wait = wait;
        if sse {
            rec.ttft = first.map(|t| t.duration_since(req.started));
        }
        let tapped = tap.finish();
        let ok = (200..300).contains(&won.resp.status);
        let usage = ok.then(|| adm.usage_of(&tapped, model, &req.body));
        adm.settle(usage.map_or(0, |u| u.total_tokens), now_ns());
        rec.usage = usage;
        rec.reply = Some((tapped.text, tapped.text_truncated));
        Ok(match end {
            RelayEnd::Complete {
                reusable,
                client_keep,
            } => {
                if reusable {
                    self.shard.pools.put(
                        &snap.backend_keys[won.backend],
                        won.up,
                        g.max_idle_per_backend,
                    );
                }
                client_keep
            }
            RelayEnd::UpstreamFailed | RelayEnd::ClientGone => false,
        })
    }
}
