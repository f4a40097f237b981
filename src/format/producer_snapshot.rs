//! Idempotent producer state at an offset: what the broker must remember
//! about each producer to recognise a retried batch (duplicate) and a gap
//! in its sequence numbers.
//!
//! ## Format
//!
//! Local file `<partition dir>/<offset:020>.snapshot`, and the optional
//! `producer_snapshot` field of a tiered segment's manifest (the state at
//! the segment's end, `last_offset + 1`). UTF-8 JSON:
//!
//! ```json
//! {"format_version": 1, "offset": 1200,
//!  "producers": [{"producer_id": 7, "epoch": 0, "last_timestamp": 1700000000000,
//!                 "batches": [{"first_seq": 0, "last_seq": 9,
//!                              "first_offset": 1000, "last_offset": 1009,
//!                              "max_timestamp": 1700000000000}]}]}
//! ```
//!
//! `offset` is the log offset the state covers (every batch below it is
//! included, none at or above it). `batches` holds a producer's last five
//! batches (Kafka's `max.in.flight.requests.per.connection` limit for
//! idempotence), oldest first. `last_timestamp` is when the producer last
//! appended (ms; the broker's clock at append, or the last batch's max
//! timestamp when the state was rebuilt from the log), for
//! `producer.id.expiration.ms`; snapshots written before it existed lack it
//! and the last batch's `max_timestamp` stands in. A producer with an open
//! transaction has `current_txn_first_offset` (its first transactional
//! batch's offset); `aborted_txns` lists the aborted transactions
//! (`{"producer_id", "first_offset", "last_offset", "last_stable_offset"}`,
//! `last_offset` being the ABORT marker's offset) whose markers are at or
//! above the log start offset. Both are absent when empty. A reader rejects an
//! unknown `format_version` and ignores unknown fields inside a producer
//! (so a manifest carrying a newer snapshot still loads); a file that does
//! not parse is ignored and the state is rebuilt from the log.

use serde::{Deserialize, Serialize};

/// The snapshot format this build writes and reads.
pub const PRODUCER_SNAPSHOT_VERSION: u32 = 1;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// What is known about one producer id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last batches, oldest first (at most five).
    pub batches: Vec<ProducerBatch>,
    /// When the producer last appended (ms), for expiry; -1 when unknown
    /// (an older snapshot): the last batch's max timestamp is used then.
    #[serde(default = "unknown_timestamp")]
    pub last_timestamp: i64,
    /// The first offset of the producer's open transaction (Kafka's
    /// `currentTxnFirstOffset`): set by its first transactional batch,
    /// cleared by the COMMIT or ABORT marker that ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_txn_first_offset: Option<i64>,
}

/// One aborted transaction of a partition (Kafka's `AbortedTxn`, the
/// entry of a `.txnindex`): its producer, its first offset, the offset of
/// its ABORT marker, and the last stable offset when it was aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

fn unknown_timestamp() -> i64 {
    -1
}

impl ProducerEntry {
    /// When the producer last appended: `last_timestamp`, or the last
    /// batch's max timestamp for state from an older snapshot.
    pub fn last_activity_ms(&self) -> i64 {
        if self.last_timestamp >= 0 {
            self.last_timestamp
        } else {
            self.batches.last().map(|b| b.max_timestamp).unwrap_or(-1)
        }
    }
}

/// Every producer's state at `offset`.
///
/// Unknown fields are ignored (not refused): this struct is nested in the
/// tiered segment manifest, and a field a newer build adds must not make
/// an older build reject the whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    pub format_version: u32,
    pub offset: i64,
    pub producers: Vec<ProducerEntry>,
    /// Transactions aborted below `offset` whose markers are at or above
    /// the log start offset, oldest first: what read_committed fetches
    /// filter (the partition's aborted-transaction index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aborted_txns: Vec<AbortedTxn>,
}

/// Why snapshot bytes are unusable.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("producer snapshot is not valid JSON for this format: {0}")]
    Json(#[from] serde_json::Error),
    #[error("producer snapshot format version {0} is not supported (this build reads {PRODUCER_SNAPSHOT_VERSION})")]
    Version(u32),
}

impl ProducerSnapshot {
    /// Encode as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decode and check JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let s: ProducerSnapshot = serde_json::from_slice(bytes)?;
        if s.format_version != PRODUCER_SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(s.format_version));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let s = ProducerSnapshot {
            format_version: 1,
            offset: 12,
            producers: vec![ProducerEntry {
                producer_id: 3,
                epoch: 1,
                batches: vec![ProducerBatch {
                    first_seq: 0,
                    last_seq: 4,
                    first_offset: 7,
                    last_offset: 11,
                    max_timestamp: 5,
                }],
                last_timestamp: 9,
                current_txn_first_offset: Some(11),
            }],
            aborted_txns: vec![AbortedTxn {
                producer_id: 3,
                first_offset: 2,
                last_offset: 6,
                last_stable_offset: 2,
            }],
        };
        assert_eq!(ProducerSnapshot::from_json(&s.to_json()).unwrap(), s);
        let mut v2 = s.clone();
        v2.format_version = 2;
        assert!(ProducerSnapshot::from_json(&v2.to_json()).is_err());
        assert!(ProducerSnapshot::from_json(b"").is_err());
    }

    #[test]
    fn reads_snapshots_without_last_timestamp_and_with_unknown_fields() {
        let old = br#"{"format_version": 1, "offset": 12, "future": true,
            "producers": [{"producer_id": 3, "epoch": 1, "future": 1,
              "batches": [{"first_seq": 0, "last_seq": 4, "first_offset": 7,
                           "last_offset": 11, "max_timestamp": 5}]}]}"#;
        let s = ProducerSnapshot::from_json(old).unwrap();
        assert_eq!(s.producers[0].last_timestamp, -1);
        assert_eq!(s.producers[0].last_activity_ms(), 5);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ProducerSnapshot::from_json(&bytes);
        }
    }
}
