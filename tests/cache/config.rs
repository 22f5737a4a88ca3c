//! What the config loader accepts and refuses in `[semantic_cache]` (`aigw check`, no gateway).

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use crate::setup::*;

/// `aigw check` on `text` (a [`Setup`] rendering) written into `dir`: (accepted, its output).
fn check(dir: &TempDir, name: &str, text: &str) -> (bool, String) {
    // `aigw check` binds nothing, but refuses two listeners on one address: each placeholder
    // gets a port of its own.
    let mut text = text.to_string();
    let mut names: Vec<String> = Vec::new();
    while let Some(i) = text.find("{addr:") {
        let end = text[i..].find('}').unwrap() + i;
        let name = text[i..=end].to_string();
        let n = names.iter().position(|x| *x == name).unwrap_or_else(|| {
            names.push(name);
            names.len() - 1
        });
        text.replace_range(i..=end, &format!("127.0.0.1:{}", 1 + n));
    }
    let path: PathBuf = dir.path(name);
    write_atomic(&path, &text);
    let out = Command::new(AIGW)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .expect("run aigw check");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), all)
}

/// The config loader accepts the contract's table (with either threshold) and refuses, naming the
/// key, what cannot work: both thresholds, out-of-range values, unknown modes, pools, vary_by
/// sources, embed modes, operations and guards.
#[test]
fn the_config_is_validated() {
    let dir = TempDir::new("cache-check");
    let good = Setup::default();
    let (ok, out) = check(&dir, "good.toml", &good.toml());
    assert!(
        ok && out.contains(": ok ("),
        "the contract's config refused: {out}"
    );
    let score = Setup::with(CacheCfg {
        threshold: "score_threshold = 0.05".into(),
        ..CacheCfg::default()
    });
    let (ok, out) = check(&dir, "score.toml", &score.toml());
    assert!(ok, "score_threshold refused: {out}");

    let bad: Vec<(&str, CacheCfg, &str)> = vec![
        (
            "both thresholds",
            CacheCfg {
                threshold: "similarity_threshold = 0.9\nscore_threshold = 0.1".into(),
                ..CacheCfg::default()
            },
            "threshold",
        ),
        (
            "no threshold",
            CacheCfg {
                threshold: String::new(),
                ..CacheCfg::default()
            },
            "threshold",
        ),
        (
            "similarity above 1",
            CacheCfg::default().similarity(1.5),
            "similarity_threshold",
        ),
        (
            "similarity below 0",
            CacheCfg::default().similarity(-0.1),
            "similarity_threshold",
        ),
        (
            "unknown mode",
            CacheCfg {
                mode: "fuzzy",
                ..CacheCfg::default()
            },
            "mode",
        ),
        (
            "unknown vary_by",
            CacheCfg {
                vary_by: r#"["nobody"]"#,
                ..CacheCfg::default()
            },
            "vary_by",
        ),
        (
            "unknown embed",
            CacheCfg {
                embed: "everything",
                ..CacheCfg::default()
            },
            "embed",
        ),
        (
            "operation that cannot be cached",
            CacheCfg {
                operations: r#"["images/generations"]"#,
                ..CacheCfg::default()
            },
            "operations",
        ),
        (
            "unknown guard",
            CacheCfg {
                guards: r#"["vibes"]"#,
                ..CacheCfg::default()
            },
            "guards",
        ),
        (
            "no entries",
            CacheCfg {
                max_entries: 0,
                ..CacheCfg::default()
            },
            "max_entries",
        ),
        (
            "zero ttl",
            CacheCfg {
                ttl: "0s",
                ..CacheCfg::default()
            },
            "ttl",
        ),
        (
            "zero dimensions",
            CacheCfg {
                dimensions: 0,
                ..CacheCfg::default()
            },
            "dimensions",
        ),
    ];
    for (i, (what, cache, key)) in bad.into_iter().enumerate() {
        let (ok, out) = check(&dir, &format!("bad{i}.toml"), &Setup::with(cache).toml());
        assert!(!ok, "{what}: accepted: {out}");
        assert!(
            out.contains("semantic_cache") && out.contains(key),
            "{what}: the refusal does not name semantic_cache…{key}: {out}"
        );
    }
    // An embedder pool that does not exist.
    let text = good
        .toml()
        .replace("pool = \"embeddings\"", "pool = \"nope\"");
    let (ok, out) = check(&dir, "nopool.toml", &text);
    assert!(!ok, "unknown embedder pool accepted: {out}");
    assert!(
        out.contains("semantic_cache.embedder") && out.contains("nope"),
        "the refusal does not name the embedder pool: {out}"
    );
}
