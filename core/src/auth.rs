//! Consumer authentication: finding the caller's key in a request and matching it to a consumer.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Consumer;
use crate::http1::Header;
use crate::openai::query_param;

/// SHA-256 of `key`: what [`Consumer::key_hashes`] stores instead of the key itself.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The caller's key, trimmed, from the first non-empty of: the `api-key` header,
/// `Authorization: Bearer KEY` (scheme in any case), `Ocp-Apim-Subscription-Key`, and the
/// `api-key` query parameter (not percent-decoded).
pub fn extract_key<'a>(headers: &'a [Header], query: &'a str) -> Option<&'a str> {
    header_key(headers, b"api-key")
        .or_else(|| {
            headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(b"authorization"))
                .filter_map(|h| bearer(value_str(h)?))
                .next()
        })
        .or_else(|| header_key(headers, b"ocp-apim-subscription-key"))
        .or_else(|| non_empty(query_param(query, "api-key")?))
}

/// The first non-empty value of header `name` (lowercase).
fn header_key<'a>(headers: &'a [Header], name: &[u8]) -> Option<&'a str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .find_map(|h| non_empty(value_str(h)?))
}

fn value_str(h: &Header) -> Option<&str> {
    std::str::from_utf8(&h.value).ok()
}

fn non_empty(v: &str) -> Option<&str> {
    Some(v.trim()).filter(|v| !v.is_empty())
}

/// `KEY` from `Bearer KEY`, the scheme in any case.
fn bearer(v: &str) -> Option<&str> {
    let v = v.trim_start();
    let (scheme, rest) = v.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with([' ', '\t']) {
        return None;
    }
    non_empty(rest)
}

/// The consumers' key hashes, for finding which consumer a presented key belongs to.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    by_hash: HashMap<[u8; 32], usize>,
}

impl KeyTable {
    /// The table of `consumers`' keys; indexes are positions in `consumers`.
    ///
    /// Config loading refuses a key used twice; should one still appear, the first consumer keeps it.
    pub fn new(consumers: &[Consumer]) -> Self {
        let mut by_hash = HashMap::new();
        for (i, c) in consumers.iter().enumerate() {
            for h in &c.key_hashes {
                by_hash.entry(*h).or_insert(i);
            }
        }
        KeyTable { by_hash }
    }

    /// Number of keys in the table.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// No keys at all?
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The index of the consumer owning `key`, if any.
    ///
    /// The presented key is hashed first, so the map lookup only ever compares hashes (which reveal
    /// nothing usable about stored keys); the final equality is constant-time anyway.
    pub fn find(&self, key: &str) -> Option<usize> {
        let hash = hash_key(key);
        let (stored, &index) = self.by_hash.get_key_value(&hash)?;
        ct_eq(stored, &hash).then_some(index)
    }
}

/// Equal, in time independent of where the first difference is.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a[..].ct_eq(&b[..]).into()
}

impl From<&[Consumer]> for KeyTable {
    fn from(consumers: &[Consumer]) -> Self {
        KeyTable::new(consumers)
    }
}

/// Why a request was refused by [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key in the request (401).
    #[error("Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.")]
    Missing,
    /// A key that belongs to no consumer (401).
    #[error("Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.")]
    Invalid,
    /// The consumer has a `models` list without the requested model (403); holds the whole
    /// message, `The consumer 'NAME' may not use model 'MODEL'`.
    #[error("{0}")]
    ModelNotAllowed(String),
}

impl AuthError {
    /// The HTTP status: 401, 401 or 403.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Invalid => 401,
            AuthError::ModelNotAllowed(_) => 403,
        }
    }

    /// The human message for an OpenAI-style error body (what `Display` prints).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// OpenAI's `code` field: `invalid_api_key` for both 401s, `model_not_allowed` for the 403.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Invalid => "invalid_api_key",
            AuthError::ModelNotAllowed(_) => "model_not_allowed",
        }
    }

    /// OpenAI's `type` field.
    pub fn error_type(&self) -> &'static str {
        "invalid_request_error"
    }
}

/// Who is calling, once the key was checked: every policy (limits, metrics, logs) keys on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// No consumers are configured: an open gateway, every caller is anonymous.
    Open,
    /// A known consumer, by index into the config's consumers.
    Consumer(usize),
}

impl Identity {
    /// The consumer's index, if the caller is one.
    pub fn consumer(self) -> Option<usize> {
        match self {
            Identity::Open => None,
            Identity::Consumer(i) => Some(i),
        }
    }
}

/// Who is calling, from the key alone (before any body is read).
///
/// # Errors
/// [`AuthError::Missing`] without a key, [`AuthError::Invalid`] for an unknown one.
pub fn identify(
    table: &KeyTable,
    consumers: &[Consumer],
    headers: &[Header],
    query: &str,
) -> Result<Identity, AuthError> {
    if consumers.is_empty() {
        return Ok(Identity::Open);
    }
    let key = extract_key(headers, query).ok_or(AuthError::Missing)?;
    let index = table.find(key).ok_or(AuthError::Invalid)?;
    consumers.get(index).ok_or(AuthError::Invalid)?;
    Ok(Identity::Consumer(index))
}

/// May `identity` use `model`?
///
/// # Errors
/// [`AuthError::ModelNotAllowed`] when the consumer's `models` list lacks `model`.
pub fn allow_model(
    consumers: &[Consumer],
    identity: Identity,
    model: &str,
) -> Result<(), AuthError> {
    let Some(consumer) = identity.consumer().and_then(|i| consumers.get(i)) else {
        return Ok(());
    };
    match &consumer.models {
        Some(models) if !models.iter().any(|m| m == model) => {
            Err(AuthError::ModelNotAllowed(format!(
                "The consumer '{}' may not use model '{}'",
                consumer.name,
                model.escape_debug()
            )))
        }
        _ => Ok(()),
    }
}

/// Which consumer is calling, and may it use `model`?
///
/// `Ok(None)` when no consumers are configured (an open gateway: any key or none is accepted),
/// `Ok(Some(index into consumers))` for a known key allowed this model.
///
/// # Errors
/// [`AuthError::Missing`] without a key, [`AuthError::Invalid`] for an unknown one,
/// [`AuthError::ModelNotAllowed`] when the consumer's `models` list lacks `model`.
pub fn authorize(
    table: &KeyTable,
    consumers: &[Consumer],
    headers: &[Header],
    query: &str,
    model: &str,
) -> Result<Option<usize>, AuthError> {
    if consumers.is_empty() {
        return Ok(None);
    }
    let key = extract_key(headers, query).ok_or(AuthError::Missing)?;
    let index = table.find(key).ok_or(AuthError::Invalid)?;
    let consumer = consumers.get(index).ok_or(AuthError::Invalid)?;
    if let Some(models) = &consumer.models {
        if !models.iter().any(|m| m == model) {
            return Err(AuthError::ModelNotAllowed(format!(
                "The consumer '{}' may not use model '{model}'",
                consumer.name
            )));
        }
    }
    Ok(Some(index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn h(name: &'static str, value: &'static str) -> Header {
        Header {
            name: Bytes::from_static(name.as_bytes()),
            value: Bytes::from_static(value.as_bytes()),
        }
    }

    fn consumer(name: &str, keys: &[&str], models: Option<&[&str]>) -> Consumer {
        Consumer {
            name: name.into(),
            key_hashes: keys.iter().map(|k| hash_key(k)).collect(),
            tokens_per_minute: None,
            quota: None,
            models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn hash_is_sha256() {
        let hex: String = hash_key("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn key_from_each_place() {
        assert_eq!(extract_key(&[h("Api-Key", " k1 ")], ""), Some("k1"));
        assert_eq!(
            extract_key(&[h("authorization", "Bearer k2")], ""),
            Some("k2")
        );
        assert_eq!(
            extract_key(&[h("Authorization", "bEaReR   k2 ")], ""),
            Some("k2")
        );
        assert_eq!(
            extract_key(&[h("Ocp-Apim-Subscription-Key", "k3")], ""),
            Some("k3")
        );
        assert_eq!(
            extract_key(&[], "api-version=1&api-key=%20k4 "),
            Some("%20k4")
        );
        assert_eq!(extract_key(&[], "api-key= k4 &x=1"), Some("k4"));
    }

    #[test]
    fn order_and_what_is_not_a_key() {
        let all = [
            h("ocp-apim-subscription-key", "k3"),
            h("authorization", "Bearer k2"),
            h("api-key", "k1"),
        ];
        assert_eq!(extract_key(&all, "api-key=k4"), Some("k1"));
        assert_eq!(extract_key(&all[..2], "api-key=k4"), Some("k2"));
        assert_eq!(extract_key(&all[..1], "api-key=k4"), Some("k3"));
        // Empty values and other schemes fall through to the next place.
        let skip = [
            h("api-key", "  "),
            h("authorization", "Basic dXNlcjpwYXNz"),
            h("authorization", "Bearer"),
            h("authorization", "Bearerx"),
        ];
        assert_eq!(extract_key(&skip, "api-key=k4"), Some("k4"));
        assert_eq!(extract_key(&skip, "api-key=&x=1"), None);
        assert_eq!(extract_key(&[h("x-api-key", "k")], "apikey=k"), None);
        let bad_utf8 = Header {
            name: Bytes::from_static(b"api-key"),
            value: Bytes::from_static(b"\xff"),
        };
        assert_eq!(extract_key(&[bad_utf8, h("api-key", "k5")], ""), Some("k5"));
    }

    #[test]
    fn constant_time_compare() {
        let a = hash_key("one");
        assert!(ct_eq(&a, &a));
        for i in [0, 15, 31] {
            let mut b = a;
            b[i] ^= 1;
            assert!(!ct_eq(&a, &b), "differs at byte {i}");
        }
        assert!(!ct_eq(&a, &hash_key("two")));
    }

    #[test]
    fn table_finds_the_owner() {
        let cs = [
            consumer("a", &["ka1", "ka2"], None),
            consumer("b", &["kb"], None),
        ];
        let t = KeyTable::new(&cs);
        assert_eq!((t.len(), t.is_empty()), (3, false));
        assert_eq!(t.find("ka2"), Some(0));
        assert_eq!(t.find("kb"), Some(1));
        assert_eq!(t.find("kb "), None);
        assert_eq!(t.find(""), None);
        assert!(KeyTable::from(&cs[..0]).is_empty());
    }

    #[test]
    fn authorize_outcomes() {
        let cs = [
            consumer("team-a", &["ka"], Some(&["gpt-4o-mini"])),
            consumer("team-b", &["kb"], None),
        ];
        let t = KeyTable::new(&cs);
        let auth = |headers: &[Header], q: &str, m: &str| authorize(&t, &cs, headers, q, m);
        assert_eq!(auth(&[h("api-key", "kb")], "", "gpt-4o"), Ok(Some(1)));
        assert_eq!(auth(&[], "api-key=ka", "gpt-4o-mini"), Ok(Some(0)));
        assert_eq!(auth(&[], "", "gpt-4o"), Err(AuthError::Missing));
        assert_eq!(
            auth(&[h("api-key", "nope")], "", "gpt-4o"),
            Err(AuthError::Invalid)
        );
        let e = auth(&[h("authorization", "Bearer ka")], "", "gpt-4o").unwrap_err();
        assert_eq!(
            e.to_string(),
            "The consumer 'team-a' may not use model 'gpt-4o'"
        );
        assert_eq!((e.status(), e.code()), (403, "model_not_allowed"));
        assert_eq!(
            (AuthError::Missing.status(), AuthError::Invalid.status()),
            (401, 401)
        );
        assert!(AuthError::Missing
            .message()
            .contains("missing subscription key"));
        assert!(AuthError::Invalid
            .message()
            .contains("invalid subscription key"));
    }

    #[test]
    fn open_gateway_lets_everyone_in() {
        let t = KeyTable::new(&[]);
        assert_eq!(authorize(&t, &[], &[], "", "any"), Ok(None));
        assert_eq!(
            authorize(&t, &[], &[h("api-key", "x")], "", "any"),
            Ok(None)
        );
    }
}
