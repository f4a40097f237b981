//! tierlog: a Kafka-compatible log engine with tiered storage.
//!
//! This file is the facade: module declarations and the public surface.
//! The embedded API is [`Engine`]: open a data directory, create topics,
//! [`Engine::append`] record batches, [`Engine::read`] them back,
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
//!
//! Layers, lowest first (a module imports only from layers below it;
//! `docs/design.md` §1 has the map and the command that checks it):
//! `error`, `sync`, `clock`, `failpoints` → `security` → `config` → `format` → `catalog`, `log` →
//! `remote` → `unified_log` → `tasks` → `engine` → `metrics`,
//! `coordinator` → `broker` → `client`.

pub mod broker;
pub mod catalog;
pub mod client;
pub mod clock;
pub mod config;
mod coordinator;
mod engine;
mod error;
mod failpoints;
pub mod format;
pub mod log;
mod log_manager;
pub mod metrics;
pub mod remote;
pub mod security;
mod sync;
mod tasks;
mod text;
mod unified_log;

pub use config::MAX_PARTITIONS;
pub use engine::tier_status::{
    CleanerStatus, PartitionTierStatus, SegmentStates, TierStatus, UploadErrorStatus, STATUS_PATH,
    TIER_STATUS_VERSION,
};
pub use engine::{
    check_tier, default_remote_url, restore, restore_with, Engine, EngineConfig, ReadResult,
    ReadStart, RemoteRead, RemoteReadResult, RestoreOptions, RetentionReport, SnapshotOutcome,
    TopicInfo,
};
pub use error::{Error, ErrorKind, Result};
pub use log::TimestampAndOffset;
pub use log::{AppendInfo, LocalLog, RecoveryReport};
pub use sync::TaskTracker;
pub use tasks::log_cleaner::{Cleanable, CleanerReport, CleanerSettings, PartitionCleaning};
pub use tasks::remote_log_manager::{RemoteSettings, RoundReport};
pub use tasks::{Job, JobStatus, TaskExecutor};
pub use unified_log::{FileRead, PartitionOffsets};

pub(crate) use sync::lock;
