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

/// io_uring setup flags (`AIGW_URING_SETUP`, a comma list), for measuring what each buys; see
/// BENCHMARKS.md for the runs that chose the default. Every ring is created and used by its one
/// worker thread, which `single_issuer` and `defer_taskrun` require.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringSetup {
    /// `IORING_SETUP_SINGLE_ISSUER`.
    pub single_issuer: bool,
    /// `IORING_SETUP_COOP_TASKRUN`: no interrupt to run completion work.
    pub coop_taskrun: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` (implies `single_issuer`): completion work runs only when
    /// the worker waits for events.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_TASKRUN_FLAG`.
    pub taskrun_flag: bool,
}

impl UringSetup {
    /// The flags aigw runs with when `AIGW_URING_SETUP` is unset: completion work deferred to
    /// the worker's own wait, without interrupts (`benches/load/flags.sh`: 15 % less CPU per
    /// request than no flags; BENCHMARKS.md). A kernel older than 6.1 refuses them: the worker
    /// then starts without (see [`block_on`]).
    pub const DEFAULT: UringSetup = UringSetup {
        single_issuer: true,
        coop_taskrun: true,
        defer_taskrun: true,
        taskrun_flag: false,
    };

    /// `AIGW_URING_SETUP` (`none`, or a comma list of `single_issuer`, `coop_taskrun`,
    /// `defer_taskrun`, `taskrun_flag`), else [`UringSetup::DEFAULT`].
    ///
    /// # Errors
    /// A name that is not a flag.
    pub fn from_env() -> Result<UringSetup, String> {
        match std::env::var("AIGW_URING_SETUP") {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(Self::DEFAULT),
        }
    }

    /// Parse a comma list of flag names (`none` or empty: no flags).
    ///
    /// # Errors
    /// A name that is not a flag.
    pub fn parse(list: &str) -> Result<UringSetup, String> {
        let mut s = UringSetup::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "none" => {}
                "single_issuer" => s.single_issuer = true,
                "coop_taskrun" => s.coop_taskrun = true,
                "defer_taskrun" => {
                    s.defer_taskrun = true;
                    s.single_issuer = true;
                }
                "taskrun_flag" => s.taskrun_flag = true,
                other => {
                    return Err(format!(
                        "AIGW_URING_SETUP: unknown flag {:?} (expected none, single_issuer, \
                         coop_taskrun, defer_taskrun, taskrun_flag)",
                        other.escape_debug().to_string()
                    ))
                }
            }
        }
        Ok(s)
    }

    fn builder(self) -> io_uring::Builder {
        let mut b = io_uring::IoUring::builder();
        if self.single_issuer {
            b.setup_single_issuer();
        }
        if self.coop_taskrun {
            b.setup_coop_taskrun();
        }
        if self.defer_taskrun {
            b.setup_defer_taskrun();
        }
        if self.taskrun_flag {
            b.setup_taskrun_flag();
        }
        b
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
            let asked = std::env::var_os("AIGW_URING_SETUP").is_some();
            let flags = UringSetup::from_env().map_err(io::Error::other)?;
            // 1024 entries keeps the locked memory of a ring well under the usual 8 MiB memlock limit.
            let build = |flags: UringSetup| {
                monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .with_entries(1024)
                    .uring_builder(flags.builder())
                    .enable_timer()
                    .build()
            };
            let mut rt = match build(flags) {
                Ok(rt) => rt,
                // The default flags need Linux 6.1; an older kernel gets a ring without them.
                // Flags asked for by name are not dropped silently.
                Err(e) if !asked && flags != UringSetup::default() => {
                    tracing::info!("io_uring setup flags refused ({e}); running without them");
                    build(UringSetup::default())?
                }
                Err(e) => return Err(e),
            };
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
    use super::{DriverKind, UringSetup};

    #[test]
    fn uring_setup_flags_parse() {
        assert_eq!(UringSetup::parse(""), Ok(UringSetup::default()));
        assert_eq!(UringSetup::parse("none"), Ok(UringSetup::default()));
        let s = UringSetup::parse("coop_taskrun, defer_taskrun").unwrap();
        assert!(s.coop_taskrun && s.defer_taskrun && s.single_issuer && !s.taskrun_flag);
        assert!(UringSetup::parse("sqpoll").unwrap_err().contains("sqpoll"));
    }

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
