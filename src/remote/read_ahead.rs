//! Adaptive read-ahead of sequential remote readers: how many chunks each
//! partition's reader keeps loading ahead of where it reads.
//!
//! Against S3 one GET streams at tens of MB/s after tens of milliseconds,
//! so a catch-up reader is only fast with many GETs in flight. Each
//! partition read from the remote tier has a window of chunks ahead. It
//! starts at `remote.fetch.prefetch.chunks` and doubles at the end of an
//! epoch (one window's worth of bytes read) in which the reader had to wait
//! for a chunk, as long as the previous doubling raised the reader's
//! throughput by at least a tenth; when it did not, the window holds (and
//! probes again after [`PROBE_AFTER_EPOCHS`] epochs of holding). It never
//! exceeds the partition's fair share of two broker budgets, split evenly
//! among the partitions read in the last [`ACTIVE_FOR`]:
//!
//! - the chunk cache (`remote.cache.bytes`): a reader's window plus the
//!   chunk it reads, each counted once whether it is cached or still in
//!   flight (a chunk in flight enters the cache when it arrives), so the
//!   windows of all active readers together fit the cache and prefetched
//!   chunks are not evicted before they are read. That holds because
//!   nothing else competes for the room they claim: a consumer's chunks
//!   leave the cache once read to their end unless the cache has room to
//!   spare beyond the claims ([`ReadAheads::claimed`]; drop-behind in
//!   `fetcher.rs`). The tiered cleaner, which keeps its chunks for its
//!   second pass, is the exception: its window is claimed like any
//!   reader's, the chunks behind it are not, and the LRU evicts the
//!   oldest chunk when they crowd the cache;
//! - chunk GETs in flight (`remote.fetch.max.concurrent.gets`).
//!
//! Sans-io: time comes in as an argument. Owns the windows only; the GETs
//! and the memory they fill belong to `fetcher.rs` and `cache.rs`.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A partition counts as read (for the fair shares) this long after its
/// last read. Long enough for a consumer of many partitions, which reads
/// them in turn (librdkafka rotates them through its Fetches, and a Fetch
/// reads at most 4 from the bucket): the chunks loaded ahead for a partition
/// wait in the cache until its turn comes again, so its share must too, or
/// the others' windows grow into that room and the LRU evicts them unread
/// (2 s was too short for 16 partitions through the broker under load).
pub const ACTIVE_FOR: Duration = Duration::from_secs(10);
/// Epochs a window holds after a doubling that did not pay before it tries
/// again (the store or the other readers may have changed).
pub const PROBE_AFTER_EPOCHS: u32 = 8;
/// Partitions whose windows are remembered; beyond it, idle ones are
/// forgotten (a forgotten reader starts again from the initial window).
const MAX_READERS: usize = 4096;

/// The read-ahead of one partition's sequential reader.
#[derive(Debug, Clone)]
pub struct ReadAhead {
    window: usize,
    last_read: Instant,
    epoch_start: Instant,
    epoch_bytes: u64,
    epoch_waited: bool,
    /// Set in the epoch right after a doubling: the throughput and the
    /// window before it.
    probe_from: Option<(f64, usize)>,
    /// Epochs held since a doubling that did not pay; `None` when not
    /// holding.
    held: Option<u32>,
}

impl ReadAhead {
    fn new(initial: usize, now: Instant) -> Self {
        ReadAhead {
            window: initial,
            last_read: now,
            epoch_start: now,
            epoch_bytes: 0,
            epoch_waited: false,
            probe_from: None,
            held: None,
        }
    }

    /// The window now: chunks to keep loading after the one being read.
    pub fn window(&self) -> usize {
        self.window
    }

    /// A read of `bytes` ended at `now`; `waited` if it had to wait for a
    /// chunk that was not loaded yet. Returns the window, at most `cap`.
    fn observe(&mut self, bytes: u64, waited: bool, now: Instant, chunk: u64, cap: usize) -> usize {
        self.last_read = now;
        self.epoch_bytes += bytes;
        self.epoch_waited |= waited;
        let cap = cap.max(1);
        if self.window > cap {
            self.window = cap;
        }
        if self.window == 0 || self.epoch_bytes < self.window as u64 * chunk.max(1) {
            return self.window;
        }
        let elapsed = now
            .saturating_duration_since(self.epoch_start)
            .as_secs_f64()
            .max(1e-6);
        let rate = self.epoch_bytes as f64 / elapsed;
        let double = |w: usize| (w * 2).min(cap);
        match self.probe_from.take() {
            // Right after a doubling: keep it if it paid, and go on
            // doubling while the reader still waits; else back and hold.
            Some((before, previous)) => {
                if rate >= before * 1.1 {
                    if self.epoch_waited && self.window < cap {
                        self.probe_from = Some((rate, self.window));
                        self.window = double(self.window);
                    }
                } else {
                    self.window = previous.min(cap);
                    self.held = Some(0);
                }
            }
            None if self.epoch_waited && self.window < cap => match self.held {
                Some(n) if n + 1 < PROBE_AFTER_EPOCHS => self.held = Some(n + 1),
                _ => {
                    self.held = None;
                    self.probe_from = Some((rate, self.window));
                    self.window = double(self.window);
                }
            },
            None => {}
        }
        self.epoch_start = now;
        self.epoch_bytes = 0;
        self.epoch_waited = false;
        self.window
    }
}

/// The read-aheads of a broker's partitions and the budgets they share.
#[derive(Debug)]
pub struct ReadAheads {
    readers: HashMap<(uuid::Uuid, u32), ReadAhead>,
    initial: usize,
    cache_bytes: u64,
    max_gets: usize,
}

impl ReadAheads {
    /// Windows starting at `initial` chunks (0: no read-ahead at all),
    /// sharing `cache_bytes` of chunk cache and `max_gets` GETs in flight.
    pub fn new(initial: usize, cache_bytes: u64, max_gets: usize) -> Self {
        ReadAheads {
            readers: HashMap::new(),
            initial,
            cache_bytes,
            max_gets: max_gets.max(1),
        }
    }

    /// Partitions read within [`ACTIVE_FOR`] of `now`.
    pub fn active(&self, now: Instant) -> usize {
        self.readers
            .values()
            .filter(|r| now.saturating_duration_since(r.last_read) < ACTIVE_FOR)
            .count()
    }

    /// The largest window of a partition now, with `active` partitions
    /// read and chunks of `chunk` bytes: its share of the cache (room for
    /// its current chunk and its window) and of the GETs in flight. Never
    /// below one chunk ahead, so with more active partitions than half the
    /// cache's chunks the windows claim more than the cache (their readers
    /// then crowd it whatever the cap: each holds the chunk it reads).
    pub fn cap(&self, active: usize, chunk: u64) -> usize {
        let active = active.max(1);
        let cache_chunks = (self.cache_bytes / chunk.max(1)) as usize;
        let cache_share = (cache_chunks / active).saturating_sub(1);
        let gets_share = self.max_gets / active;
        cache_share.min(gets_share).max(1)
    }

    /// Bytes of chunk cache the partitions read within [`ACTIVE_FOR`] of
    /// `now` may fill with their current chunks and windows (each window
    /// at most its cap): room that chunks read to their end must not take
    /// (drop-behind keeps them only in the rest). Without read-ahead
    /// (no windows to count), half the cache, for the chunks readers are
    /// in.
    pub fn claimed(&self, now: Instant, chunk: u64) -> u64 {
        if self.initial == 0 {
            return self.cache_bytes / 2;
        }
        let active = self.active(now);
        let cap = self.cap(active, chunk);
        self.readers
            .values()
            .filter(|r| now.saturating_duration_since(r.last_read) < ACTIVE_FOR)
            .map(|r| (1 + r.window.min(cap)) as u64 * chunk)
            .sum()
    }

    /// A read of `bytes` of partition `(topic_id, partition)` ended at
    /// `now` (`waited`: for a chunk not loaded yet). Returns its window and
    /// the partition's share of GETs in flight.
    pub fn observe(
        &mut self,
        reader: (uuid::Uuid, u32),
        bytes: u64,
        waited: bool,
        now: Instant,
        chunk: u64,
    ) -> (usize, usize) {
        if self.initial == 0 {
            return (0, 0);
        }
        if self.readers.len() >= MAX_READERS && !self.readers.contains_key(&reader) {
            self.readers
                .retain(|_, r| now.saturating_duration_since(r.last_read) < ACTIVE_FOR);
        }
        let initial = self.initial;
        let mut bytes = bytes;
        self.readers
            .entry(reader)
            .or_insert_with(|| {
                // Its first epoch starts now: the read that ended now is
                // not timed from its start.
                bytes = 0;
                ReadAhead::new(initial, now)
            })
            .last_read = now;
        let active = self.active(now);
        let cap = self.cap(active, chunk);
        let gets_share = (self.max_gets / active.max(1)).max(1);
        let r = self
            .readers
            .get_mut(&reader)
            .map_or(0, |r| r.observe(bytes, waited, now, chunk, cap));
        (r, gets_share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: u64 = 8 << 20;

    /// A reader that always waits, whose throughput rises with the window
    /// up to 6 chunks in flight (a store at 1 chunk per 100 ms per GET):
    /// the window doubles 2 → 4 → 8; 16 does not pay, so it goes back to 8
    /// and holds, probing 16 again every few epochs.
    #[test]
    fn the_window_grows_while_throughput_rises() {
        let mut ra = ReadAheads::new(2, 1 << 30, 64);
        let p = (uuid::Uuid::nil(), 0);
        let mut now = crate::clock::monotonic_now();
        let mut windows = vec![];
        let mut at_8 = 0;
        let mut window = 2;
        for _ in 0..400 {
            // One chunk read; it took 100 ms / min(window, 6).
            now += Duration::from_millis(100) / window.min(6) as u32;
            window = ra.observe(p, CHUNK, true, now, CHUNK).0;
            if windows.last() != Some(&window) {
                windows.push(window);
            }
            at_8 += usize::from(window == 8);
        }
        assert_eq!(windows[..6], [2, 4, 8, 16, 8, 16], "{windows:?}");
        assert!(windows.iter().all(|w| *w <= 16), "{windows:?}");
        assert!(at_8 > 250, "held at 8 mostly: {at_8} of 400");
    }

    /// A reader that never waits keeps its window.
    #[test]
    fn a_reader_that_never_waits_keeps_its_window() {
        let mut ra = ReadAheads::new(2, 1 << 30, 64);
        let p = (uuid::Uuid::nil(), 0);
        let mut now = crate::clock::monotonic_now();
        for _ in 0..100 {
            now += Duration::from_millis(10);
            assert_eq!(ra.observe(p, CHUNK, false, now, CHUNK).0, 2);
        }
    }

    /// The cache and the GETs in flight are shared fairly: 16 partitions
    /// read together get an even share, which never goes below one chunk.
    #[test]
    fn partitions_share_the_cache_and_the_gets() {
        let mut ra = ReadAheads::new(2, 256 << 20, 64);
        assert_eq!(ra.cap(1, CHUNK), 31, "32 chunks: 31 ahead + 1 read");
        assert_eq!(ra.cap(4, CHUNK), 7, "8 chunks each: 7 ahead + 1 read");
        assert_eq!(ra.cap(16, CHUNK), 1);
        assert_eq!(ra.cap(32, CHUNK), 1, "never below one chunk ahead");
        let big = ReadAheads::new(2, 512 << 20, 64);
        assert_eq!(big.cap(16, CHUNK), 3, "64 chunks for 16: 3 ahead + 1 read");
        let mut small_gets = ReadAheads::new(2, 1 << 30, 8);
        assert_eq!(small_gets.cap(1, CHUNK), 8, "the GET cap binds");
        let now = crate::clock::monotonic_now();
        for p in 0..16 {
            ra.observe((uuid::Uuid::nil(), p), 0, true, now, CHUNK);
            small_gets.observe((uuid::Uuid::nil(), p), 0, true, now, CHUNK);
        }
        assert_eq!(ra.active(now), 16);
        let (window, share) = ra.observe((uuid::Uuid::nil(), 0), CHUNK, true, now, CHUNK);
        assert_eq!((window, share), (1, 4), "window clamped to the share");
        let (_, share) = small_gets.observe((uuid::Uuid::nil(), 0), 0, true, now, CHUNK);
        assert_eq!(share, 1, "never below one GET");
        // Readers idle for ACTIVE_FOR no longer count.
        let later = now + ACTIVE_FOR;
        ra.observe((uuid::Uuid::nil(), 0), 0, false, later, CHUNK);
        assert_eq!(ra.active(later), 1);
    }

    /// The windows of the active partitions at their caps, each with the
    /// chunk its reader is in, fit the cache together (so nothing they
    /// load is evicted for another's), as long as each can have one chunk
    /// ahead; what they claim is what drop-behind leaves them.
    #[test]
    fn the_windows_at_their_caps_fit_the_cache_together() {
        for cache_chunks in [2u64, 3, 16, 32, 33, 64, 128] {
            for max_gets in [1, 4, 64] {
                let ra = ReadAheads::new(2, cache_chunks * CHUNK, max_gets);
                for active in 1..=cache_chunks as usize / 2 {
                    let held = active as u64 * (1 + ra.cap(active, CHUNK) as u64);
                    assert!(
                        held <= cache_chunks,
                        "{active} readers of {cache_chunks} chunks, {max_gets} GETs: {held} chunks"
                    );
                }
            }
        }
        // The largest share that fits, not a smaller one: 16 readers of
        // 64 chunks hold all 64 (a share of 3 ahead), 5 readers 30 of 32.
        let ra = ReadAheads::new(2, 64 * CHUNK, 64);
        assert_eq!(16 * (1 + ra.cap(16, CHUNK)), 64);
        let ra = ReadAheads::new(2, 32 * CHUNK, 64);
        assert_eq!(5 * (1 + ra.cap(5, CHUNK)), 30);
    }

    /// What the active readers claim: each one's current chunk and window
    /// (a window above the cap now counted at the cap); idle readers claim
    /// nothing; without read-ahead, half the cache.
    #[test]
    fn the_active_readers_claim_their_chunk_and_window() {
        let mut ra = ReadAheads::new(2, 256 << 20, 64);
        let now = crate::clock::monotonic_now();
        assert_eq!(ra.claimed(now, CHUNK), 0);
        ra.observe((uuid::Uuid::nil(), 0), 0, true, now, CHUNK);
        assert_eq!(ra.claimed(now, CHUNK), 3 * CHUNK, "one reader: 1 + 2");
        // Its window grows to 8 (a reader that waits and gets faster).
        ra.readers
            .get_mut(&(uuid::Uuid::nil(), 0))
            .expect("reader")
            .window = 8;
        assert_eq!(ra.claimed(now, CHUNK), 9 * CHUNK);
        // 15 more readers: every window counts at the cap of 16 readers.
        for p in 1..16 {
            ra.observe((uuid::Uuid::nil(), p), 0, true, now, CHUNK);
        }
        assert_eq!(ra.cap(16, CHUNK), 1);
        assert_eq!(ra.claimed(now, CHUNK), 256 << 20, "16 x (1 + 1): all of it");
        // After ACTIVE_FOR only the one read again counts.
        let later = now + ACTIVE_FOR;
        ra.observe((uuid::Uuid::nil(), 3), 0, false, later, CHUNK);
        assert_eq!(ra.claimed(later, CHUNK), 3 * CHUNK);
        let off = ReadAheads::new(0, 256 << 20, 64);
        assert_eq!(off.claimed(now, CHUNK), 128 << 20);
    }

    /// An initial window of 0 turns read-ahead off.
    #[test]
    fn zero_is_off() {
        let mut ra = ReadAheads::new(0, 1 << 30, 64);
        let now = crate::clock::monotonic_now();
        assert_eq!(
            ra.observe((uuid::Uuid::nil(), 0), CHUNK, true, now, CHUNK),
            (0, 0)
        );
    }
}
