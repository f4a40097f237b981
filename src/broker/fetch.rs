//! Fetch: stored batch bytes straight from the log, within the response's
//! and each partition's byte limits, long-polling until `min_bytes` arrive
//! or `max_wait_ms` passes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::{errors, Ctx};

/// One partition to read, copied out of the request.
#[derive(Clone)]
struct Wanted {
    topic: TopicName,
    topic_id: uuid::Uuid,
    partition: i32,
    offset: i64,
    max_bytes: i32,
}

pub async fn fetch(ctx: &Arc<Ctx>, req: FetchRequest) -> FetchResponse {
    let wanted: Vec<Wanted> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| Wanted {
                topic: t.topic.clone(),
                topic_id: t.topic_id,
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
            })
        })
        .collect();
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX
    } else {
        req.max_bytes
    } as usize;
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut appends = ctx.engine.subscribe_appends();
    loop {
        // Mark the current appends as seen before reading, so none is missed.
        appends.borrow_and_update();
        let (topics, bytes, errored) = read_once(ctx, wanted.clone(), max_bytes).await;
        if bytes >= min_bytes || errored || Instant::now() >= deadline {
            return FetchResponse::default().with_responses(topics);
        }
        tokio::select! {
            changed = appends.changed() => {
                if changed.is_err() {
                    return FetchResponse::default().with_responses(topics);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Read every wanted partition once: the response topics, the record bytes
/// in them, and whether any partition failed.
async fn read_once(
    ctx: &Arc<Ctx>,
    wanted: Vec<Wanted>,
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    ctx.blocking(move |engine| {
        let mut topics: Vec<FetchableTopicResponse> = Vec::new();
        let mut remaining = max_bytes;
        let mut total = 0usize;
        let mut errored = false;
        for w in wanted {
            let name = w.topic.0.to_string();
            let mut data = PartitionData::default()
                .with_partition_index(w.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica((-1).into())
                .with_aborted_transactions(Some(Vec::new()))
                .with_records(Some(Bytes::new()));
            let limit = (w.max_bytes.max(0) as usize).min(remaining);
            let result = if w.partition < 0 {
                Err(crate::Error::not_found(format!(
                    "partition {}",
                    w.partition
                )))
            } else {
                // KIP-74: only the first data of the whole response may exceed the limits.
                engine.read_bounded(&name, w.partition as u32, w.offset, limit, total == 0)
            };
            match result {
                Ok(read) => {
                    data.high_watermark = read.log_end_offset;
                    data.last_stable_offset = read.log_end_offset;
                    data.log_start_offset = read.log_start_offset;
                    remaining = remaining.saturating_sub(read.records.len());
                    total += read.records.len();
                    data.records = Some(Bytes::from(read.records));
                }
                Err(e) => {
                    errored = true;
                    data.error_code = errors::code(&e);
                    if data.error_code == ResponseError::OffsetOutOfRange.code() {
                        if let Ok(o) = engine.offsets(&name, w.partition as u32) {
                            data.high_watermark = o.log_end_offset;
                            data.last_stable_offset = o.log_end_offset;
                            data.log_start_offset = o.log_start_offset;
                        }
                    }
                }
            }
            match topics.last_mut() {
                Some(t) if t.topic == w.topic && t.topic_id == w.topic_id => {
                    t.partitions.push(data)
                }
                _ => topics.push(
                    FetchableTopicResponse::default()
                        .with_topic(w.topic)
                        .with_topic_id(w.topic_id)
                        .with_partitions(vec![data]),
                ),
            }
        }
        (topics, total, errored)
    })
    .await
    .unwrap_or_default()
}
