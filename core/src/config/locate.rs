//! Mapping between key paths (`pools.chat.members[1].weight`) and places (line, column) in the file.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// `name` in a table.
    Key(String),
    /// `[i]` in an array.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(k: &str) -> Self {
        Seg::Key(k.to_owned())
    }
}

impl From<&String> for Seg {
    fn from(k: &String) -> Self {
        Seg::Key(k.clone())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A key path, displayed the way it is written in TOML (`backends."my.host".url`, `members[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Builds a [`KeyPath`] from keys (`&str`, `&String`) and indexes (`usize`).
macro_rules! key_path {
    ($($seg:expr),* $(,)?) => {
        $crate::config::locate::KeyPath(vec![$($crate::config::locate::Seg::from($seg)),*])
    };
}
pub(crate) use key_path;

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

/// Byte offset where `path` is written: the deepest key of it that exists in the file
/// (so a missing key points at its table's header), or 0 when nothing of it is there.
pub(crate) fn offset_of(root: &DeTable<'_>, path: &KeyPath) -> usize {
    let mut best = 0;
    let mut node: Option<&DeValue<'_>> = None;
    for seg in &path.0 {
        let found = match (seg, node) {
            (Seg::Key(k), None) => lookup(root, k),
            (Seg::Key(k), Some(DeValue::Table(t))) => lookup(t, k),
            (Seg::Index(n), Some(DeValue::Array(a))) => a.get(*n).map(|v| (v.span(), v)),
            _ => None,
        };
        let Some((span, value)) = found else { break };
        best = span.start;
        node = Some(value.get_ref());
    }
    best
}

fn lookup<'a, 'i>(
    t: &'a DeTable<'i>,
    key: &str,
) -> Option<(Range<usize>, &'a Spanned<DeValue<'i>>)> {
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(k, v)| (k.span(), v))
}

/// The key path of the deepest key or value covering byte `offset` (for errors found while
/// deserializing a well-formed file).
pub(crate) fn path_at(root: &DeTable<'_>, offset: usize) -> Option<KeyPath> {
    let mut nodes = Vec::new();
    collect(root, &mut Vec::new(), &mut nodes);
    let covers = |r: &Range<usize>| r.start <= offset && (offset < r.end || r.start == r.end);
    nodes
        .into_iter()
        .filter(|n| covers(&n.key) || covers(&n.value))
        .max_by_key(|n| n.path.len())
        .map(|n| KeyPath(n.path))
}

/// The key path as written around byte `offset`, for syntax errors (when there is no reliable
/// tree): the last `[table]` header at or before its line, plus the `key =` on its line.
pub(crate) fn written_path_at(text: &str, offset: usize) -> Option<String> {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    if let Some(h) = header_of(line) {
        return Some(h);
    }
    let header = text[..line_start].lines().rev().find_map(header_of);
    let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|k| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c))
    });
    match (header, key) {
        (Some(h), Some(k)) => Some(format!("{h}.{k}")),
        (h, k) => h.or_else(|| k.map(str::to_owned)),
    }
}

/// `a.b` for a `[a.b]` or `[[a.b]]` header line.
fn header_of(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix('[')?.trim_start_matches('[');
    let name = &inner[..inner.find(']')?];
    let parts: Vec<&str> = name.split('.').map(str::trim).collect();
    Some(parts.join("."))
}

/// One key (or array element) of the file, flattened.
struct Node {
    path: Vec<Seg>,
    key: Range<usize>,
    value: Range<usize>,
}

fn collect(t: &DeTable<'_>, prefix: &mut Vec<Seg>, out: &mut Vec<Node>) {
    for (k, v) in t.iter() {
        prefix.push(Seg::Key(k.get_ref().to_string()));
        out.push(Node {
            path: prefix.clone(),
            key: k.span(),
            value: v.span(),
        });
        collect_value(v.get_ref(), prefix, out);
        prefix.pop();
    }
}

fn collect_value(v: &DeValue<'_>, prefix: &mut Vec<Seg>, out: &mut Vec<Node>) {
    match v {
        DeValue::Table(t) => collect(t, prefix, out),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                prefix.push(Seg::Index(i));
                out.push(Node {
                    path: prefix.clone(),
                    key: e.span(),
                    value: e.span(),
                });
                collect_value(e.get_ref(), prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# top\n[gateway]\nlisten = \"x\"\n\n[pools.chat]\nmembers = [{ backend = \"a\" }, { backend = \"b\", weight = 0 }]\n";

    #[test]
    fn display() {
        assert_eq!(
            key_path!["pools", "chat", "members", 1, "weight"].to_string(),
            "pools.chat.members[1].weight"
        );
        assert_eq!(
            key_path!["models", "gpt-4o.mini"].to_string(),
            "models.\"gpt-4o.mini\""
        );
        assert_eq!(key_path!["models", "*"].to_string(), "models.\"*\"");
    }

    #[test]
    fn line_cols() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 2), (1, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn offsets_and_paths() {
        let root = DeTable::parse(TEXT).unwrap();
        let root = root.get_ref();
        let at = |p: KeyPath| line_col(TEXT, offset_of(root, &p));
        assert_eq!(at(key_path!["gateway", "listen"]), (3, 1));
        assert_eq!(at(key_path!["gateway", "workers"]), (2, 2));
        assert_eq!(at(key_path!["pools", "chat", "members", 1, "weight"]).0, 6);
        assert_eq!(at(key_path!["models"]), (1, 1));
        let weight = TEXT.find("0 }").unwrap();
        assert_eq!(
            path_at(root, weight),
            Some(key_path!["pools", "chat", "members", 1, "weight"])
        );
        assert_eq!(
            path_at(root, TEXT.find("x\"").unwrap()),
            Some(key_path!["gateway", "listen"])
        );
        assert_eq!(path_at(root, 0), None);
    }

    #[test]
    fn written_paths() {
        let at = |t: &str, needle: &str| written_path_at(t, t.find(needle).unwrap());
        let t = "[gateway]\nlisten = \"x\n";
        assert_eq!(at(t, "\"x").as_deref(), Some("gateway.listen"));
        let t = "a = 1\n[ pools . p ]\nm = [\n  { b = 1 ]\n";
        assert_eq!(at(t, "a =").as_deref(), Some("a"));
        assert_eq!(at(t, "p ]").as_deref(), Some("pools.p"));
        assert_eq!(at(t, "1 ]").as_deref(), Some("pools.p"));
        assert_eq!(at(t, "m =").as_deref(), Some("pools.p.m"));
    }
}
