//! The SQLite catalog: a real file (`<data>/catalog.db`), WAL mode, schema
//! from `migrations/` applied in order at open and tracked in
//! `PRAGMA user_version`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::quotas::{ClientQuota, QuotaChange};
use super::{
    Catalog, CatalogRestore, CommittedOffset, RemoteSegment, RemoteState, StoredGroup, TopicRecord,
};
use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::{BlockChecksums, ObjectInfo};
use crate::security::acl::AclBinding;
use crate::security::{ScramCredential, ScramMechanism};

/// Forward-only migrations; the version after applying `MIGRATIONS[i]` is
/// `i + 1`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_topics.sql",
        include_str!("../../migrations/0001_topics.sql"),
    ),
    (
        "0002_remote_segments.sql",
        include_str!("../../migrations/0002_remote_segments.sql"),
    ),
    (
        "0003_remote_checksums.sql",
        include_str!("../../migrations/0003_remote_checksums.sql"),
    ),
    (
        "0004_groups.sql",
        include_str!("../../migrations/0004_groups.sql"),
    ),
    (
        "0005_deleted_topics.sql",
        include_str!("../../migrations/0005_deleted_topics.sql"),
    ),
    (
        "0006_group_metadata.sql",
        include_str!("../../migrations/0006_group_metadata.sql"),
    ),
    (
        "0007_scram_credentials.sql",
        include_str!("../../migrations/0007_scram_credentials.sql"),
    ),
    (
        "0008_transactions.sql",
        include_str!("../../migrations/0008_transactions.sql"),
    ),
    (
        "0009_acls.sql",
        include_str!("../../migrations/0009_acls.sql"),
    ),
    (
        "0010_client_quotas.sql",
        include_str!("../../migrations/0010_client_quotas.sql"),
    ),
    (
        "0011_remote_txn_indexes.sql",
        include_str!("../../migrations/0011_remote_txn_indexes.sql"),
    ),
];

const REMOTE_COLUMNS: &str =
    "segment_uuid, topic, topic_id, partition, base_offset, last_offset, first_timestamp, \
     max_timestamp, log_size, index_size, timeindex_size, log_crc32c, state, updated_ms, \
     index_crc32c, timeindex_crc32c, log_block_bytes, log_block_crc32c, txnindex_size, \
     txnindex_crc32c";

/// A row before its uuids and state are parsed.
struct RemoteSegmentRow {
    topic: String,
    partition: u32,
    base_offset: i64,
    last_offset: i64,
    first_timestamp: i64,
    max_timestamp: i64,
    log_size: u64,
    index_size: u64,
    timeindex_size: u64,
    log_crc32c: u32,
    state: String,
    updated_ms: i64,
    index_crc32c: Option<i64>,
    timeindex_crc32c: Option<i64>,
    log_block_bytes: Option<i64>,
    log_block_crc32c: Option<Vec<u8>>,
    txnindex_size: Option<i64>,
    txnindex_crc32c: Option<i64>,
}

fn remote_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(RemoteSegmentRow, String, String)> {
    Ok((
        RemoteSegmentRow {
            topic: r.get(1)?,
            partition: r.get(3)?,
            base_offset: r.get(4)?,
            last_offset: r.get(5)?,
            first_timestamp: r.get(6)?,
            max_timestamp: r.get(7)?,
            log_size: r.get::<_, i64>(8)? as u64,
            index_size: r.get::<_, i64>(9)? as u64,
            timeindex_size: r.get::<_, i64>(10)? as u64,
            log_crc32c: r.get::<_, i64>(11)? as u32,
            state: r.get(12)?,
            updated_ms: r.get(13)?,
            index_crc32c: r.get(14)?,
            timeindex_crc32c: r.get(15)?,
            log_block_bytes: r.get(16)?,
            log_block_crc32c: r.get(17)?,
            txnindex_size: r.get(18)?,
            txnindex_crc32c: r.get(19)?,
        },
        r.get::<_, String>(0)?,
        r.get::<_, String>(2)?,
    ))
}

/// SQLite-backed [`Catalog`].
#[derive(Debug)]
pub struct SqliteCatalog {
    conn: Connection,
    path: PathBuf,
}

pub(super) fn db_error(path: &Path, what: &str, e: rusqlite::Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("catalog {}: {what}: {e}", path.display()),
    )
    .with_source(e)
}

impl SqliteCatalog {
    /// Deleted topics (id, name), those matching `filter` (an SQL
    /// `WHERE` clause, or empty).
    fn deleted_topics(&self, filter: &str) -> Result<Vec<(uuid::Uuid, String)>> {
        let what = "cannot read deleted topics";
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT topic_id, name FROM deleted_topics {filter}"
            ))
            .map_err(|e| db_error(&self.path, what, e))?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| db_error(&self.path, what, e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| db_error(&self.path, what, e))?;
        rows.into_iter()
            .map(|(id, name)| Ok((parse_uuid(&self.path, &id)?, name)))
            .collect()
    }

    /// Open (creating if needed) the catalog at `path` and bring its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| db_error(path, "cannot open", e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(|e| db_error(path, "cannot configure", e))?;
        let mut catalog = SqliteCatalog {
            conn,
            path: path.to_path_buf(),
        };
        catalog.migrate()?;
        Ok(catalog)
    }

    /// Schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<u32> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))
            .map_err(|e| db_error(&self.path, "cannot read schema version", e))
    }

    fn migrate(&mut self) -> Result<()> {
        let current = self.schema_version()? as usize;
        if current > MIGRATIONS.len() {
            return Err(Error::invalid(format!(
                "catalog {} has schema version {current}, newer than this tierlog supports ({}); upgrade tierlog",
                self.path.display(),
                MIGRATIONS.len()
            )));
        }
        for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = self
                .conn
                .transaction()
                .map_err(|e| db_error(&self.path, "cannot begin migration", e))?;
            tx.execute_batch(sql)
                .map_err(|e| db_error(&self.path, &format!("migration {name} failed"), e))?;
            tx.pragma_update(None, "user_version", (i + 1) as u32)
                .map_err(|e| db_error(&self.path, "cannot record schema version", e))?;
            tx.commit()
                .map_err(|e| db_error(&self.path, "cannot commit migration", e))?;
            tracing::info!(catalog = %self.path.display(), migration = name, "applied catalog migration");
        }
        Ok(())
    }

    fn configs_of(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM topic_configs WHERE topic = ?1")
            .map_err(|e| db_error(&self.path, "cannot read topic configs", e))?;
        let rows = stmt
            .query_map(params![name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| db_error(&self.path, "cannot read topic configs", e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| db_error(&self.path, "cannot read topic configs", e))
    }
}

fn parse_uuid(path: &Path, s: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|e| {
        Error::data(format!(
            "catalog {}: bad topic id '{s}': {e}",
            path.display()
        ))
    })
}

impl SqliteCatalog {
    fn query_remote(
        &self,
        filter: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<RemoteSegment>> {
        let sql =
            format!("SELECT {REMOTE_COLUMNS} FROM remote_segments {filter} ORDER BY base_offset");
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| db_error(&self.path, "cannot read remote segments", e))?;
        let rows = stmt
            .query_map(params, remote_row)
            .map_err(|e| db_error(&self.path, "cannot read remote segments", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| db_error(&self.path, "cannot read remote segments", e))?;
        rows.into_iter()
            .map(|(row, uuid, topic_id)| {
                Ok(RemoteSegment {
                    segment_uuid: parse_uuid(&self.path, &uuid)?,
                    topic_id: parse_uuid(&self.path, &topic_id)?,
                    state: RemoteState::parse(&row.state).ok_or_else(|| {
                        Error::data(format!(
                            "catalog {}: bad segment state '{}'",
                            self.path.display(),
                            row.state
                        ))
                    })?,
                    topic: row.topic,
                    partition: row.partition,
                    base_offset: row.base_offset,
                    last_offset: row.last_offset,
                    first_timestamp: row.first_timestamp,
                    max_timestamp: row.max_timestamp,
                    log_size: row.log_size,
                    index_size: row.index_size,
                    timeindex_size: row.timeindex_size,
                    log_crc32c: row.log_crc32c,
                    updated_ms: row.updated_ms,
                    index_crc32c: row.index_crc32c.map(|c| c as u32),
                    timeindex_crc32c: row.timeindex_crc32c.map(|c| c as u32),
                    log_blocks: match (row.log_block_bytes, row.log_block_crc32c) {
                        (Some(n), Some(b)) => match BlockChecksums::from_parts(n as u32, &b) {
                            Some(blocks) => Some(std::sync::Arc::new(blocks)),
                            None => {
                                // Reads of it fall back to batch CRCs.
                                tracing::warn!(catalog = %self.path.display(), segment = %uuid, "bad block checksums in the catalog; ignoring them");
                                None
                            }
                        },
                        _ => None,
                    },
                    txnindex: match (row.txnindex_size, row.txnindex_crc32c) {
                        (Some(size), Some(crc)) => Some(ObjectInfo {
                            size: size as u64,
                            crc32c: crc as u32,
                        }),
                        _ => None,
                    },
                })
            })
            .collect()
    }
}

impl Catalog for SqliteCatalog {
    fn create_topic(&mut self, topic: &TopicRecord) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM topics WHERE name = ?1",
                params![topic.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error(&path, "cannot read topics", e))?;
        if exists.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("topic '{}' already exists", topic.name),
            ));
        }
        insert_topic(&tx, &path, topic)?;
        tx.commit().map_err(|e| db_error(&path, "cannot commit", e))
    }

    fn restore(&mut self, restored: &CatalogRestore) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        for t in &restored.topics {
            insert_topic(&tx, &path, t)?;
        }
        for seg in &restored.segments {
            insert_segment(&tx, &path, seg)?;
        }
        for (group, o) in &restored.committed_offsets {
            insert_offset(&tx, &path, group, o)?;
        }
        for g in &restored.groups {
            super::sqlite_groups::insert_group(&tx, &path, g, restored.restored_ms)?;
        }
        for u in &restored.users {
            super::sqlite_scram::upsert(&tx, &path, u, restored.restored_ms)?;
        }
        super::sqlite_acls::insert(&tx, &path, &restored.acls, restored.restored_ms)?;
        for t in &restored.transactions {
            super::sqlite_transactions::store(&tx, &path, t)?;
        }
        let quotas: Vec<_> = restored
            .client_quotas
            .iter()
            .map(|q| (q.entity.clone(), q.key, Some(q.value)))
            .collect();
        super::sqlite_quotas::alter(&tx, &path, &quotas, restored.restored_ms)?;
        tx.execute(
            "UPDATE producer_ids SET next_producer_id = MAX(next_producer_id, ?1) WHERE singleton = 0",
            params![restored.next_producer_id],
        )
        .map_err(|e| db_error(&path, "cannot raise the producer id counter", e))?;
        tx.commit().map_err(|e| db_error(&path, "cannot commit", e))
    }

    fn delete_topic(&mut self, name: &str, deleted_ms: i64) -> Result<TopicRecord> {
        let topic = self
            .topics()?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::not_found(format!("unknown topic '{name}'")))?;
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        tx.execute("DELETE FROM topics WHERE name = ?1", params![name])
            .map_err(|e| db_error(&path, "cannot delete topic", e))?;
        // The tombstone that lets a crash-interrupted directory removal be
        // finished later, and only for this topic's directories.
        tx.execute(
            "INSERT OR REPLACE INTO deleted_topics (topic_id, name, deleted_ms) VALUES (?1, ?2, ?3)",
            params![topic.id.to_string(), name, deleted_ms],
        )
        .map_err(|e| db_error(&path, "cannot record the deleted topic", e))?;
        // Its remote segments go too: the reaper finishes DELETE_STARTED rows.
        tx.execute(
            "UPDATE remote_segments SET state = 'DELETE_STARTED' WHERE topic_id = ?1 \
             AND state IN ('COPY_STARTED', 'COPY_FINISHED')",
            params![topic.id.to_string()],
        )
        .map_err(|e| db_error(&path, "cannot schedule remote deletion", e))?;
        // Committed offsets of a deleted topic mean nothing for a new one of
        // the same name.
        tx.execute("DELETE FROM group_offsets WHERE topic = ?1", params![name])
            .map_err(|e| db_error(&path, "cannot delete committed offsets", e))?;
        tx.commit()
            .map_err(|e| db_error(&path, "cannot commit", e))?;
        Ok(topic)
    }

    fn deleted_topic_ids(&self) -> Result<std::collections::HashSet<uuid::Uuid>> {
        Ok(self
            .deleted_topics("")?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    fn deleted_topics_to_clean(&self) -> Result<Vec<(uuid::Uuid, String)>> {
        self.deleted_topics("WHERE remote_cleaned_ms IS NULL")
    }

    fn mark_deleted_topic_cleaned(&mut self, id: uuid::Uuid, cleaned_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE deleted_topics SET remote_cleaned_ms = ?2 WHERE topic_id = ?1",
                params![id.to_string(), cleaned_ms],
            )
            .map_err(|e| db_error(&self.path, "cannot record a cleaned deleted topic", e))?;
        Ok(())
    }

    fn topics(&self) -> Result<Vec<TopicRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, topic_id, partitions, created_ms FROM topics ORDER BY name",
            )
            .map_err(|e| db_error(&self.path, "cannot read topics", e))?;
        let rows: Vec<(String, String, u32, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(|e| db_error(&self.path, "cannot read topics", e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| db_error(&self.path, "cannot read topics", e))?;
        rows.into_iter()
            .map(|(name, id, partitions, created_ms)| {
                Ok(TopicRecord {
                    id: parse_uuid(&self.path, &id)?,
                    configs: self.configs_of(&name)?,
                    name,
                    partitions,
                    created_ms,
                })
            })
            .collect()
    }

    fn set_topic_partitions(&mut self, name: &str, partitions: u32) -> Result<()> {
        let changed = self
            .conn
            .execute(
                "UPDATE topics SET partitions = ?2 WHERE name = ?1",
                params![name, partitions],
            )
            .map_err(|e| db_error(&self.path, "cannot update the partition count", e))?;
        if changed == 0 {
            return Err(Error::not_found(format!("unknown topic '{name}'")));
        }
        Ok(())
    }

    fn set_topic_configs(&mut self, name: &str, configs: &BTreeMap<String, String>) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM topics WHERE name = ?1", params![name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| db_error(&path, "cannot read topics", e))?;
        if exists.is_none() {
            return Err(Error::not_found(format!("unknown topic '{name}'")));
        }
        tx.execute("DELETE FROM topic_configs WHERE topic = ?1", params![name])
            .map_err(|e| db_error(&path, "cannot update topic configs", e))?;
        for (k, v) in configs {
            tx.execute(
                "INSERT INTO topic_configs (topic, key, value) VALUES (?1, ?2, ?3)",
                params![name, k, v],
            )
            .map_err(|e| db_error(&path, "cannot update topic configs", e))?;
        }
        tx.commit().map_err(|e| db_error(&path, "cannot commit", e))
    }

    fn insert_remote_segment(&mut self, seg: &RemoteSegment) -> Result<()> {
        // A copy round that listed a partition before its topic was deleted
        // must not start an upload after: nothing would ever delete it.
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&self.path, "cannot begin", e))?;
        let deleted: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM deleted_topics WHERE topic_id = ?1",
                params![seg.topic_id.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error(&self.path, "cannot read deleted topics", e))?;
        if deleted.is_some() {
            return Err(Error::not_found(format!(
                "topic '{}' (id {}) was deleted: no segment of it is tiered",
                seg.topic, seg.topic_id
            )));
        }
        insert_segment(&tx, &self.path, seg)?;
        tx.commit()
            .map_err(|e| db_error(&self.path, "cannot commit", e))
    }

    fn transition_remote_segment(&mut self, seg: &RemoteSegment, from: RemoteState) -> Result<()> {
        transition(&self.conn, &self.path, seg, from)
    }

    fn replace_remote_segments(
        &mut self,
        new: &RemoteSegment,
        replaced: &[RemoteSegment],
        now_ms: i64,
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&self.path, "cannot begin", e))?;
        let mut finished = new.clone();
        finished.state = RemoteState::CopyFinished;
        finished.updated_ms = now_ms;
        transition(&tx, &self.path, &finished, RemoteState::CopyStarted)?;
        for old in replaced {
            let mut doomed = old.clone();
            doomed.state = RemoteState::DeleteStarted;
            doomed.updated_ms = now_ms;
            transition(&tx, &self.path, &doomed, RemoteState::CopyFinished)?;
        }
        tx.commit()
            .map_err(|e| db_error(&self.path, "cannot commit", e))
    }

    fn remote_segments(&self, topic_id: uuid::Uuid, partition: u32) -> Result<Vec<RemoteSegment>> {
        self.query_remote(
            "WHERE topic_id = ?1 AND partition = ?2",
            &[&topic_id.to_string(), &partition],
        )
    }

    fn remote_segments_in_state(&self, state: RemoteState) -> Result<Vec<RemoteSegment>> {
        self.query_remote("WHERE state = ?1", &[&state.as_str()])
    }

    fn remote_segment_uuids(&self) -> Result<std::collections::HashSet<uuid::Uuid>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT segment_uuid FROM remote_segments")
            .map_err(|e| db_error(&self.path, "cannot read remote segments", e))?;
        let ids: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| db_error(&self.path, "cannot read remote segments", e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| db_error(&self.path, "cannot read remote segments", e))?;
        ids.iter().map(|s| parse_uuid(&self.path, s)).collect()
    }

    fn commit_offsets(&mut self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        for o in offsets {
            insert_offset(&tx, &path, group, o)?;
        }
        tx.commit().map_err(|e| db_error(&path, "cannot commit", e))
    }

    fn committed_offsets(&self, group: &str) -> Result<Vec<CommittedOffset>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_ms \
                 FROM group_offsets WHERE group_id = ?1 ORDER BY topic, partition",
            )
            .map_err(|e| db_error(&self.path, "cannot read committed offsets", e))?;
        let rows = stmt
            .query_map(params![group], |r| {
                Ok(CommittedOffset {
                    topic: r.get(0)?,
                    partition: r.get(1)?,
                    offset: r.get(2)?,
                    leader_epoch: r.get(3)?,
                    metadata: r.get(4)?,
                    commit_ms: r.get(5)?,
                })
            })
            .map_err(|e| db_error(&self.path, "cannot read committed offsets", e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| db_error(&self.path, "cannot read committed offsets", e))
    }

    fn delete_committed_offsets(
        &mut self,
        group: &str,
        partitions: Option<&[(String, u32)]>,
    ) -> Result<usize> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        let mut n = 0;
        match partitions {
            None => {
                n += tx
                    .execute(
                        "DELETE FROM group_offsets WHERE group_id = ?1",
                        params![group],
                    )
                    .map_err(|e| db_error(&path, "cannot delete committed offsets", e))?;
            }
            Some(list) => {
                for (topic, partition) in list {
                    n += tx
                        .execute(
                            "DELETE FROM group_offsets WHERE group_id = ?1 AND topic = ?2 AND partition = ?3",
                            params![group, topic, partition],
                        )
                        .map_err(|e| db_error(&path, "cannot delete committed offsets", e))?;
                }
            }
        }
        tx.commit()
            .map_err(|e| db_error(&path, "cannot commit", e))?;
        Ok(n)
    }

    fn expire_committed_offsets(&mut self, group: &str, commit_ms_at_most: i64) -> Result<usize> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        let n = tx
            .execute(
                "DELETE FROM group_offsets WHERE group_id = ?1 AND commit_ms <= ?2",
                params![group, commit_ms_at_most],
            )
            .map_err(|e| db_error(&path, "cannot expire committed offsets", e))?;
        tx.commit()
            .map_err(|e| db_error(&path, "cannot commit", e))?;
        Ok(n)
    }

    fn groups_with_offsets(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id")
            .map_err(|e| db_error(&self.path, "cannot read committed offsets", e))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| db_error(&self.path, "cannot read committed offsets", e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| db_error(&self.path, "cannot read committed offsets", e))
    }

    fn store_transaction(&mut self, txn: &super::StoredTransaction) -> Result<()> {
        super::sqlite_transactions::store(&self.conn, &self.path, txn)
    }

    fn delete_transaction(&mut self, transactional_id: &str) -> Result<bool> {
        super::sqlite_transactions::delete(&self.conn, &self.path, transactional_id)
    }

    fn stored_transactions(&self) -> Result<Vec<super::StoredTransaction>> {
        super::sqlite_transactions::all(&self.conn, &self.path)
    }

    fn store_group(&mut self, group: &StoredGroup, stored_ms: i64) -> Result<()> {
        super::sqlite_groups::store_group(&mut self.conn, &self.path, group, stored_ms)
    }

    fn delete_group(&mut self, group_id: &str) -> Result<bool> {
        super::sqlite_groups::delete_group(&mut self.conn, &self.path, group_id)
    }

    fn stored_groups(&self) -> Result<Vec<StoredGroup>> {
        super::sqlite_groups::stored_groups(&self.conn, &self.path)
    }

    fn next_producer_id(&self) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT next_producer_id FROM producer_ids WHERE singleton = 0",
                [],
                |r| r.get(0),
            )
            .map_err(|e| db_error(&self.path, "cannot read the producer id counter", e))
    }

    fn upsert_scram_credential(&mut self, credential: &ScramCredential, now_ms: i64) -> Result<()> {
        super::sqlite_scram::upsert(&self.conn, &self.path, credential, now_ms)
    }

    fn delete_scram_credential(&mut self, user: &str, mechanism: ScramMechanism) -> Result<bool> {
        super::sqlite_scram::delete(&self.conn, &self.path, user, mechanism)
    }

    fn scram_credentials(&self, user: Option<&str>) -> Result<Vec<ScramCredential>> {
        super::sqlite_scram::credentials(&self.conn, &self.path, user)
    }

    fn create_acls(&mut self, acls: &[AclBinding], now_ms: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        super::sqlite_acls::insert(&tx, &path, acls, now_ms)?;
        tx.commit().map_err(|e| db_error(&path, "cannot commit", e))
    }

    fn delete_acls(&mut self, acls: &[AclBinding]) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        super::sqlite_acls::delete(&tx, &path, acls)?;
        tx.commit().map_err(|e| db_error(&path, "cannot commit", e))
    }

    fn acls(&self) -> Result<Vec<AclBinding>> {
        super::sqlite_acls::all(&self.conn, &self.path)
    }

    fn alter_client_quotas(&mut self, changes: &[QuotaChange], now_ms: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        super::sqlite_quotas::alter(&tx, &path, changes, now_ms)?;
        tx.commit().map_err(|e| db_error(&path, "cannot commit", e))
    }

    fn client_quotas(&self) -> Result<Vec<ClientQuota>> {
        super::sqlite_quotas::all(&self.conn, &self.path)
    }

    fn allocate_producer_id(&mut self) -> Result<i64> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&path, "cannot begin", e))?;
        let id: i64 = tx
            .query_row(
                "SELECT next_producer_id FROM producer_ids WHERE singleton = 0",
                [],
                |r| r.get(0),
            )
            .map_err(|e| db_error(&path, "cannot read the producer id counter", e))?;
        tx.execute(
            "UPDATE producer_ids SET next_producer_id = ?1 WHERE singleton = 0",
            params![id + 1],
        )
        .map_err(|e| db_error(&path, "cannot advance the producer id counter", e))?;
        tx.commit()
            .map_err(|e| db_error(&path, "cannot commit", e))?;
        Ok(id)
    }
}

/// Insert a topic row and its config rows (inside the caller's transaction).
fn insert_topic(conn: &Connection, path: &Path, topic: &TopicRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO topics (name, topic_id, partitions, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![
            topic.name,
            topic.id.to_string(),
            topic.partitions,
            topic.created_ms
        ],
    )
    .map_err(|e| db_error(path, "cannot insert topic", e))?;
    for (k, v) in &topic.configs {
        conn.execute(
            "INSERT INTO topic_configs (topic, key, value) VALUES (?1, ?2, ?3)",
            params![topic.name, k, v],
        )
        .map_err(|e| db_error(path, "cannot insert topic config", e))?;
    }
    Ok(())
}

/// Insert or replace one committed offset (inside the caller's
/// transaction).
fn insert_offset(conn: &Connection, path: &Path, group: &str, o: &CommittedOffset) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO group_offsets (group_id, topic, partition, committed_offset, \
         leader_epoch, metadata, commit_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            group,
            o.topic,
            o.partition,
            o.offset,
            o.leader_epoch,
            o.metadata,
            o.commit_ms
        ],
    )
    .map_err(|e| db_error(path, "cannot store committed offset", e))?;
    Ok(())
}

/// Insert one remote segment row.
fn insert_segment(conn: &Connection, path: &Path, seg: &RemoteSegment) -> Result<()> {
    conn
            .execute(
                &format!("INSERT INTO remote_segments ({REMOTE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"),
                params![
                    seg.segment_uuid.to_string(),
                    seg.topic,
                    seg.topic_id.to_string(),
                    seg.partition,
                    seg.base_offset,
                    seg.last_offset,
                    seg.first_timestamp,
                    seg.max_timestamp,
                    seg.log_size as i64,
                    seg.index_size as i64,
                    seg.timeindex_size as i64,
                    i64::from(seg.log_crc32c),
                    seg.state.as_str(),
                    seg.updated_ms,
                    seg.index_crc32c.map(i64::from),
                    seg.timeindex_crc32c.map(i64::from),
                    seg.log_blocks.as_ref().map(|b| i64::from(b.block_bytes)),
                    seg.log_blocks.as_ref().map(|b| b.crcs_to_bytes()),
                    seg.txnindex.map(|t| t.size as i64),
                    seg.txnindex.map(|t| i64::from(t.crc32c)),
                ],
            )
            .map_err(|e| db_error(path, "cannot record remote segment", e))?;
    Ok(())
}

/// Move `seg`'s row from `from` to `seg.state` with its sizes and
/// checksums (in `conn`, a connection or a transaction).
fn transition(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
    seg: &RemoteSegment,
    from: RemoteState,
) -> Result<()> {
    let changed = conn
        .execute(
            "UPDATE remote_segments SET state = ?1, log_size = ?2, index_size = ?3, timeindex_size = ?4, \
             log_crc32c = ?5, updated_ms = ?6, index_crc32c = ?9, timeindex_crc32c = ?10, \
             log_block_bytes = ?11, log_block_crc32c = ?12, txnindex_size = ?13, txnindex_crc32c = ?14 \
             WHERE segment_uuid = ?7 AND state = ?8",
            params![
                seg.state.as_str(),
                seg.log_size as i64,
                seg.index_size as i64,
                seg.timeindex_size as i64,
                i64::from(seg.log_crc32c),
                seg.updated_ms,
                seg.segment_uuid.to_string(),
                from.as_str(),
                seg.index_crc32c.map(i64::from),
                seg.timeindex_crc32c.map(i64::from),
                seg.log_blocks.as_ref().map(|b| i64::from(b.block_bytes)),
                seg.log_blocks.as_ref().map(|b| b.crcs_to_bytes()),
                seg.txnindex.map(|t| t.size as i64),
                seg.txnindex.map(|t| i64::from(t.crc32c)),
            ],
        )
        .map_err(|e| db_error(path, "cannot update remote segment", e))?;
    if changed != 1 {
        return Err(Error::internal(format!(
            "remote segment {} is not in state {} (cannot move it to {})",
            seg.segment_uuid,
            from.as_str(),
            seg.state.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
