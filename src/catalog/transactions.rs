//! Transaction coordinator state as the catalog stores it (Kafka's
//! `TransactionLogValue` record in `__transaction_state`): one row per
//! transactional id. Data types only; the transaction coordinator decides
//! when a row is written or removed.
//!
//! ## Format
//!
//! Table `transactions` (`migrations/0008_transactions.sql`):
//!
//! | column | meaning |
//! |---|---|
//! | `transactional_id` | the producer's `transactional.id` |
//! | `producer_id`, `producer_epoch` | the current producer id and epoch |
//! | `state` | Kafka's state name: `Empty`, `Ongoing`, `PrepareCommit`, `PrepareAbort`, `CompleteCommit`, `CompleteAbort`, `Dead` |
//! | `timeout_ms` | the producer's `transaction.timeout.ms` |
//! | `txn_start_ms` | when the open transaction began (-1: none) |
//! | `updated_ms` | the last state change (for `transactional.id.expiration.ms`) |
//! | `partitions` | JSON `[["topic", 0], …]`: the transaction's partitions |
//! | `groups` | JSON `["group", …]`: the consumer groups AddOffsetsToTxn added |
//! | `pending_offsets` | JSON `[{"group": "g", "topic": "t", "partition": 0, "offset": 5, "leader_epoch": -1, "metadata": null}, …]`: TxnOffsetCommit's offsets, visible at commit |

use serde::{Deserialize, Serialize};

/// One consumer offset sent in a transaction (TxnOffsetCommit), stored
/// with it until the transaction ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTxnOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// A transactional id's coordinator state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Kafka's state name.
    pub state: String,
    pub timeout_ms: i32,
    pub txn_start_ms: i64,
    pub updated_ms: i64,
    pub partitions: Vec<(String, i32)>,
    pub groups: Vec<String>,
    pub pending_offsets: Vec<PendingTxnOffset>,
}
