//! The remote segment manifest: the commit point of a tiered segment.
//!
//! ## Format
//!
//! `<base_offset:020>-<segment_uuid>.manifest.json`, UTF-8 JSON, written
//! after the segment's other objects; a segment without its manifest was
//! never committed. Fields (all required):
//!
//! ```json
//! {"format_version": 1, "topic": "orders", "topic_id": "<uuid>", "partition": 0,
//!  "segment_uuid": "<uuid>", "base_offset": 0, "last_offset": 99,
//!  "first_timestamp": 1700000000000, "max_timestamp": 1700000009999,
//!  "objects": {"log": {"size": 1024, "crc32c": 123}, "index": {...}, "timeindex": {...},
//!              "txnindex": {"size": 34, "crc32c": 456}},
//!  "created_ms": 1700000010000,
//!  "log_blocks": {"block_bytes": 1048576, "crc32c": [123, 456]}}
//! ```
//!
//! `crc32c` is the CRC32C (Castagnoli) of the whole object. `log_blocks`
//! (optional; absent in manifests written before it existed) holds the
//! CRC32C of every `block_bytes`-sized block of the `.log` object, the last
//! one possibly shorter, so a ranged read of whole blocks is checked against
//! the manifest without reading the whole object. A reader rejects an
//! unknown `format_version`.
//!
//! `objects.txnindex` (optional) is the segment's aborted-transaction index
//! ([`crate::format::txn_index`]), uploaded for every segment this build
//! tiers (empty when no transaction was aborted in it). Manifests written
//! before it existed lack it: a reader then takes the aborted transactions
//! whose markers are in the segment from `producer_snapshot.aborted_txns`.
//!
//! Optional: `"producer_snapshot"`, the idempotent producer state at the
//! segment's end (`last_offset + 1`) in the format of
//! [`crate::format::producer_snapshot`]; absent in manifests written before
//! it existed or when the segment had no snapshot.

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Size and checksum of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub size: u64,
    pub crc32c: u32,
}

/// The objects of a tiered segment (besides its manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentObjects {
    pub log: ObjectInfo,
    pub index: ObjectInfo,
    pub timeindex: ObjectInfo,
    /// The `.txnindex` object; `None` in manifests written before it
    /// existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txnindex: Option<ObjectInfo>,
}

/// CRC32C of each fixed-size block of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockChecksums {
    /// Block size; every block but the last is this long.
    pub block_bytes: u32,
    pub crc32c: Vec<u32>,
}

impl BlockChecksums {
    /// Checksums of `data` in blocks of `block_bytes`.
    pub fn of(data: &[u8], block_bytes: u32) -> Self {
        let mut b = BlockChecksumBuilder::new(block_bytes);
        b.update(data);
        b.finish()
    }

    /// Whether these checksums can describe an object of `size` bytes.
    pub fn fits(&self, size: u64) -> bool {
        self.block_bytes > 0
            && (self.crc32c.len() as u64) == size.div_ceil(u64::from(self.block_bytes))
    }

    /// Bytes held in memory.
    pub fn weight(&self) -> usize {
        self.crc32c.len() * 4 + 16
    }

    /// Little-endian u32s, for storage.
    pub fn crcs_to_bytes(&self) -> Vec<u8> {
        self.crc32c.iter().flat_map(|c| c.to_le_bytes()).collect()
    }

    /// The inverse of [`BlockChecksums::crcs_to_bytes`].
    pub fn from_parts(block_bytes: u32, bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(4) || block_bytes == 0 {
            return None;
        }
        let crc32c = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Some(BlockChecksums {
            block_bytes,
            crc32c,
        })
    }
}

/// Computes [`BlockChecksums`] over data fed in arbitrary slices.
#[derive(Debug)]
pub struct BlockChecksumBuilder {
    block_bytes: u32,
    filled: u32,
    current: u32,
    done: Vec<u32>,
}

impl BlockChecksumBuilder {
    pub fn new(block_bytes: u32) -> Self {
        BlockChecksumBuilder {
            block_bytes: block_bytes.max(1),
            filled: 0,
            current: 0,
            done: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((self.block_bytes - self.filled) as usize).min(data.len());
            self.current = crc32c::crc32c_append(self.current, &data[..take]);
            self.filled += take as u32;
            data = &data[take..];
            if self.filled == self.block_bytes {
                self.done.push(self.current);
                self.current = 0;
                self.filled = 0;
            }
        }
    }

    pub fn finish(mut self) -> BlockChecksums {
        if self.filled > 0 {
            self.done.push(self.current);
        }
        BlockChecksums {
            block_bytes: self.block_bytes,
            crc32c: self.done,
        }
    }
}

/// Everything a fresh node needs to know about a tiered segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentManifest {
    pub format_version: u32,
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub partition: u32,
    pub segment_uuid: uuid::Uuid,
    pub base_offset: i64,
    /// Inclusive.
    pub last_offset: i64,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub objects: SegmentObjects,
    pub created_ms: i64,
    /// Block checksums of the `.log` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_blocks: Option<BlockChecksums>,
    /// Idempotent producer state at `last_offset + 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_snapshot: Option<super::producer_snapshot::ProducerSnapshot>,
    /// Set on a segment the log cleaner wrote: it replaces the listed
    /// segments, whose offsets it covers (`base_offset..=last_offset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction: Option<Compaction>,
}

/// What a compacted segment replaces (manifest `compaction`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compaction {
    /// The segments (uuids) whose offsets this one now holds, cleaned.
    pub replaces: Vec<uuid::Uuid>,
    /// When the cleaner wrote it (ms).
    pub cleaned_ms: i64,
}

/// Why manifest bytes are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for this format: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest format version {0} is not supported (this build reads {MANIFEST_VERSION})")]
    Version(u32),
    #[error("manifest offsets are inconsistent: base {base}, last {last}")]
    Offsets { base: i64, last: i64 },
}

impl SegmentManifest {
    /// Encode as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decode and check JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: SegmentManifest = serde_json::from_slice(bytes)?;
        if m.format_version != MANIFEST_VERSION {
            return Err(ManifestError::Version(m.format_version));
        }
        if m.last_offset < m.base_offset || m.base_offset < 0 {
            return Err(ManifestError::Offsets {
                base: m.base_offset,
                last: m.last_offset,
            });
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SegmentManifest {
        let o = ObjectInfo {
            size: 10,
            crc32c: 7,
        };
        SegmentManifest {
            format_version: 1,
            topic: "t".into(),
            topic_id: uuid::Uuid::nil(),
            partition: 3,
            segment_uuid: uuid::Uuid::nil(),
            base_offset: 100,
            last_offset: 199,
            first_timestamp: 1,
            max_timestamp: 2,
            objects: SegmentObjects {
                log: o,
                index: o,
                timeindex: o,
                txnindex: Some(o),
            },
            created_ms: 5,
            log_blocks: Some(BlockChecksums::of(b"0123456789", 4)),
            producer_snapshot: None,
            compaction: None,
        }
    }

    #[test]
    fn block_checksums_do_not_depend_on_how_data_is_fed() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let whole = BlockChecksums::of(&data, 64);
        assert_eq!(whole.crc32c.len(), 16);
        assert!(whole.fits(1000) && !whole.fits(1025));
        assert_eq!(whole.crc32c[3], crc32c::crc32c(&data[192..256]));
        assert_eq!(whole.crc32c[15], crc32c::crc32c(&data[960..]));
        let mut b = BlockChecksumBuilder::new(64);
        for piece in data.chunks(37) {
            b.update(piece);
        }
        assert_eq!(b.finish(), whole);
        let stored = whole.crcs_to_bytes();
        assert_eq!(BlockChecksums::from_parts(64, &stored), Some(whole));
        assert_eq!(BlockChecksums::from_parts(64, &stored[1..]), None);
    }

    #[test]
    fn round_trips_and_rejects_bad_input() {
        let m = sample();
        assert_eq!(SegmentManifest::from_json(&m.to_json()).unwrap(), m);
        let mut v2 = m.clone();
        v2.format_version = 2;
        assert!(matches!(
            SegmentManifest::from_json(&v2.to_json()),
            Err(ManifestError::Version(2))
        ));
        let mut bad = m.clone();
        bad.last_offset = 5;
        assert!(SegmentManifest::from_json(&bad.to_json()).is_err());
        assert!(SegmentManifest::from_json(b"{\"format_version\":1}").is_err());
    }

    #[test]
    fn manifests_without_a_txnindex_still_read() {
        let mut m = sample();
        m.objects.txnindex = None;
        let json = String::from_utf8(m.to_json()).unwrap();
        assert!(!json.contains("txnindex"), "{json}");
        assert_eq!(SegmentManifest::from_json(json.as_bytes()).unwrap(), m);
        let with = String::from_utf8(sample().to_json()).unwrap();
        assert!(with.contains("\"txnindex\""), "{with}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SegmentManifest::from_json(&bytes);
        }
    }
}

/// A topic's description in the bucket: `<topic>-<topic_id>/topic.json`.
///
/// ## Format
///
/// ```json
/// {"format_version": 1, "topic": "orders", "topic_id": "<uuid>", "partitions": 3,
///  "configs": {"remote.storage.enable": "true", "retention.ms": "31536000000"}}
/// ```
///
/// `configs` holds the topic's overrides (Kafka names); it is rewritten when
/// they change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicManifest {
    pub format_version: u32,
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub partitions: u32,
    pub configs: std::collections::BTreeMap<String, String>,
}

impl TopicManifest {
    /// Encode as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decode and check JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: TopicManifest = serde_json::from_slice(bytes)?;
        if m.format_version != MANIFEST_VERSION {
            return Err(ManifestError::Version(m.format_version));
        }
        Ok(m)
    }
}
