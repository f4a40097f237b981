//! `tierlog restore`: rebuild a data directory's catalog from the bucket.
//!
//! Owns: reading every `topic.json` and segment manifest under the remote
//! tier's prefix, choosing each partition's segments, and writing the new
//! catalog (one transaction) and empty local logs that start where the
//! bucket ends. The bucket is self-describing (docs/design.md §3): a fresh node
//! reads everything tiered back, and producers continue at the next offset.
//! Must never modify or delete an object: what it does not use stays for
//! the reaper of the restored broker to judge.
//!
//! Rules, per partition, over the manifests found:
//! - a manifest that does not parse, names an unknown topic id (no
//!   `topic.json`: a deleted topic), or whose `.log`, `.index` or
//!   `.timeindex` is missing or of another size than it records, is skipped;
//! - a segment a cleaned segment's manifest lists as replaced
//!   (`compaction.replaces`; the reaper had not deleted it yet) is skipped;
//! - of manifests with the same base offset (a copy retried after a crash
//!   left two) the newest is used;
//! - the segments used are the contiguous run that ends at the highest
//!   offset: a segment overlapping the one before it is skipped, and a gap
//!   starts the run again (offsets before a gap could not be read in order);
//! - the local log starts, empty, at the last segment's `last_offset + 1`,
//!   with the idempotent producer state its manifest carries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::catalog::{RemoteSegment, RemoteState, TopicRecord};
use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::{SegmentManifest, TopicManifest};
use crate::remote::keys::{segment_key, SegmentObject};
use crate::remote::RemoteStore;

/// What a restore found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// Topics restored, by name.
    pub topics: Vec<String>,
    /// Per partition (`topic-partition`): first and next offset restored.
    pub partitions: BTreeMap<String, (i64, i64)>,
    /// Segments registered as COPY_FINISHED.
    pub segments: usize,
    /// Manifests not used, each with why.
    pub skipped: Vec<String>,
    /// Directories that were where a restored partition goes, kept under
    /// these names (never deleted: they may hold records never tiered).
    pub set_aside: Vec<std::path::PathBuf>,
}

/// Where one partition's restored local log starts.
#[derive(Debug, Clone)]
pub struct PartitionStart {
    pub topic: TopicRecord,
    pub partition: u32,
    /// The offset after the last restored segment (0 with none).
    pub next_offset: i64,
    /// The idempotent producer state at `next_offset` (the last manifest's
    /// snapshot, as JSON), if any.
    pub producer_snapshot: Option<Vec<u8>>,
}

/// What the bucket holds, ready to be written to a new catalog and data
/// directory (`tierlog restore`, in `engine/restore.rs`).
#[derive(Debug, Default)]
pub struct RestorePlan {
    pub topics: Vec<TopicRecord>,
    /// Every segment to register as `COPY_FINISHED`.
    pub segments: Vec<RemoteSegment>,
    pub starts: Vec<PartitionStart>,
    /// Above every producer id any manifest's producer state names: the
    /// restored producer-id counter starts here, so InitProducerId never
    /// hands out an id whose old sequence state the restored logs carry.
    pub next_producer_id: i64,
    pub report: RestoreReport,
}

/// Read every `topic.json` and manifest in `store` and choose each
/// partition's segments. Reads only: nothing local or remote changes.
pub async fn plan(store: &RemoteStore, now_ms: i64) -> Result<RestorePlan> {
    let mut next_producer_id = 0i64;
    let mut report = RestoreReport::default();
    let objects: Vec<object_store::ObjectMeta> = store
        .store
        .list(None)
        .try_collect()
        .await
        .map_err(|e| unavailable("list the bucket", e))?;
    let sizes: HashMap<&object_store::path::Path, u64> =
        objects.iter().map(|o| (&o.location, o.size)).collect();

    let mut topics: HashMap<uuid::Uuid, TopicManifest> = HashMap::new();
    let mut manifests: Vec<SegmentManifest> = Vec::new();
    for o in &objects {
        let name = o.location.filename().unwrap_or_default();
        let is_topic = name == "topic.json";
        if !is_topic && !name.ends_with(".manifest.json") {
            continue;
        }
        let bytes = store
            .store
            .get(&o.location)
            .await
            .map_err(|e| unavailable(&format!("read {}", o.location), e))?
            .bytes()
            .await
            .map_err(|e| unavailable(&format!("read {}", o.location), e))?;
        // A body cut short in transit is not a bad manifest: skipping it
        // would leave a gap and restore only what follows. Fail the restore
        // (it is retried, and changes nothing until it succeeds).
        if bytes.len() as u64 != o.size {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot read {}: got {} of its {} bytes",
                    o.location,
                    bytes.len(),
                    o.size
                ),
            ));
        }
        if is_topic {
            match TopicManifest::from_json(&bytes) {
                Ok(t) => {
                    topics.insert(t.topic_id, t);
                }
                Err(e) => report.skipped.push(format!("{}: {e}", o.location)),
            }
        } else {
            match SegmentManifest::from_json(&bytes) {
                Ok(m) => {
                    if let Some(s) = &m.producer_snapshot {
                        for p in &s.producers {
                            next_producer_id =
                                next_producer_id.max(p.producer_id.saturating_add(1));
                        }
                    }
                    manifests.push(m)
                }
                Err(e) => report.skipped.push(format!("{}: {e}", o.location)),
            }
        }
    }

    // Manifests by partition, checked against the objects they name.
    let mut by_partition: HashMap<(uuid::Uuid, u32), Vec<SegmentManifest>> = HashMap::new();
    for m in manifests {
        let name = object_key(&m, SegmentObject::Manifest);
        let Some(topic) = topics.get(&m.topic_id) else {
            report
                .skipped
                .push(format!("{name}: no topic.json for topic id {}", m.topic_id));
            continue;
        };
        if topic.topic != m.topic || m.partition >= topic.partitions {
            report.skipped.push(format!(
                "{name}: partition {} of '{}' is not in topic.json ('{}', {} partitions)",
                m.partition, m.topic, topic.topic, topic.partitions
            ));
            continue;
        }
        let expected = [
            (SegmentObject::Log, m.objects.log.size),
            (SegmentObject::Index, m.objects.index.size),
            (SegmentObject::TimeIndex, m.objects.timeindex.size),
        ];
        let bad = expected.iter().find_map(|&(o, size)| {
            let k = object_key(&m, o);
            match sizes.get(&k) {
                None => Some(format!("{k} is missing")),
                Some(&s) if s != size => {
                    Some(format!("{k} has {s} bytes, the manifest says {size}"))
                }
                Some(_) => None,
            }
        });
        if let Some(why) = bad {
            report.skipped.push(format!("{name}: {why}"));
            continue;
        }
        by_partition
            .entry((m.topic_id, m.partition))
            .or_default()
            .push(m);
    }

    let mut records: Vec<TopicRecord> = topics
        .values()
        .map(|t| TopicRecord {
            name: t.topic.clone(),
            id: t.topic_id,
            partitions: t.partitions,
            configs: t.configs.clone(),
            created_ms: now_ms,
        })
        .collect();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = Vec::new();
    let mut starts: Vec<(TopicRecord, u32, i64, Option<SegmentManifest>)> = Vec::new();
    for t in &records {
        for p in 0..t.partitions {
            let chain = choose(
                by_partition.remove(&(t.id, p)).unwrap_or_default(),
                &mut report.skipped,
            );
            let first = chain.first().map_or(0, |m| m.base_offset);
            let next = chain.last().map_or(0, |m| m.last_offset + 1);
            report
                .partitions
                .insert(format!("{}-{p}", t.name), (first, next));
            for m in &chain {
                rows.push(row(m, now_ms));
            }
            starts.push((t.clone(), p, next, chain.last().cloned()));
        }
    }
    report.segments = rows.len();
    report.topics = records.iter().map(|t| t.name.clone()).collect();

    Ok(RestorePlan {
        topics: records,
        segments: rows,
        starts: starts
            .into_iter()
            .map(|(topic, partition, next_offset, last)| PartitionStart {
                topic,
                partition,
                next_offset,
                producer_snapshot: last.and_then(|m| m.producer_snapshot).map(|s| s.to_json()),
            })
            .collect(),
        next_producer_id,
        report,
    })
}

/// The contiguous run of segments ending at the highest offset.
fn choose(mut found: Vec<SegmentManifest>, skipped: &mut Vec<String>) -> Vec<SegmentManifest> {
    // Segments a cleaned one replaced (the reaper had not deleted them
    // yet) hold older versions of the same offsets: never use them.
    let replaced: std::collections::HashSet<uuid::Uuid> = found
        .iter()
        .filter_map(|m| m.compaction.as_ref())
        .flat_map(|c| c.replaces.iter().copied())
        .collect();
    found.retain(|m| {
        let keep = !replaced.contains(&m.segment_uuid);
        if !keep {
            skipped.push(format!(
                "{}: replaced by a cleaned segment",
                object_key(m, SegmentObject::Manifest)
            ));
        }
        keep
    });
    // By base offset, the newest copy first among equal bases.
    found.sort_by(|a, b| {
        a.base_offset
            .cmp(&b.base_offset)
            .then(b.created_ms.cmp(&a.created_ms))
    });
    let name = |m: &SegmentManifest| object_key(m, SegmentObject::Manifest);
    let mut chain: Vec<SegmentManifest> = Vec::new();
    for m in found {
        match chain.last() {
            Some(prev) if m.base_offset <= prev.last_offset => {
                skipped.push(format!(
                    "{}: offsets {}..={} overlap {}",
                    name(&m),
                    m.base_offset,
                    m.last_offset,
                    name(prev)
                ));
            }
            Some(prev) if m.base_offset > prev.last_offset + 1 => {
                let gap = (prev.last_offset + 1, m.base_offset);
                for dropped in chain.drain(..) {
                    skipped.push(format!(
                        "{}: before missing offsets {}..{}",
                        name(&dropped),
                        gap.0,
                        gap.1
                    ));
                }
                chain.push(m);
            }
            _ => chain.push(m),
        }
    }
    chain
}

/// The key of object `o` of the segment `m` describes.
fn object_key(m: &SegmentManifest, o: SegmentObject) -> object_store::path::Path {
    segment_key(
        &m.topic,
        &m.topic_id,
        m.partition,
        m.base_offset,
        &m.segment_uuid,
        o,
    )
}

fn row(m: &SegmentManifest, now_ms: i64) -> RemoteSegment {
    RemoteSegment {
        segment_uuid: m.segment_uuid,
        topic: m.topic.clone(),
        topic_id: m.topic_id,
        partition: m.partition,
        base_offset: m.base_offset,
        last_offset: m.last_offset,
        first_timestamp: m.first_timestamp,
        max_timestamp: m.max_timestamp,
        log_size: m.objects.log.size,
        index_size: m.objects.index.size,
        timeindex_size: m.objects.timeindex.size,
        log_crc32c: m.objects.log.crc32c,
        state: RemoteState::CopyFinished,
        updated_ms: now_ms,
        index_crc32c: Some(m.objects.index.crc32c),
        timeindex_crc32c: Some(m.objects.timeindex.crc32c),
        log_blocks: m.log_blocks.clone().map(Arc::new),
    }
}

fn unavailable(what: &str, e: object_store::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("cannot {what}: {e}")).with_source(e)
}
