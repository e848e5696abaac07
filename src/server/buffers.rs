//! A shard's pool of connection read buffers.
//!
//! What it does: hands out read buffers of one size and takes them back when the connection
//! ends, so a new connection neither allocates nor zeroes its buffer (a lock-step client opens
//! a connection per message).
//!
//! What it does not do: no sharing between shards (each shard has its own pool); a buffer that
//! grew is not kept, and the pool keeps at most `KEEP` buffers.
//!
//! Invariants: every buffer handed out is `size` octets long; a reused buffer still holds an
//! earlier connection's octets, so its users read only what they filled themselves.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use crate::read_buffer::ReadBuffer;

/// Buffers kept for reuse at most.
const KEEP: usize = 64;

/// The pool.
pub struct BufferPool {
    size: usize,
    free: RefCell<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A pool of buffers of `size` octets.
    pub fn new(size: usize) -> BufferPool {
        BufferPool {
            size,
            free: RefCell::new(Vec::new()),
        }
    }

    /// A buffer of the pool's size, reused when one is free.
    pub fn take(&self) -> PooledBuffer<'_> {
        let buf = self
            .free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; self.size]);
        PooledBuffer {
            pool: self,
            buf: ReadBuffer::from_vec(buf),
        }
    }

    /// Buffers waiting for reuse.
    pub fn idle(&self) -> usize {
        self.free.borrow().len()
    }
}

/// A buffer that goes back to its pool when dropped.
pub struct PooledBuffer<'a> {
    pool: &'a BufferPool,
    buf: ReadBuffer,
}

impl Deref for PooledBuffer<'_> {
    type Target = ReadBuffer;
    fn deref(&self) -> &ReadBuffer {
        &self.buf
    }
}

impl DerefMut for PooledBuffer<'_> {
    fn deref_mut(&mut self) -> &mut ReadBuffer {
        &mut self.buf
    }
}

impl Drop for PooledBuffer<'_> {
    fn drop(&mut self) {
        let mut free = self.pool.free.borrow_mut();
        if self.buf.capacity() == self.pool.size && free.len() < KEEP {
            free.push(std::mem::take(&mut self.buf).into_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_unless_grown_and_the_pool_is_bounded() {
        let pool = BufferPool::new(16);
        {
            let mut a = pool.take();
            a.spare()[0] = 7;
            a.filled(1);
            let _b = pool.take();
        }
        assert_eq!(pool.idle(), 2);
        let a = pool.take();
        assert_eq!(a.capacity(), 16);
        assert!(
            a.is_empty(),
            "a reused buffer starts with nothing unconsumed"
        );
        assert_eq!(pool.idle(), 1);
        drop(a);
        {
            let mut grown = pool.take();
            grown.grow(32);
        }
        assert_eq!(pool.idle(), 1, "a grown buffer is dropped, not kept");
        let many: Vec<_> = (0..KEEP + 5).map(|_| pool.take()).collect();
        drop(many);
        assert_eq!(pool.idle(), KEEP);
    }
}
