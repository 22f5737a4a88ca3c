//! The frames of a streamed mock answer, made as they are sent: [`SseEvents`] describes them
//! (fixed frames before and after, and one frame per content piece from a template) and
//! [`SseEvents::iter`] makes them one at a time, compressing them on the way when the answer is
//! compressed. A stream of 200,000 chunks costs its description, not 200,000 frames in memory.

use bytes::Bytes;
use serde_json::Value;

use super::compress::{Encoder, GZIP_HEADER};
use crate::config::MockCoding;

/// Words of the mock's reply after "Mock response from {region}." (cycled for long replies).
const WORDS: [&str; 10] = [
    "This",
    "is",
    "a",
    "deterministic",
    "reply",
    "from",
    "the",
    "aigw",
    "mock",
    "upstream.",
];

/// The mock's reply text, cut into `chunks` pieces, none of it held: "Mock response from
/// {region}." and then [`WORDS`] over and over, `max(chunks, 14)` words in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    region: String,
    chunks: usize,
    words: usize,
}

impl Reply {
    pub(crate) fn new(region: &str, chunks: u32) -> Self {
        let chunks = chunks.max(1) as usize;
        Reply {
            region: region.to_owned(),
            chunks,
            words: chunks.max(4 + WORDS.len()),
        }
    }

    /// How many pieces.
    pub(crate) fn chunks(&self) -> usize {
        self.chunks
    }

    fn push_word(&self, j: usize, out: &mut String) {
        match j {
            0 => out.push_str("Mock"),
            1 => out.push_str("response"),
            2 => out.push_str("from"),
            3 => {
                out.push_str(&self.region);
                out.push('.');
            }
            _ => out.push_str(WORDS[(j - 4) % WORDS.len()]),
        }
    }

    /// Piece `i`: its share of the words, after a space unless it is the first.
    pub(crate) fn piece(&self, i: usize) -> String {
        let (lo, hi) = (
            i * self.words / self.chunks,
            (i + 1) * self.words / self.chunks,
        );
        let mut s = String::new();
        for j in lo..hi {
            if j > 0 {
                s.push(' ');
            }
            self.push_word(j, &mut s);
        }
        s
    }

    /// The whole text (for the answers that carry it whole).
    pub(crate) fn text(&self) -> String {
        (0..self.chunks).map(|i| self.piece(i)).collect()
    }

    /// The tokens of [`text`](Self::text) under `enc`, counted without making it: the text is
    /// its first four words then whole rounds of [`WORDS`] and a part of one, each part starting
    /// with a space after a visible character, where counts add up exactly (see
    /// [`crate::tokens::TextCount`]).
    pub(crate) fn tokens(&self, enc: crate::tokens::Encoding) -> u64 {
        let count = |s: &str| crate::tokens::count_with(enc, s) as u64;
        let mut first = String::new();
        (0..4).for_each(|j| {
            if j > 0 {
                first.push(' ');
            }
            self.push_word(j, &mut first);
        });
        let rest = self.words - 4;
        let round = format!(" {}", WORDS.join(" "));
        let part = WORDS[..rest % WORDS.len()]
            .iter()
            .fold(String::new(), |s, w| s + " " + w);
        count(&first) + (rest / WORDS.len()) as u64 * count(&round) + count(&part)
    }
}

/// A frame with holes for a piece (as a JSON string) and a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Piece,
    Seq,
}

/// What stands for the piece in the value a template is made from.
pub(crate) const PIECE: &str = "\u{1}piece\u{1}";
/// What stands for the sequence number.
pub(crate) const SEQ: u64 = 9_007_199_254_740_991;

impl Template {
    /// The frame `format` makes of `v`, with the [`PIECE`] string and the [`SEQ`] number as holes.
    pub(crate) fn new(v: &Value, format: impl Fn(&Value) -> String) -> Self {
        let text = format(v);
        let (piece, seq) = (Value::from(PIECE).to_string(), SEQ.to_string());
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while let Some((at, hole, len)) = [
            (rest.find(&piece), Part::Piece, piece.len()),
            (rest.find(&seq), Part::Seq, seq.len()),
        ]
        .into_iter()
        .filter_map(|(at, hole, len)| at.map(|a| (a, hole, len)))
        .min_by_key(|(a, ..)| *a)
        {
            parts.push(Part::Text(rest[..at].to_owned()));
            parts.push(hole);
            rest = &rest[at + len..];
        }
        parts.push(Part::Text(rest.to_owned()));
        Template(parts)
    }

    fn make(&self, piece: &str, seq: u64) -> Bytes {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Piece => out.push_str(&Value::from(piece).to_string()),
                Part::Seq => out.push_str(&seq.to_string()),
            }
        }
        Bytes::from(out)
    }
}

/// The frames of a streamed answer: `before`, a frame per piece of `reply` (numbered on from
/// `before.len()`), then `after`; compressed with `coding` (and scrambled when `corrupt`).
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvents {
    before: Vec<Bytes>,
    pieces: Option<(Reply, Template)>,
    after: Vec<Bytes>,
    coding: Option<(MockCoding, bool)>,
}

impl SseEvents {
    /// `before`, a frame per piece of `reply` from `template`, then `after`.
    pub(crate) fn pieces(
        before: Vec<Bytes>,
        reply: Reply,
        template: Template,
        after: Vec<Bytes>,
    ) -> Self {
        SseEvents {
            before,
            pieces: Some((reply, template)),
            after,
            coding: None,
        }
    }

    /// How many frames.
    pub fn len(&self) -> usize {
        self.before.len() + self.pieces.as_ref().map_or(0, |(r, _)| r.chunks()) + self.after.len()
    }

    /// No frames at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Compress the frames as one stream with `coding`, one output piece per frame, each flushed
    /// so it decodes on its own (given the ones before); with `corrupt` every byte after the gzip
    /// header is flipped.
    pub(crate) fn encode(&mut self, coding: MockCoding, corrupt: bool) {
        self.coding = Some((coding, corrupt));
    }

    /// The frames (compressed, if so), made one at a time.
    pub fn iter(&self) -> Events<'_> {
        Events {
            of: self,
            next: 0,
            encoder: None,
            skip: GZIP_HEADER,
        }
    }

    fn plain(&self, i: usize) -> Bytes {
        let n = self.pieces.as_ref().map_or(0, |(r, _)| r.chunks());
        if let Some(b) = self.before.get(i) {
            return b.clone();
        }
        let j = i - self.before.len();
        match &self.pieces {
            Some((reply, t)) if j < n => t.make(&reply.piece(j), i as u64),
            _ => self.after.get(j - n).cloned().unwrap_or_default(),
        }
    }
}

impl<'a> IntoIterator for &'a SseEvents {
    type Item = Bytes;
    type IntoIter = Events<'a>;

    fn into_iter(self) -> Events<'a> {
        self.iter()
    }
}

/// The frames of an [`SseEvents`], made as they are asked for.
pub struct Events<'a> {
    of: &'a SseEvents,
    next: usize,
    encoder: Option<Encoder>,
    skip: usize,
}

impl Iterator for Events<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let len = self.of.len();
        if self.next >= len {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let frame = self.of.plain(i);
        let Some((coding, corrupt)) = self.of.coding else {
            return Some(frame);
        };
        // Writing into memory does not fail; if an encoder ever did, the frame goes out plain.
        let encoded = (|| {
            let enc = match self.encoder.as_mut() {
                Some(e) => e,
                None => self.encoder.insert(Encoder::new(coding)?),
            };
            enc.write_all(&frame)?;
            if i + 1 < len {
                enc.flush()?;
                return Ok(enc.take());
            }
            self.encoder.take().map_or(Ok(Vec::new()), Encoder::finish)
        })();
        let mut out: Vec<u8> = match encoded {
            Ok(v) => v,
            Err::<_, std::io::Error>(_) => return Some(frame),
        };
        if corrupt {
            out.iter_mut().skip(self.skip).for_each(|x| *x ^= 0x55);
            self.skip = self.skip.saturating_sub(out.len());
        }
        Some(Bytes::from(out))
    }
}
