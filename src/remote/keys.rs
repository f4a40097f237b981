//! Every object key, in one place (docs/design.md §3):
//!
//! ```text
//! <prefix>/<topic>-<topic_id>/<partition>/<base_offset:020>-<segment_uuid>.log
//!                                                            .index
//!                                                            .timeindex
//!                                                            .txnindex        (aborted transactions; absent in segments tiered before it)
//!                                                            .manifest.json   (written last: the commit point)
//! <prefix>/<topic>-<topic_id>/topic.json
//! <prefix>/_catalog/<taken_ms:020>.snapshot.json                       (catalog snapshots)
//! ```
//!
//! `_catalog` cannot be a topic's directory (those end in `-<uuid>`), so
//! the reaper and `tier check`, which judge only topics' directories,
//! never touch a snapshot.
//!
//! The prefix is applied by the store ([`super::RemoteStore`]); keys here
//! are relative to it.

use object_store::path::Path;

/// The objects of one tiered segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentObject {
    Log,
    Index,
    TimeIndex,
    /// The aborted-transaction index (`format/txn_index.rs`).
    TxnIndex,
    Manifest,
}

impl SegmentObject {
    pub const ALL: [SegmentObject; 5] = [
        Self::Log,
        Self::Index,
        Self::TimeIndex,
        Self::TxnIndex,
        Self::Manifest,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Index => "index",
            Self::TimeIndex => "timeindex",
            Self::TxnIndex => "txnindex",
            Self::Manifest => "manifest.json",
        }
    }
}

/// `<topic>-<topic_id>`.
pub fn topic_dir(topic: &str, topic_id: &uuid::Uuid) -> String {
    format!("{topic}-{}", topic_id.as_hyphenated())
}

/// `<topic>-<topic_id>/<partition>/`.
pub fn partition_prefix(topic: &str, topic_id: &uuid::Uuid, partition: u32) -> Path {
    Path::from(format!("{}/{partition}", topic_dir(topic, topic_id)))
}

/// The key of one object of a segment.
pub fn segment_key(
    topic: &str,
    topic_id: &uuid::Uuid,
    partition: u32,
    base_offset: i64,
    segment_uuid: &uuid::Uuid,
    object: SegmentObject,
) -> Path {
    Path::from(format!(
        "{}/{partition}/{base_offset:020}-{}.{}",
        topic_dir(topic, topic_id),
        segment_uuid.as_hyphenated(),
        object.suffix()
    ))
}

/// `<topic>-<topic_id>/topic.json`.
pub fn topic_config_key(topic: &str, topic_id: &uuid::Uuid) -> Path {
    Path::from(format!("{}/topic.json", topic_dir(topic, topic_id)))
}

/// The directory of catalog snapshots.
pub const CATALOG_SNAPSHOT_DIR: &str = "_catalog";

/// `_catalog/<taken_ms:020>.snapshot.json`: the names sort by the time
/// taken.
pub fn catalog_snapshot_key(taken_ms: i64) -> Path {
    Path::from(format!(
        "{CATALOG_SNAPSHOT_DIR}/{:020}.snapshot.json",
        taken_ms.max(0)
    ))
}

/// The time a catalog snapshot key names, if it is one.
pub fn catalog_snapshot_taken_ms(key: &Path) -> Option<i64> {
    let rest = key.as_ref().strip_prefix(CATALOG_SNAPSHOT_DIR)?;
    let digits = rest.strip_prefix('/')?.strip_suffix(".snapshot.json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment uuid named by a segment object key, if it is one.
pub fn segment_uuid_of(key: &Path) -> Option<uuid::Uuid> {
    let name = key.filename()?;
    let (_, rest) = name.split_once('-')?;
    let uuid = rest.get(..36)?;
    let suffix = rest.get(37..)?;
    if !SegmentObject::ALL.iter().any(|o| o.suffix() == suffix) {
        return None;
    }
    uuid::Uuid::parse_str(uuid).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let tid = uuid::Uuid::new_v4();
        let sid = uuid::Uuid::new_v4();
        for o in SegmentObject::ALL {
            let k = segment_key("orders.v1", &tid, 7, 42, &sid, o);
            assert!(
                k.as_ref()
                    .starts_with(&format!("orders.v1-{tid}/7/00000000000000000042-{sid}.")),
                "{k}"
            );
            assert_eq!(segment_uuid_of(&k), Some(sid));
        }
        assert_eq!(segment_uuid_of(&topic_config_key("t", &tid)), None);
        assert_eq!(segment_uuid_of(&Path::from("t/0/garbage.log")), None);
        let k = catalog_snapshot_key(1_700_000_000_123);
        assert_eq!(k.as_ref(), "_catalog/00000001700000000123.snapshot.json");
        assert_eq!(catalog_snapshot_taken_ms(&k), Some(1_700_000_000_123));
        assert_eq!(segment_uuid_of(&k), None);
        for other in [
            "_catalog/1.snapshot.json",
            "_catalog/x.json",
            "t/topic.json",
        ] {
            assert_eq!(catalog_snapshot_taken_ms(&Path::from(other)), None);
        }
    }
}
