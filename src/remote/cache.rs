//! Caches of the remote read path, with `moka`: fixed-size chunks of
//! tiered `.log` objects and whole decoded `.index`/`.timeindex`/`.txnindex`
//! objects (a `.txnindex` missing from an older segment: the aborted
//! transactions its manifest's producer snapshot lists),
//! each weighted by bytes. A miss runs its loader once: concurrent readers
//! of the same chunk wait for that one GET instead of issuing their own.
//! Each cache counts its hits, misses and evictions in the engine's
//! metrics.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::format::index::{OffsetEntry, TimeEntry};
use crate::metrics::CacheMetrics;

/// Read positions remembered for sequential readers.
const MAX_POSITIONS: usize = 16_384;

/// A chunk: the segment it belongs to and its number (chunk `n` covers bytes
/// `n * chunk_size ..` of the `.log` object).
pub type ChunkKey = (uuid::Uuid, u64);

/// A decoded index object of a tiered segment.
#[derive(Debug)]
pub enum IndexData {
    Offsets(Vec<OffsetEntry>),
    Times(Vec<TimeEntry>),
    /// The aborted transactions whose markers the segment holds.
    Txns(Vec<crate::format::producer_snapshot::AbortedTxn>),
}

impl IndexData {
    fn weight(&self) -> usize {
        64 + match self {
            IndexData::Offsets(v) => v.len() * std::mem::size_of::<OffsetEntry>(),
            IndexData::Times(v) => v.len() * std::mem::size_of::<TimeEntry>(),
            IndexData::Txns(v) => {
                v.len() * std::mem::size_of::<crate::format::producer_snapshot::AbortedTxn>()
            }
        }
    }
}

/// Which index of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKind {
    Offsets,
    Times,
    Txns,
}

/// The chunk cache, the index cache, and where sequential readers of a
/// segment left off.
#[derive(Clone)]
pub struct RemoteCache {
    chunks: moka::future::Cache<ChunkKey, Bytes>,
    indexes: moka::future::Cache<(uuid::Uuid, IndexKind), Arc<IndexData>>,
    /// `(segment, offset) → byte position` of the batch a read stopped
    /// before: the next read of a sequential consumer starts there without
    /// the `.index` object.
    positions: Arc<std::sync::Mutex<std::collections::HashMap<(uuid::Uuid, i64), u64>>>,
    chunk_metrics: CacheMetrics,
    index_metrics: CacheMetrics,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("chunk_bytes", &self.chunks.weighted_size())
            .field("index_bytes", &self.indexes.weighted_size())
            .finish()
    }
}

fn weight(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A chunk's weight in the chunk cache.
fn chunk_weight(v: &Bytes) -> u32 {
    weight(v.len())
}

/// A decoded index's weight in the index cache.
fn index_weight(v: &Arc<IndexData>) -> u32 {
    weight(v.weight())
}

/// A cache's removal listener: takes each removed entry's weight off the
/// cache's bytes (an entry refused at admission included: moka reports it
/// too) and counts the ones evicted for room (not those invalidated).
fn count_removals<K, V: 'static>(
    m: &CacheMetrics,
    weigh: fn(&V) -> u32,
) -> impl Fn(Arc<K>, V, moka::notification::RemovalCause) + Send + Sync + 'static {
    let (evictions, bytes) = (m.evictions.clone(), m.bytes.clone());
    move |_, v, cause| {
        bytes.dec_by(i64::from(weigh(&v)));
        if cause == moka::notification::RemovalCause::Size {
            evictions.inc();
        }
    }
}

/// A loader's error, shared by every waiter, as an engine error.
fn shared(e: Arc<Error>) -> Error {
    Error::new(e.kind(), e.message().to_string())
}

impl RemoteCache {
    /// Caches holding at most `chunk_bytes` of chunks and `index_bytes` of
    /// decoded indexes, counting their lookups and evictions in
    /// `chunk_metrics` and `index_metrics`.
    pub fn new(
        chunk_bytes: u64,
        index_bytes: u64,
        chunk_metrics: CacheMetrics,
        index_metrics: CacheMetrics,
    ) -> Self {
        RemoteCache {
            // LRU, not moka's default TinyLFU: a catch-up read is a scan,
            // and TinyLFU would refuse to admit the new (prefetched) chunks
            // over older ones read more often, so they would be fetched twice.
            chunks: moka::future::Cache::builder()
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .max_capacity(chunk_bytes)
                .weigher(|_, v: &Bytes| chunk_weight(v))
                .eviction_listener(count_removals(&chunk_metrics, chunk_weight))
                .build(),
            indexes: moka::future::Cache::builder()
                .max_capacity(index_bytes)
                .weigher(|_, v: &Arc<IndexData>| index_weight(v))
                .eviction_listener(count_removals(&index_metrics, index_weight))
                .build(),
            positions: Default::default(),
            chunk_metrics,
            index_metrics,
        }
    }

    /// Where the batch holding `offset` starts, if a read stopped there.
    pub fn position(&self, segment: uuid::Uuid, offset: i64) -> Option<u64> {
        crate::lock(&self.positions)
            .get(&(segment, offset))
            .copied()
    }

    /// A read of `segment` stopped before the batch at `position`, whose
    /// first offset is `offset`.
    pub fn remember_position(&self, segment: uuid::Uuid, offset: i64, position: u64) {
        let mut positions = crate::lock(&self.positions);
        if positions.len() >= MAX_POSITIONS {
            positions.clear(); // a hint only: forgetting costs an index read
        }
        positions.insert((segment, offset), position);
    }

    /// The chunk, loading it with `load` on a miss (once, whoever asks
    /// meanwhile).
    pub async fn chunk(
        &self,
        key: ChunkKey,
        load: impl std::future::Future<Output = Result<Bytes>>,
    ) -> Result<Bytes> {
        let m = &self.chunk_metrics;
        let entry = self
            .chunks
            .entry(key)
            .or_try_insert_with(async {
                m.misses.inc();
                let chunk = load.await?;
                // Counted before it is in: its removal comes after.
                m.bytes.inc_by(i64::from(chunk_weight(&chunk)));
                Ok(chunk)
            })
            .await
            .map_err(shared)?;
        if entry.is_fresh() {
            // Evict for it now: moka otherwise applies evictions in
            // batches of writes, and a batch of multi-MiB chunks would
            // hold memory well past `remote.cache.bytes`.
            self.chunks.run_pending_tasks().await;
        } else {
            m.hits.inc();
        }
        Ok(entry.into_value())
    }

    /// Drop a chunk (read to its end by a sequential reader); the bytes
    /// it held, 0 if it was not cached.
    pub async fn drop_chunk(&self, key: ChunkKey) -> u64 {
        self.chunks.remove(&key).await.map_or(0, |c| c.len() as u64)
    }

    /// Chunks evicted for room so far (not those dropped or invalidated):
    /// a chunk loaded ahead and evicted before it was read is fetched
    /// twice.
    pub fn chunk_evictions(&self) -> u64 {
        self.chunk_metrics.evictions.get()
    }

    /// Bytes held by the chunk cache now (moka's count, which may lag
    /// its last few writes).
    pub fn chunk_weight(&self) -> u64 {
        self.chunks.weighted_size()
    }

    /// Whether the chunk is cached now.
    pub fn has_chunk(&self, key: &ChunkKey) -> bool {
        self.chunks.contains_key(key)
    }

    /// Whether `segment`'s index of `kind` is cached.
    pub fn has_index(&self, segment: uuid::Uuid, kind: IndexKind) -> bool {
        self.indexes.contains_key(&(segment, kind))
    }

    /// The decoded index, loading it with `load` on a miss.
    pub async fn index(
        &self,
        segment: uuid::Uuid,
        kind: IndexKind,
        load: impl std::future::Future<Output = Result<Arc<IndexData>>>,
    ) -> Result<Arc<IndexData>> {
        let m = &self.index_metrics;
        let entry = self
            .indexes
            .entry((segment, kind))
            .or_try_insert_with(async {
                m.misses.inc();
                let index = load.await?;
                m.bytes.inc_by(i64::from(index_weight(&index)));
                Ok(index)
            })
            .await
            .map_err(shared)?;
        if !entry.is_fresh() {
            m.hits.inc();
        }
        Ok(entry.into_value())
    }

    /// Drop everything (benchmarks start cold with it).
    pub async fn clear(&self) {
        self.chunks.invalidate_all();
        self.indexes.invalidate_all();
        crate::lock(&self.positions).clear();
        self.chunks.run_pending_tasks().await;
        self.indexes.run_pending_tasks().await;
    }

    /// Bytes held by the chunk cache (after pending maintenance).
    pub async fn chunk_bytes(&self) -> u64 {
        self.chunks.run_pending_tasks().await;
        self.chunks.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hits, misses, evictions and bytes as an operator reads them: a
    /// chunk cache with room for two 40-byte chunks, three loaded.
    #[test]
    fn lookups_evictions_and_bytes_are_counted() {
        let (chunks, indexes) = (CacheMetrics::default(), CacheMetrics::default());
        let cache = RemoteCache::new(100, 100, chunks.clone(), indexes.clone());
        let segment = uuid::Uuid::new_v4();
        let chunk = |n: u64| {
            let cache = cache.clone();
            futures::executor::block_on(async move {
                cache
                    .chunk((segment, n), async { Ok(Bytes::from(vec![0u8; 40])) })
                    .await
                    .unwrap()
            })
        };
        chunk(0);
        chunk(0);
        assert_eq!((chunks.misses.get(), chunks.hits.get()), (1, 1));
        assert_eq!(chunks.bytes.get(), 40);
        chunk(1);
        chunk(2);
        futures::executor::block_on(cache.chunks.run_pending_tasks());
        assert_eq!(chunks.misses.get(), 3);
        assert_eq!(chunks.evictions.get(), 1, "one chunk evicted for room");
        assert_eq!(chunks.bytes.get(), 80, "two chunks held");
        assert_eq!(cache.chunks.weighted_size(), 80);
        // Dropping everything is not an eviction, and leaves no bytes.
        futures::executor::block_on(cache.clear());
        assert_eq!((chunks.evictions.get(), chunks.bytes.get()), (1, 0));
        assert_eq!(indexes.misses.get(), 0);
    }
}
