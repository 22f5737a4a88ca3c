//! The resolver thread: every backend named by a host name is resolved again every `dns_ttl`
//! (blocking `ToSocketAddrs`, off the request path), and a new answer replaces the addresses the
//! workers connect to. A failed resolution keeps the last good addresses. The schedule and the
//! comparison are the sans-IO [`resolve_step`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
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
                let system =
                    |host: &str, port: u16| (host, port).to_socket_addrs().map(Iterator::collect);
                let cfg = config.load_full();
                refresh_all(&cfg, &registry, &mut schedules, now_ms(), system);
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot spawn the resolver thread: {e}"))
}

/// One pass at `now` over the backends of `cfg`: resolve those due with `resolve`, publish
/// changed answers to the registry's live addresses.
fn refresh_all(
    cfg: &Config,
    registry: &HealthRegistry,
    schedules: &mut HashMap<String, DnsSchedule>,
    now: u64,
    mut resolve: impl FnMut(&str, u16) -> io::Result<Vec<SocketAddr>>,
) {
    let ttl = u64::try_from(cfg.gateway.dns_ttl.as_millis()).unwrap_or(u64::MAX);
    let live = registry.addrs(cfg);
    let mut seen = Vec::with_capacity(cfg.backends.len());
    for (b, live) in cfg.backends.iter().zip(&live) {
        if b.host.parse::<IpAddr>().is_ok() {
            continue; // an address literal needs no resolving
        }
        let key = format!("{}|{}", b.name, b.url);
        let sched = schedules
            .entry(key.clone())
            .or_insert_with(|| DnsSchedule::resolved_at(now, ttl));
        seen.push(key);
        let current = live.load_full();
        match resolve_step(sched, &current, now, ttl, || resolve(&b.host, b.port)) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CFG: &str = "[gateway]\ndns_ttl = \"2s\"\n\
        [backends.n]\nurl = \"http://localhost:8000\"\n\
        [backends.ip]\nurl = \"http://127.0.0.1:8001\"\n\
        [pools.p]\nmembers = [{ backend = \"n\" }, { backend = \"ip\" }]\n";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The live list follows the resolver after each TTL, keeps the last good one when it fails,
    /// and address literals are never resolved.
    #[test]
    fn publishes_new_answers_and_keeps_the_last_good_on_failure() {
        let cfg = aigw_core::config::parse_str(CFG, None).unwrap();
        let reg = HealthRegistry::default();
        let live = reg.addrs(&cfg);
        let id = |name: &str| cfg.backends.iter().position(|b| b.name == name).unwrap();
        let (n, ip) = (id("n"), id("ip"));
        let at_load = live[n].load_full();
        assert!(at_load.iter().all(|a| a.ip().is_loopback()));
        let mut schedules = HashMap::new();
        let mut asked = Vec::new();
        let mut answer = |host: &str, port: u16, a: io::Result<Vec<SocketAddr>>| {
            asked.push((host.to_owned(), port));
            a
        };
        let new = || Ok(vec![addr("10.0.0.7:8000")]);
        refresh_all(&cfg, &reg, &mut schedules, 1000, |h, p| answer(h, p, new()));
        assert_eq!(live[n].load_full(), at_load, "not due before the TTL");
        refresh_all(&cfg, &reg, &mut schedules, 3000, |h, p| answer(h, p, new()));
        assert_eq!(*live[n].load_full(), vec![addr("10.0.0.7:8000")]);
        let down = || Err(io::Error::other("SERVFAIL"));
        refresh_all(&cfg, &reg, &mut schedules, 5000, |h, p| {
            answer(h, p, down())
        });
        assert_eq!(
            *live[n].load_full(),
            vec![addr("10.0.0.7:8000")],
            "last good kept"
        );
        assert_eq!(*live[ip].load_full(), vec![addr("127.0.0.1:8001")]);
        assert_eq!(asked, vec![("localhost".to_owned(), 8000); 2]);
        // A new snapshot of the same config sees the same live list.
        assert_eq!(*reg.addrs(&cfg)[n].load_full(), vec![addr("10.0.0.7:8000")]);
    }
}
