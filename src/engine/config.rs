//! How an engine is configured (`EngineConfig`), from code or from the
//! broker's settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{BrokerConfig, DEFAULT_MAX_PARTITIONS, DEFAULT_PRODUCER_ID_EXPIRATION_MS};
use crate::remote::fetcher::FetchSettings;
use crate::tasks::log_cleaner::CleanerSettings;
use crate::tasks::remote_log_manager::RemoteSettings;

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
    /// How often the local retention job runs (Kafka's
    /// `log.retention.check.interval.ms`), with or without a remote tier,
    /// when background tasks run.
    pub retention_check_interval: Duration,
    /// Partitions the engine holds at most, all topics together
    /// (`max.partitions`); creating more is a `PolicyViolation`.
    pub max_partitions: u32,
    /// The log cleaner's settings (`log.cleaner.*`).
    pub cleaner: CleanerSettings,
    /// What `/readyz` reads: the engine marks the catalog open and the
    /// partitions loaded as `Engine::open` gets there; the broker marks
    /// its listener. Shared so a metrics endpoint started before the
    /// engine opens can answer probes meanwhile.
    pub readiness: Arc<crate::metrics::Readiness>,
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
            producer_id_expiration_ms: DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            retention_check_interval: Duration::from_millis(300_000),
            max_partitions: DEFAULT_MAX_PARTITIONS,
            cleaner: CleanerSettings::default(),
            readiness: Arc::default(),
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
            retention_check_interval: Duration::from_millis(config.log_retention_check_interval_ms),
            max_partitions: config.max_partitions,
            readiness: Arc::default(),
            cleaner: CleanerSettings {
                enable: config.log_cleaner_enable,
                dedupe_buffer_bytes: config.log_cleaner_dedupe_buffer_size,
                io_max_bytes_per_second: config.log_cleaner_io_max_bytes_per_second,
                backoff_ms: config.log_cleaner_backoff_ms.min(i64::MAX as u64) as i64,
            },
            remote: Some(RemoteSettings {
                task_interval_ms: config.remote_log_manager_task_interval_ms as i64,
                upload: crate::remote::uploader::UploadSettings {
                    part_size: config.remote_upload_part_bytes,
                    ..Default::default()
                },
                fetch: FetchSettings {
                    chunk_bytes: config.remote_fetch_chunk_bytes,
                    prefetch_chunks: config.remote_fetch_prefetch_chunks,
                    max_concurrent_gets: config.remote_fetch_max_concurrent_gets,
                    cache_bytes: config.remote_cache_bytes,
                    index_cache_bytes: config.remote_index_cache_bytes,
                    max_wait_ms: config.remote_fetch_max_wait_ms,
                },
                catalog_snapshot_interval_ms: config.catalog_snapshot_interval_ms,
                copy_max_bytes_per_second: config.remote_log_manager_copy_max_bytes_per_second,
                fetch_max_bytes_per_second: config.remote_log_manager_fetch_max_bytes_per_second,
                thread_nice: config.remote_thread_nice,
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
