#!/usr/bin/env python3
"""Black-box check of SASL_SSL with confluent-kafka (PyPI; its own librdkafka).

Against a running `tierlog serve` with a SASL_SSL listener: a SCRAM-SHA-256
producer writes records, a consumer in a group reads them all back and
commits, a second member of the group finds the commit; then the same user
with a wrong password gets an authentication error. Called by
scripts/sasl_ssl_check.sh.

Usage: sasl_ssl_client.py HOST:PORT CA_PEM USER PASSWORD
"""

import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

TOTAL = 50


def fail(message):
    print(f"sasl_ssl_client.py: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def config(bootstrap, ca, user, password):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": ca,
    }


def main():
    bootstrap, ca, user, password = sys.argv[1:5]
    topic = f"py-secure-{uuid.uuid4().hex[:8]}"
    group = f"py-secure-group-{uuid.uuid4().hex[:8]}"
    base = config(bootstrap, ca, user, password)

    errors = []
    producer = Producer({**base, "acks": "all", "enable.idempotence": True})
    for i in range(TOTAL):
        producer.produce(
            topic,
            key=f"k{i}".encode(),
            value=f"v{i}".encode(),
            on_delivery=lambda err, _msg: err and errors.append(err),
        )
    left = producer.flush(60)
    if left or errors:
        fail(f"{left} records undelivered, errors {errors[:3]}")

    consumer = Consumer(
        {
            **base,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = []
    deadline = time.time() + 60
    while len(seen) < TOTAL:
        if time.time() > deadline:
            fail(f"only {len(seen)} of {TOTAL} records read")
        m = consumer.poll(1.0)
        if m is None:
            continue
        if m.error():
            fail(f"consume error {m.error()}")
        seen.append(m.value().decode())
    if seen != [f"v{i}" for i in range(TOTAL)]:
        fail(f"records out of order or wrong: {seen[:5]}...")
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    if committed[0].offset != TOTAL:
        fail(f"committed offset {committed[0].offset}, expected {TOTAL}")
    consumer.close()

    # A wrong password: the client reports an authentication failure.
    failures = []
    bad = Producer(
        {
            **config(bootstrap, ca, user, "wrong"),
            "error_cb": lambda err: failures.append(err),
        }
    )
    bad.produce(topic, value=b"never")
    bad.flush(10)
    if not any(e.code() == KafkaError._AUTHENTICATION for e in failures):
        fail(f"no authentication error with a wrong password: {failures[:3]}")

    import confluent_kafka

    client = confluent_kafka.version()
    client = client[0] if isinstance(client, tuple) else client
    print(
        f"sasl_ssl_client.py: ok (confluent-kafka {client}, "
        f"librdkafka {confluent_kafka.libversion()[0]}: {TOTAL} records over SASL_SSL "
        "with SCRAM-SHA-256, group commit, wrong password refused)"
    )


if __name__ == "__main__":
    main()
