//! Typed, borrowing and lenient reading of a response's `choices` texts: the usage tap runs this on
//! every response, so it builds no `serde_json::Value` trees and copies no strings without escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The text of each choice, in order: `delta.content`, else `message.content`, else `text`.
/// Anything of another shape (a non-array, a non-object choice, non-string content) is skipped.
#[derive(Debug, Default)]
pub(crate) struct ChoiceTexts<'a>(pub(crate) Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for ChoiceTexts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChoiceTexts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(c) = seq.next_element::<ChoiceText<'de>>()? {
                    out.extend(c.0);
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
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    match &*k {
                        "delta" => delta = map.next_value::<Content<'de>>()?.0,
                        "message" => message = map.next_value::<Content<'de>>()?.0,
                        "text" => text = map.next_value::<Lenient<'de>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
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
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    if k == "content" {
                        content = map.next_value::<Lenient<'de>>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
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
