//! The aborted-transaction index of one segment (Kafka's `TransactionIndex`
//! and its `AbortedTxn` entries).
//!
//! ## Format
//!
//! `<base_offset:020>.txnindex` beside the segment's `.log` (and, tiered,
//! the `.txnindex` object beside its `.log` object): a flat array of
//! 34-byte big-endian entries, exactly Kafka's:
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..2 | `version: i16` | always 0 |
//! | 2..10 | `producerId: i64` | the producer whose transaction was aborted |
//! | 10..18 | `firstOffset: i64` | the transaction's first offset in the partition |
//! | 18..26 | `lastOffset: i64` | the offset of its ABORT marker |
//! | 26..34 | `lastStableOffset: i64` | the last stable offset once the marker was written |
//!
//! One entry per ABORT marker, in the index of the segment holding the
//! marker, appended in marker order (so `lastOffset` strictly increases).
//! An empty file means "no aborted transaction ends in this segment". A
//! size that is not a multiple of 34, an unknown version, a `lastOffset`
//! not after the previous entry's, or a `firstOffset` after `lastOffset` is
//! an error ([`TxnIndexError`]); the caller names the file or object.

use super::producer_snapshot::AbortedTxn;

/// Size of one entry.
pub const TXN_ENTRY_SIZE: usize = 34;
/// The only entry version (Kafka's `AbortedTxn.CurrentVersion`).
pub const TXN_ENTRY_VERSION: i16 = 0;

/// Why a transaction index's bytes are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnIndexError {
    #[error("size {size} is not a multiple of the {TXN_ENTRY_SIZE}-byte entry")]
    PartialEntry { size: usize },
    #[error("entry {at} has version {version}, only version {TXN_ENTRY_VERSION} is known")]
    Version { at: usize, version: i16 },
    #[error("entry {at} ends at offset {last_offset}, not after the previous entry's {previous}")]
    NotIncreasing {
        at: usize,
        last_offset: i64,
        previous: i64,
    },
    #[error("entry {at} starts at offset {first_offset}, after its marker at {last_offset}")]
    FirstAfterLast {
        at: usize,
        first_offset: i64,
        last_offset: i64,
    },
}

/// Encode one entry as 34 bytes.
pub fn encode_entry(a: &AbortedTxn) -> [u8; TXN_ENTRY_SIZE] {
    let mut out = [0u8; TXN_ENTRY_SIZE];
    out[..2].copy_from_slice(&TXN_ENTRY_VERSION.to_be_bytes());
    out[2..10].copy_from_slice(&a.producer_id.to_be_bytes());
    out[10..18].copy_from_slice(&a.first_offset.to_be_bytes());
    out[18..26].copy_from_slice(&a.last_offset.to_be_bytes());
    out[26..34].copy_from_slice(&a.last_stable_offset.to_be_bytes());
    out
}

/// Encode entries as a whole file.
pub fn encode_txn_index(entries: &[AbortedTxn]) -> Vec<u8> {
    entries.iter().flat_map(encode_entry).collect()
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Decode a whole transaction index, checking every entry.
pub fn decode_txn_index(bytes: &[u8]) -> Result<Vec<AbortedTxn>, TxnIndexError> {
    if !bytes.len().is_multiple_of(TXN_ENTRY_SIZE) {
        return Err(TxnIndexError::PartialEntry { size: bytes.len() });
    }
    let mut out: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / TXN_ENTRY_SIZE);
    for (at, b) in bytes.chunks_exact(TXN_ENTRY_SIZE).enumerate() {
        let version = i16::from_be_bytes([b[0], b[1]]);
        if version != TXN_ENTRY_VERSION {
            return Err(TxnIndexError::Version { at, version });
        }
        let a = AbortedTxn {
            producer_id: i64_at(b, 2),
            first_offset: i64_at(b, 10),
            last_offset: i64_at(b, 18),
            last_stable_offset: i64_at(b, 26),
        };
        if a.first_offset > a.last_offset {
            return Err(TxnIndexError::FirstAfterLast {
                at,
                first_offset: a.first_offset,
                last_offset: a.last_offset,
            });
        }
        if let Some(prev) = out.last() {
            if a.last_offset <= prev.last_offset {
                return Err(TxnIndexError::NotIncreasing {
                    at,
                    last_offset: a.last_offset,
                    previous: prev.last_offset,
                });
            }
        }
        out.push(a);
    }
    Ok(out)
}

/// Kafka's `TransactionIndex.collectAbortedTxns`: the entries of one
/// segment's index overlapping a read of `[fetch_offset, upper_bound)`
/// (`lastOffset >= fetch_offset && firstOffset < upper_bound`), and whether
/// the search may stop at this segment (an entry's `lastStableOffset` is at
/// or past `upper_bound`: no later marker can belong to a transaction that
/// started below it).
pub fn collect_aborted(
    entries: &[AbortedTxn],
    fetch_offset: i64,
    upper_bound: i64,
) -> (Vec<AbortedTxn>, bool) {
    let mut found = Vec::new();
    for a in entries {
        if a.last_offset >= fetch_offset && a.first_offset < upper_bound {
            found.push(*a);
        }
        if a.last_stable_offset >= upper_bound {
            return (found, true);
        }
    }
    (found, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn round_trips_kafkas_layout() {
        let entries = vec![txn(7, 10, 20, 21), txn(-1, 0, 30, 25)];
        let bytes = encode_txn_index(&entries);
        assert_eq!(bytes.len(), 68);
        // Kafka's byte layout: version, producer id, first, last, LSO.
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(&bytes[10..18], &10i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &20i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &21i64.to_be_bytes());
        assert_eq!(decode_txn_index(&bytes).unwrap(), entries);
        assert_eq!(decode_txn_index(&[]).unwrap(), vec![]);
    }

    #[test]
    fn refuses_corrupt_files() {
        let bytes = encode_txn_index(&[txn(1, 0, 5, 6), txn(2, 3, 9, 10)]);
        assert_eq!(
            decode_txn_index(&bytes[..40]),
            Err(TxnIndexError::PartialEntry { size: 40 })
        );
        let mut v = bytes.clone();
        v[1] = 1;
        assert_eq!(
            decode_txn_index(&v),
            Err(TxnIndexError::Version { at: 0, version: 1 })
        );
        let swapped = encode_txn_index(&[txn(2, 3, 9, 10), txn(1, 0, 5, 6)]);
        assert!(matches!(
            decode_txn_index(&swapped),
            Err(TxnIndexError::NotIncreasing { at: 1, .. })
        ));
        let backwards = encode_txn_index(&[txn(2, 9, 3, 10)]);
        assert!(matches!(
            decode_txn_index(&backwards),
            Err(TxnIndexError::FirstAfterLast { at: 0, .. })
        ));
        // The message names what is wrong.
        assert_eq!(
            TxnIndexError::PartialEntry { size: 40 }.to_string(),
            "size 40 is not a multiple of the 34-byte entry"
        );
    }

    #[test]
    fn collects_like_kafka() {
        let entries = [txn(1, 0, 5, 3), txn(2, 4, 9, 10), txn(3, 11, 15, 16)];
        // [6, 12): the first ended before 6; the second overlaps and its
        // LSO (10) is below 12; the third starts below 12 and its LSO 16
        // ends the search.
        assert_eq!(
            collect_aborted(&entries, 6, 12),
            (vec![entries[1], entries[2]], true)
        );
        // [0, 4): only the first starts below 4; its LSO (3) does not end
        // the search, the second's (10) does.
        assert_eq!(collect_aborted(&entries, 0, 4), (vec![entries[0]], true));
        assert_eq!(collect_aborted(&entries, 16, 20), (vec![], false));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_txn_index(&bytes);
        }

        #[test]
        fn encodings_round_trip(raw in proptest::collection::vec((any::<i64>(), 0i64..1000, 0i64..1000, any::<i64>()), 0..10)) {
            let mut last = -1i64;
            let entries: Vec<AbortedTxn> = raw
                .into_iter()
                .map(|(pid, gap, span, lso)| {
                    last += 1 + gap;
                    txn(pid, last - span, last, lso)
                })
                .collect();
            prop_assert_eq!(decode_txn_index(&encode_txn_index(&entries)).unwrap(), entries);
        }
    }
}
