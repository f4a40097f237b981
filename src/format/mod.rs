//! Sans-io formats: Kafka RecordBatch v2 headers, offset assignment, index
//! entries, record encoding for the CLI and tests.
//!
//! Owns: the byte layout of everything tierlog stores. Must never do I/O,
//! read the clock, or allocate per record on the append path.
//!
//! Layers, lowest first (each file imports only from those before it):
//! `error` ← `compression` ← `batch` (the header) ← `records` ←
//! `validator` (Kafka's `LogValidator`) and `compact` (the cleaner's batch
//! rewrite); `index`, `manifest`, `producer_snapshot` (with `txn_index`,
//! the per-segment aborted-transaction index of its `AbortedTxn` entries)
//! and `catalog_snapshot` stand apart.

pub mod batch;
pub mod catalog_snapshot;
pub mod compact;
pub mod compression;
pub mod error;
pub mod index;
pub mod manifest;
pub mod producer_snapshot;
pub mod records;
pub mod txn_index;
pub mod validator;

pub use batch::{BatchHeader, Batches, Compression, FormatError, TimestampType};
pub use records::{decode_records, BatchBuilder, Record};

/// Hostile input: every decoder of outside bytes (files, objects) returns
/// an error, never panics, on arbitrary bytes and on valid encodings cut
/// short or with a byte changed.
#[cfg(test)]
mod hostile_tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) {
        let _ = manifest::SegmentManifest::from_json(bytes);
        let _ = manifest::TopicManifest::from_json(bytes);
        let _ = producer_snapshot::ProducerSnapshot::from_json(bytes);
        let _ = catalog_snapshot::CatalogSnapshot::from_json(bytes);
        let _ = index::decode_offset_index(bytes);
        let _ = index::decode_time_index(bytes);
        let _ = txn_index::decode_txn_index(bytes);
        let _ = decode_records(bytes);
        for item in Batches::new(bytes) {
            let _ = item;
        }
    }

    fn valid_encodings() -> Vec<Vec<u8>> {
        let mut b = BatchBuilder::new();
        for i in 0..3 {
            b.push(Record::new(
                Some(vec![i; 3]),
                Some(vec![i; 40]),
                1_000 + i64::from(i),
            ));
        }
        let snapshot = br#"{"format_version": 1, "offset": 1200,
            "producers": [{"producer_id": 7, "epoch": 0, "last_timestamp": 1700000000000,
            "batches": [{"first_seq": 0, "last_seq": 9, "first_offset": 1000,
            "last_offset": 1009, "max_timestamp": 1700000000000}]}]}"#;
        let manifest = br#"{"format_version": 1, "topic": "orders",
            "topic_id": "0b3c7f9e-5a43-4c1a-9a43-2f6de1d6c8a1", "partition": 0,
            "segment_uuid": "1b3c7f9e-5a43-4c1a-9a43-2f6de1d6c8a1", "base_offset": 0,
            "last_offset": 99, "first_timestamp": 1, "max_timestamp": 2,
            "objects": {"log": {"size": 1, "crc32c": 1}, "index": {"size": 8, "crc32c": 2},
            "timeindex": {"size": 12, "crc32c": 3}}, "created_ms": 5,
            "log_blocks": {"block_bytes": 1048576, "crc32c": [1]}}"#;
        vec![
            b.build().expect("a batch"),
            snapshot.to_vec(),
            manifest.to_vec(),
            index::OffsetEntry {
                relative_offset: 1,
                position: 2,
            }
            .encode()
            .to_vec(),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            decode_all(&bytes);
        }

        #[test]
        fn damaged_valid_encodings_never_panic_a_decoder(which in 0usize..4, at in 0usize..2048, byte in any::<u8>(), cut in any::<bool>()) {
            let mut bytes = valid_encodings().swap_remove(which);
            let at = at % bytes.len();
            if cut {
                bytes.truncate(at);
            } else {
                bytes[at] = byte;
            }
            decode_all(&bytes);
        }
    }

    #[test]
    fn the_valid_encodings_decode() {
        let v = valid_encodings();
        assert_eq!(decode_records(&v[0]).unwrap().len(), 3);
        assert!(producer_snapshot::ProducerSnapshot::from_json(&v[1]).is_ok());
        assert!(manifest::SegmentManifest::from_json(&v[2]).is_ok());
        assert_eq!(index::decode_offset_index(&v[3]).unwrap().len(), 1);
    }
}
