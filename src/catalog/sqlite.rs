//! The SQLite catalog: a real file (`<data>/catalog.db`), WAL mode, schema
//! from `migrations/` applied in order at open and tracked in
//! `PRAGMA user_version`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::{Catalog, TopicRecord};
use crate::error::{Error, ErrorKind, Result};

/// Forward-only migrations; the version after applying `MIGRATIONS[i]` is
/// `i + 1`.
const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_topics.sql",
    include_str!("../../migrations/0001_topics.sql"),
)];

/// SQLite-backed [`Catalog`].
#[derive(Debug)]
pub struct SqliteCatalog {
    conn: Connection,
    path: PathBuf,
}

fn db_error(path: &Path, what: &str, e: rusqlite::Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("catalog {}: {what}: {e}", path.display()),
    )
    .with_source(e)
}

impl SqliteCatalog {
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
        tx.execute(
            "INSERT INTO topics (name, topic_id, partitions, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![
                topic.name,
                topic.id.to_string(),
                topic.partitions,
                topic.created_ms
            ],
        )
        .map_err(|e| db_error(&path, "cannot insert topic", e))?;
        for (k, v) in &topic.configs {
            tx.execute(
                "INSERT INTO topic_configs (topic, key, value) VALUES (?1, ?2, ?3)",
                params![topic.name, k, v],
            )
            .map_err(|e| db_error(&path, "cannot insert topic config", e))?;
        }
        tx.commit().map_err(|e| db_error(&path, "cannot commit", e))
    }

    fn delete_topic(&mut self, name: &str) -> Result<TopicRecord> {
        let topic = self
            .topics()?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::not_found(format!("unknown topic '{name}'")))?;
        self.conn
            .execute("DELETE FROM topics WHERE name = ?1", params![name])
            .map_err(|e| db_error(&self.path, "cannot delete topic", e))?;
        Ok(topic)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicRecord {
        TopicRecord {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions: 3,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            created_ms: 42,
        }
    }

    #[test]
    fn topics_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let t = topic("orders");
        {
            let mut c = SqliteCatalog::open(&path).unwrap();
            c.create_topic(&t).unwrap();
            c.create_topic(&topic("other")).unwrap();
            let e = c.create_topic(&topic("orders")).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        }
        let mut c = SqliteCatalog::open(&path).unwrap();
        assert_eq!(c.schema_version().unwrap(), MIGRATIONS.len() as u32);
        let all = c.topics().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], t, "ordered by name: orders, other");
        c.set_topic_configs(
            "orders",
            &[("segment.ms".to_string(), "5".to_string())].into(),
        )
        .unwrap();
        let orders = c
            .topics()
            .unwrap()
            .into_iter()
            .find(|x| x.name == "orders")
            .unwrap();
        assert_eq!(orders.configs.len(), 1);
        assert_eq!(orders.configs["segment.ms"], "5");
        assert_eq!(c.delete_topic("orders").unwrap().id, t.id);
        assert_eq!(
            c.delete_topic("orders").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            c.set_topic_configs("orders", &BTreeMap::new())
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        // Configs went with the topic (ON DELETE CASCADE).
        let n: i64 = c
            .conn
            .query_row(
                "SELECT COUNT(*) FROM topic_configs WHERE topic = 'orders'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        SqliteCatalog::open(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = SqliteCatalog::open(&path).unwrap_err();
        assert!(
            e.to_string().contains("newer than this tierlog supports"),
            "{e}"
        );
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        std::fs::write(
            &path,
            b"this is not a database, just some bytes that are long enough....",
        )
        .unwrap();
        let e = SqliteCatalog::open(&path).unwrap_err();
        assert!(e.to_string().contains("catalog.db"), "{e}");
    }
}
