//! Engine errors and group coordinator refusals as Kafka error codes.

use kafka_protocol::ResponseError;

use crate::coordinator::{GroupError, TxnError};
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
        ErrorKind::InvalidTimestamp => ResponseError::InvalidTimestamp.code(),
        // A dependency failing (retriable) vs. stored data that is damaged
        // or gone (a retry cannot help: Kafka answers a remote storage
        // failure with UNKNOWN_SERVER_ERROR).
        ErrorKind::Unavailable => ResponseError::KafkaStorageError.code(),
        ErrorKind::Data => ResponseError::UnknownServerError.code(),
        ErrorKind::PolicyViolation => ResponseError::PolicyViolation.code(),
        ErrorKind::Closed => ResponseError::NotLeaderOrFollower.code(),
        ErrorKind::Internal => ResponseError::UnknownServerError.code(),
    }
}

/// The Kafka error code for a group coordinator refusal: the one place
/// [`GroupError`]s become codes.
pub fn group_code(e: &GroupError) -> i16 {
    let kafka = match e {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::InvalidSessionTimeout { .. } => ResponseError::InvalidSessionTimeout,
        GroupError::MemberIdRequired { .. } => ResponseError::MemberIdRequired,
        GroupError::UnknownMemberId { .. } => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::FencedInstanceId { .. } => ResponseError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        // Kafka answers a Dead group, and a coordinator that cannot reach
        // its log, with COORDINATOR_NOT_AVAILABLE (retriable).
        GroupError::GroupDead | GroupError::StoreUnavailable { .. } => {
            ResponseError::CoordinatorNotAvailable
        }
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::GroupSubscribedToTopic { .. } => ResponseError::GroupSubscribedToTopic,
        GroupError::UnknownTopicOrPartition { .. } => ResponseError::UnknownTopicOrPartition,
        GroupError::OffsetMetadataTooLarge { .. } => ResponseError::OffsetMetadataTooLarge,
    };
    kafka.code()
}

/// The Kafka error code for a transaction coordinator refusal: the one
/// place [`TxnError`]s become codes.
pub fn txn_code(e: &TxnError) -> i16 {
    let kafka = match e {
        TxnError::InvalidTransactionTimeout { .. } => ResponseError::InvalidTransactionTimeout,
        TxnError::ProducerFenced { .. } => ResponseError::ProducerFenced,
        TxnError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        TxnError::InvalidProducerIdMapping { .. } => ResponseError::InvalidProducerIdMapping,
        TxnError::ConcurrentTransactions { .. } => ResponseError::ConcurrentTransactions,
        TxnError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        TxnError::InvalidTransactionalId => ResponseError::InvalidRequest,
        // Retriable: the client asks again (Kafka: its log is unavailable).
        TxnError::StoreUnavailable { .. } => ResponseError::CoordinatorNotAvailable,
    };
    kafka.code()
}

/// [`group_code`] of a result: 0 for `Ok`.
pub fn group_result_code(r: &Result<(), GroupError>) -> i16 {
    r.as_ref().err().map_or(0, group_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every transaction error's code, as Kafka numbers them.
    #[test]
    fn txn_errors_map_to_kafka_codes() {
        let id = || "t".to_string();
        let cases: Vec<(TxnError, i16)> = vec![
            (
                TxnError::InvalidTransactionTimeout {
                    timeout_ms: 1,
                    max_ms: 0,
                },
                50,
            ),
            (
                TxnError::ProducerFenced {
                    producer_id: 1,
                    current: 2,
                    got: 1,
                },
                90,
            ),
            (
                TxnError::InvalidProducerEpoch {
                    producer_id: 1,
                    current: 2,
                    got: 1,
                },
                47,
            ),
            (
                TxnError::InvalidProducerIdMapping {
                    transactional_id: id(),
                    producer_id: 1,
                },
                49,
            ),
            (
                TxnError::ConcurrentTransactions {
                    transactional_id: id(),
                },
                51,
            ),
            (
                TxnError::InvalidTxnState {
                    transactional_id: id(),
                    state: "Empty",
                    operation: "x",
                },
                48,
            ),
            (TxnError::StoreUnavailable { reason: id() }, 15),
        ];
        for (e, code) in cases {
            assert_eq!(txn_code(&e), code, "{e}");
        }
    }

    /// Every group error's code, as Kafka numbers them (the clients act on
    /// these numbers).
    #[test]
    fn group_errors_map_to_kafka_codes() {
        let s = String::new;
        let cases: Vec<(GroupError, i16)> = vec![
            (GroupError::InvalidGroupId, 24),
            (
                GroupError::InvalidSessionTimeout {
                    timeout_ms: 1,
                    min_ms: 2,
                    max_ms: 3,
                },
                26,
            ),
            (GroupError::MemberIdRequired { member_id: s() }, 79),
            (GroupError::UnknownMemberId { member_id: s() }, 25),
            (
                GroupError::IllegalGeneration {
                    generation: 1,
                    current: 2,
                },
                22,
            ),
            (GroupError::RebalanceInProgress, 27),
            (GroupError::FencedInstanceId { instance_id: s() }, 82),
            (GroupError::InconsistentGroupProtocol, 23),
            (GroupError::CoordinatorLoadInProgress, 14),
            (GroupError::GroupDead, 15),
            (GroupError::StoreUnavailable { reason: s() }, 15),
            (GroupError::NonEmptyGroup, 68),
            (GroupError::GroupIdNotFound, 69),
            (GroupError::GroupSubscribedToTopic { topic: s() }, 86),
            (
                GroupError::UnknownTopicOrPartition {
                    topic: s(),
                    partition: 0,
                },
                3,
            ),
            (GroupError::OffsetMetadataTooLarge { size: 1, max: 0 }, 12),
        ];
        for (e, code) in &cases {
            assert_eq!(group_code(e), *code, "{e:?}");
        }
        assert_eq!(group_result_code(&Ok(())), 0);
        assert_eq!(group_result_code(&Err(GroupError::RebalanceInProgress)), 27);
    }
}
