//! Group and transaction coordination.
//!
//! Transactions (Kafka's `TransactionCoordinator`): the
//! [`TransactionState`] machine, each transactional id's
//! [`TransactionMetadata`], and the [`TransactionCoordinator`] deciding
//! InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and
//! EndTxn, with its timers (timed-out transactions aborted, idle ids
//! expired). It returns the state to make durable and the markers to
//! write ([`EndPlan`]); `broker/txn_driver.rs` does that I/O.
//!
//! Group coordination, the way Kafka splits it: the classic group state
//! machine ([`ClassicGroupState`]), membership and rebalances
//! ([`GroupMetadataManager`](group_metadata_manager)), committed offsets
//! and their expiry ([`OffsetMetadataManager`](offset_metadata_manager)),
//! and the [`GroupCoordinator`] holding the registry of groups and
//! composing the two (Kafka's `GroupCoordinatorShard`).
//!
//! Owns: every decision about groups — who is a member, which generation
//! is current, when a join or sync phase completes, who may commit, which
//! offsets expire — and the meaning-named [`GroupError`]s. Time comes in as
//! an argument (engine-clock milliseconds): [`GroupCoordinator::tick`]
//! expires sessions, completes rebalance delays and timeouts and says when
//! an offset expiry round is due. A JoinGroup or SyncGroup that must wait
//! is parked on a oneshot channel ([`Pending::Parked`]) and answered when a
//! tick or another member's request completes the phase.
//!
//! What survives a restart is in the catalog, never only here: committed
//! offsets, each group's last completed generation and, once it is Empty,
//! when it emptied (written from the [`GroupRecord`]s this module hands out
//! when a group becomes Stable, Empty or Dead), reloaded by
//! [`GroupCoordinator::load`]. The only things kept in memory alone are
//! transient (parked requests, pending member ids).
//!
//! Must never: do I/O (the catalog, sockets, files) or read a clock; block
//! while holding the registry lock; use Kafka wire types or error codes
//! (the broker decodes into [`messages`] and maps [`GroupError`] to codes
//! in one place).

mod error;
mod group;
mod group_coordinator;
mod group_metadata_manager;
pub mod messages;
mod offset_metadata_manager;
mod state;
mod transaction_coordinator;
mod transaction_metadata;
mod transaction_state;
mod txn_error;

#[cfg(test)]
mod tests;

pub use error::GroupError;
pub use group_coordinator::{GroupCoordinator, GroupRecord};
pub(crate) use offset_metadata_manager::OffsetMetadataManager;
pub use offset_metadata_manager::{FetchedOffset, OffsetCommitPartition};
pub use state::ClassicGroupState;
pub use transaction_coordinator::{
    EndOutcome, EndPlan, InitOutcome, TransactionCoordinator, TransactionSettings,
};
pub use transaction_metadata::TransactionMetadata;
pub use txn_error::TxnError;

/// Coordinator settings (Kafka's `group.*` and `offsets.*` broker configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of
    /// an empty group waits for more members; each member that joins
    /// meanwhile extends the wait by as much again, up to the group's
    /// rebalance timeout.
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.retention.minutes`, in milliseconds: how long committed
    /// offsets of a group without members are kept (KIP-211).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: between expiry rounds.
    pub offsets_retention_check_interval_ms: i64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}
