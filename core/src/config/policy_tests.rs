//! Loader tests of `[consumers]`, `[token_limit]`, `[metrics]` and `[log]`: values, defaults, errors.

use std::path::PathBuf;

use super::tests::{fails, parse, TAIL};
use super::*;
use crate::auth::hash_key;

const VAR: &str = "AIGW_POLICY_TEST_TEAM_A_KEY_5D1E";
const UNSET: &str = "AIGW_POLICY_TEST_SURELY_UNSET_8B20";

fn full() -> String {
    std::env::set_var(VAR, " sk-team-a\n");
    format!(
        r#"{TAIL}
[consumers.team-a]
keys = ["env:{VAR}", "a-literal-key"]
tokens_per_minute = 5000
token_quota = {{ tokens = 1000000, period = "month" }}
models = ["gpt-4o-mini"]

[consumers.b]
keys = ["kb"]
token_quota = {{ tokens = 7, period = "hour" }}

[token_limit]
tokens_per_minute = 10000
counter = "header:X-User-Id"
estimate_prompt_tokens = false

[metrics]
dimensions = ["consumer", "model", "backend", "client_ip", "user"]

[log]
access = "logs/access.log"
access_buffer = 16
[log.messages]
path = "messages.jsonl"
max_body_bytes = 1024
max_file_bytes = 4096
keep_files = 0
"#
    )
}

#[test]
fn every_new_key() {
    let c = parse(&full()).unwrap();
    let [b, a] = &c.consumers[..] else {
        panic!("two consumers")
    };
    assert_eq!((a.name.as_str(), b.name.as_str()), ("team-a", "b"));
    // The env value is trimmed; only hashes are kept.
    assert_eq!(
        a.key_hashes,
        [hash_key("sk-team-a"), hash_key("a-literal-key")]
    );
    assert_eq!(a.tokens_per_minute, Some(5000));
    let month = QuotaConfig {
        tokens: 1_000_000,
        period: QuotaPeriod::Month,
    };
    assert_eq!(a.quota, Some(month));
    assert_eq!(a.models, Some(vec!["gpt-4o-mini".to_owned()]));
    assert_eq!(
        (b.tokens_per_minute, b.quota.map(|q| q.period), &b.models),
        (None, Some(QuotaPeriod::Hour), &None)
    );
    assert!(!format!("{a:?}").contains("sk-team-a"));

    let t = c.token_limit.as_ref().unwrap();
    assert_eq!(
        (t.tokens_per_minute, &t.counter, t.estimate_prompt_tokens),
        (10000, &Counter::Header("x-user-id".into()), false)
    );
    let labels: Vec<&str> = c.metrics.dimensions.iter().map(|d| d.label()).collect();
    assert_eq!(
        labels,
        ["consumer", "model", "backend", "client_ip", "user"]
    );
    assert_eq!(
        c.log.access,
        AccessLog::File(PathBuf::from("logs/access.log"))
    );
    assert_eq!(c.log.access_buffer, 16);
    assert_eq!(
        c.log.messages,
        Some(MessageStoreConfig {
            path: PathBuf::from("messages.jsonl"),
            max_body_bytes: 1024,
            max_file_bytes: 4096,
            keep_files: 0,
        })
    );
}

#[test]
fn defaults_and_absence() {
    let c = parse(TAIL).unwrap();
    assert!(c.consumers.is_empty() && c.token_limit.is_none());
    assert_eq!(
        c.metrics.dimensions,
        [Dimension::Consumer, Dimension::Model, Dimension::Backend]
    );
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(
        (c.log.access.clone(), c.log.access_buffer),
        (AccessLog::Stdout, 8192)
    );
    let t = format!(
        "{TAIL}[token_limit]\ntokens_per_minute = 1\n[metrics]\ndimensions = []\n[log]\naccess = \"off\"\n[log.messages]\npath = \"m.jsonl\"\n"
    );
    let c = parse(&t).unwrap();
    let limit = c.token_limit.unwrap();
    assert_eq!(
        (limit.counter, limit.estimate_prompt_tokens),
        (Counter::Consumer, true)
    );
    assert!(c.metrics.dimensions.is_empty());
    assert_eq!(c.log.access, AccessLog::Off);
    let m = c.log.messages.unwrap();
    assert_eq!(
        (m.max_body_bytes, m.max_file_bytes, m.keep_files),
        (204_800, 100 << 20, 5)
    );
    let ip = parse(&format!(
        "{TAIL}[token_limit]\ntokens_per_minute = 5\ncounter = \"ip\"\n"
    ));
    assert_eq!(ip.unwrap().token_limit.unwrap().counter, Counter::Ip);
}

#[test]
fn consumer_errors() {
    let c = |body: &str| format!("{TAIL}[consumers.a]\n{body}");
    fails(
        &c("models = [\"x\"]\n"),
        5,
        "consumers.a",
        "missing key \"keys\"",
    );
    fails(&c("keys = []\n"), 6, "consumers.a.keys", "at least one key");
    fails(
        &c("keys = [\"k\", \" \"]\n"),
        6,
        "consumers.a.keys[1]",
        "must not be empty",
    );
    fails(
        &c(&format!("keys = [\"k\", \"env:{UNSET}\"]\n")),
        6,
        "consumers.a.keys[1]",
        &format!("environment variable {UNSET} is not set"),
    );
    std::env::set_var("AIGW_POLICY_TEST_EMPTY_3C7F", "");
    fails(
        &c("keys = [\"env:AIGW_POLICY_TEST_EMPTY_3C7F\"]\n"),
        6,
        "consumers.a.keys[0]",
        "environment variable AIGW_POLICY_TEST_EMPTY_3C7F is empty",
    );
    let dup = c("keys = [\"k1\", \"shared\"]\n[consumers.b]\nkeys = [\"x\",\n  \"shared\"]\n");
    fails(
        &dup,
        9,
        "consumers.b.keys[1]",
        "already used by consumers.a.keys[1]",
    );
    assert!(!parse(&dup).unwrap_err().message.contains("shared"));
    fails(
        &c("keys = [\"k\", \"k\"]\n"),
        6,
        "consumers.a.keys[1]",
        "already used",
    );
    fails(
        &c("keys = [\"k\"]\ntokens_per_minute = 0\n"),
        7,
        "consumers.a.tokens_per_minute",
        "at least 1",
    );
    fails(
        &c("keys = [\"k\"]\nmodels = []\n"),
        7,
        "consumers.a.models",
        "lists no model",
    );
    fails(
        &c("keys = [\"k\"]\nkey = \"x\"\n"),
        7,
        "consumers.a.key",
        "unknown key `key`",
    );
    fails(
        &format!("{TAIL}[consumers]\n"),
        5,
        "consumers",
        "defines no consumer",
    );
}

#[test]
fn quota_errors() {
    let q = |quota: &str| format!("{TAIL}[consumers.a]\nkeys = [\"k\"]\ntoken_quota = {quota}\n");
    fails(
        &q("{ tokens = 5, period = \"fortnight\" }"),
        7,
        "consumers.a.token_quota.period",
        "unknown period \"fortnight\"",
    );
    fails(
        &q("{ tokens = 5 }"),
        7,
        "consumers.a.token_quota",
        "missing key \"period\"",
    );
    fails(
        &q("{ period = \"day\" }"),
        7,
        "consumers.a.token_quota",
        "missing key \"tokens\"",
    );
    fails(
        &q("{ tokens = 0, period = \"day\" }"),
        7,
        "consumers.a.token_quota.tokens",
        "at least 1",
    );
    fails(
        &q("{ tokens = 1, period = \"week\", burst = 2 }"),
        7,
        "consumers.a.token_quota.burst",
        "unknown key",
    );
}

#[test]
fn token_limit_errors() {
    let t = |body: &str| format!("{TAIL}\n[token_limit]\ntokens_per_minute = 10\n{body}");
    fails(
        &t("counter = \"foo\"\n"),
        8,
        "token_limit.counter",
        "unknown counter \"foo\"",
    );
    fails(
        &t("counter = \"header:\"\n"),
        8,
        "token_limit.counter",
        "invalid header name",
    );
    fails(
        &t("counter = \"header:a b\"\n"),
        8,
        "token_limit.counter",
        "invalid header name",
    );
    fails(
        &format!("{TAIL}[token_limit]\ncounter = \"ip\"\n"),
        5,
        "token_limit",
        "missing key \"tokens_per_minute\"",
    );
    fails(
        &format!("{TAIL}[token_limit]\ntokens_per_minute = 0\n"),
        6,
        "token_limit.tokens_per_minute",
        "at least 1",
    );
    fails(
        &t("estimate = true\n"),
        8,
        "token_limit.estimate",
        "unknown key",
    );
}

#[test]
fn metrics_and_log_errors() {
    fails(
        &format!("{TAIL}[metrics]\ndimensions = [\"model\",\n  \"region\"]\n"),
        7,
        "metrics.dimensions[1]",
        "unknown dimension \"region\"",
    );
    fails(
        &format!("{TAIL}[metrics]\ndimensions = [\"model\", \"model\"]\n"),
        6,
        "metrics.dimensions[1]",
        "listed twice",
    );
    fails(
        &format!("{TAIL}[metrics]\nlabels = []\n"),
        6,
        "metrics.labels",
        "unknown key",
    );
    fails(
        &format!("{TAIL}[log]\naccess = \"\"\n"),
        6,
        "log.access",
        "must not be empty",
    );
    fails(
        &format!("{TAIL}[log]\naccess_buffer = 0\n"),
        6,
        "log.access_buffer",
        "at least 1",
    );
    fails(
        &format!("{TAIL}[log.messages]\nkeep_files = 1\n"),
        5,
        "log.messages",
        "missing key \"path\"",
    );
    fails(
        &format!("{TAIL}[log.messages]\npath = \"m\"\nmax_file_bytes = 0\n"),
        7,
        "log.messages.max_file_bytes",
        "at least 1",
    );
    fails(
        &format!("{TAIL}[log.messages]\npath = \"m\"\nmax_body_bytes = 0\n"),
        7,
        "log.messages.max_body_bytes",
        "at least 1",
    );
    fails(
        &format!("{TAIL}[log.messages]\npath = \"m\"\nrotate = 1\n"),
        7,
        "log.messages.rotate",
        "unknown key",
    );
}
