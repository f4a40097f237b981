//! Why bytes are not a valid batch: the lowest layer of `format/`, which
//! every other format module uses and which uses none of them.

use thiserror::Error;

/// Why bytes are not a valid batch. `Display` says what is wrong; callers add
/// where (file, offset).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("truncated batch: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// Magic byte is not 2.
    #[error("unsupported record format magic {0} (only v2 record batches are supported)")]
    UnsupportedMagic(i8),
    /// `batchLength` is impossible.
    #[error("invalid batch length {0}")]
    InvalidLength(i32),
    /// Stored CRC does not match the content.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// recordCount and lastOffsetDelta disagree, or are negative.
    #[error("invalid record count {count} with last offset delta {last_offset_delta}")]
    InvalidRecordCount { count: i32, last_offset_delta: i32 },
    /// The records section does not hold `recordCount` well-formed records.
    #[error("malformed records: {0}")]
    MalformedRecords(&'static str),
    /// A compressed records section expands past the allowed size.
    #[error("records decompress to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    /// Unknown compression codec id.
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
    /// Batch is larger than the allowed maximum.
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// A client sent a control batch (transaction markers are the
    /// broker's to write; Kafka refuses them from clients too).
    #[error("control batches are written by the broker, not by clients")]
    ControlBatchFromClient,
    /// A transactional batch carries no producer id.
    #[error("transactional batch without a producer id")]
    TransactionalWithoutProducerId,
    /// Records without a key, sent to a compacted topic (indexes within
    /// the batch, at most [`MAX_RECORD_ERRORS`]).
    #[error("a compacted topic cannot accept a record without a key ({} such record(s) in the batch, the first at index {})", .records.len(), .records.first().copied().unwrap_or(0))]
    MissingKey { records: Vec<i32> },
    /// A produce request carried no batch at all.
    #[error("no record batch in request")]
    Empty,
}

/// Most records one refusal names (Produce's `record_errors`).
pub const MAX_RECORD_ERRORS: usize = 1000;

/// The one mapping from a format error to the public error: a batch over
/// a size limit is `TooLarge`, anything else `Invalid`.
impl From<FormatError> for crate::error::Error {
    fn from(e: FormatError) -> Self {
        use crate::error::{Error, ErrorKind};
        match e {
            FormatError::TooLarge { .. } => Error::new(ErrorKind::TooLarge, e.to_string()),
            _ => Error::new(ErrorKind::Invalid, format!("invalid record batch: {e}")),
        }
    }
}
