//! What the group coordinator refuses, by meaning. The broker maps each to
//! a Kafka error code in one place (`broker/errors.rs`).

/// Why a group operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error(
        "session timeout {timeout_ms} ms is outside group.min.session.timeout.ms \
         ({min_ms}) to group.max.session.timeout.ms ({max_ms})"
    )]
    InvalidSessionTimeout {
        timeout_ms: i32,
        min_ms: i32,
        max_ms: i32,
    },
    /// JoinGroup v4+ (KIP-394): the client must join again with this id.
    #[error("join again with member id '{member_id}'")]
    MemberIdRequired { member_id: String },
    #[error("member '{member_id}' is not in the group")]
    UnknownMemberId { member_id: String },
    #[error("generation {generation} is not the group's current generation {current}")]
    IllegalGeneration { generation: i32, current: i32 },
    #[error("the group is rebalancing: join again")]
    RebalanceInProgress,
    /// KIP-345: the static member's instance id is registered under another
    /// member id (a newer instance of the same member took its place).
    #[error("instance id '{instance_id}' now belongs to another member id: this one is fenced")]
    FencedInstanceId { instance_id: String },
    #[error("the member's protocol type or protocols do not match the group's")]
    InconsistentGroupProtocol,
    /// The coordinator is still reloading stored groups.
    #[error("the group coordinator is still loading groups")]
    CoordinatorLoadInProgress,
    /// The group is Dead (being deleted).
    #[error("the group is being deleted")]
    GroupDead,
    /// The catalog could not be read or written.
    #[error("the catalog is unavailable: {reason}")]
    StoreUnavailable { reason: String },
    #[error("the group still has members")]
    NonEmptyGroup,
    #[error("no such group")]
    GroupIdNotFound,
    #[error("the group's members subscribe to topic '{topic}'")]
    GroupSubscribedToTopic { topic: String },
    #[error("no partition {partition} of topic '{topic}'")]
    UnknownTopicOrPartition { topic: String, partition: i32 },
    #[error("committed offset metadata of {size} bytes exceeds offset.metadata.max.bytes ({max})")]
    OffsetMetadataTooLarge { size: usize, max: usize },
}

impl GroupError {
    pub(crate) fn unknown_member(member_id: &str) -> Self {
        GroupError::UnknownMemberId {
            member_id: member_id.to_string(),
        }
    }
}
