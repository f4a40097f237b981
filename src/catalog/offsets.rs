//! Committed consumer offsets: the rows the catalog keeps for consumer
//! groups (OffsetCommit). Data types only; the group coordinator decides
//! what is stored.

/// One committed offset of a consumer group (OffsetCommit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    /// The next offset the group will consume; stored as sent, even below
    /// the log start offset (the consumer's `auto.offset.reset` handles
    /// that when its fetch gets OFFSET_OUT_OF_RANGE).
    pub offset: i64,
    /// Leader epoch the client saw, -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: i64,
}
