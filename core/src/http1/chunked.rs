//! A chunked-body state machine over plain byte slices: it finds chunk data and the end of the body
//! without copying, so the IO side can either relay the raw bytes or collect the data.

/// Longest chunk-size line (size, extensions) we accept before calling it an attack.
const MAX_LINE: usize = 4096;
/// Most trailer bytes we skip.
const MAX_TRAILERS: usize = 16 * 1024;

/// Where the decoder is inside the chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { value: u64, digits: u8, line: usize },
    /// After the size: extensions or whitespace up to CR.
    Ext { value: u64, line: usize },
    /// Expecting LF after the size line's CR.
    SizeLf { value: u64 },
    /// Inside chunk data; this many bytes remain.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// After the last chunk: at the start of a trailer line (or the final CRLF).
    TrailerStart { total: usize },
    /// Inside a trailer line.
    Trailer { total: usize },
    /// Expecting LF that ends a trailer line.
    TrailerLf { total: usize },
    /// Expecting the LF of the final CRLF.
    EndLf,
    /// The body is complete.
    Done,
}

/// Malformed chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk size that is not hex, overflows, or a missing CRLF.
    #[error("invalid chunk framing")]
    Invalid,
    /// A size line or trailers beyond the limits.
    #[error("chunk size line or trailers too long")]
    TooLong,
}

/// What one call to [`ChunkedDecoder::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that belong to this body (all of them unless `done`).
    pub consumed: usize,
    /// The terminating chunk and trailers have been seen.
    pub done: bool,
}

/// Incremental decoder for `Transfer-Encoding: chunked`.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
                line: 0,
            },
        }
    }

    /// Has the whole body been seen?
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feed the next bytes; `on_data` gets every run of chunk data in order (sub-slices of `input`).
    ///
    /// Stops at the end of the body: bytes after it (a pipelined message) are not consumed.
    ///
    /// # Errors
    /// [`ChunkError`] on malformed framing; the stream cannot be resynchronised after it.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<Progress, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Size {
                    value,
                    digits,
                    line,
                } => {
                    if line >= MAX_LINE {
                        return Err(ChunkError::TooLong);
                    }
                    match hex(b) {
                        Some(d) => {
                            // 15 hex digits keep us far from u64 overflow and any sane body.
                            if digits >= 15 {
                                return Err(ChunkError::Invalid);
                            }
                            State::Size {
                                value: value << 4 | u64::from(d),
                                digits: digits + 1,
                                line: line + 1,
                            }
                        }
                        None if digits == 0 => return Err(ChunkError::Invalid),
                        None if b == b'\r' => State::SizeLf { value },
                        None if b == b';' || b == b' ' || b == b'\t' => State::Ext {
                            value,
                            line: line + 1,
                        },
                        None => return Err(ChunkError::Invalid),
                    }
                }
                State::Ext { value, line } => {
                    if line >= MAX_LINE {
                        return Err(ChunkError::TooLong);
                    }
                    match b {
                        b'\r' => State::SizeLf { value },
                        _ if is_ctl(b) => return Err(ChunkError::Invalid),
                        _ => State::Ext {
                            value,
                            line: line + 1,
                        },
                    }
                }
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(ChunkError::Invalid);
                    }
                    if value == 0 {
                        State::TrailerStart { total: 0 }
                    } else {
                        State::Data(value)
                    }
                }
                State::Data(left) => {
                    let avail = (input.len() - i) as u64;
                    let take = left.min(avail) as usize;
                    on_data(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                    line: 0,
                },
                State::DataCr | State::DataLf => return Err(ChunkError::Invalid),
                // A bare LF or any other control byte in a trailer line is refused: a peer that
                // ends lines at a bare LF would see a different end of the body.
                State::TrailerStart { total } => match b {
                    b'\r' => State::EndLf,
                    _ if is_ctl(b) => return Err(ChunkError::Invalid),
                    _ => State::Trailer { total: total + 1 },
                },
                State::Trailer { total } => {
                    if total >= MAX_TRAILERS {
                        return Err(ChunkError::TooLong);
                    }
                    match b {
                        b'\r' => State::TrailerLf { total },
                        _ if is_ctl(b) => return Err(ChunkError::Invalid),
                        _ => State::Trailer { total: total + 1 },
                    }
                }
                State::TrailerLf { total } if b == b'\n' => State::TrailerStart { total },
                State::EndLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok(Progress {
                        consumed: i + 1,
                        done: true,
                    });
                }
                State::TrailerLf { .. } | State::EndLf => return Err(ChunkError::Invalid),
                State::Done => {
                    return Ok(Progress {
                        consumed: i,
                        done: true,
                    })
                }
            };
            i += 1;
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }
}

/// A control byte other than HTAB (CR is handled by the caller before this is asked).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all_splits(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut last = None;
        for cut in 0..=input.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let p1 = d.feed(&input[..cut], |s| out.extend_from_slice(s))?;
            let consumed = if p1.done {
                p1.consumed
            } else {
                let p2 = d.feed(&input[cut..], |s| out.extend_from_slice(s))?;
                cut + p2.consumed
            };
            let r = (out, consumed);
            if let Some(prev) = &last {
                assert_eq!(prev, &r, "split at {cut} changed the result");
            }
            last = Some(r);
        }
        Ok(last.unwrap_or_default())
    }

    #[test]
    fn decodes_with_extensions_and_trailers_at_every_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (data, consumed) = decode_all_splits(body).unwrap();
        assert_eq!(data, b"hello0123456789");
        assert_eq!(consumed, body.len() - 4);
    }

    #[test]
    fn rejects_bad_sizes() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloX",
            b"\r\n",
            b"fffffffffffffffff\r\n",
            b"5\nhello",
            b"1;a\nb\r\nx\r\n",
            b"1;a\x00\r\nx\r\n",
            b"0\r\nX-A: 1\nX-Evil: 2\r\n\r\n",
            b"0\r\n\nX: 1\r\n\r\n",
            b"0\r\nX-A: a\x00b\r\n\r\n",
            b"0\r\nX-A: 1\r\n\n",
        ] {
            let mut d = ChunkedDecoder::new();
            assert!(
                d.feed(bad, |_| {}).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn control_bytes_in_extensions_and_trailers_are_refused_at_every_split() {
        for bad in [
            &b"1;a\nb\r\nx\r\n0\r\n\r\n"[..],
            b"1\r\nx\r\n0\r\nX-A: 1\nX-Evil: 2\r\n\r\n",
            b"1\r\nx\r\n0;e\x7f\r\n\r\n",
        ] {
            for cut in 0..=bad.len() {
                let mut d = ChunkedDecoder::new();
                let r = d
                    .feed(&bad[..cut], |_| {})
                    .and_then(|_| d.feed(&bad[cut..], |_| {}));
                assert_eq!(r, Err(ChunkError::Invalid), "split at {cut} of {bad:?}");
            }
        }
    }

    #[test]
    fn long_extension_is_refused() {
        let mut d = ChunkedDecoder::new();
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        assert_eq!(d.feed(&line, |_| {}), Err(ChunkError::TooLong));
    }
}
