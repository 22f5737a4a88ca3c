//! Tests of the metrics registry: sums across workers, escaping, the series cap.
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
    a.shared.latency.observe(Duration::from_millis(3));
    let text = reg.render();
    assert!(
        text.contains("aigw_requests_total{model=\"m\",backend=\"east\",status=\"200\"} 5"),
        "{text}"
    );
    assert!(text.contains("model=\"m\\\"x\""));
    assert!(text.contains("aigw_request_duration_seconds_count 1"));
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
