//! The admin port: `/healthz`, `/metrics` (Prometheus text), `/backends`, `POST /reload` and
//! `GET`/`DELETE /cache`.

use std::sync::Arc;
use std::time::Duration;

use aigw_core::error::{error_body, GatewayError};
use aigw_core::http1::HeadLimits;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::conn::Conn;
use crate::control::{Control, Shutdown};
use crate::health::HealthRegistry;
use crate::metrics::Registry;
use crate::record::Sinks;
use crate::server::{send_error, send_response, HeadVerdict, Request, ServerLimits, Service};

/// The admin service (runs on its own thread, off the data plane).
pub struct Admin {
    /// Config and reload.
    pub control: Arc<Control>,
    /// All workers' metrics.
    pub registry: Arc<Registry>,
    /// Shutdown state, reported by `/healthz`.
    pub shutdown: Arc<Shutdown>,
    /// Backend health, for `/backends` and the backend metrics.
    pub health: Arc<HealthRegistry>,
    /// Log sinks, for their dropped-line counters.
    pub sinks: Arc<Sinks>,
}

impl Service for Admin {
    type Pre = ();

    fn on_head(
        &self,
        _: &aigw_core::http1::RequestHead,
        _: std::net::SocketAddr,
    ) -> HeadVerdict<()> {
        HeadVerdict::Read(())
    }

    fn limits(&self) -> ServerLimits {
        ServerLimits {
            head: HeadLimits::default(),
            max_body: 1024 * 1024,
            idle: Duration::from_secs(60),
            header: Duration::from_secs(10),
        }
    }

    async fn call<S: AsyncReadRent + AsyncWriteRent>(
        &self,
        _: (),
        req: Request,
        conn: &mut Conn<S>,
    ) -> bool {
        let get = req.head.is_method("GET") || req.head.is_method("HEAD");
        match (req.head.path(), get) {
            ("/healthz", true) => {
                if self.shutdown.is_draining() {
                    send_response(
                        conn,
                        503,
                        &[],
                        "application/json",
                        b"{\"status\":\"draining\"}",
                    )
                    .await
                } else {
                    send_response(conn, 200, &[], "application/json", b"{\"status\":\"ok\"}").await
                }
            }
            ("/metrics", true) => {
                let mut text = self.registry.render();
                text.push_str(&self.health.report(&self.control.config.load()).1);
                text.push_str(
                    "# HELP aigw_log_dropped_total Log lines dropped because the writer could not keep up.\n# TYPE aigw_log_dropped_total counter\n",
                );
                for (name, sink) in [
                    ("access", &self.sinks.access),
                    ("messages", &self.sinks.messages),
                ] {
                    let n = sink
                        .as_ref()
                        .map_or(0, |s| s.dropped.load(std::sync::atomic::Ordering::Relaxed));
                    text.push_str(&format!("aigw_log_dropped_total{{log=\"{name}\"}} {n}\n"));
                }
                crate::cache::admin::metrics(&self.control.cache, &mut text);
                send_response(conn, 200, &[], "text/plain; version=0.0.4", text.as_bytes()).await
            }
            ("/backends", true) => {
                send_json(conn, &self.health.report(&self.control.config.load()).0).await
            }
            ("/reload", false) if req.head.is_method("POST") => match self.control.reload() {
                Ok((generation, notes)) => {
                    tracing::info!(generation, ?notes, "config reloaded");
                    let body = serde_json::json!({"status": "reloaded", "generation": generation, "notes": notes});
                    send_response(
                        conn,
                        200,
                        &[],
                        "application/json",
                        body.to_string().as_bytes(),
                    )
                    .await
                }
                Err(msg) => {
                    tracing::error!("reload refused, keeping the running config: {msg}");
                    let body = error_body(
                        &format!("reload refused: {msg}"),
                        "invalid_config",
                        "invalid_config",
                    );
                    send_response(conn, 400, &[], "application/json", &body).await
                }
            },
            ("/cache", true) => {
                send_json(conn, &crate::cache::admin::stats(&self.control.cache)).await
            }
            ("/cache", false) if req.head.is_method("DELETE") => {
                send_json(conn, &crate::cache::admin::flush(&self.control.cache).await).await
            }
            ("/", true) => {
                let index = serde_json::json!({
                    "service": "aigw admin",
                    "endpoints": [
                        {"method": "GET", "path": "/healthz", "what": "200 ok; 503 while draining"},
                        {"method": "GET", "path": "/metrics", "what": "Prometheus text"},
                        {"method": "GET", "path": "/backends", "what": "per backend: breaker, bench, in flight, requests, failures"},
                        {"method": "POST", "path": "/reload", "what": "re-read the config file"},
                        {"method": "GET", "path": "/cache", "what": "the semantic cache: entries, partitions, generations, memory"},
                        {"method": "DELETE", "path": "/cache", "what": "flush the semantic cache"},
                    ],
                });
                send_response(
                    conn,
                    200,
                    &[],
                    "application/json",
                    index.to_string().as_bytes(),
                )
                .await
            }
            ("/" | "/healthz" | "/metrics" | "/backends" | "/reload" | "/cache", _) => {
                send_error(conn, &GatewayError::MethodNotAllowed, false).await;
                true
            }
            _ => {
                send_error(
                    conn,
                    &GatewayError::NotFound("no such admin endpoint".into()),
                    false,
                )
                .await;
                true
            }
        }
    }
}

/// A 200 with `value` as its JSON body.
async fn send_json<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    value: &serde_json::Value,
) -> bool {
    send_response(
        conn,
        200,
        &[],
        "application/json",
        value.to_string().as_bytes(),
    )
    .await
}
