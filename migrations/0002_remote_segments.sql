-- Tiered segments and their lifecycle (DESIGN.md §4): every transition is one
-- transaction. Rows are kept after DELETE_FINISHED as a record of what was
-- removed from the bucket.
CREATE TABLE remote_segments (
    segment_uuid     TEXT PRIMARY KEY,
    topic            TEXT NOT NULL,
    topic_id         TEXT NOT NULL,
    partition        INTEGER NOT NULL,
    base_offset      INTEGER NOT NULL,
    last_offset      INTEGER NOT NULL,
    first_timestamp  INTEGER NOT NULL,
    max_timestamp    INTEGER NOT NULL,
    log_size         INTEGER NOT NULL DEFAULT 0,
    index_size       INTEGER NOT NULL DEFAULT 0,
    timeindex_size   INTEGER NOT NULL DEFAULT 0,
    log_crc32c       INTEGER NOT NULL DEFAULT 0,
    state            TEXT NOT NULL CHECK (state IN ('COPY_STARTED', 'COPY_FINISHED', 'DELETE_STARTED', 'DELETE_FINISHED')),
    updated_ms       INTEGER NOT NULL
);

CREATE INDEX remote_segments_by_partition ON remote_segments (topic_id, partition, base_offset);
CREATE INDEX remote_segments_by_state ON remote_segments (state);
