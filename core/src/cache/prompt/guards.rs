//! Lexical guards: checks a semantic candidate's text must pass on top of the similarity
//! threshold. Embeddings score opposite meanings above true paraphrases ("Is it safe…" / "Is it
//! unsafe…" 0.989, "10 USD to EUR" / "10 EUR to USD" 0.997 with e5), so these, not the threshold,
//! stop those false hits.
//!
//! Each guard is a pure function of the two texts, linear in their length, allocation-light, and
//! total on any Unicode input. A guard may refuse a true paraphrase (a miss: one backend call);
//! it is built so that the differences it targets are never let through.
//!
//! - **numbers**: the multisets of numbers must be equal. A number is a run of ASCII digits with
//!   optional `,`-grouped thousands (`1,000` = `1000`: a comma followed by exactly three digits)
//!   and an optional `.` fraction; it is normalised (leading zeros and trailing fraction zeros
//!   dropped: `10` = `10.0` = `010`), and negative when a `-` or `−` precedes it that does not
//!   follow a letter or digit (`-5` is negative, `GPT-4` and `10-20` are not). Any other Unicode
//!   numeric character (`½`, `²`, Arabic-Indic or full-width digits) is a number of its own, by
//!   itself. Number words ("ten") are not numbers.
//! - **negation**: both texts carry the same *number* of negation markers (stricter than the
//!   issue's "presence agrees": "not unsafe" vs "unsafe" differs). A marker is a word from a list
//!   (`not no never none nobody nothing neither nor nowhere cannot without lack…`, a few common
//!   words of other languages, apostrophe-less `dont isnt cant…`), any word ending in `n't`, any
//!   word of 5+ letters starting with `un` except a list of non-negations (`under…`, `unit…`,
//!   `union`, `unique`, `univers…`, `until`, `uncle`, …), a `non` prefix, a short list of
//!   common `in-/im-/il-/ir-/dis-` negations (`impossible`, `illegal`, `incorrect`, `invalid`,
//!   `insecure`, `dishonest`, …: the prefixes alone are too common to count), and in CJK text the
//!   characters `不 没 沒 无 無 非 未 别 別`. Words are runs of letters, digits and apostrophes,
//!   compared lowercased.

use super::Guard;

/// Do `query` and `candidate` pass every guard in `guards`? (No guards: always.)
pub fn guards_pass(guards: &[Guard], query: &str, candidate: &str) -> bool {
    guards.iter().all(|g| match g {
        Guard::Numbers => {
            let (mut a, mut b) = (numbers(query), numbers(candidate));
            a.sort_unstable();
            b.sort_unstable();
            a == b
        }
        Guard::Negation => negations(query) == negations(candidate),
    })
}

/// The numbers of `text`, normalised (see the module docs), in order.
pub(crate) fn numbers(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if !c.is_ascii_digit() {
            if c.is_numeric() {
                out.push(c.to_string());
            }
            i += 1;
            continue;
        }
        let negative = i > 0
            && matches!(chars.get(i - 1), Some('-' | '\u{2212}'))
            && !(i > 1 && chars.get(i - 2).is_some_and(|p| p.is_alphanumeric()));
        let mut int = String::new();
        while let Some(&d) = chars.get(i).filter(|d| d.is_ascii_digit()) {
            int.push(d);
            i += 1;
        }
        // Thousands groups: `,ddd` not followed by another digit.
        while chars.get(i) == Some(&',')
            && (1..=3).all(|k| chars.get(i + k).is_some_and(char::is_ascii_digit))
            && !chars.get(i + 4).is_some_and(char::is_ascii_digit)
        {
            int.extend(chars.get(i + 1..i + 4).unwrap_or_default());
            i += 4;
        }
        let mut frac = String::new();
        if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            i += 1;
            while let Some(&d) = chars.get(i).filter(|d| d.is_ascii_digit()) {
                frac.push(d);
                i += 1;
            }
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let mut n = String::with_capacity(int.len() + frac.len() + 3);
        if negative && !(int.is_empty() && frac.is_empty()) {
            n.push('-');
        }
        n.push_str(if int.is_empty() { "0" } else { int });
        if !frac.is_empty() {
            n.push('.');
            n.push_str(frac);
        }
        out.push(n);
    }
    out
}

/// Negation words (lowercase; `'` for every apostrophe).
const NEGATIONS: &[&str] = &[
    // English
    "not",
    "no",
    "never",
    "none",
    "nobody",
    "nothing",
    "neither",
    "nor",
    "nowhere",
    "cannot",
    "without",
    "lack",
    "lacks",
    "lacked",
    "lacking",
    "non",
    "nope",
    "nay",
    "dont",
    "doesnt",
    "didnt",
    "isnt",
    "arent",
    "wasnt",
    "werent",
    "cant",
    "couldnt",
    "shouldnt",
    "wouldnt",
    "wont",
    "hasnt",
    "havent",
    "hadnt",
    "mustnt",
    "neednt",
    "aint",
    // in-/im-/il-/ir-/dis- words common in questions
    "impossible",
    "improbable",
    "impractical",
    "improper",
    "illegal",
    "illegitimate",
    "illogical",
    "irrelevant",
    "irregular",
    "irresponsible",
    "irreversible",
    "incorrect",
    "invalid",
    "insecure",
    "inaccurate",
    "incomplete",
    "inappropriate",
    "incapable",
    "ineffective",
    "inefficient",
    "insufficient",
    "inadequate",
    "incompatible",
    "inconsistent",
    "insignificant",
    "intolerant",
    "dishonest",
    "disagree",
    "disagrees",
    "disallow",
    "disallowed",
    "dislike",
    "dislikes",
    "disable",
    "disabled",
    "disapprove",
    "disprove",
    // German, French, Spanish, Portuguese, Italian, Dutch, Russian
    "nicht",
    "kein",
    "keine",
    "keinen",
    "keinem",
    "keiner",
    "keines",
    "nie",
    "niemals",
    "nichts",
    "niemand",
    "pas",
    "jamais",
    "rien",
    "aucun",
    "aucune",
    "ne",
    "nunca",
    "nada",
    "nadie",
    "ninguno",
    "ninguna",
    "ningún",
    "tampoco",
    "ni",
    "não",
    "ninguém",
    "nem",
    "mai",
    "niente",
    "nessuno",
    "niet",
    "geen",
    "nooit",
    "не",
    "нет",
    "ни",
    "никогда",
    "ничего",
    "никто",
];

/// Words starting with `un` that are not negations (prefixes; checked on words of 5+ letters).
const UN_WORDS: &[&str] = &[
    "under",
    "unit",
    "union",
    "uniq",
    "univers",
    "unicorn",
    "unicode",
    "unif",
    "unison",
    "unilateral",
    "unix",
    "until",
    "unto",
    "uncle",
    "unanim",
    "undul",
    "unction",
    "unguent",
    "unicycl",
    "unicell",
    "unisex",
    "unid",
    "unter",
    "unser",
    "unsre",
];

/// Negating CJK characters.
const CJK: [char; 9] = ['不', '没', '沒', '无', '無', '非', '未', '别', '別'];

/// How many negation markers `text` carries.
pub(crate) fn negations(text: &str) -> usize {
    let mut count = text.chars().filter(|c| CJK.contains(c)).count();
    let mut word = String::new();
    let is_word = |c: char| c.is_alphanumeric() || c == '\'' || c == '\u{2019}';
    for piece in text.split(|c: char| !is_word(c)) {
        if piece.is_empty() {
            continue;
        }
        word.clear();
        for c in piece.chars() {
            if c == '\u{2019}' {
                word.push('\'');
            } else {
                word.extend(c.to_lowercase());
            }
        }
        if is_negation(word.trim_matches('\'')) {
            count += 1;
        }
    }
    count
}

/// One lowercased word.
fn is_negation(w: &str) -> bool {
    if w.is_empty() {
        return false;
    }
    if NEGATIONS.contains(&w) || w.ends_with("n't") || w.starts_with("n'") {
        return true;
    }
    if w.starts_with("un") && w.chars().count() >= 5 {
        return !UN_WORDS.iter().any(|p| w.starts_with(p));
    }
    w.starts_with("non")
        && w.chars().count() >= 6
        && !w.starts_with("nonce")
        && !w.starts_with("nonetheless")
}
