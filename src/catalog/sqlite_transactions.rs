//! Transaction coordinator rows in the SQLite catalog (`transactions`,
//! migration 0008). Errors name the transactional id.
//!
//! ## Durability
//! A row is written alone at `PRAGMA synchronous = NORMAL` (the connection
//! is back at `FULL` after it, for every other write; a row written inside
//! a larger catalog transaction, as restore does, commits with it at
//! `FULL`): in WAL mode the commit
//! is in the WAL file when it returns, so it survives the broker process
//! being killed (SIGKILL, abort, panic), but it is fsynced only with the
//! next `FULL` commit or checkpoint, so a power loss or kernel crash may
//! lose the latest rows. That is the produce path's own guarantee (records
//! are acknowledged before they are fsynced, with the default flush
//! settings) and Kafka's for `__transaction_state`, which it never fsyncs
//! per transaction either; a row lost that way leaves the id in an earlier
//! state, which the coordinator resolves as after any restart (an Ongoing
//! transaction aborts at its timeout, a Prepare* one completes).

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
    let what = || format!("cannot store transactional id '{}'", t.transactional_id);
    let set_sync = |level: &str| {
        conn.pragma_update(None, "synchronous", level)
            .map_err(|e| db_error(path, &what(), e))
    };
    // Inside a caller's transaction (a restore writes everything in one)
    // the level cannot change: that commit stays FULL.
    let relaxed = conn.is_autocommit();
    if relaxed {
        set_sync("NORMAL")?;
    }
    let stored = conn.execute(
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
    );
    // Back to FULL whatever happened: every other catalog write relies on it.
    if relaxed {
        set_sync("FULL")?;
    }
    stored.map_err(|e| db_error(path, &what(), e))?;
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
