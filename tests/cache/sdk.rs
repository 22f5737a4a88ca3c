//! The official OpenAI Python SDK (pinned in `scripts/sdk-env`) reads replayed streams: chat with
//! `stream_options.include_usage` (same text, `finish_reason` "stop", the usage chunk), a plain
//! call served from a stored stream, a semantic hit, and the Responses API's typed events
//! (and the SDK's stream helper) replayed. The checks are in `tests/sdk/cache.py`.

use crate::common::*;
use crate::setup::*;

both_drivers!(the_python_sdk_parses_replayed_streams);

fn the_python_sdk_parses_replayed_streams(d: Driver) {
    let gw = Setup {
        llm_mock: "chunks = 7".into(),
        ..Setup::with(CacheCfg {
            vary_by: "[]",
            ..CacheCfg::default()
        })
    }
    .start(d);
    let args = [
        format!("http://{}", gw.addr("listen")),
        format!("http://{}", gw.addr("admin")),
        "m".to_string(),
    ];
    run_sdk_script("cache.py", &args, 5);
}
