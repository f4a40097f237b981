//! [`MeteredStore`]: the object-store wrapper that counts and times every
//! request the remote tier makes, and its errors, in the engine's
//! [`Metrics`]. Must never change what the wrapped store does.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as StoreResult,
};

use super::Metrics;
use crate::clock::monotonic_now;

/// Counts every request the remote tier makes to `inner` (and its errors)
/// in the engine's [`Metrics`].
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }

    fn count<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        self.metrics.store_result(r)
    }
}

impl std::fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

/// A multipart upload whose parts and completion are counted.
#[derive(Debug)]
struct MeteredUpload {
    inner: Box<dyn MultipartUpload>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        self.metrics.remote_put_requests.inc();
        self.metrics
            .remote_put_bytes
            .inc_by(data.content_length() as u64);
        let metrics = Arc::clone(&self.metrics);
        let part = self.inner.put_part(data);
        Box::pin(async move {
            let started = monotonic_now();
            let r = part.await;
            metrics.remote_put_duration.observe_since(started);
            metrics.store_result(r)
        })
    }

    async fn complete(&mut self) -> StoreResult<PutResult> {
        self.metrics.remote_put_requests.inc();
        let started = monotonic_now();
        let r = self.inner.complete().await;
        self.metrics.remote_put_duration.observe_since(started);
        self.metrics.store_result(r)
    }

    async fn abort(&mut self) -> StoreResult<()> {
        let r = self.inner.abort().await;
        self.metrics.store_result(r)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        self.metrics.remote_put_requests.inc();
        self.metrics
            .remote_put_bytes
            .inc_by(payload.content_length() as u64);
        let started = monotonic_now();
        let r = self.inner.put_opts(location, payload, opts).await;
        self.metrics.remote_put_duration.observe_since(started);
        self.count(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        self.metrics.remote_put_requests.inc();
        let started = monotonic_now();
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.metrics.remote_put_duration.observe_since(started);
        let inner = self.count(r)?;
        Ok(Box::new(MeteredUpload {
            inner,
            metrics: Arc::clone(&self.metrics),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> StoreResult<GetResult> {
        self.metrics.remote_get_requests.inc();
        let head = options.head;
        let started = monotonic_now();
        let r = self.inner.get_opts(location, options).await;
        if head || r.is_err() {
            self.metrics.remote_get_duration.observe_since(started);
        }
        let mut r = self.count(r)?;
        if head {
            return Ok(r);
        }
        // Stream bodies are counted as their bytes arrive, and timed to
        // their end; a local file's by the range it serves, now.
        let metrics = Arc::clone(&self.metrics);
        r.payload = match r.payload {
            object_store::GetResultPayload::Stream(s) => {
                let ended = Arc::clone(&metrics);
                let mut timed = false;
                object_store::GetResultPayload::Stream(
                    s.inspect(move |chunk| match chunk {
                        Ok(b) => {
                            metrics.remote_get_bytes.inc_by(b.len() as u64);
                        }
                        Err(_) => {
                            metrics.remote_errors.inc();
                        }
                    })
                    .chain(futures::stream::poll_fn(move |_| {
                        if !std::mem::replace(&mut timed, true) {
                            ended.remote_get_duration.observe_since(started);
                        }
                        std::task::Poll::Ready(None)
                    }))
                    .boxed(),
                )
            }
            #[allow(unreachable_patterns)]
            other => {
                metrics.remote_get_bytes.inc_by(r.range.end - r.range.start);
                metrics.remote_get_duration.observe_since(started);
                other
            }
        };
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        self.metrics.remote_get_requests.inc_by(ranges.len() as u64);
        let started = monotonic_now();
        let r = self.inner.get_ranges(location, ranges).await;
        self.metrics.remote_get_duration.observe_since(started);
        let r = self.count(r)?;
        let bytes: usize = r.iter().map(Bytes::len).sum();
        self.metrics.remote_get_bytes.inc_by(bytes as u64);
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<Path>>,
    ) -> BoxStream<'static, StoreResult<Path>> {
        let metrics = Arc::clone(&self.metrics);
        let errors = Arc::clone(&self.metrics);
        let counted = locations
            .inspect(move |_| {
                metrics.remote_delete_requests.inc();
            })
            .boxed();
        self.inner
            .delete_stream(counted)
            .inspect(move |r| {
                if r.is_err() {
                    errors.remote_errors.inc();
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        self.metrics.remote_list_requests.inc();
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> StoreResult<ListResult> {
        self.metrics.remote_list_requests.inc();
        let r = self.inner.list_with_delimiter(prefix).await;
        self.count(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> StoreResult<()> {
        let r = self.inner.copy_opts(from, to, options).await;
        self.count(r)
    }
}
