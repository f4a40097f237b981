-- Committed consumer offsets (OffsetCommit / OffsetFetch). Group membership
-- itself is not stored: after a restart consumers rejoin, as with Kafka.
CREATE TABLE group_offsets (
    group_id          TEXT NOT NULL,
    topic             TEXT NOT NULL,
    partition         INTEGER NOT NULL,
    committed_offset  INTEGER NOT NULL,
    leader_epoch      INTEGER NOT NULL DEFAULT -1,
    metadata          TEXT,
    commit_ms         INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);

CREATE INDEX group_offsets_by_topic ON group_offsets (topic);

-- The next producer id InitProducerId hands out: ids never repeat, even
-- across restarts. One row.
CREATE TABLE producer_ids (
    singleton         INTEGER PRIMARY KEY CHECK (singleton = 0),
    next_producer_id  INTEGER NOT NULL
);

INSERT INTO producer_ids (singleton, next_producer_id) VALUES (0, 0);
