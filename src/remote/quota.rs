//! Remote quotas (KIP-956): `remote.log.manager.copy.max.bytes.per.second`
//! bounds the bytes the remote tier sends to the store (tiering uploads,
//! tiered compaction's uploads), `remote.log.manager.fetch.max.bytes.per.second`
//! the bytes it reads from it (catch-up reads, prefetch, tiered
//! compaction's reads), so neither can saturate a link the broker shares.
//!
//! Owns: [`RateLimiter`] (a token bucket of one second's worth of bytes
//! that lets a request through and makes the next ones wait off its debt)
//! and [`QuotaStore`], the object-store wrapper that applies the two.
//! Must never change what the wrapped store does, only when: a PUT waits
//! before it is sent, a GET's body is released no faster than the rate.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as StoreResult,
};
use tokio::time::Instant;

use crate::clock::{monotonic_now, monotonic_sleep_until};
use crate::sync::lock;

/// A token bucket of `rate` bytes per second holding at most one second's
/// worth. A request larger than what is available goes through and leaves
/// a debt the next requests wait for, so a single large object is never
/// refused and the average rate holds.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    state: std::sync::Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `bytes_per_second` at least 1.
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        RateLimiter {
            rate,
            state: std::sync::Mutex::new((rate, monotonic_now())),
        }
    }

    /// Take `bytes`, waiting first while the bucket is in debt.
    pub async fn acquire(&self, bytes: u64) {
        let wait = {
            let mut state = lock(&self.state);
            let now = monotonic_now();
            let (available, last) = *state;
            let refilled =
                (available + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
            let left = refilled - bytes as f64;
            *state = (left, now);
            if left >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-left / self.rate)
            }
        };
        if !wait.is_zero() {
            monotonic_sleep_until(monotonic_now() + wait).await;
        }
    }
}

/// The store with the copy quota on what it writes and the fetch quota on
/// what it reads (`None`: unlimited).
#[derive(Debug)]
pub struct QuotaStore {
    inner: Arc<dyn ObjectStore>,
    copy: Option<Arc<RateLimiter>>,
    fetch: Option<Arc<RateLimiter>>,
}

impl QuotaStore {
    /// `copy` and `fetch` in bytes per second; `u64::MAX` (Kafka's default,
    /// `Long.MAX_VALUE`) is unlimited.
    pub fn new(inner: Arc<dyn ObjectStore>, copy: u64, fetch: u64) -> Self {
        let limiter = |rate: u64| (rate < u64::MAX).then(|| Arc::new(RateLimiter::new(rate)));
        QuotaStore {
            inner,
            copy: limiter(copy),
            fetch: limiter(fetch),
        }
    }

    async fn copying(&self, bytes: usize) {
        if let Some(l) = &self.copy {
            l.acquire(bytes as u64).await;
        }
    }
}

impl std::fmt::Display for QuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Quota({})", self.inner)
    }
}

/// A multipart upload whose parts wait for the copy quota.
#[derive(Debug)]
struct QuotaUpload {
    inner: Box<dyn MultipartUpload>,
    copy: Option<Arc<RateLimiter>>,
}

#[async_trait]
impl MultipartUpload for QuotaUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let bytes = data.content_length() as u64;
        let part = self.inner.put_part(data);
        let copy = self.copy.clone();
        Box::pin(async move {
            if let Some(l) = copy {
                l.acquire(bytes).await;
            }
            part.await
        })
    }

    async fn complete(&mut self) -> StoreResult<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> StoreResult<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for QuotaStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        self.copying(payload.content_length()).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(QuotaUpload {
            inner,
            copy: self.copy.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> StoreResult<GetResult> {
        let head = options.head;
        let mut r = self.inner.get_opts(location, options).await?;
        let Some(fetch) = self.fetch.clone().filter(|_| !head) else {
            return Ok(r);
        };
        r.payload = match r.payload {
            // Each piece of the body waits for its bytes.
            GetResultPayload::Stream(s) => GetResultPayload::Stream(
                s.then(move |piece| {
                    let fetch = Arc::clone(&fetch);
                    async move {
                        if let Ok(b) = &piece {
                            fetch.acquire(b.len() as u64).await;
                        }
                        piece
                    }
                })
                .boxed(),
            ),
            // A local file is read by the caller: wait for its range now.
            #[allow(unreachable_patterns)]
            other => {
                fetch.acquire(r.range.end - r.range.start).await;
                other
            }
        };
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        let r = self.inner.get_ranges(location, ranges).await?;
        if let Some(l) = &self.fetch {
            l.acquire(r.iter().map(|b| b.len() as u64).sum()).await;
        }
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<Path>>,
    ) -> BoxStream<'static, StoreResult<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> StoreResult<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> StoreResult<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    use super::*;

    /// Virtual time (tokio's paused clock): waits are exact, nothing
    /// depends on the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_keep_to_their_rates_and_unlimited_is_free() {
        let store = QuotaStore::new(Arc::new(InMemory::new()), 1_000_000, 500_000);
        let key = Path::from("a");
        let started = monotonic_now();
        // 3 MB at 1 MB/s with a 1 MB bucket: 2 s.
        for _ in 0..3 {
            store
                .put(&key, Bytes::from(vec![0u8; 1_000_000]).into())
                .await
                .unwrap();
        }
        let took = started.elapsed();
        assert!((1990..=2010).contains(&took.as_millis()), "copy: {took:?}");
        // 2 MB read at 0.5 MB/s, the bucket full (0.5 MB) after the writes:
        // the first 1 MB leaves 0.5 MB of debt (1 s), the second another
        // 2 s (a whole-object GET through the stream, then a ranged one).
        let started = monotonic_now();
        let body = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(body.len(), 1_000_000);
        let part = store.get_range(&key, 0..1_000_000).await.unwrap();
        assert_eq!(part.len(), 1_000_000);
        let took = started.elapsed();
        assert!((2990..=3010).contains(&took.as_millis()), "fetch: {took:?}");
        // No quota: no wait.
        let free = QuotaStore::new(Arc::new(InMemory::new()), u64::MAX, u64::MAX);
        let started = monotonic_now();
        free.put(&key, Bytes::from(vec![0u8; 5_000_000]).into())
            .await
            .unwrap();
        free.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
