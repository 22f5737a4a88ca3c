//! Typed, borrowing and lenient reading of a response's `choices` texts: the usage tap runs this on
//! every response and every SSE event, so it builds no `serde_json::Value` trees, copies no keys
//! and no strings without escapes, and keeps one text inline: an event costs no allocation.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Texts in order: the first inline, the rest (a response with several choices or parts) in a
/// `Vec`, so the common single text costs no allocation.
#[derive(Debug, Default)]
pub(crate) struct Texts<'a> {
    first: Option<Cow<'a, str>>,
    rest: Vec<Cow<'a, str>>,
}

impl<'a> Texts<'a> {
    pub(crate) fn push(&mut self, t: Cow<'a, str>) {
        if self.first.is_none() {
            self.first = Some(t);
        } else {
            self.rest.push(t);
        }
    }

    pub(crate) fn extend(&mut self, ts: Texts<'a>) {
        for t in ts.into_iter() {
            self.push(t);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Cow<'a, str>> {
        self.first.iter().chain(&self.rest)
    }

    pub(crate) fn into_iter(self) -> impl Iterator<Item = Cow<'a, str>> {
        self.first.into_iter().chain(self.rest)
    }
}

/// An object key matched against the names a visitor reads, without being copied: the index of
/// the name it equals, or `None` for any other key. (`Cow<str>` keys would be built as owned
/// `String`s by serde, one allocation per key.)
pub(crate) struct KeyOf(pub(crate) &'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyOf {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        struct V(&'static [&'static str]);
        impl<'de> Visitor<'de> for V {
            type Value = Option<usize>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(self.0.iter().position(|n| *n == v))
            }
        }
        d.deserialize_str(V(self.0))
    }
}

/// A value skipped one level at a time: each element of an array and each member of an object
/// is skipped on its own. serde_json's skipper keeps a stack of the brackets it is inside, which
/// it allocates (once per parse) as soon as a skipped value nests two deep; a value whose members
/// nest only one deep (Azure's `content_filter_results`, chat `messages`) then costs nothing.
pub(crate) struct Shallow;

impl<'de> Deserialize<'de> for Shallow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shallow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| Shallow)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| Shallow)
            }
            other_scalars!(Shallow);
        }
        d.deserialize_any(V)
    }
}

/// The text of each choice, in order: `delta.content`, else `message.content`, else `text`.
/// Anything of another shape (a non-array, a non-object choice, non-string content) is skipped.
#[derive(Debug, Default)]
pub(crate) struct ChoiceTexts<'a>(pub(crate) Texts<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for ChoiceTexts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChoiceTexts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Texts::default();
                while let Some(c) = seq.next_element::<ChoiceText<'de>>()? {
                    if let Some(t) = c.0 {
                        out.push(t);
                    }
                }
                Ok(ChoiceTexts(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| ChoiceTexts::default())
            }
            other_scalars!(ChoiceTexts::default());
        }
        d.deserialize_any(V)
    }
}

/// One choice's text, if it has one.
struct ChoiceText<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for ChoiceText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChoiceText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a choice")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut delta, mut message, mut text) = (None, None, None);
                while let Some(k) = map.next_key_seed(KeyOf(&["delta", "message", "text"]))? {
                    match k {
                        Some(0) => delta = map.next_value::<Content<'de>>()?.0,
                        Some(1) => message = map.next_value::<Content<'de>>()?.0,
                        Some(_) => text = map.next_value::<Lenient<'de>>()?.0,
                        None => {
                            map.next_value::<Shallow>()?;
                        }
                    }
                }
                Ok(ChoiceText(delta.or(message).or(text)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| ChoiceText(None))
            }
            other_scalars!(ChoiceText(None));
        }
        d.deserialize_any(V)
    }
}

/// The `content` string of a `delta` or `message` object.
struct Content<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Content<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut content = None;
                while let Some(k) = map.next_key_seed(KeyOf(&["content"]))? {
                    if k.is_some() {
                        content = map.next_value::<Lenient<'de>>()?.0;
                    } else {
                        map.next_value::<Shallow>()?;
                    }
                }
                Ok(Content(content))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| Content(None))
            }
            other_scalars!(Content(None));
        }
        d.deserialize_any(V)
    }
}

/// A string, borrowed where possible; any other JSON value reads as `None`.
pub(crate) struct Lenient<'a>(pub(crate) Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lenient<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| Lenient(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| Lenient(None))
            }
            other_scalars!(@keep_str Lenient(None));
        }
        d.deserialize_any(V)
    }
}

/// Scalars (strings too, unless `@keep_str`) read as "nothing here": a lenient reader must not
/// fail the whole body on an unexpected shape (that would lose its usage).
macro_rules! other_scalars {
    ($none:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
        other_scalars!(@keep_str $none);
    };
    (@keep_str $none:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
}
pub(crate) use other_scalars;

pub(crate) fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

pub(crate) fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(json: &str) -> Vec<String> {
        serde_json::from_str::<ChoiceTexts<'_>>(json)
            .unwrap()
            .0
            .into_iter()
            .map(|c| c.into_owned())
            .collect()
    }

    #[test]
    fn keys_with_escapes_still_match() {
        assert_eq!(texts(r#"[{"d\u0065lta":{"c\u006fntent":"x"}}]"#), ["x"]);
    }

    #[test]
    fn reads_each_shape_and_skips_others() {
        assert_eq!(
            texts(r#"[{"message":{"role":"assistant","content":"Hi \"you\""}}]"#),
            ["Hi \"you\""]
        );
        assert_eq!(
            texts(r#"[{"delta":{"content":"a"}},{"delta":{"role":"x"}},{"text":"b"}]"#),
            ["a", "b"]
        );
        assert_eq!(
            texts(r#"[{"message":{"content":[{"type":"text"}]}}, 5, null, [1]]"#),
            Vec::<String>::new()
        );
        assert_eq!(texts(r#"{"not":"an array"}"#), Vec::<String>::new());
        assert_eq!(
            texts(r#"[{"message":"a string"}, "b", {"delta":"c"}]"#),
            Vec::<String>::new()
        );
        assert_eq!(texts(r#""choices""#), Vec::<String>::new());
        assert_eq!(texts("null"), Vec::<String>::new());
    }
}
