//! Embeddings: deterministic vectors in which texts sharing words point the same way.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::{faults, Answer, MockBody};
use crate::tokens;

/// Vector size when the request names no `dimensions`.
pub const DEFAULT_DIMENSIONS: usize = 1536;
/// Largest `dimensions` honoured.
const MAX_DIMENSIONS: usize = 8192;

/// The embedding of `text`: the normalised sum of one pseudo-random unit vector per lowercased word.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    let dims = dimensions.max(1);
    let mut sum = vec![0f64; dims];
    let mut any = false;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        add_word(&mut sum, &word.to_lowercase());
        any = true;
    }
    if !any {
        add_word(&mut sum, text);
    }
    let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    sum.iter().map(|x| (x * scale) as f32).collect()
}

/// Add the unit vector seeded by `word` to `sum`.
fn add_word(sum: &mut [f64], word: &str) {
    let mut state = fnv1a(word.as_bytes());
    let v: Vec<f64> = sum
        .iter()
        .map(|_| {
            let x = splitmix64(&mut state);
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for (s, x) in sum.iter_mut().zip(v) {
        *s += x / norm;
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Standard base64 (with padding), for `encoding_format: "base64"`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The texts to embed: a string, an array of strings, a token array, or an array of token arrays.
fn inputs(input: &Value) -> Vec<String> {
    let tokens_text = |t: &[Value]| t.iter().map(Value::to_string).collect::<Vec<_>>().join(" ");
    match input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => {
            vec![tokens_text(items)]
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => s.clone(),
                Value::Array(t) => tokens_text(t),
                other => other.to_string(),
            })
            .collect(),
        other => vec![other.to_string()],
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Item {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item>,
    model: &'a str,
    usage: Usage,
}

/// `POST …/embeddings`.
pub(crate) fn embeddings(model: &str, body: &Value) -> Answer {
    let Some(input) = body.get("input").filter(|v| !v.is_null()) else {
        let msg = "'input' is a required property";
        return Answer {
            status: 400,
            body: MockBody::Full(faults::invalid_request(msg, None)),
            tokens: 0,
        };
    };
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_DIMENSIONS, |d| {
            usize::try_from(d)
                .unwrap_or(MAX_DIMENSIONS)
                .clamp(1, MAX_DIMENSIONS)
        });
    let b64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data = inputs(input)
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let v = embed(text, dims);
            let embedding = if b64 {
                Vector::Base64(base64(
                    &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
                ))
            } else {
                Vector::Floats(v)
            };
            Item {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let prompt = tokens::estimate_value(tokens::encoding_for(model), body) as u64;
    let list = List {
        object: "list",
        data,
        model,
        usage: Usage {
            prompt_tokens: prompt,
            total_tokens: prompt,
        },
    };
    let json = serde_json::to_vec(&list).unwrap_or_default();
    Answer {
        status: 200,
        body: MockBody::Full(Bytes::from(json)),
        tokens: prompt,
    }
}

/// Cosine similarity of two vectors of the same length.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_normalised() {
        let a = embed("The quick brown fox", 1536);
        assert_eq!(a, embed("the QUICK, brown fox!", 1536));
        assert_eq!(a.len(), 1536);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-6);
        let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(embed("", 8).len(), 8);
        assert!(embed("", 8).iter().any(|x| *x != 0.0));
    }

    #[test]
    fn shared_words_are_similar() {
        let fox = embed("the quick brown fox", 1536);
        let dog = embed("the quick brown dog", 1536);
        let other = embed("quarterly revenue projections spreadsheet", 1536);
        let near = cosine(&fox, &dog);
        let far = cosine(&fox, &other);
        assert!(near > 0.6, "{near}");
        assert!(far.abs() < 0.2, "{far}");
        assert!(near > far);
    }

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn input_shapes() {
        let j = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(inputs(&j(r#""a b""#)), ["a b"]);
        assert_eq!(inputs(&j(r#"["a","b"]"#)), ["a", "b"]);
        assert_eq!(inputs(&j("[1,2,3]")), ["1 2 3"]);
        assert_eq!(inputs(&j("[[1,2],[3]]")), ["1 2", "3"]);
    }
}
