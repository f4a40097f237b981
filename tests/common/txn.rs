//! librdkafka consumers of the transaction tests: what a read_committed or
//! read_uncommitted application reads.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// A consumer of group `group` reading with `isolation`
/// (`read_committed` or `read_uncommitted`).
pub fn consumer(addr: &str, group: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

/// Values read from `topic`'s `partitions` from the start: polled until
/// `expected` values arrived (within `deadline`), then 1.5 s longer so
/// extra records would show.
pub fn read_values(
    c: &BaseConsumer,
    topic: &str,
    partitions: i32,
    expected: usize,
    deadline: Duration,
) -> Vec<String> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + deadline;
    let mut settle: Option<Instant> = None;
    loop {
        if values.len() >= expected && settle.is_none() {
            settle = Some(Instant::now() + Duration::from_millis(1500));
        }
        if settle.is_some_and(|t| Instant::now() >= t) {
            return values;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: timed out with {} of {expected} values: {values:?}",
            values.len()
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                values.push(String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap())
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
}
