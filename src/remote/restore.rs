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
//! - a manifest that does not parse, names an unknown topic id (neither a
//!   `topic.json` nor the catalog snapshot has it: a deleted topic), or
//!   whose `.log`, `.index`, `.timeindex` or (when it lists one)
//!   `.txnindex` is missing or of another size than it records, is
//!   skipped;
//! - a segment a cleaned segment's manifest lists as replaced
//!   (`compaction.replaces`; the reaper had not deleted it yet) is skipped;
//! - of manifests with the same base offset (a copy retried after a crash
//!   left two) the newest is used;
//! - the segments used are the contiguous run that ends at the highest
//!   offset: a segment overlapping the one before it is skipped, and a gap
//!   starts the run again (offsets before a gap could not be read in order);
//! - the local log starts, empty, at the last segment's `last_offset + 1`,
//!   with the idempotent producer state its manifest carries.
//!
//! With a catalog snapshot (`_catalog/`, written by the broker; the newest
//! that reads back valid is used, each newer damaged one skipped with its
//! reason):
//! - its topics are restored too, those without remote storage included,
//!   with its config overrides (a topic in both keeps the snapshot's
//!   configs and the larger partition count; one only in the bucket, made
//!   after the snapshot, comes from its `topic.json`; a snapshot topic whose
//!   name a `topic.json` gives to another id, deleted and created again
//!   after the snapshot, is skipped with why);
//! - a partition with no segment in the bucket starts at the log end
//!   offset the snapshot saw (its records are lost, but no offset a
//!   consumer saw is handed out again); one whose segments end below it
//!   starts where they end, and the offsets never tiered are reported;
//! - its committed offsets and stored groups are restored as they were,
//!   and its cluster id becomes the data directory's (so the restored
//!   broker goes on writing snapshots over its own);
//! - the producer-id counter starts above both its counter and every id
//!   a manifest's producer state names.
//!
//! `--verify` ([`verify`]) reads every object of the chosen segments back
//! and compares its CRC32C with the manifest's; any mismatch fails the
//! restore before anything is written (an operator asking for a check
//! expects no silently partial restore).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::catalog::{
    snapshot, CommittedOffset, RemoteSegment, RemoteState, StoredGroup, TopicRecord,
};
use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::{SegmentManifest, TopicManifest};
use crate::remote::catalog_snapshot;
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
    /// Bytes of those segments in the bucket (`.log`, `.index`, `.timeindex`).
    pub bytes: u64,
    /// The catalog snapshot used (its key), `None` when the bucket had no
    /// valid one (segments only: no committed offsets, groups, or topics
    /// without remote storage).
    pub snapshot: Option<String>,
    /// The cluster id the restored data directory takes (the snapshot's;
    /// `None` without one: the broker makes a new one).
    pub cluster_id: Option<String>,
    /// Committed offsets restored (all groups).
    pub committed_offsets: usize,
    /// Groups restored: every group with a committed offset or stored
    /// metadata.
    pub groups: usize,
    /// SCRAM credentials restored (a user with both mechanisms counts
    /// twice).
    pub users: usize,
    /// ACL bindings restored.
    pub acls: usize,
    /// Client quotas restored (one per entity and key).
    pub client_quotas: usize,
    /// Objects read back and checked against their manifest's CRC32C
    /// (`--verify`).
    pub verified_objects: usize,
    /// What was not restored (a manifest, a catalog snapshot, offsets
    /// never tiered), each with why.
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
    /// The log start offset DeleteRecords had set, from the catalog
    /// snapshot (0: none): restored so deleted records stay deleted.
    pub log_start_floor: i64,
}

/// What the bucket holds, ready to be written to a new catalog and data
/// directory (`tierlog restore`, in `engine/restore.rs`).
#[derive(Debug, Default)]
pub struct RestorePlan {
    pub topics: Vec<TopicRecord>,
    /// Every segment to register as `COPY_FINISHED`.
    pub segments: Vec<RemoteSegment>,
    pub starts: Vec<PartitionStart>,
    /// Above every producer id any manifest's producer state names, and
    /// at least the catalog snapshot's counter: the restored producer-id
    /// counter starts here, so InitProducerId never hands out an id used
    /// before.
    pub next_producer_id: i64,
    /// From the catalog snapshot, by group.
    pub committed_offsets: Vec<(String, CommittedOffset)>,
    pub groups: Vec<StoredGroup>,
    /// SCRAM credentials, from the catalog snapshot.
    pub users: Vec<crate::security::ScramCredential>,
    /// ACL bindings, from the catalog snapshot.
    pub acls: Vec<crate::security::acl::AclBinding>,
    /// Transactional ids' coordinator state, from the catalog snapshot.
    pub transactions: Vec<crate::catalog::StoredTransaction>,
    /// Client quotas, from the catalog snapshot.
    pub client_quotas: Vec<crate::catalog::quotas::ClientQuota>,
    pub report: RestoreReport,
}

/// A step of a restore, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum RestoreProgress<'a> {
    /// The bucket is read: this many segments (and bytes) will be
    /// restored.
    Planned {
        partitions: usize,
        segments: usize,
        bytes: u64,
    },
    /// An object was read back and its CRC32C checked (`--verify`).
    Verified { key: &'a str, bytes: u64 },
    /// A partition's local log was created.
    PartitionCreated { partition: &'a str },
}

/// Where progress goes (`tierlog restore`: a bar or log lines).
pub type ProgressSink<'a> = &'a (dyn Fn(RestoreProgress<'_>) + Sync);

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

    // The newest catalog snapshot that reads back valid.
    let candidates = catalog_snapshot::newest_first(objects.iter().cloned());
    let found = catalog_snapshot::newest_valid(store, &candidates, &mut report.skipped).await?;
    let mut by_id: HashMap<uuid::Uuid, TopicRecord> = topics
        .values()
        .map(|t| {
            (
                t.topic_id,
                TopicRecord {
                    name: t.topic.clone(),
                    id: t.topic_id,
                    partitions: t.partitions,
                    configs: t.configs.clone(),
                    created_ms: now_ms,
                },
            )
        })
        .collect();
    let mut log_ends: HashMap<(uuid::Uuid, u32), i64> = HashMap::new();
    let mut floors: HashMap<(uuid::Uuid, u32), i64> = HashMap::new();
    let (mut committed_offsets, mut groups) = (Vec::new(), Vec::new());
    let mut users = Vec::new();
    let mut acls = Vec::new();
    let mut transactions = Vec::new();
    let mut client_quotas = Vec::new();
    if let Some((key, snap)) = &found {
        report.snapshot = Some(key.to_string());
        report.cluster_id = Some(snap.cluster_id.clone());
        next_producer_id = next_producer_id.max(snap.next_producer_id);
        for t in &snap.topics {
            // Deleted and created again after the snapshot: the bucket's
            // topic.json names the topic that now has the name.
            if let Some(newer) = by_id
                .values()
                .find(|b| b.name == t.name && b.id != t.topic_id)
            {
                report.skipped.push(format!(
                    "topic '{}' id {} of the catalog snapshot: the bucket's topic.json gives the \
                     name to id {} (created after the snapshot), which is restored",
                    t.name, t.topic_id, newer.id
                ));
                continue;
            }
            let mut record = snapshot::topic_record(t);
            if let Some(in_bucket) = by_id.get(&t.topic_id) {
                record.partitions = record.partitions.max(in_bucket.partitions);
            }
            by_id.insert(t.topic_id, record);
            for (p, end) in t.log_end_offsets.iter().enumerate() {
                log_ends.insert((t.topic_id, p as u32), *end);
            }
            for (p, floor) in t.log_start_floors.iter().enumerate() {
                floors.insert((t.topic_id, p as u32), *floor);
            }
        }
        (committed_offsets, groups) = snapshot::groups_of(snap)?;
        users = snapshot::users_of(snap)?;
        transactions = snapshot::transactions_of(snap);
        report.users = users.len();
        acls = snapshot::acls_of(snap)?;
        report.acls = acls.len();
        client_quotas = snapshot::client_quotas_of(snap)?;
        report.client_quotas = client_quotas.len();
        let mut names: std::collections::BTreeSet<&str> =
            committed_offsets.iter().map(|(g, _)| g.as_str()).collect();
        names.extend(groups.iter().map(|g| g.group_id.as_str()));
        report.groups = names.len();
        report.committed_offsets = committed_offsets.len();
    }
    // Manifests by partition, checked against the objects they name.
    let mut by_partition: HashMap<(uuid::Uuid, u32), Vec<SegmentManifest>> = HashMap::new();
    for m in manifests {
        let name = object_key(&m, SegmentObject::Manifest);
        let Some(topic) = by_id.get(&m.topic_id) else {
            report.skipped.push(format!(
                "{name}: neither a topic.json nor the catalog snapshot has topic id {}",
                m.topic_id
            ));
            continue;
        };
        if topic.name != m.topic || m.partition >= topic.partitions {
            report.skipped.push(format!(
                "{name}: partition {} of '{}' is not in the topic ('{}', {} partitions)",
                m.partition, m.topic, topic.name, topic.partitions
            ));
            continue;
        }
        let mut expected = vec![
            (SegmentObject::Log, m.objects.log.size),
            (SegmentObject::Index, m.objects.index.size),
            (SegmentObject::TimeIndex, m.objects.timeindex.size),
        ];
        if let Some(t) = m.objects.txnindex {
            expected.push((SegmentObject::TxnIndex, t.size));
        }
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

    let mut records: Vec<TopicRecord> = by_id.into_values().collect();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = Vec::new();
    let mut starts: Vec<(TopicRecord, u32, i64, Option<SegmentManifest>)> = Vec::new();
    for t in &records {
        for p in 0..t.partitions {
            let chain = choose(
                by_partition.remove(&(t.id, p)).unwrap_or_default(),
                &mut report.skipped,
            );
            let seen_end = log_ends.get(&(t.id, p)).copied();
            let next = match (chain.last(), seen_end) {
                (Some(m), Some(end)) if end > m.last_offset + 1 => {
                    report.skipped.push(format!(
                        "{}-{p}: offsets {}..{end} were never tiered (the catalog snapshot saw \
                         the log end at {end}): lost; new records start at {}",
                        t.name,
                        m.last_offset + 1,
                        m.last_offset + 1
                    ));
                    m.last_offset + 1
                }
                (Some(m), _) => m.last_offset + 1,
                (None, end) => end.unwrap_or(0).max(0),
            };
            let first = chain.first().map_or(next, |m| m.base_offset);
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
    report.bytes = rows.iter().map(RemoteSegment::total_size).sum();
    report.topics = records.iter().map(|t| t.name.clone()).collect();

    Ok(RestorePlan {
        topics: records,
        segments: rows,
        starts: starts
            .into_iter()
            .map(|(topic, partition, next_offset, last)| PartitionStart {
                log_start_floor: floors.get(&(topic.id, partition)).copied().unwrap_or(0),
                topic,
                partition,
                next_offset,
                producer_snapshot: last.and_then(|m| m.producer_snapshot).map(|s| s.to_json()),
            })
            .collect(),
        next_producer_id,
        committed_offsets,
        groups,
        users,
        acls,
        transactions,
        client_quotas,
        report,
    })
}

/// Read back every object of the segments `plan` restores and compare its
/// CRC32C with the manifest's (the comparison `tier check --deep` makes).
/// Fails naming every mismatch; a restore then writes nothing.
pub async fn verify(
    store: &RemoteStore,
    plan: &mut RestorePlan,
    progress: ProgressSink<'_>,
) -> Result<()> {
    let mut mismatches = Vec::new();
    for seg in &plan.segments {
        let mut objects = vec![
            (SegmentObject::Log, seg.log_size, Some(seg.log_crc32c)),
            (SegmentObject::Index, seg.index_size, seg.index_crc32c),
            (
                SegmentObject::TimeIndex,
                seg.timeindex_size,
                seg.timeindex_crc32c,
            ),
        ];
        if let Some(t) = seg.txnindex {
            objects.push((SegmentObject::TxnIndex, t.size, Some(t.crc32c)));
        }
        for (o, size, want) in objects {
            let k = segment_key(
                &seg.topic,
                &seg.topic_id,
                seg.partition,
                seg.base_offset,
                &seg.segment_uuid,
                o,
            );
            let got = crate::remote::check::crc_of(store, &k).await?;
            if let Some(want) = want.filter(|w| *w != got) {
                mismatches.push(format!(
                    "{k}: CRC32C {got:#010x}, its manifest records {want:#010x}"
                ));
            }
            plan.report.verified_objects += 1;
            progress(RestoreProgress::Verified {
                key: k.as_ref(),
                bytes: size,
            });
        }
    }
    if !mismatches.is_empty() {
        return Err(Error::data(format!(
            "--verify: {} object(s) do not match their manifest's CRC32C, so nothing was restored \
             (run `tierlog tier check --deep` on the broker that wrote them, or restore without \
             --verify to take them as they are): {}",
            mismatches.len(),
            mismatches.join("; ")
        )));
    }
    Ok(())
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
        txnindex: m.objects.txnindex,
    }
}

fn unavailable(what: &str, e: object_store::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("cannot {what}: {e}")).with_source(e)
}
