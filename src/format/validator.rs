//! Validation of client batches before they are appended (Kafka's
//! `LogValidator`): the top layer of `format/`, over the batch header and
//! the records.

use super::batch::BatchHeader;
use super::error::FormatError;

/// Validate a batch produced by a client before it is appended: full
/// validation of [`BatchHeader::validate`], plus what Kafka's log validator
/// requires of new data: at least one record, `recordCount` equal to
/// `lastOffsetDelta + 1`, the batch within `max_batch_bytes`, and a records
/// section (decompressed when compressed) holding exactly `recordCount`
/// well-formed records with consecutive offset deltas. Control batches
/// (only the broker writes transaction markers) and transactional batches
/// without a producer id are refused, as Kafka refuses them.
pub fn validate_for_append(buf: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, FormatError> {
    validate_for_append_keyed(buf, max_batch_bytes, false)
}

/// [`validate_for_append`], and with `require_keys` (a compacted topic)
/// every record must have a key: a batch with keyless records is refused
/// naming them ([`FormatError::MissingKey`]), as Kafka refuses it.
pub fn validate_for_append_keyed(
    buf: &[u8],
    max_batch_bytes: usize,
    require_keys: bool,
) -> Result<BatchHeader, FormatError> {
    let header = BatchHeader::parse(buf)?;
    if header.size() > max_batch_bytes {
        return Err(FormatError::TooLarge {
            size: header.size(),
            limit: max_batch_bytes,
        });
    }
    let header = BatchHeader::validate(buf)?;
    if header.is_control() {
        return Err(FormatError::ControlBatchFromClient);
    }
    if header.is_transactional() && header.producer_id < 0 {
        return Err(FormatError::TransactionalWithoutProducerId);
    }
    if header.record_count < 1
        || i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1
    {
        return Err(FormatError::InvalidRecordCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    // Every record is walked, compressed batches decompressed first, as
    // Kafka's log validator does: what is stored must decode.
    let section = super::records::records_section(&header, buf)?;
    let mut keyless = Vec::new();
    let mut index = 0i32;
    super::records::walk_records(&section, header.record_count, true, |r| {
        if require_keys && r.key.is_none() && keyless.len() < super::error::MAX_RECORD_ERRORS {
            keyless.push(index);
        }
        index += 1;
    })?;
    if !keyless.is_empty() {
        return Err(FormatError::MissingKey { records: keyless });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::records::{BatchBuilder, Record};

    #[test]
    fn a_compacted_topic_refuses_keyless_records_naming_them() {
        let mut b = BatchBuilder::new();
        b.push(Record::new(Some(b"k".to_vec()), Some(b"v".to_vec()), 1));
        b.push(Record::new(None, Some(b"v".to_vec()), 1));
        b.push(Record::new(None, None, 1));
        let buf = b.build().unwrap();
        assert!(validate_for_append_keyed(&buf, 1 << 20, false).is_ok());
        assert_eq!(
            validate_for_append_keyed(&buf, 1 << 20, true),
            Err(FormatError::MissingKey {
                records: vec![1, 2]
            })
        );
    }
}
