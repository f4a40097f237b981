-- Kafka ACLs (CreateAcls / DescribeAcls / DeleteAcls, `tierlog acl`): one
-- row per binding, the enums as Kafka's names (TOPIC, LITERAL, READ,
-- ALLOW). The primary key makes a binding stored twice one row, as Kafka
-- keeps a set.
CREATE TABLE acls (
    resource_type  TEXT NOT NULL,   -- TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID
    resource_name  TEXT NOT NULL,
    pattern_type   TEXT NOT NULL,   -- LITERAL or PREFIXED
    principal      TEXT NOT NULL,   -- User:NAME or User:*
    host           TEXT NOT NULL,   -- an IP address or *
    operation      TEXT NOT NULL,   -- READ, WRITE, ..., ALL
    permission     TEXT NOT NULL,   -- ALLOW or DENY
    created_ms     INTEGER NOT NULL,
    PRIMARY KEY (resource_type, resource_name, pattern_type, principal, host, operation, permission)
);
