//! What a topic's configs ask of an append beyond the batch format: the
//! timestamp bounds (`message.timestamp.before.max.ms`,
//! `message.timestamp.after.max.ms`) and the stored codec
//! (`compression.type`), applied as Kafka's `LogValidator` does.

use crate::config::MESSAGE_TIMESTAMP_BEFORE_MAX_MS;
use crate::config::{CompressionType, TopicConfig, MESSAGE_TIMESTAMP_AFTER_MAX_MS};
use crate::format::batch::{BatchHeader, Batches};
use crate::format::compact::recompress_batch;
use crate::format::compression::Compression;

use super::append_error::AppendError;

/// Refuse a CreateTime batch (at byte `position` of the request) whose
/// timestamps lie further behind or ahead of `now` than the topic allows.
/// Checked on the batch's base and max timestamps (the earliest and latest
/// a producer writes).
pub(super) fn check_timestamp_bounds(
    config: &TopicConfig,
    position: usize,
    h: &BatchHeader,
    now: i64,
) -> Result<(), AppendError> {
    let before = config.message_timestamp_before_max_ms;
    let after = config.message_timestamp_after_max_ms;
    if before < i64::MAX && h.base_timestamp >= 0 && now.saturating_sub(h.base_timestamp) > before {
        return Err(AppendError::TimestampOutOfBounds {
            position,
            timestamp: h.base_timestamp,
            distance: now.saturating_sub(h.base_timestamp),
            direction: "behind",
            key: MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
            limit: before,
        });
    }
    if after < i64::MAX && h.max_timestamp.saturating_sub(now) > after {
        return Err(AppendError::TimestampOutOfBounds {
            position,
            timestamp: h.max_timestamp,
            distance: h.max_timestamp.saturating_sub(now),
            direction: "ahead of",
            key: MESSAGE_TIMESTAMP_AFTER_MAX_MS,
            limit: after,
        });
    }
    Ok(())
}

/// The codec `compression.type` stores batches in; `None` keeps the
/// producer's.
fn stored_codec(config: &TopicConfig) -> Option<Compression> {
    Some(match config.compression_type {
        CompressionType::Producer => return None,
        CompressionType::Uncompressed => Compression::None,
        CompressionType::Gzip => Compression::Gzip,
        CompressionType::Snappy => Compression::Snappy,
        CompressionType::Lz4 => Compression::Lz4,
        CompressionType::Zstd => Compression::Zstd,
    })
}

/// A produce request's batches in the topic's codec, or `None` when they
/// are already in it (or the topic keeps the producer's). A batch that
/// does not validate leaves the request as it came (`None`): the append's
/// own validation then refuses it with the usual error.
pub(super) fn recompressed(config: &TopicConfig, records: &[u8]) -> Option<Vec<u8>> {
    let codec = stored_codec(config)?;
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0usize;
    for item in Batches::new(records) {
        let (at, _, batch) = item.ok()?;
        let header = BatchHeader::validate(batch).ok()?;
        if let Some(converted) = recompress_batch(&header, batch, codec).ok()? {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(records.len()));
            buf.extend_from_slice(&records[copied..at]);
            buf.extend_from_slice(&converted);
            copied = at + batch.len();
        }
    }
    let mut buf = out?;
    buf.extend_from_slice(&records[copied..]);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn header(base: i64, max: i64) -> BatchHeader {
        let mut b = crate::format::records::BatchBuilder::new();
        b.push(crate::format::records::Record::new(None, None, base));
        b.push(crate::format::records::Record::new(None, None, max));
        BatchHeader::validate(&b.build().unwrap()).unwrap()
    }

    fn config(pairs: &[(&str, &str)]) -> TopicConfig {
        let overrides: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TopicConfig::resolve(&overrides, &BTreeMap::new()).unwrap()
    }

    #[test]
    fn timestamps_outside_the_bounds_are_refused_in_both_directions() {
        let now = 1_000_000;
        let open = config(&[]);
        check_timestamp_bounds(&open, 0, &header(0, i64::MAX / 2), now).unwrap();
        let c = config(&[
            (MESSAGE_TIMESTAMP_BEFORE_MAX_MS, "1000"),
            (MESSAGE_TIMESTAMP_AFTER_MAX_MS, "500"),
        ]);
        check_timestamp_bounds(&c, 0, &header(now - 1000, now + 500), now).unwrap();
        let e = check_timestamp_bounds(&c, 7, &header(now - 1001, now), now).unwrap_err();
        assert!(e.to_string().contains("before.max.ms"), "{e}");
        let e = check_timestamp_bounds(&c, 7, &header(now, now + 501), now).unwrap_err();
        assert!(e.to_string().contains("after.max.ms"), "{e}");
        // The deprecated key bounds both where the new ones are not set.
        let d = config(&[("message.timestamp.difference.max.ms", "10")]);
        assert!(check_timestamp_bounds(&d, 0, &header(now - 11, now), now).is_err());
        assert!(check_timestamp_bounds(&d, 0, &header(now, now + 11), now).is_err());
        check_timestamp_bounds(&d, 0, &header(now - 10, now + 10), now).unwrap();
    }
}
