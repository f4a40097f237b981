//! Client quotas in the SQLite catalog (`client_quotas`, migration 0010).

use std::path::Path;

use rusqlite::{params, Connection};

use super::quotas::{ClientQuota, EntityName, QuotaChange, QuotaEntity, QuotaKey};
use super::sqlite::db_error;
use crate::error::{Error, ErrorKind, Result};

/// A part of an entity as its two columns.
fn columns(part: &Option<EntityName>) -> (&'static str, &str) {
    match part {
        None => ("none", ""),
        Some(EntityName::Default) => ("default", ""),
        Some(EntityName::Name(n)) => ("name", n.as_str()),
    }
}

fn part(path: &Path, kind: &str, name: String) -> Result<Option<EntityName>> {
    Ok(match kind {
        "none" => None,
        "default" => Some(EntityName::Default),
        "name" => Some(EntityName::Name(name)),
        other => {
            return Err(Error::new(
                ErrorKind::Data,
                format!(
                    "catalog {}: a client quota has an unknown entity kind '{other}'",
                    path.display()
                ),
            ))
        }
    })
}

/// Apply `changes` in order (inside the caller's transaction).
pub(super) fn alter(
    conn: &Connection,
    path: &Path,
    changes: &[QuotaChange],
    now_ms: i64,
) -> Result<()> {
    for (entity, key, value) in changes {
        let (uk, un) = columns(&entity.user);
        let (ck, cn) = columns(&entity.client_id);
        let what = || format!("cannot change quota {} of {entity}", key.name());
        match value {
            Some(v) => conn.execute(
                "INSERT OR REPLACE INTO client_quotas \
                 (user_kind, user_name, client_kind, client_id, quota_key, value, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![uk, un, ck, cn, key.name(), v, now_ms],
            ),
            None => conn.execute(
                "DELETE FROM client_quotas WHERE user_kind = ?1 AND user_name = ?2 \
                 AND client_kind = ?3 AND client_id = ?4 AND quota_key = ?5",
                params![uk, un, ck, cn, key.name()],
            ),
        }
        .map_err(|e| db_error(path, &what(), e))?;
    }
    Ok(())
}

/// Every stored quota, by entity and key.
pub(super) fn all(conn: &Connection, path: &Path) -> Result<Vec<ClientQuota>> {
    let what = "cannot read client quotas";
    let mut stmt = conn
        .prepare_cached(
            "SELECT user_kind, user_name, client_kind, client_id, quota_key, value \
             FROM client_quotas ORDER BY user_kind, user_name, client_kind, client_id, quota_key",
        )
        .map_err(|e| db_error(path, what, e))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, f64>(5)?,
            ))
        })
        .map_err(|e| db_error(path, what, e))?;
    let mut out = Vec::new();
    for row in rows {
        let (uk, un, ck, cn, key, value) = row.map_err(|e| db_error(path, what, e))?;
        let key = QuotaKey::parse(&key).ok_or_else(|| {
            Error::new(
                ErrorKind::Data,
                format!(
                    "catalog {}: a client quota has an unknown key '{key}'",
                    path.display()
                ),
            )
        })?;
        out.push(ClientQuota {
            entity: QuotaEntity {
                user: part(path, &uk, un)?,
                client_id: part(path, &ck, cn)?,
            },
            key,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::catalog::quotas::{ClientQuota, EntityName, QuotaEntity, QuotaKey};
    use crate::catalog::{Catalog, SqliteCatalog};

    #[test]
    fn client_quotas_round_trip_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let alice = QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: None,
        };
        let alice_default_client = QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: Some(EntityName::Default),
        };
        let default_client = QuotaEntity {
            user: None,
            client_id: Some(EntityName::Default),
        };
        {
            let mut c = SqliteCatalog::open(&path).unwrap();
            c.alter_client_quotas(
                &[
                    (alice.clone(), QuotaKey::ProducerByteRate, Some(1024.0)),
                    (alice.clone(), QuotaKey::RequestPercentage, Some(12.5)),
                    (
                        alice_default_client.clone(),
                        QuotaKey::ConsumerByteRate,
                        Some(2048.0),
                    ),
                    (
                        default_client.clone(),
                        QuotaKey::ProducerByteRate,
                        Some(1.0),
                    ),
                ],
                1,
            )
            .unwrap();
            // Replace one, remove one, remove one that is not there.
            c.alter_client_quotas(
                &[
                    (alice.clone(), QuotaKey::ProducerByteRate, Some(4096.0)),
                    (default_client.clone(), QuotaKey::ProducerByteRate, None),
                    (default_client.clone(), QuotaKey::ConsumerByteRate, None),
                ],
                2,
            )
            .unwrap();
        }
        let c = SqliteCatalog::open(&path).unwrap();
        let mut got = c.client_quotas().unwrap();
        got.sort_by(|a, b| (&a.entity, a.key).cmp(&(&b.entity, b.key)));
        assert_eq!(
            got,
            vec![
                ClientQuota {
                    entity: alice.clone(),
                    key: QuotaKey::ProducerByteRate,
                    value: 4096.0
                },
                ClientQuota {
                    entity: alice,
                    key: QuotaKey::RequestPercentage,
                    value: 12.5
                },
                ClientQuota {
                    entity: alice_default_client,
                    key: QuotaKey::ConsumerByteRate,
                    value: 2048.0
                },
            ]
        );
    }
}
