//! The catalog in and out of a catalog snapshot
//! ([`crate::format::catalog_snapshot`]): reading every topic, committed
//! offset, stored group, SCRAM credential, ACL, client quota,
//! transactional id's coordinator state and the producer-id counter into
//! one, and turning
//! one back into the rows `tierlog restore` writes. Data conversions only;
//! the remote tier stores the snapshot, the engine decides when.

use bytes::Bytes;

use super::quotas::{ClientQuota, EntityName, QuotaEntity, QuotaKey};
use super::{
    Catalog, CommittedOffset, PendingTxnOffset, StoredGroup, StoredMember, StoredTransaction,
    TopicRecord,
};
use crate::error::{Error, Result};
use crate::format::catalog_snapshot::{
    from_hex, to_hex, CatalogSnapshot, SnapshotAcl, SnapshotClientQuota, SnapshotGroup,
    SnapshotMember, SnapshotOffset, SnapshotTopic, SnapshotTransaction, SnapshotTxnOffset,
    SnapshotUser,
};
use crate::security::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use crate::security::{ScramCredential, ScramMechanism};

/// Read the whole catalog of cluster `cluster_id` into a snapshot taken
/// at `taken_ms`, with each partition's log end offset and DeleteRecords
/// floor from `offsets` (by topic; floors all 0 are left out). The caller
/// holds the catalog's lock, so the reads see one state.
pub fn take(
    catalog: &dyn Catalog,
    cluster_id: &str,
    taken_ms: i64,
    offsets: impl Fn(&TopicRecord) -> (Vec<i64>, Vec<i64>),
) -> Result<CatalogSnapshot> {
    let topics = catalog
        .topics()?
        .into_iter()
        .map(|t| SnapshotTopic {
            log_end_offsets: offsets(&t).0,
            log_start_floors: {
                let floors = offsets(&t).1;
                if floors.iter().all(|&f| f <= 0) {
                    Vec::new()
                } else {
                    floors
                }
            },
            name: t.name,
            topic_id: t.id,
            partitions: t.partitions,
            configs: t.configs,
            created_ms: t.created_ms,
        })
        .collect();
    let mut committed_offsets = Vec::new();
    for group in catalog.groups_with_offsets()? {
        for o in catalog.committed_offsets(&group)? {
            committed_offsets.push(SnapshotOffset {
                group: group.clone(),
                topic: o.topic,
                partition: o.partition,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata,
                commit_ms: o.commit_ms,
            });
        }
    }
    let groups = catalog
        .stored_groups()?
        .into_iter()
        .map(|g| SnapshotGroup {
            group_id: g.group_id,
            generation_id: g.generation_id,
            protocol_type: g.protocol_type,
            protocol_name: g.protocol_name,
            leader_id: g.leader_id,
            emptied_ms: g.emptied_at_ms,
            members: g
                .members
                .into_iter()
                .map(|m| SnapshotMember {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscription: to_hex(&m.subscription),
                    assignment: to_hex(&m.assignment),
                })
                .collect(),
        })
        .collect();
    Ok(CatalogSnapshot {
        cluster_id: cluster_id.to_string(),
        taken_ms,
        next_producer_id: catalog.next_producer_id()?,
        topics,
        committed_offsets,
        groups,
        users: catalog
            .scram_credentials(None)?
            .into_iter()
            .map(|c| SnapshotUser {
                user: c.user,
                mechanism: c.mechanism.name().to_string(),
                iterations: c.iterations,
                salt: to_hex(&c.salt),
                stored_key: to_hex(&c.stored_key),
                server_key: to_hex(&c.server_key),
            })
            .collect(),
        acls: catalog
            .acls()?
            .into_iter()
            .map(|b| SnapshotAcl {
                resource_type: b.resource_type.name().to_string(),
                resource_name: b.resource_name,
                pattern_type: b.pattern_type.name().to_string(),
                principal: b.principal,
                host: b.host,
                operation: b.operation.name().to_string(),
                permission: b.permission.name().to_string(),
            })
            .collect(),
        transactions: catalog
            .stored_transactions()?
            .into_iter()
            .map(|t| SnapshotTransaction {
                transactional_id: t.transactional_id,
                producer_id: t.producer_id,
                producer_epoch: t.producer_epoch,
                state: t.state,
                timeout_ms: t.timeout_ms,
                txn_start_ms: t.txn_start_ms,
                updated_ms: t.updated_ms,
                partitions: t.partitions,
                groups: t.groups,
                pending_offsets: t
                    .pending_offsets
                    .into_iter()
                    .map(|o| SnapshotTxnOffset {
                        group: o.group,
                        topic: o.topic,
                        partition: o.partition,
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata,
                    })
                    .collect(),
            })
            .collect(),
        client_quotas: catalog
            .client_quotas()?
            .into_iter()
            .map(|q| {
                let (user_kind, user_name) = entity_part(&q.entity.user);
                let (client_kind, client_id) = entity_part(&q.entity.client_id);
                SnapshotClientQuota {
                    user_kind,
                    user_name,
                    client_kind,
                    client_id,
                    key: q.key.name().to_string(),
                    value: q.value,
                }
            })
            .collect(),
    })
}

/// A quota entity's part as a snapshot's kind and name.
fn entity_part(part: &Option<EntityName>) -> (String, String) {
    match part {
        None => ("none".into(), String::new()),
        Some(EntityName::Default) => ("default".into(), String::new()),
        Some(EntityName::Name(n)) => ("name".into(), n.clone()),
    }
}

/// The client quotas a snapshot holds.
pub fn client_quotas_of(snapshot: &CatalogSnapshot) -> Result<Vec<ClientQuota>> {
    let part = |kind: &str, name: &str| -> Result<Option<EntityName>> {
        Ok(match kind {
            "none" => None,
            "default" => Some(EntityName::Default),
            "name" => Some(EntityName::Name(name.to_string())),
            other => {
                return Err(Error::data(format!(
                    "catalog snapshot: a client quota has an unknown entity kind '{other}'"
                )))
            }
        })
    };
    snapshot
        .client_quotas
        .iter()
        .map(|q| {
            let key = QuotaKey::parse(&q.key).ok_or_else(|| {
                Error::data(format!(
                    "catalog snapshot: unknown client quota key '{}'",
                    q.key
                ))
            })?;
            key.check(q.value)
                .map_err(|e| Error::data(format!("catalog snapshot: {e}")))?;
            let entity = QuotaEntity {
                user: part(&q.user_kind, &q.user_name)?,
                client_id: part(&q.client_kind, &q.client_id)?,
            };
            if entity.user.is_none() && entity.client_id.is_none() {
                return Err(Error::data(
                    "catalog snapshot: a client quota has an empty entity",
                ));
            }
            Ok(ClientQuota {
                entity,
                key,
                value: q.value,
            })
        })
        .collect()
}

/// The transactional ids' coordinator state a snapshot holds.
pub fn transactions_of(snapshot: &CatalogSnapshot) -> Vec<StoredTransaction> {
    snapshot
        .transactions
        .iter()
        .map(|t| StoredTransaction {
            transactional_id: t.transactional_id.clone(),
            producer_id: t.producer_id,
            producer_epoch: t.producer_epoch,
            state: t.state.clone(),
            timeout_ms: t.timeout_ms,
            txn_start_ms: t.txn_start_ms,
            updated_ms: t.updated_ms,
            partitions: t.partitions.clone(),
            groups: t.groups.clone(),
            pending_offsets: t
                .pending_offsets
                .iter()
                .map(|o| PendingTxnOffset {
                    group: o.group.clone(),
                    topic: o.topic.clone(),
                    partition: o.partition,
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                })
                .collect(),
        })
        .collect()
}

/// The ACL bindings a snapshot holds.
pub fn acls_of(snapshot: &CatalogSnapshot) -> Result<Vec<AclBinding>> {
    snapshot
        .acls
        .iter()
        .map(|a| {
            let bad = |field: &str, value: &str| {
                Error::data(format!(
                    "catalog snapshot: an ACL on '{}' has an unknown {field} '{value}'",
                    a.resource_name
                ))
            };
            Ok(AclBinding {
                resource_type: ResourceType::parse(&a.resource_type)
                    .ok_or_else(|| bad("resource type", &a.resource_type))?,
                resource_name: a.resource_name.clone(),
                pattern_type: PatternType::parse(&a.pattern_type)
                    .ok_or_else(|| bad("pattern type", &a.pattern_type))?,
                principal: a.principal.clone(),
                host: a.host.clone(),
                operation: AclOperation::parse(&a.operation)
                    .ok_or_else(|| bad("operation", &a.operation))?,
                permission: match a.permission.as_str() {
                    "ALLOW" => AclPermission::Allow,
                    "DENY" => AclPermission::Deny,
                    other => return Err(bad("permission", other)),
                },
            })
        })
        .collect()
}

/// The SCRAM credentials a snapshot holds.
pub fn users_of(snapshot: &CatalogSnapshot) -> Result<Vec<ScramCredential>> {
    let hex = |h: &str| from_hex(h).map_err(|e| Error::data(e.to_string()));
    snapshot
        .users
        .iter()
        .map(|u| {
            Ok(ScramCredential {
                user: u.user.clone(),
                mechanism: ScramMechanism::parse(&u.mechanism).ok_or_else(|| {
                    Error::data(format!(
                        "catalog snapshot: user '{}' has an unknown mechanism '{}'",
                        u.user, u.mechanism
                    ))
                })?,
                salt: hex(&u.salt)?,
                stored_key: hex(&u.stored_key)?,
                server_key: hex(&u.server_key)?,
                iterations: u.iterations,
            })
        })
        .collect()
}

/// Committed offsets by group, and stored groups.
pub type GroupState = (Vec<(String, CommittedOffset)>, Vec<StoredGroup>);

/// The committed offsets (by group) and stored groups a snapshot holds.
pub fn groups_of(snapshot: &CatalogSnapshot) -> Result<GroupState> {
    let offsets = snapshot
        .committed_offsets
        .iter()
        .map(|o| {
            (
                o.group.clone(),
                CommittedOffset {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_ms: o.commit_ms,
                },
            )
        })
        .collect();
    let hex = |h: &str| -> Result<Bytes> {
        from_hex(h)
            .map(Bytes::from)
            .map_err(|e| Error::data(e.to_string()))
    };
    let groups = snapshot
        .groups
        .iter()
        .map(|g| {
            Ok(StoredGroup {
                group_id: g.group_id.clone(),
                generation_id: g.generation_id,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol_name.clone(),
                leader_id: g.leader_id.clone(),
                emptied_at_ms: g.emptied_ms,
                members: g
                    .members
                    .iter()
                    .map(|m| {
                        Ok(StoredMember {
                            member_id: m.member_id.clone(),
                            group_instance_id: m.group_instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            session_timeout_ms: m.session_timeout_ms,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            subscription: hex(&m.subscription)?,
                            assignment: hex(&m.assignment)?,
                        })
                    })
                    .collect::<Result<_>>()?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((offsets, groups))
}

/// A snapshot's topic as the catalog stores it.
pub fn topic_record(t: &SnapshotTopic) -> TopicRecord {
    TopicRecord {
        name: t.name.clone(),
        id: t.topic_id,
        partitions: t.partitions,
        configs: t.configs.clone(),
        created_ms: t.created_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogRestore, SqliteCatalog};

    /// A catalog's topics, offsets, groups and producer-id counter come
    /// back the same through a snapshot's bytes and `Catalog::restore`.
    #[test]
    fn a_catalog_survives_a_snapshot_and_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = SqliteCatalog::open(&dir.path().join("a.db")).unwrap();
        let topic = TopicRecord {
            name: "local-only".into(),
            id: uuid::Uuid::new_v4(),
            partitions: 2,
            configs: [("retention.ms".to_string(), "5000".to_string())].into(),
            created_ms: 11,
        };
        a.create_topic(&topic).unwrap();
        let offset = CommittedOffset {
            topic: "local-only".into(),
            partition: 1,
            offset: 42,
            leader_epoch: 3,
            metadata: Some("meta".into()),
            commit_ms: 99,
        };
        a.commit_offsets("g1", std::slice::from_ref(&offset))
            .unwrap();
        let group = StoredGroup {
            group_id: "g1".into(),
            generation_id: 4,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader_id: Some("m".into()),
            emptied_at_ms: None,
            members: vec![StoredMember {
                member_id: "m".into(),
                group_instance_id: Some("static-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 6000,
                rebalance_timeout_ms: 30000,
                subscription: Bytes::from_static(&[0, 1, 2, 255]),
                assignment: Bytes::from_static(&[9, 8]),
            }],
        };
        a.store_group(&group, 5).unwrap();
        let acl = AclBinding {
            resource_type: ResourceType::Group,
            resource_name: "billing-".into(),
            pattern_type: PatternType::Prefixed,
            principal: "User:alice".into(),
            host: "10.0.0.7".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Deny,
        };
        a.create_acls(std::slice::from_ref(&acl), 5).unwrap();
        let txn = StoredTransaction {
            transactional_id: "app".into(),
            producer_id: 2,
            producer_epoch: 5,
            state: "Ongoing".into(),
            timeout_ms: 60_000,
            txn_start_ms: 10,
            updated_ms: 11,
            partitions: vec![("local-only".into(), 1)],
            groups: vec!["g1".into()],
            pending_offsets: vec![PendingTxnOffset {
                group: "g1".into(),
                topic: "local-only".into(),
                partition: 1,
                offset: 50,
                leader_epoch: -1,
                metadata: None,
            }],
        };
        a.store_transaction(&txn).unwrap();
        for _ in 0..3 {
            a.allocate_producer_id().unwrap();
        }
        let quota_entity = crate::catalog::quotas::QuotaEntity {
            user: Some(crate::catalog::quotas::EntityName::Name("alice".into())),
            client_id: Some(crate::catalog::quotas::EntityName::Default),
        };
        a.alter_client_quotas(
            &[
                (
                    quota_entity.clone(),
                    crate::catalog::quotas::QuotaKey::ProducerByteRate,
                    Some(1024.0),
                ),
                (
                    quota_entity.clone(),
                    crate::catalog::quotas::QuotaKey::RequestPercentage,
                    Some(2.5),
                ),
            ],
            5,
        )
        .unwrap();

        let snapshot = take(&a, "c1", 1234, |t| {
            (
                vec![7; t.partitions as usize],
                vec![0; t.partitions as usize],
            )
        })
        .unwrap();
        assert_eq!(snapshot.next_producer_id, 3);
        assert_eq!(snapshot.topics[0].log_end_offsets, vec![7, 7]);
        assert!(snapshot.topics[0].log_start_floors.is_empty(), "no floor");
        let read = CatalogSnapshot::from_json(&snapshot.to_json()).unwrap();
        assert_eq!(read, snapshot);

        let mut b = SqliteCatalog::open(&dir.path().join("b.db")).unwrap();
        let (committed_offsets, groups) = groups_of(&read).unwrap();
        b.restore(&CatalogRestore {
            topics: read.topics.iter().map(topic_record).collect(),
            next_producer_id: read.next_producer_id,
            committed_offsets,
            groups,
            acls: acls_of(&read).unwrap(),
            transactions: transactions_of(&read),
            client_quotas: super::client_quotas_of(&read).unwrap(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(b.acls().unwrap(), vec![acl]);
        assert_eq!(b.stored_transactions().unwrap(), vec![txn]);
        assert_eq!(read.client_quotas.len(), 2);
        assert_eq!(b.client_quotas().unwrap(), a.client_quotas().unwrap());
        assert_eq!(b.topics().unwrap(), vec![topic]);
        assert_eq!(b.committed_offsets("g1").unwrap(), vec![offset]);
        assert_eq!(b.stored_groups().unwrap(), vec![group]);
        assert_eq!(b.allocate_producer_id().unwrap(), 3);
    }
}
