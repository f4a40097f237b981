//! [`ProfiledStore`]: an object-store wrapper that makes a fast store
//! (file://, an in-process emulator) answer like S3 does, for benchmarks:
//! every request waits a first-byte latency, and every body (GET or PUT)
//! moves no faster than a per-request bandwidth. Throughput then comes only
//! from many requests in flight, as against real S3 (first byte after
//! 20–50 ms, 50–100 MB/s per connection).
//!
//! Waits are absolute deadlines (`sleep_until` an instant computed from the
//! first byte and the bytes so far), never one sleep per stream chunk, so
//! timer granularity does not add up. object_store's own `ThrottledStore`
//! panics on file:// bodies and sleeps per chunk; this one does neither.
//!
//! Owns: the delays only. Must never change what the wrapped store stores
//! or returns.

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

use crate::clock::{monotonic_now, monotonic_sleep, monotonic_sleep_until};

/// How the wrapped store should behave: a first-byte latency per request
/// and a bandwidth per request body. Zero turns each off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreProfile {
    /// Wait before a request's first byte (every request).
    pub latency: Duration,
    /// Bytes per second one GET or PUT body moves at; 0 is unlimited.
    pub stream_bytes_per_sec: u64,
}

impl StoreProfile {
    /// A profile of `latency_ms` to first byte and `stream_mbps` MB/s
    /// (10^6 bytes) per request.
    pub fn new(latency_ms: u64, stream_mbps: f64) -> Self {
        StoreProfile {
            latency: Duration::from_millis(latency_ms),
            stream_bytes_per_sec: (stream_mbps.max(0.0) * 1e6) as u64,
        }
    }

    /// Whether it changes anything.
    pub fn is_off(&self) -> bool {
        self.latency.is_zero() && self.stream_bytes_per_sec == 0
    }

    /// `store` wrapped in this profile (itself when the profile is off).
    pub fn wrap(self, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        if self.is_off() {
            store
        } else {
            Arc::new(ProfiledStore::new(store, self))
        }
    }

    /// How long `bytes` take to stream.
    pub fn transfer_time(&self, bytes: u64) -> Duration {
        if self.stream_bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(bytes as f64 / self.stream_bytes_per_sec as f64)
    }

    async fn first_byte(&self) -> tokio::time::Instant {
        if !self.latency.is_zero() {
            monotonic_sleep(self.latency).await;
        }
        monotonic_now()
    }
}

/// `inner` answering with the delays of a [`StoreProfile`].
#[derive(Debug)]
pub struct ProfiledStore {
    inner: Arc<dyn ObjectStore>,
    profile: StoreProfile,
}

impl ProfiledStore {
    pub fn new(inner: Arc<dyn ObjectStore>, profile: StoreProfile) -> Self {
        ProfiledStore { inner, profile }
    }
}

impl std::fmt::Display for ProfiledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Profiled({}, {} ms, {} B/s)",
            self.inner,
            self.profile.latency.as_millis(),
            self.profile.stream_bytes_per_sec
        )
    }
}

/// A multipart upload whose parts each stream at the profile's bandwidth.
#[derive(Debug)]
struct ProfiledUpload {
    inner: Box<dyn MultipartUpload>,
    profile: StoreProfile,
}

#[async_trait]
impl MultipartUpload for ProfiledUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let profile = self.profile;
        let len = data.content_length() as u64;
        let part = self.inner.put_part(data);
        Box::pin(async move {
            let first = profile.first_byte().await;
            let r = part.await;
            monotonic_sleep_until(first + profile.transfer_time(len)).await;
            r
        })
    }

    async fn complete(&mut self) -> StoreResult<PutResult> {
        self.profile.first_byte().await;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> StoreResult<()> {
        self.profile.first_byte().await;
        self.inner.abort().await
    }
}

/// `body` delivered no sooner than its bandwidth allows after `first`:
/// each piece waits until `first + bytes so far / bandwidth`.
fn paced(
    body: BoxStream<'static, StoreResult<Bytes>>,
    first: tokio::time::Instant,
    profile: StoreProfile,
) -> BoxStream<'static, StoreResult<Bytes>> {
    if profile.stream_bytes_per_sec == 0 {
        return body;
    }
    body.scan(0u64, move |sent, piece| {
        let deadline = match &piece {
            Ok(b) => {
                *sent += b.len() as u64;
                Some(first + profile.transfer_time(*sent))
            }
            Err(_) => None,
        };
        async move {
            if let Some(d) = deadline {
                monotonic_sleep_until(d).await;
            }
            Some(piece)
        }
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for ProfiledStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        let len = payload.content_length() as u64;
        let first = self.profile.first_byte().await;
        let r = self.inner.put_opts(location, payload, opts).await;
        monotonic_sleep_until(first + self.profile.transfer_time(len)).await;
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        self.profile.first_byte().await;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(ProfiledUpload {
            inner,
            profile: self.profile,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> StoreResult<GetResult> {
        let head = options.head;
        let first = self.profile.first_byte().await;
        let r = self.inner.get_opts(location, options).await?;
        if head {
            return Ok(r);
        }
        let GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        } = r;
        let body = match payload {
            GetResultPayload::Stream(s) => paced(s, first, self.profile),
            // A local file: wait until the whole range would have streamed,
            // then read it in one go (off the runtime), so the bytes are
            // held no longer than a real transfer would fill them.
            #[allow(unreachable_patterns)]
            other => {
                let whole = GetResult {
                    payload: other,
                    meta: meta.clone(),
                    range: range.clone(),
                    attributes: attributes.clone(),
                    extensions: Default::default(),
                };
                let done = first + self.profile.transfer_time(range.end - range.start);
                futures::stream::once(async move {
                    monotonic_sleep_until(done).await;
                    whole.bytes().await
                })
                .boxed()
            }
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        let first = self.profile.first_byte().await;
        let r = self.inner.get_ranges(location, ranges).await?;
        let bytes: u64 = r.iter().map(|b| b.len() as u64).sum();
        monotonic_sleep_until(first + self.profile.transfer_time(bytes)).await;
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<Path>>,
    ) -> BoxStream<'static, StoreResult<Path>> {
        let profile = self.profile;
        let delayed = locations
            .then(move |l| async move {
                profile.first_byte().await;
                l
            })
            .boxed();
        self.inner.delete_stream(delayed)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        let profile = self.profile;
        let inner = self.inner.list(prefix);
        futures::stream::once(async move {
            profile.first_byte().await;
            inner
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> StoreResult<ListResult> {
        self.profile.first_byte().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> StoreResult<()> {
        self.profile.first_byte().await;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    fn profiled(latency_ms: u64, mbps: f64) -> (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = StoreProfile::new(latency_ms, mbps).wrap(Arc::clone(&inner));
        (inner, store)
    }

    /// A GET waits the latency, then its body takes len / bandwidth: 30 ms +
    /// 9 MB at 90 MB/s = 130 ms, on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn a_get_waits_latency_then_streams_at_the_bandwidth() {
        let (inner, store) = profiled(30, 90.0);
        let key = Path::from("a/b");
        inner.put(&key, vec![7u8; 9_000_000].into()).await.unwrap();
        let t0 = monotonic_now();
        let got = store.get_range(&key, 0..9_000_000).await.unwrap();
        assert_eq!(got.len(), 9_000_000);
        assert_eq!(monotonic_now() - t0, Duration::from_millis(130));
        // A HEAD only waits the latency.
        let t0 = monotonic_now();
        assert_eq!(store.head(&key).await.unwrap().size, 9_000_000);
        assert_eq!(monotonic_now() - t0, Duration::from_millis(30));
    }

    /// Requests in flight together each get the full bandwidth: four GETs
    /// of 9 MB take as long as one.
    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_overlap() {
        let (inner, store) = profiled(30, 90.0);
        let key = Path::from("x");
        inner.put(&key, vec![1u8; 36_000_000].into()).await.unwrap();
        let t0 = monotonic_now();
        let gets = (0..4u64).map(|i| store.get_range(&key, i * 9_000_000..(i + 1) * 9_000_000));
        let got = futures::future::try_join_all(gets).await.unwrap();
        assert_eq!(got.iter().map(Bytes::len).sum::<usize>(), 36_000_000);
        assert_eq!(monotonic_now() - t0, Duration::from_millis(130));
    }

    /// A PUT pays latency and bandwidth too; deletes and lists the latency.
    #[tokio::test(start_paused = true)]
    async fn puts_deletes_and_lists_are_delayed() {
        let (inner, store) = profiled(20, 50.0);
        let key = Path::from("p");
        let t0 = monotonic_now();
        store.put(&key, vec![0u8; 5_000_000].into()).await.unwrap();
        assert_eq!(monotonic_now() - t0, Duration::from_millis(120));
        assert_eq!(inner.head(&key).await.unwrap().size, 5_000_000);
        let t0 = monotonic_now();
        let listed: Vec<_> = store.list(None).collect().await;
        assert_eq!(listed.len(), 1);
        store.delete(&key).await.unwrap();
        assert_eq!(monotonic_now() - t0, Duration::from_millis(40));
        assert!(inner.head(&key).await.is_err());
    }

    /// A file:// body (object_store's `File` payload, which its
    /// `ThrottledStore` cannot handle) is paced like a stream.
    #[tokio::test(start_paused = true)]
    async fn local_files_are_profiled() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let key = Path::from("f");
        fs.put(&key, vec![3u8; 1_000_000].into()).await.unwrap();
        let store = StoreProfile::new(10, 100.0).wrap(fs);
        let t0 = monotonic_now();
        let got = store.get_range(&key, 0..1_000_000).await.unwrap();
        assert_eq!(got, vec![3u8; 1_000_000]);
        // The file read runs on a blocking thread the paused clock does
        // not wait for, so only a lower bound holds.
        assert!(monotonic_now() - t0 >= Duration::from_millis(20));
    }

    #[test]
    fn off_is_the_store_itself() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let same = StoreProfile::default().wrap(Arc::clone(&inner));
        assert!(Arc::ptr_eq(&inner, &same));
    }
}
