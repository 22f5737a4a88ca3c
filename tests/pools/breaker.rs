//! The circuit breaker, black-box: three failures open it, exactly one probe goes through once it
//! is due, a failed probe reopens it, a good one (from the backend restarted healthy) closes it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

use super::{
    assert_served, backend, backend_state, chat, config, mocked, only_backend, pool, total,
    total_at, wait_backend, warm,
};

both_drivers!(
    circuit_breaker_opens_probes_once_and_closes,
    breaker_removed_by_reload_while_open_releases_the_backend,
);

/// `aigw mock --listen ADDR ARGS…` at a fixed address (so a test can restart a backend in place),
/// killed on drop.
struct MockAt {
    child: Child,
    dir: TempDir,
}

impl MockAt {
    fn start(d: Driver, addr: SocketAddr, args: &[&str]) -> MockAt {
        let listen = addr.to_string();
        let dir = TempDir::new("mock-at");
        let log = std::fs::File::create(dir.path("mock.log")).expect("log file");
        let child = Command::new(AIGW)
            .args(["mock", "--listen", &listen])
            .args(args)
            .env("AIGW_DRIVER", d.env())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn aigw mock");
        let mut m = MockAt { child, dir };
        // Generous: on a loaded machine a debug binary can take a while to come up.
        let deadline = Instant::now() + 3 * START_LIMIT;
        loop {
            let up = Client::try_connect(addr).is_ok_and(|mut c| {
                c.set_timeout(Duration::from_secs(1));
                c.send(&request("GET", "/mock/stats", &[], b""));
                c.try_read_response().is_ok_and(|r| r.status == 200)
            });
            if up {
                return m;
            }
            let exited = m.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "aigw mock on {addr} not ready ({exited:?}): {}",
                std::fs::read_to_string(m.dir.path("mock.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for MockAt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BREAKER: &str = "[backends.x.circuit_breaker]
failures = 3
window = \"5m\"
status = [500]
open_for = \"2s\"

";

fn transitions(gw: &Gateway, to: &str) -> f64 {
    gw.metric(&format!(
        "aigw_breaker_transitions_total{{backend=\"x\",to=\"{to}\"}}"
    ))
}

/// `x` is a separate `aigw mock` (so it can be restarted healthy on the same port) guarded by a
/// breaker; `y` (priority 2) serves while it is open. The pool does not bench (bench_for = 0s):
/// only the breaker keeps traffic away.
fn circuit_breaker_opens_probes_once_and_closes(d: Driver) {
    let x_addr = free_addr();
    let failing = MockAt::start(
        d,
        x_addr,
        &[
            "--fail-status",
            "500",
            "--fail-every",
            "1",
            "--latency-ms",
            "300",
        ],
    );
    let members = "{ backend = \"x\", priority = 1 }, { backend = \"y\", priority = 2 }";
    let text = config(
        2,
        &format!(
            "{}{BREAKER}{}{}",
            backend("x"),
            mocked("y", ""),
            pool("bench_for = \"0s\"", members)
        ),
    );
    let gw = Gateway::start_with(d, &text, &[("x", x_addr)]);
    warm(&gw, "y");

    // Three failures inside the window open it.
    let mut t3 = Instant::now();
    for i in 1..=3 {
        assert_eq!(
            backend_state(&gw, "x")["breaker"],
            "closed",
            "before failure {i}"
        );
        t3 = Instant::now();
        assert_served(&chat(&gw), "y", 2);
    }
    assert_eq!(total_at(x_addr), 3);
    let b = backend_state(&gw, "x");
    assert_eq!(
        (&b["breaker"], &b["available"]),
        (&Value::from("open"), &Value::from(false)),
        "{b}"
    );
    assert_eq!(transitions(&gw, "open"), 1.0);

    // While open, its counter is frozen: it opened after t3 + 300 ms (the mock's latency), for 2 s.
    let (_, late) = only_backend(
        &gw,
        "y",
        t3,
        Duration::from_millis(1500),
        Duration::from_millis(2300),
    );
    assert_eq!(late, 0, "machine too slow: an answer took over 0.8 s");
    assert_eq!(total_at(x_addr), 3, "an open breaker let traffic through");
    assert_eq!(backend_state(&gw, "x")["breaker"], "open");

    // Due: exactly one of several concurrent requests (new connections, both workers) probes;
    // the probe takes 300 ms, the others go to y meanwhile. The probe fails: open again.
    wait_backend(&gw, "x", Duration::from_secs(5), |b| b["available"] == true);
    let answers: Vec<Response> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| chat(&gw))).collect();
        hs.into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let attempts: Vec<&str> = answers
        .iter()
        .map(|r| r.header("x-aigw-attempts").unwrap_or("?"))
        .collect();
    assert!(
        answers
            .iter()
            .all(|r| r.status == 200 && r.header("x-aigw-backend") == Some("y")),
        "{attempts:?}"
    );
    assert_eq!(
        attempts.iter().filter(|a| **a == "2").count(),
        1,
        "one probe, then y: {attempts:?}"
    );
    assert_eq!(total_at(x_addr), 4, "exactly one probe");
    assert_eq!(
        backend_state(&gw, "x")["breaker"],
        "open",
        "a failed probe reopens"
    );
    assert_eq!(
        (transitions(&gw, "half_open"), transitions(&gw, "open")),
        (1.0, 2.0)
    );

    // The backend recovers (restarted without faults on the same port): the next probe closes it.
    drop(failing);
    let healthy = MockAt::start(d, x_addr, &[]);
    wait_backend(&gw, "x", Duration::from_secs(5), |b| b["available"] == true);
    assert_served(&chat(&gw), "x", 1);
    let b = backend_state(&gw, "x");
    assert_eq!(
        (&b["breaker"], &b["available"]),
        (&Value::from("closed"), &Value::from(true)),
        "{b}"
    );
    let t = |to| transitions(&gw, to);
    assert_eq!((t("open"), t("half_open"), t("closed")), (2.0, 2.0, 1.0));
    for _ in 0..3 {
        assert_served(&chat(&gw), "x", 1);
    }
    assert_eq!(total_at(x_addr), 4, "the restarted mock counts from 0");
    drop(healthy);
}

/// A reload that drops the breaker of an open backend (same name and URL: its state is kept) must
/// not leave it held: once the old open period ends, it is tried again, failing or not.
fn breaker_removed_by_reload_while_open_releases_the_backend(d: Driver) {
    let members = "{ backend = \"x\", priority = 1 }, { backend = \"y\", priority = 2 }";
    let with = |breaker: &str| {
        let x = mocked("x", "fail_status = 500\nfail_every = 1");
        config(
            2,
            &format!(
                "{x}{breaker}{}{}",
                mocked("y", ""),
                pool("bench_for = \"0s\"", members)
            ),
        )
    };
    let mut gw = Gateway::start(d, &with(BREAKER));
    for _ in 0..3 {
        assert_served(&chat(&gw), "y", 2);
    }
    assert_eq!(backend_state(&gw, "x")["breaker"], "open");
    gw.rewrite(&with(""));
    let r = gw.admin("POST", "/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    wait_backend(&gw, "x", Duration::from_secs(5), |b| b["available"] == true);
    // x still fails: each request tries it (no breaker, no bench) and falls over to y.
    for _ in 0..3 {
        assert_served(&chat(&gw), "y", 2);
    }
    assert_eq!(
        total(&gw, "x"),
        6,
        "x stayed out after its breaker was removed"
    );
    assert_eq!(backend_state(&gw, "x")["breaker"], "closed");
}
