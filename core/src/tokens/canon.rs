//! The compact JSON text of a value as `serde_json::Value::to_string` writes it (object keys
//! sorted, a repeated key once with its last value), written while the value is read, without
//! building the value: what the prompt estimate counts for a value counted "as its JSON".

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::estimate::Key;

/// Writes a value's compact JSON with object keys sorted and deduplicated (last wins): the text
/// of `serde_json::Value::to_string` for the same value.
struct Canon<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Canon<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Canon<'_> {
    fn put<T: serde::Serialize + ?Sized, E: de::Error>(self, v: &T) -> Result<(), E> {
        serde_json::to_writer(self.0, v).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for Canon<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.put(&v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.put(&v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.put(&v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.put(&v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.put(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        canon_seq(seq, self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        canon_map(map, self.0)
    }
}

/// `[a,b,…]`.
pub(super) fn canon_seq<'de, A: SeqAccess<'de>>(
    mut seq: A,
    out: &mut Vec<u8>,
) -> Result<(), A::Error> {
    out.push(b'[');
    let mut first = true;
    loop {
        let mark = out.len();
        if !first {
            out.push(b',');
        }
        if seq.next_element_seed(Canon(out))?.is_none() {
            out.truncate(mark);
            break;
        }
        first = false;
    }
    out.push(b']');
    Ok(())
}

/// `{"k":v,…}` in key order, each key once with its last value. The values are written in
/// arrival order first, then the object is reassembled sorted in place of them.
pub(super) fn canon_map<'de, A: MapAccess<'de>>(
    mut map: A,
    out: &mut Vec<u8>,
) -> Result<(), A::Error> {
    let start = out.len();
    let mut entries: Vec<(Cow<'de, str>, usize, usize)> = Vec::new();
    while let Some(Key(k)) = map.next_key()? {
        let from = out.len();
        map.next_value_seed(Canon(out))?;
        entries.push((k, from, out.len()));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut obj = Vec::with_capacity(out.len() - start + entries.len() * 8 + 2);
    obj.push(b'{');
    let mut first = true;
    for (i, (k, from, to)) in entries.iter().enumerate() {
        if entries.get(i + 1).is_some_and(|next| next.0 == *k) {
            continue;
        }
        if !first {
            obj.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut obj, k).map_err(de::Error::custom)?;
        obj.push(b':');
        obj.extend_from_slice(out.get(*from..*to).unwrap_or_default());
    }
    obj.push(b'}');
    out.truncate(start);
    out.extend_from_slice(&obj);
    Ok(())
}
