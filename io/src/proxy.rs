//! The gateway service: classify the path, peek the body, pick a backend, forward, relay, record.

use std::rc::Rc;
use std::time::{Duration, Instant};

use aigw_core::config::{Backend, Dialect, GatewayConfig};
use aigw_core::error::GatewayError;
use aigw_core::http1::UpstreamHead;
use aigw_core::openai::{backend_target, classify, peek};
use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::conn::Conn;
use crate::metrics::{WorkerMetrics, F_REQUESTS};
use crate::relay::{exchange_head, relay_body, RelayEnd, UpstreamError};
use crate::server::{send_error, send_response, Request, ServerLimits, Service};
use crate::shard::{Shard, Snapshot};
use crate::upstream::UpConn;

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
    model: &'a str,
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
            Ok((keep, o)) => (keep, o.status, o.model.to_string(), o.backend.to_string(), o.upstream_wait),
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
        let pool = &cfg.pools[pool_id];
        // Round-robin over members; priorities, weights and failover come with the pool policy.
        let cursor = &snap.cursors[pool_id];
        let member = pool.members[cursor.get() % pool.members.len()];
        cursor.set(cursor.get().wrapping_add(1));
        let backend = &cfg.backends[member.backend];
        if model.is_empty() && backend.dialect == Dialect::Azure {
            let e = GatewayError::BadRequest("a model is required (in the body or as the deployment)".into());
            return Err((e, String::new()));
        }

        let request_id = match req.head.header("x-request-id") {
            Some(v) if !v.is_empty() && v.len() <= 200 => String::from_utf8_lossy(v).into_owned(),
            _ => self.shard.next_request_id(),
        };
        let upstream_target = backend_target(backend, &path, model);
        let auth_value = backend.api_key.as_ref().map(|k| match backend.dialect {
            Dialect::Azure => k.clone(),
            Dialect::OpenAi => format!("Bearer {k}"),
        });
        let head = UpstreamHead {
            method: &req.head.method,
            target: &upstream_target,
            host: &backend.authority,
            auth: auth_value.as_deref().map(|v| match backend.dialect {
                Dialect::Azure => ("api-key", v),
                Dialect::OpenAi => ("authorization", v),
            }),
            request_id: &request_id,
            content_length: (!req.body.is_empty() || !req.head.is_method("GET")).then_some(req.body.len() as u64),
            client_headers: &req.head.headers,
        };
        let g = &cfg.gateway;
        let key = &snap.backend_keys[member.backend];
        let mut wait = Duration::ZERO;
        let (mut up, resp) = self
            .exchange(g, backend, key, &head, req, &mut wait)
            .await
            .map_err(|e| (e, model.to_string()))?;

        let mut head_out = BytesMut::with_capacity(512);
        resp.encode_for_client(
            &mut head_out,
            &["x-request-id", "x-aigw-backend"],
            &[("x-request-id", request_id.as_bytes()), ("x-aigw-backend", backend.name.as_bytes())],
        );
        let end = relay_body(conn, &mut up, &resp, head_out, g.upstream_timeout, &mut wait, |_| {}).await;
        let keep = match end {
            RelayEnd::Complete { reusable, client_keep } => {
                if reusable {
                    self.shard.pools.put(key, up, g.max_idle_per_backend);
                }
                client_keep
            }
            RelayEnd::UpstreamFailed | RelayEnd::ClientGone => false,
        };
        let name: &'s str = &cfg.backends[member.backend].name;
        let model_s: &'s str = cfg.models.exact.get_key_value(model).map_or("*", |(k, _)| k.as_str());
        Ok((keep, Outcome { model: model_s, backend: name, status: resp.status, upstream_wait: wait }))
    }

    /// Send the request and read the response head, on a pooled connection when one is idle.
    /// A pooled connection the upstream closed meanwhile is retried once on a fresh one.
    async fn exchange(
        &self,
        g: &GatewayConfig,
        backend: &Backend,
        key: &str,
        head: &UpstreamHead<'_>,
        req: &Request,
        wait: &mut Duration,
    ) -> Result<(UpConn, aigw_core::http1::ResponseHead), GatewayError> {
        let pools = &self.shard.pools;
        if backend.tls {
            return Err(GatewayError::BadGateway(format!(
                "backend {} uses https, which this build cannot reach yet",
                backend.name
            )));
        }
        let mut pooled = pools.take(key);
        loop {
            let reused = pooled.is_some();
            let mut up = match pooled.take() {
                Some(c) => c,
                None => {
                    let t0 = Instant::now();
                    let c = pools.connect(&backend.addrs, g.connect_timeout).await;
                    *wait += t0.elapsed();
                    c.map_err(|e| GatewayError::BadGateway(format!("cannot connect to backend {}: {e}", backend.name)))?
                }
            };
            match exchange_head(&mut up, head, &req.body, g.upstream_timeout, wait).await {
                Ok(resp) => return Ok((up, resp)),
                Err(UpstreamError::Io(_)) if reused => continue, // stale keep-alive connection
                Err(UpstreamError::Timeout) => {
                    return Err(GatewayError::GatewayTimeout(g.upstream_timeout.as_millis() as u64))
                }
                Err(e) => return Err(GatewayError::BadGateway(format!("backend {}: {e}", backend.name))),
            }
        }
    }
}

fn outcome(model: &'static str, backend: &'static str, status: u16) -> Outcome<'static> {
    Outcome { model, backend, status, upstream_wait: Duration::ZERO }
}
