-- Topic ids deleted from the catalog (DeleteTopics). A partition directory
-- whose `partition.metadata` names one of these is provably stale and is
-- removed; one naming an id the catalog never knew is only set aside.
-- The row is written in the same transaction that deletes the topic, so
-- the decision is durable before any file is touched.
CREATE TABLE deleted_topics (
    topic_id    TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    deleted_ms  INTEGER NOT NULL
);
