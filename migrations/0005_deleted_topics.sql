-- Topic ids deleted from the catalog (DeleteTopics). A partition directory
-- whose `partition.metadata` names one of these is provably stale and is
-- removed; one naming an id the catalog never knew is only set aside.
-- The row is written in the same transaction that deletes the topic, so
-- the decision is durable before any file is touched. `remote_cleaned_ms`
-- is set once the reaper has removed everything of the topic from the
-- bucket (its segments and its topic.json).
CREATE TABLE deleted_topics (
    topic_id           TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    deleted_ms         INTEGER NOT NULL,
    remote_cleaned_ms  INTEGER
);
