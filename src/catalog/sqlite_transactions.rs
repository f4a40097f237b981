//! Transaction coordinator rows in the SQLite catalog (`transactions`,
//! migration 0008). Errors name the transactional id.

use std::path::Path;

use rusqlite::{params, Connection};

use super::sqlite::db_error;
use super::transactions::{PendingTxnOffset, StoredTransaction};
use crate::error::{Error, ErrorKind, Result};

pub(super) fn store(conn: &Connection, path: &Path, t: &StoredTransaction) -> Result<()> {
    // Plain data with string keys: serialization cannot fail.
    let partitions = serde_json::to_string(&t.partitions).unwrap_or_else(|_| "[]".into());
    let groups = serde_json::to_string(&t.groups).unwrap_or_else(|_| "[]".into());
    let pending = serde_json::to_string(&t.pending_offsets).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT OR REPLACE INTO transactions \
         (transactional_id, producer_id, producer_epoch, state, timeout_ms, txn_start_ms, \
          updated_ms, partitions, groups, pending_offsets) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            t.transactional_id,
            t.producer_id,
            t.producer_epoch,
            t.state,
            t.timeout_ms,
            t.txn_start_ms,
            t.updated_ms,
            partitions,
            groups,
            pending
        ],
    )
    .map_err(|e| {
        db_error(
            path,
            &format!("cannot store transactional id '{}'", t.transactional_id),
            e,
        )
    })?;
    Ok(())
}

pub(super) fn delete(conn: &Connection, path: &Path, transactional_id: &str) -> Result<bool> {
    let n = conn
        .execute(
            "DELETE FROM transactions WHERE transactional_id = ?1",
            params![transactional_id],
        )
        .map_err(|e| {
            db_error(
                path,
                &format!("cannot delete transactional id '{transactional_id}'"),
                e,
            )
        })?;
    Ok(n > 0)
}

pub(super) fn all(conn: &Connection, path: &Path) -> Result<Vec<StoredTransaction>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT transactional_id, producer_id, producer_epoch, state, timeout_ms, \
             txn_start_ms, updated_ms, partitions, groups, pending_offsets \
             FROM transactions ORDER BY transactional_id",
        )
        .map_err(|e| db_error(path, "cannot read transactions", e))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i16>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i32>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, String>(9)?,
            ))
        })
        .map_err(|e| db_error(path, "cannot read transactions", e))?;
    let mut out = Vec::new();
    for row in rows {
        let (
            id,
            producer_id,
            producer_epoch,
            state,
            timeout_ms,
            start,
            updated,
            parts,
            groups,
            pending,
        ) = row.map_err(|e| db_error(path, "cannot read transactions", e))?;
        let bad = |what: &str, e: serde_json::Error| {
            Error::new(
                ErrorKind::Data,
                format!(
                    "catalog {}: transactional id '{id}' has unreadable {what}: {e}",
                    path.display()
                ),
            )
        };
        let partitions: Vec<(String, i32)> =
            serde_json::from_str(&parts).map_err(|e| bad("partitions", e))?;
        let groups: Vec<String> = serde_json::from_str(&groups).map_err(|e| bad("groups", e))?;
        let pending_offsets: Vec<PendingTxnOffset> =
            serde_json::from_str(&pending).map_err(|e| bad("pending offsets", e))?;
        out.push(StoredTransaction {
            transactional_id: id,
            producer_id,
            producer_epoch,
            state,
            timeout_ms,
            txn_start_ms: start,
            updated_ms: updated,
            partitions,
            groups,
            pending_offsets,
        });
    }
    Ok(out)
}
