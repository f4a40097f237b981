//! The log cleaner's key → latest offset map (Kafka's `SkimpyOffsetMap`).
//!
//! Owns: a fixed-size open-addressing table of 24-byte entries (a 128-bit
//! hash of the key and an offset), sized once within the dedupe buffer
//! (`log.cleaner.dedupe.buffer.size`) and never grown: memory is bounded by
//! construction. Keys are not stored; two keys with the same 128-bit hash
//! would be taken for one (as in Kafka, whose map keeps a 16-byte MD5).
//! Must never allocate per key.

use std::hash::{Hash, Hasher};

/// Bytes one entry takes.
pub const ENTRY_BYTES: usize = 24;

/// Share of the slots the map fills before it reports itself full (Kafka's
/// `log.cleaner.io.buffer.load.factor`, 0.9): probing stays short.
const LOAD_FACTOR: f64 = 0.9;

#[derive(Clone, Copy)]
struct Slot {
    hash: [u64; 2],
    /// -1: empty.
    offset: i64,
}

const EMPTY: Slot = Slot {
    hash: [0, 0],
    offset: -1,
};

/// Key hash → latest offset.
pub struct OffsetMap {
    slots: Vec<Slot>,
    entries: usize,
    max_entries: usize,
}

fn key_hash(key: &[u8]) -> [u64; 2] {
    // Two SipHash-1-3 runs with different prefixes: 128 bits, fixed keys
    // (the same key hashes the same in every process).
    let mut a = std::hash::DefaultHasher::new();
    0u8.hash(&mut a);
    key.hash(&mut a);
    let mut b = std::hash::DefaultHasher::new();
    1u8.hash(&mut b);
    key.hash(&mut b);
    [a.finish(), b.finish()]
}

impl OffsetMap {
    /// A map for about `expected_keys` keys, within `buffer_bytes`: the
    /// smaller of the two decides its size.
    pub fn new(buffer_bytes: u64, expected_keys: usize) -> Self {
        let most = (buffer_bytes as usize / ENTRY_BYTES).max(16);
        let wanted = ((expected_keys as f64 / LOAD_FACTOR) as usize + 16).max(16);
        let n = most.min(wanted);
        OffsetMap {
            slots: vec![EMPTY; n],
            entries: 0,
            max_entries: ((n as f64 * LOAD_FACTOR) as usize).max(1),
        }
    }

    /// Keys the map can take at most.
    pub fn capacity(&self) -> usize {
        self.max_entries
    }

    /// Keys in the map.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// No key yet.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Room for `n` more keys (each record of a batch may be a new key).
    pub fn has_room_for(&self, n: usize) -> bool {
        self.entries + n <= self.max_entries
    }

    /// Bytes the table takes.
    pub fn bytes(&self) -> usize {
        self.slots.len() * ENTRY_BYTES
    }

    fn find(&self, hash: [u64; 2]) -> usize {
        let n = self.slots.len();
        let mut i = (hash[0] % n as u64) as usize;
        loop {
            let s = &self.slots[i];
            if s.offset < 0 || s.hash == hash {
                return i;
            }
            i = (i + 1) % n;
        }
    }

    /// Record `offset` as the latest of `key`. Returns false (and records
    /// nothing) when the key is new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = key_hash(key);
        let i = self.find(hash);
        let slot = &mut self.slots[i];
        if slot.offset < 0 {
            if self.entries >= self.max_entries {
                return false;
            }
            self.entries += 1;
            slot.hash = hash;
        }
        slot.offset = slot.offset.max(offset);
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let s = &self.slots[self.find(key_hash(key))];
        (s.offset >= 0).then_some(s.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_offset_per_key_within_a_fixed_size() {
        let mut m = OffsetMap::new(1 << 20, 1000);
        for i in 0..3000i64 {
            assert!(m.put(format!("k{}", i % 1000).as_bytes(), i));
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.get(b"k7"), Some(2007));
        assert_eq!(m.get(b"absent"), None);
        assert!(m.bytes() <= 1 << 20);
    }

    #[test]
    fn a_full_map_refuses_new_keys_but_updates_known_ones() {
        let mut m = OffsetMap::new(24 * 100, 1_000_000);
        let cap = m.capacity();
        assert_eq!(cap, 90);
        for i in 0..cap {
            assert!(m.put(format!("k{i}").as_bytes(), i as i64));
        }
        assert!(!m.has_room_for(1));
        assert!(!m.put(b"new", 5));
        assert!(m.put(b"k3", 500));
        assert_eq!(m.get(b"k3"), Some(500));
        assert_eq!(m.get(b"new"), None);
    }
}
