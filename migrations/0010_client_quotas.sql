-- Client quotas (KIP-55 entities, KIP-546's AlterClientQuotas,
-- `tierlog quota`): one row per entity and quota key. An entity is a user,
-- a client id, or a user and a client id; each part is absent ('none'),
-- the default ('default', Kafka's `<default>`) or named ('name' with the
-- name beside it; '' otherwise).
CREATE TABLE client_quotas (
    user_kind    TEXT NOT NULL,  -- 'none', 'default' or 'name'
    user_name    TEXT NOT NULL,
    client_kind  TEXT NOT NULL,  -- 'none', 'default' or 'name'
    client_id    TEXT NOT NULL,
    quota_key    TEXT NOT NULL,  -- 'producer_byte_rate', 'consumer_byte_rate', 'request_percentage'
    value        REAL NOT NULL,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (user_kind, user_name, client_kind, client_id, quota_key)
);
