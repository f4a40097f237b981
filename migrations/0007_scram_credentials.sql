-- SCRAM credentials (KIP-554's AlterUserScramCredentials, `tierlog user`):
-- one row per user and mechanism. Never the password nor the salted
-- password: the salt, the iteration count and the two keys derived from
-- the salted password, enough to check a SCRAM proof or a PLAIN password.
CREATE TABLE scram_credentials (
    user_name   TEXT NOT NULL,
    mechanism   TEXT NOT NULL,   -- 'SCRAM-SHA-256' or 'SCRAM-SHA-512'
    salt        BLOB NOT NULL,
    stored_key  BLOB NOT NULL,
    server_key  BLOB NOT NULL,
    iterations  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (user_name, mechanism)
);
