//! `UsageTap`: watches a relayed response body for `usage` and the reply text, reading through its
//! `Content-Encoding` (gzip, deflate, br, zstd) without ever changing the bytes the client gets.
//!
//! The gateway asks backends for `identity` on the operations it accounts for (see
//! [`is_accounted`]), so decoding is the second line: a backend that compresses anyway is decoded
//! here by the well-kept crates (flate2, brotli, zstd), streaming into the usage reader with no
//! buffer of decoded bytes. Decoding stops past a cap of decoded bytes (a decompression bomb costs
//! bounded CPU and no memory), and a body that cannot be read through (an unknown or layered
//! coding, corrupt or truncated data, the cap) is reported in [`Tapped::undecoded`], so the caller
//! charges at least the reservation instead of nothing ([`Tapped::charge`]).

use std::io::{self, Write};

use flate2::write::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use super::usage::{Reader, Tapped};
use crate::http1::Header;

/// Decoded bytes the tap reads from one compressed body at most (a long SSE stream decodes to a
/// few MiB; a JSON body stops at its own, smaller limit).
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;
/// Largest zstd window accepted: 8 MiB (2^23), what RFC 8878 asks HTTP decoders to support. A
/// frame asking for more is refused instead of allocated.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// Output buffer of the brotli decoder.
const BROTLI_BUFFER: usize = 8 * 1024;

/// Why a body could not be read through its `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Undecoded {
    /// A coding the tap does not decode, or several layered.
    Unknown,
    /// Corrupt or truncated compressed data.
    Corrupt,
    /// More than the cap of decoded bytes.
    TooLarge,
}

impl Undecoded {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Undecoded::Unknown => "unknown_encoding",
            Undecoded::Corrupt => "corrupt",
            Undecoded::TooLarge => "too_large",
        }
    }
}

/// Does the gateway account tokens for `operation` (so it asks the backend for `identity`)?
/// Chat and text completions, embeddings and the Responses API.
pub fn is_accounted(operation: &str) -> bool {
    matches!(
        operation,
        "chat/completions" | "completions" | "embeddings" | "responses"
    )
}

/// A body's content coding, as the tap sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No `Content-Encoding`, or only `identity`.
    Identity,
    /// `gzip` (or `x-gzip`), members possibly concatenated.
    Gzip,
    /// `deflate`: zlib-wrapped as RFC 9110 says, or raw deflate as some servers send it.
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
    /// Anything else, or more than one coding.
    Unknown,
}

/// The coding of a response with `headers`: every `Content-Encoding` header's tokens count.
pub fn coding_of(headers: &[Header]) -> Coding {
    let mut found = Coding::Identity;
    let tokens = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"content-encoding"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"identity"));
    for t in tokens {
        if found != Coding::Identity {
            return Coding::Unknown;
        }
        let is = |name: &str| t.eq_ignore_ascii_case(name.as_bytes());
        found = if is("gzip") || is("x-gzip") {
            Coding::Gzip
        } else if is("deflate") {
            Coding::Deflate
        } else if is("br") {
            Coding::Brotli
        } else if is("zstd") {
            Coding::Zstd
        } else {
            Coding::Unknown
        };
    }
    found
}

/// Observes an OpenAI / Azure OpenAI response body as it is relayed, never holding it back.
///
/// Feed it the de-chunked body as relayed (still compressed, if it is), in pieces split anywhere;
/// the result does not depend on the splits. See the module docs for the decoding rules.
#[derive(Debug)]
pub struct UsageTap {
    body: Body,
    failure: Option<Undecoded>,
    fed: bool,
}

/// The reader, alone or behind a decoder that writes into it.
enum Body {
    Plain(Reader),
    Gzip(Box<MultiGzDecoder<Sink>>),
    /// `deflate` until its first two bytes tell zlib from raw.
    DeflateHead(Sink, Vec<u8>),
    Zlib(Box<ZlibDecoder<Sink>>),
    RawDeflate(Box<DeflateDecoder<Sink>>),
    Brotli(Box<brotli::DecompressorWriter<Sink>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Sink>>),
    /// Decoding stopped (a failure, or a JSON body past its limit): the rest is not read.
    Stopped(Reader),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Body::Plain(_) => "Plain",
            Body::Gzip(_) => "Gzip",
            Body::DeflateHead(..) => "DeflateHead",
            Body::Zlib(_) => "Zlib",
            Body::RawDeflate(_) => "RawDeflate",
            Body::Brotli(_) => "Brotli",
            Body::Zstd(_) => "Zstd",
            Body::Stopped(_) => "Stopped",
        })
    }
}

impl UsageTap {
    /// A tap for an uncompressed SSE body (`content-type: text/event-stream`) or else a JSON one;
    /// a body not announced as SSE whose first non-whitespace bytes are `data:`, `event:` or `:`
    /// is read as SSE. JSON bodies are read up to `max_json_bytes`, SSE lines up to that length;
    /// at most `max_text_bytes` of reply text are kept.
    pub fn new(sse: bool, max_json_bytes: usize, max_text_bytes: usize) -> Self {
        UsageTap {
            body: Body::Plain(Reader::new(sse, max_json_bytes, max_text_bytes)),
            failure: None,
            fed: false,
        }
    }

    /// Count the tokens of the whole reply text under `enc` as it passes, keeping only a short
    /// tail of it (see [`tokens::TextCount`](crate::tokens::TextCount)): the fallback count of an
    /// answer without `usage` then needs no copy of its text. Call before
    /// [`decoding`](Self::decoding).
    #[must_use]
    pub fn counting(mut self, enc: crate::tokens::Encoding) -> Self {
        if let Body::Plain(r) = &mut self.body {
            r.count_tokens(enc);
        }
        self
    }

    /// Keep the whole decoded body (JSON or SSE, after `Content-Encoding`) up to `max_bytes`, for
    /// the semantic cache to store ([`Tapped::kept`]). Past `max_bytes` what was kept is dropped
    /// at once and [`Tapped::kept_dropped`] is set; a body that cannot be decoded to its end is
    /// not kept either. Call before [`decoding`](Self::decoding).
    #[must_use]
    pub fn keeping(mut self, max_bytes: usize) -> Self {
        if let Body::Plain(r) = &mut self.body {
            r.keep(max_bytes);
        }
        self
    }

    /// Read the body through the `Content-Encoding` of the response `headers`, decoding at most
    /// [`MAX_DECODED_BYTES`].
    #[must_use]
    pub fn decoding(self, headers: &[Header]) -> Self {
        self.decoding_capped(coding_of(headers), MAX_DECODED_BYTES)
    }

    /// Read the body through `coding`, decoding at most `max_decoded` bytes.
    #[must_use]
    pub fn decoding_capped(self, coding: Coding, max_decoded: u64) -> Self {
        let Body::Plain(reader) = self.body else {
            return self; // already decoding: the first call decides
        };
        let sink = Sink {
            reader,
            decoded: 0,
            cap: max_decoded,
            over_cap: false,
            stopped: false,
        };
        let (body, failure) = match coding {
            Coding::Identity => (Body::Plain(sink.reader), None),
            Coding::Unknown => (Body::Stopped(sink.reader), Some(Undecoded::Unknown)),
            Coding::Gzip => (Body::Gzip(Box::new(MultiGzDecoder::new(sink))), None),
            Coding::Deflate => (Body::DeflateHead(sink, Vec::with_capacity(2)), None),
            Coding::Brotli => (
                Body::Brotli(Box::new(brotli::DecompressorWriter::new(
                    sink,
                    BROTLI_BUFFER,
                ))),
                None,
            ),
            Coding::Zstd => zstd_body(sink),
        };
        UsageTap {
            body,
            failure,
            fed: self.fed,
        }
    }

    /// The next piece of the body, as relayed.
    pub fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.fed = true;
        let ok = match &mut self.body {
            Body::Plain(r) => {
                r.feed(data);
                return;
            }
            Body::Stopped(_) => return,
            Body::Gzip(d) => push(d.as_mut(), data),
            Body::Zlib(d) => push(d.as_mut(), data),
            Body::RawDeflate(d) => push(d.as_mut(), data),
            Body::Brotli(d) => push(d.as_mut(), data),
            Body::Zstd(d) => push(d.as_mut(), data),
            Body::DeflateHead(_, head) => {
                let take = data.len().min(2 - head.len());
                head.extend_from_slice(&data[..take]);
                if head.len() < 2 {
                    return;
                }
                self.start_deflate();
                self.feed(&data[take..]);
                return;
            }
        };
        if !ok {
            self.stop();
        }
    }

    /// The id of the Responses API object found in what was fed so far: a stream's, from its
    /// first event that carries one (`response.created`), so the stored response can be placed
    /// before the stream ends; a JSON body's only at [`finish`](Self::finish).
    pub fn response_id(&mut self) -> Option<&str> {
        let reader = match &mut self.body {
            Body::Plain(r) | Body::Stopped(r) => r,
            other => &sink_of(other)?.reader,
        };
        reader.response_id()
    }

    /// The usage and text found in the whole body, and whether it could be decoded.
    pub fn finish(mut self) -> Tapped {
        let ok = match &mut self.body {
            Body::Plain(_) | Body::Stopped(_) => true,
            _ if !self.fed => true, // an empty body: nothing to decode, as when uncompressed
            Body::Gzip(d) => d.try_finish().is_ok(),
            Body::Zlib(d) => d.try_finish().is_ok(),
            Body::RawDeflate(d) => d.try_finish().is_ok(),
            Body::Brotli(d) => d.close().is_ok(),
            Body::Zstd(d) => d.do_finish().is_ok(),
            // One byte: no deflate stream is that short.
            Body::DeflateHead(..) => false,
        };
        if !ok {
            self.stop();
        }
        let reader = match self.body {
            Body::Plain(r) | Body::Stopped(r) => r,
            mut other => match sink_of(&mut other) {
                Some(s) => s.take(),
                None => return Tapped::default(), // not reached: only the arms above lack a sink
            },
        };
        let mut tapped = reader.finish();
        tapped.undecoded = self.failure;
        if self.failure.is_some() && tapped.kept.take().is_some() {
            tapped.kept_dropped = true; // only part of the body was decoded
        }
        tapped
    }

    /// Zlib or raw deflate, by the two bytes buffered.
    fn start_deflate(&mut self) {
        let stopped = Body::Stopped(Reader::new(false, 0, 0));
        let Body::DeflateHead(sink, head) = std::mem::replace(&mut self.body, stopped) else {
            return;
        };
        // RFC 1950: compression method 8, and the 16-bit header a multiple of 31.
        let zlib = head[0] & 0x0f == 8 && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
        self.body = if zlib {
            Body::Zlib(Box::new(ZlibDecoder::new(sink)))
        } else {
            Body::RawDeflate(Box::new(DeflateDecoder::new(sink)))
        };
        let ok = match &mut self.body {
            Body::Zlib(d) => push(d.as_mut(), &head),
            Body::RawDeflate(d) => push(d.as_mut(), &head),
            _ => true,
        };
        if !ok {
            self.stop();
        }
    }

    /// Stop decoding after a write or finish failed: record why and keep what was read.
    fn stop(&mut self) {
        let Some(sink) = sink_of(&mut self.body) else {
            return;
        };
        let why = if sink.over_cap {
            Some(Undecoded::TooLarge)
        } else if sink.reader.saturated() {
            None // a JSON body past its limit: read as far as an uncompressed one would be
        } else {
            Some(Undecoded::Corrupt)
        };
        let reader = sink.take();
        self.failure = self.failure.or(why);
        // Dropping the decoder may flush into the sink, which refuses everything once taken.
        self.body = Body::Stopped(reader);
    }
}

/// The sink of a decoding body.
fn sink_of(body: &mut Body) -> Option<&mut Sink> {
    match body {
        Body::Plain(_) | Body::Stopped(_) => None,
        Body::Gzip(d) => Some(d.get_mut()),
        Body::DeflateHead(s, _) => Some(s),
        Body::Zlib(d) => Some(d.get_mut()),
        Body::RawDeflate(d) => Some(d.get_mut()),
        Body::Brotli(d) => Some(d.get_mut()),
        Body::Zstd(d) => Some(d.get_mut()),
    }
}

/// A zstd decoder with the window capped, or a failure when none could be made.
fn zstd_body(sink: Sink) -> (Body, Option<Undecoded>) {
    let raw = match zstd::stream::raw::Decoder::new() {
        Ok(r) => r,
        Err(_) => return (Body::Stopped(sink.reader), Some(Undecoded::Corrupt)),
    };
    let mut d = zstd::stream::write::Decoder::with_decoder(sink, raw);
    if d.window_log_max(ZSTD_WINDOW_LOG_MAX).is_err() {
        let reader = d.get_mut().take();
        return (Body::Stopped(reader), Some(Undecoded::Corrupt));
    }
    (Body::Zstd(Box::new(d)), None)
}

/// Write all of `data` into a decoder; false when it refused some (corrupt data, bytes after the
/// end of the stream, or the sink said stop).
fn push<W: Write>(dec: &mut W, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match dec.write(data) {
            Ok(0) | Err(_) => return false,
            Ok(n) => data = data.get(n..).unwrap_or_default(),
        }
    }
    true
}

/// Where a decoder writes: straight into the reader, counting bytes against the cap.
struct Sink {
    reader: Reader,
    decoded: u64,
    cap: u64,
    over_cap: bool,
    stopped: bool,
}

impl Sink {
    /// Take the reader out; the sink refuses every later write.
    fn take(&mut self) -> Reader {
        self.stopped = true;
        std::mem::replace(&mut self.reader, Reader::new(false, 0, 0))
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stopped || self.reader.saturated() {
            return Err(io::Error::other("usage tap: decoding stopped"));
        }
        let total = self.decoded.saturating_add(buf.len() as u64);
        if total > self.cap {
            self.over_cap = true;
            return Err(io::Error::other("usage tap: decoded-bytes cap reached"));
        }
        self.decoded = total;
        self.reader.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "tap_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "keep_tests.rs"]
mod keep_tests;
