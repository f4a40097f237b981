//! Caches of the remote read path, with `moka`: fixed-size chunks of
//! tiered `.log` objects and whole decoded `.index`/`.timeindex` objects,
//! each weighted by bytes. A miss runs its loader once: concurrent readers
//! of the same chunk wait for that one GET instead of issuing their own.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::format::index::{OffsetEntry, TimeEntry};

/// A chunk: the segment it belongs to and its number (chunk `n` covers bytes
/// `n * chunk_size ..` of the `.log` object).
pub type ChunkKey = (uuid::Uuid, u64);

/// A decoded index object of a tiered segment.
#[derive(Debug)]
pub enum IndexData {
    Offsets(Vec<OffsetEntry>),
    Times(Vec<TimeEntry>),
}

impl IndexData {
    fn weight(&self) -> usize {
        64 + match self {
            IndexData::Offsets(v) => v.len() * std::mem::size_of::<OffsetEntry>(),
            IndexData::Times(v) => v.len() * std::mem::size_of::<TimeEntry>(),
        }
    }
}

/// Which index of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKind {
    Offsets,
    Times,
}

/// The chunk cache and the index cache.
#[derive(Clone)]
pub struct RemoteCache {
    chunks: moka::future::Cache<ChunkKey, Bytes>,
    indexes: moka::future::Cache<(uuid::Uuid, IndexKind), Arc<IndexData>>,
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

/// A loader's error, shared by every waiter, as an engine error.
fn shared(e: Arc<Error>) -> Error {
    Error::new(e.kind(), e.message().to_string())
}

impl RemoteCache {
    /// Caches holding at most `chunk_bytes` of chunks and `index_bytes` of
    /// decoded indexes.
    pub fn new(chunk_bytes: u64, index_bytes: u64) -> Self {
        RemoteCache {
            chunks: moka::future::Cache::builder()
                .max_capacity(chunk_bytes)
                .weigher(|_, v: &Bytes| weight(v.len()))
                .build(),
            indexes: moka::future::Cache::builder()
                .max_capacity(index_bytes)
                .weigher(|_, v: &Arc<IndexData>| weight(v.weight()))
                .build(),
        }
    }

    /// The chunk, loading it with `load` on a miss (once, whoever asks
    /// meanwhile).
    pub async fn chunk(
        &self,
        key: ChunkKey,
        load: impl std::future::Future<Output = Result<Bytes>>,
    ) -> Result<Bytes> {
        self.chunks.try_get_with(key, load).await.map_err(shared)
    }

    /// Whether the chunk is cached now.
    pub fn has_chunk(&self, key: &ChunkKey) -> bool {
        self.chunks.contains_key(key)
    }

    /// The decoded index, loading it with `load` on a miss.
    pub async fn index(
        &self,
        segment: uuid::Uuid,
        kind: IndexKind,
        load: impl std::future::Future<Output = Result<Arc<IndexData>>>,
    ) -> Result<Arc<IndexData>> {
        self.indexes
            .try_get_with((segment, kind), load)
            .await
            .map_err(shared)
    }

    /// Drop everything (benchmarks start cold with it).
    pub async fn clear(&self) {
        self.chunks.invalidate_all();
        self.indexes.invalidate_all();
        self.chunks.run_pending_tasks().await;
        self.indexes.run_pending_tasks().await;
    }

    /// Bytes held by the chunk cache (after pending maintenance).
    pub async fn chunk_bytes(&self) -> u64 {
        self.chunks.run_pending_tasks().await;
        self.chunks.weighted_size()
    }
}
