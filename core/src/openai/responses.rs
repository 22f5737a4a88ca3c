//! The Responses API's shapes, read leniently and by borrowing, as `choices` are: the text of a
//! response object's `output` messages, and the `response` object an SSE event carries (its id
//! and usage).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::choices::{drain_map, drain_seq, other_scalars, Lenient};

/// The `text` of every `output_text` part of every `message` item in `output`, in order.
/// Anything of another shape (reasoning items, tool calls, refusals) is skipped.
#[derive(Debug, Default)]
pub(crate) struct OutputTexts<'a>(pub(crate) Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for OutputTexts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OutputTexts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("output items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Item<'de>>()? {
                    out.extend(item.0);
                }
                Ok(OutputTexts(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| OutputTexts::default())
            }
            other_scalars!(OutputTexts::default());
        }
        d.deserialize_any(V)
    }
}

/// One output item: its `output_text` parts when it is a message (`content` read whatever
/// `type` says: a non-message item has no `output_text` parts).
struct Item<'a>(Vec<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an output item")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut texts = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    if k == "content" {
                        texts = map.next_value::<Parts<'de>>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Item(texts))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| Item(Vec::new()))
            }
            other_scalars!(Item(Vec::new()));
        }
        d.deserialize_any(V)
    }
}

/// A message's `content` parts: the `text` of those whose `type` is `output_text`.
struct Parts<'a>(Vec<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Parts<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("content parts")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<Part<'de>>()? {
                    out.extend(p.0);
                }
                Ok(Parts(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| Parts(Vec::new()))
            }
            other_scalars!(Parts(Vec::new()));
        }
        d.deserialize_any(V)
    }
}

/// One content part's text, when it is an `output_text` part.
struct Part<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Part<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Part<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content part")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut kind, mut text) = (None, None);
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    match &*k {
                        "type" => kind = map.next_value::<Lenient<'de>>()?.0,
                        "text" => text = map.next_value::<Lenient<'de>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Part(
                    text.filter(|_| kind.as_deref() == Some("output_text")),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| Part(None))
            }
            other_scalars!(Part(None));
        }
        d.deserialize_any(V)
    }
}

/// The `response` object of a Responses SSE event (`response.created`, `response.completed`, …):
/// its id and usage; its output is not read (the deltas carried the text already).
#[derive(Debug, Default)]
pub(crate) struct EventResponse<'a> {
    pub(crate) id: Option<Cow<'a, str>>,
    pub(crate) usage: Option<Value>,
}

impl<'de: 'a, 'a> Deserialize<'de> for EventResponse<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventResponse<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a response object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = EventResponse::default();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    match &*k {
                        "id" => out.id = map.next_value::<Lenient<'de>>()?.0,
                        "usage" => out.usage = Some(map.next_value::<Value>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| EventResponse::default())
            }
            other_scalars!(EventResponse::default());
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_texts_of_messages_only() {
        let json = r#"[
            {"type":"reasoning","summary":[{"type":"summary_text","text":"no"}]},
            {"type":"message","role":"assistant","content":[
                {"type":"output_text","text":"Hello ","annotations":[]},
                {"type":"refusal","refusal":"no"},
                {"type":"output_text","text":"\"world\""}]},
            {"type":"function_call","arguments":"{}"}, 5, null, [1], {"content":"x"}]"#;
        let t = serde_json::from_str::<OutputTexts<'_>>(json).unwrap();
        assert_eq!(t.0, ["Hello ", "\"world\""]);
        assert!(serde_json::from_str::<OutputTexts<'_>>("{}")
            .unwrap()
            .0
            .is_empty());
    }

    #[test]
    fn event_response_id_and_usage() {
        let r: EventResponse<'_> = serde_json::from_str(
            r#"{"id":"resp_1","output":[{"type":"message"}],"usage":{"input_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("resp_1"));
        assert_eq!(r.usage.unwrap()["input_tokens"], 3);
        let r: EventResponse<'_> = serde_json::from_str(r#"{"id":5}"#).unwrap();
        assert_eq!(r.id, None);
        assert!(serde_json::from_str::<EventResponse<'_>>("null").is_ok());
    }
}
