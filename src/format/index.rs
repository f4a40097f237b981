//! Index entry encodings, shared by the offset and time indexes.
//!
//! ## Format
//!
//! Both index files are flat arrays of fixed-size big-endian entries, as in
//! Kafka:
//!
//! - `.index` (offset index), 8 bytes per entry: `relativeOffset: u32`
//!   (offset − segment base offset) then `position: u32` (byte position of
//!   the batch in the `.log` file). Relative offsets strictly increase.
//! - `.timeindex` (time index), 12 bytes per entry: `timestamp: i64` then
//!   `relativeOffset: u32`. Timestamps strictly increase; the entry says the
//!   largest timestamp seen up to and including that offset.

/// Size of one offset index entry.
pub const OFFSET_ENTRY_SIZE: usize = 8;
/// Size of one time index entry.
pub const TIME_ENTRY_SIZE: usize = 12;

/// One offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl OffsetEntry {
    /// Encode as 8 bytes.
    pub fn encode(self) -> [u8; OFFSET_ENTRY_SIZE] {
        let mut out = [0u8; OFFSET_ENTRY_SIZE];
        out[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..].copy_from_slice(&self.position.to_be_bytes());
        out
    }

    /// Decode from exactly 8 bytes.
    pub fn decode(b: &[u8; OFFSET_ENTRY_SIZE]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl TimeEntry {
    /// Encode as 12 bytes.
    pub fn encode(self) -> [u8; TIME_ENTRY_SIZE] {
        let mut out = [0u8; TIME_ENTRY_SIZE];
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..].copy_from_slice(&self.relative_offset.to_be_bytes());
        out
    }

    /// Decode from exactly 12 bytes.
    pub fn decode(b: &[u8; TIME_ENTRY_SIZE]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// Why an index file's bytes are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("size {size} is not a multiple of the {entry}-byte entry")]
    PartialEntry { size: usize, entry: usize },
    #[error("entry {at} is not after the previous one")]
    NotIncreasing { at: usize },
}

/// Decode a whole offset index file, checking sizes and monotonicity.
pub fn decode_offset_index(bytes: &[u8]) -> Result<Vec<OffsetEntry>, IndexError> {
    if !bytes.len().is_multiple_of(OFFSET_ENTRY_SIZE) {
        return Err(IndexError::PartialEntry {
            size: bytes.len(),
            entry: OFFSET_ENTRY_SIZE,
        });
    }
    let mut out: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_SIZE);
    for (i, chunk) in bytes.chunks_exact(OFFSET_ENTRY_SIZE).enumerate() {
        let mut a = [0u8; OFFSET_ENTRY_SIZE];
        a.copy_from_slice(chunk);
        let e = OffsetEntry::decode(&a);
        if let Some(prev) = out.last() {
            if e.relative_offset <= prev.relative_offset || e.position <= prev.position {
                return Err(IndexError::NotIncreasing { at: i });
            }
        }
        out.push(e);
    }
    Ok(out)
}

/// Decode a whole time index file, checking sizes and monotonicity.
pub fn decode_time_index(bytes: &[u8]) -> Result<Vec<TimeEntry>, IndexError> {
    if !bytes.len().is_multiple_of(TIME_ENTRY_SIZE) {
        return Err(IndexError::PartialEntry {
            size: bytes.len(),
            entry: TIME_ENTRY_SIZE,
        });
    }
    let mut out: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_SIZE);
    for (i, chunk) in bytes.chunks_exact(TIME_ENTRY_SIZE).enumerate() {
        let mut a = [0u8; TIME_ENTRY_SIZE];
        a.copy_from_slice(chunk);
        let e = TimeEntry::decode(&a);
        if let Some(prev) = out.last() {
            if e.timestamp <= prev.timestamp || e.relative_offset < prev.relative_offset {
                return Err(IndexError::NotIncreasing { at: i });
            }
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entries_round_trip() {
        let e = OffsetEntry {
            relative_offset: 7,
            position: 4096,
        };
        assert_eq!(OffsetEntry::decode(&e.encode()), e);
        let t = TimeEntry {
            timestamp: -5,
            relative_offset: 9,
        };
        assert_eq!(TimeEntry::decode(&t.encode()), t);
    }

    #[test]
    fn bad_index_files_are_errors() {
        assert!(decode_offset_index(&[0; 7]).is_err());
        let mut two = OffsetEntry {
            relative_offset: 5,
            position: 10,
        }
        .encode()
        .to_vec();
        two.extend_from_slice(
            &OffsetEntry {
                relative_offset: 4,
                position: 20,
            }
            .encode(),
        );
        assert_eq!(
            decode_offset_index(&two),
            Err(IndexError::NotIncreasing { at: 1 })
        );
        assert!(decode_time_index(&[0; 13]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_index_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_offset_index(&bytes);
            let _ = decode_time_index(&bytes);
        }
    }
}
