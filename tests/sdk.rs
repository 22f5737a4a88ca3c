//! The official OpenAI Python SDK (pinned in `scripts/sdk-env`, installed by `scripts/test`)
//! through the gateway: the Responses API (create, stream, the stream helper, retrieve, input
//! items, continuation, delete) and chat, as `OpenAI`, as `OpenAI` on Azure's v1 URL and as
//! `AzureOpenAI`, against each backend dialect.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use common::*;

both_drivers!(the_python_sdk_speaks_the_responses_api_in_every_style);

fn the_python_sdk_speaks_the_responses_api_in_every_style(d: Driver) {
    let gw = Gateway::start(d, THREE_DIALECTS);
    let url = format!("http://{}", gw.addr("listen"));
    let args = [url, "m-oa".into(), "m-az".into(), "m-v1".into()];
    run_sdk_script("responses.py", &args, 9);
}
