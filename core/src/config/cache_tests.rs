//! `[semantic_cache]`: its defaults, and every refusal naming its key and line.

use std::time::Duration;

use super::tests::{fails, parse, TAIL};
use super::{CacheGuard, CacheMode, EmbedWindow, VaryBy};

/// TAIL (lines 1-4), an embeddings pool (5-8) and `[models]` (9-10); the cache table starts at
/// line 11.
fn with(cache: &str) -> String {
    format!(
        "{TAIL}[backends.emb]\nurl = \"http://127.0.0.1:2\"\n[pools.embeddings]\nmembers = [{{ backend = \"emb\" }}]\n[models]\n\"*\" = \"p\"\n{cache}"
    )
}

const EMBEDDER: &str = "[semantic_cache.embedder]\npool = \"embeddings\"\n";
const SIM: &str = "similarity_threshold = 0.95\n";

#[test]
fn absent_is_off_and_the_defaults_are_the_careful_ones() {
    assert!(parse(&with("")).unwrap().semantic_cache.is_none());
    let cfg = parse(&with(&format!("[semantic_cache]\n{SIM}{EMBEDDER}"))).unwrap();
    let c = cfg.semantic_cache.unwrap();
    assert_eq!(c.mode, CacheMode::ExactSemantic);
    assert_eq!(
        c.operations,
        ["chat/completions", "completions", "responses"]
    );
    assert!((c.min_similarity - 0.95).abs() < 1e-6);
    assert_eq!(c.ttl, Duration::from_secs(600));
    assert_eq!((c.max_entries, c.generations), (100_000, 4));
    assert_eq!(c.vary_by, [VaryBy::Consumer]);
    assert_eq!(c.embed, EmbedWindow::LastUser);
    assert!(c.ignore_system_messages && c.store_streams && c.respect_cache_control);
    assert!(!c.charge_hits);
    assert_eq!(c.max_message_count, 10);
    assert_eq!(c.guards, [CacheGuard::Numbers, CacheGuard::Negation]);
    let e = c.embedder.unwrap();
    assert_eq!(cfg.pools[e.pool].name, "embeddings");
    assert_eq!(
        (e.model.as_str(), e.dimensions, e.timeout),
        ("text-embedding-3-small", 512, Duration::from_secs(2))
    );
}

#[test]
fn every_key_is_read() {
    let cfg = parse(&with(&format!(
        "[semantic_cache]\nmode = \"semantic\"\noperations = [\"responses\", \"/chat/completions\", \"responses\"]\n\
         score_threshold = 0.8\nttl = \"120s\"\nmax_entries = 1000\ngenerations = 8\n\
         vary_by = [\"ip\", \"header:X-Tenant\", \"model\", \"ip\"]\nembed = \"conversation\"\n\
         ignore_system_messages = false\nmax_message_count = 3\nguards = [\"negation\"]\nstore_streams = false\n\
         charge_hits = true\nrespect_cache_control = false\nqueue_capacity = 16\nmax_entry_bytes = 4096\n\
         [semantic_cache.index]\nhnsw_min_entries = 100\nm = 8\nef_construction = 32\nef_search = 16\n\
         {EMBEDDER}model = \"e5\"\ndimensions = 384\ntimeout = \"250ms\"\n"
    )))
    .unwrap();
    let c = cfg.semantic_cache.unwrap();
    assert_eq!(c.mode, CacheMode::Semantic);
    assert_eq!(c.operations, ["responses", "chat/completions"]);
    assert!(
        (c.min_similarity - 0.2).abs() < 1e-6,
        "distance 0.8 = similarity 0.2"
    );
    assert_eq!(
        (c.ttl, c.max_entries, c.generations),
        (Duration::from_secs(120), 1000, 8)
    );
    assert_eq!(
        c.vary_by,
        [VaryBy::Ip, VaryBy::Header("x-tenant".into()), VaryBy::Model]
    );
    assert_eq!(c.embed, EmbedWindow::Conversation);
    assert!(!c.ignore_system_messages && !c.store_streams && !c.respect_cache_control);
    assert!(c.charge_hits);
    assert_eq!(
        (c.max_message_count, c.queue_capacity, c.max_entry_bytes),
        (3, 16, 4096)
    );
    assert_eq!(c.guards, [CacheGuard::Negation]);
    assert_eq!(
        (
            c.index.hnsw_min_entries,
            c.index.m,
            c.index.ef_construction,
            c.index.ef_search
        ),
        (100, 8, 32, 16)
    );
    let e = c.embedder.unwrap();
    assert_eq!((e.model.as_str(), e.dimensions), ("e5", 384));
    assert_eq!(e.timeout, Duration::from_millis(250));
    let exact = parse(&with(&format!(
        "[semantic_cache]\nmode = \"exact\"\nvary_by = []\n{SIM}"
    )))
    .unwrap();
    let c = exact.semantic_cache.unwrap();
    assert!(c.embedder.is_none() && c.vary_by.is_empty());
}

#[test]
fn refusals_name_the_key() {
    let sc = "semantic_cache";
    for (body, line, key, needle) in [
        (
            "mode = \"fuzzy\"\n",
            12,
            "semantic_cache.mode",
            "unknown mode",
        ),
        (
            "operations = []\n",
            12,
            "semantic_cache.operations",
            "at least one",
        ),
        (
            "operations = [\"embeddings\"]\n",
            12,
            "semantic_cache.operations[0]",
            "cannot be cached",
        ),
        (
            "similarity_threshold = 0.9\nscore_threshold = 0.1\n",
            13,
            "semantic_cache.score_threshold",
            "not both",
        ),
        (
            "similarity_threshold = 0.0\n",
            12,
            "semantic_cache.similarity_threshold",
            "above 0",
        ),
        (
            "similarity_threshold = 1.5\n",
            12,
            "semantic_cache.similarity_threshold",
            "at most 1",
        ),
        (
            "score_threshold = 1.0\n",
            12,
            "semantic_cache.score_threshold",
            "below 1",
        ),
        (
            "score_threshold = -0.1\n",
            12,
            "semantic_cache.score_threshold",
            "at least 0",
        ),
        ("ttl = \"0s\"\n", 12, "semantic_cache.ttl", "at least"),
        ("ttl = \"2d\"\n", 12, "semantic_cache.ttl", "duration"),
        (
            "max_entries = 0\n",
            12,
            "semantic_cache.max_entries",
            "between 1 and",
        ),
        (
            "generations = 1\n",
            12,
            "semantic_cache.generations",
            "between 2 and 64",
        ),
        (
            "vary_by = [\"tenant\"]\n",
            12,
            "semantic_cache.vary_by[0]",
            "unknown value",
        ),
        (
            "vary_by = [\"header:bad name\"]\n",
            12,
            "semantic_cache.vary_by[0]",
            "invalid header name",
        ),
        (
            "vary_by = [\"claim:oid\"]\n",
            12,
            "semantic_cache.vary_by[0]",
            "no token claims",
        ),
        ("embed = \"all\"\n", 12, "semantic_cache.embed", "last_user"),
        (
            "guards = [\"order\"]\n",
            12,
            "semantic_cache.guards[0]",
            "unknown guard",
        ),
        (
            "max_message_count = 0\n",
            12,
            "semantic_cache.max_message_count",
            "between 1",
        ),
        (
            "colour = 1\n",
            12,
            "semantic_cache.colour",
            "unknown key `colour`",
        ),
    ] {
        fails(
            // A threshold after the line under test (the file must name one).
            &with(&format!(
                "[{sc}]\n{body}{}{EMBEDDER}",
                if body.contains("threshold") { "" } else { SIM }
            )),
            line,
            key,
            needle,
        );
    }
    fails(
        &with("[semantic_cache]\n"),
        11,
        "semantic_cache",
        "set similarity_threshold",
    );
    fails(
        &with(&format!("[semantic_cache]\n{SIM}")),
        11,
        "semantic_cache",
        "needs a [semantic_cache.embedder]",
    );
    fails(
        &with(&format!(
            "[semantic_cache]\n{SIM}mode = \"exact\"\n{EMBEDDER}"
        )),
        14,
        "semantic_cache.embedder",
        "embeds nothing",
    );
    fails(
        &with(&format!(
            "[semantic_cache]\n{SIM}[semantic_cache.embedder]\npool = \"nope\"\n"
        )),
        14,
        "semantic_cache.embedder.pool",
        "unknown pool \"nope\"",
    );
    fails(
        &with(&format!(
            "[semantic_cache]\n{SIM}[semantic_cache.embedder]\nmodel = \"x\"\n"
        )),
        13,
        "semantic_cache.embedder",
        "missing key \"pool\"",
    );
    fails(
        &with(&format!(
            "[semantic_cache]\n{SIM}{EMBEDDER}dimensions = 100000\n"
        )),
        15,
        "semantic_cache.embedder.dimensions",
        "between 2 and 8192",
    );
    fails(
        &with(&format!("[semantic_cache]\n{SIM}[semantic_cache.index]\nm = 200\n[semantic_cache.embedder]\npool = \"embeddings\"\n")),
        14,
        "semantic_cache.index.m",
        "between 4 and 64",
    );
}
