//! The access log and the message store: each a dedicated thread behind a bounded channel, so the
//! data plane never waits on a disk. The channel is bounded twice, in lines and in bytes queued (a
//! few huge lines must not hold gigabytes): a line that does not fit is dropped and counted.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A file, appended to; rotated at `max_bytes` keeping `keep` old files (`path.1` newest).
    File {
        /// The file.
        path: PathBuf,
        /// Rotate when it grows past this (0: never).
        max_bytes: u64,
        /// Rotated files kept.
        keep: usize,
    },
}

/// Bytes queued for one writer at most, by default (lines count with their newline).
pub const DEFAULT_QUEUE_BYTES: usize = 16 << 20;

/// A budget of bytes shared by the senders (who take) and the writer thread (who gives back).
#[derive(Debug)]
struct ByteBudget {
    queued: AtomicUsize,
    max: usize,
}

impl ByteBudget {
    /// Take `n` bytes if they fit. The bytes taken by lines in the queue never exceed `max`: a
    /// sender adds first and backs out if the sum passed the budget, so racing senders can only
    /// refuse each other, never both get in over it.
    fn try_take(&self, n: usize) -> bool {
        if n > self.max {
            return false;
        }
        let before = self.queued.fetch_add(n, Relaxed);
        if before.saturating_add(n) > self.max {
            self.queued.fetch_sub(n, Relaxed);
            return false;
        }
        true
    }

    fn give_back(&self, n: usize) {
        self.queued.fetch_sub(n, Relaxed);
    }
}

/// One log stream: a bounded channel and its writer thread.
#[derive(Debug)]
pub struct Sink {
    tx: Sender<String>,
    budget: Arc<ByteBudget>,
    /// Lines dropped because the channel was full (in lines or in bytes).
    pub dropped: AtomicU64,
    /// Lines accepted.
    pub accepted: AtomicU64,
    closing: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sink {
    /// Open the target and start the writer thread, queueing at most `capacity` lines and
    /// `max_bytes` bytes.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn start(
        name: &str,
        target: Target,
        capacity: usize,
        max_bytes: usize,
    ) -> io::Result<Arc<Sink>> {
        let (tx, rx) = bounded::<String>(capacity.max(1));
        let mut out = Output::open(target)?;
        let closing = Arc::new(AtomicBool::new(false));
        let flag = closing.clone();
        let budget = Arc::new(ByteBudget {
            queued: AtomicUsize::new(0),
            max: max_bytes,
        });
        let writer_budget = budget.clone();
        let thread = std::thread::Builder::new()
            .name(format!("aigw-log-{name}"))
            .spawn(move || write_loop(rx, &mut out, &flag, &writer_budget))?;
        Ok(Arc::new(Sink {
            tx,
            budget,
            dropped: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            closing,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Queue one line (without its newline). Never blocks: a full queue (in lines or in bytes)
    /// drops and counts it.
    pub fn send(&self, line: String) {
        let n = line.len().saturating_add(1);
        if !self.budget.try_take(n) {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        match self.tx.try_send(line) {
            Ok(()) => {
                self.accepted.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.budget.give_back(n);
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Bytes queued for the writer right now.
    pub fn queued_bytes(&self) -> usize {
        self.budget.queued.load(Relaxed)
    }

    /// Write out everything queued, flush and stop the thread (at shutdown).
    pub fn close(&self) {
        self.closing.store(true, Relaxed);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn write_loop(rx: Receiver<String>, out: &mut Output, closing: &AtomicBool, budget: &ByteBudget) {
    let write = |out: &mut Output, line: String| {
        out.line(&line);
        budget.give_back(line.len().saturating_add(1));
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                write(out, line);
                // Take whatever else is queued before one flush: one syscall per burst.
                while let Ok(line) = rx.try_recv() {
                    write(out, line);
                }
                out.flush();
            }
            Err(RecvTimeoutError::Timeout) => {
                if closing.load(Relaxed) && rx.is_empty() {
                    out.flush();
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                out.flush();
                return;
            }
        }
    }
}

/// The writer's side of a target.
struct Output {
    target: Target,
    w: BufWriter<Box<dyn Write + Send>>,
    written: u64,
}

impl Output {
    fn open(target: Target) -> io::Result<Output> {
        let (w, written): (Box<dyn Write + Send>, u64) = match &target {
            Target::Stdout => (Box::new(io::stdout()), 0),
            Target::File { path, .. } => {
                let f = open_append(path)?;
                let len = f.metadata().map_or(0, |m| m.len());
                (Box::new(f), len)
            }
        };
        Ok(Output {
            target,
            w: BufWriter::with_capacity(64 * 1024, w),
            written,
        })
    }

    fn line(&mut self, line: &str) {
        if let Target::File { max_bytes, .. } = self.target {
            if max_bytes > 0 && self.written > 0 && self.written + line.len() as u64 + 1 > max_bytes
            {
                self.rotate();
            }
        }
        if self
            .w
            .write_all(line.as_bytes())
            .and_then(|_| self.w.write_all(b"\n"))
            .is_err()
        {
            tracing::error!("log write failed; line lost");
        }
        self.written += line.len() as u64 + 1;
    }

    fn flush(&mut self) {
        let _ = self.w.flush();
    }

    fn rotate(&mut self) {
        let Target::File { path, keep, .. } = self.target.clone() else {
            return;
        };
        self.flush();
        let numbered = |i: usize| PathBuf::from(format!("{}.{i}", path.display()));
        if keep == 0 {
            let _ = std::fs::remove_file(&path);
        } else {
            let _ = std::fs::remove_file(numbered(keep));
            for i in (1..keep).rev() {
                let _ = std::fs::rename(numbered(i), numbered(i + 1));
            }
            let _ = std::fs::rename(&path, numbered(1));
        }
        match open_append(&path) {
            Ok(f) => {
                self.w = BufWriter::with_capacity(64 * 1024, Box::new(f));
                self.written = 0;
            }
            Err(e) => tracing::error!("cannot reopen {} after rotation: {e}", path.display()),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// RFC 3339 UTC time with milliseconds for a Unix time in milliseconds.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(784_111_777_123), "1994-11-06T08:49:37.123Z");
        assert_eq!(rfc3339_ms(1_835_395_200_000), "2028-02-29T00:00:00.000Z");
    }

    #[test]
    fn writes_rotates_and_drops_when_full() {
        let dir = std::env::temp_dir().join(format!("aigw-logsink-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("m.jsonl");
        let sink = Sink::start(
            "t",
            Target::File {
                path: path.clone(),
                max_bytes: 100,
                keep: 2,
            },
            1024,
            DEFAULT_QUEUE_BYTES,
        )
        .unwrap();
        for i in 0..30 {
            sink.send(format!("{{\"n\":{i},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}"));
        }
        sink.close();
        let cur = std::fs::read_to_string(&path).unwrap();
        let one = std::fs::read_to_string(dir.join("m.jsonl.1")).unwrap();
        assert!(cur.lines().all(|l| l.starts_with("{\"n\":")));
        assert!(cur.len() <= 100 && one.len() <= 100);
        assert!(cur.contains("\"n\":29"), "newest line is in the live file");
        assert!(!dir.join("m.jsonl.3").exists(), "only `keep` rotated files");
        assert_eq!(sink.accepted.load(Relaxed), 30);
        let _ = std::fs::remove_dir_all(&dir);

        // A writer that cannot keep up (capacity 1, many lines at once) drops and counts.
        let slow = Sink::start(
            "t2",
            Target::File {
                path: std::env::temp_dir().join(format!("aigw-ls2-{}", std::process::id())),
                max_bytes: 0,
                keep: 0,
            },
            1,
            DEFAULT_QUEUE_BYTES,
        )
        .unwrap();
        for _ in 0..10_000 {
            slow.send("x".repeat(10));
        }
        slow.close();
        let total = slow.accepted.load(Relaxed) + slow.dropped.load(Relaxed);
        assert_eq!(
            total, 10_000,
            "every line is either written or counted as dropped"
        );
    }

    #[test]
    fn the_byte_budget_never_overcommits() {
        let b = ByteBudget {
            queued: AtomicUsize::new(0),
            max: 100,
        };
        assert!(!b.try_take(101), "a line bigger than the whole budget");
        assert!(b.try_take(60));
        assert!(!b.try_take(41));
        assert!(b.try_take(40));
        assert!(!b.try_take(1));
        b.give_back(60);
        assert!(b.try_take(60));
        assert_eq!(b.queued.load(Relaxed), 100);
        // Racing senders: whatever they got never sums past the budget.
        let b = ByteBudget {
            queued: AtomicUsize::new(0),
            max: 10_000,
        };
        let taken: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..10_000).filter(|_| b.try_take(7)).count() * 7))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert!(taken <= 10_000 && taken > 10_000 - 7, "{taken}");
        assert_eq!(b.queued.load(Relaxed), taken);
    }

    #[test]
    fn lines_over_the_byte_budget_are_dropped_and_counted() {
        let path = std::env::temp_dir().join(format!("aigw-ls3-{}", std::process::id()));
        let target = Target::File {
            path: path.clone(),
            max_bytes: 0,
            keep: 0,
        };
        let sink = Sink::start("t3", target, 1024, 1000).unwrap();
        sink.send("x".repeat(1000)); // 1001 bytes with its newline: never fits
        sink.send("y".repeat(10));
        sink.close();
        assert_eq!(sink.dropped.load(Relaxed), 1);
        assert_eq!(sink.accepted.load(Relaxed), 1);
        assert_eq!(sink.queued_bytes(), 0, "the writer gave every byte back");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", "y".repeat(10))
        );
        let _ = std::fs::remove_file(&path);
    }
}
