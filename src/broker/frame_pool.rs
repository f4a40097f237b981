//! Reused buffers for large request frames (Produce bodies).
//!
//! Owns a few emptied buffers of large frames, broker-wide, at most
//! [`POOL_BYTES`] in all. A connection reading a frame above
//! [`SMALL_FRAME`] takes a buffer that fits from here; Produce gives its
//! body back once the records are appended. Without it, a large frame's
//! allocation was often memory glibc had just returned to the kernel
//! (`madvise` when the freed 1 MB chunk topped its heap), and the socket
//! read page-faulted and zeroed each 4 KiB page before copying into it:
//! 12–21% of the broker's `perf` samples during `kafka-perf produce`,
//! gone with the pool. (The socket copy into a reused, cache-cold buffer
//! costs more than into a just-zeroed page, so the broker's CPU per GiB
//! moved less than that: see the README's produce figure.)
//!
//! Must never hand out a buffer something else still refers to (only
//! unique `BytesMut`s come back here), nor keep more than [`POOL_BYTES`]
//! idle, nor give a frame a buffer larger than [`buffer_size`] (what the
//! request budget reserved for it; at most an eighth more than the
//! frame).

use std::sync::Mutex;

use bytes::BytesMut;

use super::budget::SMALL_FRAME;
use crate::sync::lock;

/// Idle bytes the pool keeps at most (about 16 frames of librdkafka's
/// default 1 MB batch).
pub const POOL_BYTES: usize = 16 << 20;

/// Buffers larger than this are never kept.
pub const MAX_POOLED: usize = 4 << 20;

/// The capacity of the buffer a frame of `size` bytes is read into, what
/// the request budget reserves for it: for a frame the pool serves,
/// `size` rounded up to a multiple of a sixteenth of its next power of
/// two (at most an eighth more), so frames of about one size share
/// buffers; otherwise exactly `size`.
pub fn buffer_size(size: usize) -> usize {
    if !pooled(size) {
        return size;
    }
    let step = size.next_power_of_two() / 16;
    size.div_ceil(step) * step
}

/// Frames (and buffers) of this size are served from the pool.
fn pooled(size: usize) -> bool {
    size > SMALL_FRAME && size <= MAX_POOLED
}

/// The pool, shared by every connection of one broker (a stack: the
/// buffer given back last is at the end).
#[derive(Debug, Default)]
pub struct FramePool {
    free: Mutex<Vec<BytesMut>>,
}

impl FramePool {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer with room for `size` bytes and at most
    /// [`buffer_size`]`(size)`: of the pooled ones that fit, the one given
    /// back last (its bytes are the likeliest still in the CPU's caches),
    /// else a new one of `buffer_size(size)`.
    pub fn take(&self, size: usize) -> BytesMut {
        let most = buffer_size(size);
        if !pooled(size) {
            return BytesMut::with_capacity(size);
        }
        let mut free = lock(&self.free);
        let fits = free
            .iter()
            .rposition(|b| b.capacity() >= size && b.capacity() <= most);
        match fits {
            Some(i) => free.remove(i),
            None => BytesMut::with_capacity(most),
        }
    }

    /// Keep a frame's buffer for a later frame: emptied, its whole
    /// allocation reclaimed (a body starts after the request header);
    /// kept only if large, not too large, and the pool has room (the
    /// smallest buffers go first when it has not).
    pub fn put(&self, mut buf: BytesMut) {
        buf.clear();
        // Empty, so this only moves the start back to the allocation's
        // start when there is room before it, and then the whole
        // allocation is the capacity (false: it already was).
        let _ = buf.try_reclaim(buf.capacity() + 1);
        if !pooled(buf.capacity()) {
            return;
        }
        let mut free = lock(&self.free);
        free.push(buf);
        let mut held: usize = free.iter().map(BytesMut::capacity).sum();
        while held > POOL_BYTES {
            let Some(smallest) = free
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)
            else {
                break;
            };
            held -= free.remove(smallest).capacity();
        }
    }

    /// Idle bytes held (tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        lock(&self.free).iter().map(BytesMut::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Buf, BufMut, Bytes};

    use super::*;

    /// A frame's buffer, read, frozen, its header consumed and made
    /// writable again (as a Produce body is), comes back whole and is
    /// handed to the next frame of about its size: same memory.
    #[test]
    fn a_large_frame_buffer_is_reused_whole() {
        let pool = FramePool::new();
        let size = 1_000_100;
        let mut buf = pool.take(size);
        let capacity = buf.capacity();
        assert!(capacity >= size && capacity - size <= size / 8);
        let at = buf.as_ptr();
        buf.put_bytes(7, size);
        let mut frame: Bytes = buf.freeze();
        frame.advance(30); // the request header
        let body = frame.try_into_mut().expect("unique");
        pool.put(body);
        assert_eq!(pool.held(), capacity);
        // A frame a little larger than the first fits the same buffer.
        let again = pool.take(size + 1000);
        assert_eq!(again.as_ptr(), at, "not reused");
        assert_eq!(again.len(), 0);
        assert_eq!(again.capacity(), capacity);
        assert_eq!(pool.held(), 0);
    }

    /// Of the buffers that fit, the one given back last is taken.
    #[test]
    fn the_buffer_given_back_last_is_taken_first() {
        let pool = FramePool::new();
        let first = pool.take(1 << 20);
        let second = pool.take(1 << 20);
        let (a, b) = (first.as_ptr(), second.as_ptr());
        pool.put(first);
        pool.put(second);
        assert_eq!(pool.take(1 << 20).as_ptr(), b);
        assert_eq!(pool.take(1 << 20).as_ptr(), a);
    }

    /// What the budget reserves covers the buffer a frame gets, and is
    /// at most an eighth more than the frame.
    #[test]
    fn buffer_size_stays_within_an_eighth() {
        let pool = FramePool::new();
        for size in [
            1,
            SMALL_FRAME,
            SMALL_FRAME + 1,
            100_000,
            999_875,
            1 << 20,
            (1 << 20) + 1,
            MAX_POOLED,
            MAX_POOLED + 1,
        ] {
            let most = buffer_size(size);
            assert!(most >= size && most - size <= size / 8, "{size} -> {most}");
            let buf = pool.take(size);
            assert!(buf.capacity() >= size && buf.capacity() <= most);
            pool.put(buf);
        }
        assert_eq!(buffer_size(1_000_100), 1 << 20);
        assert_eq!(buffer_size(SMALL_FRAME), SMALL_FRAME);
    }

    /// Small frames are never pooled, nor buffers much larger than the
    /// frame handed out, and the pool keeps at most POOL_BYTES.
    #[test]
    fn pool_is_bounded_and_fits_frames() {
        let pool = FramePool::new();
        pool.put(BytesMut::with_capacity(SMALL_FRAME));
        assert_eq!(pool.held(), 0);
        pool.put(BytesMut::with_capacity(MAX_POOLED + 1));
        assert_eq!(pool.held(), 0);
        pool.put(BytesMut::with_capacity(2 << 20));
        // 1 MiB asked: a 2 MiB buffer is too large for it.
        let fresh = pool.take(1 << 20);
        assert_eq!(fresh.capacity(), 1 << 20);
        assert_eq!(pool.held(), 2 << 20);
        for _ in 0..20 {
            pool.put(BytesMut::with_capacity(1 << 20));
        }
        assert!(pool.held() <= POOL_BYTES, "held {}", pool.held());
        // The larger buffer was kept over the smaller ones.
        assert_eq!(pool.take(2 << 20).capacity(), 2 << 20);
    }
}
