//! DescribeClientQuotas and AlterClientQuotas (KIP-546): client quotas in
//! the catalog, what `tierlog quota` and Kafka's `kafka-configs
//! --entity-type users|clients --alter --add-config producer_byte_rate=…`
//! call. After a change the broker's quota table is loaded again from the
//! catalog, so the next request of every connection sees it.
//!
//! Entities are users and client ids (KIP-55), each named or the default
//! (a null name); keys `producer_byte_rate`, `consumer_byte_rate`,
//! `request_percentage`. IP quotas and `controller_mutation_rate` are
//! refused as INVALID_REQUEST (not supported). Who may alter quotas is
//! decided in [`may`]: Kafka's ACL checks (DescribeConfigs / AlterConfigs
//! on the cluster).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlterEntityData, EntryData as AlterEntryData,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::{response_errors::ErrorCodes, Ctx};
use crate::catalog::quotas::{EntityName, QuotaChange, QuotaEntity, QuotaKey};
use crate::security::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use crate::security::SecurityProtocol;

/// Kafka's entity type names.
const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
const IP: &str = "ip";

type Refusal = (ResponseError, String);

fn invalid(message: String) -> Refusal {
    (ResponseError::InvalidRequest, message)
}

/// May this request use the quota table? Kafka's checks: DescribeConfigs
/// on the cluster to describe, AlterConfigs to alter. Over a PLAINTEXT
/// listener a change from another host also needs an explicit grant (an
/// ACL or `super.users`), never merely "no ACL found", as for ACLs and
/// users (`acls::may_alter_cluster`).
fn may(ctx: &Ctx, auth: &Authz, op: AclOperation) -> Result<(), Refusal> {
    let d = auth.decide(op, ResourceType::Cluster, CLUSTER_NAME);
    if !d.allowed() {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            format!("{} may not {} the cluster", auth.principal, op.name()),
        ));
    }
    if op == AclOperation::AlterConfigs
        && ctx.security.protocol == SecurityProtocol::Plaintext
        && !auth.peer.ip().is_loopback()
        && !d.explicitly_allowed()
    {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            "over a PLAINTEXT listener only loopback clients may change client quotas \
             without an ACL granting AlterConfigs on the cluster; use a SASL or SSL listener"
                .to_string(),
        ));
    }
    Ok(())
}

/// An entity from the wire's (type, name) pairs.
fn entity<'a>(
    parts: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<QuotaEntity, Refusal> {
    let mut e = QuotaEntity {
        user: None,
        client_id: None,
    };
    let mut any = false;
    for (kind, name) in parts {
        any = true;
        let slot = match kind {
            USER => &mut e.user,
            CLIENT_ID => &mut e.client_id,
            IP => return Err(invalid("ip quotas are not supported by tierlog".into())),
            other => {
                return Err(invalid(format!(
                    "unknown entity type '{other}' (user, client-id)"
                )))
            }
        };
        if slot.is_some() {
            return Err(invalid(format!(
                "entity type '{kind}' given more than once"
            )));
        }
        *slot = Some(EntityName::from_wire(name));
    }
    if !any {
        return Err(invalid("the entity is empty".into()));
    }
    Ok(e)
}

pub async fn alter_client_quotas(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let allowed = may(ctx, auth, AclOperation::AlterConfigs);
    // Each entry checked: its entity and its changes, or why not.
    let mut checked: Vec<Result<Vec<QuotaChange>, Refusal>> = Vec::new();
    for entry in &req.entries {
        // Authorized first, as Kafka does: a refused client learns
        // nothing about its entries.
        let parsed = allowed
            .clone()
            .and_then(|()| {
                entity(
                    entry
                        .entity
                        .iter()
                        .map(|p| (p.entity_type.as_str(), p.entity_name.as_deref())),
                )
            })
            .and_then(|e| {
            let mut seen = HashSet::new();
            let mut changes = Vec::new();
            for op in &entry.ops {
                let key = QuotaKey::parse(op.key.as_str()).ok_or_else(|| {
                    invalid(format!(
                        "quota key '{}' is not supported (producer_byte_rate, consumer_byte_rate, request_percentage)",
                        op.key.as_str()
                    ))
                })?;
                if !seen.insert(key) {
                    return Err(invalid(format!(
                        "quota key '{}' given more than once for {e}",
                        key.name()
                    )));
                }
                if op.remove {
                    changes.push((e.clone(), key, None));
                } else {
                    key.check(op.value).map_err(invalid)?;
                    changes.push((e.clone(), key, Some(op.value)));
                }
            }
            Ok(changes)
        });
        checked.push(parsed);
    }
    let changes: Vec<QuotaChange> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let mut applied: Result<(), Refusal> = Ok(());
    if !req.validate_only && !changes.is_empty() {
        let logged: Vec<String> = changes
            .iter()
            .map(|(e, k, v)| match v {
                Some(v) => format!("{e} {}={v}", k.name()),
                None => format!("{e} {} removed", k.name()),
            })
            .collect();
        let done = ctx
            .blocking(move |engine| {
                engine.alter_client_quotas(&changes)?;
                engine.client_quotas()
            })
            .await
            .and_then(|r| r);
        match done {
            Ok(all) => {
                ctx.quotas.load(&all);
                for line in logged {
                    tracing::info!(change = %super::logging::escape(&line), peer = %auth.peer, principal = %super::logging::escape(&auth.principal), "client quota changed");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot change client quotas");
                applied = Err((
                    ResponseError::UnknownServerError,
                    "the catalog could not be updated".to_string(),
                ));
            }
        }
    }
    let entries = req
        .entries
        .iter()
        .zip(checked)
        .map(|(entry, outcome)| {
            let outcome = outcome.and_then(|_| applied.clone());
            let mut e = AlterEntryData::default().with_entity(
                entry
                    .entity
                    .iter()
                    .map(|p| {
                        AlterEntityData::default()
                            .with_entity_type(p.entity_type.clone())
                            .with_entity_name(p.entity_name.clone())
                    })
                    .collect(),
            );
            if let Err((code, message)) = outcome {
                e = e
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message)));
            }
            e
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// A filter component: an entity type and what its name must be.
enum Match {
    Exact(String),
    Default,
    /// Any name, the default included.
    Any,
}

pub async fn describe_client_quotas(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let refuse = |(code, message): Refusal| {
        DescribeClientQuotasResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if let Err(refusal) = may(ctx, auth, AclOperation::DescribeConfigs) {
        return refuse(refusal);
    }
    let mut filter: BTreeMap<&str, Match> = BTreeMap::new();
    for c in &req.components {
        let kind = c.entity_type.as_str();
        if ![USER, CLIENT_ID, IP].contains(&kind) {
            return refuse(invalid(format!(
                "unknown entity type '{kind}' (user, client-id)"
            )));
        }
        let m = match (c.match_type, c._match.as_ref()) {
            (0, Some(name)) => Match::Exact(name.to_string()),
            (0, None) => {
                return refuse(invalid(format!("an exact match on '{kind}' needs a name")))
            }
            (1, _) => Match::Default,
            (2, _) => Match::Any,
            (other, _) => return refuse(invalid(format!("unknown match type {other}"))),
        };
        if filter.insert(kind, m).is_some() {
            return refuse(invalid(format!(
                "entity type '{kind}' filtered more than once"
            )));
        }
    }
    let all = match ctx.blocking(|engine| engine.client_quotas()).await {
        Ok(Ok(all)) => all,
        Ok(Err(e)) | Err(e) => {
            tracing::error!(error = %e, "cannot read client quotas");
            return refuse((
                ResponseError::UnknownServerError,
                "the catalog could not be read".to_string(),
            ));
        }
    };
    let mut by_entity: BTreeMap<QuotaEntity, Vec<(QuotaKey, f64)>> = BTreeMap::new();
    for q in all {
        by_entity
            .entry(q.entity)
            .or_default()
            .push((q.key, q.value));
    }
    let part_matches = |kind: &str, part: &Option<EntityName>| match (filter.get(kind), part) {
        (None, None) => true,
        (None, Some(_)) => !req.strict,
        (Some(_), None) => false,
        (Some(Match::Any), Some(_)) => true,
        (Some(Match::Default), Some(p)) => *p == EntityName::Default,
        (Some(Match::Exact(n)), Some(p)) => *p == EntityName::Name(n.clone()),
    };
    let entries = by_entity
        .into_iter()
        // No entity has an ip part: an ip filter matches none.
        .filter(|(e, _)| {
            !filter.contains_key(IP)
                && part_matches(USER, &e.user)
                && part_matches(CLIENT_ID, &e.client_id)
        })
        .map(|(e, values)| {
            let mut parts = Vec::new();
            for (kind, part) in [(USER, &e.user), (CLIENT_ID, &e.client_id)] {
                if let Some(p) = part {
                    parts.push(
                        EntityData::default()
                            .with_entity_type(StrBytes::from_static_str(kind))
                            .with_entity_name(p.to_wire().map(|n| StrBytes::from_string(n.into()))),
                    );
                }
            }
            EntryData::default().with_entity(parts).with_values(
                values
                    .into_iter()
                    .map(|(k, v)| {
                        ValueData::default()
                            .with_key(StrBytes::from_static_str(k.name()))
                            .with_value(v)
                    })
                    .collect(),
            )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

impl ErrorCodes for AlterClientQuotasResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.entries.iter().for_each(|e| f(e.error_code));
    }
}

impl ErrorCodes for DescribeClientQuotasResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}
