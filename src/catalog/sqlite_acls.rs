//! ACL bindings in the SQLite catalog (`acls`, migration 0009), stored by
//! Kafka's names of their parts.

use std::path::Path;

use rusqlite::{params, Connection};

use super::sqlite::db_error;
use crate::error::{Error, ErrorKind, Result};
use crate::security::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};

pub(super) fn insert(
    conn: &Connection,
    path: &Path,
    acls: &[AclBinding],
    now_ms: i64,
) -> Result<()> {
    for b in acls {
        conn.execute(
            "INSERT OR IGNORE INTO acls (resource_type, resource_name, pattern_type, principal, \
             host, operation, permission, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                b.resource_type.name(),
                b.resource_name,
                b.pattern_type.name(),
                b.principal,
                b.host,
                b.operation.name(),
                b.permission.name(),
                now_ms
            ],
        )
        .map_err(|e| db_error(path, &format!("cannot store ACL '{b}'"), e))?;
    }
    Ok(())
}

pub(super) fn delete(conn: &Connection, path: &Path, acls: &[AclBinding]) -> Result<()> {
    for b in acls {
        conn.execute(
            "DELETE FROM acls WHERE resource_type = ?1 AND resource_name = ?2 AND \
             pattern_type = ?3 AND principal = ?4 AND host = ?5 AND operation = ?6 AND \
             permission = ?7",
            params![
                b.resource_type.name(),
                b.resource_name,
                b.pattern_type.name(),
                b.principal,
                b.host,
                b.operation.name(),
                b.permission.name(),
            ],
        )
        .map_err(|e| db_error(path, &format!("cannot delete ACL '{b}'"), e))?;
    }
    Ok(())
}

pub(super) fn all(conn: &Connection, path: &Path) -> Result<Vec<AclBinding>> {
    let what = "cannot read ACLs";
    let mut stmt = conn
        .prepare_cached(
            "SELECT resource_type, resource_name, pattern_type, principal, host, operation, \
             permission FROM acls",
        )
        .map_err(|e| db_error(path, what, e))?;
    let rows = stmt
        .query_map([], |r| {
            Ok([
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ])
        })
        .map_err(|e| db_error(path, what, e))?;
    let mut out = Vec::new();
    for row in rows {
        let [rt, name, pattern, principal, host, op, perm] =
            row.map_err(|e| db_error(path, what, e))?;
        let bad = |field: &str, value: &str| {
            Error::new(
                ErrorKind::Data,
                format!(
                    "catalog {}: an ACL on '{name}' has an unknown {field} '{value}'",
                    path.display()
                ),
            )
        };
        out.push(AclBinding {
            resource_type: ResourceType::parse(&rt).ok_or_else(|| bad("resource type", &rt))?,
            pattern_type: PatternType::parse(&pattern)
                .ok_or_else(|| bad("pattern type", &pattern))?,
            operation: AclOperation::parse(&op).ok_or_else(|| bad("operation", &op))?,
            permission: match perm.as_str() {
                "ALLOW" => AclPermission::Allow,
                "DENY" => AclPermission::Deny,
                _ => return Err(bad("permission", &perm)),
            },
            resource_name: name,
            principal,
            host,
        });
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::catalog::{Catalog, SqliteCatalog};
    use crate::security::acl::*;

    #[test]
    fn acls_round_trip_once_each_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let mut c = SqliteCatalog::open(&path).unwrap();
        let read = AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "orders".into(),
            pattern_type: PatternType::Prefixed,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::DescribeConfigs,
            permission: AclPermission::Allow,
        };
        let deny = AclBinding {
            resource_type: ResourceType::TransactionalId,
            operation: AclOperation::Write,
            permission: AclPermission::Deny,
            host: "10.1.2.3".into(),
            ..read.clone()
        };
        c.create_acls(&[read.clone(), deny.clone()], 1).unwrap();
        c.create_acls(std::slice::from_ref(&read), 2).unwrap();
        let mut want = vec![read.clone(), deny.clone()];
        want.sort();
        assert_eq!(c.acls().unwrap(), want);
        drop(c);
        let mut c = SqliteCatalog::open(&path).unwrap();
        assert_eq!(c.acls().unwrap(), want);
        c.delete_acls(&[read]).unwrap();
        assert_eq!(c.acls().unwrap(), vec![deny]);
    }
}
