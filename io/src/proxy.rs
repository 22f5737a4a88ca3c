//! The gateway service: classify the path, peek the body, pick a backend, forward, relay, record.

use std::rc::Rc;
use std::time::Duration;

use aigw_core::error::GatewayError;
use aigw_core::openai::{classify, peek};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::conn::Conn;
use crate::metrics::{WorkerMetrics, F_REQUESTS};
use crate::failover::{attempt, client_head, Ask};
use crate::relay::{relay_body, RelayEnd};
use crate::server::{send_error, send_response, Request, ServerLimits, Service};
use crate::shard::{Shard, Snapshot};

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

/// What the metrics and the access log need about one answered request.
struct Outcome<'a> {
    model: String,
    backend: &'a str,
    status: u16,
    upstream_wait: Duration,
}

impl Service for Gateway {
    fn limits(&self) -> ServerLimits {
        let snap = self.shard.snapshot();
        let g = &snap.cfg.gateway;
        ServerLimits {
            head: aigw_core::http1::HeadLimits { max_head_bytes: g.max_head_bytes, max_headers: g.max_headers },
            max_body: g.max_body_bytes,
            idle: g.idle_timeout,
            header: g.header_timeout,
        }
    }

    fn draining(&self) -> bool {
        self.shard.shutdown.is_draining()
    }

    async fn call<S: AsyncReadRent + AsyncWriteRent>(&self, req: Request, conn: &mut Conn<S>) -> bool {
        let shard = &self.shard;
        let _guard = InFlight::new(&shard.metrics.shared);
        let snap = shard.snapshot();
        let (keep, outcome_status, model, backend, wait) = match self.handle(&snap, &req, conn).await {
            Ok((keep, o)) => (keep, o.status, o.model, o.backend.to_string(), o.upstream_wait),
            Err((e, model)) => {
                send_error(conn, &e, false).await;
                (true, e.status(), model, String::new(), Duration::ZERO)
            }
        };
        let total = req.started.elapsed();
        let m = &shard.metrics;
        let mut code = itoa::Buffer::new();
        m.add(F_REQUESTS, &[&model, &backend, code.format(outcome_status)], 1);
        m.shared.latency.observe(total);
        m.shared.overhead.observe(total.saturating_sub(wait));
        keep
    }
}

impl Gateway {
    /// Route and forward one request. `Err` carries an error to answer and the model for metrics.
    async fn handle<'s, S: AsyncReadRent + AsyncWriteRent>(
        &self,
        snap: &'s Snapshot,
        req: &Request,
        conn: &mut Conn<S>,
    ) -> Result<(bool, Outcome<'s>), (GatewayError, String)> {
        let cfg = &snap.cfg;
        let target = std::str::from_utf8(&req.head.target).unwrap_or("");
        let path = match classify(target) {
            Ok(p) => p,
            Err(_) if req.head.path() == "/status-0123456789abcdef" => {
                let ok = send_response(conn, 200, &[], "application/json", b"{\"status\":\"ok\"}").await;
                return Ok((ok, outcome("", "", 200)));
            }
            Err(e) => return Err((GatewayError::NotFound(e.to_string()), String::new())),
        };
        if path.is_models_list() {
            if !req.head.is_method("GET") {
                return Err((GatewayError::MethodNotAllowed, String::new()));
            }
            let ok = send_response(conn, 200, &[], "application/json", &snap.models_json).await;
            return Ok((ok, outcome("", "", 200)));
        }
        let peeked = peek(&req.body).map_err(|e| (GatewayError::BadRequest(e.to_string()), String::new()))?;
        let model: &str = path.deployment.or(peeked.model.as_deref()).unwrap_or("");
        let pool_id = cfg
            .models
            .resolve(model)
            .ok_or_else(|| (GatewayError::UnknownModel(model.to_string()), model.to_string()))?;
        let request_id = match req.head.header("x-request-id") {
            Some(v) if !v.is_empty() && v.len() <= 200 => String::from_utf8_lossy(v).into_owned(),
            _ => self.shard.next_request_id(),
        };
        let g = &cfg.gateway;
        let mut wait = Duration::ZERO;
        let ask = Ask { req, path: &path, model, request_id: &request_id };
        let mut won = attempt(&self.shard, snap, pool_id, &ask, &mut wait)
            .await
            .map_err(|e| (e, model.to_string()))?;
        let name: &'s str = &cfg.backends[won.backend].name;
        let head_out = client_head(&won, name, &request_id);
        let end = relay_body(conn, &mut won.up, &won.resp, head_out, g.upstream_timeout, &mut wait, |_| {}).await;
        let status = won.resp.status;
        let keep = match end {
            RelayEnd::Complete { reusable, client_keep } => {
                if reusable {
                    self.shard.pools.put(&snap.backend_keys[won.backend], won.up, g.max_idle_per_backend);
                }
                client_keep
            }
            RelayEnd::UpstreamFailed | RelayEnd::ClientGone => false,
        };
        Ok((keep, Outcome { model: model.to_string(), backend: name, status, upstream_wait: wait }))
    }
}

fn outcome(model: &'static str, backend: &'static str, status: u16) -> Outcome<'static> {
    Outcome { model: model.to_string(), backend, status, upstream_wait: Duration::ZERO }
}
