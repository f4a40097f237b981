//! The broker's settings as DescribeConfigs reports them for the broker
//! resource (`kafka-configs --describe --entity-type brokers`, admin UIs):
//! Kafka's names where Kafka has the setting, tierlog's `tierlog.toml` key
//! where it has none, each with its value, its type, whether it is still
//! tierlog's default, and whether it is secret.
//!
//! Topic defaults appear under Kafka's broker synonyms (`log.retention.ms`
//! for `retention.ms`, [`broker_synonym`]), as Kafka lists them.
//! Every broker setting is static here (read from `tierlog.toml`,
//! `TIERLOG_*` variables and flags at start): none can be altered at run
//! time.

use super::*;

/// One broker setting as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedSetting {
    pub name: String,
    /// `None`: unset (Kafka's null), or secret.
    pub value: Option<String>,
    /// Kafka's type name: BOOLEAN, STRING, INT, LONG, DOUBLE, LIST, PASSWORD.
    pub type_name: &'static str,
    /// The value is tierlog's default (source DEFAULT_CONFIG), not one set
    /// in the file, a variable or a flag (STATIC_BROKER_CONFIG).
    pub is_default: bool,
    /// A secret: reported as sensitive with no value.
    pub sensitive: bool,
    pub doc: &'static str,
}

/// Kafka's broker-level name for topic config `topic_name` (the default a
/// topic without an override gets), if Kafka has one.
pub fn broker_synonym(topic_name: &str) -> Option<&'static str> {
    Some(match topic_name {
        CLEANUP_POLICY => "log.cleanup.policy",
        DELETE_RETENTION_MS => "log.cleaner.delete.retention.ms",
        FLUSH_MESSAGES => "log.flush.interval.messages",
        FLUSH_MS => "log.flush.interval.ms",
        INDEX_INTERVAL_BYTES => "log.index.interval.bytes",
        LOCAL_RETENTION_BYTES => "log.local.retention.bytes",
        LOCAL_RETENTION_MS => "log.local.retention.ms",
        MAX_COMPACTION_LAG_MS => "log.cleaner.max.compaction.lag.ms",
        MAX_MESSAGE_BYTES => "message.max.bytes",
        MESSAGE_TIMESTAMP_TYPE => "log.message.timestamp.type",
        MIN_CLEANABLE_DIRTY_RATIO => "log.cleaner.min.cleanable.ratio",
        MIN_COMPACTION_LAG_MS => "log.cleaner.min.compaction.lag.ms",
        RETENTION_BYTES => "log.retention.bytes",
        RETENTION_MS => "log.retention.ms",
        SEGMENT_BYTES => "log.segment.bytes",
        SEGMENT_MS => "log.roll.ms",
        COMPRESSION_TYPE => "compression.type",
        MESSAGE_TIMESTAMP_BEFORE_MAX_MS => "log.message.timestamp.before.max.ms",
        MESSAGE_TIMESTAMP_AFTER_MAX_MS => "log.message.timestamp.after.max.ms",
        MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS => "log.message.timestamp.difference.max.ms",
        MIN_INSYNC_REPLICAS => "min.insync.replicas",
        "compression.gzip.level" => "compression.gzip.level",
        "compression.lz4.level" => "compression.lz4.level",
        "compression.zstd.level" => "compression.zstd.level",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        "message.downconversion.enable" => "log.message.downconversion.enable",
        "message.format.version" => "log.message.format.version",
        "preallocate" => "log.preallocate",
        "segment.index.bytes" => "log.index.size.max.bytes",
        "segment.jitter.ms" => "log.roll.jitter.ms",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        _ => return None,
    })
}

impl BrokerConfig {
    /// Every setting, in name order.
    pub fn described(&self) -> Vec<DescribedSetting> {
        let d = BrokerConfig::default();
        let mut out = Vec::new();
        let mut add =
            |name: &str, type_name, doc, value: Option<String>, default: Option<String>| {
                out.push(DescribedSetting {
                    name: name.to_string(),
                    is_default: value == default,
                    value,
                    type_name,
                    sensitive: false,
                    doc,
                })
            };
        macro_rules! setting {
            ($name:expr, $ty:expr, $doc:expr, |$c:ident| $value:expr) => {{
                let value = |$c: &BrokerConfig| -> Option<String> { $value };
                add($name, $ty, $doc, value(self), value(&d));
            }};
        }
        let s = |v: &dyn std::fmt::Display| Some(v.to_string());
        setting!(
            "broker.id",
            "INT",
            "this broker's id (tierlog is one broker)",
            |_c| s(&0)
        );
        setting!(
            "node.id",
            "INT",
            "this broker's id (tierlog is one broker)",
            |_c| s(&0)
        );
        setting!(
            "log.dirs",
            "STRING",
            "directory of partitions, the catalog and the embedded remote tier",
            |c| s(&c.data_dir.display())
        );
        setting!(
            "listeners",
            "LIST",
            "the Kafka listeners, PROTOCOL://host:port (the listeners setting, else PLAINTEXT://listen)",
            |c| c.listener_specs().ok().map(|specs| {
                specs
                    .iter()
                    .map(|l| format!("{}://{}", l.protocol, l.bind))
                    .collect::<Vec<_>>()
                    .join(",")
            })
        );
        setting!(
            "advertised.listeners",
            "LIST",
            "the addresses clients are told to connect to (null: the listeners' own)",
            |c| c
                .listener_specs()
                .ok()
                .map(|specs| {
                    specs
                        .iter()
                        .filter_map(|l| {
                            l.advertised
                                .as_ref()
                                .map(|a| format!("{}://{a}", l.protocol))
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
        );
        setting!(
            "listen",
            "STRING",
            "the PLAINTEXT listener's address when listeners is not set (tierlog's own)",
            |c| s(&c.listen)
        );
        setting!(
            "advertised_listener",
            "STRING",
            "the PLAINTEXT listener's advertised host:port when listeners is not set (tierlog's own)",
            |c| c.advertised_listener.clone()
        );
        setting!(
            "ssl.keystore.type",
            "STRING",
            "format of the keystore (PEM only)",
            |c| s(&c.ssl_keystore_type)
        );
        setting!(
            "ssl.keystore.location",
            "STRING",
            "PEM file with the private key and certificate chain of the SSL and SASL_SSL listeners",
            |c| c
                .ssl_keystore_location
                .as_ref()
                .map(|p| p.display().to_string())
        );
        setting!(
            "ssl.truststore.location",
            "STRING",
            "PEM CA bundle client certificates must chain to",
            |c| c
                .ssl_truststore_location
                .as_ref()
                .map(|p| p.display().to_string())
        );
        setting!(
            "ssl.client.auth",
            "STRING",
            "client certificates: none, requested or required",
            |c| s(&c.ssl_client_auth)
        );
        setting!(
            "sasl.enabled.mechanisms",
            "LIST",
            "SASL mechanisms offered on SASL listeners",
            |c| Some(c.sasl_enabled_mechanisms.join(","))
        );
        setting!(
            "connections.max.reauth.ms",
            "LONG",
            "longest SASL session before re-authentication (KIP-368; 0: never)",
            |c| s(&c.connections_max_reauth_ms)
        );
        setting!(
            "quota.window.num",
            "INT",
            "client quota rates are measured over this many sampled windows",
            |c| s(&c.quota_window_num)
        );
        setting!(
            "quota.window.size.seconds",
            "INT",
            "length of one client quota sampling window",
            |c| s(&c.quota_window_size_seconds)
        );
        setting!(
            "sasl.server.max.receive.size",
            "INT",
            "largest request accepted before a connection has authenticated",
            |c| s(&c.sasl_server_max_receive_size)
        );
        setting!(
            "auto.create.topics.enable",
            "BOOLEAN",
            "create unknown topics a Metadata request asks for",
            |c| s(&c.auto_create_topics_enable)
        );
        setting!(
            "num.partitions",
            "INT",
            "partitions of auto-created topics",
            |c| s(&c.num_partitions)
        );
        setting!(
            "max.partitions",
            "INT",
            "partitions this broker holds at most (KIP-578)",
            |c| s(&c.max_partitions)
        );
        setting!(
            "socket.request.max.bytes",
            "INT",
            "largest request accepted",
            |c| s(&c.socket_request_max_bytes)
        );
        setting!(
            "fetch.max.bytes",
            "INT",
            "largest Fetch response built",
            |c| s(&c.fetch_max_bytes)
        );
        setting!(
            "socket.sendfile.enable",
            "BOOLEAN",
            "fetched local records go to plaintext sockets with sendfile(2)",
            |c| s(&c.socket_sendfile_enable)
        );
        setting!(
            "queued.max.request.bytes",
            "LONG",
            "request bytes all connections may hold at once",
            |c| s(&c.queued_max_request_bytes)
        );
        setting!(
            "max.connections",
            "INT",
            "connections served at once",
            |c| s(&c.max_connections)
        );
        setting!(
            "max.connections.per.ip",
            "INT",
            "connections one client address may hold",
            |c| s(&c.max_connections_per_ip)
        );
        setting!(
            "allow.everyone.if.no.acl.found",
            "BOOLEAN",
            "a resource no ACL names is open to every principal",
            |c| s(&c.allow_everyone_if_no_acl_found)
        );
        setting!(
            "super.users",
            "LIST",
            "principals allowed everything (User:a;User:b)",
            |c| s(&c.super_users)
        );
        setting!(
            "max.connections.per.ip.overrides",
            "STRING",
            "per-address exceptions to max.connections.per.ip (ip:count,…)",
            |c| s(&c.max_connections_per_ip_overrides)
        );
        setting!(
            "connections.max.idle.ms",
            "LONG",
            "an idle connection is closed after this long",
            |c| s(&c.connections_max_idle_ms)
        );
        setting!(
            "request_read_timeout_ms",
            "LONG",
            "a request frame begun must arrive within this long (tierlog's own)",
            |c| s(&c.request_read_timeout_ms)
        );
        setting!(
            "flush_check_interval_ms",
            "LONG",
            "between runs of the background flush check (tierlog's own)",
            |c| s(&c.flush_check_interval_ms)
        );
        setting!(
            "group.min.session.timeout.ms",
            "INT",
            "shortest session.timeout.ms a consumer may ask for",
            |c| s(&c.group_min_session_timeout_ms)
        );
        setting!(
            "group.max.session.timeout.ms",
            "INT",
            "longest session.timeout.ms a consumer may ask for",
            |c| s(&c.group_max_session_timeout_ms)
        );
        setting!(
            "group.initial.rebalance.delay.ms",
            "INT",
            "how long an empty group's first rebalance waits for more members",
            |c| s(&c.group_initial_rebalance_delay_ms)
        );
        setting!(
            "offsets.retention.minutes",
            "INT",
            "how long a group without members keeps its committed offsets",
            |c| s(&c.offsets_retention_minutes)
        );
        setting!(
            "offsets.retention.check.interval.ms",
            "LONG",
            "how often expired committed offsets are deleted",
            |c| s(&c.offsets_retention_check_interval_ms)
        );
        setting!(
            "transaction.max.timeout.ms",
            "INT",
            "largest transaction.timeout.ms a transactional producer may ask for",
            |c| s(&c.transaction_max_timeout_ms)
        );
        setting!(
            "transactional.id.expiration.ms",
            "INT",
            "how long a transactional id with no open transaction is kept",
            |c| s(&c.transactional_id_expiration_ms)
        );
        setting!(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "INT",
            "how often transactions open past their timeout are aborted",
            |c| s(&c.transaction_abort_timed_out_transaction_cleanup_interval_ms)
        );
        setting!(
            "remote.log.storage.system.enable",
            "BOOLEAN",
            "tiered storage is available (topics opt in with remote.storage.enable)",
            |_c| s(&true)
        );
        setting!(
            "remote_url",
            "STRING",
            "the remote tier, file://DIR or s3://BUCKET[/PREFIX] (null: file://<log.dirs>/remote)",
            |c| c.remote_url.clone()
        );
        setting!(
            "remote.log.manager.task.interval.ms",
            "LONG",
            "between remote log manager rounds",
            |c| s(&c.remote_log_manager_task_interval_ms)
        );
        setting!(
            "remote_upload_part_bytes",
            "LONG",
            "multipart part size of segment uploads (tierlog's own)",
            |c| s(&c.remote_upload_part_bytes)
        );
        setting!(
            "remote.fetch.chunk.bytes",
            "LONG",
            "size of the ranged GETs and cached chunks of tiered segments",
            |c| s(&c.remote_fetch_chunk_bytes)
        );
        setting!(
            "remote.cache.bytes",
            "LONG",
            "memory for cached chunks of tiered segments",
            |c| s(&c.remote_cache_bytes)
        );
        setting!(
            "remote.index.cache.bytes",
            "LONG",
            "memory for decoded indexes of tiered segments",
            |c| s(&c.remote_index_cache_bytes)
        );
        setting!(
            "remote.fetch.prefetch.chunks",
            "INT",
            "chunks read ahead after each remote read",
            |c| s(&c.remote_fetch_prefetch_chunks)
        );
        setting!(
            "remote.fetch.max.concurrent.gets",
            "INT",
            "chunk GETs of tiered segments in flight at once per broker, shared evenly by the partitions being read",
            |c| s(&c.remote_fetch_max_concurrent_gets)
        );
        setting!(
            "remote.fetch.max.wait.ms",
            "LONG",
            "how long a Fetch waits for remote data before answering with what it has",
            |c| s(&c.remote_fetch_max_wait_ms)
        );
        setting!(
            "remote_thread_nice",
            "INT",
            "nice value of the remote tier's threads (chunk loads, checksums, uploads): above 0 they yield to request handling on busy cores; 0 keeps the broker's (tierlog's own)",
            |c| s(&c.remote_thread_nice)
        );
        setting!(
            "log.retention.check.interval.ms",
            "LONG",
            "how often retention runs",
            |c| s(&c.log_retention_check_interval_ms)
        );
        setting!(
            "producer.id.expiration.ms",
            "INT",
            "how long a partition remembers an idle idempotent producer",
            |c| s(&c.producer_id_expiration_ms)
        );
        setting!(
            "log.cleaner.enable",
            "BOOLEAN",
            "run the log cleaner for compacted topics",
            |c| s(&c.log_cleaner_enable)
        );
        setting!(
            "log.cleaner.dedupe.buffer.size",
            "LONG",
            "memory for the cleaner's key map",
            |c| s(&c.log_cleaner_dedupe_buffer_size)
        );
        setting!(
            "log.cleaner.io.max.bytes.per.second",
            "DOUBLE",
            "bytes per second the cleaner reads and writes at most",
            |c| s(&c.log_cleaner_io_max_bytes_per_second)
        );
        setting!(
            "log.cleaner.backoff.ms",
            "LONG",
            "how long the cleaner sleeps when nothing needs cleaning",
            |c| s(&c.log_cleaner_backoff_ms)
        );
        setting!(
            "catalog.snapshot.interval.ms",
            "LONG",
            "between catalog snapshots in the bucket, for tierlog restore (-1: off; tierlog's own)",
            |c| s(&c.catalog_snapshot_interval_ms)
        );
        setting!(
            "remote.log.manager.copy.max.bytes.per.second",
            "LONG",
            "bytes per second sent to the remote store at most (KIP-956)",
            |c| s(&c.remote_log_manager_copy_max_bytes_per_second)
        );
        setting!(
            "remote.log.manager.fetch.max.bytes.per.second",
            "LONG",
            "bytes per second read from the remote store at most (KIP-956)",
            |c| s(&c.remote_log_manager_fetch_max_bytes_per_second)
        );
        setting!(
            "max.incremental.fetch.session.cache.slots",
            "INT",
            "incremental fetch sessions kept at most (KIP-227)",
            |c| s(&c.max_incremental_fetch_session_cache_slots)
        );
        setting!(
            "metrics_listen",
            "STRING",
            "address of /metrics, /healthz, /readyz and the status page (tierlog's own)",
            |c| c.metrics_address().map(str::to_string)
        );
        for def in TOPIC_CONFIGS {
            let Some(name) = broker_synonym(def.name) else {
                continue;
            };
            let value = self.topic_defaults.get(def.name).cloned();
            out.push(DescribedSetting {
                name: name.to_string(),
                is_default: value.is_none(),
                value: Some(value.unwrap_or_else(|| def.default.to_string())),
                type_name: def.type_name(),
                sensitive: false,
                doc: def.doc,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

impl DescribedSetting {
    /// The value to report: none for a secret.
    pub fn reported_value(&self) -> Option<&str> {
        if self.sensitive {
            None
        } else {
            self.value.as_deref()
        }
    }
}
