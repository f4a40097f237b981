//! Transaction APIs on the wire: InitProducerId with a transactional id,
//! AddPartitionsToTxn (v0–v4, v4 batched), AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn, ListTransactions and DescribeTransactions
//! (KIP-664). Decode, ask the transaction coordinator, let the driver
//! (`txn_driver.rs`) store the state and write markers, encode. Every
//! operation holds the broker's transaction lock for writing.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::errors::{group_code, txn_code};
use super::groups::s;
use super::logging::escape;
use super::txn_driver;
use super::Ctx;
use crate::catalog::PendingTxnOffset;
use crate::coordinator::{EndOutcome, InitOutcome, TxnError};
use crate::security::acl::{AclOperation, ResourceType};

fn code_of(r: &Result<(), TxnError>) -> i16 {
    r.as_ref().err().map_or(0, txn_code)
}

// ---- InitProducerId -----------------------------------------------------------

/// InitProducerId for `transactional_id`: a producer id and a bumped epoch
/// (an open transaction is aborted first, with its markers written).
pub async fn init_producer_id(
    ctx: &Arc<Ctx>,
    req: InitProducerIdRequest,
    transactional_id: String,
) -> InitProducerIdResponse {
    let _serial = ctx.txn_lock.write().await;
    let txns = Arc::clone(&ctx.txns);
    let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let timeout_ms = req.transaction_timeout_ms;
    let id = transactional_id.clone();
    let result = ctx
        .blocking(move |engine| {
            // At most one abort first: the second decision finds it complete.
            for _ in 0..2 {
                let outcome =
                    txns.init_producer_id(&id, timeout_ms, expected, engine.now_ms(), || {
                        engine
                            .allocate_producer_id()
                            .map_err(|e| TxnError::StoreUnavailable {
                                reason: e.to_string(),
                            })
                    })?;
                match outcome {
                    InitOutcome::Ready(m) => {
                        let answer = (m.producer_id, m.producer_epoch);
                        txn_driver::store(engine, &txns, m)?;
                        return Ok(answer);
                    }
                    InitOutcome::AbortFirst(prepared, plan) => {
                        txn_driver::end(engine, &txns, prepared, &plan)?;
                    }
                }
            }
            Err(TxnError::ConcurrentTransactions {
                transactional_id: id,
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(TxnError::StoreUnavailable {
                reason: e.to_string(),
            })
        });
    match result {
        Ok((producer_id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(producer_id.into())
            .with_producer_epoch(epoch),
        Err(e) => {
            tracing::debug!(transactional_id = %escape(&transactional_id), error = %escape(&e.to_string()), "InitProducerId refused");
            InitProducerIdResponse::default()
                .with_error_code(txn_code(&e))
                .with_producer_id((-1).into())
                .with_producer_epoch(-1)
        }
    }
}

// ---- AddPartitionsToTxn -------------------------------------------------------

/// One transaction's AddPartitionsToTxn: per topic, per partition, its code.
async fn add_partitions_one(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    topics: Vec<(String, Vec<i32>)>,
    verify_only: bool,
) -> Vec<(String, Vec<(i32, i16)>)> {
    // Kafka's checks: Write on the transactional id (every partition
    // refused), then Write on each topic (the refused ones
    // TOPIC_AUTHORIZATION_FAILED, the others not attempted).
    let refuse_all = |code: i16| {
        topics
            .iter()
            .map(|(t, ps)| (t.clone(), ps.iter().map(|&p| (p, code)).collect()))
            .collect::<Vec<_>>()
    };
    if !auth.allows(
        AclOperation::Write,
        ResourceType::TransactionalId,
        &transactional_id,
    ) {
        return refuse_all(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if topics
        .iter()
        .any(|(t, _)| !auth.topic(AclOperation::Write, t))
    {
        return topics
            .iter()
            .map(|(t, ps)| {
                let code = if auth.topic(AclOperation::Write, t) {
                    ResponseError::OperationNotAttempted.code()
                } else {
                    ResponseError::TopicAuthorizationFailed.code()
                };
                (t.clone(), ps.iter().map(|&p| (p, code)).collect())
            })
            .collect();
    }
    let txns = Arc::clone(&ctx.txns);
    ctx.blocking(move |engine| {
        // Unknown partitions fail alone; the others are not attempted
        // (Kafka's answer).
        let unknown = |t: &str, p: i32| {
            engine
                .topic(t)
                .map(|i| p < 0 || p as u32 >= i.partitions)
                .unwrap_or(true)
        };
        let any_unknown = topics
            .iter()
            .any(|(t, ps)| ps.iter().any(|&p| unknown(t, p)));
        let outcome: Result<(), TxnError> = if any_unknown {
            Ok(())
        } else if verify_only {
            topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |&p| (t, p)))
                .try_for_each(|(t, p)| {
                    txns.check_produce(&transactional_id, producer_id, epoch, t, p)
                })
        } else {
            let parts: Vec<(String, i32)> = topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)))
                .collect();
            txns.add_partitions(
                &transactional_id,
                producer_id,
                epoch,
                &parts,
                engine.now_ms(),
            )
            .and_then(|next| match next {
                Some(m) => txn_driver::store(engine, &txns, m),
                None => Ok(()),
            })
        };
        topics
            .into_iter()
            .map(|(t, ps)| {
                let codes = ps
                    .into_iter()
                    .map(|p| {
                        let code = if any_unknown {
                            if unknown(&t, p) {
                                ResponseError::UnknownTopicOrPartition.code()
                            } else {
                                ResponseError::OperationNotAttempted.code()
                            }
                        } else {
                            code_of(&outcome)
                        };
                        (p, code)
                    })
                    .collect();
                (t, codes)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

fn topic_results(results: Vec<(String, Vec<(i32, i16)>)>) -> Vec<AddPartitionsToTxnTopicResult> {
    results
        .into_iter()
        .map(|(t, ps)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(s(&t)))
                .with_results_by_partition(
                    ps.into_iter()
                        .map(|(p, code)| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect()
}

fn wanted(
    topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic],
) -> Vec<(String, Vec<i32>)> {
    topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.partitions.clone()))
        .collect()
}

pub async fn add_partitions_to_txn(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let _serial = ctx.txn_lock.write().await;
    if version <= 3 {
        let results = add_partitions_one(
            ctx,
            auth,
            req.v3_and_below_transactional_id.0.to_string(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            wanted(&req.v3_and_below_topics),
            false,
        )
        .await;
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(topic_results(results));
    }
    // v4 (KIP-890, brokers' batched form): one result per transaction.
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in req.transactions {
        let results = add_partitions_one(
            ctx,
            auth,
            t.transactional_id.0.to_string(),
            t.producer_id.0,
            t.producer_epoch,
            wanted(&t.topics),
            t.verify_only,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id)
                .with_topic_results(topic_results(results)),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

// ---- AddOffsetsToTxn ----------------------------------------------------------

pub async fn add_offsets_to_txn(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    // Write on the transactional id, Read on the group (Kafka's checks).
    if !auth.allows(
        AclOperation::Write,
        ResourceType::TransactionalId,
        req.transactional_id.as_str(),
    ) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if !auth.group(AclOperation::Read, req.group_id.as_str()) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let _serial = ctx.txn_lock.write().await;
    let txns = Arc::clone(&ctx.txns);
    let result = ctx
        .blocking(move |engine| {
            let group = req.group_id.0.to_string();
            if group.is_empty() {
                return Err(None);
            }
            txns.add_offsets(
                req.transactional_id.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                &group,
                engine.now_ms(),
            )
            .and_then(|next| match next {
                Some(m) => txn_driver::store(engine, &txns, m),
                None => Ok(()),
            })
            .map_err(Some)
        })
        .await
        .unwrap_or(Err(None));
    let code = match result {
        Ok(()) => 0,
        Err(None) => ResponseError::InvalidGroupId.code(),
        Err(Some(e)) => txn_code(&e),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

// ---- TxnOffsetCommit ----------------------------------------------------------

/// One partition's offset in a TxnOffsetCommit: partition, offset, leader
/// epoch, metadata.
type OffsetEntry = (i32, i64, i32, Option<String>);

pub async fn txn_offset_commit(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    // Kafka's checks: Write on the transactional id and Read on the group
    // (every partition refused), then Read on each topic (those refused
    // alone; the others are committed).
    let refused_all = if !auth.allows(
        AclOperation::Write,
        ResourceType::TransactionalId,
        req.transactional_id.as_str(),
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else if !auth.group(AclOperation::Read, req.group_id.as_str()) {
        Some(ResponseError::GroupAuthorizationFailed.code())
    } else {
        None
    };
    let refused_topic = |t: &str| {
        refused_all.or_else(|| {
            (!auth.topic(AclOperation::Read, t))
                .then_some(ResponseError::TopicAuthorizationFailed.code())
        })
    };
    let refused: Vec<(String, Vec<(i32, i16)>)> = req
        .topics
        .iter()
        .filter_map(|t| {
            let code = refused_topic(t.name.as_str())?;
            Some((
                t.name.0.to_string(),
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, code))
                    .collect(),
            ))
        })
        .collect();
    let _serial = ctx.txn_lock.write().await;
    let group = req.group_id.0.to_string();
    // KIP-447: a consumer's group metadata is checked as for OffsetCommit;
    // without it (generation -1, no member id) the commit stands alone.
    let member_check = if req.generation_id >= 0 || !req.member_id.is_empty() {
        ctx.groups.validate_offset_commit(
            &group,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.generation_id,
            ctx.engine.now_ms(),
        )
    } else {
        Ok(())
    };
    let txns = Arc::clone(&ctx.txns);
    let topics: Vec<(String, Vec<OffsetEntry>)> = req
        .topics
        .iter()
        .filter(|t| refused_topic(t.name.as_str()).is_none())
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions
                    .iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.committed_metadata.as_ref().map(|m| m.to_string()),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let (transactional_id, producer_id, epoch) = (
        req.transactional_id.0.to_string(),
        req.producer_id.0,
        req.producer_epoch,
    );
    let result = ctx
        .blocking(move |engine| {
            let codes: Vec<(String, Vec<(i32, i16)>)> = match &member_check {
                Err(e) => {
                    let code = group_code(e);
                    topics
                        .iter()
                        .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (p.0, code)).collect()))
                        .collect()
                }
                Ok(()) => {
                    let mut pending = Vec::new();
                    let mut codes = Vec::new();
                    for (t, ps) in &topics {
                        let count = engine.topic(t).map(|i| i.partitions).ok();
                        let mut c = Vec::new();
                        for &(p, offset, leader_epoch, ref metadata) in ps {
                            if count.is_some_and(|n| p >= 0 && (p as u32) < n) {
                                pending.push(PendingTxnOffset {
                                    group: group.clone(),
                                    topic: t.clone(),
                                    partition: p,
                                    offset,
                                    leader_epoch,
                                    metadata: metadata.clone(),
                                });
                                c.push((p, 0));
                            } else {
                                c.push((p, ResponseError::UnknownTopicOrPartition.code()));
                            }
                        }
                        codes.push((t.clone(), c));
                    }
                    let stored = txns
                        .txn_offset_commit(
                            &transactional_id,
                            producer_id,
                            epoch,
                            &group,
                            pending,
                            engine.now_ms(),
                        )
                        .and_then(|m| txn_driver::store(engine, &txns, m));
                    if let Err(e) = stored {
                        let code = txn_code(&e);
                        for (_, c) in &mut codes {
                            for (_, pc) in c.iter_mut() {
                                if *pc == 0 {
                                    *pc = code;
                                }
                            }
                        }
                    }
                    codes
                }
            };
            codes
        })
        .await
        .unwrap_or_default();
    TxnOffsetCommitResponse::default().with_topics(
        result
            .into_iter()
            .chain(refused)
            .map(|(t, ps)| {
                txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                    .with_name(TopicName(s(&t)))
                    .with_partitions(
                        ps.into_iter()
                            .map(|(p, code)| {
                                txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

// ---- EndTxn -------------------------------------------------------------------

pub async fn end_txn(ctx: &Arc<Ctx>, auth: &Authz, req: EndTxnRequest) -> EndTxnResponse {
    if !auth.allows(
        AclOperation::Write,
        ResourceType::TransactionalId,
        req.transactional_id.as_str(),
    ) {
        return EndTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch);
    }
    let _serial = ctx.txn_lock.write().await;
    let txns = Arc::clone(&ctx.txns);
    let (id, producer_id, epoch, commit) = (
        req.transactional_id.0.to_string(),
        req.producer_id.0,
        req.producer_epoch,
        req.committed,
    );
    let result = ctx
        .blocking(move |engine| {
            match txns.end_txn(&id, producer_id, epoch, commit, engine.now_ms())? {
                EndOutcome::AlreadyDone => Ok(()),
                EndOutcome::Prepared(prepared) => {
                    let (prepared, plan) = *prepared;
                    txn_driver::end(engine, &txns, prepared, &plan)
                }
            }
        })
        .await
        .unwrap_or_else(|e| {
            Err(TxnError::StoreUnavailable {
                reason: e.to_string(),
            })
        });
    if let Err(e) = &result {
        tracing::debug!(transactional_id = %escape(&req.transactional_id.0), error = %escape(&e.to_string()), "EndTxn refused");
    }
    EndTxnResponse::default()
        .with_error_code(code_of(&result))
        .with_producer_id(req.producer_id)
        .with_producer_epoch(req.producer_epoch)
}

// ---- ListTransactions / DescribeTransactions (KIP-664) ------------------------

/// Only the transactional ids the principal may Describe are listed.
pub fn list_transactions(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let known = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "Dead",
    ];
    let unknown: Vec<_> = req
        .state_filters
        .iter()
        .filter(|f| !known.contains(&f.as_str()))
        .cloned()
        .collect();
    let now = ctx.engine.now_ms();
    let states = ctx
        .txns
        .list()
        .into_iter()
        .filter(|m| {
            auth.allows(
                AclOperation::Describe,
                ResourceType::TransactionalId,
                &m.transactional_id,
            )
        })
        .filter(|m| {
            req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|f| f.as_str() == m.state.name())
        })
        .filter(|m| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
        })
        // v1: transactions open at least this long (-1: any).
        .filter(|m| {
            req.duration_filter < 0
                || (m.txn_start_ms >= 0
                    && now.saturating_sub(m.txn_start_ms) >= req.duration_filter)
        })
        .map(|m| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(s(&m.transactional_id)))
                .with_producer_id(m.producer_id.into())
                .with_transaction_state(s(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}

/// Describe on each transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED
/// otherwise).
pub fn describe_transactions(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let resp = describe_transactions_response::TransactionState::default()
                .with_transactional_id(id.clone())
                .with_transaction_state(s(""))
                .with_transaction_timeout_ms(0)
                .with_transaction_start_time_ms(-1)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1);
            if !auth.allows(
                AclOperation::Describe,
                ResourceType::TransactionalId,
                id.as_str(),
            ) {
                return resp
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            match ctx.txns.describe(id.as_str()) {
                None => resp.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                Some(m) => {
                    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (t, p) in &m.partitions {
                        topics.entry(t.clone()).or_default().push(*p);
                    }
                    resp.with_transaction_state(s(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.txn_start_ms)
                        .with_producer_id(m.producer_id.into())
                        .with_producer_epoch(m.producer_epoch)
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(t, ps)| {
                                    describe_transactions_response::TopicData::default()
                                        .with_topic(TopicName(s(&t)))
                                        .with_partitions(ps)
                                })
                                .collect(),
                        )
                }
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
