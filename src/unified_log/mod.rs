//! One partition as a whole (Kafka's UnifiedLog): its local log and its
//! tiered segments, the offsets they span together, and which tier serves a
//! read of a given offset.
//!
//! Owns: the partition's online/offline state and the in-memory map of its
//! `COPY_FINISHED` remote segments (loaded from the catalog at open, kept
//! current by the remote log manager). Offsets in `[log start, local log
//! start)` are served from the remote tier, the rest from the local log.
//! Never does object-store I/O itself: a remote read is planned here and run
//! by `remote/fetcher.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::catalog::RemoteSegment;
use crate::config::TopicConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::log::{LocalLog, TimestampAndOffset};
use crate::remote::fetcher::{RemoteFetcher, RemoteReadRequest};
use crate::sync::lock;

/// The remote read path and the runtime its requests run on, when a remote
/// tier is configured.
pub(crate) type RemoteReader = (RemoteFetcher, tokio::runtime::Handle);

pub(crate) enum PartitionState {
    Online(Box<LocalLog>),
    /// Could not be opened; the message says why (path and offset).
    Offline(Error),
    Closed,
}

/// Records read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole record batches, as stored (ready for the wire).
    pub records: Vec<u8>,
    pub log_start_offset: i64,
    /// Log end offset, which is the high watermark on one broker.
    pub log_end_offset: i64,
}

/// The tiered segments of a partition that reads may use, by base offset.
#[derive(Debug, Default, Clone)]
pub(crate) struct RemoteSegments {
    by_base: BTreeMap<i64, Arc<RemoteSegment>>,
}

impl RemoteSegments {
    /// The first offset held remotely.
    pub(crate) fn start(&self) -> Option<i64> {
        self.by_base.values().next().map(|s| s.base_offset)
    }

    /// The last offset held remotely.
    pub(crate) fn last_offset(&self) -> Option<i64> {
        self.by_base.values().next_back().map(|s| s.last_offset)
    }

    /// The segment holding `offset` (or, in a hole, the first one after
    /// it), and the one after that.
    fn find(&self, offset: i64) -> Option<(Arc<RemoteSegment>, Option<Arc<RemoteSegment>>)> {
        let seg = match self.by_base.range(..=offset).next_back() {
            Some((_, s)) if s.last_offset >= offset => s,
            _ => self.by_base.range(offset + 1..).next()?.1,
        };
        let next = self
            .by_base
            .range(seg.base_offset + 1..)
            .next()
            .map(|(_, s)| Arc::clone(s));
        Some((Arc::clone(seg), next))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<RemoteSegment>> {
        self.by_base.values()
    }
}

/// One partition across both tiers (Kafka's `UnifiedLog`).
pub(crate) struct UnifiedLog {
    pub(crate) state: Mutex<PartitionState>,
    pub(crate) remote: RwLock<RemoteSegments>,
}

/// Records of a partition's local log to send from its segment file
/// without copying them (a fetch on a plaintext connection).
#[derive(Debug, Clone)]
pub struct FileRead {
    /// Whole record batches, as stored.
    pub region: crate::log::FileRegion,
    pub log_start_offset: i64,
    /// Log end offset, which is the high watermark on one broker.
    pub log_end_offset: i64,
}

/// Where a read is served from.
pub(crate) enum ReadPlan {
    /// Served from the local log (planned under its lock, read after it).
    Done(ReadResult),
    /// Served from the local log as a region of a segment file.
    File(FileRead),
    /// To be read from the remote tier.
    Remote {
        request: RemoteReadRequest,
        log_start_offset: i64,
        log_end_offset: i64,
    },
}

/// A partition's offsets across both tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The first offset readable, remote or local.
    pub log_start_offset: i64,
    /// The first offset on local disk.
    pub local_log_start_offset: i64,
    /// The log end offset (the high watermark on one broker).
    pub log_end_offset: i64,
    /// The last offset held by the remote tier, if any is.
    pub last_tiered_offset: Option<i64>,
}

/// An offline partition answers as Kafka does for one on a failed log
/// directory: KAFKA_STORAGE_ERROR (`Unavailable`), whatever made it
/// offline (the message says).
fn offline_error(e: &Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("partition is offline: {e}"))
}

impl UnifiedLog {
    pub(crate) fn new(state: PartitionState) -> Self {
        UnifiedLog {
            state: Mutex::new(state),
            remote: RwLock::new(RemoteSegments::default()),
        }
    }

    pub(crate) fn with_log<T>(&self, f: impl FnOnce(&mut LocalLog) -> Result<T>) -> Result<T> {
        let (result, deleted) = {
            let mut state = lock(&self.state);
            match &mut *state {
                PartitionState::Online(log) => {
                    let result = f(log);
                    let deleted = log.take_deleted_files();
                    if let Err(e) = &result {
                        if e.is_io() {
                            // As Kafka does with a failing log directory: after a
                            // failed write or fsync the state of the files is
                            // unknown (Linux may drop dirty pages and report the
                            // next fsync clean), so stop serving the partition
                            // until a restart recovers it.
                            tracing::error!(log = log.name(), error = %e, "I/O error: taking the partition offline");
                            let offline =
                                Error::new(ErrorKind::Unavailable, e.message().to_string());
                            *state = PartitionState::Offline(offline);
                        }
                    }
                    (result, deleted)
                }
                PartitionState::Offline(e) => return Err(offline_error(e)),
                PartitionState::Closed => {
                    return Err(Error::new(ErrorKind::Closed, "the engine is shut down"))
                }
            }
        };
        // Segments `f` deleted are unlinked after the lock: appends and
        // reads of the partition do not wait for it.
        crate::log::segment::delete_marked(deleted);
        result
    }

    /// A failed fsync of sealed segments: the page cache may have dropped
    /// the data and a retried fsync would report success (Linux), so the
    /// partition stops serving until a restart recovers it from the files
    /// (the recovery point never moved past the unsynced data).
    pub(crate) fn take_offline(&self, name: &str, e: Error) {
        tracing::error!(log = %name, error = %e, "fsync of sealed segments failed: taking the partition offline");
        let mut state = lock(&self.state);
        if matches!(&*state, PartitionState::Online(_)) {
            *state = PartitionState::Offline(e);
        }
    }

    /// Why the partition is offline, or `None` when it is not.
    pub(crate) fn offline_reason(&self) -> Option<String> {
        match &*lock(&self.state) {
            PartitionState::Offline(e) => Some(e.to_string()),
            _ => None,
        }
    }

    /// Stop serving: later calls fail with `Closed`.
    pub(crate) fn close(&self) {
        *lock(&self.state) = PartitionState::Closed;
    }

    /// Whether an append now would most likely be short: the partition's
    /// lock is free (no roll, retention deletion or cleaner swap holding
    /// it), its topic never fsyncs on the append path (`flush.messages`
    /// and `flush.ms` unset) and keeps the producers' codecs (no
    /// recompression). A hint: the lock may be taken a moment later.
    pub(crate) fn appends_quickly(&self) -> bool {
        match self.state.try_lock() {
            Ok(state) => match &*state {
                PartitionState::Online(log) => {
                    let c = log.config();
                    c.flush_messages == i64::MAX
                        && c.flush_ms == i64::MAX
                        && c.compression_type == crate::config::CompressionType::Producer
                }
                _ => true, // answered at once with an error
            },
            Err(_) => false,
        }
    }

    /// Apply a topic's new config to the local log.
    pub(crate) fn set_config(&self, config: &TopicConfig) {
        if let PartitionState::Online(log) = &mut *lock(&self.state) {
            log.set_config(config.clone());
        }
    }

    /// The flush job's work on this partition: fsync sealed segments
    /// outside the lock (appends go on meanwhile) and advance the recovery
    /// point, then apply `flush.ms` and `producer.id.expiration.ms`.
    pub(crate) fn flush_due(&self, now: i64) {
        let pending = match &*lock(&self.state) {
            PartitionState::Online(log) => log.pending_flush().map(|f| (f, log.name().to_string())),
            _ => None,
        };
        if let Some((pending, name)) = pending {
            match pending.sync() {
                Ok(()) => {
                    if let PartitionState::Online(log) = &mut *lock(&self.state) {
                        if let Err(e) = log.complete_flush(&pending) {
                            tracing::error!(log = %name, error = %e, "cannot advance the recovery point");
                        }
                    }
                }
                Err(e) => self.take_offline(&name, e),
            }
        }
        let mut state = lock(&self.state);
        if let PartitionState::Online(log) = &mut *state {
            log.expire_producers(now);
            if let Err(e) = log.flush_if_due(now) {
                // As a failed fsync of sealed segments: a retried fsync may
                // report success after the kernel dropped the pages, and a
                // roll would then move the recovery point past them.
                tracing::error!(log = log.name(), error = %e, "flush.ms fsync failed: taking the partition offline");
                *state = PartitionState::Offline(e);
            }
        }
    }

    /// fsync everything appended (offline and closed partitions have
    /// nothing to flush).
    pub(crate) fn flush(&self) -> Result<()> {
        let online = matches!(&*lock(&self.state), PartitionState::Online(_));
        if online {
            self.with_log(|log| log.flush())?;
        }
        Ok(())
    }

    /// Seal and fsync at shutdown; `Ok(false)` if the partition is offline
    /// (its files were never checked).
    pub(crate) fn close_cleanly(&self) -> Result<bool> {
        let mut state = lock(&self.state);
        let result = match &mut *state {
            PartitionState::Online(log) => log.close().map(|()| true).inspect_err(|e| {
                tracing::error!(log = log.name(), error = %e, "cannot close log cleanly");
            }),
            PartitionState::Offline(_) => Ok(false),
            PartitionState::Closed => Ok(true),
        };
        *state = PartitionState::Closed;
        result
    }

    /// The largest timestamp in the log and its offset, remote tier
    /// included (the offset of the first record holding it), if any.
    pub(crate) fn max_timestamp_offset(
        &self,
        remote: Option<&RemoteReader>,
    ) -> Result<Option<TimestampAndOffset>> {
        let Some((fetcher, handle)) = remote else {
            let max = self.with_log(|log| Ok(log.max_timestamp()))?;
            return match max {
                Some(ts) => Ok(self.local_offset_for_timestamp(ts, None)?.flatten()),
                None => Ok(None),
            };
        };
        // Both tiers seen at one instant (retention may move segments).
        let map = self.remote.read().unwrap_or_else(|e| e.into_inner());
        let (local_max, local_start) =
            self.with_log(|log| Ok((log.max_timestamp(), log.log_start_offset())))?;
        let best_remote = map.iter().filter(|s| s.base_offset < local_start).fold(
            None::<Arc<RemoteSegment>>,
            |best, s| match best {
                Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
                _ => Some(Arc::clone(s)),
            },
        );
        drop(map);
        match best_remote {
            // On a tie the earlier offset (the bucket's) wins, as in Kafka.
            Some(seg) if local_max.is_none_or(|l| seg.max_timestamp >= l) => {
                let fetcher = fetcher.clone();
                let ts = seg.max_timestamp;
                run_on(handle, async move {
                    fetcher.offset_for_timestamp(&seg, ts).await
                })
            }
            // The local answer, searched outside the log's lock.
            _ => match local_max {
                Some(ts) => Ok(self.local_offset_for_timestamp(ts, None)?.flatten()),
                None => Ok(None),
            },
        }
    }

    /// The first local record with timestamp ≥ `timestamp`, each segment's
    /// position planned under the log's lock and its batches searched
    /// (decompressed) after it, so appends never wait for a timestamp
    /// lookup. `None` (outer) when `local_start` is given and the local log
    /// no longer starts there (retention moved a segment between the
    /// tiers: the caller looks again). An I/O error in the search takes
    /// the partition offline as one under the lock does.
    fn local_offset_for_timestamp(
        &self,
        timestamp: i64,
        local_start: Option<i64>,
    ) -> Result<Option<Option<TimestampAndOffset>>> {
        let mut after = None;
        loop {
            let step = self.with_log(|log| {
                if after.is_none() && local_start.is_some_and(|s| s != log.log_start_offset()) {
                    return Ok(None);
                }
                Ok(Some(log.plan_timestamp_step(timestamp, after)?))
            })?;
            let step = match step {
                None => return Ok(None),
                Some(None) => return Ok(Some(None)),
                Some(Some(step)) => step,
            };
            if let Some(found) = step.find(timestamp).map_err(|e| self.after_read_error(e))? {
                return Ok(Some(Some(found)));
            }
            after = Some(step.base_offset);
        }
    }

    /// The first record with timestamp ≥ `timestamp` (its timestamp and
    /// offset), remote tier included.
    pub(crate) fn offset_for_timestamp(
        &self,
        name: &str,
        remote: Option<&RemoteReader>,
        timestamp: i64,
    ) -> Result<Option<TimestampAndOffset>> {
        let Some((fetcher, handle)) = remote else {
            return Ok(self.local_offset_for_timestamp(timestamp, None)?.flatten());
        };
        // Retention may move a segment from the local tier to the remote one
        // between the two lookups: then look again.
        for _ in 0..3 {
            let (local_start, remote) = self.remote_below_local()?;
            // Not only the first segment reaching the timestamp: in a
            // cleaned one the records holding it may be gone.
            for seg in remote.into_iter().filter(|s| s.max_timestamp >= timestamp) {
                let fetcher = fetcher.clone();
                let found = run_on(handle, async move {
                    fetcher.offset_for_timestamp(&seg, timestamp).await
                })?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            if let Some(found) = self.local_offset_for_timestamp(timestamp, Some(local_start))? {
                return Ok(found);
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("{name}: segments kept moving between tiers during a timestamp lookup; retry"),
        ))
    }

    /// The local log start and the remote segments below it, read together
    /// (so retention moving a segment between the tiers cannot hide it).
    pub(crate) fn remote_below_local(&self) -> Result<(i64, Vec<Arc<RemoteSegment>>)> {
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        self.with_log(|log| {
            let local_start = log.log_start_offset();
            Ok((
                local_start,
                remote
                    .iter()
                    .filter(|s| s.base_offset < local_start)
                    .cloned()
                    .collect(),
            ))
        })
    }

    /// Make sure new records get offsets after `tiered_end` (the offset
    /// after the last `COPY_FINISHED` segment): a local log that ends below
    /// it (its directory was lost, or removed by a crash in an older
    /// DeleteTopics) would hand out offsets the bucket already holds, so it
    /// is emptied and restarted there. Its records below `tiered_end` are
    /// all in the bucket. Returns whether it was repaired.
    pub(crate) fn start_after_tiered(&self, tiered_end: i64) -> Result<bool> {
        self.with_log(|log| {
            let end = log.log_end_offset();
            if end >= tiered_end {
                return Ok(false);
            }
            tracing::warn!(
                log = log.name(), log_end_offset = end, tiered_end,
                "the local log ends below the remote tier's last offset; restarting it after the tiered data"
            );
            log.truncate_fully_and_start_at(tiered_end)?;
            Ok(true)
        })
    }

    /// The `COPY_FINISHED` segments reads may use, by base offset.
    pub(crate) fn remote_segments(&self) -> Vec<Arc<RemoteSegment>> {
        let map = self.remote.read().unwrap_or_else(|p| p.into_inner());
        map.iter().cloned().collect()
    }

    /// A segment became `COPY_FINISHED`: reads may use it.
    pub(crate) fn add_remote(&self, seg: RemoteSegment) {
        let mut map = self.remote.write().unwrap_or_else(|p| p.into_inner());
        map.by_base.insert(seg.base_offset, Arc::new(seg));
    }

    /// The log cleaner's swap of tiered segments: `new` in, the `replaced`
    /// out, at once, so a read sees the old set or the new one.
    pub(crate) fn replace_remote(&self, new: RemoteSegment, replaced: &[uuid::Uuid]) {
        let mut map = self.remote.write().unwrap_or_else(|p| p.into_inner());
        map.by_base
            .retain(|_, s| !replaced.contains(&s.segment_uuid));
        map.by_base.insert(new.base_offset, Arc::new(new));
    }

    /// A segment is about to be deleted: no new read may start on it.
    pub(crate) fn remove_remote(&self, segment_uuid: uuid::Uuid) {
        let mut map = self.remote.write().unwrap_or_else(|p| p.into_inner());
        map.by_base.retain(|_, s| s.segment_uuid != segment_uuid);
    }

    /// Bytes of the local segments, and of the `.log` objects of the
    /// `COPY_FINISHED` segments reads may use.
    pub(crate) fn sizes(&self) -> Result<(u64, u64)> {
        let remote = self.remote_segments().iter().map(|s| s.log_size).sum();
        let local = self.with_log(|log| Ok(log.size_bytes()))?;
        Ok((local, remote))
    }

    /// Offsets across both tiers.
    pub(crate) fn offsets(&self) -> Result<PartitionOffsets> {
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        self.with_log(|log| Ok(unified_offsets(log, &remote)))
    }

    /// Plan a read of `offset`: a local read is done now (its batches
    /// located under the log's lock, their bytes read after it, so appends
    /// never wait for the copy); a remote one is described for the
    /// fetcher. `remote_on` says whether a fetcher exists (without one,
    /// only local offsets are readable). With `zero_copy`, local batches
    /// come back as a region of their segment file ([`ReadPlan::File`])
    /// instead of copied bytes, except where the batches must be looked at
    /// (the first one emptied by the log cleaner: the next segment's may
    /// have to follow).
    pub(crate) fn plan_read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        remote_on: bool,
        zero_copy: bool,
    ) -> Result<ReadPlan> {
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        let local = self.with_log(|log| {
            let o = if remote_on {
                unified_offsets(log, &remote)
            } else {
                unified_offsets(log, &RemoteSegments::default())
            };
            if offset < o.local_log_start_offset && offset >= o.log_start_offset {
                if let Some((segment, next)) = remote.find(offset) {
                    return Ok(Err(ReadPlan::Remote {
                        request: RemoteReadRequest {
                            segment,
                            next,
                            offset,
                            max_bytes,
                            min_one,
                            drop_behind: true,
                        },
                        log_start_offset: o.log_start_offset,
                        log_end_offset: o.log_end_offset,
                    }));
                }
            }
            if offset < o.log_start_offset || offset > o.log_end_offset {
                return Err(out_of_range(log.name(), offset, &o));
            }
            // Below the local start with no remote segment left to serve
            // it (a hole, or a fetcher-less engine): the batches from the
            // local start on; a consumer moves forward past missing offsets
            // as it does past compacted ones.
            let from = offset.max(o.local_log_start_offset);
            Ok(Ok((log.plan_read(from, max_bytes, min_one)?, o)))
        })?;
        drop(remote);
        let (plan, mut o) = match local {
            Err(remote_plan) => return Ok(remote_plan),
            Ok(local) => local,
        };
        let mut records = match plan.read {
            Some(read) if zero_copy && (plan.following.is_none() || read.first_holds_records()) => {
                return Ok(match read.region().map_err(|e| self.after_read_error(e))? {
                    Some(region) => ReadPlan::File(FileRead {
                        region,
                        log_start_offset: o.log_start_offset,
                        log_end_offset: o.log_end_offset,
                    }),
                    None => ReadPlan::Done(ReadResult {
                        records: Vec::new(),
                        log_start_offset: o.log_start_offset,
                        log_end_offset: o.log_end_offset,
                    }),
                });
            }
            Some(read) => read.read().map_err(|e| self.after_read_error(e))?,
            None => Vec::new(),
        };
        // Only batches the log cleaner emptied, with room for more: the
        // next segment's batches follow (rare; under the lock, as before).
        if let Some(next) = plan.following {
            if !records.is_empty()
                && !crate::log::holds_records(&records)
                && records.len() < max_bytes
            {
                // What was read stands if this fails (the log moved on
                // since the plan): the client asks again from after it.
                if let Ok((more, end)) = self.with_log(|log| {
                    Ok((
                        log.read(next, max_bytes - records.len(), min_one)?,
                        log.log_end_offset(),
                    ))
                }) {
                    records.extend_from_slice(&more);
                    o.log_end_offset = end;
                }
            }
        }
        Ok(ReadPlan::Done(ReadResult {
            records,
            log_start_offset: o.log_start_offset,
            log_end_offset: o.log_end_offset,
        }))
    }

    /// A read done outside the log's lock failed: an I/O error takes the
    /// partition offline as one under it would (`with_log`).
    fn after_read_error(&self, e: Error) -> Error {
        // `with_log` returns the closure's error (taking the partition
        // offline first if it is an I/O one), or why the log is unusable.
        self.with_log(|_| Err::<(), _>(e))
            .err()
            .unwrap_or_else(|| Error::internal("a failed read reported success"))
    }
}

/// Run `fut` on the remote tier's runtime and wait for it (from any
/// thread, async contexts included: the wait blocks only this thread).
pub(crate) fn run_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let task = handle.spawn(fut);
    futures::executor::block_on(task)
        .map_err(|e| Error::internal(format!("remote task failed: {e}")))?
}

pub(crate) fn out_of_range(name: &str, offset: i64, o: &PartitionOffsets) -> Error {
    Error::new(
        ErrorKind::OutOfRange,
        format!(
            "offset {offset} is out of range for {name}: log start offset {}, log end offset {}",
            o.log_start_offset, o.log_end_offset
        ),
    )
}

fn unified_offsets(log: &LocalLog, remote: &RemoteSegments) -> PartitionOffsets {
    // DeleteRecords' floor raises both starts (Kafka keeps the local log
    // start at or above the log start).
    let floor = log.start_floor();
    let local_start = log.log_start_offset();
    PartitionOffsets {
        log_start_offset: remote
            .start()
            .map_or(local_start, |r| r.min(local_start))
            .max(floor),
        local_log_start_offset: local_start.max(floor),
        log_end_offset: log.log_end_offset(),
        last_tiered_offset: remote.last_offset(),
    }
}
