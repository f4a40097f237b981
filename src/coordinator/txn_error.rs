//! What the transaction coordinator refuses, by meaning. The broker maps
//! each to a Kafka error code in one place (`broker/errors.rs`).

/// Why a transaction operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("transaction timeout {timeout_ms} ms is not between 1 and transaction.max.timeout.ms ({max_ms})")]
    InvalidTransactionTimeout { timeout_ms: i32, max_ms: i32 },
    /// A newer producer instance with the same transactional id bumped
    /// the epoch: this one is a zombie.
    #[error("producer id {producer_id} epoch {got} is fenced: the transactional id's epoch is {current}")]
    ProducerFenced {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    /// An epoch that does not match (produce path, older clients).
    #[error("producer id {producer_id} epoch {got} is not the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error(
        "producer id {producer_id} is not the producer id of transactional id '{transactional_id}'"
    )]
    InvalidProducerIdMapping {
        transactional_id: String,
        producer_id: i64,
    },
    /// Markers of the previous transaction are being written: retry.
    #[error("transactional id '{transactional_id}' is completing a transaction; retry")]
    ConcurrentTransactions { transactional_id: String },
    #[error("transactional id '{transactional_id}' is {state}: {operation} is not allowed now")]
    InvalidTxnState {
        transactional_id: String,
        state: &'static str,
        operation: &'static str,
    },
    #[error("transactional id is empty")]
    InvalidTransactionalId,
    /// The catalog could not be read or written.
    #[error("the catalog is unavailable: {reason}")]
    StoreUnavailable { reason: String },
}
