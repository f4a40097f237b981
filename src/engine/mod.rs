//! The embedded engine: [`Engine::open`] a data directory, create topics,
//! [`Engine::append`] record batches, [`Engine::read`] them back,
//! [`Engine::shutdown`]. The broker and the CLI are built on it.
//!
//! Owns: the data directory (its lock and clean-shutdown marker), the
//! catalog, the [`LogManager`] (topic map and every partition's log), the
//! remote tier's manager and read path, and the [`TaskExecutor`] that runs
//! every background job. It wires them together and must never hold
//! partition logic itself: reads and lookups across tiers are the
//! `UnifiedLog`'s, retention and tiering are jobs in `tasks/`.

mod acls;
mod check;
mod config;
mod data_dir;
mod offsets;
mod quotas;
mod reads;
mod restore;
mod status;
pub mod tier_status;
mod transactions;
mod users;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use check::check_tier;
pub use config::{default_remote_url, EngineConfig};
pub use reads::{ReadStart, RemoteRead, RemoteReadResult};
pub use restore::{restore, restore_with, RestoreOptions};

use crate::catalog::{RemoteSegment, SharedCatalog, SqliteCatalog};
use crate::error::{Error, Result};
use crate::log::{paths, LocalLog, RecoveryReport};
pub use crate::log_manager::TopicInfo;
use crate::log_manager::{LogManager, LogSettings};
use crate::metrics::{self, Metrics};
use crate::remote::fetcher::RemoteFetcher;
use crate::remote::RemoteStore;
use crate::sync::lock;
use crate::tasks::catalog_snapshot::CatalogSnapshotter;
pub use crate::tasks::catalog_snapshot::SnapshotOutcome;
use crate::tasks::log_cleaner::{self, CleanerReport, LogCleaner, PartitionCleaning};
use crate::tasks::remote_log_manager::{RemoteLogManager, RlmJob, RoundReport, Scope};
use crate::tasks::tiered_compaction::TierContext;
use crate::tasks::{retention, TaskExecutor};
pub use crate::unified_log::ReadResult;
use crate::unified_log::RemoteReader;

/// The log engine: topics, partitions, their logs and the catalog. Cheap
/// to share behind an `Arc`; every method takes `&self`.
pub struct Engine {
    config: EngineConfig,
    /// Stops and joins every background job first when dropped.
    tasks: TaskExecutor,
    logs: Arc<LogManager>,
    catalog: SharedCatalog,
    /// Bumped after every append, for long-polling readers.
    appends: tokio::sync::watch::Sender<u64>,
    cluster_id: String,
    /// This engine's counters (`GET /metrics`).
    metrics: Arc<Metrics>,
    remote: Option<Arc<RemoteLogManager>>,
    /// Reads of tiered segments, on the remote log manager's runtime.
    fetcher: Option<RemoteReader>,
    recovery: Vec<(String, RecoveryReport)>,
    /// The log cleaner (compacted topics).
    cleaner: Arc<LogCleaner>,
    /// Writes catalog snapshots to the bucket (with a remote tier).
    snapshots: Arc<CatalogSnapshotter>,
    /// Every ACL binding, as the catalog has them (`acls.rs`): read by
    /// the broker on every request, replaced whole after each change.
    acls: std::sync::RwLock<Arc<Vec<crate::security::acl::AclBinding>>>,
    /// The exclusive lock on the data directory, released last.
    _lock: std::fs::File,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Dropped without shutdown (an error on the way): a tiering round
        // under way must not hold the drop for minutes either. The
        // executor's own drop then joins every job.
        if let Some(m) = &self.remote {
            m.cancel();
        }
        self.cleaner.cancel();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.config.data_dir)
            .finish()
    }
}

/// What one run of retention did (`Engine::run_local_retention`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Local segments deleted.
    pub local_deleted: usize,
}

impl Engine {
    /// Open the engine on `config.data_dir` (created if missing): apply
    /// catalog migrations, open every partition (recovering after a crash),
    /// start background tasks. A partition that cannot be opened is kept
    /// offline with its error; the others serve.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| Error::io("cannot create data directory", &data_dir, e))?;
        for (k, v) in &config.topic_defaults {
            crate::config::validate_topic_config(k, v)?;
        }
        let dir_lock = data_dir::lock_data_dir(&data_dir)?;
        let clean = data_dir::take_clean_shutdown_marker(&data_dir)?;
        let catalog = SqliteCatalog::open(&paths::catalog_file(&data_dir))?;
        config.readiness.set_catalog_open(true);
        let metrics = Arc::new(Metrics::default());
        let (logs, recovery) = LogManager::load(
            LogSettings {
                data_dir: data_dir.clone(),
                topic_defaults: config.topic_defaults.clone(),
                clock: Arc::clone(&config.clock),
                producer_id_expiration_ms: config.producer_id_expiration_ms,
                max_partitions: config.max_partitions,
                events: Arc::clone(&metrics.events),
            },
            &catalog,
            clean,
        )
        .inspect_err(|_| config.readiness.set_catalog_open(false))?;
        let logs = Arc::new(logs);
        let catalog: SharedCatalog = Arc::new(Mutex::new(Box::new(catalog)));
        let cluster_id = data_dir::load_or_create_cluster_id(&data_dir)?;
        let tasks = TaskExecutor::new(Arc::clone(&config.clock));
        let remote = match &config.remote {
            None => None,
            Some(settings) => {
                let mut store = match &settings.store {
                    Some(s) => RemoteStore::new(Arc::clone(s), settings.url.clone()),
                    None => RemoteStore::from_url(&settings.url)?,
                };
                // Every request of the remote tier (tiering, reads, retention,
                // reaper) is counted.
                store.store = Arc::new(metrics::MeteredStore::new(
                    Arc::clone(&store.store),
                    Arc::clone(&metrics),
                ));
                // The quotas wrap the metered store, so the request
                // latencies measured are the store's, not the quota's waits.
                if settings.copy_max_bytes_per_second < u64::MAX
                    || settings.fetch_max_bytes_per_second < u64::MAX
                {
                    store.store = Arc::new(crate::remote::quota::QuotaStore::new(
                        Arc::clone(&store.store),
                        settings.copy_max_bytes_per_second,
                        settings.fetch_max_bytes_per_second,
                    ));
                }
                Some(Arc::new(
                    RemoteLogManager::new(store, settings.clone())?
                        .with_copy_round_duration(metrics.tiering_round_duration.clone()),
                ))
            }
        };
        // Every COPY_FINISHED segment (one query, not one per partition):
        // no partition may hand out an offset the bucket already holds, and
        // reads may use them when a remote tier is configured.
        let rows =
            lock(&catalog).remote_segments_in_state(crate::catalog::RemoteState::CopyFinished)?;
        let by_id: std::collections::HashMap<uuid::Uuid, _> = logs
            .topic_states()
            .into_iter()
            .map(|t| (t.record.id, t))
            .collect();
        let mut tiered_end: std::collections::HashMap<(uuid::Uuid, u32), i64> =
            std::collections::HashMap::new();
        for row in rows {
            let end = tiered_end
                .entry((row.topic_id, row.partition))
                .or_insert(i64::MIN);
            *end = (*end).max(row.last_offset + 1);
            if remote.is_some() {
                if let Some(p) = by_id
                    .get(&row.topic_id)
                    .and_then(|t| t.partitions.get(row.partition as usize))
                {
                    p.add_remote(row);
                }
            }
        }
        for ((topic_id, partition), end) in tiered_end {
            if let Some(p) = by_id
                .get(&topic_id)
                .and_then(|t| t.partitions.get(partition as usize))
            {
                if let Err(e) = p.start_after_tiered(end) {
                    tracing::error!(%topic_id, partition, error = %e, "cannot restart a local log after its tiered data");
                }
            }
        }
        let fetcher = match (&remote, &config.remote) {
            (Some(m), Some(settings)) => {
                let handle = m
                    .handle()
                    .ok_or_else(|| Error::internal("the remote tier's runtime is gone"))?;
                Some((
                    RemoteFetcher::with_tracker(
                        m.store().clone(),
                        settings.fetch,
                        tasks.tracker().clone(),
                        (metrics.chunk_cache.clone(), metrics.index_cache.clone()),
                    ),
                    handle,
                ))
            }
            _ => None,
        };
        let mut cleaner = LogCleaner::new(config.cleaner);
        if let (Some(m), Some((fetcher, _))) = (&remote, &fetcher) {
            cleaner = cleaner.with_tier(TierContext {
                manager: Arc::clone(m),
                fetcher: fetcher.clone(),
                catalog: Arc::clone(&catalog),
                metrics: Arc::clone(&metrics),
            });
        }
        let snapshots = Arc::new(CatalogSnapshotter::new(cluster_id.clone()));
        let acls = lock(&catalog).acls()?;
        let engine = Engine {
            config,
            tasks,
            logs,
            catalog,
            appends: tokio::sync::watch::channel(0).0,
            cluster_id,
            metrics,
            remote,
            fetcher,
            recovery,
            cleaner: Arc::new(cleaner),
            snapshots,
            acls: std::sync::RwLock::new(Arc::new(acls)),
            _lock: dir_lock,
        };
        engine
            .start_jobs()
            .map_err(|e| Error::io("cannot start background tasks for", &data_dir, e))?;
        engine.config.readiness.set_partitions_loaded(true);
        tracing::info!(data_dir = %data_dir.display(), clean_shutdown = clean, "engine open");
        Ok(engine)
    }

    /// Register the engine's periodic jobs with the executor, each on its
    /// own thread: flush, local retention, and the remote log manager's
    /// reaper, copy and expiration (each every
    /// `remote.log.manager.task.interval.ms` by the engine clock).
    fn start_jobs(&self) -> std::io::Result<()> {
        let Some(interval) = self.config.flush_check_interval else {
            return Ok(());
        };
        let logs = Arc::clone(&self.logs);
        self.tasks
            .periodic("flush", interval, Box::new(move |_| logs.flush_due_logs()))?;
        let logs = Arc::clone(&self.logs);
        let remote_tier = self.remote.is_some();
        let every = self.config.retention_check_interval.as_millis() as i64;
        let mut last = i64::MIN;
        self.tasks.periodic(
            "local-retention",
            interval.min(self.config.retention_check_interval),
            Box::new(move |now| {
                if now.saturating_sub(last) >= every {
                    last = now;
                    retention::run_local_retention(&logs, remote_tier, now);
                }
            }),
        )?;
        let logs = Arc::clone(&self.logs);
        let cleaner = Arc::clone(&self.cleaner);
        let mut idle_until = i64::MIN;
        self.tasks.periodic(
            "log-cleaner",
            interval,
            Box::new(move |now| {
                if now < idle_until {
                    return;
                }
                if cleaner.run(&logs, now).partitions_cleaned == 0 {
                    // Nothing was due: look again after the backoff.
                    idle_until = now.saturating_add(cleaner.settings.backoff_ms);
                }
            }),
        )?;
        if let Some(manager) = &self.remote {
            for job in RlmJob::ALL {
                let manager = Arc::clone(manager);
                let logs = Arc::clone(&self.logs);
                let catalog = Arc::clone(&self.catalog);
                let mut last = i64::MIN;
                self.tasks.periodic(
                    job.name(),
                    interval,
                    Box::new(move |now| {
                        if now.saturating_sub(last) < manager.settings().task_interval_ms {
                            return;
                        }
                        last = now;
                        let scope = Scope {
                            logs: &logs,
                            catalog: &catalog,
                        };
                        let report = manager.run_blocking(scope, &[job]);
                        if report != RoundReport::default() {
                            tracing::debug!(job = job.name(), ?report, "remote log manager");
                        }
                    }),
                )?;
            }
            let every = manager.settings().catalog_snapshot_interval_ms;
            if every > 0 {
                let manager = Arc::clone(manager);
                let logs = Arc::clone(&self.logs);
                let catalog = Arc::clone(&self.catalog);
                let snapshots = Arc::clone(&self.snapshots);
                let mut last = i64::MIN;
                self.tasks.periodic(
                    "catalog-snapshot",
                    interval.min(Duration::from_millis(every as u64)),
                    Box::new(move |now| {
                        if now.saturating_sub(last) >= every {
                            last = now;
                            snapshots.run_logged(&logs, &catalog, &manager, now);
                        }
                    }),
                )?;
            }
        }
        Ok(())
    }

    /// Write a catalog snapshot to the bucket now (what the
    /// `catalog-snapshot` job does every `catalog.snapshot.interval.ms`),
    /// even if nothing changed since the last one. `Invalid` without a
    /// remote tier.
    pub fn write_catalog_snapshot(&self) -> Result<SnapshotOutcome> {
        let Some(manager) = &self.remote else {
            return Err(Error::invalid("no remote tier is configured"));
        };
        self.snapshots
            .run(&self.logs, &self.catalog, manager, self.now_ms(), true)
    }

    /// The executor running this engine's background work; the broker
    /// registers its group jobs and the metrics listener here.
    pub fn tasks(&self) -> &TaskExecutor {
        &self.tasks
    }

    /// What recovery repaired at open, per partition (empty after a clean
    /// shutdown).
    pub fn recovery_reports(&self) -> &[(String, RecoveryReport)] {
        &self.recovery
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The engine clock's now, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }

    pub(crate) fn catalog(&self) -> &SharedCatalog {
        &self.catalog
    }

    /// Create a topic with `partitions` partitions and config `overrides`
    /// (Kafka names, validated: an unknown key or bad value is an error
    /// naming it). An existing name is `AlreadyExists`, and nothing of the
    /// existing topic changes.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        self.logs
            .create_topic(&self.catalog, name, partitions, overrides)
    }

    /// Delete a topic and all its data (remote segments go with the
    /// reaper's next round).
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.logs.delete_topic(&self.catalog, name)?;
        // Long-polling fetches of the topic wake up and learn it is gone.
        self.appends.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        self.logs.topics()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Result<TopicInfo> {
        let state = self.logs.topic(name)?;
        Ok(self.logs.info(&state))
    }

    /// The topic with id `id`.
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Result<TopicInfo> {
        self.logs.topic_by_id(id)
    }

    /// Replace a topic's config overrides (validated as a whole, then stored
    /// and applied to its partitions).
    pub fn set_topic_configs(
        &self,
        name: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        self.logs.set_topic_configs(&self.catalog, name, overrides)
    }

    /// Grow topic `name` to `total` partitions (never fewer: Kafka's
    /// CreatePartitions); with `validate_only`, only check.
    pub fn create_partitions(
        &self,
        name: &str,
        total: u32,
        validate_only: bool,
    ) -> Result<TopicInfo> {
        self.logs
            .create_partitions(&self.catalog, name, total, validate_only)
    }

    /// The broker-wide topic config defaults (`[topic_defaults]`).
    pub fn topic_defaults(&self) -> &BTreeMap<String, String> {
        self.logs.topic_defaults()
    }

    /// The cluster id, created with the data directory and kept in it.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// This engine's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The remote read path (chunk cache, counters), when a remote tier is
    /// configured.
    pub fn remote_fetcher(&self) -> Option<&RemoteFetcher> {
        self.fetcher.as_ref().map(|(f, _)| f)
    }

    /// How long a broker Fetch waits for remote data
    /// (`remote.fetch.max.wait.ms`).
    pub fn remote_fetch_max_wait(&self) -> Duration {
        Duration::from_millis(
            self.fetcher
                .as_ref()
                .map_or(0, |(f, _)| f.settings().max_wait_ms),
        )
    }

    /// Run `f` on a partition's local log (roll, truncate, delete segments,
    /// inspect segments). The partition is locked meanwhile.
    pub fn with_log<T>(
        &self,
        topic: &str,
        partition: u32,
        f: impl FnOnce(&mut LocalLog) -> Result<T>,
    ) -> Result<T> {
        self.logs.partition(topic, partition)?.with_log(f)
    }

    /// Run every remote log manager job once now (reaper, copy,
    /// expiration), then local retention, and wait; the background jobs run
    /// the same work every `remote.log.manager.task.interval.ms` (and
    /// `log.retention.check.interval.ms`).
    pub fn run_remote_round(&self) -> Result<RoundReport> {
        let Some(manager) = &self.remote else {
            return Err(Error::invalid("no remote tier is configured"));
        };
        let scope = Scope {
            logs: &self.logs,
            catalog: &self.catalog,
        };
        let mut report = manager.run_blocking(scope, &RlmJob::ALL);
        report.local_deleted += self.run_local_retention().local_deleted;
        Ok(report)
    }

    /// Run the flush job's round once now (`flush.ms`, producer expiry,
    /// sealed segments' fsync, offline partitions into the recent events),
    /// as the background job does every `flush_check_interval_ms`.
    pub fn run_flush_check(&self) {
        self.logs.flush_due_logs();
    }

    /// Run local retention once now (`retention.ms` / `retention.bytes`
    /// without remote storage, `local.retention.*` with it), with or
    /// without a remote tier; the background job runs it every
    /// `log.retention.check.interval.ms`.
    pub fn run_local_retention(&self) -> RetentionReport {
        RetentionReport {
            local_deleted: retention::run_local_retention(
                &self.logs,
                self.remote.is_some(),
                self.now_ms(),
            ),
        }
    }

    /// Clean every compacted partition that is due, now (what the
    /// `log-cleaner` job does each run).
    pub fn run_log_cleaner(&self) -> CleanerReport {
        self.cleaner.run(&self.logs, self.now_ms())
    }

    /// Every online partition of a compacted topic: its dirty ratio and
    /// cleanable section now, and where the last pass left it.
    pub fn log_cleaner_partitions(&self) -> Vec<PartitionCleaning> {
        log_cleaner::compacted_partitions(&self.cleaner, &self.logs, self.now_ms())
    }

    /// The log cleaner (its settings and totals).
    pub fn log_cleaner(&self) -> &LogCleaner {
        &self.cleaner
    }

    /// The remote store, when a remote tier is configured.
    pub fn remote_store(&self) -> Option<&RemoteStore> {
        self.remote.as_ref().map(|m| m.store())
    }

    /// Tiered segments of a partition as the catalog records them (every
    /// state), oldest first.
    pub fn remote_segments(&self, topic: &str, partition: u32) -> Result<Vec<RemoteSegment>> {
        let info = self.topic(topic)?;
        lock(&self.catalog).remote_segments(info.id, partition)
    }

    /// fsync every partition's active segment.
    pub fn flush(&self) -> Result<()> {
        for p in self.logs.all_partitions() {
            p.flush()?;
        }
        Ok(())
    }

    /// Shut down cleanly: stop and join background work, seal and fsync
    /// every partition, and leave the clean-shutdown marker so the next
    /// open skips recovery. Later calls fail with `Closed`.
    pub fn shutdown(&self) -> Result<()> {
        // A tiering round under way (a slow or failing bucket) ends at once;
        // what it leaves half done is the reaper's, as after a crash.
        if let Some(m) = &self.remote {
            m.cancel();
        }
        self.cleaner.cancel();
        // `/readyz` says so from now on.
        self.config.readiness.set_partitions_loaded(false);
        self.tasks.stop();
        self.logs.close_for_creation();
        // The last catalog snapshot, after every background job (and the
        // broker, stopped before) is done changing the catalog; only when
        // the snapshot job ran (an engine without background jobs writes
        // one only when asked).
        if let Some(m) = &self.remote {
            if self.config.flush_check_interval.is_some()
                && m.settings().catalog_snapshot_interval_ms > 0
            {
                self.snapshots
                    .run_logged(&self.logs, &self.catalog, m, self.now_ms());
            }
        }
        let mut first_error = None;
        let mut offline = 0;
        for p in self.logs.all_partitions() {
            match p.close_cleanly() {
                Ok(true) => {}
                Ok(false) => offline += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if offline > 0 {
            // Their files were never checked; the next open must not trust them.
            tracing::warn!(
                offline,
                "offline partitions: not marking the shutdown clean"
            );
            return Ok(());
        }
        data_dir::write_clean_shutdown_marker(&self.config.data_dir)?;
        tracing::info!(data_dir = %self.config.data_dir.display(), "engine shut down cleanly");
        Ok(())
    }
}
