//! Starting the process: one thread per worker, each with its own runtime, its own SO_REUSEPORT
//! listeners (gateway and mocks) and its own shard; an admin thread; signals on the caller's thread.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aigw_core::config::{Config, MockSpec};
use aigw_core::mock::MockShared;
use aigw_core::request::Affinity;
use monoio::net::{ListenerOpts, TcpListener};
use monoio_rustls::TlsAcceptor;
use signal_hook::iterator::Signals;

use crate::admin::Admin;
use crate::admission::Limiters;
use crate::control::{Control, Shutdown};
use crate::health::HealthRegistry;
use crate::logsink::{Sink, Target, DEFAULT_QUEUE_BYTES};
use crate::metrics::{LocalMetrics, Registry};
use crate::mock_server::MockService;
use crate::pipeline::Gateway;
use crate::record::Sinks;
use crate::runtime::{block_on, DriverKind};
use crate::server::{serve_conn, Service};
use crate::shard::Shard;
use crate::tls::{mock_acceptor, TlsClients};

/// How long a client of a TLS mock gets to finish its handshake.
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// What a started process serves.
pub struct Plan {
    /// Serve the gateway listener (false for `aigw mock`).
    pub gateway: bool,
    /// Mocks to serve on every worker.
    pub mocks: Vec<MockSpec>,
    /// Worker threads.
    pub workers: usize,
    /// The driver every runtime uses.
    pub driver: DriverKind,
}

/// Stored responses whose backend the gateway remembers (8 bytes each: 512 KiB).
const AFFINITY_SLOTS: usize = 1 << 16;

/// Everything the threads share.
pub struct Shared {
    /// Config cell and reload.
    pub control: Arc<Control>,
    /// Every worker's metrics.
    pub registry: Arc<Registry>,
    /// Shutdown state.
    pub shutdown: Arc<Shutdown>,
    /// Backend health.
    pub health: Arc<HealthRegistry>,
    /// Token budgets.
    pub limiters: Arc<Limiters>,
    /// Access log and message store.
    pub sinks: Arc<Sinks>,
    /// Mocks served by the workers, with their TLS acceptor when they serve HTTPS.
    pub mocks: Vec<(MockSpec, Arc<MockShared>, Option<TlsAcceptor>)>,
    /// TLS client configs of `https://` backends, shared by the workers.
    pub tls: Arc<TlsClients>,
    /// Which backend holds each stored response (the Responses API).
    pub affinity: Arc<Affinity>,
}

/// Start the threads, wait until every listener is bound, then run the signal loop until
/// SIGTERM/SIGINT and a drain. Returns after the drain.
///
/// # Errors
/// A listener could not be bound or a runtime could not start: the message says which.
pub fn run(
    cfg: Config,
    path: Option<std::path::PathBuf>,
    plan: Plan,
    on_ready: impl FnOnce(),
) -> Result<(), String> {
    crate::runtime::raise_fd_limit();
    let admin_addr = cfg.gateway.admin_listen.filter(|_| plan.gateway);
    let sinks = Arc::new(if plan.gateway {
        open_sinks(&cfg.log)?
    } else {
        Sinks::default()
    });
    if (plan.gateway && cfg.estimates_tokens()) || !plan.mocks.is_empty() {
        // Loading a BPE table takes a while and would stall a whole worker inside its first
        // request; do it before serving. Without limits or mocks nothing is counted up front, and
        // the tables (tens of MB) stay unloaded unless a response arrives without usage.
        aigw_core::tokens::warm_up();
    }
    // Install the handlers before anything can report ready: a SIGHUP sent as soon as /healthz
    // answers must reload, not hit the default action (which ends the process).
    let signals = {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        Signals::new([SIGHUP, SIGINT, SIGTERM])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?
    };
    // A mock's certificate and key are checked together once, before any thread starts.
    let mut mocks = Vec::with_capacity(plan.mocks.len());
    for m in &plan.mocks {
        let acceptor = match &m.tls {
            Some(t) => Some(mock_acceptor(t).map_err(|e| format!("mock {}: {e}", m.name))?),
            None => None,
        };
        mocks.push((
            m.clone(),
            Arc::new(MockShared::new(m.options.region.clone())),
            acceptor,
        ));
    }
    let shared = Arc::new(Shared {
        control: Arc::new(Control::new(cfg, path)?),
        registry: Arc::new(Registry::new(plan.workers)),
        shutdown: Arc::new(Shutdown::default()),
        health: Arc::new(HealthRegistry::default()),
        limiters: Arc::new(Limiters::default()),
        sinks,
        mocks,
        tls: Arc::new(TlsClients::default()),
        affinity: Arc::new(Affinity::new(AFFINITY_SLOTS)),
    });
    if plan.gateway {
        crate::resolver::spawn(
            shared.control.config.clone(),
            shared.health.clone(),
            shared.shutdown.clone(),
        )?;
    }
    // Idle per-address and per-header buckets are dropped here, off the request path.
    crate::admission::start_pruner(Arc::downgrade(&shared.limiters))
        .map_err(|e| format!("cannot spawn the limits thread: {e}"))?;
    let (tx, rx) = mpsc::channel::<Result<(), String>>();
    for i in 0..plan.workers {
        let (tx, shared, driver, gateway) = (tx.clone(), shared.clone(), plan.driver, plan.gateway);
        std::thread::Builder::new()
            .name(format!("aigw-worker-{i}"))
            .spawn(move || {
                let r = block_on(driver, || worker_main(i, shared, gateway, tx.clone()));
                if let Err(e) = r {
                    let _ = tx.send(Err(format!(
                        "worker {i}: cannot start a {} runtime: {e}",
                        driver.name()
                    )));
                }
            })
            .map_err(|e| format!("cannot spawn worker thread: {e}"))?;
    }
    let mut expected = plan.workers;
    if let Some(addr) = admin_addr {
        expected += 1;
        let (tx, shared, driver) = (tx.clone(), shared.clone(), plan.driver);
        std::thread::Builder::new()
            .name("aigw-admin".into())
            .spawn(move || {
                let r = block_on(driver, || admin_main(addr, shared, tx.clone()));
                if let Err(e) = r {
                    let _ = tx.send(Err(format!("admin: cannot start a runtime: {e}")));
                }
            })
            .map_err(|e| format!("cannot spawn admin thread: {e}"))?;
    }
    drop(tx);
    for _ in 0..expected {
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a worker thread died while starting".into()),
        }
    }
    on_ready();
    signal_loop(&shared, signals)
}

fn signal_loop(shared: &Shared, mut signals: Signals) -> Result<(), String> {
    use signal_hook::consts::SIGHUP;
    for sig in signals.forever() {
        if sig == SIGHUP {
            match shared.control.reload() {
                Ok((generation, notes)) => {
                    tracing::info!(generation, ?notes, "config reloaded on SIGHUP")
                }
                Err(e) => tracing::error!("reload refused, keeping the running config: {e}"),
            }
            continue;
        }
        tracing::info!("shutting down: draining requests in flight");
        shared.shutdown.begin();
        let start = Instant::now();
        let limit = shared.control.config.load().gateway.drain_timeout;
        while shared.registry.in_flight() > 0 && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Requests are done (or the drain gave up): write out every queued log line.
        shared.sinks.close();
        return Ok(());
    }
    Ok(())
}

/// Start the access log and message store writers `log` asks for.
fn open_sinks(log: &aigw_core::config::LogConfig) -> Result<Sinks, String> {
    use aigw_core::config::AccessLog;
    let access = match &log.access {
        AccessLog::Off => None,
        AccessLog::Stdout => Some(Sink::start(
            "access",
            Target::Stdout,
            log.access_buffer,
            DEFAULT_QUEUE_BYTES,
        )),
        AccessLog::File(p) => Some(Sink::start(
            "access",
            Target::File {
                path: p.clone(),
                max_bytes: 0,
                keep: 0,
            },
            log.access_buffer,
            DEFAULT_QUEUE_BYTES,
        )),
    };
    let access = access
        .transpose()
        .map_err(|e| format!("cannot open the access log: {e}"))?;
    let messages = match &log.messages {
        None => None,
        Some(m) => Some(
            Sink::start(
                "messages",
                Target::File {
                    path: m.path.clone(),
                    max_bytes: m.max_file_bytes,
                    keep: m.keep_files,
                },
                log.access_buffer,
                // Room for several of the largest lines (two bodies, JSON-escaped).
                DEFAULT_QUEUE_BYTES.max(m.max_body_bytes.saturating_mul(32)),
            )
            .map_err(|e| format!("cannot open the message store {}: {e}", m.path.display()))?,
        ),
    };
    Ok(Sinks { access, messages })
}

fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener, String> {
    let opts = ListenerOpts::new()
        .reuse_port(true)
        .reuse_addr(true)
        .backlog(4096);
    TcpListener::bind_with_config(addr, &opts)
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

async fn worker_main(
    i: usize,
    shared: Arc<Shared>,
    gateway: bool,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let cfg = shared.control.config.load_full();
    let metrics = LocalMetrics::new(shared.registry.worker(i));
    let shard = Rc::new(Shard::new(
        i,
        shared.control.config.clone(),
        metrics,
        &shared,
    ));
    let mut bound = Vec::new();
    if gateway {
        match bind(cfg.gateway.listen, "gateway") {
            Ok(l) => bound.push((l, None)),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    }
    for (spec, ms, acceptor) in &shared.mocks {
        match bind(spec.listen, &format!("mock {}", spec.name)) {
            Ok(l) => bound.push((
                l,
                Some((spec.options.clone(), ms.clone(), acceptor.clone())),
            )),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    }
    for (l, _) in &bound {
        shared.shutdown.register_listener(l.as_raw_fd());
    }
    let _ = ready.send(Ok(()));
    for (listener, mock) in bound {
        match mock {
            None => {
                let svc = Rc::new(Gateway::new(shard.clone()));
                monoio::spawn(accept_loop(listener, svc, shared.shutdown.clone(), None));
            }
            Some((options, ms, acceptor)) => {
                let svc = Rc::new(MockService {
                    options,
                    shared: ms,
                    shard: shard.clone(),
                });
                monoio::spawn(accept_loop(
                    listener,
                    svc,
                    shared.shutdown.clone(),
                    acceptor,
                ));
            }
        }
    }
    // Connection tasks live on this runtime: keep it running until the process exits, closing
    // expired idle upstream connections meanwhile.
    loop {
        monoio::time::sleep(Duration::from_secs(1)).await;
        let idle = shard.snapshot().cfg.gateway.upstream_idle_timeout;
        shard.pools.sweep(idle);
    }
}

async fn admin_main(
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let listener = match bind(addr, "admin") {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let svc = Rc::new(Admin {
        control: shared.control.clone(),
        registry: shared.registry.clone(),
        shutdown: shared.shutdown.clone(),
        health: shared.health.clone(),
        sinks: shared.sinks.clone(),
    });
    // The admin port stays up while draining so health checks can watch the drain.
    accept_loop(listener, svc, Arc::new(Shutdown::default()), None).await;
}

/// Accept connections and serve each on its own task; with `tls`, each task handshakes first.
async fn accept_loop<Svc: Service + 'static>(
    listener: TcpListener,
    svc: Rc<Svc>,
    shutdown: Arc<Shutdown>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Responses are written in as few writes as we can; Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                match &tls {
                    None => {
                        monoio::spawn(serve_conn(stream, peer, svc.clone()));
                    }
                    Some(acceptor) => {
                        let (acceptor, svc) = (acceptor.clone(), svc.clone());
                        monoio::spawn(async move {
                            match monoio::time::timeout(
                                TLS_HANDSHAKE_LIMIT,
                                acceptor.accept(stream),
                            )
                            .await
                            {
                                Ok(Ok(s)) => serve_conn(s, peer, svc).await,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, "TLS handshake failed: {}", std::io::Error::from(e))
                                }
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            Err(e) => {
                if shutdown.is_draining() {
                    return;
                }
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
