//! The resolver thread: every backend named by a host name is resolved again every `dns_ttl`
//! (blocking `ToSocketAddrs`, off the request path), and a new answer replaces the addresses the
//! workers connect to. A failed resolution keeps the last good addresses. The schedule and the
//! comparison are the sans-IO [`resolve_step`].

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use aigw_core::balance::{resolve_step, DnsSchedule, Refresh};
use aigw_core::config::Config;
use arc_swap::ArcSwap;

use crate::control::Shutdown;
use crate::health::{now_ms, HealthRegistry};

/// How often the thread looks for names due (`dns_ttl` is at least 1 s).
const TICK: Duration = Duration::from_secs(1);

/// Start the resolver thread. It reads the live config each tick, so a reload's backends and
/// `dns_ttl` apply from the next tick; it stops when a shutdown begins.
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn(
    config: Arc<ArcSwap<Config>>,
    registry: Arc<HealthRegistry>,
    shutdown: Arc<Shutdown>,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("aigw-resolver".into())
        .spawn(move || {
            let mut schedules = HashMap::new();
            while !shutdown.is_draining() {
                std::thread::sleep(TICK);
                refresh_all(&config.load_full(), &registry, &mut schedules);
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot spawn the resolver thread: {e}"))
}

/// One pass over the backends of `cfg`: resolve those due, publish changed answers.
fn refresh_all(
    cfg: &Config,
    registry: &HealthRegistry,
    schedules: &mut HashMap<String, DnsSchedule>,
) {
    let ttl = u64::try_from(cfg.gateway.dns_ttl.as_millis()).unwrap_or(u64::MAX);
    let live = registry.addrs(cfg);
    let mut seen = Vec::with_capacity(cfg.backends.len());
    for (b, live) in cfg.backends.iter().zip(&live) {
        if b.host.parse::<IpAddr>().is_ok() {
            continue; // an address literal needs no resolving
        }
        let key = format!("{}|{}", b.name, b.url);
        let now = now_ms();
        let sched = schedules
            .entry(key.clone())
            .or_insert_with(|| DnsSchedule::resolved_at(now, ttl));
        seen.push(key);
        let current = live.load_full();
        let resolve = || {
            (b.host.as_str(), b.port)
                .to_socket_addrs()
                .map(Iterator::collect)
        };
        match resolve_step(sched, &current, now, ttl, resolve) {
            Refresh::Changed(addrs) => {
                tracing::info!(backend = %b.name, host = %b.host, ?addrs, "backend addresses changed");
                live.store(Arc::new(addrs));
            }
            Refresh::Failed(e) => tracing::warn!(
                backend = %b.name,
                host = %b.host,
                "cannot resolve the backend host ({e}); keeping its last good addresses"
            ),
            Refresh::NotDue | Refresh::Unchanged => {}
        }
    }
    schedules.retain(|k, _| seen.contains(k));
}
