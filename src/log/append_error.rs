//! Why an append was refused, by meaning.
//!
//! Owns: [`AppendError`], what the append path (`LocalLog::append`, the
//! validation in `writer.rs`, the sequence checks in `producer_state.rs`)
//! returns inside the crate, and its one conversion to the public
//! [`Error`], where each refusal gets its [`ErrorKind`] (the broker maps
//! kinds to Kafka codes in `broker/errors.rs`). Must never be matched on
//! outside `log/`: callers see the public `Error` and branch on its kind.

use crate::error::{Error, ErrorKind};
use crate::format::batch::FormatError;

/// Why an append was refused. `position` is the byte position of the batch
/// in the request's records.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    /// A batch is malformed (truncated, bad magic, bad length or record
    /// count, records that do not decode). Kafka: INVALID_RECORD.
    #[error("invalid record batch at byte {position} of the request: {reason}")]
    InvalidBatch {
        position: usize,
        reason: FormatError,
    },
    /// A batch failed its CRC: possibly damage in transit, so the client
    /// may retry (Kafka's retriable CORRUPT_MESSAGE).
    #[error("corrupt record batch at byte {position} of the request: {reason}")]
    CorruptBatch {
        position: usize,
        reason: FormatError,
    },
    /// A batch is larger than the topic's `max.message.bytes`.
    #[error(
        "record batch of {size} bytes at byte {position} of the request exceeds \
         max.message.bytes ({limit})"
    )]
    BatchTooLarge {
        position: usize,
        size: usize,
        limit: usize,
    },
    /// The request's records hold more bytes than a whole segment may.
    #[error("{size} bytes of records exceed segment.bytes ({segment_bytes}) of {partition}")]
    RecordsExceedSegment {
        size: usize,
        segment_bytes: u64,
        partition: String,
    },
    /// The request carried no batch at all.
    #[error("invalid produce request: no record batch in it")]
    EmptyRequest,
    /// An idempotent producer sent several batches to one partition in one
    /// request (Kafka takes one batch per partition from Produce v3 on).
    #[error(
        "an idempotent producer must send one record batch per partition \
         ({count} sent to {partition})"
    )]
    SeveralIdempotentBatches { count: usize, partition: String },
    /// An idempotent producer's batch carries no base sequence.
    #[error("batch of producer {producer_id} (epoch {epoch}) has no sequence number")]
    MissingSequence { producer_id: i64, epoch: i16 },
    /// An idempotent producer's batch does not follow its last one (an
    /// earlier batch was lost), or a new epoch does not start at 0.
    #[error(
        "out of order sequence from producer {producer_id} (epoch {epoch}): \
         got sequence {got}, expected {expected}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        got: i32,
    },
    /// An idempotent producer's epoch is older than the current one (a
    /// newer instance of the producer fenced it).
    #[error("producer {producer_id} epoch {got} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    /// A CreateTime batch's timestamp is too far behind or ahead of the
    /// broker's clock. Kafka: INVALID_TIMESTAMP.
    #[error(
        "timestamp {timestamp} of the record batch at byte {position} of the request is \
         {distance} ms {direction} the broker's clock, beyond {key} ({limit})"
    )]
    TimestampOutOfBounds {
        position: usize,
        timestamp: i64,
        distance: i64,
        direction: &'static str,
        key: &'static str,
        limit: i64,
    },
    /// The log's files failed (a write, roll or fsync): the public error
    /// as the segment reported it, cause kept, so `Error::is_io` still
    /// takes the partition offline.
    #[error(transparent)]
    Storage(#[from] Error),
}

impl AppendError {
    /// Classify a validation failure of the batch at `position` of a
    /// request's records.
    pub(crate) fn from_validation(reason: FormatError, position: usize) -> Self {
        match reason {
            FormatError::TooLarge { size, limit } => AppendError::BatchTooLarge {
                position,
                size,
                limit,
            },
            FormatError::CrcMismatch { .. } => AppendError::CorruptBatch { position, reason },
            FormatError::Empty => AppendError::EmptyRequest,
            reason => AppendError::InvalidBatch { position, reason },
        }
    }
}

/// The one mapping from an append refusal to the public error: the same
/// kinds (hence Kafka codes) the append path has always answered with.
impl From<AppendError> for Error {
    fn from(e: AppendError) -> Self {
        let kind = match &e {
            AppendError::InvalidBatch { .. }
            | AppendError::EmptyRequest
            | AppendError::SeveralIdempotentBatches { .. }
            | AppendError::MissingSequence { .. } => ErrorKind::Invalid,
            AppendError::CorruptBatch { .. } => ErrorKind::Corrupt,
            AppendError::BatchTooLarge { .. } | AppendError::RecordsExceedSegment { .. } => {
                ErrorKind::TooLarge
            }
            AppendError::OutOfOrderSequence { .. } => ErrorKind::OutOfOrderSequence,
            AppendError::InvalidProducerEpoch { .. } => ErrorKind::InvalidProducerEpoch,
            AppendError::TimestampOutOfBounds { .. } => ErrorKind::InvalidTimestamp,
            AppendError::Storage(inner) => inner.kind(),
        };
        let records = match &e {
            AppendError::InvalidBatch {
                reason: FormatError::MissingKey { records },
                ..
            } => records.clone(),
            _ => Vec::new(),
        };
        match e {
            // Already the public error, with its kind, message and cause.
            AppendError::Storage(inner) => inner,
            refusal => Error::new(kind, refusal.to_string()).with_record_errors(records),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal's kind: the broker turns these into the Kafka codes
    /// clients act on (retry, reset the producer, give up).
    #[test]
    fn each_refusal_maps_to_its_kind() {
        let crc = FormatError::CrcMismatch {
            stored: 1,
            computed: 2,
        };
        let io = Error::io(
            "cannot append to segment",
            std::path::Path::new("/data/t-0/00000000000000000000.log"),
            std::io::Error::other("disk on fire"),
        );
        let cases: Vec<(AppendError, ErrorKind, &str)> = vec![
            (
                AppendError::from_validation(FormatError::InvalidLength(-3), 61),
                ErrorKind::Invalid,
                "invalid record batch at byte 61 of the request: invalid batch length -3",
            ),
            (
                AppendError::from_validation(crc, 0),
                ErrorKind::Corrupt,
                "corrupt record batch at byte 0 of the request: CRC mismatch",
            ),
            (
                AppendError::from_validation(
                    FormatError::TooLarge {
                        size: 5000,
                        limit: 2000,
                    },
                    70,
                ),
                ErrorKind::TooLarge,
                "record batch of 5000 bytes at byte 70 of the request exceeds max.message.bytes (2000)",
            ),
            (
                AppendError::RecordsExceedSegment {
                    size: 9000,
                    segment_bytes: 4096,
                    partition: "t-0".into(),
                },
                ErrorKind::TooLarge,
                "9000 bytes of records exceed segment.bytes (4096) of t-0",
            ),
            (
                AppendError::from_validation(FormatError::Empty, 0),
                ErrorKind::Invalid,
                "no record batch",
            ),
            (
                AppendError::SeveralIdempotentBatches {
                    count: 2,
                    partition: "t-0".into(),
                },
                ErrorKind::Invalid,
                "one record batch per partition (2 sent to t-0)",
            ),
            (
                AppendError::MissingSequence {
                    producer_id: 7,
                    epoch: 0,
                },
                ErrorKind::Invalid,
                "producer 7 (epoch 0) has no sequence number",
            ),
            (
                AppendError::OutOfOrderSequence {
                    producer_id: 7,
                    epoch: 3,
                    expected: 5,
                    got: 7,
                },
                ErrorKind::OutOfOrderSequence,
                "producer 7 (epoch 3): got sequence 7, expected 5",
            ),
            (
                AppendError::InvalidProducerEpoch {
                    producer_id: 7,
                    current: 2,
                    got: 1,
                },
                ErrorKind::InvalidProducerEpoch,
                "producer 7 epoch 1 is older than the current epoch 2",
            ),
            (
                AppendError::Storage(io),
                ErrorKind::Unavailable,
                "cannot append to segment /data/t-0/00000000000000000000.log: disk on fire",
            ),
        ];
        for (append_error, kind, message) in cases {
            let debug = format!("{append_error:?}");
            let e = Error::from(append_error);
            assert_eq!(e.kind(), kind, "{debug}");
            assert!(e.message().contains(message), "{debug}: {e}");
        }
    }

    /// Only a storage failure carries an I/O cause: a refusal never takes
    /// the partition offline.
    #[test]
    fn only_storage_failures_are_io() {
        let io = Error::io(
            "cannot fsync segment",
            std::path::Path::new("/x"),
            std::io::Error::other("EIO"),
        );
        assert!(Error::from(AppendError::Storage(io)).is_io());
        let refusal = AppendError::OutOfOrderSequence {
            producer_id: 1,
            epoch: 0,
            expected: 1,
            got: 3,
        };
        assert!(!Error::from(refusal).is_io());
    }
}
