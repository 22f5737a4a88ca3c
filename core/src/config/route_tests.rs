//! `[routes.NAME]`: what loads, and every refusal naming its key and line.

use super::tests::{fails, parse, TAIL};

/// TAIL (lines 1-4), two consumers (5-8) and a search backend (9-11); routes start at line 12.
fn base() -> String {
    format!(
        "{TAIL}[consumers.team-a]\nkeys = [\"ka\"]\n[consumers.team-b]\nkeys = [\"kb\"]\n\
         [backends.search]\nurl = \"http://127.0.0.1:2/api\"\napi_key = \"s-key\"\n"
    )
}

fn with(routes: &str) -> String {
    base() + routes
}

#[test]
fn a_route_loads_with_its_defaults() {
    let cfg = parse(&with(
        "[routes.search]\nprefix = \"/search\"\nbackend = \"search\"\nconsumers = [\"team-b\"]\n\
         [routes.weather]\nprefix = \"/weather/v2\"\nbackend = \"a\"\nstrip_prefix = true\n",
    ))
    .unwrap();
    assert_eq!(cfg.routes.len(), 2);
    let (s, w) = (&cfg.routes[0], &cfg.routes[1]);
    assert_eq!((s.name.as_str(), s.prefix.as_str()), ("search", "/search"));
    assert_eq!(cfg.backends[s.backend].name, "search");
    assert!(!s.strip_prefix, "strip_prefix defaults to false");
    assert_eq!(s.consumers, Some(vec![1]), "team-b is consumer 1");
    assert_eq!((w.prefix.as_str(), w.strip_prefix), ("/weather/v2", true));
    assert_eq!(w.consumers, None);
    assert!(parse(&base()).unwrap().routes.is_empty());
}

#[test]
fn prefixes_are_plain_segments_with_a_leading_slash() {
    let at = "routes.r.prefix";
    for (prefix, needle) in [
        ("search", "must start with \"/\""),
        ("", "must start with \"/\""),
        ("/", "would take every path"),
        ("/search/", "write \"/search\""),
        ("/se arch", "not a plain path segment"),
        ("/a//b", "segment \"\""),
        ("/a/../b", "segment \"..\""),
        ("/%2e%2e", "segment \"%2e%2e\""),
        ("/a;b", "not a plain path segment"),
        ("/search?x=1", "not a plain path segment"),
    ] {
        let text = with(&format!(
            "[routes.r]\nprefix = \"{prefix}\"\nbackend = \"search\"\n"
        ));
        fails(&text, 13, at, needle);
    }
}

#[test]
fn prefixes_stay_off_the_gateways_own_paths() {
    for (prefix, own) in [
        ("/v1", "/v1"),
        ("/v1/search", "/v1"),
        ("/openai", "/openai"),
        ("/openai/deployments/x", "/openai"),
        ("/status-0123456789abcdef", "/status-0123456789abcdef"),
    ] {
        let text = with(&format!(
            "[routes.r]\nprefix = \"{prefix}\"\nbackend = \"search\"\n"
        ));
        fails(
            &text,
            13,
            "routes.r.prefix",
            &format!("overlaps the gateway's own path {own}"),
        );
    }
    // Whole segments: a name that merely starts like one of them is not an overlap.
    for prefix in ["/v1x", "/v10", "/openaiish", "/status"] {
        let text = with(&format!(
            "[routes.r]\nprefix = \"{prefix}\"\nbackend = \"search\"\n"
        ));
        assert!(parse(&text).is_ok(), "{prefix}");
    }
}

#[test]
fn routes_do_not_overlap_each_other() {
    let text = with(
        "[routes.a-search]\nprefix = \"/search\"\nbackend = \"search\"\n\
         [routes.b-admin]\nprefix = \"/search/admin\"\nbackend = \"a\"\n",
    );
    fails(
        &text,
        16,
        "routes.b-admin.prefix",
        "overlaps route \"a-search\" (prefix \"/search\")",
    );
    let text = with(
        "[routes.a]\nprefix = \"/x/y\"\nbackend = \"search\"\n[routes.b]\nprefix = \"/x\"\nbackend = \"a\"\n",
    );
    fails(&text, 16, "routes.b.prefix", "overlaps route \"a\"");
    let text = with(
        "[routes.a]\nprefix = \"/x\"\nbackend = \"search\"\n[routes.b]\nprefix = \"/x\"\nbackend = \"a\"\n",
    );
    fails(
        &text,
        16,
        "routes.b.prefix",
        "a path may belong to one route only",
    );
    // Siblings and names sharing a start are fine.
    let text = with(
        "[routes.a]\nprefix = \"/search\"\nbackend = \"search\"\n[routes.b]\nprefix = \"/searchx\"\nbackend = \"a\"\n",
    );
    assert_eq!(parse(&text).unwrap().routes.len(), 2);
}

#[test]
fn backend_and_consumers_must_exist() {
    fails(
        &with("[routes.r]\nprefix = \"/s\"\nbackend = \"nope\"\n"),
        14,
        "routes.r.backend",
        "unknown backend \"nope\" (defined: a, search)",
    );
    fails(
        &with("[routes.r]\nprefix = \"/s\"\n"),
        12,
        "routes.r",
        "missing key \"backend\"",
    );
    fails(
        &with("[routes.r]\nbackend = \"a\"\n"),
        12,
        "routes.r",
        "missing key \"prefix\"",
    );
    fails(
        &with(
            "[routes.r]\nprefix = \"/s\"\nbackend = \"a\"\nconsumers = [\"team-a\", \"team-c\"]\n",
        ),
        15,
        "routes.r.consumers[1]",
        "unknown consumer \"team-c\" (defined: team-a, team-b)",
    );
    fails(
        &with(
            "[routes.r]\nprefix = \"/s\"\nbackend = \"a\"\nconsumers = [\"team-a\", \"team-a\"]\n",
        ),
        15,
        "routes.r.consumers[1]",
        "listed twice",
    );
    fails(
        &with("[routes.r]\nprefix = \"/s\"\nbackend = \"a\"\nconsumers = []\n"),
        15,
        "routes.r.consumers",
        "lists no consumer",
    );
    // Without [consumers] an allow-list can name nobody: a config error, not an open route.
    fails(
        &format!("{TAIL}[routes.r]\nprefix = \"/s\"\nbackend = \"a\"\nconsumers = [\"team-a\"]\n"),
        8,
        "routes.r.consumers[0]",
        "no [consumers.NAME] is defined",
    );
    fails(
        &with("[routes.r]\nprefix = \"/s\"\nbackend = \"a\"\nstrip = true\n"),
        15,
        "routes.r.strip",
        "unknown key",
    );
}
