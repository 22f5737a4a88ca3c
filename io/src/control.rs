//! The control plane: the shared config cell, reloads (SIGHUP, `POST /reload`) and shutdown.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aigw_core::config::{load_file, Config};
use arc_swap::ArcSwap;

/// Process-wide shutdown state.
#[derive(Debug, Default)]
pub struct Shutdown {
    draining: AtomicBool,
    listeners: Mutex<Vec<RawFd>>,
}

impl Shutdown {
    /// Has a shutdown begun?
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Remember a listening socket so [`begin`](Self::begin) can stop its accept loop.
    pub fn register_listener(&self, fd: RawFd) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fd);
    }

    /// Stop accepting: every registered listener is shut down, which wakes its pending accept
    /// with an error; connections close after their current request.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::Relaxed);
        for fd in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            // SAFETY: shutdown(2) on a descriptor we registered and never close before exit; a
            // stale number would at worst get EBADF/ENOTSOCK, which we ignore.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }
}

/// The config cell and how to reload it.
#[derive(Debug)]
pub struct Control {
    /// The live config, read by every worker.
    pub config: Arc<ArcSwap<Config>>,
    path: Option<PathBuf>,
    generation: AtomicU64,
    reloading: Mutex<()>,
    /// The semantic cache, rebuilt by a reload that changes what its entries mean.
    pub cache: Arc<crate::cache::CacheHost>,
}

impl Control {
    /// A control plane serving `cfg`, loaded from `path` (None for the built-in demo).
    ///
    /// # Errors
    /// The semantic cache's indexer thread could not be started.
    pub fn new(cfg: Config, path: Option<PathBuf>) -> Result<Self, String> {
        let generation = AtomicU64::new(cfg.generation);
        let cache = Arc::new(crate::cache::CacheHost::default());
        cache.apply(&cfg)?;
        Ok(Control {
            config: Arc::new(ArcSwap::from_pointee(cfg)),
            path,
            generation,
            reloading: Mutex::new(()),
            cache,
        })
    }

    /// Parse and validate the file again and swap it in; on any error the old config stays.
    ///
    /// Settings that only take effect at start (listen addresses, workers, mocks) are kept from
    /// the running config, and the returned notes say so.
    ///
    /// # Errors
    /// The validation message (file, line and key) when the new file is refused.
    pub fn reload(&self) -> Result<(u64, Vec<String>), String> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.path else {
            return Err(
                "the built-in demo config has no file to reload; start with --config FILE".into(),
            );
        };
        let mut next = load_file(path).map_err(|e| e.to_string())?;
        let old = self.config.load();
        let mut notes = Vec::new();
        if next.gateway.listen != old.gateway.listen
            || next.gateway.admin_listen != old.gateway.admin_listen
            || next.gateway.workers != old.gateway.workers
        {
            notes.push(
                "listen, admin_listen and workers changes take effect at the next start"
                    .to_string(),
            );
            next.gateway.listen = old.gateway.listen;
            next.gateway.admin_listen = old.gateway.admin_listen;
            next.gateway.workers = old.gateway.workers;
        }
        if next.mocks != old.mocks {
            notes.push("[mocks] changes take effect at the next start".to_string());
            next.mocks = old.mocks.clone();
        }
        if next.log != old.log {
            // The writer threads and their files are opened once; keep the settings they run with.
            notes.push("[log] changes take effect at the next start".to_string());
            next.log = old.log.clone();
        }
        if next.estimates_tokens() && !old.estimates_tokens() {
            // Load the tokenizer here, on the reloading thread, not in a worker's first request.
            aigw_core::tokens::warm_up();
        }
        // Before the config is published: a worker that sees it sees its cache.
        if let Some(note) = self.cache.apply(&next)? {
            notes.push(note);
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        next.generation = generation;
        self.config.store(Arc::new(next));
        Ok((generation, notes))
    }
}
