//! What the gateway records: `aigw_tokens_total` sums equal to the usage clients saw (by the
//! configured dimensions), the access log, and the message store (truncation, rotation, flush on
//! SIGTERM).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;
mod usage;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;
use usage::*;

both_drivers!(
    token_metrics_sum_exactly,
    access_log_lines_match_responses,
    message_store_keeps_successful_completions,
    message_store_truncates_and_rotates,
    message_store_flushed_on_sigterm,
);

const ALPHA: &str = "[consumers.alpha]\nkeys = [\"key-alpha\"]\n";
const KEY: (&str, &str) = ("api-key", "key-alpha");

/// Calls of every kind: `(model, stream)`; streams ask for the usage chunk.
const MIX: [(&str, bool); 6] = [
    ("m-oa", false),
    ("m-oa", true),
    ("m-az", false),
    ("m-az", true),
    ("m-oa", true),
    ("m-oa", false),
];

fn ask(model: &str, stream: bool) -> Ask<'_> {
    Ask {
        model,
        stream,
        include_usage: stream,
        max_tokens: None,
        content: None,
    }
}

fn add(a: Tokens, b: Tokens) -> Tokens {
    (a.0 + b.0, a.1 + b.1, a.2 + b.2)
}

fn token_metrics_sum_exactly(d: Driver) {
    let extra = format!("{ALPHA}\n[metrics]\ndimensions = [\"consumer\", \"model\", \"user\"]\n");
    let gw = Gateway::start(d, &config(1, &extra));
    let (mut all, mut alex, mut anon) = ((0, 0, 0), (0, 0, 0), (0, 0, 0));
    for (i, (model, stream)) in MIX.iter().enumerate() {
        let user = i % 2 == 0;
        let mut headers = vec![KEY];
        if user {
            headers.push(("x-user-id", "alex"));
        }
        let r = chat(&gw, &ask(model, *stream), &headers);
        assert_eq!(r.status(), 200, "{}", r.resp.text());
        let t = r.tokens();
        all = add(all, t);
        if user {
            alex = add(alex, t);
        } else {
            anon = add(anon, t);
        }
    }
    // A refused call counts no tokens.
    chat(&gw, &ask("m-oa", false), &[])
        .resp
        .assert_openai_error(401);
    let sums = wait_for(Duration::from_secs(5), || {
        Some(token_sums(&gw, &[])).filter(|s| *s == all)
    });
    assert_eq!(
        sums,
        Some(all),
        "metrics {:?} vs the usage clients saw {all:?}",
        token_sums(&gw, &[])
    );
    assert_eq!(token_sums(&gw, &[("user", "alex")]), alex);
    assert_eq!(token_sums(&gw, &[("user", "N/A")]), anon);
    assert_eq!(token_sums(&gw, &[("consumer", "alpha")]), all);
    let by_model = add(
        token_sums(&gw, &[("model", "m-oa")]),
        token_sums(&gw, &[("model", "m-az")]),
    );
    assert_eq!(by_model, all);
    for (labels, _) in token_series(&gw) {
        let names: Vec<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(names, ["consumer", "model", "type", "user"], "{labels:?}");
    }
}

fn access_log_lines_match_responses(d: Driver) {
    let dir = TempDir::new("access");
    let path = dir.path("access.log");
    let extra = format!("{ALPHA}\n[log]\naccess = {}\n", toml_path(&path));
    let gw = Gateway::start(d, &config(1, &extra));
    let mut replies = Vec::new();
    for (i, (model, stream)) in MIX[..4].iter().enumerate() {
        // The key comes in the query once: it must not end up in the log.
        let r = match i {
            0 => chat_at(
                &mut gw.client(),
                "/v1/chat/completions?api-key=key-alpha",
                &ask(model, *stream),
                &[],
            ),
            _ => chat(&gw, &ask(model, *stream), &[KEY]),
        };
        assert_eq!(r.status(), 200, "{}", r.resp.text());
        replies.push(r);
    }
    let refused = chat(&gw, &ask("m-oa", false), &[]);
    refused.resp.assert_openai_error(401);
    wait_lines(&path, 5);
    std::thread::sleep(Duration::from_millis(200));
    let lines = json_lines(&path);
    assert_eq!(lines.len(), 5, "one line per request: {lines:?}");
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("key-alpha"),
        "a key in the access log"
    );
    let find = |id: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id}: {lines:?}"))
    };
    for (r, (model, stream)) in replies.iter().zip(&MIX) {
        let l = find(&r.request_id());
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["model"], *model, "{l}");
        assert_eq!(l["backend"], r.header("x-aigw-backend").unwrap(), "{l}");
        assert_eq!(l["backend"], &model[2..], "{l}");
        assert_eq!(l["consumer"], "alpha", "{l}");
        assert_eq!(l["stream"], *stream, "{l}");
        assert_eq!(l["attempts"], 1, "{l}");
        assert_eq!(l["method"], "POST", "{l}");
        assert_eq!(l["path"], "/v1/chat/completions", "{l}");
        assert_eq!(record_tokens(l), r.tokens(), "{l}");
        assert!(
            l["time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
            "{l}"
        );
        assert!(l["total_ms"].as_f64().is_some_and(|v| v >= 0.0), "{l}");
        assert!(l["client_ip"] == "127.0.0.1", "{l}");
    }
    let l = find(&refused.request_id());
    assert_eq!(
        (
            l["status"].clone(),
            l["consumer"].clone(),
            l["backend"].clone()
        ),
        (401.into(), serde_json::Value::Null, serde_json::Value::Null)
    );
    // Durations carry at most three decimals (whole microseconds), never float noise.
    for l in lines.iter() {
        for k in ["total_ms", "upstream_ms"] {
            let text = l[k].to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 3, "{k} = {text}");
        }
    }
    assert_eq!(
        (record_tokens(l), l["attempts"].clone()),
        ((0, 0, 0), 0.into()),
        "{l}"
    );
}

/// A gateway with alpha and a message store at `dir/messages.jsonl` with these extra settings.
fn with_store(d: Driver, dir: &TempDir, settings: &str) -> (Gateway, PathBuf) {
    let path = dir.path("messages.jsonl");
    let extra = format!(
        "{ALPHA}\n[log]\naccess = \"off\"\n\n[log.messages]\npath = {}\n{settings}\n",
        toml_path(&path)
    );
    (Gateway::start(d, &config(1, &extra)), path)
}

/// Check one message-store record against the reply it was written for.
fn check_record(rec: &Value, r: &Reply, model: &str, tokens: Tokens) {
    let id = r.request_id();
    assert_eq!(rec["request_id"], id, "{rec}");
    assert_eq!(rec["id"], format!("msg-{id}"), "{rec}");
    assert_eq!(rec["model"], model, "{rec}");
    assert_eq!(rec["region"], &model[2..], "the mock's x-ms-region: {rec}");
    if let Some(region) = r.header("x-ms-region") {
        assert_eq!(rec["region"], region, "{rec}");
    }
    assert_eq!(rec["consumer"], "alpha", "{rec}");
    assert_eq!(rec["operation"], "chat/completions", "{rec}");
    assert_eq!(rec["stream"], r.sse, "{rec}");
    assert!(
        rec["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{rec}"
    );
    assert_eq!(record_tokens(rec), tokens, "{rec}");
}

fn message_store_keeps_successful_completions(d: Driver) {
    let dir = TempDir::new("store");
    let (gw, path) = with_store(d, &dir, "");
    let calls = [
        ("m-oa", false, false),
        ("m-az", true, true),
        ("m-oa", true, false),
    ];
    let mut replies = Vec::new();
    for (model, stream, include_usage) in calls {
        let r = chat(
            &gw,
            &Ask {
                model,
                stream,
                include_usage,
                max_tokens: None,
                content: None,
            },
            &[KEY],
        );
        assert_eq!(r.status(), 200, "{}", r.resp.text());
        assert!(
            r.text
                .contains(&format!("Mock response from {}.", &model[2..])),
            "{}",
            r.text
        );
        replies.push(r);
    }
    // Failures are not stored: a refused key, an unknown model, an upstream error.
    chat(&gw, &ask("m-oa", false), &[])
        .resp
        .assert_openai_error(401);
    chat(&gw, &ask("nope", false), &[KEY])
        .resp
        .assert_openai_error(400);
    let failed = chat(&gw, &ask("m-oa", false), &[KEY, ("x-mock-status", "500")]);
    assert_eq!(failed.status(), 500, "{}", failed.resp.text());

    wait_lines(&path, calls.len());
    std::thread::sleep(Duration::from_millis(300));
    let recs = json_lines(&path);
    assert_eq!(
        recs.len(),
        calls.len(),
        "one record per successful completion: {recs:?}"
    );
    for ((rec, r), (model, _, include_usage)) in recs.iter().zip(&replies).zip(calls) {
        assert_eq!(rec["request"], r.body, "the request body as sent: {rec}");
        assert_eq!(rec["request_truncated"], false, "{rec}");
        assert_eq!(
            rec["response"], r.text,
            "the reply text (assembled when streamed): {rec}"
        );
        assert_eq!(rec["response_truncated"], false, "{rec}");
        // Without a usage chunk the client saw none; the store has the tokens counted from the
        // text, the same as the first call's (same prompt, same reply).
        let tokens = if include_usage || !r.sse {
            r.tokens()
        } else {
            replies[0].tokens()
        };
        check_record(rec, r, model, tokens);
    }
}

fn message_store_truncates_and_rotates(d: Driver) {
    let dir = TempDir::new("rotate");
    let (gw, path) = with_store(
        d,
        &dir,
        "max_body_bytes = 40\nmax_file_bytes = 1200\nkeep_files = 5\n",
    );
    let long = "a long prompt that goes well past forty bytes of request body";
    let mut ids = BTreeSet::new();
    let mut full = None;
    for i in 0..6 {
        let r = chat(
            &gw,
            &Ask {
                content: Some(long),
                ..ask("m-oa", i % 2 == 1)
            },
            &[KEY],
        );
        assert_eq!(r.status(), 200, "{}", r.resp.text());
        full = Some((r.body.clone(), r.text.clone()));
        ids.insert(r.request_id());
    }
    let (body, text) = full.unwrap();
    let rotated = |i: usize| PathBuf::from(format!("{}.{i}", path.display()));
    let all = || -> Vec<Value> {
        (1..=5)
            .rev()
            .map(rotated)
            .chain([path.clone()])
            .flat_map(|p| json_lines(&p))
            .collect()
    };
    let recs = wait_for(Duration::from_secs(10), || {
        Some(all()).filter(|v| v.len() >= ids.len())
    })
    .unwrap_or_else(|| panic!("records missing: {:?}", all()));
    assert!(
        rotated(1).exists(),
        "no {}.1 after {} records",
        path.display(),
        recs.len()
    );
    for p in (1..=5)
        .map(rotated)
        .chain([path.clone()])
        .filter(|p| p.exists())
    {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len <= 1200, "{} is {len} bytes", p.display());
    }
    let got: BTreeSet<String> = recs
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids, "every record once, across the rotated files");
    for rec in &recs {
        let req = rec["request"].as_str().unwrap();
        let resp = rec["response"].as_str().unwrap();
        assert!(req.len() <= 40 && rec["request_truncated"] == true, "{rec}");
        assert!(body.starts_with(req), "a prefix of the body: {rec}");
        assert!(
            resp.len() <= 40 && text.starts_with(resp) && rec["response_truncated"] == true,
            "{rec}"
        );
    }
}

fn message_store_flushed_on_sigterm(d: Driver) {
    let dir = TempDir::new("term");
    let (mut gw, path) = with_store(d, &dir, "");
    let mut ids = BTreeSet::new();
    let mut c = gw.client();
    for i in 0..20 {
        let model = if i % 3 == 0 { "m-az" } else { "m-oa" };
        let r = chat_on(&mut c, &ask(model, i % 2 == 0), &[KEY]);
        assert_eq!(r.status(), 200, "{}", r.resp.text());
        ids.insert(r.request_id());
    }
    drop(c);
    // Some still in flight (the mock waits a second) when TERM comes: they finish, and are stored.
    let addr = gw.addr("listen");
    let slow: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let slow = [KEY, ("x-mock-latency-ms", "1000")];
                chat_on(&mut Client::connect(addr), &ask("m-oa", i % 2 == 0), &slow)
            })
        })
        .collect();
    let mock_saw = || Some(()).filter(|_| mock_total(&gw, "oa") >= 13 + 4);
    wait_for(Duration::from_secs(5), mock_saw).expect("the slow calls reached the mock");
    gw.proc.signal("TERM");
    for h in slow {
        let r = h.join().expect("slow call");
        assert_eq!(r.status(), 200, "in flight at TERM: {}", r.resp.text());
        ids.insert(r.request_id());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = gw.proc.child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "aigw did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status:?}: {}", gw.proc.stderr());
    let recs = json_lines(&path);
    let got: Vec<String> = recs
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), ids.len(), "{got:?}");
    assert_eq!(
        got.into_iter().collect::<BTreeSet<_>>(),
        ids,
        "every record written by exit"
    );
}
