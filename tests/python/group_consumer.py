#!/usr/bin/env python3
"""Black-box check of consumer groups with kafka-python (PyPI `kafka-python`).

Against a running `tierlog serve`: create a topic, produce, consume part of
it in a group and commit, close the consumer, then check that a new member
of the same group resumes exactly after the commit (nothing lost, nothing
read twice), and that the broker lists and describes the group.

Usage: group_consumer.py HOST:PORT   (exits non-zero on any mismatch)
"""

import sys
import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

TOTAL = 60
FIRST = 25
PARTITIONS = 3


def fail(message):
    print(f"group_consumer.py: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def consume(consumer, want, seen, deadline_s=60):
    """Poll until `want` new records arrived; add their values to `seen`."""
    got = 0
    deadline = time.time() + deadline_s
    while got < want:
        if time.time() > deadline:
            fail(f"only {got} of {want} records arrived")
        for tp, records in consumer.poll(timeout_ms=500, max_records=want - got).items():
            for r in records:
                value = r.value.decode()
                if value in seen:
                    fail(f"{value} (partition {tp.partition}, offset {r.offset}) consumed twice")
                seen.add(value)
                got += 1


def main():
    if len(sys.argv) != 2:
        fail("usage: group_consumer.py HOST:PORT")
    bootstrap = sys.argv[1]
    topic = f"py-{uuid.uuid4().hex[:8]}"
    group = f"py-group-{uuid.uuid4().hex[:8]}"

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tierlog-py-admin")
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(TOTAL):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush(timeout=30)
    producer.close()

    def member():
        return KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
        )

    seen = set()
    first = member()
    consume(first, FIRST, seen)
    first.commit()  # commits the position after every record returned
    committed = sum(first.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))
    if committed != FIRST:
        fail(f"committed offsets add up to {committed}, expected {FIRST}")
    first.close()  # LeaveGroup

    groups = [g[0] for g in admin.list_consumer_groups()]
    if group not in groups:
        fail(f"ListGroups does not show {group}: {groups}")

    second = member()
    consume(second, TOTAL - FIRST, seen)
    if seen != {f"v{i}" for i in range(TOTAL)}:
        fail(f"records missing after resuming: {sorted({f'v{i}' for i in range(TOTAL)} - seen)}")
    # Nothing more: the first member's records were not re-delivered.
    extra = second.poll(timeout_ms=2000)
    if any(extra.values()):
        fail(f"records read again after the commit: {extra}")
    described = admin.describe_consumer_groups([group])[0]
    if described.state != "Stable" or len(described.members) != 1:
        fail(f"DescribeGroups: expected one Stable member, got {described}")
    second.commit()
    second.close()
    admin.close()
    print(f"group_consumer.py: ok ({TOTAL} records, resumed at the commit, group {group} topic {topic})")


if __name__ == "__main__":
    main()
