//! Tiered compaction: the log cleaner's pass over a compacted topic with
//! `remote.storage.enable=true`, whose history is mostly in the bucket.
//!
//! The log is the partition's `COPY_FINISHED` segments followed by its
//! local segments not yet tiered. The key map is built over the dirty part
//! of both, and the groups from the log start on are rewritten:
//! - a group of tiered segments is read through the remote read path in
//!   4 MiB requests (never whole in memory; a tiered segment whose local
//!   copy covers the same offsets is read from that copy), written cleaned
//!   to the partition's staging directory and uploaded as a new segment
//!   (a new uuid; its manifest's `compaction` lists the segments it
//!   replaces). Then one catalog transaction makes it `COPY_FINISHED` and
//!   the replaced ones `DELETE_STARTED`, the partition's readable set
//!   swaps them at once (a read sees the old set or the new one), and the
//!   reaper deletes the old objects. Local copies below the last replaced
//!   offset are then dropped (they are tiered; reads of that range go to
//!   the cleaned segments).
//! - a group of local segments not yet tiered is cleaned and swapped
//!   locally, as for a topic without tiering; the copy job uploads it later.
//!
//! The whole pass runs while no remote log manager round does (a reaper
//! must not judge its upload in flight). A crash leaves a `COPY_STARTED`
//! row (the reaper deletes what was uploaded) or a committed replacement
//! (the old objects are `DELETE_STARTED`, the reaper's); the staging
//! directory has no swap marker and goes at open.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::catalog::{RemoteSegment, RemoteState, SharedCatalog};
use crate::error::{Error, Result};
use crate::failpoints::fail_point;
use crate::format::batch::{BatchHeader, Batches};
use crate::format::manifest::Compaction;
use crate::log::cleaner::{
    BatchSource, CleanStats, CleanerView, LocalFiles, SegmentInfo, StagedSegment, Throttle,
};
use crate::metrics::Metrics;
use crate::remote::fetcher::{RemoteFetcher, RemoteReadRequest};
use crate::remote::uploader::{upload_segment_with, SealedSegment, SegmentOwner};
use crate::sync::lock;
use crate::unified_log::UnifiedLog;

use super::remote_log_manager::RemoteLogManager;

/// Bytes asked for per remote read of a tiered segment being cleaned.
const READ_BYTES: usize = 4 << 20;

/// What tiered compaction needs of the engine.
pub struct TierContext {
    pub(crate) manager: Arc<RemoteLogManager>,
    pub(crate) fetcher: RemoteFetcher,
    pub(crate) catalog: SharedCatalog,
    pub(crate) metrics: Arc<Metrics>,
}

impl std::fmt::Debug for TierContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierContext").finish_non_exhaustive()
    }
}

/// A tiered segment as the cleaner sees it.
pub(crate) fn remote_info(r: &RemoteSegment) -> SegmentInfo {
    SegmentInfo {
        base_offset: r.base_offset,
        end_offset: r.last_offset + 1,
        size: r.log_size,
        max_timestamp: r.max_timestamp,
        first_timestamp: (r.first_timestamp >= 0).then_some(r.first_timestamp),
        log_path: PathBuf::from(format!("remote segment {}", r.segment_uuid)),
    }
}

/// The log as one sequence of segments: the tiered ones, then the local
/// cleanable ones after them. Returns it with the tiered end.
pub(crate) fn units(view: &CleanerView, remote: &[Arc<RemoteSegment>]) -> (Vec<SegmentInfo>, i64) {
    let tiered_end = remote.last().map_or(i64::MIN, |r| r.last_offset + 1);
    let mut units: Vec<SegmentInfo> = remote.iter().map(|r| remote_info(r)).collect();
    units.extend(
        view.cleanable
            .iter()
            .filter(|s| s.base_offset >= tiered_end)
            .cloned(),
    );
    (units, tiered_end)
}

/// Batches of tiered segments through the remote read path, or from a
/// local copy of the same offsets; local segments from their files.
pub(crate) struct TieredSource<'a> {
    fetcher: &'a RemoteFetcher,
    handle: &'a tokio::runtime::Handle,
    remote: HashMap<i64, Arc<RemoteSegment>>,
    local_copies: HashMap<i64, SegmentInfo>,
}

impl<'a> TieredSource<'a> {
    pub(crate) fn new(
        fetcher: &'a RemoteFetcher,
        handle: &'a tokio::runtime::Handle,
        view: &CleanerView,
        remote: &[Arc<RemoteSegment>],
    ) -> Self {
        let local_copies = view
            .cleanable
            .iter()
            .filter(|s| {
                remote
                    .iter()
                    .any(|r| r.base_offset == s.base_offset && r.last_offset + 1 == s.end_offset)
            })
            .map(|s| (s.base_offset, s.clone()))
            .collect();
        TieredSource {
            fetcher,
            handle,
            remote: remote
                .iter()
                .map(|r| (r.base_offset, Arc::clone(r)))
                .collect(),
            local_copies,
        }
    }
}

impl BatchSource for TieredSource<'_> {
    fn for_each_batch(
        &mut self,
        seg: &SegmentInfo,
        throttle: &mut Throttle,
        f: &mut dyn FnMut(&BatchHeader, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        if let Some(local) = self.local_copies.get(&seg.base_offset) {
            return LocalFiles.for_each_batch(local, throttle, f);
        }
        let Some(remote) = self.remote.get(&seg.base_offset).cloned() else {
            return LocalFiles.for_each_batch(seg, throttle, f);
        };
        let mut offset = remote.base_offset;
        while offset <= remote.last_offset {
            let request = RemoteReadRequest {
                segment: Arc::clone(&remote),
                next: None,
                offset,
                max_bytes: READ_BYTES,
                min_one: true,
                // The key map's pass is followed by the rewrite's.
                drop_behind: false,
            };
            let bytes = self
                .handle
                .block_on(self.fetcher.read(&request))?
                .into_bytes();
            if bytes.is_empty() {
                break;
            }
            throttle.account(bytes.len() as u64)?;
            for b in Batches::new(&bytes) {
                let (_, h, batch) = b.map_err(|e| {
                    Error::data(format!("corrupt batch in {}: {e}", seg.log_path.display()))
                })?;
                if !f(&h, batch)? {
                    return Ok(());
                }
                offset = h.next_offset();
            }
        }
        Ok(())
    }
}

/// Upload `staged` (a cleaned group of tiered segments) as a new segment
/// and commit it in place of `replaced`.
pub(crate) fn commit_tiered(
    tier: &TierContext,
    handle: &tokio::runtime::Handle,
    partition: &UnifiedLog,
    owner: &SegmentOwner,
    staged: &StagedSegment,
    replaced: &[Arc<RemoteSegment>],
    now: i64,
) -> Result<()> {
    let uuid = uuid::Uuid::new_v4();
    let [log, index, timeindex, txnindex] = staged.files.clone();
    let segment = SealedSegment {
        base_offset: staged.base(),
        last_offset: staged.end() - 1,
        first_timestamp: staged.first_timestamp,
        max_timestamp: staged.max_timestamp,
        log,
        index,
        timeindex,
        txnindex,
    };
    let mut row = segment.copy_started_row(owner, uuid, now);
    lock(&tier.catalog).insert_remote_segment(&row)?;
    fail_point!("cleaner.tiered.after_copy_started");
    let compaction = Compaction {
        replaces: replaced.iter().map(|r| r.segment_uuid).collect(),
        cleaned_ms: now,
    };
    let store = tier.manager.store();
    let upload = tier.manager.settings().upload;
    // The producer state at the cleaned segment's end is the last replaced
    // segment's: carried over, so restore (and the producer-id counter it
    // sets) still knows every producer.
    let snapshot = match replaced.last() {
        Some(last) => handle.block_on(read_producer_snapshot(store, owner, last))?,
        None => None,
    };
    let uploaded = handle.block_on(upload_segment_with(
        store,
        owner,
        uuid,
        &segment,
        upload,
        now,
        Some(compaction),
        snapshot,
    ));
    let manifest = match uploaded {
        Ok(m) => m,
        Err(e) => {
            abandon(tier, &mut row, RemoteState::CopyStarted, now);
            return Err(e);
        }
    };
    fail_point!("cleaner.tiered.after_upload");
    SealedSegment::record_upload(&mut row, manifest);
    let old: Vec<RemoteSegment> = replaced.iter().map(|r| (**r).clone()).collect();
    if let Err(e) = lock(&tier.catalog).replace_remote_segments(&row, &old, now) {
        // Retention expired one of them meanwhile: the new copy goes.
        abandon(tier, &mut row, RemoteState::CopyStarted, now);
        return Err(e);
    }
    fail_point!("cleaner.tiered.after_catalog");
    row.state = RemoteState::CopyFinished;
    let uuids: Vec<uuid::Uuid> = old.iter().map(|r| r.segment_uuid).collect();
    tracing::info!(
        topic = %row.topic, partition = row.partition, base_offset = row.base_offset,
        last_offset = row.last_offset, replaced = uuids.len(), bytes = row.log_size,
        "cleaned tiered segments replaced in the bucket"
    );
    partition.replace_remote(row, &uuids);
    Ok(())
}

/// The producer snapshot in `seg`'s manifest, if it has one.
async fn read_producer_snapshot(
    store: &crate::remote::RemoteStore,
    owner: &SegmentOwner,
    seg: &RemoteSegment,
) -> Result<Option<crate::format::producer_snapshot::ProducerSnapshot>> {
    use object_store::ObjectStoreExt;
    let key = crate::remote::keys::segment_key(
        &owner.topic,
        &owner.topic_id,
        owner.partition,
        seg.base_offset,
        &seg.segment_uuid,
        crate::remote::keys::SegmentObject::Manifest,
    );
    let bytes = store
        .store
        .get(&key)
        .await
        .map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Unavailable,
                format!("cannot read {key}: {e}"),
            )
        })?
        .bytes()
        .await
        .map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Unavailable,
                format!("cannot read {key}: {e}"),
            )
        })?;
    let manifest = crate::format::manifest::SegmentManifest::from_json(&bytes)
        .map_err(|e| Error::data(format!("{key}: {e}")))?;
    Ok(manifest.producer_snapshot)
}

/// Leave an upload the cleaner could not commit to the reaper.
fn abandon(tier: &TierContext, row: &mut RemoteSegment, from: RemoteState, now: i64) {
    row.state = RemoteState::DeleteStarted;
    row.updated_ms = now;
    if let Err(e) = lock(&tier.catalog).transition_remote_segment(row, from) {
        tracing::warn!(segment = %row.segment_uuid, error = %e, "cannot mark a cleaned upload for deletion; the reaper will find it");
    }
}

/// Remote requests a pass made, for `compact.remote_*_requests_per_gib`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RemoteRequests {
    pub gets: u64,
    pub puts: u64,
}

impl TierContext {
    pub(crate) fn requests(&self) -> RemoteRequests {
        RemoteRequests {
            gets: self.metrics.remote_get_requests.get(),
            puts: self.metrics.remote_put_requests.get(),
        }
    }
}

/// Split `units` into groups that are all tiered (below `tiered_end`) or
/// all local, each as `group_segments` would make them.
pub(crate) fn tier_groups(
    units: &[SegmentInfo],
    tiered_end: i64,
    end_offset: i64,
    segment_bytes: u64,
) -> Vec<(bool, Vec<SegmentInfo>)> {
    let split = units.partition_point(|u| u.base_offset < tiered_end);
    let (tiered, local) = units.split_at(split);
    let mut out: Vec<(bool, Vec<SegmentInfo>)> = Vec::new();
    for g in crate::log::cleaner::group_segments(tiered, end_offset, segment_bytes) {
        out.push((true, g));
    }
    for g in crate::log::cleaner::group_segments(local, end_offset, segment_bytes) {
        out.push((false, g));
    }
    out
}

/// Add `b` to `a`.
pub(crate) fn add_stats(a: &mut CleanStats, b: &CleanStats) {
    a.bytes_read += b.bytes_read;
    a.bytes_written += b.bytes_written;
    a.records_read += b.records_read;
    a.records_kept += b.records_kept;
    a.batches_rewritten += b.batches_rewritten;
    a.remote_get_requests += b.remote_get_requests;
    a.remote_put_requests += b.remote_put_requests;
}
