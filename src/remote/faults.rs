//! A fault-injecting wrapper around a real store: fails the next N writes,
//! or everything, or a seeded random share of every request (replayable
//! from its seed), delays GETs and PUTs, cuts GET bodies short, and counts
//! requests. It wraps the store; it does not replace it (docs/design.md
//! §9).

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Injected faults and request counts.
#[derive(Debug, Default)]
pub struct Faults {
    /// Writes (puts, multipart starts, parts, completions) still to fail.
    pub fail_writes: AtomicU64,
    /// Fail every request.
    pub unavailable: AtomicBool,
    /// Write requests: puts, multipart starts, parts and completions.
    pub puts: AtomicU64,
    pub gets: AtomicU64,
    pub deletes: AtomicU64,
    /// Milliseconds every GET waits before it is sent (a slow store).
    pub get_latency_ms: AtomicU64,
    /// Milliseconds every PUT waits before it is sent (a hanging store).
    pub put_latency_ms: AtomicU64,
    /// Per mille of requests (any kind) that fail, drawn from `rng`.
    pub fail_per_mille: AtomicU64,
    /// Per mille of GETs whose body arrives cut short (half of it), drawn
    /// from `rng`: the reader must notice, never return wrong bytes.
    pub truncate_per_mille: AtomicU64,
    /// The state of the seeded generator (xorshift64; set it to replay a
    /// run). Zero is replaced by a fixed seed.
    pub rng: AtomicU64,
    /// GET bodies cut short so far.
    pub truncated: AtomicU64,
}

impl Faults {
    /// Seeded faults: `fail_per_mille` of requests fail and
    /// `truncate_per_mille` of GET bodies arrive cut short.
    pub fn seeded(seed: u64, fail_per_mille: u64, truncate_per_mille: u64) -> Self {
        let f = Faults::default();
        f.rng.store(seed, Ordering::SeqCst);
        f.fail_per_mille.store(fail_per_mille, Ordering::SeqCst);
        f.truncate_per_mille
            .store(truncate_per_mille, Ordering::SeqCst);
        f
    }

    /// True with probability `per_mille`/1000, from the seeded generator.
    fn draw(&self, per_mille: u64) -> bool {
        if per_mille == 0 {
            return false;
        }
        let next = |x: u64| {
            let mut x = if x == 0 { 0x9E37_79B9_7F4A_7C15 } else { x };
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prev = self
            .rng
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |x| Some(next(x)))
            .unwrap_or(0);
        next(prev) % 1000 < per_mille
    }

    fn check(&self, op: &str, write: bool) -> Result<()> {
        let injected = self.draw(self.fail_per_mille.load(Ordering::SeqCst))
            || self.unavailable.load(Ordering::SeqCst)
            || (write
                && self
                    .fail_writes
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok());
        if injected {
            return Err(object_store::Error::Generic {
                store: "FaultStore",
                source: format!("injected fault on {op}").into(),
            });
        }
        Ok(())
    }
}

/// Counts the parts and the completion of a multipart upload as writes.
#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Arc<Faults>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        if let Err(e) = self.faults.check("put_part", true) {
            return Box::pin(async move { Err(e) });
        }
        self.faults.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.faults.check("complete_multipart", true)?;
        self.faults.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

/// The wrapper.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    pub faults: Arc<Faults>,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self::with_faults(inner, Faults::default())
    }

    /// Wrap `inner` with `faults` (e.g. [`Faults::seeded`]).
    pub fn with_faults(inner: Arc<dyn ObjectStore>, faults: Faults) -> Self {
        FaultStore {
            inner,
            faults: Arc::new(faults),
        }
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.faults.check("put", true)?;
        self.faults.puts.fetch_add(1, Ordering::SeqCst);
        let latency = self.faults.put_latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            crate::clock::monotonic_sleep(std::time::Duration::from_millis(latency)).await;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.faults.check("put_multipart", true)?;
        self.faults.puts.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            faults: Arc::clone(&self.faults),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.faults.check("get", false)?;
        self.faults.gets.fetch_add(1, Ordering::SeqCst);
        let latency = self.faults.get_latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            crate::clock::monotonic_sleep(std::time::Duration::from_millis(latency)).await;
        }
        let result = self.inner.get_opts(location, options).await?;
        if !self
            .faults
            .draw(self.faults.truncate_per_mille.load(Ordering::SeqCst))
        {
            return Ok(result);
        }
        // The body stops halfway, as a connection cut mid-transfer does;
        // the result still claims the full range.
        self.faults.truncated.fetch_add(1, Ordering::SeqCst);
        let (meta, range, attributes, extensions) = (
            result.meta.clone(),
            result.range.clone(),
            result.attributes.clone(),
            result.extensions.clone(),
        );
        let body = result.bytes().await?;
        let cut = body.slice(..body.len() / 2);
        Ok(GetResult {
            payload: object_store::GetResultPayload::Stream(
                futures::stream::once(async move { Ok(cut) }).boxed(),
            ),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.faults.check("get_ranges", false)?;
        self.faults
            .gets
            .fetch_add(ranges.len() as u64, Ordering::SeqCst);
        let mut got = self.inner.get_ranges(location, ranges).await?;
        for body in got.iter_mut() {
            if self
                .faults
                .draw(self.faults.truncate_per_mille.load(Ordering::SeqCst))
            {
                self.faults.truncated.fetch_add(1, Ordering::SeqCst);
                *body = body.slice(..body.len() / 2);
            }
        }
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        if let Err(e) = self.faults.check("delete", true) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        let faults = Arc::clone(&self.faults);
        let counted = locations
            .inspect(move |_| {
                faults.deletes.fetch_add(1, Ordering::SeqCst);
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Err(e) = self.faults.check("list", false) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.faults.check("list", false)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.faults.check("copy", true)?;
        self.inner.copy_opts(from, to, options).await
    }
}
