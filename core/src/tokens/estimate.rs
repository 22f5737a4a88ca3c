//! The prompt estimate of a request body, read in one borrowing pass: serde visitors walk the
//! JSON and count as they go, with no `serde_json::Value` tree. Strings without escapes are
//! counted where they lie in the body.
//!
//! The result equals [`estimate_value`](super::estimate_value) on the parsed body, including its
//! corner cases: a repeated key counts once, with its last value (as a parsed map keeps it), and a
//! value counted "as its JSON" is the compact serialization of that value with object keys sorted,
//! the text `serde_json::Value::to_string` gives, written here without building the value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::openai::choices::Shallow;

use super::canon::{canon_map, canon_seq};
use super::{count_with, encoding_for, Encoding, PER_MESSAGE, PER_NAME, REPLY_PRIMING};

/// Estimated prompt tokens of an OpenAI request body for `model`; 0 when the body is not JSON.
///
/// Chat `messages` get OpenAI's documented overhead (3 per message, 1 more per `name`, 3 priming the
/// reply); content may be a string, an array of parts (the `text` parts count) or any other JSON value
/// (its serialized text counts). `tools`/`functions` count as their serialized JSON. Completions count
/// `prompt`, embeddings and the Responses API `input` and `instructions` (strings, arrays of strings or of items, or
/// token arrays by their length).
pub fn estimate_prompt(model: &str, body: &[u8]) -> usize {
    let mut scratch = Scratch::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let walk = Walk {
        enc: encoding_for(model),
        kind: Kind::Top,
        s: &mut scratch,
    };
    match walk.deserialize(&mut de) {
        Ok(n) if de.end().is_ok() => n,
        _ => 0,
    }
}

/// Fields of one message kept inline (role, content, name, tool calls…); more spill to the heap.
const INLINE_FIELDS: usize = 8;

/// Buffers reused for the whole body: serialized JSON being counted, and the fields of a message
/// with more than [`INLINE_FIELDS`].
#[derive(Default)]
struct Scratch<'de> {
    json: Vec<u8>,
    fields: Vec<(Cow<'de, str>, usize)>,
}

/// What the value being read is, which decides how it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The body: only an object counts.
    Top,
    /// A string counts as itself, null as nothing, anything else as its JSON.
    Value,
    /// `tools` / `functions`: null is nothing, anything else its JSON (a string with its quotes).
    Json,
    /// `messages`: an array of messages, else a [`Kind::Value`].
    Messages,
    /// One message: an object of fields, else a [`Kind::Value`].
    Message,
    /// A message's `content`: an array of parts, else a [`Kind::Value`].
    Content,
    /// A content part: a string, or an object's `text` (as a [`Kind::Value`]); else nothing.
    Part,
    /// `prompt` / `input`: a string, an array of items, else a [`Kind::Value`].
    Input,
    /// An item of `prompt` / `input`: a string, a token (1), a token array (its length), else a
    /// [`Kind::Value`].
    InputItem,
}

/// Counts one value of some [`Kind`].
struct Walk<'s, 'de> {
    enc: Encoding,
    kind: Kind,
    s: &'s mut Scratch<'de>,
}

impl<'de> Walk<'_, 'de> {
    fn child(&mut self, kind: Kind) -> Walk<'_, 'de> {
        Walk {
            enc: self.enc,
            kind,
            s: self.s,
        }
    }

    fn count(&self, text: &str) -> usize {
        count_with(self.enc, text)
    }

    /// Tokens of the JSON text in the scratch buffer (always UTF-8: written by serde_json).
    fn count_json(&self) -> usize {
        std::str::from_utf8(&self.s.json).map_or(0, |t| self.count(t))
    }

    /// A scalar that counts as its JSON text (numbers, booleans; strings for [`Kind::Json`]).
    fn scalar_json<T: serde::Serialize + ?Sized, E: de::Error>(
        &mut self,
        v: &T,
    ) -> Result<usize, E> {
        self.s.json.clear();
        serde_json::to_writer(&mut self.s.json, v).map_err(E::custom)?;
        Ok(self.count_json())
    }

    fn string<E: de::Error>(&mut self, v: &str) -> Result<usize, E> {
        match self.kind {
            Kind::Top => Ok(0),
            Kind::Json => self.scalar_json(v),
            _ => Ok(self.count(v)),
        }
    }

    fn number<T: serde::Serialize, E: de::Error>(&mut self, v: T) -> Result<usize, E> {
        match self.kind {
            Kind::Top | Kind::Part => Ok(0),
            Kind::InputItem => Ok(1),
            _ => self.scalar_json(&v),
        }
    }

    /// The fields of one message: each counted once (the last of a repeated key), `content` as a
    /// [`Kind::Content`], the others as [`Kind::Value`]s, plus [`PER_NAME`] with a `name`.
    fn message<A: MapAccess<'de>>(&mut self, mut map: A) -> Result<usize, A::Error> {
        // A message's few fields are kept inline; only one with more spills into the scratch Vec.
        let mut inline: [(Cow<'de, str>, usize); INLINE_FIELDS] = Default::default();
        let mut len = 0;
        let mut fields = std::mem::take(&mut self.s.fields);
        fields.clear();
        while let Some(Key(k)) = map.next_key()? {
            let kind = if k == "content" {
                Kind::Content
            } else {
                Kind::Value
            };
            let n = map.next_value_seed(self.child(kind))?;
            if len < INLINE_FIELDS {
                inline[len] = (k, n);
                len += 1;
            } else {
                if fields.is_empty() {
                    fields.extend(inline.iter_mut().map(std::mem::take));
                }
                fields.push((k, n));
            }
        }
        let counted = |k: &str, tokens: usize| tokens + if k == "name" { PER_NAME } else { 0 };
        let mut n = 0;
        if fields.is_empty() {
            // Each key counts once, with its last occurrence: skip any that occurs again later.
            let inline = &inline[..len];
            for (i, (k, tokens)) in inline.iter().enumerate() {
                if !inline[i + 1..].iter().any(|(later, _)| later == k) {
                    n += counted(k, *tokens);
                }
            }
        } else {
            // A stable sort keeps repeated keys in order: the last of each run is the one kept.
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            for (i, (k, tokens)) in fields.iter().enumerate() {
                if fields.get(i + 1).is_some_and(|next| next.0 == *k) {
                    continue;
                }
                n += counted(k, *tokens);
            }
        }
        self.s.fields = fields;
        Ok(n)
    }

    /// The body's fields that count, each its last occurrence.
    fn top<A: MapAccess<'de>>(&mut self, mut map: A) -> Result<usize, A::Error> {
        let mut slots = [None::<usize>; 6];
        while let Some(Key(k)) = map.next_key()? {
            let (slot, kind) = match &*k {
                "messages" => (0, Kind::Messages),
                "tools" => (1, Kind::Json),
                "functions" => (2, Kind::Json),
                "prompt" => (3, Kind::Input),
                "input" => (4, Kind::Input),
                "instructions" => (5, Kind::Input),
                _ => {
                    map.next_value::<Shallow>()?;
                    continue;
                }
            };
            slots[slot] = Some(map.next_value_seed(self.child(kind))?);
        }
        Ok(slots.iter().flatten().sum())
    }

    /// A content part object: its last `text`, as a [`Kind::Value`].
    fn part<A: MapAccess<'de>>(&mut self, mut map: A) -> Result<usize, A::Error> {
        let mut text = 0;
        while let Some(Key(k)) = map.next_key()? {
            if k == "text" {
                text = map.next_value_seed(self.child(Kind::Value))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(text)
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, 'de> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, 'de> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<usize, E> {
        match self.kind {
            Kind::Top | Kind::Part => Ok(0),
            _ => self.scalar_json(&v),
        }
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<usize, E> {
        self.number(v)
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<usize, E> {
        self.number(v)
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<usize, E> {
        self.number(v)
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<usize, E> {
        self.string(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<usize, A::Error> {
        let (each, base, add) = match self.kind {
            Kind::Top | Kind::Part | Kind::InputItem => (None, 0, 0),
            Kind::Messages => (Some(Kind::Message), REPLY_PRIMING, PER_MESSAGE),
            Kind::Content => (Some(Kind::Part), 0, 0),
            Kind::Input => (Some(Kind::InputItem), 0, 0),
            Kind::Value | Kind::Json | Kind::Message => {
                self.s.json.clear();
                canon_seq(seq, &mut self.s.json)?;
                return Ok(self.count_json());
            }
        };
        let mut n = base;
        match each {
            Some(kind) => {
                while let Some(t) = seq.next_element_seed(self.child(kind))? {
                    n += add + t;
                }
            }
            // A token array counts its length; elsewhere an array is skipped.
            None => {
                let mut len = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    len += 1;
                }
                if self.kind == Kind::InputItem {
                    n = len;
                }
            }
        }
        Ok(n)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<usize, A::Error> {
        match self.kind {
            Kind::Top => self.top(map),
            Kind::Message => self.message(map),
            Kind::Part => self.part(map),
            _ => {
                self.s.json.clear();
                canon_map(map, &mut self.s.json)?;
                Ok(self.count_json())
            }
        }
    }
}

/// A map key, borrowed from the body unless it had escapes.
pub(super) struct Key<'de>(pub(super) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
#[path = "estimate_tests.rs"]
mod tests;
