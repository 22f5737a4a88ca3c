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
