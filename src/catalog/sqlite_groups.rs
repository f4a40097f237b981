//! The SQLite catalog's classic group metadata (migration
//! `0006_group_metadata.sql`): what [`super::Catalog::store_group`],
//! [`super::Catalog::delete_group`] and [`super::Catalog::stored_groups`]
//! run. Plain SQL, one transaction per call.

use std::path::Path;

use rusqlite::{params, Connection};

use super::sqlite::db_error;
use super::{StoredGroup, StoredMember};
use crate::error::Result;

pub(super) fn store_group(
    conn: &mut Connection,
    path: &Path,
    group: &StoredGroup,
    stored_ms: i64,
) -> Result<()> {
    let path = path.to_path_buf();
    let tx = conn
        .transaction()
        .map_err(|e| db_error(&path, "cannot begin", e))?;
    insert_group(&tx, &path, group, stored_ms)?;
    tx.commit().map_err(|e| db_error(&path, "cannot commit", e))
}

/// Replace the stored metadata of `group` (inside the caller's
/// transaction).
pub(super) fn insert_group(
    conn: &Connection,
    path: &Path,
    group: &StoredGroup,
    stored_ms: i64,
) -> Result<()> {
    let what = format!("cannot store the metadata of group '{}'", group.group_id);
    conn.execute(
        "DELETE FROM group_members WHERE group_id = ?1",
        params![group.group_id],
    )
    .map_err(|e| db_error(path, &what, e))?;
    conn.execute(
        "DELETE FROM group_metadata WHERE group_id = ?1",
        params![group.group_id],
    )
    .map_err(|e| db_error(path, &what, e))?;
    conn.execute(
        "INSERT INTO group_metadata (group_id, generation_id, protocol_type, protocol_name, \
             leader_id, emptied_ms, stored_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            group.group_id,
            group.generation_id,
            group.protocol_type,
            group.protocol_name,
            group.leader_id,
            group.emptied_at_ms,
            stored_ms
        ],
    )
    .map_err(|e| db_error(path, &what, e))?;
    for (index, m) in group.members.iter().enumerate() {
        conn.execute(
            "INSERT INTO group_members (group_id, member_index, member_id, group_instance_id, \
                 client_id, client_host, session_timeout_ms, rebalance_timeout_ms, subscription, \
                 assignment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                group.group_id,
                index as i64,
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.session_timeout_ms,
                m.rebalance_timeout_ms,
                &m.subscription[..],
                &m.assignment[..]
            ],
        )
        .map_err(|e| db_error(path, &what, e))?;
    }
    Ok(())
}

pub(super) fn delete_group(conn: &mut Connection, path: &Path, group_id: &str) -> Result<bool> {
    let path = path.to_path_buf();
    let what = format!("cannot delete the metadata of group '{group_id}'");
    let tx = conn
        .transaction()
        .map_err(|e| db_error(&path, "cannot begin", e))?;
    tx.execute(
        "DELETE FROM group_members WHERE group_id = ?1",
        params![group_id],
    )
    .map_err(|e| db_error(&path, &what, e))?;
    let n = tx
        .execute(
            "DELETE FROM group_metadata WHERE group_id = ?1",
            params![group_id],
        )
        .map_err(|e| db_error(&path, &what, e))?;
    tx.commit()
        .map_err(|e| db_error(&path, "cannot commit", e))?;
    Ok(n > 0)
}

pub(super) fn stored_groups(conn: &Connection, path: &Path) -> Result<Vec<StoredGroup>> {
    let what = "cannot read stored group metadata";
    let mut stmt = conn
        .prepare_cached(
            "SELECT group_id, generation_id, protocol_type, protocol_name, leader_id, \
                 emptied_ms FROM group_metadata ORDER BY group_id",
        )
        .map_err(|e| db_error(path, what, e))?;
    let mut groups: Vec<StoredGroup> = stmt
        .query_map([], |r| {
            Ok(StoredGroup {
                group_id: r.get(0)?,
                generation_id: r.get(1)?,
                protocol_type: r.get(2)?,
                protocol_name: r.get(3)?,
                leader_id: r.get(4)?,
                emptied_at_ms: r.get(5)?,
                members: Vec::new(),
            })
        })
        .map_err(|e| db_error(path, what, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| db_error(path, what, e))?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT member_id, group_instance_id, client_id, client_host, session_timeout_ms, \
                 rebalance_timeout_ms, subscription, assignment FROM group_members \
                 WHERE group_id = ?1 ORDER BY member_index",
        )
        .map_err(|e| db_error(path, what, e))?;
    for g in &mut groups {
        g.members = stmt
            .query_map(params![g.group_id], |r| {
                Ok(StoredMember {
                    member_id: r.get(0)?,
                    group_instance_id: r.get(1)?,
                    client_id: r.get(2)?,
                    client_host: r.get(3)?,
                    session_timeout_ms: r.get(4)?,
                    rebalance_timeout_ms: r.get(5)?,
                    subscription: bytes::Bytes::from(r.get::<_, Vec<u8>>(6)?),
                    assignment: bytes::Bytes::from(r.get::<_, Vec<u8>>(7)?),
                })
            })
            .map_err(|e| db_error(path, what, e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| db_error(path, what, e))?;
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn stored_groups_survive_reopen_and_are_replaced_and_deleted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let member = |id: &str, instance: Option<&str>| StoredMember {
            member_id: id.into(),
            group_instance_id: instance.map(str::to_string),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 6000,
            rebalance_timeout_ms: 30_000,
            subscription: bytes::Bytes::from_static(b"\0\x01sub"),
            assignment: bytes::Bytes::from_static(b"\0\x01asg"),
        };
        let g = StoredGroup {
            group_id: "g".into(),
            generation_id: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader_id: Some("b".into()),
            emptied_at_ms: None,
            // Join order, not name order.
            members: vec![member("b", None), member("a", Some("i"))],
        };
        {
            let mut c = crate::catalog::SqliteCatalog::open(&path).unwrap();
            c.store_group(&g, 1).unwrap();
            let mut h = g.clone();
            h.group_id = "h".into();
            c.store_group(&h, 1).unwrap();
        }
        let mut c = crate::catalog::SqliteCatalog::open(&path).unwrap();
        let stored = c.stored_groups().unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0], g);
        // A newer generation replaces the whole group, members included.
        let mut g4 = g.clone();
        g4.generation_id = 4;
        g4.members.truncate(1);
        c.store_group(&g4, 2).unwrap();
        assert_eq!(c.stored_groups().unwrap()[0], g4);
        // Emptied: no members, and when it emptied.
        let emptied = StoredGroup {
            members: Vec::new(),
            emptied_at_ms: Some(1_700_000_000_000),
            ..g4.clone()
        };
        c.store_group(&emptied, 3).unwrap();
        assert_eq!(c.stored_groups().unwrap()[0], emptied);
        assert!(c.delete_group("g").unwrap());
        assert!(!c.delete_group("g").unwrap(), "nothing left to delete");
        let left: Vec<String> = c
            .stored_groups()
            .unwrap()
            .into_iter()
            .map(|g| g.group_id)
            .collect();
        assert_eq!(left, vec!["h"]);
    }
}
