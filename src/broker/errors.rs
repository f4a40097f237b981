//! Engine errors as Kafka error codes.

use kafka_protocol::ResponseError;

use crate::error::{Error, ErrorKind};

/// The Kafka error code for an engine error.
pub fn code(e: &Error) -> i16 {
    match e.kind() {
        ErrorKind::Invalid => ResponseError::InvalidRecord.code(),
        ErrorKind::Corrupt => ResponseError::CorruptMessage.code(),
        ErrorKind::NotFound => ResponseError::UnknownTopicOrPartition.code(),
        ErrorKind::AlreadyExists => ResponseError::TopicAlreadyExists.code(),
        ErrorKind::OutOfRange => ResponseError::OffsetOutOfRange.code(),
        ErrorKind::TooLarge => ResponseError::MessageTooLarge.code(),
        ErrorKind::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber.code(),
        ErrorKind::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch.code(),
        // A dependency failing (retriable) vs. stored data that is damaged
        // or gone (a retry cannot help: Kafka answers a remote storage
        // failure with UNKNOWN_SERVER_ERROR).
        ErrorKind::Unavailable => ResponseError::KafkaStorageError.code(),
        ErrorKind::Data => ResponseError::UnknownServerError.code(),
        ErrorKind::Closed => ResponseError::NotLeaderOrFollower.code(),
        ErrorKind::Internal => ResponseError::UnknownServerError.code(),
    }
}
