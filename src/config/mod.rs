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

mod described;
/// Default `catalog.snapshot.interval.ms`: a minute.
pub const DEFAULT_CATALOG_SNAPSHOT_INTERVAL_MS: i64 = 60_000;

mod listeners;
mod topic;
pub use described::*;
pub use listeners::*;
pub use topic::*;

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
    /// address. Required when listening on a wildcard address (`0.0.0.0`,
    /// `::`): the broker refuses to start without it.
    pub advertised_listener: Option<String>,
    /// Address of the metrics endpoint (`/metrics`, `/healthz`, `/readyz`,
    /// the status page at `/`); [`METRICS_LISTEN_DEFAULT`] unless set, off
    /// when `""` or `"off"` (see [`BrokerConfig::metrics_address`]).
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
    /// Send fetched records of local segments from the page cache to the
    /// socket with `sendfile(2)` (zero-copy, as Kafka does) on plaintext
    /// listeners; off, they are copied through the broker's memory (TLS
    /// listeners and remote-tier records always are).
    #[serde(alias = "socket.sendfile.enable")]
    pub socket_sendfile_enable: bool,
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
    /// Per-address exceptions to `max.connections.per.ip`, Kafka's
    /// `max.connections.per.ip.overrides`: `"ip:count,ip:count"` (IP
    /// literals; IPv6 in brackets, `[::1]:50`).
    #[serde(alias = "max.connections.per.ip.overrides")]
    pub max_connections_per_ip_overrides: String,
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
    /// Largest `transaction.timeout.ms` a transactional producer may ask
    /// for (Kafka's `transaction.max.timeout.ms`); InitProducerId with a
    /// larger one gets INVALID_TRANSACTION_TIMEOUT.
    #[serde(alias = "transaction.max.timeout.ms")]
    pub transaction_max_timeout_ms: i32,
    /// How long a transactional id with no open transaction is kept after
    /// its last state change (Kafka's `transactional.id.expiration.ms`).
    #[serde(alias = "transactional.id.expiration.ms")]
    pub transactional_id_expiration_ms: i64,
    /// How often transactions open longer than their timeout are looked
    /// for and aborted (Kafka's
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    #[serde(alias = "transaction.abort.timed.out.transaction.cleanup.interval.ms")]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: i64,
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
    /// Chunk GETs of tiered segments in flight at once per broker, demand
    /// and read-ahead together; each partition read from the remote tier
    /// gets an even share (`remote.fetch.max.concurrent.gets`).
    #[serde(alias = "remote.fetch.max.concurrent.gets")]
    pub remote_fetch_max_concurrent_gets: usize,
    /// How long a Fetch waits for remote data before answering with what it
    /// has (`remote.fetch.max.wait.ms`).
    #[serde(alias = "remote.fetch.max.wait.ms")]
    pub remote_fetch_max_wait_ms: u64,
    /// Nice value of the remote tier's threads (chunk loads, checksums,
    /// uploads): above the request handlers' 0, a catch-up from the bucket
    /// or a tiering round yields to produce and fetch handling on busy
    /// cores (as RocksDB can lower its background threads' priority), at
    /// some cost to the catch-up's speed there. 0 (the default) keeps them
    /// at the broker's priority.
    #[serde(alias = "remote.thread.nice")]
    pub remote_thread_nice: i32,
    /// How long a partition remembers an idle idempotent producer (Kafka's
    /// `producer.id.expiration.ms`).
    #[serde(alias = "producer.id.expiration.ms")]
    pub producer_id_expiration_ms: i64,
    /// Run the log cleaner for topics with `cleanup.policy=compact`
    /// (Kafka's `log.cleaner.enable`).
    #[serde(alias = "log.cleaner.enable")]
    pub log_cleaner_enable: bool,
    /// Memory for the cleaner's key → offset map, 24 bytes per key (Kafka's
    /// `log.cleaner.dedupe.buffer.size`, 128 MiB): more keys than fit are
    /// cleaned in several passes.
    #[serde(alias = "log.cleaner.dedupe.buffer.size")]
    pub log_cleaner_dedupe_buffer_size: u64,
    /// Bytes per second the cleaner reads and writes at most (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`; unlimited by default).
    #[serde(alias = "log.cleaner.io.max.bytes.per.second")]
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// How long the cleaner sleeps when no partition needs cleaning
    /// (Kafka's `log.cleaner.backoff.ms`).
    #[serde(alias = "log.cleaner.backoff.ms")]
    pub log_cleaner_backoff_ms: u64,
    /// Incremental fetch sessions (KIP-227) kept at most (Kafka's
    /// `max.incremental.fetch.session.cache.slots`; 0 turns them off).
    #[serde(alias = "max.incremental.fetch.session.cache.slots")]
    pub max_incremental_fetch_session_cache_slots: u32,
    /// Bytes per second the remote tier sends to the store at most
    /// (KIP-956's `remote.log.manager.copy.max.bytes.per.second`; Kafka's
    /// default, unlimited).
    #[serde(alias = "remote.log.manager.copy.max.bytes.per.second")]
    pub remote_log_manager_copy_max_bytes_per_second: u64,
    /// Bytes per second the remote tier reads from the store at most
    /// (`remote.log.manager.fetch.max.bytes.per.second`).
    #[serde(alias = "remote.log.manager.fetch.max.bytes.per.second")]
    pub remote_log_manager_fetch_max_bytes_per_second: u64,
    /// Between catalog snapshots in the bucket (topics, committed offsets,
    /// groups, the producer-id counter: what `tierlog restore` needs
    /// beyond the segments), also written at a clean shutdown; -1 turns
    /// them off. tierlog's own (Kafka keeps these in topics).
    #[serde(alias = "catalog.snapshot.interval.ms")]
    pub catalog_snapshot_interval_ms: i64,
    /// Kafka listeners by security protocol (`SASL_SSL://0.0.0.0:9093`),
    /// each protocol at most once; empty: one PLAINTEXT listener on
    /// `listen` (see [`BrokerConfig::listener_specs`]).
    pub listeners: Vec<String>,
    /// Addresses clients are told to connect to, one per listener
    /// protocol (`SASL_SSL://broker.example.com:9093`); a listener not
    /// named here advertises its bound address (PLAINTEXT also falls back
    /// to `advertised_listener`).
    #[serde(alias = "advertised.listeners")]
    pub advertised_listeners: Vec<String>,
    /// Kafka's `ssl.keystore.type`: only `PEM`.
    #[serde(alias = "ssl.keystore.type")]
    pub ssl_keystore_type: String,
    /// One PEM file with the private key and the certificate chain, for
    /// the SSL and SASL_SSL listeners (`ssl.keystore.location`).
    #[serde(alias = "ssl.keystore.location")]
    pub ssl_keystore_location: Option<PathBuf>,
    /// PEM CA bundle client certificates must chain to
    /// (`ssl.truststore.location`).
    #[serde(alias = "ssl.truststore.location")]
    pub ssl_truststore_location: Option<PathBuf>,
    /// `none`, `requested` or `required` (`ssl.client.auth`).
    #[serde(alias = "ssl.client.auth")]
    pub ssl_client_auth: String,
    /// SASL mechanisms offered on SASL listeners
    /// (`sasl.enabled.mechanisms`): SCRAM-SHA-512, SCRAM-SHA-256, PLAIN.
    #[serde(alias = "sasl.enabled.mechanisms")]
    pub sasl_enabled_mechanisms: Vec<String>,
    /// Longest SASL session before a client must re-authenticate
    /// (KIP-368's `connections.max.reauth.ms`; 0: never).
    #[serde(alias = "connections.max.reauth.ms")]
    pub connections_max_reauth_ms: u64,
    /// Largest request a connection may send before it has authenticated
    /// (Kafka's `sasl.server.max.receive.size`).
    #[serde(alias = "sasl.server.max.receive.size")]
    pub sasl_server_max_receive_size: usize,
    /// When no ACL names a resource, may everyone use it (Kafka's
    /// `allow.everyone.if.no.acl.found`)? Default true, unlike Kafka, so
    /// a broker without ACLs (the embedded default) stays open.
    #[serde(alias = "allow.everyone.if.no.acl.found")]
    pub allow_everyone_if_no_acl_found: bool,
    /// Principals allowed everything, Kafka's `super.users`:
    /// `"User:admin;User:ops"`.
    #[serde(alias = "super.users")]
    pub super_users: String,
    /// Client quota rates are measured over this many sampled windows
    /// (Kafka's `quota.window.num`, 11).
    #[serde(alias = "quota.window.num")]
    pub quota_window_num: u32,
    /// Length of one client quota sampling window in seconds (Kafka's
    /// `quota.window.size.seconds`, 1).
    #[serde(alias = "quota.window.size.seconds")]
    pub quota_window_size_seconds: u32,
}

/// Kafka's default `sasl.enabled.mechanisms` for tierlog (Kafka's own is
/// GSSAPI, which tierlog does not offer).
pub const DEFAULT_SASL_MECHANISMS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];

/// Kafka's default `sasl.server.max.receive.size` (512 KiB).
pub const DEFAULT_SASL_SERVER_MAX_RECEIVE_SIZE: usize = 524_288;

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:9092".to_string(),
            topic_defaults: BTreeMap::new(),
            flush_check_interval_ms: 1000,
            advertised_listener: None,
            metrics_listen: Some(METRICS_LISTEN_DEFAULT.to_string()),
            auto_create_topics_enable: true,
            num_partitions: 1,
            max_partitions: DEFAULT_MAX_PARTITIONS,
            socket_request_max_bytes: 100 * 1024 * 1024,
            fetch_max_bytes: 55 * 1024 * 1024,
            socket_sendfile_enable: true,
            queued_max_request_bytes: DEFAULT_QUEUED_MAX_REQUEST_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: i32::MAX as u32,
            max_connections_per_ip_overrides: String::new(),
            connections_max_idle_ms: DEFAULT_CONNECTIONS_MAX_IDLE_MS,
            request_read_timeout_ms: DEFAULT_REQUEST_READ_TIMEOUT_MS,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3_600_000,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            offsets_retention_ms_override: None,
            remote_url: None,
            remote_log_manager_task_interval_ms: 30_000,
            log_retention_check_interval_ms: 300_000,
            remote_upload_part_bytes: 16 << 20,
            remote_fetch_chunk_bytes: 8 << 20,
            // = remote::fetcher::DEFAULT_CACHE_BYTES (a layer up).
            remote_cache_bytes: 512 << 20,
            remote_index_cache_bytes: 32 << 20,
            remote_fetch_prefetch_chunks: 2,
            // = remote::fetcher::DEFAULT_MAX_CONCURRENT_GETS (a layer up).
            remote_fetch_max_concurrent_gets: 64,
            remote_fetch_max_wait_ms: 500,
            remote_thread_nice: 0,
            producer_id_expiration_ms: DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            log_cleaner_enable: true,
            log_cleaner_dedupe_buffer_size: 128 << 20,
            log_cleaner_io_max_bytes_per_second: u64::MAX,
            log_cleaner_backoff_ms: 15_000,
            max_incremental_fetch_session_cache_slots: 1000,
            remote_log_manager_copy_max_bytes_per_second: u64::MAX,
            remote_log_manager_fetch_max_bytes_per_second: u64::MAX,
            catalog_snapshot_interval_ms: DEFAULT_CATALOG_SNAPSHOT_INTERVAL_MS,
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            ssl_keystore_type: "PEM".to_string(),
            ssl_keystore_location: None,
            ssl_truststore_location: None,
            ssl_client_auth: "none".to_string(),
            sasl_enabled_mechanisms: DEFAULT_SASL_MECHANISMS.map(String::from).to_vec(),
            connections_max_reauth_ms: 0,
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            sasl_server_max_receive_size: DEFAULT_SASL_SERVER_MAX_RECEIVE_SIZE,
            allow_everyone_if_no_acl_found: true,
            super_users: String::new(),
        }
    }
}

/// Where `tierlog serve` puts the metrics endpoint unless told otherwise
/// (Redpanda's admin port).
pub const METRICS_LISTEN_DEFAULT: &str = "127.0.0.1:9644";

impl BrokerConfig {
    /// The metrics endpoint's address, `None` when it is off
    /// (`metrics_listen` unset, `""` or `"off"`).
    pub fn metrics_address(&self) -> Option<&str> {
        match self.metrics_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) if a.eq_ignore_ascii_case("off") => None,
            Some(a) => Some(a),
        }
    }

    /// The authorizer's settings (`super.users` parsed,
    /// `allow.everyone.if.no.acl.found`).
    pub fn authorizer(&self) -> Result<crate::security::acl::AuthorizerConfig> {
        let super_users =
            crate::security::acl::AuthorizerConfig::parse_super_users(&self.super_users)
                .map_err(|e| Error::invalid(format!("super.users '{}': {e}", self.super_users)))?;
        Ok(crate::security::acl::AuthorizerConfig {
            super_users,
            allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found,
        })
    }

    /// `max.connections.per.ip.overrides` parsed: address → connections.
    pub fn connections_per_ip_overrides(
        &self,
    ) -> Result<std::collections::HashMap<std::net::IpAddr, u32>> {
        let mut out = std::collections::HashMap::new();
        for entry in self
            .max_connections_per_ip_overrides
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let bad = |why: &str| {
                Error::invalid(format!(
                    "max.connections.per.ip.overrides entry '{entry}': {why} (expected ip:count, \
                     IPv6 in brackets: [::1]:50)"
                ))
            };
            let (host, count) = entry.rsplit_once(':').ok_or_else(|| bad("no ':count'"))?;
            let ip: std::net::IpAddr = host
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .map_err(|_| bad("not an IP address"))?;
            let count: u32 = count
                .trim()
                .parse()
                .map_err(|_| bad("the count is not a number"))?;
            out.insert(ip, count);
        }
        Ok(out)
    }

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
        if self.log_cleaner_dedupe_buffer_size < 1 << 20 {
            return Err(Error::invalid(
                "log.cleaner.dedupe.buffer.size must be at least 1048576 (1 MiB)",
            ));
        }
        if self.log_cleaner_backoff_ms == 0 || self.log_cleaner_io_max_bytes_per_second == 0 {
            return Err(Error::invalid(
                "log.cleaner.backoff.ms and log.cleaner.io.max.bytes.per.second must be at least 1",
            ));
        }
        if self.catalog_snapshot_interval_ms < 1 && self.catalog_snapshot_interval_ms != -1 {
            return Err(Error::invalid(format!(
                "catalog.snapshot.interval.ms (catalog_snapshot_interval_ms) must be at least 1, or -1 for no snapshots; got {}",
                self.catalog_snapshot_interval_ms
            )));
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
        if self.remote_log_manager_copy_max_bytes_per_second == 0
            || self.remote_log_manager_fetch_max_bytes_per_second == 0
        {
            return Err(Error::invalid(
                "remote.log.manager.copy.max.bytes.per.second and \
                 remote.log.manager.fetch.max.bytes.per.second must be at least 1",
            ));
        }
        self.connections_per_ip_overrides()?;
        self.authorizer()?;
        if self.quota_window_num < 2 || self.quota_window_size_seconds == 0 {
            return Err(Error::invalid(format!(
                "quota.window.num (quota_window_num) must be at least 2 and \
                 quota.window.size.seconds (quota_window_size_seconds) at least 1; got {} and {}",
                self.quota_window_num, self.quota_window_size_seconds
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
        if self.transaction_max_timeout_ms < 1
            || self.transactional_id_expiration_ms < 1
            || self.transaction_abort_timed_out_transaction_cleanup_interval_ms < 1
        {
            return Err(Error::invalid(
                "transaction.max.timeout.ms, transactional.id.expiration.ms and \
                 transaction.abort.timed.out.transaction.cleanup.interval.ms must be at least 1",
            ));
        }
        if self.producer_id_expiration_ms < 1 {
            return Err(Error::invalid(
                "producer_id_expiration_ms must be at least 1",
            ));
        }
        match self.listen.parse::<std::net::SocketAddr>() {
            Err(_) => {
                return Err(Error::invalid(format!(
                    "listen '{}' is not an address like 127.0.0.1:9092",
                    self.listen
                )))
            }
            Ok(a) if a.ip().is_unspecified() && self.advertised_listener.is_none() => {
                return Err(Error::invalid(format!(
                    "listen '{}' is a wildcard address: set advertised_listener \
                     (--advertised-listener, TIERLOG_ADVERTISED_LISTENER) to the host:port \
                     clients should connect to",
                    self.listen
                )))
            }
            Ok(_) => {}
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
        if !(0..=19).contains(&self.remote_thread_nice) {
            return Err(Error::invalid(format!(
                "remote.thread.nice {} must be between 0 and 19",
                self.remote_thread_nice
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
        if self.remote_fetch_max_concurrent_gets == 0
            || self.remote_fetch_max_concurrent_gets > 4096
        {
            return Err(Error::invalid(format!(
                "remote.fetch.max.concurrent.gets {} must be between 1 and 4096",
                self.remote_fetch_max_concurrent_gets
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
        self.validate_security()?;
        if let Some(a) = self.metrics_address() {
            if !host_port(a) {
                return Err(Error::invalid(format!(
                    "metrics_listen '{a}' is not host:port (\"off\" or \"\" turns the endpoint off)"
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
