//! The engine's data path: appends, reads from whichever tier holds an
//! offset, offset and timestamp lookups.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::{AppendInfo, TimestampAndOffset};
use crate::unified_log::{FileRead, PartitionOffsets, ReadPlan, UnifiedLog};

use super::Engine;
use crate::remote::fetcher::RemoteBatches;
use crate::unified_log::ReadResult;

impl Engine {
    /// Validate and append record batches (one or more, concatenated, as in
    /// a produce request) to a partition. Offsets are assigned in place in
    /// `records` (in a copy when the topic's `compression.type` recompresses
    /// them). Returns the offsets assigned.
    pub fn append(&self, topic: &str, partition: u32, records: &mut [u8]) -> Result<AppendInfo> {
        let bytes = records.len() as u64;
        let info = self
            .logs
            .partition(topic, partition)?
            .with_log(|log| log.append(records))
            .inspect_err(|_| {
                self.metrics.append_errors.inc();
            })?;
        self.metrics.append_bytes.inc_by(bytes);
        self.metrics
            .append_records
            .inc_by(info.record_count.max(0) as u64);
        // Only long-polling fetches hold receivers; with none, nobody waits.
        if self.appends.receiver_count() > 0 {
            self.appends.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(info)
    }

    /// Whether an append to the partition now would most likely be short
    /// (its lock free, no fsync or recompression on the append path), so
    /// a caller on an async worker may run it in place; `false` for an
    /// unknown partition too. A hint only.
    pub fn appends_quickly(&self, topic: &str, partition: u32) -> bool {
        self.logs
            .partition(topic, partition)
            .is_ok_and(|p| p.appends_quickly())
    }

    /// A receiver that changes after every successful append, for readers
    /// that wait for new data (fetch long-poll). Mark it seen before reading
    /// to miss nothing.
    pub fn subscribe_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appends.subscribe()
    }

    /// Whole batches from `offset` on, up to `max_bytes` (but at least one
    /// batch), as stored, from whichever tier holds them.
    pub fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadResult> {
        self.read_bounded(topic, partition, offset, max_bytes, true)
    }

    /// Like [`Engine::read`], but the first batch is returned when larger
    /// than `max_bytes` only if `min_one` (Kafka returns an oversized batch
    /// only first in a fetch response). Blocks on a remote read when the
    /// offset is only in the remote tier.
    pub fn read_bounded(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult> {
        match self.start_read(topic, partition, offset, max_bytes, min_one, false)? {
            ReadStart::Done(r) => Ok(r),
            ReadStart::File(r) => Ok(ReadResult {
                records: r.region.read()?,
                log_start_offset: r.log_start_offset,
                log_end_offset: r.log_end_offset,
            }),
            ReadStart::Remote(r) => {
                futures::executor::block_on(self.read_remote(r)).map(|r| ReadResult {
                    records: r.batches.to_vec(),
                    log_start_offset: r.log_start_offset,
                    log_end_offset: r.log_end_offset,
                })
            }
        }
    }

    /// Start a read: a local one is done now (blocking file I/O); a remote
    /// one is returned to run with [`Engine::read_remote`], so a caller can
    /// bound how long it waits for it. With `zero_copy`, local batches may
    /// come back as a region of a segment file ([`ReadStart::File`]) for
    /// the caller to send without copying.
    pub fn start_read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        zero_copy: bool,
    ) -> Result<ReadStart> {
        let p = self.logs.partition(topic, partition)?;
        let started = crate::clock::monotonic_now();
        match p.plan_read(
            offset,
            max_bytes,
            min_one,
            self.fetcher.is_some(),
            zero_copy,
        )? {
            ReadPlan::Done(r) => {
                self.metrics.read_duration_local.observe_since(started);
                self.metrics.read_bytes_local.inc_by(r.records.len() as u64);
                Ok(ReadStart::Done(r))
            }
            ReadPlan::File(r) => {
                self.metrics.read_duration_local.observe_since(started);
                self.metrics.read_bytes_local.inc_by(r.region.len() as u64);
                Ok(ReadStart::File(r))
            }
            ReadPlan::Remote {
                request,
                log_start_offset,
                log_end_offset,
            } => Ok(ReadStart::Remote(RemoteRead {
                partition: p,
                name: format!("{topic}-{partition}"),
                request,
                log_start_offset,
                log_end_offset,
            })),
        }
    }

    /// Whether remote read `read` can run without waiting for a GET (see
    /// [`RemoteFetcher::start_loading`](crate::remote::fetcher::RemoteFetcher::start_loading)):
    /// when it cannot, the chunk it needs starts loading now, so a Fetch
    /// that has other data to answer with may leave this partition for the
    /// client's next Fetch instead of waiting.
    pub fn remote_read_ready(&self, read: &RemoteRead) -> Option<bool> {
        let (fetcher, handle) = self.fetcher.as_ref()?;
        let _runtime = handle.enter();
        fetcher.start_loading(&read.request)
    }

    /// Whether remote read `read` starts from a cached chunk (no GET),
    /// without starting any load (unlike [`Engine::remote_read_ready`]).
    pub fn remote_read_cached(&self, read: &RemoteRead) -> bool {
        self.fetcher
            .as_ref()
            .is_some_and(|(fetcher, _)| fetcher.first_chunk_cached(&read.request))
    }

    /// Run a remote read on the remote tier's runtime. The returned future
    /// may be awaited on any runtime, or dropped: the read then finishes in
    /// the background and leaves its chunks in the cache.
    pub fn read_remote(
        &self,
        read: RemoteRead,
    ) -> impl std::future::Future<Output = Result<RemoteReadResult>> + Send + 'static {
        let metrics = Arc::clone(&self.metrics);
        let spawned = self.fetcher.as_ref().map(|(fetcher, handle)| {
            let fetcher = fetcher.clone();
            let request = read.request.clone();
            let partition = Arc::clone(&read.partition);
            let timed = Arc::clone(&metrics);
            let read = read_across_gaps(fetcher, request, partition, handle.clone());
            (
                // Timed to its end, even when the fetch stopped waiting.
                handle.spawn(async move {
                    let started = crate::clock::monotonic_now();
                    let r = read.await;
                    timed.read_duration_remote.observe_since(started);
                    r
                }),
                handle.clone(),
            )
        });
        async move {
            let Some((task, handle)) = spawned else {
                return Err(Error::invalid("no remote tier is configured"));
            };
            let result = task.await.map_err(|e| {
                Error::internal(format!("remote read of {} failed: {e}", read.name))
            })?;
            match result {
                Ok(batches) => {
                    metrics.read_bytes_remote.inc_by(batches.len() as u64);
                    Ok(RemoteReadResult {
                        batches,
                        log_start_offset: read.log_start_offset,
                        log_end_offset: read.log_end_offset,
                    })
                }
                Err(e) => {
                    // Retention may have deleted the segment meanwhile: then
                    // the offset is out of range, as the client must learn.
                    // (The partition's lock may be held across an fsync:
                    // not on an async worker.)
                    let partition = Arc::clone(&read.partition);
                    let offsets = handle
                        .spawn_blocking(move || partition.offsets())
                        .await
                        .ok()
                        .and_then(|o| o.ok());
                    if let Some(o) = offsets {
                        if read.request.offset < o.log_start_offset {
                            return Err(crate::unified_log::out_of_range(
                                &read.name,
                                read.request.offset,
                                &o,
                            ));
                        }
                    }
                    Err(e)
                }
            }
        }
    }

    /// The first record with timestamp ≥ `timestamp` (its timestamp and
    /// offset), remote tier included.
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<TimestampAndOffset>> {
        let p = self.logs.partition(topic, partition)?;
        let found = p.offset_for_timestamp(
            &format!("{topic}-{partition}"),
            self.fetcher.as_ref(),
            timestamp,
        )?;
        // Records below DeleteRecords' floor may still sit in a segment:
        // the answer is never below the log start.
        let floor = p.with_log(|log| Ok(log.start_floor()))?;
        Ok(found.map(|t| TimestampAndOffset {
            offset: t.offset.max(floor),
            ..t
        }))
    }

    /// DeleteRecords: records of the partition below `offset` (-1: the
    /// high watermark) are deleted. The new log start is durable at once
    /// and reads below it fail with OFFSET_OUT_OF_RANGE; the segments
    /// wholly below it go with the next retention run (locally) and
    /// remote log manager round (in the bucket). Returns the log start
    /// offset now (Kafka's low watermark).
    pub fn delete_records(&self, topic: &str, partition: u32, offset: i64) -> Result<i64> {
        let p = self.logs.partition(topic, partition)?;
        let floor = p.with_log(|log| {
            let to = if offset == -1 {
                log.log_end_offset()
            } else {
                offset
            };
            log.raise_start_floor(to)
        })?;
        Ok(self.offsets(topic, partition)?.log_start_offset.max(floor))
    }

    /// The largest timestamp in the log and its offset, remote tier
    /// included (the offset of the first record holding it), if any.
    pub fn max_timestamp_offset(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<TimestampAndOffset>> {
        self.logs
            .partition(topic, partition)?
            .max_timestamp_offset(self.fetcher.as_ref())
    }

    /// Log start (remote tier included), local log start and log end
    /// offsets.
    pub fn offsets(&self, topic: &str, partition: u32) -> Result<PartitionOffsets> {
        let p = self.logs.partition(topic, partition)?;
        let mut o = p.offsets()?;
        if self.fetcher.is_none() {
            o.log_start_offset = o.local_log_start_offset;
            o.last_tiered_offset = None;
        }
        Ok(o)
    }
}

/// How a read started: done (local), or to be finished remotely.
#[derive(Debug)]
pub enum ReadStart {
    Done(ReadResult),
    /// Local batches to send from their segment file.
    File(FileRead),
    Remote(RemoteRead),
}

/// Most tiered segments one read steps over when their ends were
/// cleaned away (each step is one more planned read).
const MAX_GAP_STEPS: usize = 16;

/// Read `request`; when the offset is in a tiered segment's trailing gap
/// (the log cleaner removed its last records), go on after the segment,
/// remote or local, so a consumer never gets an empty answer below the log
/// end (Kafka's reads skip compacted gaps the same way).
async fn read_across_gaps(
    fetcher: crate::remote::fetcher::RemoteFetcher,
    mut request: crate::remote::fetcher::RemoteReadRequest,
    partition: Arc<UnifiedLog>,
    handle: tokio::runtime::Handle,
) -> Result<RemoteBatches> {
    // Until a record is found, the first batch may be returned whole
    // (KIP-74) exactly as the caller allowed; a read that may not do that
    // cannot tell "the next batch does not fit" from "nothing is left in
    // this segment", so it never steps over a segment.
    let min_one = request.min_one;
    let mut out = RemoteBatches::default();
    for _ in 0..MAX_GAP_STEPS {
        let records = fetcher.read(&request).await?;
        let read = records.len();
        let next = records.next_offset();
        out.append(records);
        // Batches the cleaner emptied (bare headers) are not an answer a
        // consumer can use alone: go on after them too.
        if out.holds_records() || out.len() >= request.max_bytes {
            return Ok(out);
        }
        if read == 0 && !min_one {
            return Ok(out);
        }
        // With min_one an empty answer means no batch is left in the
        // segment at or after the offset (its end was cleaned away).
        let after = next.unwrap_or(request.segment.last_offset + 1);
        if read != 0 && after <= request.segment.last_offset {
            request.offset = after;
            request.max_bytes -= read;
            continue;
        }
        let max_bytes = request.max_bytes - read;
        let p = Arc::clone(&partition);
        let plan = handle
            .spawn_blocking(move || p.plan_read(after, max_bytes, min_one, true, false))
            .await
            .map_err(|e| Error::internal(format!("read planning failed: {e}")))?;
        match plan {
            Ok(ReadPlan::Remote { request: next, .. }) => request = next,
            Ok(ReadPlan::Done(r)) => {
                out.append_batches(r.records);
                return Ok(out);
            }
            // Not asked for (zero_copy is off here), but read it if so.
            Ok(ReadPlan::File(r)) => {
                out.append_batches(r.region.read()?);
                return Ok(out);
            }
            // Past the log end: nothing more to read.
            Err(e) if e.kind() == crate::error::ErrorKind::OutOfRange => return Ok(out),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// What a remote read returns ([`Engine::read_remote`]): whole batches as
/// slices of cached chunks, and the partition's offsets when it was
/// planned.
#[derive(Debug)]
pub struct RemoteReadResult {
    pub batches: RemoteBatches,
    pub log_start_offset: i64,
    /// Log end offset, which is the high watermark on one broker.
    pub log_end_offset: i64,
}

/// A read to run on the remote tier ([`Engine::read_remote`]).
pub struct RemoteRead {
    partition: Arc<UnifiedLog>,
    name: String,
    request: crate::remote::fetcher::RemoteReadRequest,
    log_start_offset: i64,
    log_end_offset: i64,
}

impl RemoteRead {
    /// The partition's log start offset when the read was planned.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The partition's log end offset when the read was planned.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    /// The offset it reads from.
    pub fn offset(&self) -> i64 {
        self.request.offset
    }

    pub(crate) fn partition(&self) -> &Arc<UnifiedLog> {
        &self.partition
    }
}

impl std::fmt::Debug for RemoteRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRead")
            .field("partition", &self.name)
            .field("offset", &self.request.offset)
            .field("segment", &self.request.segment.segment_uuid)
            .finish()
    }
}
