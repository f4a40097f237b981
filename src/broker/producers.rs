//! InitProducerId: producer ids for idempotent producers.
//!
//! Ids come from a counter in the catalog, so they never repeat, even
//! after a restart; every call gets a new id with epoch 0 (Kafka does the
//! same for producers without a transactional id, KIP-360 retries
//! included). A call with a transactional id goes to the transaction
//! coordinator (`transactions.rs`).

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::Ctx;
use crate::security::acl::{AclOperation, ResourceType};

/// An idempotent producer needs IdempotentWrite on the cluster or Write on
/// some topic (Kafka 3.x, KIP-679), else CLUSTER_AUTHORIZATION_FAILED.
pub async fn init_producer_id(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1)
    };
    if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
        let id = id.0.to_string();
        // Write on the transactional id (Kafka's check).
        if !auth.allows(AclOperation::Write, ResourceType::TransactionalId, &id) {
            return failed(ResponseError::TransactionalIdAuthorizationFailed);
        }
        return super::transactions::init_producer_id(ctx, req, id).await;
    }
    if !auth.cluster(AclOperation::IdempotentWrite)
        && !auth.any(AclOperation::Write, ResourceType::Topic)
    {
        return failed(ResponseError::ClusterAuthorizationFailed);
    }
    match ctx
        .blocking(|engine| engine.allocate_producer_id())
        .await
        .and_then(|r| r)
    {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(id.into())
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            failed(ResponseError::CoordinatorNotAvailable)
        }
    }
}
