//! SCRAM credentials in the SQLite catalog (`scram_credentials`,
//! migration 0007). Errors name the user and the mechanism, never a key.

use std::path::Path;

use rusqlite::{params, Connection};

use super::sqlite::db_error;
use crate::error::{Error, ErrorKind, Result};
use crate::security::{ScramCredential, ScramMechanism};

pub(super) fn upsert(
    conn: &Connection,
    path: &Path,
    c: &ScramCredential,
    now_ms: i64,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO scram_credentials \
         (user_name, mechanism, salt, stored_key, server_key, iterations, updated_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            c.user,
            c.mechanism.name(),
            c.salt,
            c.stored_key,
            c.server_key,
            c.iterations,
            now_ms
        ],
    )
    .map_err(|e| {
        db_error(
            path,
            &format!(
                "cannot store the {} credential of user '{}'",
                c.mechanism.name(),
                c.user
            ),
            e,
        )
    })?;
    Ok(())
}

pub(super) fn delete(
    conn: &Connection,
    path: &Path,
    user: &str,
    mechanism: ScramMechanism,
) -> Result<bool> {
    let n = conn
        .execute(
            "DELETE FROM scram_credentials WHERE user_name = ?1 AND mechanism = ?2",
            params![user, mechanism.name()],
        )
        .map_err(|e| db_error(path, &format!("cannot delete user '{user}'"), e))?;
    Ok(n > 0)
}

pub(super) fn credentials(
    conn: &Connection,
    path: &Path,
    user: Option<&str>,
) -> Result<Vec<ScramCredential>> {
    let what = "cannot read SCRAM credentials";
    let mut stmt = conn
        .prepare_cached(
            "SELECT user_name, mechanism, salt, stored_key, server_key, iterations \
             FROM scram_credentials WHERE ?1 IS NULL OR user_name = ?1 \
             ORDER BY user_name, mechanism",
        )
        .map_err(|e| db_error(path, what, e))?;
    let rows = stmt
        .query_map(params![user], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, u32>(5)?,
            ))
        })
        .map_err(|e| db_error(path, what, e))?;
    let mut out = Vec::new();
    for row in rows {
        let (user, mechanism, salt, stored_key, server_key, iterations) =
            row.map_err(|e| db_error(path, what, e))?;
        let mechanism = ScramMechanism::parse(&mechanism).ok_or_else(|| {
            Error::new(
                ErrorKind::Data,
                format!(
                    "catalog {}: user '{user}' has a credential of unknown mechanism '{mechanism}'",
                    path.display()
                ),
            )
        })?;
        out.push(ScramCredential {
            user,
            mechanism,
            salt,
            stored_key,
            server_key,
            iterations,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::catalog::{Catalog, SqliteCatalog};
    use crate::security::{ScramCredential, ScramMechanism};

    #[test]
    fn credentials_round_trip_and_never_hold_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let mut c = SqliteCatalog::open(&path).unwrap();
        let a = ScramCredential::from_password(
            "alice",
            ScramMechanism::Sha512,
            b"hunter2-secret",
            b"salt",
            4096,
        );
        let b = ScramCredential::from_password("bob", ScramMechanism::Sha256, b"pw", b"s2", 8192);
        c.upsert_scram_credential(&a, 1).unwrap();
        c.upsert_scram_credential(&b, 1).unwrap();
        assert_eq!(
            c.scram_credentials(None).unwrap(),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(c.scram_credentials(Some("bob")).unwrap(), vec![b.clone()]);
        // Replacing keeps one row per user and mechanism.
        let a2 =
            ScramCredential::from_password("alice", ScramMechanism::Sha512, b"new", b"x", 4096);
        c.upsert_scram_credential(&a2, 2).unwrap();
        assert_eq!(c.scram_credentials(Some("alice")).unwrap(), vec![a2]);
        assert!(c
            .delete_scram_credential("bob", ScramMechanism::Sha256)
            .unwrap());
        assert!(!c
            .delete_scram_credential("bob", ScramMechanism::Sha256)
            .unwrap());
        drop(c);
        let bytes = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        for file in [&bytes, &wal] {
            assert!(
                !file.windows(14).any(|w| w == b"hunter2-secret"),
                "the password is in the catalog"
            );
        }
    }
}
