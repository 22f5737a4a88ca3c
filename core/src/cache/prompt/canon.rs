//! A request body as a small tree whose objects are sorted and duplicate-free, and its canonical,
//! injective encoding for the cache keys.
//!
//! serde_json parses (it refuses invalid UTF-8, lone surrogates, a BOM, trailing bytes, numbers out
//! of `f64` range, and nests at most 128 deep); the visitor here builds [`Node`]s instead of
//! `serde_json::Value` because it must also refuse what `Value` silently accepts:
//! - **duplicate keys**: `Value` keeps the last, a backend may take the first, so
//!   `{"messages":A,"messages":B}` could be keyed by B and answered for A — a poisoned entry;
//! - **depth** past [`MAX_DEPTH`] (bounded work in the recursive walks that follow).
//!
//! Numbers keep their kind: `1` and `1.0` are different values here (an integer and a float, as
//! serde_json reads them). Different spellings of one number may key differently, but different
//! numbers never collide; the same spelling always gives the same key (an SDK always spells a body one way),
//! and that is all the exact layer needs. Floats are compared by their `f64` bits, the precision
//! the backends parse them with; integers past `u64` are read as floats by serde_json.

use std::fmt;
use std::hash::Hasher;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deepest nesting of arrays and objects accepted (the body's root object is depth 1). Chat bodies nest about 8 deep
/// (tools' JSON schemas a few more); deeper bodies bypass the cache.
pub(crate) const MAX_DEPTH: usize = 64;

/// A JSON value, objects sorted by key (bytewise) with no key twice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer (or `-0`, as serde_json reads it).
    NegInt(i64),
    Float(f64),
    Str(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
    /// What stands in the partition material for a value that was taken out of it (the embedded
    /// text): no JSON value encodes like it.
    Hole,
}

/// Why a body was not read into a [`Node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Not JSON (or invalid UTF-8, a BOM, trailing bytes, a number out of range).
    NotJson,
    /// JSON, but nested deeper than [`MAX_DEPTH`] or with a key twice in one object.
    Refused,
}

/// Parse a whole body.
pub(crate) fn parse(body: &[u8]) -> Result<Node, ParseError> {
    let refused = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let node = Seed {
        depth: 1,
        refused: &refused,
    }
    .deserialize(&mut de)
    .and_then(|n| de.end().map(|()| n));
    match node {
        Ok(n) => Ok(n),
        Err(_) if refused.get() => Err(ParseError::Refused),
        Err(_) => Err(ParseError::NotJson),
    }
}

impl Node {
    /// The value of `key` in an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        let Node::Object(fields) = self else {
            return None;
        };
        let i = fields.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        fields.get(i).map(|(_, v)| v)
    }

    /// The value of `key` in an object, to change.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        let Node::Object(fields) = self else {
            return None;
        };
        let i = fields.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        fields.get_mut(i).map(|(_, v)| v)
    }

    /// Take `key` out of an object.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Node> {
        let Node::Object(fields) = self else {
            return None;
        };
        let i = fields.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        Some(fields.remove(i).1)
    }

    /// The string, when this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `key`'s value is JSON `true`.
    pub(crate) fn is_true(&self, key: &str) -> bool {
        matches!(self.get(key), Some(Node::Bool(true)))
    }

    /// `key` is present with a value other than `null`.
    pub(crate) fn has(&self, key: &str) -> bool {
        !matches!(self.get(key), None | Some(Node::Null))
    }

    /// Write the canonical encoding: a type tag, then fixed-size numbers or length-prefixed
    /// strings and counts. The encoding is prefix-free, so two different trees (or sequences of
    /// trees) never write the same bytes. Recursion is bounded by [`MAX_DEPTH`].
    pub(crate) fn encode(&self, h: &mut impl Hasher) {
        match self {
            Node::Null => h.write_u8(b'n'),
            Node::Bool(b) => h.write_u8(if *b { b't' } else { b'f' }),
            Node::UInt(u) => {
                h.write_u8(b'u');
                h.write(&u.to_le_bytes());
            }
            Node::NegInt(i) => {
                h.write_u8(b'i');
                h.write(&i.to_le_bytes());
            }
            Node::Float(f) => {
                h.write_u8(b'd');
                h.write(&f.to_bits().to_le_bytes());
            }
            Node::Str(s) => {
                h.write_u8(b's');
                bytes(h, s.as_bytes());
            }
            Node::Array(items) => {
                h.write_u8(b'a');
                h.write(&(items.len() as u64).to_le_bytes());
                items.iter().for_each(|n| n.encode(h));
            }
            Node::Object(fields) => {
                h.write_u8(b'o');
                h.write(&(fields.len() as u64).to_le_bytes());
                for (k, v) in fields {
                    bytes(h, k.as_bytes());
                    v.encode(h);
                }
            }
            Node::Hole => h.write_u8(b'h'),
        }
    }
}

/// A length-prefixed byte string.
pub(crate) fn bytes(h: &mut impl Hasher, b: &[u8]) {
    h.write(&(b.len() as u64).to_le_bytes());
    h.write(b);
}

/// Builds a [`Node`] at a depth, flagging (through `refused`) what serde_json would accept.
#[derive(Clone, Copy)]
struct Seed<'r> {
    depth: usize,
    refused: &'r std::cell::Cell<bool>,
}

impl Seed<'_> {
    fn refuse<E: de::Error>(&self, why: &str) -> E {
        self.refused.set(true);
        E::custom(why)
    }

    fn deeper<E: de::Error>(&self) -> Result<Self, E> {
        // A container at `depth` reads its elements one deeper; a container past the cap is
        // refused before it reads anything.
        if self.depth > MAX_DEPTH {
            return Err(self.refuse("nested too deep"));
        }
        Ok(Seed {
            depth: self.depth + 1,
            refused: self.refused,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        // serde_json reads non-negative integers as u64; keep one form per value anyway.
        Ok(u64::try_from(v).map_or(Node::NegInt(v), Node::UInt))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let inner = self.deeper()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(n) = seq.next_element_seed(inner)? {
            items.push(n);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let inner = self.deeper()?;
        let mut fields: Vec<(String, Node)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(inner)?;
            fields.push((k, v));
        }
        // A stable sort, so equal keys sit side by side for the duplicate check.
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        if fields.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(self.refuse("duplicate key"));
        }
        Ok(Node::Object(fields))
    }
}
