//! Formatting into caller-provided byte buffers, without allocation.

use core::fmt;

/// A [`fmt::Write`] sink over a byte buffer that silently truncates on a
/// UTF-8 boundary when full and remembers how many bytes the whole text needed.
pub struct FixedWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    needed: usize,
}

impl<'b> FixedWriter<'b> {
    /// A writer over `buf`, initially empty.
    pub fn new(buf: &'b mut [u8]) -> Self {
        FixedWriter {
            buf,
            len: 0,
            needed: 0,
        }
    }

    /// Bytes written so far (at most the buffer length).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the complete text would need.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// The written text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for FixedWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.needed = self.needed.saturating_add(s.len());
        let room = self.buf.len() - self.len;
        let mut take = s.len().min(room);
        while take > 0 && !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Formats `args` into `buf` (truncating) and returns the written text.
pub fn write_to<'b>(buf: &'b mut [u8], args: fmt::Arguments<'_>) -> &'b str {
    let mut w = FixedWriter::new(buf);
    let _ = fmt::write(&mut w, args);
    let len = w.len();
    core::str::from_utf8(&buf[..len]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_utf8_boundary_and_counts_needed() {
        let mut buf = [0u8; 5];
        let mut w = FixedWriter::new(&mut buf);
        fmt::Write::write_str(&mut w, "abcé€").unwrap();
        assert_eq!(w.as_str(), "abcé");
        assert_eq!(w.needed(), 3 + 2 + 3);
    }
}
