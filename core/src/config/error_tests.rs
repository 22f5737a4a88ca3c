//! Loader error tests: every kind of error names the file, the right line and the key path.

use std::path::Path;

use super::tests::{fails, parse, TAIL};
use super::*;

#[test]
fn syntax_type_and_unknown_key_errors() {
    fails(
        "[gateway]\nlisten = \"127.0.0.1:1\n",
        2,
        "gateway.listen",
        "string",
    );
    fails(
        "[gateway]\nworkers = \"x\"\n",
        2,
        "gateway.workers",
        "invalid type",
    );
    fails(
        "# hi\n[gateway]\n\nlisten_on = \"x\"\n",
        4,
        "gateway.listen_on",
        "unknown key `listen_on`",
    );
    fails(
        "[frontend]\nx = 1\n",
        1,
        "frontend",
        "unknown key `frontend`",
    );
    fails(&format!("{TAIL}[pools.q]\nmembers = [{{ backend = \"a\" }}, {{ backend = \"a\", weight = -1 }}]\n"),
        6, "pools.q.members[1].weight", "-1");
    fails(
        &format!("{TAIL}[backends.a.circuit_breaker]\nfailure = 3\n"),
        6,
        "backends.a.circuit_breaker.failure",
        "unknown key",
    );
    fails(
        &format!("{TAIL}[pools.p2]\nretry_on = [true]\n"),
        6,
        "pools.p2.retry_on[0]",
        "status",
    );
    fails(
        "[gateway]\nlisten = \"a\"\nlisten = \"b\"\n",
        3,
        "gateway.listen",
        "duplicate key",
    );
}

#[test]
fn semantic_errors() {
    fails(
        &TAIL.replace(
            "url = \"http://127.0.0.1:1\"",
            "url = \"http://127.0.0.1:1\"\ndialect = \"x\"",
        ),
        3,
        "backends.a.dialect",
        r#"unknown dialect "x" (expected "openai", "azure" or "azure-v1")"#,
    );
    fails(
        &TAIL.replace("\"a\" }]", "\"a\" }, { backend = \"ghost\" }]"),
        4,
        "pools.p.members[1].backend",
        "unknown backend \"ghost\"",
    );
    fails(
        &format!("{TAIL}[models]\n\"gpt-4o\" = \"chat\"\n"),
        6,
        "models.gpt-4o",
        "unknown pool \"chat\"",
    );
    fails(
        &TAIL.replace("http://127.0.0.1:1", "ftp://h"),
        2,
        "backends.a.url",
        "invalid url",
    );
    fails(
        &TAIL.replace("127.0.0.1:1", "no-such-host.invalid"),
        2,
        "backends.a.url",
        "cannot resolve",
    );
    fails(
        &TAIL.replace("\"a\" }", "\"a\", weight = 0 }"),
        4,
        "pools.p.members[0].weight",
        "at least 1",
    );
    fails(
        &TAIL.replace(
            "{ backend = \"a\" }",
            "{ backend = \"a\" }, { backend = \"a\" }",
        ),
        4,
        "pools.p.members[1].backend",
        "listed twice",
    );
    fails(
        &format!("{TAIL}retry_on = [429, \"599-500\"]\n"),
        5,
        "pools.p.retry_on[1]",
        "backwards",
    );
    fails(
        &format!("{TAIL}retry_on = [600]\n"),
        5,
        "pools.p.retry_on[0]",
        "outside 100..=599",
    );
    fails(
        &format!("{TAIL}max_attempts = 0\n"),
        5,
        "pools.p.max_attempts",
        "at least 1",
    );
    fails(
        &format!("{TAIL}strategy = \"fastest\"\n"),
        5,
        "pools.p.strategy",
        "unknown strategy",
    );
    fails(
        &format!("[gateway]\nupstream_timeout = \"5 minutes\"\n{TAIL}"),
        2,
        "gateway.upstream_timeout",
        "invalid duration",
    );
    fails(
        &format!("[gateway]\nupstream_idle_timeout = \"0s\"\n{TAIL}"),
        2,
        "gateway.upstream_idle_timeout",
        "greater than 0",
    );
    fails(
        &format!("[gateway]\nheader_timeout = 0\n{TAIL}"),
        2,
        "gateway.header_timeout",
        "greater than 0",
    );
    fails(
        &format!("[gateway]\nlisten = \"localhost:80\"\n{TAIL}"),
        2,
        "gateway.listen",
        "invalid address",
    );
    fails(
        &format!("{TAIL}[backends.a.circuit_breaker]\nfailures = 0\n"),
        6,
        "backends.a.circuit_breaker.failures",
        "at least 1",
    );
    fails(
        &format!("{TAIL}[backends.a.circuit_breaker]\nstatus = [\"abc\"]\n"),
        6,
        "backends.a.circuit_breaker.status[0]",
        "invalid status range",
    );
}

#[test]
fn missing_things_point_at_their_table() {
    fails(
        "[pools.p]\nmembers = [{ backend = \"a\" }]\n",
        1,
        "backends",
        "at least one",
    );
    fails(
        "[backends.a]\nurl = \"http://127.0.0.1:1\"\n",
        1,
        "pools",
        "at least one",
    );
    fails(
        "[backends.a]\ndialect = \"azure\"\n[pools.p]\n",
        1,
        "backends.a",
        "missing key \"url\"",
    );
    fails(
        &format!("{TAIL}[pools.q]\n\n"),
        5,
        "pools.q",
        "at least one member",
    );
    fails(
        &format!("{TAIL}[pools.q]\nmembers = [{{ weight = 2 }}]\n"),
        6,
        "pools.q.members[0]",
        "missing key \"backend\"",
    );
    fails(
        &format!("{TAIL}[pools.q]\nmembers = [{{ backend = \"a\" }}]\n"),
        1,
        "models",
        "missing [models]",
    );
    fails(&format!("{TAIL}[models]\n"), 5, "models", "maps no model");
    fails(
        &format!("{TAIL}[mocks.m]\nregion = \"x\"\n"),
        5,
        "mocks.m",
        "missing key \"listen\"",
    );
}

#[test]
fn mock_and_listener_errors() {
    let m = |body: &str| format!("{TAIL}[mocks.m]\nlisten = \"127.0.0.1:18001\"\n{body}");
    fails(
        &m("fail_rate = 0.5\nfail_every = 2\nfail_status = 500\n"),
        8,
        "mocks.m.fail_every",
        "not both",
    );
    fails(
        &m("fail_rate = 0.5\n"),
        7,
        "mocks.m.fail_rate",
        "needs fail_status",
    );
    fails(
        &m("fail_every = 3\n"),
        7,
        "mocks.m.fail_every",
        "needs fail_status",
    );
    fails(
        &m("fail_status = 500\nfail_rate = 1.5\n"),
        8,
        "mocks.m.fail_rate",
        "outside",
    );
    fails(
        &m("fail_status = 700\n"),
        7,
        "mocks.m.fail_status",
        "outside 100..=599",
    );
    let c = parse(&m("fail_status = 500\nfail_every = 3\n")).unwrap();
    assert_eq!(c.mocks[0].options.fail, FailMode::Every(3));

    fails(
        &format!("[gateway]\nlisten = \"127.0.0.1:9090\"\n{TAIL}"),
        1,
        "gateway.admin_listen",
        "clashes with gateway.listen",
    );
    fails(
        &format!("[gateway]\nlisten = \"0.0.0.0:18001\"\n{}", m("")),
        8,
        "mocks.m.listen",
        "clashes with gateway.listen",
    );
    let two =
        format!("{TAIL}[mocks.m]\nlisten = \"127.0.0.1:7\"\n[mocks.n]\nlisten = \"127.0.0.1:7\"\n");
    fails(&two, 8, "mocks.n.listen", "clashes with mocks.m.listen");
    // Port 0 (pick any) never clashes.
    let zeros =
        format!("[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{TAIL}");
    assert!(parse(&zeros).is_ok());
}

#[test]
fn no_source_and_unreadable_file() {
    let e = parse_str("[gateway]\nworkers = -1\n", None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("<config>:2:11: gateway.workers: "),
        "{e}"
    );
    let e = load_file(Path::new("/nonexistent/aigw.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/aigw.toml: cannot read"),
        "{e}"
    );
}
