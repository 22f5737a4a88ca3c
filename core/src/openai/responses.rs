//! The Responses API's shapes, read leniently and by borrowing, as `choices` are: the text of a
//! response object's `output` messages, and the `response` object an SSE event carries (its id
//! and usage).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::choices::{drain_map, drain_seq, other_scalars, KeyOf, Lenient, Shallow, Texts};
use super::counts::UsageCounts;

/// The `text` of every `output_text` part of every `message` item in `output`, in order.
/// Anything of another shape (reasoning items, tool calls, refusals) is skipped.
#[derive(Debug, Default)]
pub(crate) struct OutputTexts<'a>(pub(crate) Texts<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for OutputTexts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OutputTexts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("output items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Texts::default();
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
struct Item<'a>(Texts<'a>);

impl<'de> Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an output item")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut texts = Texts::default();
                while let Some(k) = map.next_key_seed(KeyOf(&["content"]))? {
                    if k.is_some() {
                        texts = map.next_value::<Parts<'de>>()?.0;
                    } else {
                        map.next_value::<Shallow>()?;
                    }
                }
                Ok(Item(texts))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| Item(Texts::default()))
            }
            other_scalars!(Item(Texts::default()));
        }
        d.deserialize_any(V)
    }
}

/// A message's `content` parts: the `text` of those whose `type` is `output_text`.
struct Parts<'a>(Texts<'a>);

impl<'de> Deserialize<'de> for Parts<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parts<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("content parts")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Texts::default();
                while let Some(p) = seq.next_element::<Part<'de>>()? {
                    if let Some(t) = p.0 {
                        out.push(t);
                    }
                }
                Ok(Parts(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| Parts(Texts::default()))
            }
            other_scalars!(Parts(Texts::default()));
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
                while let Some(k) = map.next_key_seed(KeyOf(&["type", "text"]))? {
                    match k {
                        Some(0) => kind = map.next_value::<Lenient<'de>>()?.0,
                        Some(_) => text = map.next_value::<Lenient<'de>>()?.0,
                        None => {
                            map.next_value::<Shallow>()?;
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
    pub(crate) usage: Option<UsageCounts>,
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
                while let Some(k) = map.next_key_seed(KeyOf(&["id", "usage"]))? {
                    match k {
                        Some(0) => out.id = map.next_value::<Lenient<'de>>()?.0,
                        Some(_) => out.usage = Some(map.next_value::<UsageCounts>()?),
                        None => {
                            map.next_value::<Shallow>()?;
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
        assert_eq!(t.0.iter().collect::<Vec<_>>(), ["Hello ", "\"world\""]);
        assert!(serde_json::from_str::<OutputTexts<'_>>("{}")
            .unwrap()
            .0
            .iter()
            .next()
            .is_none());
    }

    #[test]
    fn event_response_id_and_usage() {
        let r: EventResponse<'_> = serde_json::from_str(
            r#"{"id":"resp_1","output":[{"type":"message"}],"usage":{"input_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("resp_1"));
        assert_eq!(
            r.usage.and_then(|u| u.usage()).map(|u| u.prompt_tokens),
            Some(3)
        );
        let r: EventResponse<'_> = serde_json::from_str(r#"{"id":5}"#).unwrap();
        assert_eq!(r.id, None);
        assert!(serde_json::from_str::<EventResponse<'_>>("null").is_ok());
    }
}
