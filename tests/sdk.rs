//! The official OpenAI Python SDK (pinned in `scripts/sdk-env`, installed by `scripts/test`)
//! through the gateway: the Responses API (create, stream, the stream helper, retrieve, input
//! items, continuation, delete) and chat, as `OpenAI`, as `OpenAI` on Azure's v1 URL and as
//! `AzureOpenAI`, against each backend dialect.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

both_drivers!(the_python_sdk_speaks_the_responses_api_in_every_style);

fn the_python_sdk_speaks_the_responses_api_in_every_style(d: Driver) {
    let python = sdk_python();
    let gw = Gateway::start(d, THREE_DIALECTS);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/responses.py");
    let url = format!("http://{}", gw.addr("listen"));
    let out = Command::new(&python)
        .arg(&script)
        .args([url.as_str(), "m-oa", "m-az", "m-v1"])
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all ok"), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        9,
        "{stdout}"
    );
}
