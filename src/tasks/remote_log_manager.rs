//! The remote log manager (Kafka's name for it): copy (tiering), expiration
//! and the orphan reaper, as separate jobs run by the task executor, or as
//! one round on demand. Jobs receive the log manager and the catalog
//! ([`Scope`]), never the engine.
//!
//! Tiering: for each partition of a topic with `remote.storage.enable`, the
//! oldest sealed segment not yet tiered gets a `COPY_STARTED` row, its
//! objects, its manifest, then `COPY_FINISHED` — one SQL transaction per
//! transition. A failure moves the attempt to `DELETE_STARTED`, removes what
//! was uploaded, and retries the same segment later with exponential
//! backoff and jitter; later segments wait, so the bucket holds a prefix.
//!
//! Expiration: the remote part of the retention plan (`tasks/retention.rs`):
//! `COPY_FINISHED` segments that `retention.ms`/`retention.bytes` expire
//! over the whole log go, oldest first (`DELETE_STARTED`, objects,
//! `DELETE_FINISHED`), and with them the local copies of what they held
//! (the log start moves past them, as in Kafka). Local copies kept by
//! `local.retention.*` are the local retention job's.
//!
//! Reaper: `COPY_STARTED` rows left by a crash (at start-up, or older than
//! the grace period) and `DELETE_STARTED` rows have their objects deleted
//! and become `DELETE_FINISHED`; under the prefixes of the catalog's topics,
//! objects of uncommitted segments the catalog does not know (older than the
//! grace period) are deleted, and stale multipart uploads aborted (S3).

use std::collections::HashMap;
use std::sync::Mutex;

use futures::TryStreamExt;

use crate::catalog::{RemoteSegment, RemoteState, SharedCatalog};
use crate::config::TopicConfig;
use crate::error::Result;
use crate::failpoints::fail_point;
use crate::log_manager::LogManager;
use crate::metrics::EventLevel;
use crate::remote::keys::segment_uuid_of;
use crate::remote::uploader::{
    delete_segment, upload_segment, SealedSegment, SegmentOwner, UploadSettings,
};
use crate::remote::RemoteStore;
use crate::sync::lock;
use crate::tasks::retention::tiered_end;
use crate::unified_log::UnifiedLog;

/// What a job of the remote log manager works on.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub logs: &'a LogManager,
    pub catalog: &'a SharedCatalog,
}

/// Settings of the remote log manager.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// The object store URL (`file://…`, `s3://…`).
    pub url: String,
    /// Between rounds (Kafka's `remote.log.manager.task.interval.ms`).
    pub task_interval_ms: i64,
    pub upload: UploadSettings,
    /// The remote read path: chunk size, caches, prefetch.
    pub fetch: crate::remote::fetcher::FetchSettings,
    /// Objects with no catalog row are deleted once this old.
    pub orphan_grace_ms: i64,
    /// Segments tiered per partition per round, so a backlog (remote
    /// storage just enabled on a large topic) cannot keep one round, and
    /// shutdown, busy for hours.
    pub max_segments_per_round: usize,
    /// A ready aws-sdk-s3 admin (tests); by default one is built for
    /// `s3://` URLs when `store` is not given.
    pub admin: Option<std::sync::Arc<crate::remote::admin::S3Admin>>,
    /// A ready store to use instead of building one from `url` (a wrapped
    /// store for fault injection, or one with explicit credentials).
    pub store: Option<std::sync::Arc<dyn object_store::ObjectStore>>,
    /// Between catalog snapshots (`catalog.snapshot.interval.ms`), written
    /// by the `catalog-snapshot` job and at a clean shutdown when the
    /// engine runs background jobs; -1 writes none.
    pub catalog_snapshot_interval_ms: i64,
    /// Bytes per second sent to the store at most (KIP-956's
    /// `remote.log.manager.copy.max.bytes.per.second`; `u64::MAX`:
    /// unlimited).
    pub copy_max_bytes_per_second: u64,
    /// Bytes per second read from the store at most
    /// (`remote.log.manager.fetch.max.bytes.per.second`).
    pub fetch_max_bytes_per_second: u64,
    /// Nice value of the remote tier's runtime threads (workers and
    /// blocking pool; `remote.thread.nice`): 0 leaves them as started.
    pub thread_nice: i32,
}

impl RemoteSettings {
    /// The defaults for a store at `url`: a round every 30 s (Kafka's
    /// default), uploads in 16 MiB parts, orphans reaped after an hour, at
    /// most 8 segments per partition per round, a catalog snapshot every
    /// minute.
    pub fn new(url: impl Into<String>) -> Self {
        RemoteSettings {
            url: url.into(),
            task_interval_ms: 30_000,
            upload: UploadSettings::default(),
            fetch: Default::default(),
            orphan_grace_ms: 3_600_000,
            max_segments_per_round: 8,
            admin: None,
            store: None,
            catalog_snapshot_interval_ms: crate::config::DEFAULT_CATALOG_SNAPSHOT_INTERVAL_MS,
            copy_max_bytes_per_second: u64::MAX,
            fetch_max_bytes_per_second: u64::MAX,
            thread_nice: 0,
        }
    }
}

/// The remote log manager's jobs (each registered with the executor on
/// its own thread, `remote.log.manager.task.interval.ms` apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RlmJob {
    Reaper,
    Copy,
    Expiration,
}

impl RlmJob {
    pub(crate) const ALL: [RlmJob; 3] = [RlmJob::Reaper, RlmJob::Copy, RlmJob::Expiration];

    pub(crate) fn name(self) -> &'static str {
        match self {
            RlmJob::Reaper => "rlm-reaper",
            RlmJob::Copy => "rlm-copy",
            RlmJob::Expiration => "rlm-expiration",
        }
    }
}

/// Per-partition retry state after a failed upload.
#[derive(Debug, Default, Clone, Copy)]
struct Backoff {
    failures: u32,
    next_attempt_ms: i64,
}

/// The last failed upload of a partition's segment (`tierlog tier
/// status`); kept after later uploads succeed, until the broker restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFailure {
    /// The error, as logged.
    pub error: String,
    /// When it failed (engine clock, ms).
    pub at_ms: i64,
    /// The segment whose upload failed.
    pub base_offset: i64,
    /// Failures in a row now (0 once an upload succeeded since).
    pub consecutive_failures: u32,
    /// When the next attempt may start (engine clock, ms); `None` once an
    /// upload succeeded since.
    pub next_attempt_ms: Option<i64>,
}

/// What one round did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    pub uploaded: usize,
    pub upload_failures: usize,
    pub remote_deleted: usize,
    pub local_deleted: usize,
    pub reaped: usize,
}

/// Runs rounds; owns the store, its runtime and retry state.
pub struct RemoteLogManager {
    store: RemoteStore,
    /// Lists and aborts stale multipart uploads (S3 only); built on first
    /// use, on the manager's runtime (open may run inside another runtime).
    admin: tokio::sync::OnceCell<Option<std::sync::Arc<crate::remote::admin::S3Admin>>>,
    settings: RemoteSettings,
    backoff: Mutex<HashMap<(uuid::Uuid, u32), Backoff>>,
    /// Each partition's last failed upload (its backoff fields filled when
    /// read).
    last_failure: Mutex<HashMap<(uuid::Uuid, u32), UploadFailure>>,
    started: std::sync::atomic::AtomicBool,
    /// The topic.json last written per topic id.
    topic_manifests: Mutex<HashMap<uuid::Uuid, Vec<u8>>>,
    /// Every request to the store runs on this one runtime, rounds and
    /// remote reads alike: HTTP clients pool connections per runtime, and a
    /// connection made on one runtime hangs when used from another.
    runtime: OwnedRuntime,
    /// Keeps rounds from overlapping.
    round: Mutex<()>,
    /// Turned true by shutdown: a round under way stops at its next await
    /// (what it leaves half done is the reaper's, as after a crash).
    cancel: tokio::sync::watch::Sender<bool>,
    /// Where the copy job's round durations go (the engine's metrics).
    copy_round_duration: Option<crate::metrics::Histogram>,
}

/// A runtime that shuts down in the background when dropped, so an engine
/// can be dropped anywhere, async contexts included.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for RemoteLogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLogManager")
            .field("url", &self.store.url())
            .finish()
    }
}

/// Set the calling thread's nice value to `nice` (Linux applies
/// `setpriority(PRIO_PROCESS, 0, …)` to the calling thread only); 0 does
/// nothing. Raising it needs no privilege; a failure is logged, and the
/// thread runs on at the broker's priority.
fn lower_thread_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: setpriority has no memory preconditions; who 0 names the
    // calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "cannot lower the remote tier's thread priority");
    }
}

fn backoff_ms(failures: u32, jitter_seed: u64) -> i64 {
    let base = 500i64.saturating_mul(1i64 << failures.min(10)).min(60_000);
    // ±20% jitter, so many partitions do not retry in lockstep.
    let jitter = (jitter_seed % 41) as i64 - 20;
    base + base * jitter / 100
}

impl RemoteLogManager {
    pub fn new(store: RemoteStore, settings: RemoteSettings) -> Result<Self> {
        let nice = settings.thread_nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tierlog-remote")
            .on_thread_start(move || lower_thread_priority(nice))
            .enable_all()
            .build()
            .map_err(|e| {
                crate::Error::internal(format!("cannot start the remote tier's runtime: {e}"))
            })?;
        let admin = match (&settings.admin, &settings.store) {
            (Some(a), _) => tokio::sync::OnceCell::from(Some(std::sync::Arc::clone(a))),
            (None, Some(_)) => tokio::sync::OnceCell::from(None),
            (None, None) => tokio::sync::OnceCell::new(),
        };
        Ok(RemoteLogManager {
            store,
            admin,
            settings,
            backoff: Mutex::new(HashMap::new()),
            last_failure: Mutex::new(HashMap::new()),
            started: std::sync::atomic::AtomicBool::new(false),
            topic_manifests: Mutex::new(HashMap::new()),
            runtime: OwnedRuntime(Some(runtime)),
            round: Mutex::new(()),
            cancel: tokio::sync::watch::channel(false).0,
            copy_round_duration: None,
        })
    }

    /// Observe every finished copy round's duration into `histogram`.
    pub(crate) fn with_copy_round_duration(mut self, histogram: crate::metrics::Histogram) -> Self {
        self.copy_round_duration = Some(histogram);
        self
    }

    /// Run `jobs` in order to completion on the manager's runtime. Jobs
    /// never overlap (a reaper must not judge an upload in flight).
    pub(crate) fn run_blocking(&self, scope: Scope<'_>, jobs: &[RlmJob]) -> RoundReport {
        let _round = lock(&self.round);
        let mut report = RoundReport::default();
        let mut cancelled = self.cancel.subscribe();
        if *cancelled.borrow() {
            return report;
        }
        if let Some(rt) = &self.runtime.0 {
            rt.block_on(async {
                let run = async {
                    for job in jobs {
                        match job {
                            RlmJob::Reaper => self.reap_round(scope, &mut report).await,
                            RlmJob::Copy => {
                                let started = crate::clock::monotonic_now();
                                self.copy_round(scope, &mut report).await;
                                if let Some(h) = &self.copy_round_duration {
                                    h.observe_since(started);
                                }
                            }
                            RlmJob::Expiration => self.expiration_round(scope, &mut report).await,
                        }
                    }
                };
                tokio::select! {
                    _ = run => {}
                    _ = cancelled.wait_for(|c| *c) => {
                        tracing::info!("remote log manager round cancelled by shutdown");
                    }
                }
            });
        }
        report
    }

    /// Run `f` with the manager's runtime while no round runs (the log
    /// cleaner's tiered work: a reaper must not judge its upload in flight).
    /// `None` after shutdown began.
    pub(crate) fn run_exclusive<T>(
        &self,
        f: impl FnOnce(&tokio::runtime::Handle) -> T,
    ) -> Option<T> {
        let _round = lock(&self.round);
        if *self.cancel.borrow() {
            return None;
        }
        let handle = self.handle()?;
        Some(f(&handle))
    }

    /// Stop: a round under way ends at its next await, and no round starts
    /// again (shutdown; a failing bucket must not hold it for minutes).
    pub(crate) fn cancel(&self) {
        let _ = self.cancel.send(true);
    }

    /// The runtime every store request runs on.
    pub(crate) fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.0.as_ref().map(|rt| rt.handle().clone())
    }

    pub fn store(&self) -> &RemoteStore {
        &self.store
    }

    pub fn settings(&self) -> &RemoteSettings {
        &self.settings
    }

    /// The last failed upload of a partition, if one failed since start.
    pub fn last_upload_failure(
        &self,
        topic_id: uuid::Uuid,
        partition: u32,
    ) -> Option<UploadFailure> {
        let key = (topic_id, partition);
        let failure = lock(&self.last_failure).get(&key)?.clone();
        let backoff = lock(&self.backoff).get(&key).copied();
        Some(UploadFailure {
            consecutive_failures: backoff.map_or(0, |b| b.failures),
            next_attempt_ms: backoff.map(|b| b.next_attempt_ms),
            ..failure
        })
    }

    /// The reaper job: always on the first round (at start-up no upload
    /// is running, so every `COPY_STARTED` row is a crash's leftover).
    pub(crate) async fn reap_round(&self, scope: Scope<'_>, report: &mut RoundReport) {
        let now = scope.logs.clock().now_ms();
        let first = !self.started.swap(true, std::sync::atomic::Ordering::SeqCst);
        match self.reap(scope, now, first).await {
            Ok(n) => report.reaped += n,
            Err(e) => {
                tracing::warn!(remote = self.store.url(), error = %e, "orphan reaper failed; will retry");
                scope.logs.record_event(
                    EventLevel::Warn,
                    format!("orphan reaper failed (retried next round): {e}"),
                );
            }
        }
    }

    /// The copy job: tier every partition of a topic with remote storage
    /// on (after the reaper's first round, so a crash's leftovers are
    /// cleaned before new uploads start).
    pub(crate) async fn copy_round(&self, scope: Scope<'_>, report: &mut RoundReport) {
        if !self.started.load(std::sync::atomic::Ordering::SeqCst) {
            self.reap_round(scope, report).await;
        }
        let now = scope.logs.clock().now_ms();
        for topic in scope.logs.topic_states() {
            let Ok(config) =
                TopicConfig::resolve(&topic.record.configs, scope.logs.topic_defaults())
            else {
                continue;
            };
            if !config.remote_storage_enable {
                continue;
            }
            self.write_topic_manifest(&topic.record).await;
            for (p, partition) in topic.partitions.iter().enumerate() {
                let owner = SegmentOwner {
                    topic: topic.record.name.clone(),
                    topic_id: topic.record.id,
                    partition: p as u32,
                };
                self.tier_partition(scope, partition, &owner, now, report)
                    .await;
            }
        }
    }

    /// The expiration job: delete the remote segments total retention
    /// expires, oldest first (a failure stops that partition's deletions
    /// until the next round).
    pub(crate) async fn expiration_round(&self, scope: Scope<'_>, report: &mut RoundReport) {
        let now = scope.logs.clock().now_ms();
        for topic in scope.logs.topic_states() {
            let Ok(config) =
                TopicConfig::resolve(&topic.record.configs, scope.logs.topic_defaults())
            else {
                continue;
            };
            for (p, partition) in topic.partitions.iter().enumerate() {
                if let Err(e) = self
                    .expire_partition(scope, partition, &config, now, report)
                    .await
                {
                    tracing::warn!(topic = %topic.record.name, partition = p, error = %e, "remote retention failed; will retry");
                    scope.logs.record_event(
                        EventLevel::Warn,
                        format!(
                            "remote retention of {}-{p} failed (retried next round): {e}",
                            topic.record.name
                        ),
                    );
                }
            }
        }
    }

    /// Write `<topic>-<id>/topic.json` when it is new or changed, so the
    /// bucket describes itself.
    async fn write_topic_manifest(&self, record: &crate::catalog::TopicRecord) {
        use object_store::ObjectStoreExt;
        let json = crate::format::manifest::TopicManifest {
            format_version: crate::format::manifest::MANIFEST_VERSION,
            topic: record.name.clone(),
            topic_id: record.id,
            partitions: record.partitions,
            configs: record.configs.clone(),
        }
        .to_json();
        if lock(&self.topic_manifests).get(&record.id) == Some(&json) {
            return;
        }
        let key = crate::remote::keys::topic_config_key(&record.name, &record.id);
        match self.store.store.put(&key, json.clone().into()).await {
            Ok(_) => {
                lock(&self.topic_manifests).insert(record.id, json);
            }
            Err(e) => {
                tracing::warn!(object = %key, error = %e, "cannot write topic.json; will retry")
            }
        }
    }

    async fn tier_partition(
        &self,
        scope: Scope<'_>,
        partition: &UnifiedLog,
        owner: &SegmentOwner,
        now: i64,
        report: &mut RoundReport,
    ) {
        let key = (owner.topic_id, owner.partition);
        if let Some(b) = lock(&self.backoff).get(&key) {
            if now < b.next_attempt_ms {
                return;
            }
        }
        let rows = match lock(scope.catalog).remote_segments(owner.topic_id, owner.partition) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the catalog");
                return;
            }
        };
        let tiered_end = tiered_end(&rows);
        // Only fsynced data goes to the bucket: a segment a power cut could
        // still shorten must not be COPY_FINISHED. Sync sealed segments the
        // background flush has not reached yet (outside the log's lock).
        let pending = partition
            .with_log(|log| Ok(log.pending_flush()))
            .ok()
            .flatten();
        if let Some(pending) = pending {
            match pending.sync() {
                Ok(()) => {
                    let _ = partition.with_log(|log| log.complete_flush(&pending));
                }
                Err(e) => {
                    partition.take_offline(&format!("{}-{}", owner.topic, owner.partition), e);
                    scope.logs.report_offline_partitions();
                    return;
                }
            }
        }
        let sealed = match partition.with_log(|log| {
            let active = log.log_end_offset();
            let active_base = log
                .segments()
                .last()
                .map(|s| s.base_offset())
                .unwrap_or(active);
            let durable = log.recovery_point();
            // Records below DeleteRecords' floor are never uploaded.
            let floor = log.start_floor();
            Ok(log
                .segments()
                .filter(|s| {
                    s.base_offset() < active_base
                        && s.base_offset() >= tiered_end
                        && !s.is_empty()
                        && s.next_offset() <= durable
                        && s.next_offset() > floor
                })
                .take(self.settings.max_segments_per_round)
                .map(|s| {
                    let [log_path, index, timeindex, txnindex] = s.file_paths();
                    SealedSegment {
                        base_offset: s.base_offset(),
                        last_offset: s.next_offset() - 1,
                        first_timestamp: s.first_batch_timestamp().unwrap_or(-1),
                        max_timestamp: s.max_timestamp(),
                        log: log_path,
                        index,
                        timeindex,
                        txnindex,
                    }
                })
                .collect::<Vec<_>>())
        }) {
            Ok(s) => s,
            Err(_) => return, // offline or closed
        };
        for segment in sealed {
            let uuid = uuid::Uuid::new_v4();
            let mut row = segment.copy_started_row(owner, uuid, now);
            if let Err(e) = lock(scope.catalog).insert_remote_segment(&row) {
                tracing::warn!(error = %e, "cannot record a tiering attempt");
                return;
            }
            fail_point!("rlm.copy.after_copy_started");
            match upload_segment(
                &self.store,
                owner,
                uuid,
                &segment,
                self.settings.upload,
                now,
            )
            .await
            {
                Ok(manifest) => {
                    SealedSegment::record_upload(&mut row, manifest);
                    row.state = RemoteState::CopyFinished;
                    row.updated_ms = scope.logs.clock().now_ms();
                    if let Err(e) = lock(scope.catalog)
                        .transition_remote_segment(&row, RemoteState::CopyStarted)
                    {
                        tracing::warn!(error = %e, "cannot record a finished copy; the reaper will clean it up");
                        return;
                    }
                    fail_point!("rlm.copy.after_copy_finished");
                    partition.add_remote(row.clone());
                    lock(&self.backoff).remove(&key);
                    report.uploaded += 1;
                    tracing::info!(
                        topic = %owner.topic, partition = owner.partition, base_offset = segment.base_offset,
                        bytes = row.total_size(), "tiered segment"
                    );
                }
                Err(e) => {
                    report.upload_failures += 1;
                    let wait = {
                        let mut backoffs = lock(&self.backoff);
                        let b = backoffs.entry(key).or_default();
                        b.failures += 1;
                        let wait = backoff_ms(b.failures, uuid.as_u128() as u64);
                        b.next_attempt_ms = now + wait;
                        wait
                    };
                    let failure = UploadFailure {
                        error: e.to_string(),
                        at_ms: now,
                        base_offset: segment.base_offset,
                        consecutive_failures: 0,
                        next_attempt_ms: None,
                    };
                    lock(&self.last_failure).insert(key, failure);
                    tracing::error!(
                        topic = %owner.topic, partition = owner.partition, base_offset = segment.base_offset,
                        remote = self.store.url(), retry_in_ms = wait, error = %e,
                        "tiering failed; local data is kept and the upload will be retried"
                    );
                    scope.logs.record_event(
                        EventLevel::Error,
                        format!(
                            "tiering {}-{} at offset {} failed (local data kept, retry in {} ms): {e}",
                            owner.topic, owner.partition, segment.base_offset, wait
                        ),
                    );
                    self.abandon(scope, row).await;
                    return; // keep segments in order: nothing later goes first
                }
            }
        }
    }

    /// Move a row to DELETE_STARTED, delete its objects, then
    /// DELETE_FINISHED (left in DELETE_STARTED for the reaper if the store
    /// fails).
    async fn abandon(&self, scope: Scope<'_>, mut row: RemoteSegment) -> bool {
        let from = row.state;
        row.state = RemoteState::DeleteStarted;
        row.updated_ms = scope.logs.clock().now_ms();
        if from != RemoteState::DeleteStarted {
            if let Err(e) = lock(scope.catalog).transition_remote_segment(&row, from) {
                tracing::warn!(error = %e, "cannot mark a remote segment for deletion");
                return false;
            }
        }
        fail_point!("rlm.delete.after_delete_started");
        // Out of the catalog's readable set, so out of the reads' map
        // before any object goes (a read already running may then fail
        // and is answered OFFSET_OUT_OF_RANGE).
        if let Ok(p) = scope.logs.partition(&row.topic, row.partition) {
            p.remove_remote(row.segment_uuid);
        }
        let owner = SegmentOwner {
            topic: row.topic.clone(),
            topic_id: row.topic_id,
            partition: row.partition,
        };
        if let Err(e) = delete_segment(&self.store, &owner, row.base_offset, row.segment_uuid).await
        {
            tracing::warn!(segment = %row.segment_uuid, error = %e, "cannot delete remote objects yet; the reaper will retry");
            return false;
        }
        fail_point!("rlm.delete.after_objects");
        row.state = RemoteState::DeleteFinished;
        row.updated_ms = scope.logs.clock().now_ms();
        if let Err(e) =
            lock(scope.catalog).transition_remote_segment(&row, RemoteState::DeleteStarted)
        {
            tracing::warn!(error = %e, "cannot record a finished delete");
            return false;
        }
        true
    }

    async fn expire_partition(
        &self,
        scope: Scope<'_>,
        partition: &UnifiedLog,
        config: &TopicConfig,
        now: i64,
        report: &mut RoundReport,
    ) -> Result<()> {
        let finished = partition.remote_segments();
        if finished.is_empty() {
            return Ok(());
        }
        let Some(local) = crate::tasks::retention::local_segments(partition) else {
            return Ok(()); // offline or closed
        };
        let rows: Vec<RemoteSegment> = finished.iter().map(|s| (**s).clone()).collect();
        let floor = crate::tasks::retention::start_floor(partition);
        let plan = crate::tasks::retention::plan(&rows, &local, config, true, floor, now);
        // Everything below `cut` is expired from both tiers (Kafka moves the
        // log start offset there and deletes local segments below it).
        let mut cut = i64::MIN;
        for row in rows.into_iter().take(plan.remote_expired) {
            let next = row.last_offset + 1;
            let (topic, p, base, bytes) = (
                row.topic.clone(),
                row.partition,
                row.base_offset,
                row.log_size,
            );
            if self.abandon(scope, row).await {
                tracing::info!(
                    topic = %topic, partition = p, base_offset = base, last_offset = next - 1, bytes,
                    "remote retention deleted a tiered segment"
                );
                report.remote_deleted += 1;
                cut = next;
            } else {
                break;
            }
        }
        let sealed_end = local
            .len()
            .checked_sub(2)
            .map_or(i64::MIN, |i| local[i].next_offset);
        let cut = cut.min(sealed_end);
        if cut > local.first().map_or(i64::MAX, |l| l.base_offset) {
            let deleted = partition.with_log(|log| log.delete_segments_below(cut))?;
            report.local_deleted += deleted.len();
        }
        Ok(())
    }

    /// The reaper. Returns how many segments it cleaned up.
    async fn reap(&self, scope: Scope<'_>, now: i64, startup: bool) -> Result<usize> {
        let grace = self.settings.orphan_grace_ms;
        let mut cleaned = 0;
        let stale_copies =
            lock(scope.catalog).remote_segments_in_state(RemoteState::CopyStarted)?;
        for row in stale_copies {
            // At start-up no upload is running: every COPY_STARTED row is a
            // crash's leftover. Later, only old ones are.
            if startup || now - row.updated_ms > grace {
                tracing::info!(segment = %row.segment_uuid, topic = %row.topic, "reaping an interrupted upload");
                if self.abandon(scope, row).await {
                    cleaned += 1;
                }
            }
        }
        // Bound first: a guard in the loop expression would live through
        // the loop, and `abandon` locks the catalog again.
        let stale_deletes =
            lock(scope.catalog).remote_segments_in_state(RemoteState::DeleteStarted)?;
        for row in stale_deletes {
            if self.abandon(scope, row).await {
                cleaned += 1;
            }
        }
        // Topics deleted from the catalog: once none of their segments is
        // left to delete, their topic.json goes (found through the
        // catalog's deleted topics, so also when nothing was ever tiered
        // or everything had expired) and the topic is marked cleaned.
        let to_clean = lock(scope.catalog).deleted_topics_to_clean()?;
        if !to_clean.is_empty() {
            let mut pending: std::collections::HashSet<uuid::Uuid> =
                std::collections::HashSet::new();
            for state in [RemoteState::CopyStarted, RemoteState::DeleteStarted] {
                let rows = lock(scope.catalog).remote_segments_in_state(state)?;
                pending.extend(rows.into_iter().map(|r| r.topic_id));
            }
            // Defence in depth: a COPY_FINISHED row of a deleted topic (the
            // catalog refuses new ones) is deleted like the others.
            let stray: Vec<RemoteSegment> = lock(scope.catalog)
                .remote_segments_in_state(RemoteState::CopyFinished)?
                .into_iter()
                .filter(|r| to_clean.iter().any(|(id, _)| *id == r.topic_id))
                .collect();
            for row in stray {
                pending.insert(row.topic_id);
                tracing::warn!(segment = %row.segment_uuid, topic = %row.topic, "deleting a tiered segment of a deleted topic");
                if self.abandon(scope, row).await {
                    cleaned += 1;
                }
            }
            for (id, name) in to_clean {
                if pending.contains(&id) {
                    continue;
                }
                let key = crate::remote::keys::topic_config_key(&name, &id);
                match self.store.store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        lock(&self.topic_manifests).remove(&id);
                        // On file://, a put of the topic a crash
                        // interrupted may have left a staging file there.
                        if let Some(root) = self.store.local_root() {
                            let dir = root.join(crate::remote::keys::topic_dir(&name, &id));
                            cleaned += crate::remote::staging::reap_staging_files(
                                &dir,
                                std::slice::from_ref(&dir),
                                true,
                                i64::MIN,
                            );
                        }
                        lock(scope.catalog).mark_deleted_topic_cleaned(id, now)?;
                    }
                    Err(e) => {
                        tracing::warn!(object = %key, error = %e, "cannot delete topic.json of a deleted topic; will retry")
                    }
                }
            }
        }
        // Objects no catalog row knows (rows lost with a restored or
        // replaced database, or a crash between an object and its row).
        // Only under the prefixes of topics this catalog owns, and never a
        // committed segment (one with its manifest): a node with a lost or
        // different catalog must not empty a shared bucket.
        let known = lock(scope.catalog).remote_segment_uuids()?;
        let mut candidates: Vec<object_store::ObjectMeta> = Vec::new();
        let mut committed = std::collections::HashSet::new();
        for topic in scope.logs.topic_states() {
            let prefix = object_store::path::Path::from(crate::remote::keys::topic_dir(
                &topic.record.name,
                &topic.record.id,
            ));
            let objects: Vec<object_store::ObjectMeta> = self
                .store
                .store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| {
                    crate::Error::new(
                        crate::ErrorKind::Unavailable,
                        format!("cannot list {}: {e}", self.store.url()),
                    )
                })?;
            for o in objects {
                let Some(uuid) = segment_uuid_of(&o.location) else {
                    continue;
                };
                if known.contains(&uuid) {
                    continue;
                }
                if o.location.as_ref().ends_with(".manifest.json") {
                    committed.insert(uuid);
                }
                candidates.push(o);
            }
        }
        // Multipart uploads a crash interrupted: invisible to listings of
        // objects, they hold parts until aborted.
        let admin = self
            .admin
            .get_or_init(|| async {
                match crate::remote::admin::S3Admin::from_url(&self.settings.url).await {
                    Ok(a) => a.map(std::sync::Arc::new),
                    Err(e) => {
                        tracing::warn!(error = %e, "no S3 admin client: stale multipart uploads will not be cleaned up");
                        None
                    }
                }
            })
            .await;
        if let Some(admin) = admin {
            // At start-up no upload of this broker runs: every one under
            // its live topics' prefixes is a crash's leftover. Under the
            // whole prefix (deleted topics, anything else), only uploads
            // older than the grace period: another broker sharing the
            // bucket may be uploading.
            let mut passes: Vec<(String, Option<i64>)> = Vec::new();
            if startup {
                for topic in scope.logs.topic_states() {
                    passes.push((
                        crate::remote::keys::topic_dir(&topic.record.name, &topic.record.id),
                        None,
                    ));
                }
            }
            passes.push((String::new(), Some(now - grace)));
            for (sub, cutoff) in passes {
                match admin.abort_stale_uploads(&sub, cutoff).await {
                    Ok(n) => cleaned += n,
                    Err(e) => {
                        tracing::warn!(remote = self.store.url(), error = %e, "cannot clean up stale multipart uploads")
                    }
                }
            }
        }
        // A crash inside a file:// put leaves object_store's staging file
        // (`<key>#<n>`), which its listing hides: at start-up every one
        // under this broker's live topics is a leftover, elsewhere those
        // older than the grace period.
        if let Some(root) = self.store.local_root() {
            let live: Vec<std::path::PathBuf> = scope
                .logs
                .topic_states()
                .iter()
                .map(|t| root.join(crate::remote::keys::topic_dir(&t.record.name, &t.record.id)))
                .collect();
            cleaned +=
                crate::remote::staging::reap_staging_files(&root, &live, startup, now - grace);
        }
        for o in candidates {
            let Some(uuid) = segment_uuid_of(&o.location) else {
                continue;
            };
            if committed.contains(&uuid) {
                tracing::warn!(object = %o.location, "a committed segment the catalog does not know; keeping it");
                continue;
            }
            let age = now - o.last_modified.timestamp_millis();
            if age > grace {
                tracing::info!(object = %o.location, "deleting an orphaned object");
                match self.store.store.delete(&o.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => cleaned += 1,
                    Err(e) => {
                        tracing::warn!(object = %o.location, error = %e, "cannot delete an orphaned object")
                    }
                }
            }
        }
        Ok(cleaned)
    }
}

use object_store::ObjectStoreExt;

#[cfg(test)]
mod tests;
