//! A response's `usage` object read straight into its token counts: no `serde_json::Value` tree
//! (whose map and key strings cost several allocations on every answer and usage event).
//!
//! It reads what the tree did: an object, whose `prompt_tokens` / `input_tokens`,
//! `completion_tokens` / `output_tokens` and `total_tokens` count when they are a non-negative
//! number (fractions dropped) or a decimal string; a repeated key counts with its last value, as
//! a parsed map keeps it. Anything else in it (`*_details` objects) is skipped.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::choices::{drain_map, drain_seq, other_scalars, KeyOf, Shallow};
use super::usage::Usage;

/// The token counts of a `usage` value, as found (`None`: absent or not a count).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UsageCounts {
    /// The value was a JSON object.
    object: bool,
    prompt: Option<u64>,
    input: Option<u64>,
    completion: Option<u64>,
    output: Option<u64>,
    total: Option<u64>,
}

impl UsageCounts {
    /// A `usage` object with at least one token count; the total defaults to prompt +
    /// completion. The Responses API names them `input_tokens` and `output_tokens`.
    pub(crate) fn usage(&self) -> Option<Usage> {
        if !self.object {
            return None;
        }
        let (p, c, t) = (
            self.prompt.or(self.input),
            self.completion.or(self.output),
            self.total,
        );
        if p.is_none() && c.is_none() && t.is_none() {
            return None;
        }
        let (p, c) = (p.unwrap_or(0), c.unwrap_or(0));
        Some(Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: t.unwrap_or(p.saturating_add(c)),
        })
    }
}

impl<'de> Deserialize<'de> for UsageCounts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UsageCounts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a usage object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                const KEYS: &[&str] = &[
                    "prompt_tokens",
                    "input_tokens",
                    "completion_tokens",
                    "output_tokens",
                    "total_tokens",
                ];
                let mut u = UsageCounts {
                    object: true,
                    ..UsageCounts::default()
                };
                while let Some(k) = map.next_key_seed(KeyOf(KEYS))? {
                    let slot = match k {
                        Some(0) => &mut u.prompt,
                        Some(1) => &mut u.input,
                        Some(2) => &mut u.completion,
                        Some(3) => &mut u.output,
                        Some(_) => &mut u.total,
                        None => {
                            map.next_value::<Shallow>()?;
                            continue;
                        }
                    };
                    *slot = map.next_value::<Count>()?.0;
                }
                Ok(u)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| UsageCounts::default())
            }
            other_scalars!(UsageCounts::default());
        }
        d.deserialize_any(V)
    }
}

/// A token count: a non-negative number (fractions dropped) or a decimal string; `None` for
/// anything else.
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                Ok(Count((v >= 0.0).then_some(v as u64)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Count, E> {
                Ok(Count(v.trim().parse().ok()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Count, A::Error> {
                drain_map(map).map(|_| Count(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
                drain_seq(seq).map(|_| Count(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The counts the `Value`-tree reading this replaced found in `v`.
    fn by_tree(v: &Value) -> UsageCounts {
        let Some(o) = v.as_object() else {
            return UsageCounts::default();
        };
        let n = |key: &str| {
            o.get(key).and_then(|v| match v {
                Value::Number(n) => n
                    .as_u64()
                    .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
        };
        UsageCounts {
            object: true,
            prompt: n("prompt_tokens"),
            input: n("input_tokens"),
            completion: n("completion_tokens"),
            output: n("output_tokens"),
            total: n("total_tokens"),
        }
    }

    #[test]
    fn reads_as_the_value_tree_did() {
        for json in [
            r#"{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}"#,
            r#"{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}"#,
            r#"{"prompt_tokens":2,"completion_tokens":1}"#,
            r#"{"total_tokens":5}"#,
            r#"{}"#,
            r#"null"#,
            r#"[1,2]"#,
            r#""12""#,
            r#"{"prompt_tokens":" 7 ","completion_tokens":"x","total_tokens":-3}"#,
            r#"{"prompt_tokens":2.9,"completion_tokens":1e3,"total_tokens":1e30}"#,
            r#"{"prompt_tokens":-1.5,"input_tokens":4,"output_tokens":null}"#,
            r#"{"prompt_tokens":1,"prompt_tokens":"bad","completion_tokens":2}"#,
            r#"{"prompt_tokens":[1],"completion_tokens":{"a":[{}]},"total_tokens":true}"#,
            r#"{"total_tokens":18446744073709551615,"prompt_tokens":18446744073709551616}"#,
            r#"{"pr\u006fmpt_tokens":3}"#,
        ] {
            let tree: Value = serde_json::from_str(json).unwrap();
            let typed: UsageCounts = serde_json::from_str(json).unwrap();
            assert_eq!(typed, by_tree(&tree), "{json}");
        }
    }
}
