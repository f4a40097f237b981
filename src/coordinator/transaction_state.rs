//! The transaction state machine (Kafka's `TransactionState`).

/// Where a transactional id's current transaction is.
///
/// ```text
///            AddPartitionsToTxn / AddOffsetsToTxn
/// Empty ─────────────────────────────────────────► Ongoing ──EndTxn(commit)──► PrepareCommit ──markers written──► CompleteCommit
///   ▲                                               │  ▲ │                                                            │
///   │ InitProducerId                                │  │ └─EndTxn(abort) / timeout / InitProducerId──► PrepareAbort ──► CompleteAbort
///   └── CompleteCommit / CompleteAbort ◄────────────┘  └────── AddPartitionsToTxn ◄── CompleteCommit / CompleteAbort
/// any completed or empty state ──transactional.id.expiration.ms──► Dead
/// ```
///
/// Each state says what the coordinator does with each request and which
/// state may come next; [`TransactionState::valid_previous_states`] is the
/// same table read backwards, and every transition is checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// A producer id and epoch, no transaction.
    ///
    /// Actions: InitProducerId bumps the epoch; AddPartitionsToTxn and
    /// AddOffsetsToTxn begin a transaction; EndTxn gets INVALID_TXN_STATE.
    ///
    /// Transitions: `Ongoing`; `Empty` (InitProducerId); `Dead` (expiry).
    Empty,
    /// A transaction is open: partitions (and groups) were added.
    ///
    /// Actions: more partitions and groups may be added, TxnOffsetCommit
    /// stores pending offsets; EndTxn prepares the commit or abort; an
    /// InitProducerId or the transaction timeout aborts it with the epoch
    /// bumped (fencing the producer).
    ///
    /// Transitions: `PrepareCommit`, `PrepareAbort`.
    Ongoing,
    /// EndTxn(commit) accepted: COMMIT markers are being written.
    ///
    /// Actions: every request but DescribeTransactions gets
    /// CONCURRENT_TRANSACTIONS. A coordinator that starts with a row in
    /// this state writes the markers again and completes it.
    ///
    /// Transitions: `CompleteCommit` once every marker is written.
    PrepareCommit,
    /// EndTxn(abort), the timeout or a new producer instance: ABORT markers
    /// are being written. Actions and recovery as for `PrepareCommit`.
    ///
    /// Transitions: `CompleteAbort`.
    PrepareAbort,
    /// The last transaction committed (markers written, offsets visible).
    ///
    /// Actions: as `Empty`; a retried EndTxn(commit) succeeds again.
    ///
    /// Transitions: `Ongoing`, `Empty` (InitProducerId), `Dead`.
    CompleteCommit,
    /// The last transaction aborted (markers written, offsets discarded).
    ///
    /// Actions: as `Empty`; a retried EndTxn(abort) succeeds again.
    ///
    /// Transitions: `Ongoing`, `Empty` (InitProducerId), `Dead`.
    CompleteAbort,
    /// The transactional id expired (`transactional.id.expiration.ms`) and
    /// its row is removed.
    ///
    /// Transitions: none; an InitProducerId for the id starts afresh.
    Dead,
}

impl TransactionState {
    /// The name Kafka uses (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TransactionState::Empty => "Empty",
            TransactionState::Ongoing => "Ongoing",
            TransactionState::PrepareCommit => "PrepareCommit",
            TransactionState::PrepareAbort => "PrepareAbort",
            TransactionState::CompleteCommit => "CompleteCommit",
            TransactionState::CompleteAbort => "CompleteAbort",
            TransactionState::Dead => "Dead",
        }
    }

    /// The state of a name (as stored in the catalog).
    pub fn parse(name: &str) -> Option<Self> {
        use TransactionState::*;
        [
            Empty,
            Ongoing,
            PrepareCommit,
            PrepareAbort,
            CompleteCommit,
            CompleteAbort,
            Dead,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// The states this one may be entered from.
    pub fn valid_previous_states(self) -> &'static [TransactionState] {
        use TransactionState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteCommit, CompleteAbort],
        }
    }

    /// Whether a transaction in `from` may move to `self`.
    pub fn can_follow(self, from: TransactionState) -> bool {
        self.valid_previous_states().contains(&from)
    }

    /// Whether markers are being written (requests must wait).
    pub fn is_preparing(self) -> bool {
        matches!(
            self,
            TransactionState::PrepareCommit | TransactionState::PrepareAbort
        )
    }
}

#[cfg(test)]
mod tests {
    use super::TransactionState::*;
    use super::*;

    #[test]
    fn transitions_follow_kafka_s_table() {
        assert!(Ongoing.can_follow(Empty));
        assert!(PrepareCommit.can_follow(Ongoing));
        assert!(CompleteCommit.can_follow(PrepareCommit));
        assert!(Ongoing.can_follow(CompleteAbort));
        assert!(
            !CompleteCommit.can_follow(Ongoing),
            "commit goes through PrepareCommit"
        );
        assert!(!PrepareCommit.can_follow(Empty), "nothing to commit");
        assert!(!CompleteAbort.can_follow(PrepareCommit));
        assert!(!Ongoing.can_follow(Dead), "Dead is final");
        assert!(
            !Dead.can_follow(Ongoing),
            "an open transaction does not expire"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in [
            Empty,
            Ongoing,
            PrepareCommit,
            PrepareAbort,
            CompleteCommit,
            CompleteAbort,
            Dead,
        ] {
            assert_eq!(TransactionState::parse(s.name()), Some(s));
        }
        assert_eq!(TransactionState::parse("Stable"), None);
    }
}
