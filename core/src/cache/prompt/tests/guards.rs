//! The lexical guards.

use super::super::guards::{negations, numbers};
use super::*;

const ALL: [Guard; 2] = [Guard::Numbers, Guard::Negation];

#[test]
fn the_issue_pairs_are_stopped() {
    assert!(!guards_pass(
        &ALL,
        "Is it safe to take ibuprofen with alcohol?",
        "Is it unsafe to take ibuprofen with alcohol?"
    ));
    assert!(!guards_pass(
        &ALL,
        "Convert 10 USD to EUR",
        "Convert 20 USD to EUR"
    ));
    assert!(!guards_pass(&ALL, "Is it safe?", "Is it not safe?"));
    assert!(!guards_pass(&ALL, "Is it safe?", "Isn't it safe?"));
    assert!(!guards_pass(&ALL, "Is it safe?", "Is it never safe?"));
    assert!(!guards_pass(
        &ALL,
        "Does it work?",
        "It doesn\u{2019}t work?"
    ));
    // Paraphrases pass.
    assert!(guards_pass(
        &ALL,
        "How do I brew the perfect cup of coffee?",
        "What are the steps to craft the ideal espresso?"
    ));
    assert!(guards_pass(
        &ALL,
        "Convert 10 USD to EUR",
        "Please convert 10.0 USD into EUR"
    ));
    assert!(!guards_pass(
        &ALL,
        "Is the universe infinite?",
        "Is the universe unbounded in size?"
    ));
    assert!(guards_pass(
        &ALL,
        "Tell me about the union",
        "Explain the union until now"
    ));
    assert!(guards_pass(&[], "10", "20"));
    assert!(guards_pass(&[Guard::Negation], "10", "20"));
    assert!(!guards_pass(&[Guard::Numbers], "10", "20"));
    // The order of numbers is not the numbers guard's business.
    assert!(guards_pass(&[Guard::Numbers], "from 3 to 5", "to 5 from 3"));
}

#[test]
fn numbers_are_normalised() {
    assert_eq!(
        numbers("10 10.0 010 10.50 1,000 1,000,000.25"),
        ["10", "10", "10", "10.5", "1000", "1000000.25"]
    );
    assert_eq!(numbers("1,2,3"), ["1", "2", "3"]);
    assert_eq!(numbers("1,2345"), ["1", "2345"]);
    assert_eq!(
        numbers("-5 and - 6, x-7 GPT-4 10-20 \u{2212}3"),
        ["-5", "6", "7", "4", "10", "20", "-3"]
    );
    assert_eq!(numbers("-0 0.0 .5"), ["0", "0", "5"]);
    assert_eq!(numbers("v1.2.3"), ["1.2", "3"]);
    assert_eq!(numbers("½ ² ١٠"), ["½", "²", "١", "٠"]);
    assert_eq!(numbers("no numbers here"), Vec::<String>::new());
    let huge = "9".repeat(10_000);
    assert_eq!(numbers(&huge), std::slice::from_ref(&huge));
    assert!(guards_pass(
        &[Guard::Numbers],
        &format!("{huge}1"),
        &format!("{huge}1")
    ));
    assert!(!guards_pass(
        &[Guard::Numbers],
        &format!("{huge}1"),
        &format!("{huge}2")
    ));
    assert!(
        !guards_pass(&[Guard::Numbers], "1 1 2", "1 2 2"),
        "a multiset, not a set"
    );
    assert!(!guards_pass(&[Guard::Numbers], "-5 degrees", "5 degrees"));
}

#[test]
fn negation_markers() {
    for w in [
        "not",
        "No",
        "NEVER",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "cannot",
        "can't",
        "won't",
        "don't",
        "doesn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "shouldn't",
        "dont",
        "unsafe",
        "Unhealthy",
        "unless",
        "non",
        "nonexistent",
        "impossible",
        "illegal",
        "dishonest",
        "without",
        "nicht",
        "jamais",
        "нет",
        "n'est",
    ] {
        assert_eq!(negations(w), 1, "{w}");
    }
    for w in [
        "under",
        "understand",
        "unit",
        "united",
        "union",
        "unique",
        "universe",
        "university",
        "until",
        "uncle",
        "unicode",
        "uniform",
        "undo",
        "un",
        "une",
        "nonetheless",
        "note",
        "know",
        "snow",
        "nothingness-free",
    ] {
        assert_eq!(negations(w), 0, "{w}");
    }
    assert_eq!(negations("Is it not unsafe?"), 2);
    assert_eq!(negations("这不安全"), 1);
    assert!(!guards_pass(
        &[Guard::Negation],
        "Is it not unsafe?",
        "Is it unsafe?"
    ));
    assert!(guards_pass(
        &[Guard::Negation],
        "Why isn't it safe?",
        "Why is it not safe?"
    ));
}

#[test]
fn guards_are_total_on_odd_text() {
    let odd = [
        "",
        " ",
        "\u{0}\u{feff}",
        "''''",
        "n't",
        "\u{2019}\u{2019}",
        "-",
        "--1",
        ",,,1,,",
        "1,",
        "1.",
        ".",
        "\u{10ffff}9",
        "İSTANBUL NOT",
        "ǅungla",
    ];
    for a in odd {
        for b in odd {
            let _ = guards_pass(&ALL, a, b);
        }
    }
    assert_eq!(numbers("--1"), ["-1"]);
    assert_eq!(numbers("1, 2"), ["1", "2"]);
}
