//! The official OpenAI Python SDK (pinned in `scripts/sdk-env`) reads replayed streams: chat with
//! `stream_options.include_usage` (same text, `finish_reason` "stop", the usage chunk), a plain
//! call served from a stored stream, a semantic hit, and the Responses API's typed events
//! (and the SDK's stream helper) replayed. The checks are in `tests/sdk/cache.py`.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use crate::setup::*;

both_drivers!(the_python_sdk_parses_replayed_streams);

fn the_python_sdk_parses_replayed_streams(d: Driver) {
    let python = sdk_python();
    let gw = Setup {
        llm_mock: "chunks = 7".into(),
        ..Setup::with(CacheCfg {
            vary_by: "[]",
            ..CacheCfg::default()
        })
    }
    .start(d);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/cache.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([
            format!("http://{}", gw.addr("listen")),
            format!("http://{}", gw.addr("admin")),
            "m".to_string(),
        ])
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all ok"), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        5,
        "{stdout}"
    );
}
