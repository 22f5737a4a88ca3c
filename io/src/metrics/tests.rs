//! Tests of the metrics registry: sums across workers, escaping, the series cap, the labelled
//! timing histograms and which labels a request gets.
use std::time::Duration;

use super::*;

#[test]
fn sums_series_across_workers() {
    let reg = Registry::new(2);
    let a = LocalMetrics::new(reg.worker(0));
    let b = LocalMetrics::new(reg.worker(1));
    a.add(F_REQUESTS, &["m", "east", "200"], 1);
    a.add(F_REQUESTS, &["m", "east", "200"], 1);
    b.add(F_REQUESTS, &["m", "east", "200"], 3);
    b.add(F_REQUESTS, &["m\"x", "west", "429"], 1);
    a.observe(routed("east", "m"), obs(3, None));
    let text = reg.render();
    assert!(
        text.contains("aigw_requests_total{model=\"m\",backend=\"east\",status=\"200\"} 5"),
        "{text}"
    );
    assert!(text.contains("model=\"m\\\"x\""));
    assert!(text.contains("aigw_request_duration_seconds_count{backend=\"east\",model=\"m\"} 1"));
    // A second scrape sees later increments on already-known series.
    a.add(F_REQUESTS, &["m", "east", "200"], 1);
    assert!(reg.render().contains("status=\"200\"} 6"));
    // Client-chosen label values cannot grow the registry without bound.
    for i in 0..MAX_SERIES_PER_WORKER + 10 {
        a.add(F_REQUESTS, &[&format!("model-{i}"), "east", "200"], 1);
    }
    let text = reg.render();
    assert!(
        text.contains("model=\"_other\",backend=\"east\",status=\"200\"} 11"),
        "folded: {text}"
    );
}

#[test]
fn label_values_are_capped_and_cleaned() {
    assert!(matches!(label_value("gpt-4o"), Cow::Borrowed("gpt-4o")));
    let long = "é".repeat(100); // 200 bytes: cut at a char boundary
    let cut = label_value(&long);
    assert!(cut.len() <= MAX_LABEL_BYTES && cut.len() >= MAX_LABEL_BYTES - 1);
    assert!(long.starts_with(cut.as_ref()));
    assert_eq!(
        label_value("a\r\nb\u{1b}[2J\u{7f}\u{9b}c\t"),
        "a\u{fffd}\u{fffd}b\u{fffd}[2J\u{fffd}\u{fffd}c\u{fffd}"
    );
    // Cleaning never pushes a value past the cap.
    assert!(label_value(&"\u{1}".repeat(200)).len() <= MAX_LABEL_BYTES);
}

#[test]
fn hostile_labels_render_bounded_and_on_one_line() {
    let reg = Registry::new(1);
    let a = LocalMetrics::new(reg.worker(0));
    let pad = "x".repeat(256 << 10);
    for i in 0..100 {
        let model = format!("{i:03}\r\n\"\\{pad}");
        a.add(F_REQUESTS, &[&model, "east", "200"], 1);
    }
    // Values that agree on their first 128 bytes are one series.
    a.add(
        F_REQUESTS,
        &[&format!("000\r\n\"\\{pad}yyy"), "east", "200"],
        1,
    );
    let text = reg.render();
    assert!(text.len() < 100 * 300 + 4096, "{} bytes", text.len());
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("aigw_requests_total{"))
        .collect();
    assert_eq!(series.len(), 100);
    assert!(series[0].ends_with("} 2"), "{}", series[0]);
    assert!(!text.contains('\r'));
    for l in series {
        assert!(l.len() < 300 && l.contains("\\\"\\\\x"), "{l}");
    }
}

#[test]
fn counters_saturate_instead_of_wrapping() {
    let reg = Registry::new(2);
    let a = LocalMetrics::new(reg.worker(0));
    let b = LocalMetrics::new(reg.worker(1));
    for m in [&a, &a, &b] {
        m.add(F_REQUESTS, &["m", "east", "200"], u64::MAX);
    }
    assert!(reg
        .render()
        .contains(&format!("status=\"200\"}} {}", u64::MAX)));
}

/// Labels of a request answered by `backend` for a model `[models]` names.
fn routed<'a>(backend: &'a str, model: &'a str) -> RequestLabels<'a> {
    RequestLabels {
        backend,
        model,
        client_chosen: false,
    }
}

/// A request of `total_ms`, 1 ms of it in the gateway, streamed when `ttft_ms` is given.
fn obs(total_ms: u64, ttft_ms: Option<u64>) -> Observed {
    Observed {
        total: Duration::from_millis(total_ms),
        overhead: Duration::from_millis(1),
        ttft: ttft_ms.map(Duration::from_millis),
    }
}

#[test]
fn timings_are_labelled_and_merged_across_workers() {
    let reg = Registry::new(2);
    let a = LocalMetrics::new(reg.worker(0));
    let b = LocalMetrics::new(reg.worker(1));
    a.observe(routed("east", "gpt"), obs(3, None));
    b.observe(routed("east", "gpt"), obs(200, Some(20)));
    b.observe(routed("we\"st", "gpt"), obs(3, None));
    a.observe(routed(NONE, NONE), obs(1, None));
    let text = reg.render();
    let has = |l: &str| text.lines().any(|x| x == l);
    let d = "aigw_request_duration_seconds";
    assert!(
        has(&format!(
            "{d}_bucket{{backend=\"east\",model=\"gpt\",le=\"0.005\"}} 1"
        )),
        "{text}"
    );
    assert!(has(&format!(
        "{d}_bucket{{backend=\"east\",model=\"gpt\",le=\"0.25\"}} 2"
    )));
    assert!(has(&format!(
        "{d}_bucket{{backend=\"east\",model=\"gpt\",le=\"+Inf\"}} 2"
    )));
    assert!(has(&format!(
        "{d}_count{{backend=\"east\",model=\"gpt\"}} 2"
    )));
    assert!(has(&format!(
        "{d}_sum{{backend=\"east\",model=\"gpt\"}} 0.203"
    )));
    assert!(has(&format!(
        "{d}_count{{backend=\"none\",model=\"none\"}} 1"
    )));
    // Label values are escaped as the counters' are.
    assert!(has(&format!(
        "{d}_count{{backend=\"we\\\"st\",model=\"gpt\"}} 1"
    )));
    let o = "aigw_gateway_overhead_seconds";
    assert!(has(&format!(
        "{o}_bucket{{backend=\"east\",model=\"gpt\",le=\"0.001\"}} 2"
    )));
    // Time to first token: only the label sets that streamed.
    let t = "aigw_time_to_first_token_seconds";
    assert!(has(&format!(
        "{t}_count{{backend=\"east\",model=\"gpt\"}} 1"
    )));
    assert!(
        !text.contains(&format!("{t}_count{{backend=\"none\"")),
        "{text}"
    );
    assert!(text.contains(&format!("# TYPE {t} histogram")));
    // Every label set has 19 buckets, a sum and a count per family it appears in.
    let lines = text.lines().filter(|l| l.starts_with(d)).count();
    assert_eq!(lines, 3 * 21);
    // A later observation on a known label set shows in the next scrape.
    a.observe(routed("east", "gpt"), obs(3, None));
    assert!(reg
        .render()
        .contains(&format!("{d}_count{{backend=\"east\",model=\"gpt\"}} 3")));
}

#[test]
fn client_chosen_models_fold_past_the_cap() {
    let reg = Registry::new(1);
    let a = LocalMetrics::new(reg.worker(0));
    let wild = |m: &'static str| RequestLabels {
        backend: "east",
        model: m,
        client_chosen: true,
    };
    let names: Vec<&'static str> = (0..MAX_CLIENT_MODELS + 20)
        .map(|i| &*Box::leak(format!("wild-{i}").into_boxed_str()))
        .collect();
    for m in &names {
        a.observe(a.bound(wild(m)), obs(1, None));
    }
    // A model kept before the cap stays itself; a configured one never folds.
    a.observe(a.bound(wild(names[0])), obs(1, None));
    a.observe(a.bound(routed("east", "configured")), obs(1, None));
    let text = reg.render();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("aigw_request_duration_seconds_count{"))
        .collect();
    assert_eq!(series.len(), MAX_CLIENT_MODELS + 2, "{series:#?}");
    assert!(series
        .contains(&"aigw_request_duration_seconds_count{backend=\"east\",model=\"_other\"} 20"));
    assert!(series
        .contains(&"aigw_request_duration_seconds_count{backend=\"east\",model=\"wild-0\"} 2"));
    assert!(series
        .contains(&"aigw_request_duration_seconds_count{backend=\"east\",model=\"configured\"} 1"));
}

#[test]
fn requests_get_bounded_never_empty_labels() {
    let cfg = |models: &str| {
        aigw_core::config::parse_str(
            &format!(
                "[backends.east]\nurl = \"http://127.0.0.1:9\"\n[pools.p]\nmembers = [{{ backend = \"east\" }}]\n[models]\n{models}\n"
            ),
            None,
        )
        .unwrap()
    };
    let exact = cfg("\"gpt\" = \"p\"");
    let wild = cfg("\"gpt\" = \"p\"\n\"*\" = \"p\"");
    fn labels(backend: &'static str, model: &'static str, c: bool) -> RequestLabels<'static> {
        RequestLabels {
            backend,
            model,
            client_chosen: c,
        }
    }
    let l = request_labels;
    // Routed and answered.
    assert_eq!(
        l(&exact, true, "gpt", Some(0)),
        labels("east", "gpt", false)
    );
    // Refused before the caller was identified (401, 404): nothing it sent is a label.
    assert_eq!(l(&exact, false, "gpt", None), labels(NONE, NONE, false));
    // No model (a body refused with 400, the model listing).
    assert_eq!(l(&exact, true, "", None), labels(NONE, NONE, false));
    // A model no pool serves: folded at once.
    assert_eq!(l(&exact, true, "bogus", None), labels(NONE, OTHER, false));
    // Routed only by "*": the client chose it.
    assert_eq!(
        l(&wild, true, "bogus", Some(0)),
        labels("east", "bogus", true)
    );
    assert_eq!(l(&wild, true, "gpt", None), labels(NONE, "gpt", false));
    // A backend index the config does not have (a reload raced) is no backend.
    assert_eq!(l(&wild, true, "gpt", Some(7)), labels(NONE, "gpt", false));
}
