//! The `aigw` command line: `serve`, `check`, `mock` and `demo-config`. Wiring only; the logic
//! lives in `aigw-core` and `aigw-io`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aigw_core::config::{self, Config, FailMode, MockCompress, MockOptions, MockSpec, MockTls};
use aigw_io::runtime::DriverKind;
use aigw_io::workers::{run, Plan};
use clap::{Parser, Subcommand};

/// aigw: a thread-per-core AI gateway for OpenAI, Azure OpenAI and OpenAI-compatible servers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Without --config, serves a built-in demo in front of two built-in mocks.
    Serve {
        /// The TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file without serving it.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a mock OpenAI/Azure OpenAI upstream.
    Mock(MockArgs),
    /// Print the built-in demo config (a starting point for your own).
    DemoConfig,
}

#[derive(clap::Args)]
struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18001")]
    listen: SocketAddr,
    /// Region reported in x-ms-region and matched by simulation objects.
    #[arg(long, default_value = "mock")]
    region: String,
    /// Delay before every answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Content chunks in a streamed answer.
    #[arg(long, default_value_t = 5)]
    chunks: u32,
    /// Delay between streamed chunks.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Status of injected failures (needs --fail-rate or --fail-every).
    #[arg(long)]
    fail_status: Option<u16>,
    /// Fraction of requests that fail (0..1).
    #[arg(long, conflicts_with = "fail_every", requires = "fail_status")]
    fail_rate: Option<f64>,
    /// Fail every Nth request.
    #[arg(long, requires = "fail_status")]
    fail_every: Option<u64>,
    /// Retry-After seconds sent with injected 429s.
    #[arg(long, default_value_t = 5)]
    retry_after: u64,
    /// Compress answers: off, honour (as the request's Accept-Encoding asks), or always with
    /// gzip, deflate, br or zstd.
    #[arg(long, default_value = "off")]
    compress: String,
    /// Worker threads (0: one per CPU).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Serve HTTPS with this PEM certificate chain (leaf first; needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a log file or a collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => serve(config),
        Command::Check { config } => check(&config),
        Command::Mock(args) => mock(args),
        Command::DemoConfig => {
            print!("{}", config::DEMO_TOML);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aigw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Option<PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => config::load_file(p).map_err(|e| e.to_string()),
        None => Ok(config::demo()),
    }
}

fn serve(path: Option<PathBuf>) -> Result<(), String> {
    let cfg = load(&path)?;
    let driver = DriverKind::from_env()?;
    let plan = Plan {
        gateway: true,
        mocks: cfg.mocks.clone(),
        workers: cfg.gateway.workers,
        driver,
    };
    let banner = banner(&cfg, path.is_none(), driver);
    run(cfg, path, plan, move || println!("{banner}"))
}

fn banner(cfg: &Config, demo: bool, driver: DriverKind) -> String {
    let g = &cfg.gateway;
    let mut s = format!(
        "aigw listening on http://{} ({}, {} driver)",
        g.listen,
        plural(g.workers, "worker", "workers"),
        driver.name()
    );
    if let Some(a) = g.admin_listen {
        s += &format!(
            "\n  admin: http://{a}/healthz  http://{a}/metrics  http://{a}/backends  POST http://{a}/reload"
        );
    }
    for m in &cfg.mocks {
        let scheme = if m.tls.is_some() { "https" } else { "http" };
        s += &format!(
            "\n  mock {} (region {}) on {scheme}://{}",
            m.name, m.options.region, m.listen
        );
    }
    for r in &cfg.routes {
        s += &format!(
            "\n  route {}: http://{}{} -> backend {}",
            r.name, g.listen, r.prefix, cfg.backends[r.backend].name
        );
    }
    if demo {
        s += &format!(
            "\n\nThis is the built-in demo (no --config). Try:\n  curl http://{0}/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'\n  curl -N 'http://{0}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21' \\\n    -H 'content-type: application/json' -d '{{\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"stream\":true}}'\nPrint the demo config with `aigw demo-config`; run your own with `aigw serve --config FILE`.",
            g.listen
        );
    }
    s
}

/// `1 pool`, `2 pools`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn check(path: &Path) -> Result<(), String> {
    let cfg = config::load_file(path).map_err(|e| e.to_string())?;
    let mut counts = vec![
        plural(cfg.backends.len(), "backend", "backends"),
        plural(cfg.pools.len(), "pool", "pools"),
        plural(
            cfg.models.exact.len() + usize::from(cfg.models.fallback.is_some()),
            "model",
            "models",
        ),
        plural(cfg.mocks.len(), "mock", "mocks"),
    ];
    // Routes are counted only when there are any: a file without them reads as it always did.
    if !cfg.routes.is_empty() {
        counts.push(plural(cfg.routes.len(), "route", "routes"));
    }
    println!("{}: ok ({})", path.display(), counts.join(", "));
    Ok(())
}

fn mock(a: MockArgs) -> Result<(), String> {
    let fail = match (a.fail_status, a.fail_rate, a.fail_every) {
        (None, _, _) => FailMode::Never,
        (Some(_), Some(r), _) if (0.0..=1.0).contains(&r) => FailMode::Rate(r),
        (Some(_), Some(r), _) => return Err(format!("--fail-rate must be within 0..1, got {r}")),
        (Some(_), None, Some(0)) => return Err("--fail-every must be at least 1".into()),
        (Some(_), None, Some(n)) => FailMode::Every(n),
        (Some(_), None, None) => FailMode::Every(1),
    };
    let options = MockOptions {
        region: a.region.clone(),
        latency_ms: a.latency_ms,
        chunks: a.chunks,
        chunk_delay_ms: a.chunk_delay_ms,
        fail_status: a.fail_status,
        fail,
        retry_after_secs: a.retry_after,
        compress: MockCompress::parse(&a.compress).map_err(|e| format!("--compress: {e}"))?,
    };
    let workers = if a.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        a.workers
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(MockTls::load(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let spec = MockSpec {
        name: a.region.clone(),
        listen: a.listen,
        options,
        tls,
    };
    let cfg = config::demo();
    let driver = DriverKind::from_env()?;
    let plan = Plan {
        gateway: false,
        mocks: vec![spec],
        workers,
        driver,
    };
    let listen = a.listen;
    run(cfg, None, plan, move || {
        println!(
            "aigw mock (region {}) listening on {scheme}://{listen}",
            a.region
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_banner_reads_well() {
        let cfg = config::demo();
        let b = banner(&cfg, true, DriverKind::Legacy);
        // A URL with a query is quoted, or a shell would glob the `?`.
        for line in b.lines().filter(|l| l.contains("curl") && l.contains('?')) {
            assert!(line.contains("'http://"), "{line}");
        }
        assert!(b.contains("/backends"), "{b}");
        assert_eq!(plural(1, "worker", "workers"), "1 worker");
        assert_eq!(plural(2, "worker", "workers"), "2 workers");
        assert_eq!(plural(0, "mock", "mocks"), "0 mocks");
    }
}
