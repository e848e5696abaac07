//! A connection's read buffer: the octets read but not yet consumed, kept at the front.
//!
//! What it does: holds one `Vec<u8>` with a window `start..end` of unconsumed input. A parser
//! looks at [`ReadBuffer::data`] and says how much it used ([`ReadBuffer::consume`]); before
//! the next read, [`ReadBuffer::compact`] moves what is left to the front (one `copy_within`,
//! only when something is left and it is not already there), and the read goes into
//! [`ReadBuffer::spare`], followed by [`ReadBuffer::filled`].
//!
//! What it does not do: no I/O, no parsing, and no growth of its own: the owner decides
//! whether and how far to grow ([`ReadBuffer::grow`]), so every buffer's bound stays where
//! the protocol's limit is.
//!
//! Invariants: `start <= end <= capacity`; when everything is consumed the window restarts at
//! the front, so a buffer that a parser keeps up with never copies.

/// Unconsumed input in a reusable buffer.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    /// An empty buffer of `capacity` octets.
    pub fn new(capacity: usize) -> ReadBuffer {
        ReadBuffer::from_vec(vec![0; capacity])
    }

    /// An empty buffer over `buf` (its length is the capacity; e.g. a pooled buffer).
    pub fn from_vec(buf: Vec<u8>) -> ReadBuffer {
        ReadBuffer {
            buf,
            start: 0,
            end: 0,
        }
    }

    /// The storage back, e.g. to return it to a pool.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// The unconsumed octets.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// How many octets are unconsumed.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether everything read has been consumed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks the first `n` unconsumed octets as used (at most all of them).
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    /// Forgets everything unconsumed (e.g. input pipelined before a TLS handshake).
    #[inline]
    pub fn clear(&mut self) {
        (self.start, self.end) = (0, 0);
    }

    /// Moves the unconsumed octets to the front, making all free room contiguous.
    #[inline]
    pub fn compact(&mut self) {
        if self.start == self.end {
            self.clear();
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Whether there is no room after the unconsumed octets (after [`Self::compact`]: the
    /// buffer holds `capacity` octets that its parser could not use yet).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.end == self.buf.len()
    }

    /// The buffer's size.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Grows the buffer to `capacity` octets (never shrinks it).
    pub fn grow(&mut self, capacity: usize) {
        if capacity > self.buf.len() {
            self.buf.resize(capacity, 0);
        }
    }

    /// The free room after the unconsumed octets, for the next read.
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// Records that a read put `n` octets into [`Self::spare`].
    #[inline]
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::ReadBuffer;

    fn read(b: &mut ReadBuffer, bytes: &[u8]) {
        let room = b.spare();
        room[..bytes.len()].copy_from_slice(bytes);
        b.filled(bytes.len());
    }

    #[test]
    fn consumed_input_restarts_at_the_front_without_copying() {
        let mut b = ReadBuffer::new(8);
        read(&mut b, b"EHLO");
        assert_eq!(b.data(), b"EHLO");
        b.consume(4);
        assert!(b.is_empty());
        assert_eq!(b.spare().len(), 8);
    }

    #[test]
    fn a_partial_line_moves_to_the_front() {
        let mut b = ReadBuffer::new(8);
        read(&mut b, b"ab\r\ncd");
        b.consume(4);
        assert_eq!(b.data(), b"cd");
        assert_eq!(b.spare().len(), 2);
        b.compact();
        assert_eq!(b.data(), b"cd");
        assert_eq!(b.spare().len(), 6);
        read(&mut b, b"\r\n");
        assert_eq!(b.data(), b"cd\r\n");
    }

    #[test]
    fn full_and_grow_and_over_consume() {
        let mut b = ReadBuffer::new(4);
        read(&mut b, b"abcd");
        assert!(b.is_full());
        b.grow(2);
        assert_eq!(b.capacity(), 4);
        b.grow(8);
        assert!(!b.is_full());
        assert_eq!(b.data(), b"abcd");
        b.filled(100);
        assert_eq!(b.len(), 8);
        b.consume(100);
        assert!(b.is_empty());
        assert_eq!(b.into_vec().len(), 8);
    }
}
