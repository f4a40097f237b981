//! Every object key, in one place (docs/design.md §3):
//!
//! ```text
//! <prefix>/<topic>-<topic_id>/<partition>/<base_offset:020>-<segment_uuid>.log
//!                                                            .index
//!                                                            .timeindex
//!                                                            .manifest.json   (written last: the commit point)
//! <prefix>/<topic>-<topic_id>/topic.json
//! ```
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
    Manifest,
}

impl SegmentObject {
    pub const ALL: [SegmentObject; 4] = [Self::Log, Self::Index, Self::TimeIndex, Self::Manifest];

    fn suffix(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Index => "index",
            Self::TimeIndex => "timeindex",
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
    }
}
