//! Shared helpers for the black-box tests: spawning `aigw` children on free loopback ports and
//! waiting for them; the raw HTTP/1.1 client is in `http.rs`.
//!
//! Every test runs once per monoio driver (`AIGW_DRIVER=uring` and `AIGW_DRIVER=legacy`), through
//! [`both_drivers!`].

#![allow(dead_code, unreachable_pub, missing_docs)] // each test binary uses a subset
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

mod http;
pub use http::*;

/// The aigw binary under test.
pub const AIGW: &str = env!("CARGO_BIN_EXE_aigw");
/// How long a child gets to become healthy.
pub const START_LIMIT: Duration = Duration::from_secs(10);

/// The monoio driver a child runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Legacy,
}

impl Driver {
    /// The `AIGW_DRIVER` value.
    pub fn env(self) -> &'static str {
        match self {
            Driver::Uring => "uring",
            Driver::Legacy => "legacy",
        }
    }

    /// The name aigw prints in its banner.
    fn banner(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring driver",
            Driver::Legacy => "legacy driver",
        }
    }
}

/// `both_drivers!(a, b)` turns each `fn a(d: Driver)` into the tests `a::uring` and `a::legacy`.
#[macro_export]
macro_rules! both_drivers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn uring() {
                super::$name($crate::common::Driver::Uring)
            }
            #[test]
            fn legacy() {
                super::$name($crate::common::Driver::Legacy)
            }
        }
    )*};
}

/// Two in-process mocks, one backend per dialect, one model per backend, no `"*"`.
///
/// `oa` (dialect openai, key `oa-backend-key`) serves `m-oa`; `az` (dialect azure, key
/// `az-backend-key`, api_version `2024-06-01`) serves `m-az`. Mock regions are the backend names,
/// so a reply says which mock wrote it ("Mock response from oa.").
pub const TWO_DIALECTS: &str = r#"
[gateway]
listen = "{addr:listen}"
admin_listen = "{addr:admin}"
workers = 1

[mocks.oa]
listen = "{addr:oa}"
region = "oa"

[mocks.az]
listen = "{addr:az}"
region = "az"

[backends.oa]
url = "http://{addr:oa}"
dialect = "openai"
api_key = "oa-backend-key"

[backends.az]
url = "http://{addr:az}"
dialect = "azure"
api_key = "az-backend-key"
api_version = "2024-06-01"

[pools.p_oa]
members = [{ backend = "oa" }]

[pools.p_az]
members = [{ backend = "az" }]

[models]
"m-oa" = "p_oa"
"m-az" = "p_az"
"#;

/// Three in-process mocks, one backend per dialect (`oa` openai, `az` azure with api_version
/// `2024-06-01`, `v1` azure-v1), one model each (`m-oa`, `m-az`, `m-v1`); mock regions are the
/// backend names.
pub const THREE_DIALECTS: &str = r#"
[gateway]
listen = "{addr:listen}"
admin_listen = "{addr:admin}"
workers = 1

[mocks.oa]
listen = "{addr:oa}"
region = "oa"

[mocks.az]
listen = "{addr:az}"
region = "az"

[mocks.v1]
listen = "{addr:v1}"
region = "v1"

[backends.oa]
url = "http://{addr:oa}"
dialect = "openai"
api_key = "oa-backend-key"

[backends.az]
url = "http://{addr:az}"
dialect = "azure"
api_key = "az-backend-key"
api_version = "2024-06-01"

[backends.v1]
url = "http://{addr:v1}"
dialect = "azure-v1"
api_key = "v1-backend-key"

[pools.p_oa]
members = [{ backend = "oa" }]

[pools.p_az]
members = [{ backend = "az" }]

[pools.p_v1]
members = [{ backend = "v1" }]

[models]
"m-oa" = "p_oa"
"m-az" = "p_az"
"m-v1" = "p_v1"
"#;

// ---------------------------------------------------------------------------------------------
// Ports, files, processes
// ---------------------------------------------------------------------------------------------

/// Ports handed out in this test process, so two tests running in parallel never share one
/// (aigw binds with SO_REUSEPORT, so a clash would not even fail: it would silently mix).
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
static SEQ: AtomicU64 = AtomicU64::new(0);

/// A loopback address nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = l.local_addr().expect("local_addr");
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr.port())
        {
            return addr;
        }
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("aigw-it-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write `text` to `path` atomically (a reload must never see half a file).
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// A child process, killed on drop; its stdout and stderr go to files for failure messages.
pub struct Proc {
    pub child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(dir: &TempDir, tag: &str, driver: Driver, args: &[&str]) -> Proc {
        let stdout = dir.path(&format!("{tag}.stdout"));
        let stderr = dir.path(&format!("{tag}.stderr"));
        let child = Command::new(AIGW)
            .args(args)
            .env("AIGW_DRIVER", driver.env())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn aigw");
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Send a signal by name (`HUP`, `TERM`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
        assert!(
            st.map(|s| s.success()).unwrap_or(false),
            "kill -{sig} {} failed",
            self.pid()
        );
    }

    /// Wait until `probe` says ready; false if the child exited first or time ran out.
    fn wait_ready(
        &mut self,
        driver: Driver,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if !self.alive() {
                return Err(format!(
                    "aigw exited early:\n{}{}",
                    self.stdout(),
                    self.stderr()
                ));
            }
            if probe() {
                // The banner (printed once every listener is bound) names the driver in use: make
                // sure we test the one we asked for, not a silent fallback.
                while Instant::now() < deadline {
                    let out = self.stdout();
                    if out.contains(driver.banner()) {
                        return Ok(());
                    }
                    if out.contains(" driver)") {
                        panic!("asked for AIGW_DRIVER={}, got: {out}", driver.env());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Err(format!(
            "aigw not ready within {START_LIMIT:?}:\n{}{}",
            self.stdout(),
            self.stderr()
        ))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replace every `{addr:NAME}` in `template` with the address of NAME, allocating new ones.
fn render(template: &str, addrs: &mut BTreeMap<String, SocketAddr>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{addr:") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("unterminated {addr:NAME}") + i;
        let name = &rest[i + 6..end];
        let addr = *addrs.entry(name.to_string()).or_insert_with(free_addr);
        out.push_str(&addr.to_string());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A running `aigw serve --config FILE` on free loopback ports.
///
/// The config is a template: `{addr:listen}` and `{addr:admin}` are the gateway's listeners, any
/// other `{addr:NAME}` gets its own free port (e.g. a `[mocks.NAME]` listener and the backend URL
/// pointing at it).
pub struct Gateway {
    pub proc: Proc,
    pub driver: Driver,
    pub config: PathBuf,
    pub addrs: BTreeMap<String, SocketAddr>,
    _dir: TempDir,
}

impl Gateway {
    pub fn start(driver: Driver, template: &str) -> Gateway {
        Gateway::start_with(driver, template, &[])
    }

    /// As [`start`](Self::start), with some addresses fixed (e.g. of a separate `aigw mock`).
    pub fn start_with(driver: Driver, template: &str, fixed: &[(&str, SocketAddr)]) -> Gateway {
        let mut last = String::new();
        // A port picked free can be taken before aigw binds it: retry with fresh ones.
        for _ in 0..3 {
            let dir = TempDir::new("gw");
            let mut addrs: BTreeMap<String, SocketAddr> =
                fixed.iter().map(|(n, a)| (n.to_string(), *a)).collect();
            let text = render(template, &mut addrs);
            let config = dir.path("aigw.toml");
            write_atomic(&config, &text);
            let mut proc = Proc::spawn(
                &dir,
                "serve",
                driver,
                &["serve", "--config", config.to_str().unwrap()],
            );
            let admin = addrs["admin"];
            match proc.wait_ready(driver, || health(admin) == Some(200)) {
                Ok(()) => {
                    return Gateway {
                        proc,
                        driver,
                        config,
                        addrs,
                        _dir: dir,
                    }
                }
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addrs[name]
    }

    /// A new client connection to the gateway listener.
    pub fn client(&self) -> Client {
        Client::connect(self.addr("listen"))
    }

    /// One request on a fresh connection.
    pub fn call(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.client().call(method, target, headers, body)
    }

    /// Rewrite the config file from `template` (same addresses for the same names).
    pub fn rewrite(&mut self, template: &str) {
        let text = render(template, &mut self.addrs);
        write_atomic(&self.config, &text);
    }

    /// `GET path` on the admin port.
    pub fn admin(&self, method: &str, path: &str) -> Response {
        Client::connect(self.addr("admin")).call(method, path, &[], b"")
    }

    /// The value of an unlabelled counter or gauge in `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let r = self.admin("GET", "/metrics");
        assert_eq!(r.status, 200);
        let text = r.text();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
            .trim()
            .parse()
            .expect("metric value")
    }

    /// The `/backends` entry of backend `name`.
    pub fn backend(&self, name: &str) -> Value {
        let v = self.admin("GET", "/backends").json();
        v["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .find(|b| b["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    }

    /// Poll `/backends` until `cond` holds for `name` and return that entry; panics after `limit`.
    pub fn wait_backend(
        &self,
        name: &str,
        limit: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let b = self.backend(name);
            if cond(&b) {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "backend {name} never reached the expected state: {b}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `/metrics` satisfies `ok` within 5 s (a request is counted just after it ends).
    pub fn metrics_within(&self, ok: impl Fn(&str) -> bool) -> bool {
        let t0 = Instant::now();
        loop {
            if ok(&self.admin("GET", "/metrics").text()) {
                return true;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The requests the mock listening at `{addr:NAME}` recorded, oldest first.
    pub fn mock_requests(&self, name: &str) -> Vec<Value> {
        mock_requests(self.addr(name))
    }

    pub fn mock_reset(&self, name: &str) {
        let r = Client::connect(self.addr(name)).call("POST", "/mock/reset", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// The status of `GET /healthz` at `admin`, if it answered.
pub fn health(admin: SocketAddr) -> Option<u16> {
    let mut c = Client::try_connect(admin).ok()?;
    c.set_timeout(Duration::from_secs(1));
    c.send(&request("GET", "/healthz", &[], b""));
    c.try_read_response().ok().map(|r| r.status)
}

/// The requests recorded by the mock at `addr`.
pub fn mock_requests(addr: SocketAddr) -> Vec<Value> {
    let r = Client::connect(addr).call("GET", "/mock/requests", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["requests"]
        .as_array()
        .expect("requests array")
        .clone()
}

/// The Python with the official OpenAI SDK the SDK tests drive: `AIGW_SDK_PYTHON`, else the venv
/// `scripts/sdk-env` makes (it installs the pinned `openai` package from PyPI once).
pub fn sdk_python() -> PathBuf {
    if let Some(p) = std::env::var_os("AIGW_SDK_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/sdk-env"))
        .output()
        .expect("run scripts/sdk-env");
    assert!(
        out.status.success(),
        "scripts/sdk-env could not install the OpenAI SDK (it needs PyPI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Run `tests/sdk/SCRIPT` with the SDK's Python and `args`; it must exit 0, print "all ok" and
/// exactly `oks` lines starting "ok ". Returns its stdout.
pub fn run_sdk_script(script: &str, args: &[String], oks: usize) -> String {
    let python = sdk_python();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/sdk")
        .join(script);
    let out = Command::new(&python)
        .arg(&path)
        .args(args)
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all ok"), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        oks,
        "{stdout}"
    );
    stdout
}

/// A running `aigw mock --listen ADDR ARGS...`.
pub struct MockProc {
    pub proc: Proc,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl MockProc {
    pub fn start(driver: Driver, args: &[&str]) -> MockProc {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = TempDir::new("mock");
            let addr = free_addr();
            let listen = addr.to_string();
            let mut all = vec!["mock", "--listen", &listen];
            all.extend_from_slice(args);
            let mut proc = Proc::spawn(&dir, "mock", driver, &all);
            let ready = || {
                Client::try_connect(addr).is_ok_and(|mut c| {
                    c.set_timeout(Duration::from_secs(1));
                    c.send(&request("GET", "/mock/stats", &[], b""));
                    c.try_read_response().is_ok_and(|r| r.status == 200)
                })
            };
            // `aigw mock` prints no driver banner; check the process is up only.
            let deadline = Instant::now() + START_LIMIT;
            while Instant::now() < deadline && proc.alive() && !ready() {
                std::thread::sleep(Duration::from_millis(30));
            }
            if proc.alive() && ready() {
                return MockProc {
                    proc,
                    addr,
                    _dir: dir,
                };
            }
            last = format!("aigw mock not ready:\n{}{}", proc.stdout(), proc.stderr());
        }
        panic!("{last}");
    }
}
