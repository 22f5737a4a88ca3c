//! Short strings kept inline instead of on the heap: request ids, the numbers of rate-limit
//! headers, client addresses. Formatting into one costs no allocation.

use std::fmt;

/// A string of at most `N` bytes, stored inline.
#[derive(Clone, Copy)]
pub struct InlineStr<const N: usize> {
    len: usize,
    buf: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// The empty string.
    pub const fn new() -> Self {
        InlineStr {
            len: 0,
            buf: [0; N],
        }
    }

    /// `s` when it fits.
    pub fn copy_of(s: &str) -> Option<Self> {
        let mut out = Self::new();
        fmt::Write::write_str(&mut out, s).ok()?;
        Some(out)
    }

    /// `args` formatted, when the text fits (else what fitted before the first piece that did not).
    pub fn format(args: fmt::Arguments<'_>) -> Self {
        let mut out = Self::new();
        let _ = fmt::Write::write_fmt(&mut out, args);
        out
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended (see `write_str`), so this never falls back.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> Default for InlineStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for InlineStr<N> {
    /// Appends `s` whole, or nothing (an error) when it does not fit.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl<const N: usize> std::ops::Deref for InlineStr<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq for InlineStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for InlineStr<N> {}

impl<const N: usize> PartialEq<&str> for InlineStr<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const N: usize> PartialEq<str> for InlineStr<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::InlineStr;
    use std::fmt::Write;

    #[test]
    fn holds_whole_pieces_only() {
        let mut s = InlineStr::<8>::new();
        assert!(s.write_str("abc").is_ok());
        assert!(s.write_str("éé").is_ok());
        assert_eq!(s, "abcéé");
        assert!(
            s.write_str("xy").is_err(),
            "does not fit: nothing of it is kept"
        );
        assert_eq!(s.as_str(), "abcéé");
        assert_eq!(InlineStr::<4>::copy_of("12345"), None);
        let n = InlineStr::<24>::format(format_args!("{}m{}s", 6, 0));
        assert_eq!(n, "6m0s");
        assert_eq!(format!("{n:?}"), "\"6m0s\"");
    }
}
