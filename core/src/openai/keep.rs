//! The decoded body kept whole for the semantic cache (see
//! [`UsageTap::keeping`](super::UsageTap::keeping)): everything or nothing.

/// Decoded bytes kept up to a limit; past it the bytes are dropped (memory given back at once)
/// and the body is marked as not kept.
#[derive(Debug)]
pub(crate) struct Keep {
    buf: Vec<u8>,
    max: usize,
    over: bool,
}

impl Keep {
    pub(crate) fn new(max: usize) -> Self {
        Keep {
            buf: Vec::new(),
            max,
            over: false,
        }
    }

    /// The next decoded piece.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.over {
            return;
        }
        if self.buf.len().saturating_add(data.len()) > self.max {
            self.over = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    /// The whole body, unless it went over the limit.
    pub(crate) fn take(self) -> Option<Vec<u8>> {
        (!self.over).then_some(self.buf)
    }
}
