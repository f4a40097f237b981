//! Reading tiered segments: the remote half of the fetch path.
//!
//! A read names a `COPY_FINISHED` segment (from the partition's in-memory
//! map) and an offset. The byte position comes from the segment's `.index`
//! object (fetched whole, checked against its CRC32C, decoded and cached),
//! or is 0 when the offset is the segment's first. The `.log` object is read
//! in fixed-size aligned chunks with ranged GETs; each chunk is checked
//! against the manifest's block checksums before it is cached, so a corrupt
//! or truncated object is an error naming it, never wrong bytes. Whole
//! batches only, as stored.
//!
//! Every read then prefetches the chunks after the one it ended in (into
//! the next segment when the read reached the end of this one), through the
//! same cache, so a prefetch and a reader asking for the same chunk share
//! one GET. How many is each partition's read-ahead window
//! (`read_ahead.rs`): it starts at `remote.fetch.prefetch.chunks` and grows
//! while that raises the reader's throughput, within the partition's share
//! of the chunk cache and of the broker's chunk GETs in flight
//! (`remote.fetch.max.concurrent.gets`, which bounds demand GETs too).
//! Prefetches beyond a partition's share or the broker's cap are skipped,
//! never queued. Bytes being prefetched are counted
//! ([`FetchStats::prefetch_bytes_in_flight`]).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStoreExt;

use super::cache::{IndexData, IndexKind, RemoteCache};
use super::keys::{segment_key, SegmentObject};
use super::read_ahead::ReadAheads;
use super::RemoteStore;
use crate::catalog::RemoteSegment;
use crate::error::{Error, ErrorKind, Result};
use crate::format::batch::{BatchHeader, TimestampType, HEADER_SIZE};
use crate::format::index::{decode_offset_index, decode_time_index};
use crate::format::records::decode_records;
use crate::log::TimestampAndOffset;
use crate::metrics::CacheMetrics;
use crate::sync::TaskTracker;

/// Settings of the remote read path (broker config names in brackets).
#[derive(Debug, Clone, Copy)]
pub struct FetchSettings {
    /// Size of the ranged GETs and of cached chunks
    /// (`remote.fetch.chunk.bytes`); rounded up to a multiple of a
    /// segment's checksum block.
    pub chunk_bytes: u64,
    /// Chunks read ahead after each read, at first
    /// (`remote.fetch.prefetch.chunks`); 0 turns read-ahead off. The
    /// window grows from there (see `read_ahead.rs`).
    pub prefetch_chunks: usize,
    /// Chunk GETs in flight at once per broker, demand and read-ahead
    /// (`remote.fetch.max.concurrent.gets`).
    pub max_concurrent_gets: usize,
    /// Bytes of chunks kept in memory (`remote.cache.bytes`).
    pub cache_bytes: u64,
    /// Bytes of decoded indexes kept in memory
    /// (`remote.index.cache.bytes`).
    pub index_cache_bytes: u64,
    /// How long a broker Fetch waits for remote data before answering with
    /// what it has (`remote.fetch.max.wait.ms`).
    pub max_wait_ms: u64,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            chunk_bytes: 8 << 20,
            prefetch_chunks: 2,
            max_concurrent_gets: DEFAULT_MAX_CONCURRENT_GETS,
            cache_bytes: DEFAULT_CACHE_BYTES,
            index_cache_bytes: 32 << 20,
            max_wait_ms: 500,
        }
    }
}

/// `.txnindex` objects a read_committed search loads at once.
const TXN_INDEX_GETS: usize = 16;

/// Chunks remembered as loaded for a reader that was put off.
const MAX_KICKED: usize = 4096;

/// Chunks remembered as kept behind their readers (the oldest are
/// forgotten beyond it; the LRU evicts those first anyway).
const MAX_KEPT_BEHIND: usize = 16_384;

/// The first chunk of `seg` (chunks of `size`) a sequential reader at
/// position `pos` still needs: the one holding `pos`, or none (the chunk
/// count) at the segment's end, whose last chunk, usually partial
/// (segments roll at batch boundaries, not chunk ones), is then read to
/// its end.
fn chunk_needed_at(seg: &RemoteSegment, pos: u64, size: u64) -> u64 {
    if pos >= seg.log_size {
        seg.log_size.div_ceil(size)
    } else {
        pos / size
    }
}

/// Default of `remote.cache.bytes`: room for 16 partitions caught up at
/// once to hold the 8 MiB chunk each reads and 3 more ahead, enough GETs
/// in flight to fill the pipe against S3 (a reader holds its chunk and its
/// window; with 256 MiB each would get one chunk ahead).
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;

/// Default of `remote.fetch.max.concurrent.gets`: enough GETs of 8 MiB at
/// ~50 ms + 90 MB/s each to fill a 4 GB/s pipe.
pub const DEFAULT_MAX_CONCURRENT_GETS: usize = 64;

/// Counters of the remote read path.
#[derive(Debug, Default)]
pub struct FetchStats {
    /// Ranged GETs of `.log` chunks (demand and prefetch).
    pub chunk_gets: AtomicU64,
    /// GETs of `.index` / `.timeindex` objects.
    pub index_gets: AtomicU64,
    /// Bytes received from the store.
    pub bytes_fetched: AtomicU64,
    /// Chunk loads started by prefetch.
    pub prefetches: AtomicU64,
    /// Bytes of chunks being loaded by prefetch now (not yet in the
    /// cache; within the cache's budget by the windows' caps).
    pub prefetch_bytes_in_flight: AtomicU64,
    /// Chunk GETs in flight now, and the most there have been.
    pub gets_in_flight: AtomicU64,
    pub max_gets_in_flight: AtomicU64,
    /// The largest read-ahead window any partition reached.
    pub max_window: AtomicU64,
    /// Chunks a sequential reader had read to their end, dropped from the
    /// cache at once to keep room for the chunks loaded ahead.
    pub dropped_behind: AtomicU64,
}

/// A read of one tiered segment.
#[derive(Debug, Clone)]
pub struct RemoteReadRequest {
    pub segment: Arc<RemoteSegment>,
    /// The segment after it, if tiered (prefetch continues there).
    pub next: Option<Arc<RemoteSegment>>,
    pub offset: i64,
    pub max_bytes: usize,
    pub min_one: bool,
    /// A consumer's read, which never comes back for what it read: the
    /// chunks it reads to their end leave the cache unless it has room
    /// beyond what the read-aheads claim (see [`RemoteFetcher::read`]). Off
    /// for readers that read the same range again (the tiered cleaner's
    /// two passes).
    pub drop_behind: bool,
}

struct Shared {
    store: RemoteStore,
    cache: RemoteCache,
    settings: FetchSettings,
    /// Chunk GETs that may still start (`remote.fetch.max.concurrent.gets`).
    get_slots: Arc<tokio::sync::Semaphore>,
    /// Prefetch chunk loads running now.
    prefetches_running: AtomicU64,
    /// Each partition's read-ahead window.
    read_aheads: std::sync::Mutex<ReadAheads>,
    /// Prefetches in flight per partition (its share of `get_slots`).
    prefetches_of: std::sync::Mutex<std::collections::HashMap<(uuid::Uuid, u32), usize>>,
    /// Reads running at once; more wait their turn (holding no chunks).
    read_slots: tokio::sync::Semaphore,
    /// Chunks being loaded by prefetch, so later reads do not pile
    /// duplicate waiters (and permits) on them.
    prefetching: std::sync::Mutex<std::collections::HashSet<super::cache::ChunkKey>>,
    stats: FetchStats,
    /// Chunks consumers read to their end and left in the cache because
    /// it had room beyond the read-aheads' claims, oldest first: they
    /// leave it first when the claims need the room.
    kept_behind: std::sync::Mutex<std::collections::VecDeque<super::cache::ChunkKey>>,
    /// Chunks [`RemoteFetcher::start_loading`] loaded for a reader it put
    /// off, so one evicted before that reader came back is not put off
    /// again.
    kicked: std::sync::Mutex<std::collections::HashSet<super::cache::ChunkKey>>,
    /// Prefetch tasks, aborted and awaited by the background-work owner at
    /// shutdown.
    tasks: TaskTracker,
}

/// Reads of tiered segments running at once, per engine.
pub const MAX_CONCURRENT_READS: usize = 16;

/// Reads tiered segments; cheap to clone.
#[derive(Clone)]
pub struct RemoteFetcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RemoteFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFetcher")
            .field("store", &self.shared.store.url())
            .field("settings", &self.shared.settings)
            .finish()
    }
}

fn object_key(seg: &RemoteSegment, o: SegmentObject) -> object_store::path::Path {
    segment_key(
        &seg.topic,
        &seg.topic_id,
        seg.partition,
        seg.base_offset,
        &seg.segment_uuid,
        o,
    )
}

fn get_error(
    key: &object_store::path::Path,
    range: Option<&Range<u64>>,
    e: object_store::Error,
) -> Error {
    let what = match range {
        Some(r) => format!("bytes {}..{} of remote object {key}", r.start, r.end),
        None => format!("remote object {key}"),
    };
    match e {
        object_store::Error::NotFound { .. } => {
            Error::data(format!("{what} is missing from the bucket: {e}")).with_source(e)
        }
        other => Error::new(
            ErrorKind::Unavailable,
            format!("cannot read {what}: {other}"),
        )
        .with_source(other),
    }
}

fn corrupt(key: &object_store::path::Path, what: String) -> Error {
    Error::data(format!("remote object {key}: {what}"))
}

impl RemoteFetcher {
    /// A fetcher whose prefetches nobody else tracks and whose caches
    /// count into metrics nobody reads (benchmarks, tools).
    pub fn new(store: RemoteStore, settings: FetchSettings) -> Self {
        Self::with_tracker(store, settings, TaskTracker::default(), Default::default())
    }

    /// A fetcher whose prefetch tasks run under `tasks`, its chunk and
    /// index caches counting into `caches`.
    pub fn with_tracker(
        store: RemoteStore,
        settings: FetchSettings,
        tasks: TaskTracker,
        caches: (CacheMetrics, CacheMetrics),
    ) -> Self {
        let slots = settings.max_concurrent_gets.max(1);
        RemoteFetcher {
            shared: Arc::new(Shared {
                cache: RemoteCache::new(
                    settings.cache_bytes,
                    settings.index_cache_bytes,
                    caches.0,
                    caches.1,
                ),
                store,
                settings,
                get_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
                prefetches_running: AtomicU64::new(0),
                read_aheads: std::sync::Mutex::new(ReadAheads::new(
                    settings.prefetch_chunks,
                    settings.cache_bytes,
                    slots,
                )),
                prefetches_of: Default::default(),
                read_slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_READS),
                prefetching: Default::default(),
                kept_behind: Default::default(),
                kicked: Default::default(),
                stats: FetchStats::default(),
                tasks,
            }),
        }
    }

    pub fn settings(&self) -> &FetchSettings {
        &self.shared.settings
    }

    /// Prefetch chunk loads running now.
    pub fn prefetches_in_flight(&self) -> usize {
        self.shared.prefetches_running.load(Ordering::SeqCst) as usize
    }

    pub fn stats(&self) -> &FetchStats {
        &self.shared.stats
    }

    pub fn cache(&self) -> &RemoteCache {
        &self.shared.cache
    }

    /// The chunk size used for `seg`: the configured size rounded up to a
    /// whole number of its checksum blocks.
    pub fn chunk_size(&self, seg: &RemoteSegment) -> u64 {
        let c = self.shared.settings.chunk_bytes.max(1);
        match &seg.log_blocks {
            Some(b) if b.block_bytes > 0 => {
                c.div_ceil(u64::from(b.block_bytes)) * u64::from(b.block_bytes)
            }
            _ => c,
        }
    }

    /// Chunk `n` of `seg`'s `.log`, from the cache or one ranged GET.
    pub async fn chunk(&self, seg: &Arc<RemoteSegment>, n: u64) -> Result<Bytes> {
        self.chunk_with(seg, n, None).await
    }

    /// [`RemoteFetcher::chunk`], its GET (if one is needed) under `permit`
    /// when given, else under one it waits for before joining the cache's
    /// load of the chunk.
    async fn chunk_with(
        &self,
        seg: &Arc<RemoteSegment>,
        n: u64,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Bytes> {
        let size = self.chunk_size(seg);
        let key = (seg.segment_uuid, n);
        // The GET slot is taken before joining the cache's load, never
        // inside it: a load waiting there for a slot, while a prefetch
        // holding the last slot waits on that same load, would never end.
        // A chunk cached now needs none (evicted in between, it is loaded
        // without one: the cap may be passed by one GET, briefly).
        let permit = match permit {
            Some(p) => Some(p),
            None if self.shared.cache.has_chunk(&key) => None,
            None => Some({
                // Not counted among the prefetches: room for it too.
                self.make_room(size).await;
                Arc::clone(&self.shared.get_slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::internal("remote reads are closed"))?
            }),
        };
        let this = self.clone();
        let owned = Arc::clone(seg);
        self.shared
            .cache
            .chunk(key, async move {
                let _permit = permit;
                let stats = &this.shared.stats;
                let now = stats.gets_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                stats.max_gets_in_flight.fetch_max(now, Ordering::Relaxed);
                let r = this.load_chunk(&owned, n, size).await;
                stats.gets_in_flight.fetch_sub(1, Ordering::Relaxed);
                r
            })
            .await
    }

    async fn load_chunk(&self, seg: &RemoteSegment, n: u64, chunk_size: u64) -> Result<Bytes> {
        let key = object_key(seg, SegmentObject::Log);
        let start = n.saturating_mul(chunk_size);
        let end = start.saturating_add(chunk_size).min(seg.log_size);
        if start >= end {
            return Err(Error::internal(format!(
                "chunk {n} is past the end of remote object {key} ({} bytes)",
                seg.log_size
            )));
        }
        let range = start..end;
        self.shared.stats.chunk_gets.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .shared
            .store
            .store
            .get_range(&key, range.clone())
            .await
            .map_err(|e| get_error(&key, Some(&range), e))?;
        self.shared
            .stats
            .bytes_fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() as u64 != end - start {
            return Err(corrupt(
                &key,
                format!(
                    "bytes {start}..{end} returned {} bytes; the catalog says the object has {}",
                    bytes.len(),
                    seg.log_size
                ),
            ));
        }
        if let Some(blocks) = &seg.log_blocks {
            if !blocks.fits(seg.log_size) {
                return Err(corrupt(
                    &key,
                    format!(
                        "{} block checksums do not cover {} bytes",
                        blocks.crc32c.len(),
                        seg.log_size
                    ),
                ));
            }
            let bb = u64::from(blocks.block_bytes);
            // start is a multiple of the block size (chunk_size is).
            for (i, block) in bytes.chunks(bb as usize).enumerate() {
                let index = (start / bb) as usize + i;
                let computed = crc32c::crc32c(block);
                let stored = blocks.crc32c[index];
                if computed != stored {
                    let from = index as u64 * bb;
                    return Err(corrupt(
                        &key,
                        format!(
                            "CRC32C of bytes {from}..{} is {computed:#010x}, the manifest says {stored:#010x}",
                            from + block.len() as u64
                        ),
                    ));
                }
            }
        }
        Ok(bytes)
    }

    async fn index(&self, seg: &RemoteSegment, kind: IndexKind) -> Result<Arc<IndexData>> {
        if kind == IndexKind::Txns {
            return self.txn_index(seg).await;
        }
        let object = match kind {
            IndexKind::Offsets => SegmentObject::Index,
            _ => SegmentObject::TimeIndex,
        };
        let expected = match kind {
            IndexKind::Offsets => seg.index_crc32c,
            _ => seg.timeindex_crc32c,
        };
        let key = object_key(seg, object);
        let shared = Arc::clone(&self.shared);
        self.shared
            .cache
            .index(seg.segment_uuid, kind, async move {
                shared.stats.index_gets.fetch_add(1, Ordering::Relaxed);
                let bytes = shared
                    .store
                    .store
                    .get(&key)
                    .await
                    .map_err(|e| get_error(&key, None, e))?
                    .bytes()
                    .await
                    .map_err(|e| get_error(&key, None, e))?;
                if let Some(stored) = expected {
                    let computed = crc32c::crc32c(&bytes);
                    if computed != stored {
                        return Err(corrupt(
                            &key,
                            format!("CRC32C is {computed:#010x}, the manifest says {stored:#010x}"),
                        ));
                    }
                }
                let data = match kind {
                    IndexKind::Offsets => decode_offset_index(&bytes).map(IndexData::Offsets),
                    _ => decode_time_index(&bytes).map(IndexData::Times),
                }
                .map_err(|e| corrupt(&key, e.to_string()))?;
                Ok(Arc::new(data))
            })
            .await
    }

    /// The aborted transactions whose ABORT markers `seg` holds: none,
    /// without a GET, when the catalog records its `.txnindex` object as
    /// empty (Kafka's KIP-1058 flag); else the object, checked against
    /// the CRC32C the catalog records; or, for a segment tiered before
    /// those objects existed (missing, and the catalog records none), the
    /// entries of its manifest's producer snapshot whose markers are in
    /// the segment. Cached like the indexes.
    async fn txn_index(&self, seg: &RemoteSegment) -> Result<Arc<IndexData>> {
        if seg.txn_index_known_empty() {
            return Ok(Arc::new(IndexData::Txns(Vec::new())));
        }
        let key = object_key(seg, SegmentObject::TxnIndex);
        let manifest_key = object_key(seg, SegmentObject::Manifest);
        let (base, last, recorded) = (seg.base_offset, seg.last_offset, seg.txnindex);
        let shared = Arc::clone(&self.shared);
        self.shared
            .cache
            .index(seg.segment_uuid, IndexKind::Txns, async move {
                shared.stats.index_gets.fetch_add(1, Ordering::Relaxed);
                let got = match shared.store.store.get(&key).await {
                    Ok(r) => Some(r.bytes().await.map_err(|e| get_error(&key, None, e))?),
                    Err(object_store::Error::NotFound { .. }) if recorded.is_none() => None,
                    Err(e) => return Err(get_error(&key, None, e)),
                };
                let entries = match got {
                    Some(bytes) => {
                        if let Some(want) = recorded {
                            let computed = crc32c::crc32c(&bytes);
                            if computed != want.crc32c {
                                return Err(corrupt(
                                    &key,
                                    format!(
                                        "CRC32C is {computed:#010x}, the catalog says {:#010x}",
                                        want.crc32c
                                    ),
                                ));
                            }
                        }
                        crate::format::txn_index::decode_txn_index(&bytes)
                            .map_err(|e| corrupt(&key, e.to_string()))?
                    }
                    None => {
                        let bytes = shared
                            .store
                            .store
                            .get(&manifest_key)
                            .await
                            .map_err(|e| get_error(&manifest_key, None, e))?
                            .bytes()
                            .await
                            .map_err(|e| get_error(&manifest_key, None, e))?;
                        let m = crate::format::manifest::SegmentManifest::from_json(&bytes)
                            .map_err(|e| corrupt(&manifest_key, e.to_string()))?;
                        if m.objects.txnindex.is_some() {
                            return Err(Error::data(format!(
                                "remote object {key} is missing from the bucket; its manifest lists it"
                            )));
                        }
                        m.producer_snapshot
                            .map(|s| s.aborted_txns)
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|a| a.last_offset >= base && a.last_offset <= last)
                            .collect()
                    }
                };
                Ok(Arc::new(IndexData::Txns(entries)))
            })
            .await
    }

    /// Whether `seg`'s `.txnindex` entries are cached.
    pub fn txn_index_cached(&self, seg: &RemoteSegment) -> bool {
        self.shared
            .cache
            .has_index(seg.segment_uuid, IndexKind::Txns)
    }

    /// Kafka's `collectAbortedTransactions` over tiered segments: the
    /// aborted transactions overlapping `[from, upper)` from the
    /// `.txnindex`es of `segments` (oldest first; those ending before
    /// `from` are skipped), until an entry's last stable offset reaches
    /// `upper`. The second value says whether that happened.
    pub async fn aborted_txns(
        &self,
        segments: &[Arc<RemoteSegment>],
        from: i64,
        upper: i64,
    ) -> Result<(Vec<crate::format::producer_snapshot::AbortedTxn>, bool)> {
        let mut found = Vec::new();
        let wanted: Vec<&Arc<RemoteSegment>> =
            segments.iter().filter(|s| s.last_offset >= from).collect();
        // Without an entry that completes the search (a topic without
        // aborted transactions never has one) every later segment's index
        // is needed: their GETs run TXN_INDEX_GETS at a time, in order.
        for group in wanted.chunks(TXN_INDEX_GETS) {
            let indexes =
                futures::future::try_join_all(group.iter().map(|seg| self.txn_index(seg))).await?;
            for data in indexes {
                let IndexData::Txns(entries) = &*data else {
                    continue;
                };
                let (mut part, complete) =
                    crate::format::txn_index::collect_aborted(entries, from, upper);
                found.append(&mut part);
                if complete {
                    return Ok((found, true));
                }
            }
        }
        Ok((found, false))
    }

    /// Byte position of the batch to start scanning at for `offset`.
    async fn position_of(&self, seg: &RemoteSegment, offset: i64) -> Result<u64> {
        if offset <= seg.base_offset {
            return Ok(0);
        }
        if let Some(pos) = self.shared.cache.position(seg.segment_uuid, offset) {
            return Ok(pos);
        }
        let index = self.index(seg, IndexKind::Offsets).await?;
        let IndexData::Offsets(entries) = &*index else {
            return Ok(0);
        };
        let relative = offset - seg.base_offset;
        let at = entries.partition_point(|e| i64::from(e.relative_offset) <= relative);
        let pos = if at == 0 {
            0
        } else {
            u64::from(entries[at - 1].position)
        };
        if pos > seg.log_size {
            return Err(corrupt(
                &object_key(seg, SegmentObject::Index),
                format!(
                    "position {pos} is past the end of the .log ({} bytes)",
                    seg.log_size
                ),
            ));
        }
        Ok(pos)
    }

    /// Whole batches of `req.segment` from the one holding `req.offset`, at
    /// most `req.max_bytes` of them (the first one whole regardless when
    /// `req.min_one`), as stored. Only the first batch may wait for a GET:
    /// the read stops before a batch whose chunk is not loaded yet, so a
    /// Fetch answers with what is cached while the read-ahead loads the
    /// rest. Then drops the chunks read to their end (`req.drop_behind`)
    /// and prefetches what follows.
    pub async fn read(&self, req: &RemoteReadRequest) -> Result<RemoteBatches> {
        let _slot = self
            .shared
            .read_slots
            .acquire()
            .await
            .map_err(|_| Error::internal("remote reads are closed"))?;
        let seg = &req.segment;
        let mut cursor = Cursor::new(self, seg);
        let mut pos = self.position_of(seg, req.offset).await?;
        let mut out = Slices::default();
        let mut next_expected = seg.base_offset;
        let mut first_copied = None;
        while pos < seg.log_size {
            // With something to return, a read never waits for a GET: it
            // answers with what is cached and the read-ahead goes on
            // loading, so the client's next fetch finds it.
            let head = pos..pos + (HEADER_SIZE as u64).min(seg.log_size - pos);
            if !out.is_empty() && !cursor.ready(head) {
                self.shared
                    .cache
                    .remember_position(seg.segment_uuid, next_expected, pos);
                break;
            }
            let header = cursor.header(pos, &mut next_expected).await?;
            let size = header.size() as u64;
            if header.last_offset() < req.offset {
                cursor.check_within(pos, size)?;
                pos += size;
                continue;
            }
            let fits = out.len as u64 + size <= req.max_bytes as u64;
            let ready = out.is_empty() || cursor.ready(pos..(pos + size).min(seg.log_size));
            if !(fits && ready || out.is_empty() && req.min_one) {
                // A sequential reader asks for this batch next.
                self.shared
                    .cache
                    .remember_position(seg.segment_uuid, header.base_offset, pos);
                break;
            }
            first_copied.get_or_insert(pos);
            let first_piece = out.pieces.len();
            cursor.slice(pos..pos + size, &mut out).await?;
            if seg.log_blocks.is_none() {
                // No block checksums to have checked it against: its own
                // CRC (copied only when it lies across two chunks).
                let batch = out.tail_from(first_piece, size as usize);
                BatchHeader::validate(&batch)
                    .map_err(|e| corrupt(cursor.key(), format!("batch at position {pos}: {e}")))?;
            }
            out.holds_records |= header.record_count > 0 || header.is_control();
            out.next_offset = Some(header.next_offset());
            pos += size;
            if !fits {
                break;
            }
        }
        let waited = cursor.waited;
        // Drop-behind first: the chunks read to their end leave before the
        // chunks the window starts loading can arrive (a store answering
        // at once would otherwise fill the cache past its size, and the
        // LRU would evict a chunk loaded ahead for another reader).
        if let Some(first) = first_copied.filter(|_| req.drop_behind) {
            self.drop_behind(seg, first, pos).await;
        }
        self.prefetch_after(seg, req.next.as_ref(), pos, out.len as u64, waited);
        Ok(out.finish())
    }

    /// Whether `req` can start without waiting for a GET: `Some(true)`
    /// when the chunk holding its first batch is cached; `Some(false)`
    /// when it is not and is loading in the background now (with the
    /// read-ahead after it); `None` when where it starts is not known
    /// without the `.index` object (not a sequential reader's next read),
    /// or no background load could start. Must run within the runtime that
    /// owns the prefetches.
    pub fn start_loading(&self, req: &RemoteReadRequest) -> Option<bool> {
        let seg = &req.segment;
        let (pos, key) = self.first_chunk(req)?;
        if self.shared.cache.has_chunk(&key) {
            crate::sync::lock(&self.shared.kicked).remove(&key);
            return Some(true);
        }
        let loading = crate::sync::lock(&self.shared.prefetching).contains(&key);
        {
            let mut kicked = crate::sync::lock(&self.shared.kicked);
            if !loading && kicked.remove(&key) {
                // Loaded for this reader before, and evicted unread: it
                // must not be put off again (it could go on forever).
                return None;
            }
            if kicked.len() >= MAX_KICKED {
                kicked.clear(); // a guard only: forgetting costs a deferral
            }
            kicked.insert(key);
        }
        self.prefetch_after(seg, req.next.as_ref(), pos, 0, true);
        // Not loading (read-ahead off, or no GET to spare): the read must
        // load it itself, or it would never be ready.
        crate::sync::lock(&self.shared.prefetching)
            .contains(&key)
            .then_some(false)
    }

    /// Whether the chunk holding `req`'s first batch is cached (it starts
    /// without a GET), without starting any load.
    pub fn first_chunk_cached(&self, req: &RemoteReadRequest) -> bool {
        self.first_chunk(req)
            .is_some_and(|(_, key)| self.shared.cache.has_chunk(&key))
    }

    /// Where `req` starts in its segment's `.log` object and the chunk
    /// holding it, when known without the `.index` object.
    fn first_chunk(&self, req: &RemoteReadRequest) -> Option<(u64, super::cache::ChunkKey)> {
        let seg = &req.segment;
        let pos = if req.offset <= seg.base_offset {
            0 // a sequential reader entering the segment
        } else {
            self.shared.cache.position(seg.segment_uuid, req.offset)?
        };
        Some((pos, (seg.segment_uuid, pos / self.chunk_size(seg))))
    }

    /// A sequential read copied `first..end` of `seg`: the chunks it read
    /// to their end are behind the reader for good. They stay cached (for
    /// another reader of the same range) only while the cache holds no
    /// more than half the room the active read-aheads do not claim
    /// ([`ReadAheads::claimed`]: each reader's current chunk and window);
    /// beyond it they leave now, and so do the chunks kept behind earlier,
    /// oldest first. Otherwise the LRU would make room for the next
    /// prefetched chunk by evicting chunks loaded ahead but not read yet
    /// (the least recently used when many partitions catch up at once),
    /// and those would be fetched twice.
    async fn drop_behind(&self, seg: &RemoteSegment, first: u64, end: u64) {
        let cache = &self.shared.cache;
        let size = self.chunk_size(seg);
        let claimed = crate::sync::lock(&self.shared.read_aheads)
            .claimed(crate::clock::monotonic_now(), size);
        // Half of what the windows leave: moka's weight lags its inserts,
        // so a cache kept full to the byte evicts chunks loaded ahead.
        let room = self.shared.settings.cache_bytes.saturating_sub(claimed) / 2;
        // A read that reached the segment's end read its last chunk to
        // the end too, partial as it usually is: left cached, those last
        // chunks would pile up outside every claim and the LRU would evict
        // for them, now and then a chunk loaded ahead and not read yet.
        let behind = (first / size..chunk_needed_at(seg, end, size)).map(|n| (seg.segment_uuid, n));
        let mut weight = cache.chunk_weight();
        if weight <= room {
            let mut kept = crate::sync::lock(&self.shared.kept_behind);
            for key in behind {
                if kept.len() >= MAX_KEPT_BEHIND {
                    kept.pop_front();
                }
                kept.push_back(key);
            }
            return;
        }
        let mut dropped = 0;
        for key in behind {
            let bytes = cache.drop_chunk(key).await;
            weight = weight.saturating_sub(bytes);
            dropped += u64::from(bytes > 0);
        }
        dropped += self.drop_kept_behind(weight, room).await;
        self.shared
            .stats
            .dropped_behind
            .fetch_add(dropped, Ordering::Relaxed);
    }

    /// Drop chunks kept behind readers, oldest first, while the cache's
    /// chunk bytes (`weight` now) are above `limit`; how many it dropped.
    async fn drop_kept_behind(&self, mut weight: u64, limit: u64) -> u64 {
        let mut dropped = 0;
        while weight > limit {
            let Some(key) = crate::sync::lock(&self.shared.kept_behind).pop_front() else {
                break;
            };
            let bytes = self.shared.cache.drop_chunk(key).await;
            weight = weight.saturating_sub(bytes);
            dropped += u64::from(bytes > 0);
        }
        dropped
    }

    /// Before loaded chunks go into the cache: drop the chunks kept
    /// behind readers (oldest first) while the cache could not take the
    /// chunks being prefetched now and `more` bytes without evicting. The
    /// LRU would evict the least recently used chunk, which is often one
    /// loaded ahead for a slow reader and not read yet (then fetched
    /// twice), not one read already.
    async fn make_room(&self, more: u64) {
        let incoming = self
            .shared
            .stats
            .prefetch_bytes_in_flight
            .load(Ordering::Relaxed)
            + more;
        let limit = self.shared.settings.cache_bytes.saturating_sub(incoming);
        let dropped = self
            .drop_kept_behind(self.shared.cache.chunk_weight(), limit)
            .await;
        self.shared
            .stats
            .dropped_behind
            .fetch_add(dropped, Ordering::Relaxed);
    }

    /// Start loading the chunks after position `pos` of `seg` in the
    /// background, as many as the partition's read-ahead window after a
    /// read of `read` bytes (`waited`: it waited for a chunk) allows.
    fn prefetch_after(
        &self,
        seg: &Arc<RemoteSegment>,
        next: Option<&Arc<RemoteSegment>>,
        pos: u64,
        read: u64,
        waited: bool,
    ) {
        if self.shared.settings.prefetch_chunks == 0
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        let size = self.chunk_size(seg);
        let reader = (seg.topic_id, seg.partition);
        let (wanted, share) = crate::sync::lock(&self.shared.read_aheads).observe(
            reader,
            read,
            waited,
            crate::clock::monotonic_now(),
            size,
        );
        self.shared
            .stats
            .max_window
            .fetch_max(wanted as u64, Ordering::Relaxed);
        if wanted == 0 {
            return;
        }
        let chunks = seg.log_size.div_ceil(size);
        // The chunk holding `pos` is needed next (it is usually cached
        // already; none at the segment's end); then the `wanted` after it.
        let mut targets: Vec<(Arc<RemoteSegment>, u64)> = (chunk_needed_at(seg, pos, size)..chunks)
            .take(wanted + 1)
            .map(|n| (Arc::clone(seg), n))
            .collect();
        if let Some(next) = next {
            let more = (wanted + 1).saturating_sub(targets.len());
            let next_chunks = next.log_size.div_ceil(self.chunk_size(next));
            targets.extend((0..next_chunks).take(more).map(|n| (Arc::clone(next), n)));
        }
        for (seg, n) in targets {
            let key = (seg.segment_uuid, n);
            if self.shared.cache.has_chunk(&key)
                || crate::sync::lock(&self.shared.prefetching).contains(&key)
            {
                continue;
            }
            // This partition's share of the GETs in flight, then the
            // broker's cap: at either, skip (never queue).
            {
                let mut of = crate::sync::lock(&self.shared.prefetches_of);
                let mine = of.entry(reader).or_insert(0);
                if *mine >= share {
                    return;
                }
                *mine += 1;
            }
            let release = move |this: &RemoteFetcher| {
                let mut of = crate::sync::lock(&this.shared.prefetches_of);
                if let Some(mine) = of.get_mut(&reader) {
                    *mine = mine.saturating_sub(1);
                    if *mine == 0 {
                        of.remove(&reader);
                    }
                }
            };
            let Ok(permit) = Arc::clone(&self.shared.get_slots).try_acquire_owned() else {
                release(self);
                return;
            };
            let csize = self.chunk_size(&seg);
            let bytes = (seg.log_size - (n * csize).min(seg.log_size)).min(csize);
            crate::sync::lock(&self.shared.prefetching).insert(key);
            let stats = &self.shared.stats;
            stats.prefetches.fetch_add(1, Ordering::Relaxed);
            stats
                .prefetch_bytes_in_flight
                .fetch_add(bytes, Ordering::Relaxed);
            self.shared
                .prefetches_running
                .fetch_add(1, Ordering::SeqCst);
            let this = self.clone();
            let done = move |this: &RemoteFetcher| {
                crate::sync::lock(&this.shared.prefetching).remove(&key);
                this.shared
                    .stats
                    .prefetch_bytes_in_flight
                    .fetch_sub(bytes, Ordering::Relaxed);
                this.shared
                    .prefetches_running
                    .fetch_sub(1, Ordering::SeqCst);
                release(this);
            };
            let started = self.shared.tasks.spawn(async move {
                this.make_room(0).await;
                if let Err(e) = this.chunk_with(&seg, n, Some(permit)).await {
                    tracing::debug!(segment = %seg.segment_uuid, chunk = n, error = %e, "prefetch failed");
                }
                done(&this);
            });
            if !started {
                // Shutting down: no new prefetch (the task and its permit
                // were dropped unrun).
                done(self);
                return;
            }
        }
    }

    /// The first record of `seg` with timestamp ≥ `timestamp` (its
    /// timestamp and offset); `None` when every record is older.
    pub async fn offset_for_timestamp(
        &self,
        seg: &Arc<RemoteSegment>,
        timestamp: i64,
    ) -> Result<Option<TimestampAndOffset>> {
        if seg.max_timestamp < timestamp {
            return Ok(None);
        }
        // The last time index entry below `timestamp` bounds where to scan
        // from: every batch before its offset is older.
        let times = self.index(seg, IndexKind::Times).await?;
        let from_offset = match &*times {
            IndexData::Times(entries) => {
                let at = entries.partition_point(|e| e.timestamp < timestamp);
                if at == 0 {
                    seg.base_offset
                } else {
                    seg.base_offset + i64::from(entries[at - 1].relative_offset)
                }
            }
            _ => seg.base_offset,
        };
        let mut pos = self.position_of(seg, from_offset).await?;
        let mut cursor = Cursor::new(self, seg);
        let mut next_expected = seg.base_offset;
        while pos < seg.log_size {
            let header = cursor.header(pos, &mut next_expected).await?;
            let size = header.size() as u64;
            // Batches the log cleaner emptied keep their max timestamp but
            // hold no record: passed over, as control batches are.
            if header.max_timestamp >= timestamp && header.record_count > 0 && !header.is_control()
            {
                if header.timestamp_type() == TimestampType::LogAppendTime {
                    return Ok(Some(TimestampAndOffset {
                        timestamp: header.max_timestamp,
                        offset: header.base_offset,
                    }));
                }
                cursor.check_within(pos, size)?;
                let mut bytes = Vec::with_capacity(size as usize);
                cursor.copy(pos..pos + size, &mut bytes).await?;
                if seg.log_blocks.is_none() {
                    BatchHeader::validate(&bytes).map_err(|e| {
                        corrupt(cursor.key(), format!("batch at position {pos}: {e}"))
                    })?;
                }
                let records = decode_records(&bytes).map_err(|e| {
                    corrupt(
                        cursor.key(),
                        format!("cannot decode batch at position {pos}: {e}"),
                    )
                })?;
                let found =
                    records
                        .iter()
                        .find(|r| r.timestamp >= timestamp)
                        .map(|r| TimestampAndOffset {
                            timestamp: r.timestamp,
                            offset: r.offset,
                        });
                if found.is_some() {
                    return Ok(found);
                }
                // The records holding it were cleaned away: scan on.
            }
            cursor.check_within(pos, size)?;
            pos += size;
        }
        Ok(None)
    }
}

/// Whole batches read from a tiered segment, as slices of the cached
/// chunks holding them: a Fetch sends them from there, with no copy (a
/// batch across a chunk boundary is two slices).
#[derive(Debug, Default, Clone)]
pub struct RemoteBatches {
    parts: Vec<Bytes>,
    len: usize,
    holds_records: bool,
    next_offset: Option<i64>,
}

impl RemoteBatches {
    /// The batches' bytes, in order; together they are the batches.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any batch holds records or is a control batch (not only
    /// batches the cleaner emptied, bare headers).
    pub fn holds_records(&self) -> bool {
        self.holds_records
    }

    /// The offset after the last batch.
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    /// `more` after these.
    pub fn append(&mut self, more: RemoteBatches) {
        if more.is_empty() {
            return;
        }
        self.parts.extend(more.parts);
        self.len += more.len;
        self.holds_records |= more.holds_records;
        self.next_offset = more.next_offset;
    }

    /// Whole batches read elsewhere (a local segment) after these.
    pub fn append_batches(&mut self, batches: Vec<u8>) {
        if batches.is_empty() {
            return;
        }
        self.holds_records |= crate::log::holds_records(&batches);
        if let Some(next) = crate::format::batch::Batches::new(&batches)
            .filter_map(|b| b.ok())
            .last()
            .map(|(_, h, _)| h.next_offset())
        {
            self.next_offset = Some(next);
        }
        self.len += batches.len();
        self.parts.push(Bytes::from(batches));
    }

    /// The parts themselves.
    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// All of it in one buffer: the only part itself, or the parts copied
    /// together.
    pub fn into_bytes(mut self) -> Bytes {
        match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts.pop().unwrap_or_default(),
            _ => Bytes::from(self.to_vec()),
        }
    }

    /// All of it copied into one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for p in &self.parts {
            out.extend_from_slice(p);
        }
        out
    }
}

/// Slices of chunks being collected by a read: consecutive ranges of one
/// chunk become one slice.
#[derive(Default)]
struct Slices {
    pieces: Vec<(u64, Bytes, Range<usize>)>,
    len: usize,
    holds_records: bool,
    next_offset: Option<i64>,
}

impl Slices {
    fn push(&mut self, n: u64, chunk: Bytes, range: Range<usize>) {
        self.len += range.len();
        match self.pieces.last_mut() {
            Some((have, _, r)) if *have == n && r.end == range.start => r.end = range.end,
            _ => self.pieces.push((n, chunk, range)),
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The last `size` bytes, which began in piece `first` or later: a
    /// slice when in one piece, else copied.
    fn tail_from(&self, first: usize, size: usize) -> std::borrow::Cow<'_, [u8]> {
        let first = first.saturating_sub(1); // it may have grown the last piece
        let pieces = &self.pieces[first.min(self.pieces.len())..];
        if let Some((_, chunk, r)) = pieces.last() {
            if r.len() >= size {
                return std::borrow::Cow::Borrowed(&chunk[r.end - size..r.end]);
            }
        }
        let mut all = Vec::new();
        for (_, chunk, r) in pieces {
            all.extend_from_slice(&chunk[r.clone()]);
        }
        let from = all.len().saturating_sub(size);
        std::borrow::Cow::Owned(all.split_off(from))
    }

    fn finish(self) -> RemoteBatches {
        RemoteBatches {
            parts: self
                .pieces
                .into_iter()
                .map(|(_, chunk, r)| chunk.slice(r))
                .collect(),
            len: self.len,
            holds_records: self.holds_records,
            next_offset: self.next_offset,
        }
    }
}

/// Reads byte ranges of one segment's `.log` through its chunks, keeping
/// the current chunk at hand.
struct Cursor<'a> {
    fetcher: &'a RemoteFetcher,
    seg: &'a Arc<RemoteSegment>,
    chunk_size: u64,
    key: object_store::path::Path,
    current: Option<(u64, Bytes)>,
    /// Whether a chunk it needed was not in the cache yet.
    waited: bool,
}

impl<'a> Cursor<'a> {
    fn new(fetcher: &'a RemoteFetcher, seg: &'a Arc<RemoteSegment>) -> Self {
        Cursor {
            fetcher,
            seg,
            chunk_size: fetcher.chunk_size(seg),
            key: object_key(seg, SegmentObject::Log),
            current: None,
            waited: false,
        }
    }

    fn key(&self) -> &object_store::path::Path {
        &self.key
    }

    /// A batch of `size` bytes at `pos` must end within the object.
    fn check_within(&self, pos: u64, size: u64) -> Result<()> {
        if pos.saturating_add(size) > self.seg.log_size {
            return Err(corrupt(
                &self.key,
                format!(
                    "the batch at position {pos} ({size} bytes) runs past the object's end ({} bytes)",
                    self.seg.log_size
                ),
            ));
        }
        Ok(())
    }

    /// Whether every chunk holding bytes `range` is at hand or cached
    /// (reading it waits for no GET).
    fn ready(&self, range: Range<u64>) -> bool {
        if range.is_empty() {
            return true;
        }
        (range.start / self.chunk_size..=(range.end - 1) / self.chunk_size).all(|n| {
            self.current.as_ref().is_some_and(|(have, _)| *have == n)
                || self
                    .fetcher
                    .shared
                    .cache
                    .has_chunk(&(self.seg.segment_uuid, n))
        })
    }

    async fn chunk(&mut self, n: u64) -> Result<Bytes> {
        if let Some((have, bytes)) = &self.current {
            if *have == n {
                return Ok(bytes.clone());
            }
        }
        if !self
            .fetcher
            .shared
            .cache
            .has_chunk(&(self.seg.segment_uuid, n))
        {
            self.waited = true;
        }
        let bytes = self.fetcher.chunk(self.seg, n).await?;
        self.current = Some((n, bytes.clone()));
        Ok(bytes)
    }

    /// Add bytes `range` of the object to `out` as slices of the chunks
    /// holding them (no copy).
    async fn slice(&mut self, range: Range<u64>, out: &mut Slices) -> Result<()> {
        self.check_range(&range)?;
        let mut pos = range.start;
        while pos < range.end {
            let n = pos / self.chunk_size;
            let chunk = self.chunk(n).await?;
            let (from, to) = self.within(n, pos, range.end, &chunk)?;
            out.push(n, chunk, from..to);
            pos += (to - from) as u64;
        }
        Ok(())
    }

    /// A range must end within the object.
    fn check_range(&self, range: &Range<u64>) -> Result<()> {
        if range.end > self.seg.log_size {
            return Err(corrupt(
                &self.key,
                format!(
                    "a batch at position {} runs past the object's end ({} bytes)",
                    range.start, self.seg.log_size
                ),
            ));
        }
        Ok(())
    }

    /// Where bytes `pos..end` of the object start and stop within chunk
    /// `n` (at most its end).
    fn within(&self, n: u64, pos: u64, end: u64, chunk: &Bytes) -> Result<(usize, usize)> {
        let from = (pos - n * self.chunk_size) as usize;
        let to = ((end - n * self.chunk_size) as usize).min(chunk.len());
        if from >= to {
            return Err(corrupt(
                &self.key,
                format!("chunk {n} is shorter than expected"),
            ));
        }
        Ok((from, to))
    }

    /// Append bytes `range` of the object to `out`.
    async fn copy(&mut self, range: Range<u64>, out: &mut Vec<u8>) -> Result<()> {
        self.check_range(&range)?;
        out.reserve((range.end - range.start) as usize);
        let mut pos = range.start;
        while pos < range.end {
            let n = pos / self.chunk_size;
            let chunk = self.chunk(n).await?;
            let (from, to) = self.within(n, pos, range.end, &chunk)?;
            out.extend_from_slice(&chunk[from..to]);
            pos += (to - from) as u64;
        }
        Ok(())
    }

    /// The batch header at `pos`, checked against the segment's offsets and
    /// the previous batch (`next_expected` moves past it).
    async fn header(&mut self, pos: u64, next_expected: &mut i64) -> Result<BatchHeader> {
        let len = (HEADER_SIZE as u64).min(self.seg.log_size - pos);
        let mut head = Vec::with_capacity(HEADER_SIZE);
        self.copy(pos..pos + len, &mut head).await?;
        let header = BatchHeader::parse(&head)
            .map_err(|e| corrupt(&self.key, format!("batch at position {pos}: {e}")))?;
        let (seg_base, seg_last) = (self.seg.base_offset, self.seg.last_offset);
        if header.base_offset < *next_expected
            || header.last_offset() > seg_last
            || header.last_offset() < header.base_offset
        {
            return Err(corrupt(
                &self.key,
                format!(
                    "batch at position {pos} holds offsets {}..={}, outside the segment's {seg_base}..={seg_last} or before the previous batch",
                    header.base_offset,
                    header.last_offset()
                ),
            ));
        }
        *next_expected = header.next_offset();
        Ok(header)
    }
}
