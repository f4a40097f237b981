//! The append path and the flush policy.
//!
//! An append validates every batch (sans-io, `format/`), assigns offsets by
//! patching baseOffset in place, rolls the active segment when
//! `segment.bytes`, `segment.ms` or offset/position limits say so, and
//! writes the whole request with one positioned `write(2)`. The page cache
//! does the buffering. fsync happens on roll, on clean shutdown, and when the
//! topic's `flush.messages` / `flush.ms` policy says so.

use crate::config::{MessageTimestampType, TopicConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::format::batch::{self, BatchHeader, FormatError};

use super::local_log::{AppendInfo, LocalLog};
use super::producer_state::ProducerCheck;

/// What the flush policy has to know between appends.
#[derive(Debug, Clone, Copy)]
pub struct FlushState {
    /// Records appended since the last fsync.
    pub unflushed_messages: i64,
    /// When the last fsync happened.
    pub last_flush_ms: i64,
}

impl FlushState {
    pub fn new(now_ms: i64) -> Self {
        FlushState {
            unflushed_messages: 0,
            last_flush_ms: now_ms,
        }
    }

    /// Whether `flush.messages` or `flush.ms` call for an fsync now.
    pub fn due(&self, config: &TopicConfig, now_ms: i64) -> bool {
        self.unflushed_messages > 0
            && (self.unflushed_messages >= config.flush_messages
                || now_ms.saturating_sub(self.last_flush_ms) >= config.flush_ms)
    }
}

/// Map a validation failure of client bytes to the public error.
fn invalid_batch(e: FormatError, position: usize) -> Error {
    match e {
        FormatError::TooLarge { size, limit } => Error::new(
            ErrorKind::TooLarge,
            format!("record batch of {size} bytes exceeds max.message.bytes ({limit})"),
        ),
        // A checksum failure may be damage in transit (Kafka's retriable
        // CORRUPT_MESSAGE); anything else is an invalid batch.
        crc @ FormatError::CrcMismatch { .. } => Error::new(
            ErrorKind::Corrupt,
            format!("corrupt record batch at byte {position} of the request: {crc}"),
        ),
        other => Error::new(
            ErrorKind::Invalid,
            format!("invalid record batch at byte {position} of the request: {other}"),
        ),
    }
}

impl LocalLog {
    /// Validate and append one or more concatenated record batches (a
    /// produce request's records). Offsets are assigned in place, so on
    /// return `records` holds exactly the bytes stored. Returns the offsets
    /// assigned; nothing is appended when any batch is invalid.
    pub fn append(&mut self, records: &mut [u8]) -> Result<AppendInfo> {
        let max = self.config().max_message_bytes;
        let mut headers: Vec<(usize, BatchHeader)> = Vec::with_capacity(1);
        let mut pos = 0usize;
        let mut record_count = 0i64;
        while pos < records.len() {
            let h = crate::format::validator::validate_for_append(&records[pos..], max)
                .map_err(|e| invalid_batch(e, pos))?;
            record_count += i64::from(h.record_count);
            headers.push((pos, h));
            pos += h.size();
        }
        if headers.is_empty() {
            return Err(invalid_batch(FormatError::Empty, 0));
        }
        if records.len() as u64 > self.config().segment_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} bytes of records exceed segment.bytes ({}) of {}",
                    records.len(),
                    self.config().segment_bytes,
                    self.name()
                ),
            ));
        }
        // Sequence checks are per batch: a request mixing a duplicate with
        // new batches has no right answer (Kafka takes one batch per
        // partition from Produce v3 on).
        if headers.len() > 1 && headers.iter().any(|(_, h)| h.producer_id >= 0) {
            return Err(Error::invalid(format!(
                "an idempotent producer must send one record batch per partition ({} sent to {})",
                headers.len(),
                self.name()
            )));
        }
        // Idempotent producers: a retried batch is acknowledged with its
        // original offsets, a gap or a fenced epoch is refused.
        if let ProducerCheck::Duplicate(b) = self.producers.check(headers.iter().map(|(_, h)| h))? {
            tracing::debug!(log = %self.name(), first_offset = b.first_offset, "duplicate batch from an idempotent producer");
            return Ok(AppendInfo {
                base_offset: b.first_offset,
                last_offset: b.last_offset,
                record_count: b.last_offset - b.first_offset + 1,
                log_append_time: None,
                max_timestamp: b.max_timestamp,
                duplicate: true,
            });
        }
        let offset_span: i64 = headers
            .iter()
            .map(|(_, h)| i64::from(h.last_offset_delta) + 1)
            .sum();
        let now = self.clock().now_ms();
        let incoming_max_ts = match self.config().message_timestamp_type {
            MessageTimestampType::LogAppendTime => now,
            MessageTimestampType::CreateTime => headers
                .iter()
                .map(|(_, h)| h.max_timestamp)
                .max()
                .unwrap_or(-1),
        };
        self.maybe_roll(records.len() as u64, offset_span, incoming_max_ts, now)?;

        let base_offset = self.log_end_offset();
        let log_append_time = (self.config().message_timestamp_type
            == MessageTimestampType::LogAppendTime)
            .then_some(now);
        let mut next = base_offset;
        let mut max_timestamp = -1i64;
        for (at, h) in headers.iter_mut() {
            let bytes = &mut records[*at..*at + h.size()];
            batch::set_base_offset(bytes, next);
            h.base_offset = next;
            if let Some(t) = log_append_time {
                batch::set_log_append_time(bytes, t);
                h.max_timestamp = t;
            }
            max_timestamp = max_timestamp.max(h.max_timestamp);
            next = h.next_offset();
        }
        self.active_mut().append(records, &headers)?;
        for (_, h) in &headers {
            self.producers.update(h, now);
        }
        self.flush_state.unflushed_messages += record_count;
        if self.flush_state.due(self.config(), now) {
            self.flush()?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            record_count,
            log_append_time,
            max_timestamp,
            duplicate: false,
        })
    }

    /// Roll first if appending `bytes` bytes spanning `offsets` offsets with
    /// max timestamp `incoming_ts` to the active segment would break a
    /// limit: `segment.bytes`; `segment.ms` (as in Kafka, measured from the
    /// first batch's timestamp to the incoming one, so both come from the
    /// same clock; from the segment's creation by the broker clock when it
    /// has no timestamp); relative offsets beyond i32; positions beyond
    /// 2 GiB. An empty active segment never rolls.
    fn maybe_roll(
        &mut self,
        bytes: u64,
        offsets: i64,
        incoming_ts: i64,
        now_ms: i64,
    ) -> Result<()> {
        let config = self.config();
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let full = active.size() + bytes > config.segment_bytes;
        let waited = match active.first_batch_timestamp() {
            Some(first) if first >= 0 => incoming_ts.saturating_sub(first),
            _ => now_ms.saturating_sub(active.created_ms()),
        };
        let old = waited > config.segment_ms;
        let offsets_overflow =
            active.next_offset() + offsets - active.base_offset() > i64::from(i32::MAX);
        let positions_overflow = active.size() + bytes > i32::MAX as u64;
        if full || old || offsets_overflow || positions_overflow {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// fsync the active segment if `flush.ms` says it is due; for the
    /// background flush task.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool> {
        if self.flush_state.due(self.config(), now_ms) {
            self.flush()?;
            return Ok(true);
        }
        Ok(false)
    }
}
