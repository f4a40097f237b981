-- Transaction coordinator state (Kafka keeps it in __transaction_state as
-- TransactionLogValue records): one row per transactional id, written at
-- every state change the coordinator makes durable (InitProducerId,
-- AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn's prepare
-- and complete steps). `state` is Kafka's name (Empty, Ongoing,
-- PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, Dead);
-- `partitions` is a JSON array of [topic, partition] pairs in the
-- transaction; `groups` a JSON array of the consumer groups AddOffsetsToTxn
-- added; `pending_offsets` a JSON array of the offsets
-- TxnOffsetCommit sent, made visible only when the transaction commits. A
-- coordinator that starts completes every Prepare* row and aborts an
-- Ongoing one once its timeout has passed.
CREATE TABLE transactions (
    transactional_id     TEXT PRIMARY KEY,
    producer_id          INTEGER NOT NULL,
    producer_epoch       INTEGER NOT NULL,
    state                TEXT NOT NULL,
    timeout_ms           INTEGER NOT NULL,
    txn_start_ms         INTEGER NOT NULL,
    updated_ms           INTEGER NOT NULL,
    partitions           TEXT NOT NULL,
    groups               TEXT NOT NULL,
    pending_offsets      TEXT NOT NULL
);
