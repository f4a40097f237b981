-- Classic group metadata (Kafka keeps it in __consumer_offsets as the
-- GroupMetadata record): written when a SyncGroup completes a generation
-- (the leader's assignment is stored), and again, without members and with
-- `emptied_ms`, when the group becomes Empty (its committed offsets age
-- from then, KIP-211); removed when the group is Dead (DeleteGroups) or its
-- last committed offset expired. A coordinator that starts reloads every
-- row with members as a Stable group in its generation, so members keep
-- their member ids, generation and assignments across a broker restart,
-- and every row without members as the instant that group emptied.
CREATE TABLE group_metadata (
    group_id        TEXT PRIMARY KEY,
    generation_id   INTEGER NOT NULL,
    protocol_type   TEXT,
    protocol_name   TEXT,
    leader_id       TEXT,
    emptied_ms      INTEGER,
    stored_ms       INTEGER NOT NULL
);

-- The members of each stored group, in join order (member_index). The
-- subscription is the member's metadata for the group's protocol.
CREATE TABLE group_members (
    group_id              TEXT NOT NULL,
    member_index          INTEGER NOT NULL,
    member_id             TEXT NOT NULL,
    group_instance_id     TEXT,
    client_id             TEXT NOT NULL,
    client_host           TEXT NOT NULL,
    session_timeout_ms    INTEGER NOT NULL,
    rebalance_timeout_ms  INTEGER NOT NULL,
    subscription          BLOB NOT NULL,
    assignment            BLOB NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
