//! The mock's compressing mode: answers encoded as a real server would, or as a broken one does.
//!
//! With `compress = "honour"` the mock reads the request's `Accept-Encoding` (q-values, `*`,
//! `identity`) and picks gzip, br, zstd or deflate; with `compress = "<coding>"` it always uses
//! that coding, whatever the request accepts (a backend that ignores `accept-encoding: identity`).
//! A request header `x-mock-force-encoding` overrides both, per request:
//! - `gzip`, `deflate`, `br`, `zstd`: compress with it; `identity`: do not compress;
//! - `corrupt`: labelled `gzip`, but the bytes after the gzip header are scrambled;
//! - any other token (e.g. `compress`): the body unchanged, labelled with that unknown coding.
//!
//! JSON bodies are compressed whole; SSE streams as one compressed stream, flushed after every
//! event so each chunk on the wire decodes as it arrives (the end of the stream rides on the
//! last one), frame by frame as they are sent (see `stream.rs`).

use std::io::Write;

use bytes::Bytes;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

use super::{MockBody, MockReply};
use crate::config::{MockCoding, MockCompress};
use crate::http1::{find_header, Header};

/// The request header that forces an encoding.
pub const FORCE_HEADER: &str = "x-mock-force-encoding";
/// Longest coding token taken from [`FORCE_HEADER`] (it is echoed as `content-encoding`).
const MAX_TOKEN: usize = 32;
/// Length of the fixed gzip header, left intact by `corrupt`.
pub(crate) const GZIP_HEADER: usize = 10;

/// What to do to one answer's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Send it as it is.
    Plain,
    /// Compress it.
    Encode(MockCoding),
    /// Gzip it, then scramble everything after the header.
    Corrupt,
    /// Leave it, labelled with this (unknown) coding.
    Label(String),
}

/// The plan for a request with `headers` under the mock's `compress` setting.
pub(crate) fn plan(compress: MockCompress, headers: &[Header]) -> Plan {
    if let Some(v) = find_header(headers, FORCE_HEADER).and_then(|v| std::str::from_utf8(v).ok()) {
        let t = v.trim();
        if t.eq_ignore_ascii_case("identity") {
            return Plan::Plain;
        }
        if t.eq_ignore_ascii_case("corrupt") {
            return Plan::Corrupt;
        }
        if let Some(c) = MockCoding::from_token(t) {
            return Plan::Encode(c);
        }
        // Echoed into a response header: only a short RFC 9110 token is taken.
        let token = !t.is_empty() && t.len() <= MAX_TOKEN && t.bytes().all(is_tchar);
        if token {
            return Plan::Label(t.to_ascii_lowercase());
        }
    }
    match compress {
        MockCompress::Off => Plan::Plain,
        MockCompress::Force(c) => Plan::Encode(c),
        MockCompress::Honour => negotiate(headers).map_or(Plan::Plain, Plan::Encode),
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The coding a server would pick for the request's `Accept-Encoding`: the highest q-value among
/// those the mock makes (an unlisted one takes the q of `*`, else is not acceptable); ties go to
/// gzip, then br, zstd, deflate. `None` when nothing but identity is acceptable.
pub(crate) fn negotiate(headers: &[Header]) -> Option<MockCoding> {
    const PREFERENCE: [MockCoding; 4] = [
        MockCoding::Gzip,
        MockCoding::Br,
        MockCoding::Zstd,
        MockCoding::Deflate,
    ];
    let mut q = [None::<f32>; 4];
    let mut star = None::<f32>;
    let items = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"accept-encoding"))
        .filter_map(|h| std::str::from_utf8(&h.value).ok())
        .flat_map(|v| v.split(','));
    for item in items {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok())
            .filter(|w| (0.0..=1.0).contains(w))
            .unwrap_or(0.0);
        if coding == "*" {
            star = Some(weight);
        } else if let Some(c) = MockCoding::from_token(coding) {
            if let Some(i) = PREFERENCE.iter().position(|p| *p == c) {
                q[i] = Some(weight);
            }
        }
    }
    let mut best: Option<(MockCoding, f32)> = None;
    for (c, w) in PREFERENCE.iter().zip(q) {
        let w = w.or(star).unwrap_or(0.0);
        if w > 0.0 && best.is_none_or(|(_, b)| w > b) {
            best = Some((*c, w));
        }
    }
    best.map(|(c, _)| c)
}

/// Carry out `plan` on `reply`: its body and its `content-encoding` (plus `vary`).
pub(crate) fn apply(plan: &Plan, reply: &mut MockReply) {
    let (coding, label) = match plan {
        Plan::Plain => return,
        Plan::Label(t) => {
            reply.headers.push(("content-encoding", t.clone()));
            return;
        }
        Plan::Encode(c) => (*c, c.token()),
        Plan::Corrupt => (MockCoding::Gzip, "gzip"),
    };
    let corrupt = *plan == Plan::Corrupt;
    match &mut reply.body {
        MockBody::Full(b) => {
            // Writing into memory does not fail; if an encoder ever did, the answer goes out plain.
            let Ok(Some(mut packed)) =
                encode(coding, std::slice::from_ref(b)).map(|p| p.into_iter().next())
            else {
                return;
            };
            if corrupt {
                packed = scramble(&packed);
            }
            *b = packed;
        }
        // A stream is compressed (and scrambled) frame by frame as it is sent.
        MockBody::Sse { events, .. } if !events.is_empty() => events.encode(coding, corrupt),
        MockBody::Sse { .. } => return,
    }
    reply.headers.push(("content-encoding", label.to_owned()));
    reply.headers.push(("vary", "accept-encoding".to_owned()));
}

/// `body` with the bits of every byte after the gzip header flipped, so no decoder can read it.
fn scramble(body: &Bytes) -> Bytes {
    let mut v = body.to_vec();
    v.iter_mut().skip(GZIP_HEADER).for_each(|x| *x ^= 0x55);
    Bytes::from(v)
}

/// `pieces` compressed as one stream with `coding`, one output piece per input piece, each
/// flushed so it decodes on its own (given the ones before); the last one ends the stream.
///
/// # Errors
/// An encoder error (not expected: every write goes to memory).
pub fn encode(coding: MockCoding, pieces: &[Bytes]) -> std::io::Result<Vec<Bytes>> {
    let mut enc = Encoder::new(coding)?;
    let mut out = Vec::with_capacity(pieces.len());
    for (i, p) in pieces.iter().enumerate() {
        enc.write_all(p)?;
        if i + 1 < pieces.len() {
            enc.flush()?;
            out.push(Bytes::from(enc.take()));
        }
    }
    if !pieces.is_empty() {
        out.push(Bytes::from(enc.finish()?));
    }
    Ok(out)
}

/// One streaming encoder into memory.
pub(crate) enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
    Deflate(ZlibEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub(crate) fn new(coding: MockCoding) -> std::io::Result<Self> {
        Ok(match coding {
            MockCoding::Gzip => Encoder::Gzip(GzEncoder::new(Vec::new(), Compression::fast())),
            MockCoding::Deflate => {
                Encoder::Deflate(ZlibEncoder::new(Vec::new(), Compression::fast()))
            }
            // Quality 5, 4 MiB window: what servers use for dynamic content.
            MockCoding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                5,
                22,
            ))),
            MockCoding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
        })
    }

    pub(crate) fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Deflate(e) => e.write_all(data),
            Encoder::Br(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Deflate(e) => e.flush(),
            Encoder::Br(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// The bytes produced so far (and not yet taken).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Deflate(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        })
    }

    /// End the stream; the bytes not yet taken.
    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Deflate(e) => e.finish(),
            Encoder::Br(e) => Ok(e.into_inner()),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
