//! The log manager (Kafka's `LogManager`): the topic map, opening every
//! partition at start, creating and deleting topics' logs, partition lookup
//! and the flush job.
//!
//! Owns: the in-memory topic map and each partition's [`UnifiedLog`]. Every
//! topic change is decided by the catalog first (passed in, never owned
//! here) and only then carried out on files, so that a crash or a failed
//! catalog write never loses or exposes data (issue 11; see
//! `log/partition_dirs.rs` for the directory rules). Must never talk to the
//! remote tier or decide retention: background jobs in `tasks/` receive a
//! `&LogManager` and do that.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::catalog::{Catalog, SharedCatalog, TopicRecord};
use crate::clock::SharedClock;
use crate::config::{refuse_internal_topic, validate_topic_name, TopicConfig, MAX_PARTITIONS};
use crate::error::{Error, ErrorKind, Result};
use crate::failpoints::fail_point;
use crate::log::{paths, LocalLog, RecoveryReport};
use crate::metrics::{EventLevel, RecentEvents};
use crate::sync::lock;
use crate::unified_log::{PartitionState, UnifiedLog};

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

/// A topic and its partitions' logs.
pub(crate) struct TopicState {
    pub(crate) record: TopicRecord,
    pub(crate) partitions: Vec<Arc<UnifiedLog>>,
}

/// The topic map and what is needed to open logs.
pub(crate) struct LogManager {
    data_dir: PathBuf,
    topic_defaults: BTreeMap<String, String>,
    clock: SharedClock,
    producer_id_expiration_ms: i64,
    max_partitions: u32,
    /// Recent warnings and errors for the status page (the engine's
    /// `Metrics::events`), fed by jobs beside their log lines.
    events: Arc<RecentEvents>,
    /// Offline partitions already in `events` (each is recorded once).
    offline_reported: std::sync::Mutex<HashSet<String>>,
    topics: RwLock<HashMap<String, Arc<TopicState>>>,
    /// Partitions being added (topic name → partitions): topics being
    /// created and topics being grown, taken with the topic lock. The name
    /// and the partition budget are reserved while the catalog and the
    /// files are written without that lock, so requests for other topics
    /// never wait for a creation's I/O.
    creating: std::sync::Mutex<HashMap<String, u32>>,
    /// Existing topics being changed (deleted, reconfigured, grown): one
    /// change per topic at a time (the others wait on `changed`), so each
    /// can write the catalog and files without the topic lock and publish
    /// its new state after; requests never wait for that I/O.
    changing: std::sync::Mutex<HashSet<String>>,
    changed: std::sync::Condvar,
    /// Set by shutdown; no topic is created after it.
    closed: AtomicBool,
}

/// How the log manager opens logs.
pub(crate) struct LogSettings {
    pub data_dir: PathBuf,
    pub topic_defaults: BTreeMap<String, String>,
    pub clock: SharedClock,
    pub producer_id_expiration_ms: i64,
    pub max_partitions: u32,
    pub events: Arc<RecentEvents>,
}

fn unknown_topic(name: &str) -> Error {
    Error::not_found(format!("unknown topic '{name}'"))
}

impl LogManager {
    /// Open every partition of the catalog's topics (`clean`: the last
    /// shutdown was clean). A partition that cannot be opened is kept
    /// offline with its error; the others serve. Directories of topics the
    /// catalog deleted (a crash after DeleteTopics' transaction) go first.
    pub(crate) fn load(
        settings: LogSettings,
        catalog: &dyn Catalog,
        clean: bool,
    ) -> Result<(LogManager, Vec<(String, RecoveryReport)>)> {
        let data_dir = &settings.data_dir;
        let deleted = catalog.deleted_topic_ids()?;
        let records = catalog.topics()?;
        let live_dirs: HashSet<PathBuf> = records
            .iter()
            .flat_map(|r| (0..r.partitions).map(|p| paths::partition_dir(data_dir, &r.name, p)))
            .collect();
        crate::log::partition_dirs::remove_deleted(data_dir, &deleted, &live_dirs);
        let mut topics = HashMap::new();
        let mut recovery = Vec::new();
        let mut offline_reported = HashSet::new();
        for record in records {
            let topic_config = TopicConfig::resolve(&record.configs, &settings.topic_defaults);
            let mut partitions = Vec::new();
            for p in 0..record.partitions {
                let name = format!("{}-{p}", record.name);
                let state = match &topic_config {
                    Err(e) => PartitionState::Offline(Error::invalid(format!(
                        "{name}: bad stored config: {e}"
                    ))),
                    Ok(tc) => {
                        match claim_partition_dir(data_dir, &record, p, &deleted).and_then(|()| {
                            LocalLog::open(
                                paths::partition_dir(data_dir, &record.name, p),
                                name.clone(),
                                tc.clone(),
                                Arc::clone(&settings.clock),
                                clean,
                            )
                        }) {
                            Ok((mut log, report)) => {
                                log.set_producer_id_expiration_ms(
                                    settings.producer_id_expiration_ms,
                                );
                                if report != RecoveryReport::default() {
                                    recovery.push((name.clone(), report));
                                }
                                PartitionState::Online(Box::new(log))
                            }
                            Err(e) => {
                                tracing::error!(partition = %name, error = %e, "partition cannot be opened; it stays offline");
                                settings.events.record(
                                    settings.clock.now_ms(),
                                    EventLevel::Error,
                                    format!("{name} cannot be opened and stays offline: {e}"),
                                );
                                offline_reported.insert(name.clone());
                                PartitionState::Offline(e)
                            }
                        }
                    }
                };
                partitions.push(Arc::new(UnifiedLog::new(state)));
            }
            topics.insert(
                record.name.clone(),
                Arc::new(TopicState { record, partitions }),
            );
        }
        let manager = LogManager {
            data_dir: settings.data_dir,
            topic_defaults: settings.topic_defaults,
            clock: settings.clock,
            producer_id_expiration_ms: settings.producer_id_expiration_ms,
            max_partitions: settings.max_partitions,
            events: settings.events,
            offline_reported: std::sync::Mutex::new(offline_reported),
            creating: Default::default(),
            changing: Default::default(),
            changed: Default::default(),
            topics: RwLock::new(topics),
            closed: AtomicBool::new(false),
        };
        Ok((manager, recovery))
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Record a warning or error for the status page, at the clock's now
    /// (beside its log line, which the caller writes).
    pub(crate) fn record_event(&self, level: EventLevel, message: impl Into<String>) {
        self.events.record(self.clock.now_ms(), level, message);
    }

    pub(crate) fn topic_defaults(&self) -> &BTreeMap<String, String> {
        &self.topic_defaults
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TopicState>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_topics(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<TopicState>>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Create a topic: validated, its name and partitions reserved under
    /// the topic lock, decided by the catalog, then its partitions'
    /// directories and logs (without the topic lock: requests for other
    /// topics do not wait for this I/O), then published.
    pub(crate) fn create_topic(
        &self,
        catalog: &SharedCatalog,
        name: &str,
        partitions: u32,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        validate_topic_name(name)?;
        refuse_internal_topic(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(Error::invalid(format!(
                "partition count {partitions} for topic '{name}' must be between 1 and {MAX_PARTITIONS}"
            )));
        }
        let topic_config = TopicConfig::resolve(overrides, &self.topic_defaults)?;
        let record = TopicRecord {
            name: name.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions,
            configs: overrides.clone(),
            created_ms: self.clock.now_ms(),
        };
        let reservation = {
            let topics = self.write_topics();
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::Closed, "the engine is shut down"));
            }
            let mut creating = lock(&self.creating);
            if topics.contains_key(name) || creating.contains_key(name) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("topic '{name}' already exists"),
                ));
            }
            let held = held_partitions(&topics, &creating);
            if held + u64::from(partitions) > u64::from(self.max_partitions) {
                return Err(Error::new(
                    ErrorKind::PolicyViolation,
                    format!(
                        "topic '{name}' with {partitions} partitions would exceed max.partitions ({}): the broker holds {held}",
                        self.max_partitions
                    ),
                ));
            }
            creating.insert(name.to_string(), partitions);
            Reservation {
                creating: &self.creating,
                name,
            }
        };
        // The catalog decides first (name free, id assigned); no file is
        // touched before, so an existing topic's data is never at risk.
        let deleted = {
            let mut catalog = lock(catalog);
            catalog.create_topic(&record)?;
            catalog.deleted_topic_ids()
        };
        let states = match deleted.and_then(|deleted| {
            self.open_new_partitions(&record, 0..partitions, &topic_config, &deleted)
        }) {
            Ok(states) => states,
            Err(e) => {
                // Roll back: the catalog forgets the topic (recording its id
                // as deleted), then the directories made for it, which name
                // that id, go.
                match lock(catalog).delete_topic(name, self.clock.now_ms()) {
                    Ok(_) => self.remove_partition_dirs(&record, 0..partitions),
                    Err(undo) => {
                        tracing::error!(topic = name, error = %undo, "cannot roll back a failed topic creation")
                    }
                }
                return Err(e);
            }
        };
        let state = Arc::new(TopicState {
            record,
            partitions: states,
        });
        let info = self.info(&state);
        self.write_topics().insert(name.to_string(), state);
        drop(reservation);
        tracing::info!(topic = name, partitions, "created topic");
        Ok(info)
    }

    /// Delete a topic: the catalog first (the row goes, the id is recorded
    /// as deleted, remote segments are scheduled for the reaper), without
    /// the topic lock; then, under it, the topic leaves the map and its
    /// directories are renamed (cheap, and it frees the name); the data is
    /// removed after. A crash in between leaves directories naming a
    /// deleted id, which the next open removes; a failed catalog change
    /// touches nothing.
    pub(crate) fn delete_topic(&self, catalog: &SharedCatalog, name: &str) -> Result<()> {
        let _change = self.begin_change(name);
        let state = self.topic(name)?;
        lock(catalog).delete_topic(name, self.clock.now_ms())?;
        fail_point!("topic.delete.after_catalog");
        let mut doomed = Vec::new();
        {
            let mut topics = self.write_topics();
            topics.remove(name);
            for (p, partition) in state.partitions.iter().enumerate() {
                partition.close();
                match crate::log::partition_dirs::mark_deleted(&self.data_dir, name, p as u32) {
                    Ok(Some(d)) => doomed.push(d),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(topic = name, partition = p, error = %e, "cannot remove a deleted partition's directory yet; the next open removes it")
                    }
                }
            }
        }
        for d in doomed {
            crate::log::partition_dirs::remove_marked(&d);
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Replace a topic's config overrides (validated as a whole, stored
    /// without the topic lock, then applied to its partitions).
    pub(crate) fn set_topic_configs(
        &self,
        catalog: &SharedCatalog,
        name: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicInfo> {
        let topic_config = TopicConfig::resolve(overrides, &self.topic_defaults)?;
        let _change = self.begin_change(name);
        let state = self.topic(name)?;
        lock(catalog).set_topic_configs(name, overrides)?;
        for partition in &state.partitions {
            partition.set_config(&topic_config);
        }
        let mut record = state.record.clone();
        record.configs = overrides.clone();
        let new_state = Arc::new(TopicState {
            record,
            partitions: state.partitions.clone(),
        });
        let info = self.info(&new_state);
        self.write_topics().insert(name.to_string(), new_state);
        Ok(info)
    }

    /// Open new, empty partitions `range` of the topic `record`: each
    /// directory claimed (one in the way is removed if it names a deleted
    /// topic, else kept aside, never read), then its log. On a failure the
    /// ones opened are closed (dropped) and the error returned; the caller
    /// rolls the catalog back and removes the directories.
    fn open_new_partitions(
        &self,
        record: &TopicRecord,
        range: std::ops::Range<u32>,
        config: &TopicConfig,
        deleted: &HashSet<uuid::Uuid>,
    ) -> Result<Vec<Arc<UnifiedLog>>> {
        let (data_dir, name) = (&self.data_dir, &record.name);
        let mut states = Vec::new();
        for p in range {
            let dir = paths::partition_dir(data_dir, name, p);
            let (mut log, _) = crate::log::partition_dirs::clear_way(data_dir, name, p, deleted)
                .and_then(|_| claim_partition_dir(data_dir, record, p, deleted))
                .and_then(|()| {
                    LocalLog::open(
                        dir,
                        format!("{name}-{p}"),
                        config.clone(),
                        Arc::clone(&self.clock),
                        false,
                    )
                })?;
            log.set_producer_id_expiration_ms(self.producer_id_expiration_ms);
            states.push(Arc::new(UnifiedLog::new(PartitionState::Online(Box::new(
                log,
            )))));
        }
        Ok(states)
    }

    /// Remove the directories of partitions `range` of `record` (they name
    /// its id, and the catalog no longer counts them).
    fn remove_partition_dirs(&self, record: &TopicRecord, range: std::ops::Range<u32>) {
        for q in range {
            let _ = crate::log::partition_dirs::clear_way(
                &self.data_dir,
                &record.name,
                q,
                &HashSet::from([record.id]),
            );
        }
    }

    /// Grow topic `name` to `total` partitions (Kafka's CreatePartitions):
    /// checked against the partition budget and reserved under the topic
    /// lock, decided by the catalog, then the new partitions' directories
    /// and logs without the lock, then published. Partitions are never
    /// removed, as in Kafka; `validate_only` checks without changing.
    pub(crate) fn create_partitions(
        &self,
        catalog: &SharedCatalog,
        name: &str,
        total: u32,
        validate_only: bool,
    ) -> Result<TopicInfo> {
        let _change = self.begin_change(name);
        let (state, reservation) = {
            let topics = self.write_topics();
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::Closed, "the engine is shut down"));
            }
            let state = topics
                .get(name)
                .cloned()
                .ok_or_else(|| unknown_topic(name))?;
            let current = state.record.partitions;
            if total <= current || total > MAX_PARTITIONS {
                return Err(Error::invalid(format!(
                    "topic '{name}' has {current} partitions: a new count must be above it and at most {MAX_PARTITIONS}, got {total}"
                )));
            }
            let mut creating = lock(&self.creating);
            let held = held_partitions(&topics, &creating);
            let added = total - current;
            if held + u64::from(added) > u64::from(self.max_partitions) {
                return Err(Error::new(
                    ErrorKind::PolicyViolation,
                    format!(
                        "{added} more partitions for topic '{name}' would exceed max.partitions ({}): the broker holds {held}",
                        self.max_partitions
                    ),
                ));
            }
            if validate_only {
                return Ok(self.info(&state));
            }
            // The budget is held for the new partitions (keyed by the
            // topic's name: no creation can take it, the topic exists)
            // while the catalog and files are written without the lock.
            creating.insert(name.to_string(), added);
            (
                state,
                Reservation {
                    creating: &self.creating,
                    name,
                },
            )
        };
        let current = state.record.partitions;
        let config = TopicConfig::resolve(&state.record.configs, &self.topic_defaults)?;
        let deleted = {
            let mut catalog = lock(catalog);
            catalog.set_topic_partitions(name, total)?;
            catalog.deleted_topic_ids()
        };
        let mut record = state.record.clone();
        record.partitions = total;
        let opened = deleted.and_then(|deleted| {
            self.open_new_partitions(&record, current..total, &config, &deleted)
        });
        let new = match opened {
            Ok(new) => new,
            Err(e) => {
                match lock(catalog).set_topic_partitions(name, current) {
                    Ok(()) => self.remove_partition_dirs(&record, current..total),
                    Err(undo) => {
                        tracing::error!(topic = name, error = %undo, "cannot roll back failed partition creation")
                    }
                }
                return Err(e);
            }
        };
        let mut partitions = state.partitions.clone();
        partitions.extend(new);
        let new_state = Arc::new(TopicState { record, partitions });
        let info = self.info(&new_state);
        self.write_topics().insert(name.to_string(), new_state);
        drop(reservation);
        tracing::info!(
            topic = name,
            from = current,
            to = total,
            "created partitions"
        );
        Ok(info)
    }

    /// Wait until no other change of topic `name` runs, then hold it
    /// until the returned guard drops.
    fn begin_change<'a>(&'a self, name: &'a str) -> TopicChange<'a> {
        let mut changing = lock(&self.changing);
        while changing.contains(name) {
            changing = self
                .changed
                .wait(changing)
                .unwrap_or_else(|p| p.into_inner());
        }
        changing.insert(name.to_string());
        TopicChange {
            manager: self,
            name,
        }
    }

    /// Every topic, by name.
    pub(crate) fn topics(&self) -> Vec<TopicInfo> {
        self.topic_states().iter().map(|t| self.info(t)).collect()
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<TopicState>> {
        self.read_topics()
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_topic(name))
    }

    /// The topic with id `id`.
    pub(crate) fn topic_by_id(&self, id: uuid::Uuid) -> Result<TopicInfo> {
        self.read_topics()
            .values()
            .find(|t| t.record.id == id)
            .map(|t| self.info(t))
            .ok_or_else(|| Error::not_found(format!("unknown topic id {id}")))
    }

    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Result<Arc<UnifiedLog>> {
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

    /// Every topic, by name.
    pub(crate) fn topic_states(&self) -> Vec<Arc<TopicState>> {
        let mut all: Vec<_> = self.read_topics().values().cloned().collect();
        all.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        all
    }

    pub(crate) fn all_partitions(&self) -> Vec<Arc<UnifiedLog>> {
        self.read_topics()
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    pub(crate) fn info(&self, state: &TopicState) -> TopicInfo {
        TopicInfo {
            name: state.record.name.clone(),
            id: state.record.id,
            partitions: state.record.partitions,
            overrides: state.record.configs.clone(),
            effective: TopicConfig::effective(&state.record.configs, &self.topic_defaults),
        }
    }

    /// No topic is created from now on (under the topic lock, so none is
    /// being created meanwhile).
    pub(crate) fn close_for_creation(&self) {
        let _topics = self.write_topics();
        self.closed.store(true, Ordering::SeqCst);
    }

    /// The flush job: fsync sealed segments (outside the partition lock, so
    /// appends go on meanwhile) and advance the recovery point, then apply
    /// `flush.ms` to active segments and `producer.id.expiration.ms` to
    /// their producer state.
    pub(crate) fn flush_due_logs(&self) {
        let now = self.clock.now_ms();
        for p in self.all_partitions() {
            p.flush_due(now);
        }
        self.report_offline_partitions();
    }

    /// Record each partition that went offline (a failed write or fsync,
    /// wherever it happened) in the recent events, once.
    pub(crate) fn report_offline_partitions(&self) {
        for topic in self.topic_states() {
            for (p, partition) in topic.partitions.iter().enumerate() {
                let Some(reason) = partition.offline_reason() else {
                    continue;
                };
                let name = format!("{}-{p}", topic.record.name);
                if lock(&self.offline_reported).insert(name.clone()) {
                    self.record_event(EventLevel::Error, format!("{name} is offline: {reason}"));
                }
            }
        }
    }
}

/// Make `p`'s directory `record`'s (at open, and after creation cleared
/// the way): a directory there that names a deleted topic id is removed
/// (a crash after the catalog created the topic, before the way was
/// cleared); one naming any other id is refused, so the partition stays
/// offline with an error naming the directory; one with no
/// `partition.metadata` (made by an older tierlog, or a crash before the
/// file was written) is adopted. The metadata file is written before the
/// log opens.
/// Partitions the broker holds and is creating (`max.partitions`).
fn held_partitions(
    topics: &HashMap<String, Arc<TopicState>>,
    creating: &HashMap<String, u32>,
) -> u64 {
    let held: u64 = topics
        .values()
        .map(|t| u64::from(t.record.partitions))
        .sum();
    held + creating.values().map(|&p| u64::from(p)).sum::<u64>()
}

/// A topic name reserved by [`LogManager::create_topic`] until dropped.
struct Reservation<'a> {
    creating: &'a std::sync::Mutex<HashMap<String, u32>>,
    name: &'a str,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        lock(self.creating).remove(self.name);
    }
}

/// A change of one topic under way ([`LogManager::begin_change`]).
struct TopicChange<'a> {
    manager: &'a LogManager,
    name: &'a str,
}

impl Drop for TopicChange<'_> {
    fn drop(&mut self) {
        lock(&self.manager.changing).remove(self.name);
        self.manager.changed.notify_all();
    }
}

fn claim_partition_dir(
    data_dir: &Path,
    record: &TopicRecord,
    p: u32,
    deleted: &HashSet<uuid::Uuid>,
) -> Result<()> {
    let dir = paths::partition_dir(data_dir, &record.name, p);
    match crate::log::partition_metadata::read(&dir)? {
        Some(id) if id == record.id => return Ok(()),
        Some(id) if deleted.contains(&id) => {
            crate::log::partition_dirs::discard(data_dir, &record.name, p)?;
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
    crate::log::partition_metadata::write(&dir, record.id)
}
