//! tierlog: a Kafka-compatible log engine with tiered storage.
//!
//! This file is the embedded API: [`Engine::open`] a data directory, create
//! topics, [`Engine::append`] record batches, [`Engine::read`] them back,
//! [`Engine::shutdown`]. The broker and the CLI are built on it.
//!
//! ```no_run
//! use tierlog::{Engine, EngineConfig, format::{BatchBuilder, Record}};
//! # fn main() -> tierlog::Result<()> {
//! let engine = Engine::open(EngineConfig::new("./data"))?;
//! engine.create_topic("events", 1, &Default::default())?;
//! let mut batch = BatchBuilder::new();
//! batch.push(Record::new(None, Some(b"hello".to_vec()), 1_700_000_000_000));
//! let mut bytes = batch.build().expect("one record");
//! let appended = engine.append("events", 0, &mut bytes)?;
//! let read = engine.read("events", 0, appended.base_offset, 1 << 20)?;
//! assert!(!read.records.is_empty());
//! engine.shutdown()?;
//! # Ok(()) }
//! ```

pub mod broker;
pub mod catalog;
pub mod client;
pub mod clock;
pub mod config;
pub(crate) mod coordinator;
pub mod error;
pub mod format;
pub mod log;
pub mod metrics;
pub mod partition;
pub mod remote;
pub mod tasks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

pub use error::{Error, ErrorKind, Result};

use catalog::{Catalog, SqliteCatalog, TopicRecord};
use clock::{SharedClock, SystemClock};
use config::{validate_topic_name, BrokerConfig, TopicConfig};
use log::paths;
pub use log::{AppendInfo, LocalLog, RecoveryReport};
pub use partition::PartitionOffsets;
use partition::{Partition, PartitionState, ReadPlan};
use tasks::remote_log_manager::RemoteLogManager;
pub use tasks::remote_log_manager::{RemoteSettings, RoundReport};

/// Largest partition count accepted for one topic.
pub const MAX_PARTITIONS: u32 = 10_000;

/// How to open an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory for partitions and the catalog.
    pub data_dir: PathBuf,
    /// Broker-wide topic config defaults, by Kafka name.
    pub topic_defaults: BTreeMap<String, String>,
    /// Source of time.
    pub clock: SharedClock,
    /// How often the background task checks `flush.ms`; `None` runs no
    /// background task.
    pub flush_check_interval: Option<Duration>,
    /// The remote tier; `None` disables tiering (topics with
    /// `remote.storage.enable=true` then stay local).
    pub remote: Option<RemoteSettings>,
    /// How long partitions remember an idle idempotent producer (Kafka's
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
}

/// The embedded default remote tier: `file://<data>/remote`.
pub fn default_remote_url(data_dir: &Path) -> String {
    let dir = data_dir.join("remote");
    let abs = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir().map(|d| d.join(&dir)).unwrap_or(dir)
    };
    format!("file://{}", abs.display())
}

impl EngineConfig {
    /// Defaults with data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        EngineConfig {
            remote: Some(RemoteSettings::new(default_remote_url(&data_dir))),
            data_dir,
            topic_defaults: BTreeMap::new(),
            clock: Arc::new(SystemClock),
            flush_check_interval: Some(Duration::from_secs(1)),
            producer_id_expiration_ms: log::producer_state::DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        }
    }

    /// The engine part of the broker settings.
    pub fn from_broker(config: &BrokerConfig) -> Self {
        EngineConfig {
            data_dir: config.data_dir.clone(),
            topic_defaults: config.topic_defaults.clone(),
            clock: Arc::new(SystemClock),
            flush_check_interval: Some(Duration::from_millis(config.flush_check_interval_ms)),
            producer_id_expiration_ms: config.producer_id_expiration_ms,
            remote: Some(RemoteSettings {
                task_interval_ms: config.remote_log_manager_task_interval_ms as i64,
                upload: remote::uploader::UploadSettings {
                    part_size: config.remote_upload_part_bytes,
                    ..Default::default()
                },
                fetch: config.fetch_settings(),
                ..RemoteSettings::new(
                    config
                        .remote_url
                        .clone()
                        .unwrap_or_else(|| default_remote_url(&config.data_dir)),
                )
            }),
        }
    }

    /// Use `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
}

/// A topic as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: u32,
    /// Config overrides set on the topic.
    pub overrides: BTreeMap<String, String>,
    /// Effective value of every config key.
    pub effective: BTreeMap<String, String>,
}

/// Records read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole record batches, as stored (ready for the wire).
    pub records: Vec<u8>,
    pub log_start_offset: i64,
    /// Log end offset, which is the high watermark on one broker.
    pub log_end_offset: i64,
}

pub(crate) struct TopicState {
    pub(crate) record: TopicRecord,
    pub(crate) partitions: Vec<Arc<Partition>>,
}

pub(crate) struct Inner {
    pub(crate) config: EngineConfig,
    pub(crate) catalog: Mutex<Box<dyn Catalog>>,
    topics: RwLock<HashMap<String, Arc<TopicState>>>,
    /// Bumped after every append, for long-polling readers.
    appends: tokio::sync::watch::Sender<u64>,
    cluster_id: String,
    /// Set by shutdown; no topic is created after it.
    closed: AtomicBool,
    /// Held open for the engine's life: the exclusive lock on the data
    /// directory.
    _lock: std::fs::File,
    /// This engine's counters (`GET /metrics`).
    metrics: Arc<metrics::Metrics>,
}

/// The log engine: topics, partitions, their local logs and the catalog.
/// Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Engine {
    inner: Arc<Inner>,
    remote: Option<Arc<RemoteLogManager>>,
    /// Reads of tiered segments, on the remote log manager's runtime.
    fetcher: Option<(remote::fetcher::RemoteFetcher, tokio::runtime::Handle)>,
    tasks: Mutex<Vec<tasks::Dispatcher>>,
    recovery: Vec<(String, RecoveryReport)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves the data as it was at the last
    // completed write; the log's own invariants are re-checked on open.
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            config::validate_topic_config(k, v)?;
        }
        let dir_lock = lock_data_dir(&data_dir)?;
        let marker = paths::clean_shutdown_file(&data_dir);
        let clean = marker.exists();
        if clean {
            // Removed durably before anything is written, so a crash from
            // here on is never mistaken for a clean shutdown.
            std::fs::remove_file(&marker).map_err(|e| Error::io("cannot remove", &marker, e))?;
            log::local_log::sync_dir(&data_dir)?;
        }
        let catalog = SqliteCatalog::open(&paths::catalog_file(&data_dir))?;
        let deleted = catalog.deleted_topic_ids()?;
        let records = catalog.topics()?;
        let live_dirs: HashSet<PathBuf> = records
            .iter()
            .flat_map(|r| (0..r.partitions).map(|p| paths::partition_dir(&data_dir, &r.name, p)))
            .collect();
        // A crash between DeleteTopics' catalog transaction and its file
        // removal leaves directories naming a deleted topic id: finish.
        log::partition_dirs::remove_deleted(&data_dir, &deleted, &live_dirs);
        let mut topics = HashMap::new();
        let mut recovery = Vec::new();
        for record in records {
            let topic_config = TopicConfig::resolve(&record.configs, &config.topic_defaults);
            let mut partitions = Vec::new();
            for p in 0..record.partitions {
                let name = format!("{}-{p}", record.name);
                let state = match &topic_config {
                    Err(e) => PartitionState::Offline(Error::invalid(format!(
                        "{name}: bad stored config: {e}"
                    ))),
                    Ok(tc) => {
                        match claim_partition_dir(&data_dir, &record, p, &deleted).and_then(|()| {
                            LocalLog::open(
                                paths::partition_dir(&data_dir, &record.name, p),
                                name.clone(),
                                tc.clone(),
                                Arc::clone(&config.clock),
                                clean,
                            )
                        }) {
                            Ok((mut log, report)) => {
                                log.set_producer_id_expiration_ms(config.producer_id_expiration_ms);
                                if report != RecoveryReport::default() {
                                    recovery.push((name.clone(), report));
                                }
                                PartitionState::Online(log)
                            }
                            Err(e) => {
                                tracing::error!(partition = %name, error = %e, "partition cannot be opened; it stays offline");
                                PartitionState::Offline(e)
                            }
                        }
                    }
                };
                partitions.push(Arc::new(Partition::new(state)));
            }
            topics.insert(
                record.name.clone(),
                Arc::new(TopicState { record, partitions }),
            );
        }
        let cluster_id = load_or_create_cluster_id(&data_dir)?;
        let metrics = Arc::new(metrics::Metrics::default());
        let inner = Arc::new(Inner {
            catalog: Mutex::new(Box::new(catalog)),
            topics: RwLock::new(topics),
            appends: tokio::sync::watch::channel(0).0,
            cluster_id,
            closed: AtomicBool::new(false),
            _lock: dir_lock,
            config,
            metrics: Arc::clone(&metrics),
        });
        let remote = match &inner.config.remote {
            None => None,
            Some(settings) => {
                let mut store = match &settings.store {
                    Some(s) => remote::RemoteStore::new(Arc::clone(s), settings.url.clone()),
                    None => remote::RemoteStore::from_url(&settings.url)?,
                };
                // Every request of the remote tier (tiering, reads, retention,
                // reaper) is counted.
                store.store = Arc::new(metrics::MeteredStore::new(
                    Arc::clone(&store.store),
                    Arc::clone(&metrics),
                ));
                Some(Arc::new(RemoteLogManager::new(store, settings.clone())?))
            }
        };
        let fetcher = match &remote {
            Some(m) => {
                let handle = m
                    .handle()
                    .ok_or_else(|| Error::internal("the remote tier's runtime is gone"))?;
                // Reads may use every COPY_FINISHED segment (one query, not
                // one per partition).
                let rows = lock(&inner.catalog)
                    .remote_segments_in_state(catalog::RemoteState::CopyFinished)?;
                let by_id: HashMap<uuid::Uuid, Arc<TopicState>> = inner
                    .topic_states()
                    .into_iter()
                    .map(|t| (t.record.id, t))
                    .collect();
                for row in rows {
                    if let Some(p) = by_id
                        .get(&row.topic_id)
                        .and_then(|t| t.partitions.get(row.partition as usize))
                    {
                        p.add_remote(row);
                    }
                }
                Some((
                    remote::fetcher::RemoteFetcher::new(
                        m.store().clone(),
                        inner
                            .config
                            .remote
                            .as_ref()
                            .map(|r| r.fetch)
                            .unwrap_or_default(),
                    ),
                    handle,
                ))
            }
            None => None,
        };
        // One thread per job: a long tiering round never delays fsyncs.
        let mut dispatchers = Vec::new();
        if let Some(interval) = inner.config.flush_check_interval {
            let start = |job: tasks::Job| {
                tasks::Dispatcher::start(interval, vec![job])
                    .map_err(|e| Error::io("cannot start background tasks for", &data_dir, e))
            };
            let weak = Arc::downgrade(&inner);
            dispatchers.push(start(Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.flush_due_logs();
                }
            }))?);
            if let Some(manager) = &remote {
                dispatchers.push(start(remote_job(
                    Arc::downgrade(&inner),
                    Arc::clone(manager),
                )?)?);
            }
        }
        tracing::info!(data_dir = %data_dir.display(), clean_shutdown = clean, "engine open");
        Ok(Engine {
            inner,
            remote,
            fetcher,
            tasks: Mutex::new(dispatchers),
            recovery,
        })
    }

    /// What recovery repaired at open, per partition (empty after a clean
    /// shutdown).
    pub fn recovery_reports(&self) -> &[(String, RecoveryReport)] {
        &self.recovery
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    /// Create a topic with `partitions` partitions and config `overrides`
    /// (Kafka names, validated: an unknown key or bad value is an error
    /// naming it).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(Error::invalid(format!(
                "partition count {partitions} for topic '{name}' must be between 1 and {MAX_PARTITIONS}"
            )));
        }
        let topic_config = TopicConfig::resolve(overrides, &self.inner.config.topic_defaults)?;
        let record = TopicRecord {
            name: name.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions,
            configs: overrides.clone(),
            created_ms: self.inner.config.clock.now_ms(),
        };
        let mut topics = self.inner.topics.write().unwrap_or_else(|p| p.into_inner());
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Closed, "the engine is shut down"));
        }
        if topics.contains_key(name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        // The catalog decides first (name free, id assigned); no file is
        // touched before, so an existing topic's data is never at risk.
        let deleted = {
            let mut catalog = lock(&self.inner.catalog);
            catalog.create_topic(&record)?;
            catalog.deleted_topic_ids()
        };
        let data_dir = &self.inner.config.data_dir;
        let mut states = Vec::new();
        let (deleted, mut failed) = match deleted {
            Ok(d) => (d, None),
            Err(e) => (HashSet::new(), Some(e)),
        };
        for p in 0..partitions {
            if failed.is_some() {
                break;
            }
            let dir = paths::partition_dir(data_dir, name, p);
            // A directory already there belongs to no live topic (the
            // catalog just gave this name its first live id): removed if it
            // names a deleted topic, else kept aside, never read.
            let opened = log::partition_dirs::clear_way(data_dir, name, p, &deleted)
                .and_then(|_| claim_partition_dir(data_dir, &record, p, &deleted))
                .and_then(|()| {
                    LocalLog::open(
                        dir,
                        format!("{name}-{p}"),
                        topic_config.clone(),
                        Arc::clone(&self.inner.config.clock),
                        false,
                    )
                });
            match opened {
                Ok((mut log, _)) => {
                    log.set_producer_id_expiration_ms(self.inner.config.producer_id_expiration_ms);
                    states.push(Arc::new(Partition::new(PartitionState::Online(log))))
                }
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            // Roll back: the catalog forgets the topic (recording its id as
            // deleted), then the directories made for it, which name that
            // id, go.
            drop(states);
            match lock(&self.inner.catalog).delete_topic(name, self.inner.config.clock.now_ms()) {
                Ok(_) => {
                    for q in 0..partitions {
                        let _ = log::partition_dirs::clear_way(
                            data_dir,
                            name,
                            q,
                            &HashSet::from([record.id]),
                        );
                    }
                }
                Err(undo) => {
                    tracing::error!(topic = name, error = %undo, "cannot roll back a failed topic creation")
                }
            }
            return Err(e);
        }
        let state = Arc::new(TopicState {
            record,
            partitions: states,
        });
        let info = self.inner.info(&state);
        topics.insert(name.to_string(), state);
        tracing::info!(topic = name, partitions, "created topic");
        Ok(info)
    }

    /// Delete a topic and all its data.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let mut topics = self.inner.topics.write().unwrap_or_else(|p| p.into_inner());
        let state = topics
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_topic(name))?;
        // The catalog decides first (the row goes, the id is recorded as
        // deleted, remote segments are scheduled for the reaper), then the
        // files. A crash in between leaves directories naming a deleted id,
        // which the next open removes; a failed catalog change touches
        // nothing.
        lock(&self.inner.catalog).delete_topic(name, self.inner.config.clock.now_ms())?;
        topics.remove(name);
        let data_dir = &self.inner.config.data_dir;
        for (p, partition) in state.partitions.iter().enumerate() {
            *lock(&partition.state) = PartitionState::Closed;
            if let Err(e) = log::partition_dirs::discard(data_dir, name, p as u32) {
                tracing::warn!(topic = name, partition = p, error = %e, "cannot remove a deleted partition's directory yet; the next open removes it");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = topics.values().map(|t| self.inner.info(t)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Result<TopicInfo> {
        let state = self.inner.topic(name)?;
        Ok(self.inner.info(&state))
    }

    /// Replace a topic's config overrides (validated as a whole, then stored
    /// and applied to its partitions).
    pub fn set_topic_configs(
        &self,
        name: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        let topic_config = TopicConfig::resolve(overrides, &self.inner.config.topic_defaults)?;
        let mut topics = self.inner.topics.write().unwrap_or_else(|p| p.into_inner());
        let state = topics
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_topic(name))?;
        lock(&self.inner.catalog).set_topic_configs(name, overrides)?;
        for partition in &state.partitions {
            if let PartitionState::Online(log) = &mut *lock(&partition.state) {
                log.set_config(topic_config.clone());
            }
        }
        let mut record = state.record.clone();
        record.configs = overrides.clone();
        let new_state = Arc::new(TopicState {
            record,
            partitions: state.partitions.clone(),
        });
        let info = self.inner.info(&new_state);
        topics.insert(name.to_string(), new_state);
        Ok(info)
    }

    /// Validate and append record batches (one or more, concatenated, as in
    /// a produce request) to a partition. Offsets are assigned in place in
    /// `records`. Returns the offsets assigned.
    pub fn append(&self, topic: &str, partition: u32, records: &mut [u8]) -> Result<AppendInfo> {
        let bytes = records.len() as u64;
        let info = self
            .inner
            .partition(topic, partition)?
            .with_log(|log| log.append(records))
            .inspect_err(|_| self.inner.metrics.append_errors.add(1))?;
        self.inner.metrics.append_bytes.add(bytes);
        self.inner
            .metrics
            .append_records
            .add(info.record_count.max(0) as u64);
        // Only long-polling fetches hold receivers; with none, nobody waits.
        if self.inner.appends.receiver_count() > 0 {
            self.inner.appends.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(info)
    }

    /// A receiver that changes after every successful append, for readers
    /// that wait for new data (fetch long-poll). Mark it seen before reading
    /// to miss nothing.
    pub fn subscribe_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.appends.subscribe()
    }

    /// The cluster id, created with the data directory and kept in it.
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    /// The topic with id `id`.
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Result<TopicInfo> {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        topics
            .values()
            .find(|t| t.record.id == id)
            .map(|t| self.inner.info(t))
            .ok_or_else(|| Error::not_found(format!("unknown topic id {id}")))
    }

    /// The broker-wide topic config defaults (`[topic_defaults]`).
    pub fn topic_defaults(&self) -> &BTreeMap<String, String> {
        &self.inner.config.topic_defaults
    }

    /// Offset and timestamp of the largest timestamp in the log, remote
    /// tier included (the offset of the first record holding it), if any.
    pub fn max_timestamp_offset(&self, topic: &str, partition: u32) -> Result<Option<(i64, i64)>> {
        let p = self.inner.partition(topic, partition)?;
        let Some((fetcher, handle)) = &self.fetcher else {
            return p.with_log(|log| log.max_timestamp_offset());
        };
        // Both tiers seen at one instant (retention may move segments).
        let remote = p.remote.read().unwrap_or_else(|e| e.into_inner());
        let (local, local_start) =
            p.with_log(|log| Ok((log.max_timestamp_offset()?, log.log_start_offset())))?;
        let best_remote = remote.iter().filter(|s| s.base_offset < local_start).fold(
            None::<Arc<catalog::RemoteSegment>>,
            |best, s| match best {
                Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
                _ => Some(Arc::clone(s)),
            },
        );
        drop(remote);
        match best_remote {
            // On a tie the earlier offset (the bucket's) wins, as in Kafka.
            Some(seg) if local.is_none_or(|(_, ts)| seg.max_timestamp >= ts) => {
                let fetcher = fetcher.clone();
                let ts = seg.max_timestamp;
                run_on(handle, async move {
                    fetcher.offset_for_timestamp(&seg, ts).await
                })
            }
            _ => Ok(local),
        }
    }

    /// Whole batches from `offset` on, up to `max_bytes` (but at least one
    /// batch), as stored, from whichever tier holds them.
    pub fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadResult> {
        self.read_bounded(topic, partition, offset, max_bytes, true)
    }

    /// Like [`Engine::read`], but the first batch is returned when larger
    /// than `max_bytes` only if `min_one` (Kafka returns an oversized batch
    /// only first in a fetch response). Blocks on a remote read when the
    /// offset is only in the remote tier.
    pub fn read_bounded(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult> {
        match self.start_read(topic, partition, offset, max_bytes, min_one)? {
            ReadStart::Done(r) => Ok(r),
            ReadStart::Remote(r) => futures::executor::block_on(self.read_remote(r)),
        }
    }

    /// Start a read: a local one is done now (blocking file I/O); a remote
    /// one is returned to run with [`Engine::read_remote`], so a caller can
    /// bound how long it waits for it.
    pub fn start_read(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadStart> {
        let p = self.inner.partition(topic, partition)?;
        match p.plan_read(offset, max_bytes, min_one, self.fetcher.is_some())? {
            ReadPlan::Done(r) => {
                self.inner
                    .metrics
                    .read_bytes_local
                    .add(r.records.len() as u64);
                Ok(ReadStart::Done(r))
            }
            ReadPlan::Remote {
                request,
                log_start_offset,
                log_end_offset,
            } => Ok(ReadStart::Remote(RemoteRead {
                partition: p,
                name: format!("{topic}-{partition}"),
                request,
                log_start_offset,
                log_end_offset,
            })),
        }
    }

    /// Run a remote read on the remote tier's runtime. The returned future
    /// may be awaited on any runtime, or dropped: the read then finishes in
    /// the background and leaves its chunks in the cache.
    pub fn read_remote(
        &self,
        read: RemoteRead,
    ) -> impl std::future::Future<Output = Result<ReadResult>> + Send + 'static {
        let metrics = Arc::clone(&self.inner.metrics);
        let spawned = self.fetcher.as_ref().map(|(fetcher, handle)| {
            let fetcher = fetcher.clone();
            let request = read.request.clone();
            (
                handle.spawn(async move { fetcher.read(&request).await }),
                handle.clone(),
            )
        });
        async move {
            let Some((task, handle)) = spawned else {
                return Err(Error::invalid("no remote tier is configured"));
            };
            let result = task.await.map_err(|e| {
                Error::internal(format!("remote read of {} failed: {e}", read.name))
            })?;
            match result {
                Ok(records) => {
                    metrics.read_bytes_remote.add(records.len() as u64);
                    Ok(ReadResult {
                        records,
                        log_start_offset: read.log_start_offset,
                        log_end_offset: read.log_end_offset,
                    })
                }
                Err(e) => {
                    // Retention may have deleted the segment meanwhile: then
                    // the offset is out of range, as the client must learn.
                    // (The partition's lock may be held across an fsync:
                    // not on an async worker.)
                    let partition = Arc::clone(&read.partition);
                    let offsets = handle
                        .spawn_blocking(move || partition.offsets())
                        .await
                        .ok()
                        .and_then(|o| o.ok());
                    if let Some(o) = offsets {
                        if read.request.offset < o.log_start_offset {
                            return Err(partition::out_of_range(
                                &read.name,
                                read.request.offset,
                                &o,
                            ));
                        }
                    }
                    Err(e)
                }
            }
        }
    }

    /// The first record with timestamp ≥ `timestamp`, as `(offset,
    /// timestamp)`, remote tier included.
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>> {
        let p = self.inner.partition(topic, partition)?;
        let Some((fetcher, handle)) = &self.fetcher else {
            return p.with_log(|log| log.offset_for_timestamp(timestamp));
        };
        // Retention may move a segment from the local tier to the remote one
        // between the two lookups: then look again.
        for _ in 0..3 {
            let (local_start, remote) = p.remote_below_local()?;
            if let Some(seg) = remote.into_iter().find(|s| s.max_timestamp >= timestamp) {
                let fetcher = fetcher.clone();
                let found = run_on(handle, async move {
                    fetcher.offset_for_timestamp(&seg, timestamp).await
                })?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            let local = p.with_log(|log| {
                Ok((log.log_start_offset() == local_start)
                    .then(|| log.offset_for_timestamp(timestamp)))
            })?;
            if let Some(found) = local {
                return found;
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("{topic}-{partition}: segments kept moving between tiers during a timestamp lookup; retry"),
        ))
    }

    /// Log start (remote tier included), local log start and log end
    /// offsets.
    pub fn offsets(&self, topic: &str, partition: u32) -> Result<PartitionOffsets> {
        let p = self.inner.partition(topic, partition)?;
        let mut o = p.offsets()?;
        if self.fetcher.is_none() {
            o.log_start_offset = o.local_log_start_offset;
            o.last_tiered_offset = None;
        }
        Ok(o)
    }

    /// This engine's counters.
    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.inner.metrics
    }

    /// The Prometheus exposition of this engine: its counters, and every
    /// partition's offsets read now (an offline partition is left out).
    pub fn render_metrics(&self) -> String {
        let mut partitions = Vec::new();
        for t in self.topics() {
            for partition in 0..t.partitions {
                if let Ok(o) = self.offsets(&t.name, partition) {
                    partitions.push(metrics::PartitionFigures {
                        topic: t.name.clone(),
                        partition,
                        log_start_offset: o.log_start_offset,
                        local_log_start_offset: o.local_log_start_offset,
                        log_end_offset: o.log_end_offset,
                        last_tiered_offset: o.last_tiered_offset.unwrap_or(-1),
                    });
                }
            }
        }
        metrics::render(&self.inner.metrics, &partitions)
    }

    /// The remote read path (chunk cache, counters), when a remote tier is
    /// configured.
    pub fn remote_fetcher(&self) -> Option<&remote::fetcher::RemoteFetcher> {
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
        self.inner.partition(topic, partition)?.with_log(f)
    }

    /// Run one round of the remote log manager now (tiering, retention,
    /// reaper) and wait for it; the background task runs the same rounds
    /// every `remote.log.manager.task.interval.ms`. Retention runs even
    /// without a remote tier.
    pub fn run_remote_round(&self) -> Result<RoundReport> {
        let manager = match &self.remote {
            Some(m) => Arc::clone(m),
            None => {
                return Err(Error::invalid("no remote tier is configured"));
            }
        };
        Ok(manager.run_round_blocking(&self.inner))
    }

    /// The remote store, when a remote tier is configured.
    pub fn remote_store(&self) -> Option<&remote::RemoteStore> {
        self.remote.as_ref().map(|m| m.store())
    }

    /// Tiered segments of a partition as the catalog records them (every
    /// state), oldest first.
    pub fn remote_segments(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Vec<catalog::RemoteSegment>> {
        let info = self.topic(topic)?;
        lock(&self.inner.catalog).remote_segments(info.id, partition)
    }

    /// fsync every partition's active segment.
    pub fn flush(&self) -> Result<()> {
        for p in self.inner.all_partitions() {
            // Offline and closed partitions have nothing to flush.
            let online = matches!(&*lock(&p.state), PartitionState::Online(_));
            if online {
                p.with_log(|log| log.flush())?;
            }
        }
        Ok(())
    }

    /// Shut down cleanly: stop background tasks, seal and fsync every
    /// partition, and leave the clean-shutdown marker so the next open skips
    /// recovery. Later calls fail with `Closed`.
    pub fn shutdown(&self) -> Result<()> {
        for mut d in lock(&self.tasks).drain(..) {
            d.stop();
        }
        {
            // Under the topics lock: no topic is being created meanwhile.
            let _topics = self.inner.topics.write().unwrap_or_else(|p| p.into_inner());
            self.inner.closed.store(true, Ordering::SeqCst);
        }
        let mut first_error = None;
        let mut offline = 0;
        for p in self.inner.all_partitions() {
            let mut state = lock(&p.state);
            match &mut *state {
                PartitionState::Online(log) => {
                    if let Err(e) = log.close() {
                        tracing::error!(log = log.name(), error = %e, "cannot close log cleanly");
                        first_error.get_or_insert(e);
                    }
                }
                PartitionState::Offline(_) => offline += 1,
                PartitionState::Closed => {}
            }
            *state = PartitionState::Closed;
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
        let marker = paths::clean_shutdown_file(&self.inner.config.data_dir);
        std::fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("cannot write", &marker, e))?;
        std::fs::File::open(&self.inner.config.data_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("cannot fsync", &self.inner.config.data_dir, e))?;
        tracing::info!(data_dir = %self.inner.config.data_dir.display(), "engine shut down cleanly");
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for mut d in lock(&self.tasks).drain(..) {
            d.stop();
        }
    }
}

fn unknown_topic(name: &str) -> Error {
    Error::not_found(format!("unknown topic '{name}'"))
}

impl Inner {
    fn topic(&self, name: &str) -> Result<Arc<TopicState>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_topic(name))
    }

    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let state = self.topic(topic)?;
        state
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!(
                    "unknown partition {partition} of topic '{topic}' (it has {})",
                    state.partitions.len()
                ))
            })
    }

    pub(crate) fn topic_states(&self) -> Vec<Arc<TopicState>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = topics.values().cloned().collect();
        all.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        all
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    fn info(&self, state: &TopicState) -> TopicInfo {
        TopicInfo {
            name: state.record.name.clone(),
            id: state.record.id,
            partitions: state.record.partitions,
            overrides: state.record.configs.clone(),
            effective: TopicConfig::effective(&state.record.configs, &self.config.topic_defaults),
        }
    }

    /// The flush job: fsync sealed segments (outside the partition lock, so
    /// appends go on meanwhile) and advance the recovery point, then apply
    /// `flush.ms` to active segments and `producer.id.expiration.ms` to
    /// their producer state.
    fn flush_due_logs(&self) {
        let now = self.config.clock.now_ms();
        for p in self.all_partitions() {
            let pending = match &*lock(&p.state) {
                PartitionState::Online(log) => {
                    log.pending_flush().map(|f| (f, log.name().to_string()))
                }
                _ => None,
            };
            if let Some((pending, name)) = pending {
                match pending.sync() {
                    Ok(()) => {
                        if let PartitionState::Online(log) = &mut *lock(&p.state) {
                            if let Err(e) = log.complete_flush(&pending) {
                                tracing::error!(log = %name, error = %e, "cannot advance the recovery point");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(log = %name, error = %e, "background flush of sealed segments failed")
                    }
                }
            }
            if let PartitionState::Online(log) = &mut *lock(&p.state) {
                log.expire_producers(now);
                if let Err(e) = log.flush_if_due(now) {
                    tracing::error!(log = log.name(), error = %e, "background flush failed");
                }
            }
        }
    }
}

/// How a read started: done (local), or to be finished remotely.
#[derive(Debug)]
pub enum ReadStart {
    Done(ReadResult),
    Remote(RemoteRead),
}

/// A read to run on the remote tier ([`Engine::read_remote`]).
pub struct RemoteRead {
    partition: Arc<Partition>,
    name: String,
    request: remote::fetcher::RemoteReadRequest,
    log_start_offset: i64,
    log_end_offset: i64,
}

impl RemoteRead {
    /// The partition's log start offset when the read was planned.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The partition's log end offset when the read was planned.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }
}

impl std::fmt::Debug for RemoteRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRead")
            .field("partition", &self.name)
            .field("offset", &self.request.offset)
            .field("segment", &self.request.segment.segment_uuid)
            .finish()
    }
}

/// Run `fut` on the remote tier's runtime and wait for it (from any
/// thread, async contexts included: the wait blocks only this thread).
fn run_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let task = handle.spawn(fut);
    futures::executor::block_on(task)
        .map_err(|e| Error::internal(format!("remote task failed: {e}")))?
}

/// The dispatcher job running remote log manager rounds every
/// `task_interval_ms` (by the engine clock).
fn remote_job(inner: std::sync::Weak<Inner>, manager: Arc<RemoteLogManager>) -> Result<tasks::Job> {
    let mut last_run = i64::MIN;
    Ok(Box::new(move || {
        let Some(inner) = inner.upgrade() else { return };
        let now = inner.config.clock.now_ms();
        if now.saturating_sub(last_run) < manager.settings().task_interval_ms {
            return;
        }
        last_run = now;
        let report = manager.run_round_blocking(&inner);
        if report != RoundReport::default() {
            tracing::debug!(?report, "remote log manager round");
        }
    }))
}

/// Take the exclusive lock on `<data>/.lock`: two engines on one data
/// directory would recover and truncate each other's live segments.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    let path = paths::lock_file(data_dir);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("cannot open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "data directory {} is in use by another tierlog process",
                data_dir.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", &path, e)),
    }
}

/// The cluster id stored in the data directory, created on first open.
fn load_or_create_cluster_id(data_dir: &Path) -> Result<String> {
    let path = paths::cluster_id_file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {} // empty: a crash while creating it; create it anew
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot read", &path, e)),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io("cannot write", &path, e))?;
    Ok(id)
}

/// Make `p`'s directory `record`'s (at open, and after creation cleared
/// the way): a directory there that names a deleted topic id is removed
/// (a crash after the catalog created the topic, before the way was
/// cleared); one naming any other id is refused, so the partition stays
/// offline with an error naming the directory; one with no
/// `partition.metadata` (made by an older tierlog, or a crash before the
/// file was written) is adopted. The metadata file is written before the
/// log opens.
fn claim_partition_dir(
    data_dir: &Path,
    record: &TopicRecord,
    p: u32,
    deleted: &HashSet<uuid::Uuid>,
) -> Result<()> {
    let dir = paths::partition_dir(data_dir, &record.name, p);
    match log::partition_metadata::read(&dir)? {
        Some(id) if id == record.id => return Ok(()),
        Some(id) if deleted.contains(&id) => {
            log::partition_dirs::discard(data_dir, &record.name, p)?;
        }
        Some(id) => {
            return Err(Error::data(format!(
                "{} belongs to topic id {id}, not to '{}' (id {}): move it away to bring the partition online",
                dir.display(),
                record.name,
                record.id
            )))
        }
        None => {}
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io("cannot create partition directory", &dir, e))?;
    log::partition_metadata::write(&dir, record.id)
}
