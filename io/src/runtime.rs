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
    ///
    /// # Errors
    /// An `AIGW_DRIVER` value that names no driver, or `uring` on a kernel without io_uring: a
    /// typo must not silently run another driver than the one asked for.
    pub fn from_env() -> Result<DriverKind, String> {
        let var = std::env::var("AIGW_DRIVER").ok();
        Self::choose(var.as_deref(), monoio::utils::detect_uring())
    }

    /// [`from_env`](Self::from_env) given the variable and whether io_uring works here.
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn choose(var: Option<&str>, uring_works: bool) -> Result<DriverKind, String> {
        match var.map(str::trim) {
            Some("legacy") | Some("epoll") => Ok(DriverKind::Legacy),
            Some("uring") | Some("io_uring") if uring_works => Ok(DriverKind::Uring),
            Some("uring") | Some("io_uring") => Err(
                "AIGW_DRIVER asks for io_uring, which this kernel does not offer (or forbids); use AIGW_DRIVER=legacy".into(),
            ),
            None | Some("") if uring_works => Ok(DriverKind::Uring),
            None | Some("") => Ok(DriverKind::Legacy),
            Some(other) => Err(format!(
                "AIGW_DRIVER must be `uring` or `legacy`, not {:?}",
                other.escape_debug().to_string()
            )),
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

/// Raise the soft limit of open files to the hard limit (every client connection, upstream
/// connection and listener is a descriptor; the usual soft limit of 1024 caps the gateway far
/// below what one worker holds) and say so once in the log.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into `lim`, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!("open files limit unknown: {}", io::Error::last_os_error());
        return;
    }
    let (soft, hard) = (lim.rlim_cur, lim.rlim_max);
    if soft >= hard {
        tracing::info!(soft, hard, "open files limit already at the hard limit");
        return;
    }
    lim.rlim_cur = hard;
    // SAFETY: `setrlimit` only reads the `rlimit` it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        tracing::info!(
            from = soft,
            to = hard,
            "open files limit raised to the hard limit"
        );
    } else {
        let e = io::Error::last_os_error();
        tracing::warn!(soft, hard, "open files limit could not be raised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::DriverKind;

    #[test]
    fn the_driver_is_what_was_asked_or_an_error() {
        assert_eq!(DriverKind::choose(None, true), Ok(DriverKind::Uring));
        assert_eq!(DriverKind::choose(None, false), Ok(DriverKind::Legacy));
        assert_eq!(
            DriverKind::choose(Some("legacy"), true),
            Ok(DriverKind::Legacy)
        );
        assert_eq!(
            DriverKind::choose(Some("uring"), true),
            Ok(DriverKind::Uring)
        );
        assert!(DriverKind::choose(Some("uring"), false).is_err());
        let e = DriverKind::choose(Some("iouring"), true).unwrap_err();
        assert!(e.contains("iouring"), "{e}");
    }
}
