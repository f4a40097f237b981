//! The catalog: what topics exist, their ids, partition counts and config
//! overrides (later: remote segment states, consumer offsets).
//!
//! Owns the durable metadata. Behind the narrow [`Catalog`] trait so that
//! moving it from SQLite to PostgreSQL (DESIGN.md §7) is one new module.
//! Must never hold log data or do partition I/O.

mod sqlite;

use std::collections::BTreeMap;

pub use sqlite::SqliteCatalog;

use crate::error::Result;

/// A topic as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: u32,
    /// Config overrides by Kafka name (validated before they get here).
    pub configs: BTreeMap<String, String>,
    pub created_ms: i64,
}

/// Durable metadata store. Every method is one transaction.
pub trait Catalog: Send {
    /// Add a topic; `AlreadyExists` if the name is taken.
    fn create_topic(&mut self, topic: &TopicRecord) -> Result<()>;
    /// Remove a topic and its configs, returning what was removed;
    /// `NotFound` if absent.
    fn delete_topic(&mut self, name: &str) -> Result<TopicRecord>;
    /// Every topic, by name.
    fn topics(&self) -> Result<Vec<TopicRecord>>;
    /// Replace a topic's config overrides; `NotFound` if absent.
    fn set_topic_configs(&mut self, name: &str, configs: &BTreeMap<String, String>) -> Result<()>;
}
