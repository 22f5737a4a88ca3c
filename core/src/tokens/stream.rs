//! Counting the tokens of a text that arrives in pieces (a streamed reply) while keeping only a
//! short tail of it: [`TextCount`] gives the same number as [`count_with`] on the whole text.
//!
//! tiktoken first splits a text with its encoding's regex into pieces (words with their leading
//! space, runs of digits, punctuation or white space), then encodes each piece on its own, so
//! the count is additive across piece boundaries, not across arbitrary cuts. The tail is counted
//! and dropped up to a cut `c` that is a piece boundary whatever text follows, and where the
//! regex decides every piece before `c` alike whether the text ends at `c` or goes on:
//!
//! - an ASCII space after a visible ASCII character (`word word`, `x, y`, `1 2`): no piece
//!   runs across a space that follows a non-space (a word, number or punctuation run stops
//!   there; the optional space prefix exists only at a piece's start; a run of white space would
//!   need the character before to be white space too), and each alternative of the regex that
//!   reaches the space stops there exactly as it would at the end of the text;
//! - a CJK ideograph (U+4E00..U+9FFF, a letter) followed by CJK sentence punctuation (、。，！？：；),
//!   for text without spaces: the letter run stops at the punctuation as it would at the end, and
//!   no punctuation run can reach back over a letter.
//!
//! Both encodings' patterns (cl100k_base, o200k_base) have no look-behind, and their only
//! end-of-text anchor and look-ahead apply to white space runs, which cannot run up to such a cut.
//! When a tail of [`TAIL_MAX`] bytes holds no such cut (a single unbroken word, code without
//! spaces), it is cut at a character boundary anyway: then a piece may be split in two and the
//! count can exceed the whole-text count by a token or so per forced cut
//! ([`TextCount::approximate`] says so).

use super::{count_with, Encoding};

/// Tail length at which its complete part is counted and dropped.
const FLUSH: usize = 4 * 1024;
/// Longest tail kept while no exact cut is found.
pub const TAIL_MAX: usize = 16 * 1024;

/// Tokens of a text pushed in pieces, holding at most [`TAIL_MAX`] bytes (plus one push) of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextCount {
    enc: Encoding,
    counted: u64,
    tail: String,
    forced: bool,
}

impl TextCount {
    /// An empty count under `enc`.
    pub fn new(enc: Encoding) -> Self {
        TextCount {
            enc,
            counted: 0,
            tail: String::new(),
            forced: false,
        }
    }

    /// Append `text`.
    pub fn push(&mut self, mut text: &str) {
        // A large piece goes in FLUSH-sized parts, so the tail never holds much more than that.
        while !text.is_empty() {
            let mut take = text.len().min(FLUSH);
            while !text.is_char_boundary(take) {
                take += 1;
            }
            let (part, rest) = text.split_at(take);
            self.tail.push_str(part);
            text = rest;
            if self.tail.len() >= FLUSH {
                self.settle();
            }
        }
    }

    /// The tokens of everything pushed (the tail is counted now, and kept).
    pub fn total(&self) -> u64 {
        self.counted + count_with(self.enc, &self.tail) as u64
    }

    /// True when a tail had to be cut where a piece may continue (see the module docs).
    pub fn approximate(&self) -> bool {
        self.forced
    }

    /// Count and drop the tail up to its last exact cut (or a forced one past [`TAIL_MAX`]).
    fn settle(&mut self) {
        let cut = match exact_cut(&self.tail) {
            Some(c) => c,
            None if self.tail.len() >= TAIL_MAX => {
                self.forced = true;
                let mut c = self.tail.len() - FLUSH;
                while !self.tail.is_char_boundary(c) {
                    c -= 1;
                }
                c
            }
            None => return,
        };
        self.counted += count_with(self.enc, &self.tail[..cut]) as u64;
        self.tail.drain(..cut);
    }
}

/// CJK sentence punctuation that may follow an ideograph at a cut.
const CJK_STOPS: [char; 7] = ['、', '。', '，', '！', '？', '：', '；'];

/// The last exact cut of `s` (see the module docs), if any.
fn exact_cut(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let space = memchr::memrchr_iter(b' ', b).find(|&i| i > 0 && b[i - 1].is_ascii_graphic());
    if space.is_some() {
        return space;
    }
    let mut after: Option<char> = None;
    for (i, c) in s.char_indices().rev() {
        if ('\u{4e00}'..='\u{9fff}').contains(&c) && after.is_some_and(|a| CJK_STOPS.contains(&a)) {
            return Some(i + c.len_utf8());
        }
        after = Some(c);
    }
    None
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
