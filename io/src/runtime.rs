//! Building one monoio runtime per worker thread: io_uring when the kernel has it, the legacy
//! (epoll) driver otherwise or when `AIGW_DRIVER=legacy` asks for it.

use std::future::Future;
use std::io;

/// Which monoio driver a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// io_uring.
    Uring,
    /// epoll through mio.
    Legacy,
}

impl DriverKind {
    /// `AIGW_DRIVER=legacy|uring` if set, else io_uring where the kernel supports it.
    pub fn from_env() -> DriverKind {
        match std::env::var("AIGW_DRIVER").ok().as_deref() {
            Some("legacy") | Some("epoll") => DriverKind::Legacy,
            Some("uring") | Some("io_uring") if monoio::utils::detect_uring() => DriverKind::Uring,
            _ if monoio::utils::detect_uring() => DriverKind::Uring,
            _ => DriverKind::Legacy,
        }
    }

    /// The name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Uring => "io_uring",
            DriverKind::Legacy => "legacy",
        }
    }
}

/// Run `make()`'s future to completion on a fresh runtime of `kind` on the current thread.
///
/// # Errors
/// The runtime could not be built (e.g. io_uring setup refused by the kernel's limits).
pub fn block_on<F, Fut>(kind: DriverKind, make: F) -> io::Result<Fut::Output>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    match kind {
        DriverKind::Uring => {
            // 1024 entries keeps the locked memory of a ring well under the usual 8 MiB memlock limit.
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(1024)
                .enable_timer()
                .build()?;
            Ok(rt.block_on(make()))
        }
        DriverKind::Legacy => {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()?;
            Ok(rt.block_on(make()))
        }
    }
}
