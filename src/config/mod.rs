//! Broker settings and topic configs: every config key tierlog knows, its
//! default and its validation, in one place.
//!
//! Topic configs use Kafka's names (`retention.ms`, `segment.bytes`, …). A
//! topic stores only its overrides; [`TopicConfig::resolve`] layers them on
//! the broker's `[topic_defaults]` and Kafka's defaults and validates the
//! result. Broker settings come from `tierlog.toml`, then `TIERLOG_*`
//! variables and flags (handled by the CLI), and nothing is required.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest partition count accepted for one topic.
pub const MAX_PARTITIONS: u32 = 10_000;

/// Default budget of partitions per broker (`max.partitions`).
pub const DEFAULT_MAX_PARTITIONS: u32 = 100_000;

/// Default `queued.max.request.bytes`: 256 MiB (Kafka's default is -1,
/// unbounded).
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: usize = 256 << 20;

/// Default `max.connections`: ten thousand (Kafka's default is
/// 2147483647, unbounded).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;

/// Kafka's default `connections.max.idle.ms` (ten minutes).
pub const DEFAULT_CONNECTIONS_MAX_IDLE_MS: u64 = 600_000;

/// Default `request_read_timeout_ms`: a minute (Kafka has no such setting).
pub const DEFAULT_REQUEST_READ_TIMEOUT_MS: u64 = 60_000;

/// Kafka's default `producer.id.expiration.ms` (one day).
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

pub const REMOTE_STORAGE_ENABLE: &str = "remote.storage.enable";
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const LOCAL_RETENTION_MS: &str = "local.retention.ms";
pub const LOCAL_RETENTION_BYTES: &str = "local.retention.bytes";
pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const SEGMENT_MS: &str = "segment.ms";
pub const CLEANUP_POLICY: &str = "cleanup.policy";
pub const FLUSH_MESSAGES: &str = "flush.messages";
pub const FLUSH_MS: &str = "flush.ms";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";

/// How a config value is checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    /// A signed 64-bit integer at least `min`.
    Long {
        min: i64,
    },
    /// A signed 32-bit integer at least `min`.
    Int {
        min: i32,
    },
    /// One of the listed strings.
    OneOf(&'static [&'static str]),
}

/// One topic config key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    kind: Kind,
    pub doc: &'static str,
}

/// Every topic config tierlog accepts, with Kafka's defaults.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: CLEANUP_POLICY,
        default: "delete",
        kind: Kind::OneOf(&["delete"]),
        doc: "only `delete` (log compaction is not implemented)",
    },
    ConfigDef {
        name: FLUSH_MESSAGES,
        default: "9223372036854775807",
        kind: Kind::Long { min: 1 },
        doc: "fsync the log after this many messages (default: leave it to the OS)",
    },
    ConfigDef {
        name: FLUSH_MS,
        default: "9223372036854775807",
        kind: Kind::Long { min: 0 },
        doc: "fsync the log when this many ms passed since the last fsync",
    },
    ConfigDef {
        name: INDEX_INTERVAL_BYTES,
        default: "4096",
        kind: Kind::Int { min: 0 },
        doc: "bytes of log between two offset index entries",
    },
    ConfigDef {
        name: LOCAL_RETENTION_BYTES,
        default: "-2",
        kind: Kind::Long { min: -2 },
        doc: "bytes kept on local disk per partition (-2: same as retention.bytes)",
    },
    ConfigDef {
        name: LOCAL_RETENTION_MS,
        default: "-2",
        kind: Kind::Long { min: -2 },
        doc: "ms a segment stays on local disk (-2: same as retention.ms)",
    },
    ConfigDef {
        name: MAX_MESSAGE_BYTES,
        default: "1048588",
        kind: Kind::Int { min: 0 },
        doc: "largest record batch accepted",
    },
    ConfigDef {
        name: MESSAGE_TIMESTAMP_TYPE,
        default: "CreateTime",
        kind: Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches on append",
    },
    ConfigDef {
        name: REMOTE_STORAGE_ENABLE,
        default: "false",
        kind: Kind::Bool,
        doc: "tier sealed segments to the remote store",
    },
    ConfigDef {
        name: RETENTION_BYTES,
        default: "-1",
        kind: Kind::Long { min: -1 },
        doc: "bytes kept per partition, local + remote (-1: unlimited)",
    },
    ConfigDef {
        name: RETENTION_MS,
        default: "604800000",
        kind: Kind::Long { min: -1 },
        doc: "ms a record is kept, local + remote (-1: forever)",
    },
    ConfigDef {
        name: SEGMENT_BYTES,
        default: "1073741824",
        kind: Kind::Int { min: 14 },
        doc: "roll to a new segment at this size",
    },
    ConfigDef {
        name: SEGMENT_MS,
        default: "604800000",
        kind: Kind::Long { min: 1 },
        doc: "roll to a new segment after this many ms",
    },
];

impl ConfigDef {
    /// Kafka's type name for the value: BOOLEAN, INT, LONG, STRING or LIST.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Bool => "BOOLEAN",
            Kind::Int { .. } => "INT",
            Kind::Long { .. } => "LONG",
            Kind::OneOf(_) if self.name == CLEANUP_POLICY => "LIST",
            Kind::OneOf(_) => "STRING",
        }
    }
}

/// The definition of topic config `name`, if tierlog knows it.
pub fn topic_config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Check one `key=value` pair: the key must be known and the value valid for
/// it. The error names both.
pub fn validate_topic_config(key: &str, value: &str) -> Result<()> {
    let def = topic_config_def(key).ok_or_else(|| {
        Error::invalid(format!(
            "unknown topic config '{key}' (known: {})",
            TOPIC_CONFIGS
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let bad = |why: String| Error::invalid(format!("invalid value '{value}' for {key}: {why}"));
    match def.kind {
        Kind::Bool => match value {
            "true" | "false" => Ok(()),
            _ => Err(bad("expected true or false".into())),
        },
        Kind::Long { min } => {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| bad("expected an integer".into()))?;
            if v < min {
                return Err(bad(format!("must be at least {min}")));
            }
            Ok(())
        }
        Kind::Int { min } => {
            let v: i32 = value.trim().parse().map_err(|_| {
                bad(format!(
                    "expected an integer between {min} and {}",
                    i32::MAX
                ))
            })?;
            if v < min {
                return Err(bad(format!("must be at least {min}")));
            }
            Ok(())
        }
        Kind::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(())
            } else if key == CLEANUP_POLICY && value.split(',').any(|p| p.trim() == "compact") {
                Err(bad(
                    "log compaction is not supported by tierlog; use 'delete'".into(),
                ))
            } else {
                Err(bad(format!("expected one of {}", allowed.join(", "))))
            }
        }
    }
}

/// Whether batches keep the producer's timestamps or get the broker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageTimestampType {
    CreateTime,
    LogAppendTime,
}

/// A topic's effective configuration, typed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub remote_storage_enable: bool,
    /// -1: forever.
    pub retention_ms: i64,
    /// -1: unlimited.
    pub retention_bytes: i64,
    /// -2: same as `retention_ms`.
    pub local_retention_ms: i64,
    /// -2: same as `retention_bytes`.
    pub local_retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub max_message_bytes: usize,
    pub message_timestamp_type: MessageTimestampType,
    pub index_interval_bytes: u64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        // Kafka's defaults parse by construction; the test
        // `defaults_are_valid` proves it.
        TopicConfig::resolve(&BTreeMap::new(), &BTreeMap::new()).unwrap_or(TopicConfig {
            remote_storage_enable: false,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            local_retention_ms: -2,
            local_retention_bytes: -2,
            segment_bytes: 1 << 30,
            segment_ms: 604_800_000,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            message_timestamp_type: MessageTimestampType::CreateTime,
            index_interval_bytes: 4096,
        })
    }
}

impl TopicConfig {
    /// The effective value of every key: `overrides`, else `defaults` (the
    /// broker's `[topic_defaults]`), else Kafka's default.
    pub fn effective(
        overrides: &BTreeMap<String, String>,
        defaults: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        TOPIC_CONFIGS
            .iter()
            .map(|d| {
                let v = overrides
                    .get(d.name)
                    .or_else(|| defaults.get(d.name))
                    .cloned()
                    .unwrap_or_else(|| d.default.to_string());
                (d.name.to_string(), v)
            })
            .collect()
    }

    /// Validate `overrides` (every key known, every value valid, and the keys
    /// consistent with each other) and build the typed config.
    pub fn resolve(
        overrides: &BTreeMap<String, String>,
        defaults: &BTreeMap<String, String>,
    ) -> Result<TopicConfig> {
        for (k, v) in overrides.iter().chain(defaults.iter()) {
            validate_topic_config(k, v)?;
        }
        let all = Self::effective(overrides, defaults);
        let get = |k: &str| all.get(k).map(String::as_str).unwrap_or("");
        // Every value was validated above, so these parses succeed; map a
        // failure to an error anyway rather than trusting that.
        let long = |k: &str| -> Result<i64> {
            get(k)
                .trim()
                .parse::<i64>()
                .map_err(|_| Error::internal(format!("config {k} did not parse after validation")))
        };
        let config = TopicConfig {
            remote_storage_enable: get(REMOTE_STORAGE_ENABLE) == "true",
            retention_ms: long(RETENTION_MS)?,
            retention_bytes: long(RETENTION_BYTES)?,
            local_retention_ms: long(LOCAL_RETENTION_MS)?,
            local_retention_bytes: long(LOCAL_RETENTION_BYTES)?,
            segment_bytes: long(SEGMENT_BYTES)? as u64,
            segment_ms: long(SEGMENT_MS)?,
            flush_messages: long(FLUSH_MESSAGES)?,
            flush_ms: long(FLUSH_MS)?,
            max_message_bytes: long(MAX_MESSAGE_BYTES)? as usize,
            message_timestamp_type: if get(MESSAGE_TIMESTAMP_TYPE) == "LogAppendTime" {
                MessageTimestampType::LogAppendTime
            } else {
                MessageTimestampType::CreateTime
            },
            index_interval_bytes: long(INDEX_INTERVAL_BYTES)? as u64,
        };
        config.check_consistency()?;
        Ok(config)
    }

    /// Kafka's cross-key rules: local retention may not exceed total
    /// retention.
    fn check_consistency(&self) -> Result<()> {
        let check = |local: i64, total: i64, lkey: &str, tkey: &str| -> Result<()> {
            if local == -2 || total == -1 {
                return Ok(());
            }
            if local == -1 || local > total {
                return Err(Error::invalid(format!(
                    "invalid value {local} for {lkey}: must not exceed {tkey} ({total})"
                )));
            }
            Ok(())
        };
        check(
            self.local_retention_ms,
            self.retention_ms,
            LOCAL_RETENTION_MS,
            RETENTION_MS,
        )?;
        check(
            self.local_retention_bytes,
            self.retention_bytes,
            LOCAL_RETENTION_BYTES,
            RETENTION_BYTES,
        )
    }

    /// Local retention in ms after resolving -2; -1 means forever.
    pub fn effective_local_retention_ms(&self) -> i64 {
        if self.local_retention_ms == -2 {
            self.retention_ms
        } else {
            self.local_retention_ms
        }
    }

    /// Local retention in bytes after resolving -2; -1 means unlimited.
    pub fn effective_local_retention_bytes(&self) -> i64 {
        if self.local_retention_bytes == -2 {
            self.retention_bytes
        } else {
            self.local_retention_bytes
        }
    }
}

/// Check a topic name against Kafka's rules: 1 to 249 characters of
/// `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("topic name is empty"));
    }
    if name == "." || name == ".." {
        return Err(Error::invalid(format!("topic name cannot be '{name}'")));
    }
    if name.len() > 249 {
        return Err(Error::invalid(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(Error::invalid(format!(
            "topic name '{name}' contains '{c}'; only ASCII letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}

/// Broker settings, from `tierlog.toml` (every key optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Directory for partitions, the catalog and the embedded remote tier.
    pub data_dir: PathBuf,
    /// Address the Kafka listener binds.
    pub listen: String,
    /// Broker-wide defaults for topic configs, by Kafka name.
    pub topic_defaults: BTreeMap<String, String>,
    /// Milliseconds between runs of the background flush check.
    pub flush_check_interval_ms: u64,
    /// `host:port` clients are told to connect to; default: the listen
    /// address (127.0.0.1 when listening on all interfaces).
    pub advertised_listener: Option<String>,
    /// Address of the Prometheus endpoint (`GET /metrics`); off when unset.
    pub metrics_listen: Option<String>,
    /// Create unknown topics when a client's Metadata request allows it
    /// (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics_enable: bool,
    /// Partitions of auto-created topics (Kafka's `num.partitions`).
    pub num_partitions: u32,
    /// Partitions the broker holds at most, all topics together (KIP-578's
    /// `max.partitions`): a CreateTopics beyond it gets POLICY_VIOLATION.
    #[serde(alias = "max.partitions")]
    pub max_partitions: u32,
    /// Largest request accepted (Kafka's `socket.request.max.bytes`).
    pub socket_request_max_bytes: usize,
    /// Largest Fetch response the broker builds, whatever the client asks
    /// (Kafka's broker `fetch.max.bytes`, 55 MiB).
    #[serde(alias = "fetch.max.bytes")]
    pub fetch_max_bytes: usize,
    /// Request bytes all connections together may hold at once (Kafka's
    /// `queued.max.request.bytes`, unbounded there by default): a
    /// connection waits for room before it reads a frame body. A quarter
    /// is kept for requests of at most 64 KiB, so large or stalled frames
    /// cannot starve small ones; the rest must hold the largest request.
    #[serde(alias = "queued.max.request.bytes")]
    pub queued_max_request_bytes: usize,
    /// Connections the broker serves at once (Kafka's `max.connections`);
    /// one more is closed as soon as it is accepted.
    #[serde(alias = "max.connections")]
    pub max_connections: u32,
    /// Connections one client address may hold at once (Kafka's
    /// `max.connections.per.ip`); one more is closed as soon as it is
    /// accepted.
    #[serde(alias = "max.connections.per.ip")]
    pub max_connections_per_ip: u32,
    /// A connection with no request in flight and nothing sent or received
    /// for this long is closed (Kafka's `connections.max.idle.ms`).
    #[serde(alias = "connections.max.idle.ms")]
    pub connections_max_idle_ms: u64,
    /// Once a request frame has begun (its first byte, and again once its
    /// body may be read), all of it must arrive within this long, or the
    /// connection is closed: a client that sends part of a frame and
    /// stalls cannot hold a connection and its reserved bytes. tierlog's
    /// own; Kafka closes such a client only when it is idle.
    pub request_read_timeout_ms: u64,
    /// Shortest `session.timeout.ms` a consumer may ask for (Kafka's
    /// `group.min.session.timeout.ms`).
    pub group_min_session_timeout_ms: i32,
    /// Longest `session.timeout.ms` (Kafka's `group.max.session.timeout.ms`).
    pub group_max_session_timeout_ms: i32,
    /// How long the first rebalance of an empty group waits for more
    /// members (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: i32,
    /// How long committed offsets of a group without members are kept
    /// (Kafka's `offsets.retention.minutes`, KIP-211).
    #[serde(alias = "offsets.retention.minutes")]
    pub offsets_retention_minutes: i64,
    /// How often expired committed offsets are deleted (Kafka's
    /// `offsets.retention.check.interval.ms`).
    #[serde(alias = "offsets.retention.check.interval.ms")]
    pub offsets_retention_check_interval_ms: i64,
    /// Internal: the offset retention in milliseconds, overriding
    /// `offsets_retention_minutes` (tests use a short one). Not read from
    /// the config file.
    #[serde(skip)]
    pub offsets_retention_ms_override: Option<i64>,
    /// The remote tier: `file://DIR` or `s3://BUCKET[/PREFIX]`; default
    /// `file://<data_dir>/remote`.
    pub remote_url: Option<String>,
    /// Between remote log manager rounds (Kafka's
    /// `remote.log.manager.task.interval.ms`).
    pub remote_log_manager_task_interval_ms: u64,
    /// How often local retention runs (Kafka's
    /// `log.retention.check.interval.ms`), with or without a remote tier.
    #[serde(alias = "log.retention.check.interval.ms")]
    pub log_retention_check_interval_ms: u64,
    /// Multipart part size for segment uploads.
    pub remote_upload_part_bytes: usize,
    /// Size of the ranged GETs reading tiered segments, and of cached
    /// chunks (`remote.fetch.chunk.bytes`).
    #[serde(alias = "remote.fetch.chunk.bytes")]
    pub remote_fetch_chunk_bytes: u64,
    /// Memory for cached chunks of tiered segments (`remote.cache.bytes`).
    #[serde(alias = "remote.cache.bytes")]
    pub remote_cache_bytes: u64,
    /// Memory for decoded indexes of tiered segments
    /// (`remote.index.cache.bytes`).
    #[serde(alias = "remote.index.cache.bytes")]
    pub remote_index_cache_bytes: u64,
    /// Chunks read ahead after each remote read
    /// (`remote.fetch.prefetch.chunks`).
    #[serde(alias = "remote.fetch.prefetch.chunks")]
    pub remote_fetch_prefetch_chunks: usize,
    /// How long a Fetch waits for remote data before answering with what it
    /// has (`remote.fetch.max.wait.ms`).
    #[serde(alias = "remote.fetch.max.wait.ms")]
    pub remote_fetch_max_wait_ms: u64,
    /// How long a partition remembers an idle idempotent producer (Kafka's
    /// `producer.id.expiration.ms`).
    #[serde(alias = "producer.id.expiration.ms")]
    pub producer_id_expiration_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:9092".to_string(),
            topic_defaults: BTreeMap::new(),
            flush_check_interval_ms: 1000,
            advertised_listener: None,
            metrics_listen: None,
            auto_create_topics_enable: true,
            num_partitions: 1,
            max_partitions: DEFAULT_MAX_PARTITIONS,
            socket_request_max_bytes: 100 * 1024 * 1024,
            fetch_max_bytes: 55 * 1024 * 1024,
            queued_max_request_bytes: DEFAULT_QUEUED_MAX_REQUEST_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: i32::MAX as u32,
            connections_max_idle_ms: DEFAULT_CONNECTIONS_MAX_IDLE_MS,
            request_read_timeout_ms: DEFAULT_REQUEST_READ_TIMEOUT_MS,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offsets_retention_ms_override: None,
            remote_url: None,
            remote_log_manager_task_interval_ms: 30_000,
            log_retention_check_interval_ms: 300_000,
            remote_upload_part_bytes: 16 << 20,
            remote_fetch_chunk_bytes: 8 << 20,
            remote_cache_bytes: 256 << 20,
            remote_index_cache_bytes: 32 << 20,
            remote_fetch_prefetch_chunks: 2,
            remote_fetch_max_wait_ms: 500,
            producer_id_expiration_ms: DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        }
    }
}

impl BrokerConfig {
    /// The default file name looked up in the working directory.
    pub const DEFAULT_FILE: &'static str = "tierlog.toml";

    /// Parse TOML text; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<BrokerConfig> {
        let bad = |e: toml::de::Error| Error::invalid(format!("{origin}: {}", e.message().trim()));
        let table: toml::Table = toml::from_str(text).map_err(bad)?;
        // Kafka-style dotted names (`remote.fetch.chunk.bytes = 8388608`)
        // parse as nested tables: flatten them back into one dotted key.
        let mut flat = toml::Table::new();
        for (k, v) in table {
            match v {
                toml::Value::Table(t) if k != "topic_defaults" => flatten(&k, t, &mut flat),
                v => {
                    flat.insert(k, v);
                }
            }
        }
        let config: BrokerConfig = toml::Value::Table(flat).try_into().map_err(bad)?;
        config.validate()?;
        Ok(config)
    }

    /// How long committed offsets of a group without members are kept,
    /// in milliseconds.
    pub fn offsets_retention_ms(&self) -> i64 {
        self.offsets_retention_ms_override
            .unwrap_or_else(|| self.offsets_retention_minutes.saturating_mul(60_000))
    }

    /// Load `path`.
    pub fn load(path: &Path) -> Result<BrokerConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Check every setting; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        for (k, v) in &self.topic_defaults {
            validate_topic_config(k, v)
                .map_err(|e| Error::invalid(format!("[topic_defaults] {e}")))?;
        }
        TopicConfig::resolve(&BTreeMap::new(), &self.topic_defaults)?;
        if self.flush_check_interval_ms == 0 {
            return Err(Error::invalid("flush_check_interval_ms must be at least 1"));
        }
        if self.log_retention_check_interval_ms == 0 {
            return Err(Error::invalid(
                "log.retention.check.interval.ms (log_retention_check_interval_ms) must be at least 1",
            ));
        }
        if self.max_partitions == 0 {
            return Err(Error::invalid(
                "max.partitions (max_partitions) must be at least 1",
            ));
        }
        if self.num_partitions == 0 || self.num_partitions > MAX_PARTITIONS {
            return Err(Error::invalid(format!(
                "num_partitions must be between 1 and {}",
                MAX_PARTITIONS
            )));
        }
        if self.fetch_max_bytes < 1024 || self.fetch_max_bytes > i32::MAX as usize {
            return Err(Error::invalid(
                "fetch.max.bytes (fetch_max_bytes) must be between 1024 and 2147483647",
            ));
        }
        if self.socket_request_max_bytes < 1024 || self.socket_request_max_bytes > i32::MAX as usize
        {
            return Err(Error::invalid(
                "socket_request_max_bytes must be between 1024 and 2147483647",
            ));
        }
        if self.queued_max_request_bytes > i32::MAX as usize
            || self.queued_max_request_bytes - self.queued_max_request_bytes / 4
                < self.socket_request_max_bytes
        {
            return Err(Error::invalid(format!(
                "queued.max.request.bytes (queued_max_request_bytes) {} must be at most 2147483647 and \
                 three quarters of it must hold the largest request (socket_request_max_bytes {}): \
                 set it to at least {}",
                self.queued_max_request_bytes,
                self.socket_request_max_bytes,
                self.socket_request_max_bytes.div_ceil(3) * 4
            )));
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err(Error::invalid(
                "max.connections (max_connections) and max.connections.per.ip \
                 (max_connections_per_ip) must be at least 1",
            ));
        }
        if self.connections_max_idle_ms == 0 || self.request_read_timeout_ms == 0 {
            return Err(Error::invalid(
                "connections.max.idle.ms (connections_max_idle_ms) and request_read_timeout_ms \
                 must be at least 1",
            ));
        }
        if self.group_min_session_timeout_ms < 1
            || self.group_max_session_timeout_ms < self.group_min_session_timeout_ms
            || self.group_initial_rebalance_delay_ms < 0
        {
            return Err(Error::invalid(
                "group_min_session_timeout_ms must be at least 1 and at most group_max_session_timeout_ms, \
                 and group_initial_rebalance_delay_ms at least 0",
            ));
        }
        if self.offsets_retention_minutes < 1 || self.offsets_retention_minutes > i64::MAX / 60_000
        {
            return Err(Error::invalid(format!(
                "offsets.retention.minutes (offsets_retention_minutes) must be at least 1, got {}",
                self.offsets_retention_minutes
            )));
        }
        if self.offsets_retention_ms_override.is_some_and(|ms| ms < 1) {
            return Err(Error::invalid("offsets retention must be at least 1 ms"));
        }
        if self.offsets_retention_check_interval_ms < 1 {
            return Err(Error::invalid(format!(
                "offsets.retention.check.interval.ms (offsets_retention_check_interval_ms) must be at least 1, got {}",
                self.offsets_retention_check_interval_ms
            )));
        }
        if self.producer_id_expiration_ms < 1 {
            return Err(Error::invalid(
                "producer_id_expiration_ms must be at least 1",
            ));
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(Error::invalid(format!(
                "listen '{}' is not an address like 127.0.0.1:9092",
                self.listen
            )));
        }
        if self.remote_upload_part_bytes < 5 << 20 {
            return Err(Error::invalid(
                "remote_upload_part_bytes must be at least 5 MiB (S3's smallest multipart part)",
            ));
        }
        if self.remote_fetch_chunk_bytes < 4096 || self.remote_fetch_chunk_bytes > 1 << 30 {
            return Err(Error::invalid(format!(
                "remote.fetch.chunk.bytes {} must be between 4096 and 1073741824",
                self.remote_fetch_chunk_bytes
            )));
        }
        if self.remote_cache_bytes < self.remote_fetch_chunk_bytes {
            return Err(Error::invalid(format!(
                "remote.cache.bytes {} must hold at least one chunk (remote.fetch.chunk.bytes {})",
                self.remote_cache_bytes, self.remote_fetch_chunk_bytes
            )));
        }
        if self.remote_fetch_max_wait_ms > 300_000 {
            return Err(Error::invalid(format!(
                "remote.fetch.max.wait.ms {} must be at most 300000",
                self.remote_fetch_max_wait_ms
            )));
        }
        if self.remote_fetch_prefetch_chunks > 64 {
            return Err(Error::invalid(format!(
                "remote.fetch.prefetch.chunks {} must be at most 64",
                self.remote_fetch_prefetch_chunks
            )));
        }
        if let Some(url) = &self.remote_url {
            if !(url.starts_with("file://") || url.starts_with("s3://")) {
                return Err(Error::invalid(format!(
                    "remote_url '{url}' must start with file:// or s3://"
                )));
            }
        }
        let host_port = |a: &str| {
            a.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        };
        if let Some(a) = &self.advertised_listener {
            if !host_port(a) {
                return Err(Error::invalid(format!(
                    "advertised_listener '{a}' is not host:port"
                )));
            }
        }
        if let Some(a) = &self.metrics_listen {
            if !host_port(a) {
                return Err(Error::invalid(format!(
                    "metrics_listen '{a}' is not host:port"
                )));
            }
        }
        Ok(())
    }
}

/// Move the entries of table `t` under `prefix` into `out` as
/// `prefix.key` (recursively).
fn flatten(prefix: &str, t: toml::Table, out: &mut toml::Table) {
    for (k, v) in t {
        let key = format!("{prefix}.{k}");
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            v => {
                out.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests;
