//! Heap allocations per request through the real gateway, in process, over loopback.
//!
//! A counting global allocator wraps the system one. The bench's own threads (the client and a
//! fixed upstream written here, so no tokenizer or mock logic is counted) mark themselves
//! excluded; every other thread of the process is the gateway's (its worker, the access-log
//! writer, its background threads), and each of their allocations counts. Two gateways run side
//! by side, one worker each:
//!
//! - **bare**: no consumers, access log off;
//! - **full chain**: a consumer key, a token limit with prompt estimation, token metrics by
//!   consumer, model and backend, the access log to a file.
//!
//! Each is sent non-streamed chat requests after a warm-up (allocations per request), and streams
//! of two lengths (the difference per extra event is the steady-state cost of an SSE event).
//! Run: `cargo bench -p aigw-benches --bench allocs` (`ALLOCS_N` requests per row, default 20000).
//! Each row also shows the CPU time the gateway workers spent per request. Instead of the table,
//! `ALLOCS_TRACE=bare|full|sse` prints a backtrace of every allocation of one request, and
//! `ALLOCS_CPU=PAD` only the workers' CPU per request (p10, p50 of 20 runs) for bodies `PAD`
//! bytes longer.
// A failed bench setup may panic.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

#[path = "allocs/upstream.rs"]
mod upstream;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use aigw_benches::loopback::{free_port, wait_up, Client};
use aigw_core::config::parse_str;
use aigw_io::runtime::DriverKind;
use aigw_io::workers::{run, Plan};

/// The system allocator, counting the allocations (and reallocations) of counted threads.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Print a backtrace of every counted allocation (development aid, see `ALLOCS_TRACE`).
static TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread is the bench's own (client, upstream): not counted.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
    /// Inside the tracer: its own allocations are not traced again.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if EXCLUDED.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    ALLOCS.fetch_add(1, Relaxed);
    if TRACE.load(Relaxed) && !TRACING.try_with(|t| t.replace(true)).unwrap_or(true) {
        let bt = std::backtrace::Backtrace::force_capture();
        eprintln!(
            "--- allocation on {:?}\n{bt}",
            std::thread::current().name()
        );
        let _ = TRACING.try_with(|t| t.set(false));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// (and the tracer, which allocates through this same allocator with its reentry guard set) has
// no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Mark the calling thread as the bench's own.
pub(crate) fn exclude_this_thread() {
    EXCLUDED.with(|e| e.set(true));
}

/// Start a gateway in this process (one worker) in front of the upstream at `up`; `extra` is
/// appended to its config. Returns its address.
fn gateway(up: SocketAddr, extra: &str) -> SocketAddr {
    let port = free_port();
    let toml = format!(
        "[gateway]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"off\"\nworkers = 1\n\
         [backends.up]\nurl = \"http://{up}\"\n\
         [pools.p]\nmembers = [{{ backend = \"up\" }}]\n[models]\n\"gpt-4o-mini\" = \"p\"\n{extra}"
    );
    let cfg = parse_str(&toml, None).expect("bench config");
    let plan = Plan {
        gateway: true,
        mocks: Vec::new(),
        workers: 1,
        driver: DriverKind::from_env().expect("AIGW_DRIVER"),
    };
    std::thread::spawn(move || run(cfg, None, plan, || {}));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_up(addr);
    addr
}

/// A chat request, streamed or not, with `key` when given; `pad` more bytes in its user message.
fn request(stream_events: Option<usize>, key: Option<&str>, pad: usize) -> Vec<u8> {
    let user = format!(
        "Say hello to the gateway in five words.{}",
        " x".repeat(pad / 2)
    );
    let body = match stream_events {
        Some(_) => format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{user}"}}],"max_tokens":50,"stream":true,"stream_options":{{"include_usage":true}}}}"#
        ),
        None => format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{user}"}}],"max_tokens":50}}"#
        ),
    };
    let mut head =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            .to_string();
    if let Some(k) = key {
        head += &format!("api-key: {k}\r\n");
    }
    if let Some(n) = stream_events {
        head += &format!("x-events: {n}\r\n");
    }
    format!("{head}content-length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// Allocations per call of `req` over `n` calls (after `warm` unmeasured ones), with the
/// gateway's background allocations settled before and after; and the CPU time the gateway's
/// workers spent per call, in microseconds.
fn per_call(client: &mut Client, req: &[u8], warm: usize, n: usize) -> (f64, f64) {
    for _ in 0..warm {
        client.call(req);
    }
    std::thread::sleep(Duration::from_millis(300)); // the log writer catches up
    let (before, cpu) = (ALLOCS.load(Relaxed), worker_cpu_ns());
    for _ in 0..n {
        client.call(req);
    }
    let cpu = worker_cpu_ns() - cpu;
    std::thread::sleep(Duration::from_millis(300));
    let allocs = (ALLOCS.load(Relaxed) - before) as f64 / n as f64;
    (allocs, cpu as f64 / 1000.0 / n as f64)
}

/// CPU time of the gateways' worker threads so far, in nanoseconds (the scheduler's own
/// accounting, `/proc/self/task/*/schedstat`).
fn worker_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("aigw-worker"))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn main() {
    exclude_this_thread();
    let n: usize = std::env::var("ALLOCS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let up = upstream::start();
    let dir = std::env::temp_dir().join(format!("aigw-allocs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let access = dir.join("access.log");
    let bare = gateway(up, "[log]\naccess = \"off\"\n");
    let full = gateway(
        up,
        &format!(
            "[log]\naccess = \"{}\"\n\
             [consumers.team-a]\nkeys = [\"bench-key\"]\n\
             [token_limit]\ntokens_per_minute = 1000000000000\nestimate_prompt_tokens = true\n\
             [metrics]\ndimensions = [\"consumer\", \"model\", \"backend\"]\n",
            access.display()
        ),
    );
    let plain = request(None, None, 0);
    let keyed = request(None, Some("bench-key"), 0);
    if let Ok(which) = std::env::var("ALLOCS_TRACE") {
        let (addr, req) = match which.as_str() {
            "bare" => (bare, plain.clone()),
            "sse" => (full, request(Some(8), Some("bench-key"), 0)),
            _ => (full, keyed.clone()),
        };
        let mut c = Client::connect(addr);
        for _ in 0..200 {
            c.call(&req);
        }
        std::thread::sleep(Duration::from_millis(300));
        TRACE.store(true, Relaxed);
        c.call(&req);
        std::thread::sleep(Duration::from_millis(300));
        TRACE.store(false, Relaxed);
        return;
    }

    let idle = {
        let before = ALLOCS.load(Relaxed);
        std::thread::sleep(Duration::from_secs(1));
        ALLOCS.load(Relaxed) - before
    };
    if let Ok(pad) = std::env::var("ALLOCS_CPU") {
        // Only the gateway workers' CPU per request, for bodies of about `pad` bytes more:
        // 20 short runs each, the median and the 10th percentile.
        let pad: usize = pad.parse().unwrap_or(0);
        for (name, addr, key) in [
            ("bare", bare, None),
            ("full chain", full, Some("bench-key")),
        ] {
            let req = request(None, key, pad);
            let mut c = Client::connect(addr);
            per_call(&mut c, &req, 2_000, 10);
            let mut runs: Vec<f64> = (0..20)
                .map(|_| per_call(&mut c, &req, 0, n / 20).1)
                .collect();
            runs.sort_by(f64::total_cmp);
            println!(
                "{name}, request of {} bytes: worker CPU per request p10 {:.2} µs, p50 {:.2} µs",
                req.len(),
                runs[2],
                runs[10]
            );
        }
        return;
    }
    let t0 = Instant::now();
    let warm = 2_000.min(n);
    let mut c = Client::connect(bare);
    let bare_req = per_call(&mut c, &plain, warm, n);
    let mut c = Client::connect(full);
    let full_req = per_call(&mut c, &keyed, warm, n);
    // Streams of `short` and `long` events: the difference per event is the steady-state cost.
    let (short, long) = (16usize, 1_016usize);
    let streams = (n / 100).max(20);
    let mut sse = Vec::new();
    for (name, addr, key) in [
        ("bare", bare, None),
        ("full chain", full, Some("bench-key")),
    ] {
        let mut c = Client::connect(addr);
        let a = per_call(&mut c, &request(Some(short), key, 0), 20, streams);
        let b = per_call(&mut c, &request(Some(long), key, 0), 20, streams);
        let per_event = (b.0 - a.0) / (long - short) as f64;
        let cpu = (b.1 - a.1) / (long - short) as f64;
        sse.push((name, a, per_event, cpu));
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!("allocations per request ({n} requests after {warm} warm-up, {streams} streams per SSE row)");
    println!("| path | allocations | worker CPU µs |");
    println!("|---|---:|---:|");
    println!(
        "| bare, non-streamed | {:.2} | {:.1} |",
        bare_req.0, bare_req.1
    );
    println!(
        "| full chain, non-streamed | {:.2} | {:.1} |",
        full_req.0, full_req.1
    );
    for (name, per_stream, per_event, cpu) in sse {
        println!(
            "| {name}, stream of {short} events (per stream) | {:.2} | {:.1} |",
            per_stream.0, per_stream.1
        );
        println!("| {name}, per extra SSE event | {per_event:.3} | {cpu:.2} |");
    }
    println!(
        "gateway allocations in 1 s idle: {idle}; run took {:.1?}",
        t0.elapsed()
    );
}
