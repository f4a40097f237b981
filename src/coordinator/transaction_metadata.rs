//! One transactional id's state (Kafka's `TransactionMetadata`).

use std::collections::BTreeSet;

use crate::catalog::{PendingTxnOffset, StoredTransaction};

use super::transaction_state::TransactionState;

/// What the coordinator knows about one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: TransactionState,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// When the open transaction began (engine-clock ms; -1: none).
    pub txn_start_ms: i64,
    /// The last state change (engine-clock ms).
    pub updated_ms: i64,
    /// The transaction's partitions.
    pub partitions: BTreeSet<(String, i32)>,
    /// Consumer groups added by AddOffsetsToTxn.
    pub groups: BTreeSet<String>,
    /// Offsets TxnOffsetCommit sent, visible once the transaction commits.
    pub pending_offsets: Vec<PendingTxnOffset>,
}

impl TransactionMetadata {
    /// A new transactional id with a fresh producer id, epoch 0, Empty.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch: 0,
            state: TransactionState::Empty,
            timeout_ms,
            txn_start_ms: -1,
            updated_ms: now_ms,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            pending_offsets: Vec::new(),
        }
    }

    /// Move to `to` at `now_ms`. Callers only ask for transitions the
    /// state table allows; one it does not is refused as INVALID_TXN_STATE
    /// naming `operation`.
    pub(crate) fn transition(
        &mut self,
        to: TransactionState,
        now_ms: i64,
        operation: &'static str,
    ) -> Result<(), super::TxnError> {
        if !to.can_follow(self.state) {
            return Err(super::TxnError::InvalidTxnState {
                transactional_id: self.transactional_id.clone(),
                state: self.state.name(),
                operation,
            });
        }
        self.state = to;
        self.updated_ms = now_ms;
        Ok(())
    }

    /// The row the catalog stores.
    pub fn to_stored(&self) -> StoredTransaction {
        StoredTransaction {
            transactional_id: self.transactional_id.clone(),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            state: self.state.name().to_string(),
            timeout_ms: self.timeout_ms,
            txn_start_ms: self.txn_start_ms,
            updated_ms: self.updated_ms,
            partitions: self.partitions.iter().cloned().collect(),
            groups: self.groups.iter().cloned().collect(),
            pending_offsets: self.pending_offsets.clone(),
        }
    }

    /// From a stored row (`None`: a state name this build does not know).
    pub fn from_stored(t: StoredTransaction) -> Option<Self> {
        Some(TransactionMetadata {
            state: TransactionState::parse(&t.state)?,
            transactional_id: t.transactional_id,
            producer_id: t.producer_id,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.timeout_ms,
            txn_start_ms: t.txn_start_ms,
            updated_ms: t.updated_ms,
            partitions: t.partitions.into_iter().collect(),
            groups: t.groups.into_iter().collect(),
            pending_offsets: t.pending_offsets,
        })
    }
}
