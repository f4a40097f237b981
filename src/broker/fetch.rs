//! Fetch: stored batch bytes straight from the log, within the response's
//! and each partition's byte limits, long-polling until `min_bytes` arrive
//! or `max_wait_ms` passes. A partition's `current_leader_epoch` (v9+) is
//! checked before it is read (`leader_epochs::partition_epoch_error`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{monotonic_now, monotonic_sleep_until};
use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::fetch_sessions::{SessionMode, Wanted};
use super::logging::escape;
use super::records_send::Spliced;
use super::{errors, leader_epochs, Ctx};
use crate::security::acl::AclOperation;

/// Partitions of one Fetch whose remote reads the response may wait for
/// (where they start is not cached and no background load could take it);
/// the others wait for the client's next Fetch (Kafka reads one). Reads
/// from cached chunks are not counted, nor partitions whose next chunk is
/// loading in the background (left for the next Fetch): the broker's cap
/// on GETs in flight bounds those loads.
const MAX_REMOTE_PARTITIONS_PER_FETCH: usize = 4;

/// A consumer's Fetch needs Read on each topic; a partition of a topic
/// without it answers TOPIC_AUTHORIZATION_FAILED (and is not read).
///
/// With `zero_copy`, local records are not read into memory: their
/// partitions carry `records_send::placeholder()` and the file regions to
/// send come back beside the response, in response order.
pub async fn fetch(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: FetchRequest,
    zero_copy: bool,
) -> (FetchResponse, Vec<Spliced>) {
    // Which partitions: the request's, or its session's (KIP-227).
    let (mode, wanted) = match ctx.fetch_sessions.begin(&req, std::time::Instant::now()) {
        Ok(begun) => begun,
        Err(e) => {
            return (
                FetchResponse::default().with_error_code(e.code()),
                Vec::new(),
            )
        }
    };
    let session_id = match mode {
        SessionMode::Sessionless => 0,
        SessionMode::Full { id } | SessionMode::Incremental { id } => id,
    };
    let answer = |(mut topics, regions): (Vec<FetchableTopicResponse>, Vec<Spliced>)| {
        // Partitions with file regions have records: a session keeps them.
        ctx.fetch_sessions.finish(mode, &mut topics);
        let resp = FetchResponse::default()
            .with_session_id(session_id)
            .with_responses(topics);
        (resp, regions)
    };
    // The broker's fetch.max.bytes caps every response (a client's 0 or
    // negative max_bytes included), as in Kafka.
    let cap = ctx.settings.fetch_max_bytes;
    let max_bytes = if req.max_bytes <= 0 {
        cap
    } else {
        (req.max_bytes as usize).min(cap)
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = monotonic_now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    // The topics as they are now: a long poll answers about these, never
    // about a topic of the same name created after they were deleted.
    let ids: HashMap<String, uuid::Uuid> = wanted
        .iter()
        .filter_map(|w| {
            let name = w.topic.0.to_string();
            let id = ctx.engine.topic(&name).ok()?.id;
            Some((name, id))
        })
        .collect();
    let ids = Arc::new(ids);
    let read_committed = req.isolation_level == 1;
    let mut appends = ctx.engine.subscribe_appends();
    loop {
        // Mark the current appends as seen before reading, so none is missed.
        appends.borrow_and_update();
        let (topics, bytes, answer_now) = read_once(
            ctx,
            auth,
            wanted.clone(),
            max_bytes,
            Arc::clone(&ids),
            read_committed,
            zero_copy,
        )
        .await;
        if bytes >= min_bytes || answer_now || monotonic_now() >= deadline {
            return answer(topics);
        }
        // A long poll's wait is not request handling (request_percentage).
        let changed = super::throttling::parked(async {
            tokio::select! {
                changed = appends.changed() => changed.is_err(),
                _ = monotonic_sleep_until(deadline) => false,
            }
        })
        .await;
        if changed {
            return answer(topics);
        }
    }
}

/// A remote read started for a partition: its reserved bytes, and whether
/// it was the response's first data (KIP-74: it may exceed them).
struct StartedRemote {
    read: crate::RemoteRead,
    reserved: usize,
    first: bool,
}

/// Read every wanted partition once: the response topics (and the file
/// regions of their placeholders, in order), the record bytes in them, and
/// whether to answer now without waiting for `min_bytes`
/// (a partition failed, or was read from the remote tier). Local partitions are read on the
/// blocking pool; remote ones run on the remote tier's runtime, waited for
/// at most `remote.fetch.max.wait.ms` — one still running then answers
/// empty and leaves its chunks in the cache for the client's next fetch.
async fn read_once(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    wanted: Vec<Wanted>,
    max_bytes: usize,
    ids: Arc<HashMap<String, uuid::Uuid>>,
    read_committed: bool,
    zero_copy: bool,
) -> ((Vec<FetchableTopicResponse>, Vec<Spliced>), usize, bool) {
    let auth = auth.clone();
    let started = ctx
        .blocking(move |engine| {
            #[allow(clippy::type_complexity)]
            let mut out: Vec<(
                Wanted,
                PartitionData,
                Option<Spliced>,
                Option<StartedRemote>,
            )> = Vec::new();
            let mut remaining = max_bytes;
            let mut total = 0usize;
            let mut errored = false;
            let mut remote_reads = 0;
            // Remote partitions whose next chunk is still loading: (index
            // in `out`, the read, its limit).
            let mut deferred = Vec::new();
            for w in wanted {
                let name = w.topic.0.to_string();
                let mut data = PartitionData::default()
                    .with_partition_index(w.partition)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
                    .with_preferred_read_replica((-1).into())
                    .with_aborted_transactions(Some(Vec::new()))
                    .with_records(Some(Bytes::new()));
                if !auth.topic(AclOperation::Read, &name) {
                    errored = true;
                    data.error_code = ResponseError::TopicAuthorizationFailed.code();
                    out.push((w, data, None, None));
                    continue;
                }
                let limit = (w.max_bytes.max(0) as usize).min(remaining);
                let replaced = ids
                    .get(&name)
                    .is_some_and(|id| engine.topic(&name).map(|t| t.id).ok() != Some(*id));
                let result = if w.partition < 0 {
                    Err(crate::Error::not_found(format!(
                        "partition {}",
                        w.partition
                    )))
                } else if replaced {
                    Err(crate::Error::not_found(format!(
                        "topic '{name}' was deleted during the fetch"
                    )))
                } else if let Some(e) = leader_epochs::partition_epoch_error(
                    engine,
                    &name,
                    w.partition,
                    w.current_leader_epoch,
                ) {
                    // FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH: nothing
                    // read, offsets -1 (as Kafka answers it), answered now.
                    errored = true;
                    data.error_code = e.code();
                    out.push((w, data, None, None));
                    continue;
                } else {
                    // KIP-74: only the first data of the whole response may
                    // exceed the limits.
                    let first = total == 0 && remaining == max_bytes;
                    engine.start_read(&name, w.partition as u32, w.offset, limit, first, zero_copy)
                };
                let mut remote = None;
                let mut region = None;
                let mut local = false;
                match result {
                    Ok(crate::ReadStart::Done(read)) => {
                        set_offsets(&mut data, read.log_start_offset, read.log_end_offset);
                        data.records = Some(Bytes::from(read.records));
                        local = true;
                    }
                    Ok(crate::ReadStart::File(read)) => {
                        set_offsets(&mut data, read.log_start_offset, read.log_end_offset);
                        region = Some(Spliced::File(read.region));
                        local = true;
                    }
                    Ok(crate::ReadStart::Remote(r)) => {
                        set_offsets(&mut data, r.log_start_offset(), r.log_end_offset());
                        if read_committed {
                            // Its aborted transactions come after its
                            // records: their `.txnindex`es load meanwhile.
                            engine.warm_aborted_txns(&r);
                        }
                        // Nothing could be returned, or enough remote reads
                        // started: answer empty, the client asks again.
                        let first = total == 0 && remaining == max_bytes;
                        // Only reads the response waits for count toward
                        // the cap: one whose first chunk is cached is a
                        // memory read, and one whose chunk is loading in
                        // the background is left for the client's next
                        // Fetch (the broker's GET slots bound those loads).
                        if limit > 0 || first {
                            match engine.remote_read_ready(&r) {
                                Some(false) => {
                                    // Its chunk is loading now: read only
                                    // if nothing else can answer, else left
                                    // for the client's next Fetch.
                                    deferred.push((out.len(), r, limit));
                                }
                                ready
                                    if ready == Some(true)
                                        || remote_reads < MAX_REMOTE_PARTITIONS_PER_FETCH =>
                                {
                                    if ready.is_none() {
                                        remote_reads += 1;
                                    }
                                    // Its bytes are not known yet: reserve
                                    // its limit.
                                    remaining = remaining.saturating_sub(limit.max(1));
                                    remote = Some(StartedRemote {
                                        read: r,
                                        reserved: limit,
                                        first,
                                    });
                                }
                                _ => {}
                            }
                        }
                    }
                    Err(e) => {
                        errored = true;
                        set_error(engine, &mut data, &name, w.partition, &e);
                    }
                }
                if local {
                    stable_view(
                        engine,
                        &name,
                        w.partition,
                        w.offset,
                        &mut data,
                        &mut region,
                        read_committed,
                    );
                    let len = records_len(&data, region.as_ref());
                    remaining = remaining.saturating_sub(len);
                    total += len;
                }
                out.push((w, data, region, remote));
            }
            if total == 0 && !out.iter().any(|o| o.3.is_some()) {
                // Nothing else to answer with: wait for some after all, as
                // many as the cap and the response's bytes allow (their
                // limits were taken before any was reserved); the others'
                // loads go on for the client's next Fetch.
                let mut left = Vec::new();
                for (i, r, limit) in deferred.drain(..) {
                    let first = remaining == max_bytes;
                    if remote_reads >= MAX_REMOTE_PARTITIONS_PER_FETCH
                        || (!first && limit > remaining)
                    {
                        left.push((i, r, limit));
                        continue;
                    }
                    remote_reads += 1;
                    remaining = remaining.saturating_sub(limit.max(1));
                    out[i].3 = Some(StartedRemote {
                        read: r,
                        reserved: limit,
                        first,
                    });
                }
                deferred = left;
            }
            // Answer now: the client's next Fetch finds the chunks loaded.
            errored |= !deferred.is_empty();
            (out, total, errored, deferred)
        })
        .await;
    let Ok((parts, mut total, mut errored, deferred)) = started else {
        return ((Vec::new(), Vec::new()), 0, true);
    };
    let deadline = monotonic_now() + ctx.engine.remote_fetch_max_wait();
    // The remote reads run at once (spawned on the remote tier's runtime
    // as they are started), and so does what follows each: its last
    // stable offset and, for read_committed, its aborted transactions
    // (the first read of a tiered range loads `.txnindex` objects: one
    // partition's GETs must not wait behind another's).
    let finish = |w: Wanted, data: PartitionData, read: crate::RemoteRead, over: Option<usize>| {
        finish_remote(
            ctx,
            w,
            data,
            ctx.engine.read_remote(read),
            deadline,
            read_committed,
            zero_copy,
            over,
        )
    };
    let finishing: Vec<_> = parts
        .into_iter()
        .map(|(w, data, region, remote)| match remote {
            None => futures::future::Either::Left(std::future::ready((w, data, region, None))),
            Some(r) => {
                let over = r.first.then_some(r.reserved);
                futures::future::Either::Right(finish(w, data, r.read, over))
            }
        })
        .collect();
    let mut finished = futures::future::join_all(finishing).await;
    // While it waited, the chunks of partitions left for the next Fetch
    // may have arrived: read those now cached, within the bytes left, so
    // a Fetch that waited for one partition does not answer with it alone.
    if !deferred.is_empty() && finished.iter().any(|f| f.3.is_some()) {
        let read: usize = finished
            .iter()
            .filter(|f| f.3.is_some())
            .map(|f| records_len(&f.1, f.2.as_ref()))
            .sum();
        let mut room = max_bytes.saturating_sub(total + read);
        let mut topping = Vec::new();
        for (i, r, limit) in deferred {
            if limit == 0 || limit > room || !ctx.engine.remote_read_cached(&r) {
                continue;
            }
            room -= limit;
            let done = finish(finished[i].0.clone(), finished[i].1.clone(), r, None);
            topping.push(async move {
                let done = done.await;
                (i, done)
            });
        }
        for (i, done) in futures::future::join_all(topping).await {
            finished[i] = done;
        }
    }
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut regions: Vec<Spliced> = Vec::new();
    // Set when the response's first data, read remotely, came back larger
    // than its reservation (one oversized batch, KIP-74): what later
    // partitions read against that reservation is dropped, so the response
    // stays within max(fetch.max.bytes, that batch). Their offsets stay;
    // the client fetches them again.
    let mut overshoot = false;
    for (w, mut data, mut region, remote) in finished {
        if let Some(over) = remote {
            errored = true; // answer now: the remote tier was involved
            let len = records_len(&data, region.as_ref());
            total += len;
            overshoot |= over.is_some_and(|reserved| len > reserved);
        } else if overshoot {
            if let Some(records) = data.records.as_mut().filter(|r| !r.is_empty()) {
                total -= records.len();
                *records = Bytes::new();
            }
            if let Some(r) = region.take() {
                total -= r.len();
            }
        }
        if let Some(r) = region {
            data.records = Some(super::records_send::placeholder());
            regions.push(r);
        }
        match topics.last_mut() {
            Some(t) if t.topic == w.topic && t.topic_id == w.topic_id => t.partitions.push(data),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(w.topic)
                    .with_topic_id(w.topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    ((topics, regions), total, errored)
}

/// A remote read of a Fetch, waited for until `deadline`, and what follows
/// it ([`stable_view`]): the partition with its records, the records to
/// splice in (a read in several slices of cached chunks, sent from there
/// when `zero_copy`), and `Some(over)` (the read's reservation when it was
/// the response's first data) to say the remote tier was involved.
#[allow(clippy::too_many_arguments)]
async fn finish_remote(
    ctx: &Arc<Ctx>,
    w: Wanted,
    mut data: PartitionData,
    read: impl std::future::Future<Output = crate::Result<crate::RemoteReadResult>>,
    deadline: tokio::time::Instant,
    read_committed: bool,
    zero_copy: bool,
    over: Option<usize>,
) -> (
    Wanted,
    PartitionData,
    Option<Spliced>,
    Option<Option<usize>>,
) {
    let mut spliced = None;
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(read)) => {
            set_offsets(&mut data, read.log_start_offset, read.log_end_offset);
            if zero_copy
                && read.batches.parts().len() > 1
                && read.batches.len() >= super::records_send::SPLICE_MIN_BYTES
            {
                spliced = Some(Spliced::memory(read.batches));
            } else {
                data.records = Some(read.batches.into_bytes());
            }
            // The partition's lock again: off this worker.
            let engine = Arc::clone(&ctx.engine);
            let (name, partition, offset) = (w.topic.0.to_string(), w.partition, w.offset);
            let (before, before_spliced) = (data.clone(), spliced.clone());
            match tokio::task::spawn_blocking(move || {
                let (mut d, mut s) = (before, before_spliced);
                stable_view(
                    &engine,
                    &name,
                    partition,
                    offset,
                    &mut d,
                    &mut s,
                    read_committed,
                );
                (d, s)
            })
            .await
            {
                Ok((d, s)) => (data, spliced) = (d, s),
                Err(_) => {
                    data.records = Some(Bytes::new());
                    spliced = None;
                }
            }
        }
        Ok(Err(e)) => {
            // offsets() takes the partition's lock, which an append
            // may hold across an fsync: not on this worker.
            let engine = Arc::clone(&ctx.engine);
            let (name, partition) = (w.topic.0.to_string(), w.partition);
            let before = data.clone();
            data = tokio::task::spawn_blocking(move || {
                let mut d = before;
                set_error(&engine, &mut d, &name, partition, &e);
                d
            })
            .await
            .unwrap_or(data);
        }
        Err(_) => {
            tracing::debug!(topic = %w.topic.0, partition = w.partition, offset = w.offset, "remote read still running; answering without it");
        }
    }
    (w, data, spliced, Some(over))
}

/// The bytes of records a partition returns: those spliced in (a file
/// region, slices in memory), or its records field's.
fn records_len(data: &PartitionData, region: Option<&Spliced>) -> usize {
    region.map_or_else(|| data.records.as_ref().map_or(0, |r| r.len()), |r| r.len())
}

/// Put `e` on the partition, with its offsets when the client needs them to
/// reset (OFFSET_OUT_OF_RANGE).
fn set_error(
    engine: &crate::Engine,
    data: &mut PartitionData,
    name: &str,
    partition: i32,
    e: &crate::Error,
) {
    data.error_code = errors::code(e);
    if e.kind() != crate::ErrorKind::OutOfRange {
        tracing::warn!(topic = %escape(name), partition, error = %escape(&e.to_string()), "fetch failed");
    }
    if data.error_code == ResponseError::OffsetOutOfRange.code() {
        if let Ok(o) = engine.offsets(name, partition as u32) {
            set_offsets(data, o.log_start_offset, o.log_end_offset);
        }
    }
}

/// The last stable offset on a partition read from `offset`, and for
/// read_committed (isolation level 1) the records cut to whole batches
/// below it and the aborted transactions overlapping what is returned
/// (clients drop those producers' records from each one's first offset
/// until its ABORT marker). Markers stay in the records: clients skip
/// control batches. Records spliced in (`region`: a file region, or a
/// remote read's slices) stay there when all of them are below the last
/// stable offset; else they are read into one buffer, and cut.
fn stable_view(
    engine: &crate::Engine,
    name: &str,
    partition: i32,
    offset: i64,
    data: &mut PartitionData,
    region: &mut Option<Spliced>,
    read_committed: bool,
) {
    let Ok(p) = u32::try_from(partition) else {
        return;
    };
    let Ok(lso) = engine.last_stable_offset(name, p) else {
        return;
    };
    data.last_stable_offset = lso;
    if !read_committed {
        return;
    }
    let next = match region.take() {
        Some(r) if r.next_offset().is_some_and(|n| n <= lso) => {
            let next = r.next_offset();
            *region = Some(r);
            next
        }
        Some(r) => {
            // Some of it is at or above the last stable offset: cut it in
            // memory (an open transaction; rare on a fetch).
            let records = match r.read() {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(topic = %escape(name), partition, error = %escape(&e.to_string()), "fetch failed");
                    data.error_code = errors::code(&e);
                    data.records = Some(Bytes::new());
                    return;
                }
            };
            cut_below(data, records, lso)
        }
        None => {
            let records = data.records.take().unwrap_or_default();
            cut_below(data, records, lso)
        }
    };
    let upper = next.unwrap_or(offset);
    let aborted = if upper > offset {
        match engine.aborted_txns(name, p, offset, upper) {
            Ok(a) => a,
            Err(e) => {
                // Without the list a consumer would take aborted records
                // for committed ones: no records, the error instead.
                data.records = Some(Bytes::new());
                data.error_code = errors::code(&e);
                tracing::warn!(topic = %escape(name), partition, error = %escape(&e.to_string()), "cannot collect aborted transactions");
                return;
            }
        }
    } else {
        Vec::new()
    };
    data.aborted_transactions = Some(
        aborted
            .into_iter()
            .map(|a| {
                AbortedTransaction::default()
                    .with_producer_id(a.producer_id.into())
                    .with_first_offset(a.first_offset)
            })
            .collect(),
    );
}

/// Put the whole batches of `records` below `lso` into `data`; the offset
/// after the last of them, if any.
fn cut_below(data: &mut PartitionData, records: Bytes, lso: i64) -> Option<i64> {
    let (len, next) = crate::format::batch::prefix_below(&records, lso);
    data.records = Some(records.slice(..len));
    next
}

/// The partition's offsets as a fetch reports them (one replica: the high
/// watermark is the log end; the last stable offset is set by
/// [`stable_view`]).
fn set_offsets(data: &mut PartitionData, log_start_offset: i64, log_end_offset: i64) {
    data.high_watermark = log_end_offset;
    data.last_stable_offset = log_end_offset;
    data.log_start_offset = log_start_offset;
}
