//! The access log and the message store: each a dedicated writer thread fed through a bounded
//! lock-free queue, so the data plane never waits on a disk, never takes a lock and never wakes a
//! thread per line. The queue is bounded twice, in lines and in bytes queued (a few huge lines must
//! not hold gigabytes): a line that does not fit is dropped and counted.
//!
//! A line travels in a buffer of its own: the sender copies it into a buffer the writer gave back
//! earlier (so once warm, sending allocates nothing), queues it, and the writer writes it whole and
//! returns the buffer. Lines are never split or interleaved, and the lines of one sender keep their
//! order. The writer polls: every [`BUSY_POLL`] while lines arrive, and once idle it parks for up
//! to [`IDLE_PARK`], woken by the first line that finds it parked (one wake per idle spell, never
//! one per line).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crossbeam::queue::ArrayQueue;

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

/// How often a busy writer looks for lines: the longest a line waits while lines keep coming.
const BUSY_POLL: Duration = Duration::from_millis(2);
/// Empty polls after which the writer counts as idle and parks until woken.
const IDLE_AFTER_POLLS: u32 = 50;
/// Longest idle park: also the bound on a line's wait if it raced the writer going idle.
const IDLE_PARK: Duration = Duration::from_millis(100);
/// Smallest line buffer made (an access-log line is 300 to 500 bytes).
const MIN_BUFFER: usize = 1024;
/// Emptied buffers kept for reuse; more are freed.
const SPARE_BUFFERS: usize = 256;
/// A buffer grown past this (a huge message-store line) is freed, not kept for reuse.
const MAX_SPARE_BYTES: usize = 64 * 1024;

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

/// What the senders and the writer thread share.
#[derive(Debug)]
struct Queue {
    /// Lines waiting for the writer, in order.
    lines: ArrayQueue<Vec<u8>>,
    /// Emptied buffers on their way back to the senders.
    spare: ArrayQueue<Vec<u8>>,
    budget: ByteBudget,
    closing: AtomicBool,
    /// The writer is parked for up to [`IDLE_PARK`]: the next sender wakes it.
    idle: AtomicBool,
    writer: OnceLock<Thread>,
}

impl Queue {
    /// Keep an emptied buffer for the next line, unless it grew huge or enough are kept.
    fn recycle(&self, mut buf: Vec<u8>) {
        if buf.capacity() <= MAX_SPARE_BYTES {
            buf.clear();
            let _ = self.spare.push(buf);
        }
    }
}

/// One log stream: a bounded queue and its writer thread.
#[derive(Debug)]
pub struct Sink {
    q: Arc<Queue>,
    /// Lines dropped because the queue was full (in lines or in bytes).
    pub dropped: AtomicU64,
    /// Lines accepted.
    pub accepted: AtomicU64,
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
        let mut out = Output::open(target)?;
        let q = Arc::new(Queue {
            lines: ArrayQueue::new(capacity.max(1)),
            spare: ArrayQueue::new(SPARE_BUFFERS),
            budget: ByteBudget {
                queued: AtomicUsize::new(0),
                max: max_bytes,
            },
            closing: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            writer: OnceLock::new(),
        });
        let wq = q.clone();
        let thread = std::thread::Builder::new()
            .name(format!("aigw-log-{name}"))
            .spawn(move || write_loop(&wq, &mut out))?;
        let _ = q.writer.set(thread.thread().clone());
        Ok(Arc::new(Sink {
            q,
            dropped: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Queue one line (without its newline), copied into a recycled buffer. Never blocks and
    /// takes no lock: a full queue (in lines or in bytes) drops and counts it.
    pub fn send(&self, line: &[u8]) {
        let n = line.len().saturating_add(1);
        // Once closing, the writer may be gone: a late line is counted as dropped, not queued.
        if self.q.closing.load(Relaxed) || !self.q.budget.try_take(n) {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        // A fresh buffer gets room for longer lines than this one, so it rarely grows later.
        let mut buf =
            (self.q.spare.pop()).unwrap_or_else(|| Vec::with_capacity(line.len().max(MIN_BUFFER)));
        buf.extend_from_slice(line);
        match self.q.lines.push(buf) {
            Ok(()) => {
                self.accepted.fetch_add(1, Relaxed);
                // A plain load first: the swap (and the wake) happen once per idle spell.
                if self.q.idle.load(Relaxed) && self.q.idle.swap(false, SeqCst) {
                    if let Some(t) = self.q.writer.get() {
                        t.unpark();
                    }
                }
            }
            Err(buf) => {
                self.q.budget.give_back(n);
                self.q.recycle(buf);
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Bytes queued for the writer right now.
    pub fn queued_bytes(&self) -> usize {
        self.q.budget.queued.load(Relaxed)
    }

    /// Write out everything queued, flush and stop the thread (at shutdown).
    pub fn close(&self) {
        self.q.closing.store(true, SeqCst);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn write_loop(q: &Queue, out: &mut Output) {
    let mut empty_polls = 0u32;
    loop {
        // Take whatever is queued before one flush: one syscall per burst.
        let mut wrote = false;
        while let Some(line) = q.lines.pop() {
            out.line(&line);
            q.budget.give_back(line.len().saturating_add(1));
            q.recycle(line);
            wrote = true;
        }
        if wrote {
            out.flush();
            empty_polls = 0;
        } else if q.closing.load(SeqCst) {
            out.flush();
            return;
        } else if empty_polls < IDLE_AFTER_POLLS {
            empty_polls += 1;
            std::thread::park_timeout(BUSY_POLL);
        } else {
            // Say so before the last look: a sender that queues after it sees the flag and wakes
            // us; one that raced it waits at most IDLE_PARK.
            q.idle.store(true, SeqCst);
            if q.lines.is_empty() && !q.closing.load(SeqCst) {
                std::thread::park_timeout(IDLE_PARK);
            }
            q.idle.store(false, SeqCst);
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

    fn line(&mut self, line: &[u8]) {
        if let Target::File { max_bytes, .. } = self.target {
            if max_bytes > 0 && self.written > 0 && self.written + line.len() as u64 + 1 > max_bytes
            {
                self.rotate();
            }
        }
        if self
            .w
            .write_all(line)
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
    let mut out = Vec::with_capacity(24);
    write_rfc3339_ms(&mut out, unix_ms);
    String::from_utf8(out).unwrap_or_default()
}

/// [`rfc3339_ms`] appended to `out` (no allocation beyond `out`'s own growth).
pub fn write_rfc3339_ms(out: &mut Vec<u8>, unix_ms: u64) {
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
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    );
}

#[cfg(test)]
#[path = "logsink_tests.rs"]
mod tests;
