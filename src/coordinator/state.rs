//! The classic group state machine (Kafka's `ClassicGroupState`).

/// Where a classic group is in its rebalance cycle.
///
/// ```text
/// Empty ──join──► PreparingRebalance ──all joined / rebalance timeout──► CompletingRebalance
///   ▲  │                ▲      │                                           │ leader's SyncGroup
///   │  ▼ delete         └──────┴──── a member joins, leaves, expires ◄─────┴──► Stable
///   Dead ◄── last member gone: PreparingRebalance ──► Empty
/// ```
///
/// Each state says what the coordinator does with each request and which
/// state may come next; [`ClassicGroupState::valid_previous_states`] is the
/// same table read backwards, and every transition is checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClassicGroupState {
    /// No members; the group lingers while it has committed offsets.
    ///
    /// Actions: JoinGroup is served normally (the first member starts a
    /// rebalance, delayed by `group.initial.rebalance.delay.ms`); SyncGroup,
    /// Heartbeat and LeaveGroup get UNKNOWN_MEMBER_ID; OffsetCommit is only
    /// allowed outside group management (generation -1, no member id);
    /// OffsetFetch is allowed.
    ///
    /// Transitions: a join from a new member → `PreparingRebalance`;
    /// DeleteGroups → `Dead`.
    Empty,
    /// Members are (re)joining for the next generation.
    ///
    /// Actions: Heartbeat and SyncGroup get REBALANCE_IN_PROGRESS;
    /// LeaveGroup removes the member; JoinGroup requests of new and existing
    /// members are parked until every known member has rejoined (or the
    /// rebalance timeout passes, or the initial delay ends); OffsetCommit
    /// from a member of the current generation is allowed; OffsetFetch is
    /// allowed.
    ///
    /// Transitions: the join phase completes with members →
    /// `CompletingRebalance`; it completes with none (all left or timed
    /// out) → `Empty`.
    PreparingRebalance,
    /// The join phase is over; the leader is computing the assignment.
    ///
    /// Actions: Heartbeat gets no error, OffsetCommit gets
    /// REBALANCE_IN_PROGRESS; followers' SyncGroup requests are parked
    /// until the leader's arrives; OffsetFetch is allowed.
    ///
    /// Transitions: the leader's SyncGroup → `Stable`; a join from a new
    /// member or with new metadata, a leave, a member failure, or a member
    /// that did not sync within the rebalance timeout →
    /// `PreparingRebalance`.
    CompletingRebalance,
    /// Every member has its assignment for the current generation.
    ///
    /// Actions: Heartbeat is served normally; SyncGroup returns the
    /// member's current assignment; JoinGroup of a follower with unchanged
    /// metadata gets the current generation back (a static member that
    /// restarts takes its place without a rebalance, KIP-345); OffsetCommit
    /// from a member of the current generation is allowed; OffsetFetch is
    /// allowed. This is the state persisted in the catalog and reloaded at
    /// coordinator start.
    ///
    /// Transitions: a member failure (session timeout), a leave, the
    /// leader's JoinGroup or a follower's JoinGroup with new metadata →
    /// `PreparingRebalance`.
    Stable,
    /// The group is being deleted (DeleteGroups).
    ///
    /// Actions: JoinGroup and OffsetCommit get COORDINATOR_NOT_AVAILABLE
    /// (Kafka's answer for a dead group); OffsetFetch is allowed.
    ///
    /// Transitions: none; once its offsets are gone the group is forgotten.
    Dead,
}

impl ClassicGroupState {
    /// The name Kafka uses (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            ClassicGroupState::Empty => "Empty",
            ClassicGroupState::PreparingRebalance => "PreparingRebalance",
            ClassicGroupState::CompletingRebalance => "CompletingRebalance",
            ClassicGroupState::Stable => "Stable",
            ClassicGroupState::Dead => "Dead",
        }
    }

    /// The states this one may be entered from.
    pub fn valid_previous_states(self) -> &'static [ClassicGroupState] {
        use ClassicGroupState::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        }
    }

    /// Whether a group in `from` may move to `self`.
    pub fn can_follow(self, from: ClassicGroupState) -> bool {
        self.valid_previous_states().contains(&from)
    }
}

#[cfg(test)]
mod tests {
    use super::ClassicGroupState::*;

    #[test]
    fn transitions_follow_kafka_s_table() {
        assert!(PreparingRebalance.can_follow(Empty));
        assert!(CompletingRebalance.can_follow(PreparingRebalance));
        assert!(Stable.can_follow(CompletingRebalance));
        assert!(Empty.can_follow(PreparingRebalance));
        assert!(Dead.can_follow(Empty));
        assert!(
            !Stable.can_follow(PreparingRebalance),
            "no generation without a join phase"
        );
        assert!(!CompletingRebalance.can_follow(Empty));
        assert!(
            !Empty.can_follow(Stable),
            "members leave through a rebalance"
        );
        assert!(
            !Stable.can_follow(Dead) && !Empty.can_follow(Dead),
            "Dead is final"
        );
    }
}
