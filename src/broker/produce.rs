//! Produce: validate and append each partition's batches, per-partition
//! errors. acks 0, 1 and -1 all append before answering (one replica:
//! "all" is this broker); other acks get INVALID_REQUIRED_ACKS. acks=0
//! gets no response at all, and when it failed the connection is closed
//! (Kafka's way of making the client refresh its metadata).
//! Transactional batches are checked against the transaction coordinator:
//! without a transactional id TRANSACTIONAL_ID_AUTHORIZATION_FAILED, to a
//! partition not added to the open transaction INVALID_TXN_STATE, from a
//! fenced epoch INVALID_PRODUCER_EPOCH.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::logging::escape;
use super::{codec, errors, ConnError, Ctx};
use crate::security::acl::{AclOperation, ResourceType};

/// Record bytes a Produce may carry and still be appended on the async
/// worker itself (when its partitions append quickly): a positioned write
/// of this much into the page cache takes tens of microseconds, less than
/// the thread hand-off it saves. Larger requests (throughput, not
/// latency) go through `block_in_place`: the kernel's dirty-page
/// throttling pauses a writer in proportion to the pages it dirties, and
/// such a pause must not hold a worker's other connections.
const QUICK_APPEND_BYTES: usize = 128 * 1024;

/// A Produce request's record bytes, writable, in the frame the socket
/// read them into: offsets are patched there and the log writes them from
/// there (the socket read is the only copy before the page cache).
pub struct RequestRecords {
    /// The request body as read from the socket.
    body: BytesMut,
    /// Each partition's records in `body`, in request order (`None`: the
    /// partition had no records field).
    slots: Vec<Option<Range<usize>>>,
}

/// Decode a Produce request body, taking its record bytes out of the
/// decoded request: the request keeps no reference into `body` (its
/// strings are copied, unknown tagged fields dropped), so the body, read
/// from the socket into a buffer nobody else holds, becomes writable
/// without a copy. Were it shared after all, it is copied once (a debug
/// line says so).
pub fn decode(body: Bytes, version: i16) -> Result<(ProduceRequest, RequestRecords), ConnError> {
    let mut cursor = body.clone();
    let mut req: ProduceRequest = codec::decode(&mut cursor, version)?;
    drop(cursor);
    let base = body.as_ptr() as usize;
    let mut slots = Vec::new();
    // Records that are not a slice of `body` (never expected: the decoder
    // slices its input), appended after it in a copy.
    let mut elsewhere: Vec<Bytes> = Vec::new();
    for t in &mut req.topic_data {
        t.name = TopicName(StrBytes::from_string(t.name.0.to_string()));
        t.unknown_tagged_fields.clear();
        for p in &mut t.partition_data {
            p.unknown_tagged_fields.clear();
            let slot = p.records.take().map(|r| {
                let start = (r.as_ptr() as usize).wrapping_sub(base);
                if r.is_empty() {
                    0..0
                } else if start <= body.len() && r.len() <= body.len() - start {
                    start..start + r.len()
                } else {
                    let at = body.len() + elsewhere.iter().map(Bytes::len).sum::<usize>();
                    elsewhere.push(r.clone());
                    at..at + r.len()
                }
            });
            slots.push(slot);
        }
    }
    req.transactional_id = req
        .transactional_id
        .map(|t| TransactionalId(StrBytes::from_string(t.0.to_string())));
    req.unknown_tagged_fields.clear();
    let mut body = if elsewhere.is_empty() {
        body.try_into_mut().unwrap_or_else(|shared| {
            tracing::debug!(
                bytes = shared.len(),
                "produce request body is shared: copied"
            );
            BytesMut::from(&shared[..])
        })
    } else {
        BytesMut::from(&body[..])
    };
    for r in elsewhere {
        body.extend_from_slice(&r);
    }
    Ok((req, RequestRecords { body, slots }))
}

/// Produce needs Write on each topic (Kafka 3.x: idempotent producers need
/// nothing more, KIP-679); a topic without it gets
/// TOPIC_AUTHORIZATION_FAILED for each partition, the others are appended.
/// `records` are the request's record bytes ([`decode`]).
pub async fn produce(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: ProduceRequest,
    records: RequestRecords,
) -> ProduceResponse {
    if !matches!(req.acks, -1..=1) {
        // Kafka's answer: nothing is appended.
        return refuse_all(
            req,
            ResponseError::InvalidRequiredAcks,
            "acks must be -1 (all), 0 or 1",
        );
    }
    // A transactional produce holds the transaction lock for reading, so
    // no batch of a transaction lands after the marker that ended it.
    let transactional_id = req
        .transactional_id
        .as_ref()
        .filter(|t| !t.0.is_empty())
        .map(|t| t.0.to_string());
    let _txn_guard = match transactional_id {
        Some(_) => Some(ctx.txn_lock.read().await),
        None => None,
    };
    let txns = Arc::clone(&ctx.txns);
    let topics = req.topic_data;
    let acks = req.acks;
    let auth = auth.clone();
    // Small requests to partitions that append quickly now run on this
    // worker, without a thread hand-off.
    let quick = records.body.len() <= QUICK_APPEND_BYTES
        && topics.iter().all(|t| {
            t.partition_data.iter().all(|p| {
                u32::try_from(p.index).is_ok_and(|i| ctx.engine.appends_quickly(&t.name, i))
            })
        });
    let result = ctx
        .blocking_in_place(quick, move |engine| {
            let RequestRecords { mut body, slots } = records;
            let mut slots = slots.into_iter();
            topics
                .into_iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let allowed = auth.topic(AclOperation::Write, &name);
                    // A transactional produce also needs Write on its
                    // transactional id (every partition refused otherwise).
                    let txn_allowed = transactional_id.as_ref().is_none_or(|id| {
                        auth.allows(AclOperation::Write, ResourceType::TransactionalId, id)
                    });

                    let partitions = t
                        .partition_data
                        .into_iter()
                        .map(|p| {
                            // Taken first: one slot per partition, in order.
                            let slot = slots.next().flatten();
                            let mut resp = PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1);
                            if !txn_allowed {
                                return resp.with_error_code(
                                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                                );
                            }
                            if !allowed {
                                return resp.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                            }
                            if p.index < 0 {
                                return resp.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                            }
                            // `decode` made the ranges from `body`'s own length.
                            let Some(records) = slot.and_then(|r| body.get_mut(r)) else {
                                return resp.with_error_code(ResponseError::InvalidRequest.code());
                            };
                            // One broker is one in-sync replica: acks=all
                            // cannot meet a min.insync.replicas above 1
                            // (Kafka refuses such a produce before appending).
                            let min_insync = if acks == -1 {
                                engine
                                    .with_log(&name, p.index as u32, |log| Ok(log.config().min_insync_replicas))
                                    .unwrap_or(1)
                            } else {
                                1
                            };
                            if min_insync > 1 {
                                return resp
                                    .with_error_code(ResponseError::NotEnoughReplicas.code())
                                    .with_error_message(Some(StrBytes::from_string(format!(
                                        "min.insync.replicas is {min_insync} and tierlog is one broker: acks=all cannot be met"
                                    ))));
                            }
                            // Transactional batches: only from a transactional
                            // producer, and only to a partition added to its
                            // open transaction (KIP-890's verification).
                            if let Ok(h) = crate::format::BatchHeader::parse(records) {
                                // (Without a producer id the validator refuses it:
                                // INVALID_RECORD.)
                                if h.is_transactional() && !h.is_control() && h.producer_id >= 0 {
                                    let checked = match &transactional_id {
                                        None => Err((
                                            ResponseError::TransactionalIdAuthorizationFailed.code(),
                                            "transactional batches need a transactional id".to_string(),
                                        )),
                                        Some(id) => txns
                                            .check_produce(id, h.producer_id, h.producer_epoch, &name, p.index)
                                            .map_err(|e| (errors::txn_code(&e), e.to_string())),
                                    };
                                    if let Err((code, message)) = checked {
                                        return resp
                                            .with_error_code(code)
                                            .with_error_message(Some(StrBytes::from_string(message)));
                                    }
                                }
                            }
                            // Offsets are assigned in place, in the request's buffer.
                            match engine.append(&name, p.index as u32, records) {
                                Ok(info) => {
                                    resp.base_offset = info.base_offset;
                                    resp.log_append_time_ms = info.log_append_time.unwrap_or(-1);
                                    if let Ok(o) = engine.offsets(&name, p.index as u32) {
                                        resp.log_start_offset = o.log_start_offset;
                                    }
                                    resp
                                }
                                Err(e) => {
                                    tracing::debug!(topic = %escape(&name), partition = p.index, error = %escape(&e.to_string()), "produce rejected");
                                    resp.error_code = errors::code(&e);
                                    resp.error_message = Some(StrBytes::from_string(e.to_string()));
                                    resp.record_errors = e
                                        .record_errors()
                                        .iter()
                                        .map(|&i| BatchIndexAndErrorMessage::default().with_batch_index(i))
                                        .collect();
                                    resp
                                }
                            }
                        })
                        .collect();
                    TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_partition_responses(partitions)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    ProduceResponse::default().with_responses(result)
}

/// The same error for every partition of the request; nothing appended.
fn refuse_all(req: ProduceRequest, error: ResponseError, message: &'static str) -> ProduceResponse {
    ProduceResponse::default().with_responses(
        req.topic_data
            .into_iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name)
                    .with_topic_id(t.topic_id)
                    .with_partition_responses(
                        t.partition_data
                            .into_iter()
                            .map(|p| {
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_base_offset(-1)
                                    .with_log_append_time_ms(-1)
                                    .with_log_start_offset(-1)
                                    .with_error_code(error.code())
                                    .with_error_message(Some(StrBytes::from_static_str(message)))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The first partition error of a produce response, if any.
pub fn first_error(resp: &ProduceResponse) -> Option<i16> {
    resp.responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .map(|p| p.error_code)
        .find(|&c| c != 0)
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName, TransactionalId};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// Every Produce version served: the decoded request keeps its
    /// fields, each partition's records are found in the body, and the
    /// body is made writable in place (no copy: same memory) while the
    /// request header decoded from the same frame is still held.
    #[test]
    fn records_are_taken_in_place_from_the_request_body() {
        let (min, max) = crate::broker::SUPPORTED_APIS
            .iter()
            .find(|(k, _, _)| *k == kafka_protocol::messages::ApiKey::Produce)
            .map(|&(_, min, max)| (min, max))
            .unwrap();
        for version in min..=max {
            let records: Vec<Vec<u8>> = vec![vec![1; 70], vec![2; 80], Vec::new()];
            let partition = |i: usize| {
                PartitionProduceData::default()
                    .with_index(i as i32)
                    .with_records(Some(bytes::Bytes::from(records[i].clone())))
            };
            let req = ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("a")))
                        .with_partition_data(vec![partition(0), partition(1)]),
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("b")))
                        .with_partition_data(vec![
                            partition(2),
                            PartitionProduceData::default()
                                .with_index(3)
                                .with_records(None),
                        ]),
                ]);
            let mut body = bytes::BytesMut::new();
            req.encode(&mut body, version).unwrap();
            // As the connection reads it: the request header and the body
            // in one frozen buffer, unshared; the header is decoded first
            // and lives on while the body is handled, as in `handle`.
            let api = kafka_protocol::messages::ApiKey::Produce;
            let header_version = api.request_header_version(version);
            let mut framed = bytes::BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(api as i16)
                .with_request_api_version(version)
                .with_correlation_id(1)
                .with_client_id(Some(StrBytes::from_static_str("rdkafka")))
                .encode(&mut framed, header_version)
                .unwrap();
            framed.put_slice(&body);
            let mut frame = framed.freeze();
            let header = crate::broker::codec::decode_header(&mut frame, api, version).unwrap();
            let at = frame.as_ptr() as usize;
            let (decoded, taken) = super::decode(std::mem::take(&mut frame), version).unwrap();
            assert_eq!(header.client_id.as_deref(), Some("rdkafka"));
            assert_eq!(decoded.acks, -1);
            assert_eq!(
                decoded.transactional_id.as_ref().map(|t| t.0.as_str()),
                Some("tx")
            );
            assert_eq!(decoded.topic_data[1].name.0.as_str(), "b");
            assert!(decoded
                .topic_data
                .iter()
                .flat_map(|t| &t.partition_data)
                .all(|p| p.records.is_none()));
            assert_eq!(taken.body.as_ptr() as usize, at, "v{version}: copied");
            let slots: Vec<Option<&[u8]>> = taken
                .slots
                .iter()
                .map(|s| s.clone().map(|r| &taken.body[r]))
                .collect();
            assert_eq!(
                slots,
                vec![
                    Some(&records[0][..]),
                    Some(&records[1][..]),
                    Some(&[][..]),
                    None
                ],
                "v{version}"
            );
        }
    }
}
