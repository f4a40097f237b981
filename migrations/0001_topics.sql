-- Topics and their config overrides (Kafka names; defaults are not stored).
CREATE TABLE topics (
    name        TEXT PRIMARY KEY,
    topic_id    TEXT NOT NULL UNIQUE,
    partitions  INTEGER NOT NULL CHECK (partitions > 0),
    created_ms  INTEGER NOT NULL
);

CREATE TABLE topic_configs (
    topic  TEXT NOT NULL REFERENCES topics(name) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (topic, key)
);
