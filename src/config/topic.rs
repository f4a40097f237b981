//! Topic configs by Kafka's names: every key, its default and its
//! validation, and [`TopicConfig`], the typed, validated result.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

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
pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
pub const COMPRESSION_TYPE: &str = "compression.type";
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS: &str = "message.timestamp.before.max.ms";
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS: &str = "message.timestamp.after.max.ms";
pub const MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS: &str = "message.timestamp.difference.max.ms";
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

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
    /// A signed 32-bit integer between `min` and `max`, or `or`.
    IntBetween {
        min: i32,
        max: i32,
        or: i32,
    },
    /// One of the listed strings.
    OneOf(&'static [&'static str]),
    /// Any string (stored and reported: a replication setting that has no
    /// meaning on one broker).
    Text,
    /// A number between `min` and `max`.
    Double {
        min: f64,
        max: f64,
    },
    /// A comma-separated list, each entry one of the listed strings, at
    /// least one, none twice (Kafka's `cleanup.policy`).
    ListOf(&'static [&'static str]),
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
        kind: Kind::ListOf(&["delete", "compact"]),
        doc: "`delete` (time and size retention), `compact` (keep the latest record per key), or both",
    },
    ConfigDef {
        name: "compression.gzip.level",
        default: "-1",
        kind: Kind::IntBetween { min: 1, max: 9, or: -1 },
        doc: "gzip level when compression.type is gzip (-1: the codec's default; stored, tierlog compresses at the default)",
    },
    ConfigDef {
        name: "compression.lz4.level",
        default: "9",
        kind: Kind::IntBetween { min: 1, max: 17, or: 9 },
        doc: "lz4 level when compression.type is lz4 (stored, tierlog compresses at the default)",
    },
    ConfigDef {
        name: COMPRESSION_TYPE,
        default: "producer",
        kind: Kind::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        doc: "codec batches are stored with: `producer` keeps the client's, any other recompresses on append",
    },
    ConfigDef {
        name: "compression.zstd.level",
        default: "3",
        kind: Kind::IntBetween { min: -131072, max: 22, or: 3 },
        doc: "zstd level when compression.type is zstd (stored, tierlog compresses at the default)",
    },
    ConfigDef {
        name: DELETE_RETENTION_MS,
        default: "86400000",
        kind: Kind::Long { min: 0 },
        doc: "ms a tombstone stays readable after its segment was first cleaned",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        default: "60000",
        kind: Kind::Long { min: 0 },
        doc: "ms before a deleted segment's file is removed (stored; tierlog deletes once nothing reads it)",
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
        name: "follower.replication.throttled.replicas",
        default: "",
        kind: Kind::Text,
        doc: "replicas throttled on followers (stored; tierlog is one broker)",
    },
    ConfigDef {
        name: INDEX_INTERVAL_BYTES,
        default: "4096",
        kind: Kind::Int { min: 0 },
        doc: "bytes of log between two offset index entries",
    },
    ConfigDef {
        name: "leader.replication.throttled.replicas",
        default: "",
        kind: Kind::Text,
        doc: "replicas throttled on the leader (stored; tierlog is one broker)",
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
        name: MAX_COMPACTION_LAG_MS,
        default: "9223372036854775807",
        kind: Kind::Long { min: 1 },
        doc: "ms after which a record is cleaned whatever the dirty ratio",
    },
    ConfigDef {
        name: MAX_MESSAGE_BYTES,
        default: "1048588",
        kind: Kind::Int { min: 0 },
        doc: "largest record batch accepted",
    },
    ConfigDef {
        name: "message.downconversion.enable",
        default: "true",
        kind: Kind::Bool,
        doc: "down-convert for old consumers (stored; tierlog serves Fetch v4+ only)",
    },
    ConfigDef {
        name: "message.format.version",
        default: "3.0-IV1",
        kind: Kind::Text,
        doc: "record format version (stored; tierlog writes magic v2)",
    },
    ConfigDef {
        name: MESSAGE_TIMESTAMP_AFTER_MAX_MS,
        default: "9223372036854775807",
        kind: Kind::Long { min: 0 },
        doc: "a CreateTime record more than this many ms ahead of the broker's clock is refused (INVALID_TIMESTAMP)",
    },
    ConfigDef {
        name: MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
        default: "9223372036854775807",
        kind: Kind::Long { min: 0 },
        doc: "a CreateTime record more than this many ms behind the broker's clock is refused (INVALID_TIMESTAMP)",
    },
    ConfigDef {
        name: MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS,
        default: "9223372036854775807",
        kind: Kind::Long { min: 0 },
        doc: "deprecated: both timestamp bounds, where the two above are not set",
    },
    ConfigDef {
        name: MESSAGE_TIMESTAMP_TYPE,
        default: "CreateTime",
        kind: Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches on append",
    },
    ConfigDef {
        name: MIN_CLEANABLE_DIRTY_RATIO,
        default: "0.5",
        kind: Kind::Double { min: 0.0, max: 1.0 },
        doc: "share of the log that must be uncleaned before the cleaner cleans it",
    },
    ConfigDef {
        name: MIN_COMPACTION_LAG_MS,
        default: "0",
        kind: Kind::Long { min: 0 },
        doc: "ms a record stays uncleaned (every version of its key readable)",
    },
    ConfigDef {
        name: MIN_INSYNC_REPLICAS,
        default: "1",
        kind: Kind::Int { min: 1 },
        doc: "replicas an acks=all produce needs; above 1 it fails with NOT_ENOUGH_REPLICAS (one broker)",
    },
    ConfigDef {
        name: "preallocate",
        default: "false",
        kind: Kind::Bool,
        doc: "preallocate segment files (stored; tierlog writes sequentially)",
    },
    ConfigDef {
        name: "remote.log.copy.disable",
        default: "false",
        kind: Kind::Bool,
        doc: "stop copying segments to the remote tier (KIP-950; stored, not acted on yet)",
    },
    ConfigDef {
        name: "remote.log.delete.on.disable",
        default: "false",
        kind: Kind::Bool,
        doc: "delete remote segments when tiering is turned off (KIP-950; stored, not acted on yet)",
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
        name: "segment.index.bytes",
        default: "10485760",
        kind: Kind::Int { min: 4 },
        doc: "offset index size limit (stored; tierlog's indexes grow with their segment)",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        default: "0",
        kind: Kind::Long { min: 0 },
        doc: "random jitter subtracted from segment.ms (stored, not applied)",
    },
    ConfigDef {
        name: SEGMENT_MS,
        default: "604800000",
        kind: Kind::Long { min: 1 },
        doc: "roll to a new segment after this many ms",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        default: "false",
        kind: Kind::Bool,
        doc: "elect an out-of-sync replica (stored; tierlog is one broker)",
    },
];

impl ConfigDef {
    /// Kafka's type name for the value: BOOLEAN, INT, LONG, STRING or LIST.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Bool => "BOOLEAN",
            Kind::Int { .. } | Kind::IntBetween { .. } => "INT",
            Kind::Long { .. } => "LONG",
            Kind::OneOf(_) | Kind::Text => "STRING",
            Kind::Double { .. } => "DOUBLE",
            Kind::ListOf(_) => "LIST",
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
        Kind::IntBetween { min, max, or } => match value.trim().parse::<i32>() {
            Ok(v) if v == or || (min..=max).contains(&v) => Ok(()),
            _ => Err(bad(format!(
                "expected {or} or an integer between {min} and {max}"
            ))),
        },
        Kind::Text => Ok(()),
        Kind::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(bad(format!("expected one of {}", allowed.join(", "))))
            }
        }
        Kind::Double { min, max } => match value.trim().parse::<f64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            _ => Err(bad(format!("expected a number between {min} and {max}"))),
        },
        Kind::ListOf(allowed) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if let Some(i) = items.iter().find(|i| !allowed.contains(i)) {
                return Err(bad(format!("'{i}' is not one of {}", allowed.join(", "))));
            }
            if (1..items.len()).any(|i| items[..i].contains(&items[i])) {
                return Err(bad("an entry is listed twice".into()));
            }
            Ok(())
        }
    }
}

/// What happens to old records (Kafka's `cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Time and size retention (`retention.ms`, `retention.bytes`) delete
    /// old segments.
    pub delete: bool,
    /// The log cleaner keeps the latest record of every key.
    pub compact: bool,
}

/// Whether batches keep the producer's timestamps or get the broker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageTimestampType {
    CreateTime,
    LogAppendTime,
}

/// The codec batches are stored with (Kafka's `compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Keep the codec each producer chose.
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    fn parse(s: &str) -> Self {
        match s {
            "uncompressed" => CompressionType::Uncompressed,
            "gzip" => CompressionType::Gzip,
            "snappy" => CompressionType::Snappy,
            "lz4" => CompressionType::Lz4,
            "zstd" => CompressionType::Zstd,
            _ => CompressionType::Producer,
        }
    }
}

/// A topic's effective configuration, typed and validated.
#[derive(Debug, Clone, PartialEq)]
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
    pub cleanup_policy: CleanupPolicy,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub delete_retention_ms: i64,
    pub compression_type: CompressionType,
    /// A CreateTime batch with a timestamp more than this far behind or
    /// ahead of the broker's clock is refused (`message.timestamp.before.max.ms`,
    /// `message.timestamp.after.max.ms`, or the deprecated
    /// `message.timestamp.difference.max.ms` for one not set).
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_after_max_ms: i64,
    /// Above 1, an acks=all produce fails with NOT_ENOUGH_REPLICAS.
    pub min_insync_replicas: i32,
}

impl Eq for TopicConfig {}

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
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: false,
            },
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
            compression_type: CompressionType::Producer,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: i64::MAX,
            min_insync_replicas: 1,
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
        let policy = |p: &str| get(CLEANUP_POLICY).split(',').any(|i| i.trim() == p);
        let cleanup_policy = CleanupPolicy {
            delete: policy("delete"),
            compact: policy("compact"),
        };
        let mut config = TopicConfig {
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
            cleanup_policy,
            min_cleanable_dirty_ratio: get(MIN_CLEANABLE_DIRTY_RATIO)
                .trim()
                .parse::<f64>()
                .map_err(|_| Error::internal("min.cleanable.dirty.ratio did not parse"))?,
            min_compaction_lag_ms: long(MIN_COMPACTION_LAG_MS)?,
            max_compaction_lag_ms: long(MAX_COMPACTION_LAG_MS)?,
            delete_retention_ms: long(DELETE_RETENTION_MS)?,
            compression_type: CompressionType::parse(get(COMPRESSION_TYPE)),
            message_timestamp_before_max_ms: long(MESSAGE_TIMESTAMP_BEFORE_MAX_MS)?,
            message_timestamp_after_max_ms: long(MESSAGE_TIMESTAMP_AFTER_MAX_MS)?,
            min_insync_replicas: long(MIN_INSYNC_REPLICAS)? as i32,
        };
        // Kafka 3.6+: the deprecated difference bounds both directions
        // where the new keys are left at their default.
        let difference = long(MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS)?;
        for bound in [
            &mut config.message_timestamp_before_max_ms,
            &mut config.message_timestamp_after_max_ms,
        ] {
            if *bound == i64::MAX {
                *bound = difference;
            }
        }
        config.check_consistency()?;
        if !cleanup_policy.delete {
            // Kafka: without `delete` in the policy, time and size
            // retention do not apply (a compacted topic keeps every key).
            // (Local retention still moves tiered segments' local copies
            // out: that deletes nothing of the log.)
            config.retention_ms = -1;
            config.retention_bytes = -1;
        }
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

/// Kafka's internal topics. tierlog keeps what they hold (committed
/// offsets, group and transaction state) in its catalog, so they are never
/// created as ordinary topics.
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// Is `name` one of Kafka's internal topics?
pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Refuse Kafka's internal topic names for a new topic.
pub fn refuse_internal_topic(name: &str) -> Result<()> {
    if is_internal_topic(name) {
        return Err(Error::invalid(format!(
            "creation of internal topic {name} is prohibited (tierlog keeps offsets and \
             group state in its catalog)"
        )));
    }
    Ok(())
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
