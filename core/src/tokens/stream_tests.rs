#![allow(clippy::unwrap_used)]

use super::*;

/// Texts whose regex pieces are varied: contractions, numbers, punctuation runs, white space
/// runs before words and newlines, indentation, URLs, emoji, CJK without spaces, mixed scripts.
const SAMPLES: [&str; 8] = [
    "It's a deterministic reply; they'll say we've done it. Don't! \"Quoted,\" (parenthesised) -- dashes... ",
    "Numbers: 1234567 89 0.5 1,000,000 and 3.14159 vs 2e10; ids A1B2C3 x86_64 ",
    "fn main() {\n    let x = vec![1, 2, 3];\n\n\n    println!(\"{:?}\", x);   \n\t}\n",
    "   leading spaces   and   runs  of   spaces\n  \n\n  indented line\r\nwindows line\r\n ",
    "See https://example.com/a/b?c=d&e=f#g or mailto:someone@example.org. ",
    "Emoji 😀🎉 and accents: café naïve résumé Ünïcödé Straße ",
    "这是一个没有空格的中文句子，它继续写下去。然后还有更多的文字！真的吗？是的：当然；好的、明白。",
    "Mixed 中文 text with English words, русский текст и ελληνικά. ",
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `text` pushed in random pieces of 1 to `max` bytes (cut at char boundaries).
fn pushed(enc: Encoding, text: &str, rng: &mut Rng, max: u64) -> TextCount {
    let mut c = TextCount::new(enc);
    let mut rest = text;
    while !rest.is_empty() {
        let mut n = ((rng.next() % max) as usize + 1).min(rest.len());
        while !rest.is_char_boundary(n) {
            n += 1;
        }
        let (piece, tail) = rest.split_at(n);
        c.push(piece);
        assert!(
            c.tail.len() <= TAIL_MAX + FLUSH,
            "tail of {} bytes",
            c.tail.len()
        );
        rest = tail;
    }
    c
}

#[test]
fn a_text_pushed_in_pieces_counts_as_the_whole() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for enc in [Encoding::O200k, Encoding::Cl100k] {
        for (i, sample) in SAMPLES.iter().enumerate() {
            // Long enough to be counted in several parts.
            let text = sample.repeat(60_000 / sample.len() + 1);
            let whole = count_with(enc, &text) as u64;
            for max in [1, 7, 64, 5000] {
                let c = pushed(enc, &text, &mut rng, max);
                assert!(!c.approximate(), "sample {i} needed a forced cut");
                assert!(c.counted > 0, "sample {i} was never settled");
                assert_eq!(c.total(), whole, "{enc:?}, sample {i}, pieces up to {max}");
            }
        }
        // All samples run together, cut anywhere.
        let text = SAMPLES.concat().repeat(20);
        let c = pushed(enc, &text, &mut rng, 300);
        assert_eq!(
            c.total(),
            count_with(enc, &text) as u64,
            "{enc:?}, all samples"
        );
    }
}

#[test]
fn a_cut_is_exact_only_where_no_piece_can_continue() {
    assert_eq!(exact_cut("hello world"), Some(5));
    assert_eq!(exact_cut("a, b"), Some(2));
    // A space after a space, or at the start, is no cut: the run of spaces may be split
    // differently once more text comes.
    assert_eq!(exact_cut("  x"), None);
    assert_eq!(exact_cut(" x"), None);
    // After a non-ASCII character the space is not taken (it could be white space itself).
    assert_eq!(exact_cut("é x"), None);
    assert_eq!(exact_cut("中文，继续"), Some("中文".len()));
    assert_eq!(exact_cut("中文继续"), None);
    assert_eq!(exact_cut("word\nword"), None);
}

#[test]
fn text_without_cuts_is_forced_and_stays_close() {
    for enc in [Encoding::O200k, Encoding::Cl100k] {
        let text = "abcdefghij".repeat(5_000); // one 50 KB word
        let c = pushed(enc, &text, &mut Rng(7), 100);
        assert!(c.approximate());
        let whole = count_with(enc, &text) as u64;
        let forced = (text.len() / FLUSH) as u64;
        assert!(
            c.total().abs_diff(whole) <= forced,
            "{enc:?}: {} counted against {whole} for the whole",
            c.total()
        );
    }
}

#[test]
fn a_large_push_is_settled_as_it_goes() {
    let text = SAMPLES[0].repeat(10_000); // about 1 MB in one piece
    let mut c = TextCount::new(Encoding::O200k);
    c.push(&text);
    assert!(c.tail.len() <= FLUSH + SAMPLES[0].len());
    assert_eq!(c.total(), count_with(Encoding::O200k, &text) as u64);
}
