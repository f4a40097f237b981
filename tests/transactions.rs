//! Transactions (exactly-once): librdkafka's transactional producer and
//! read_committed consumers against the broker, and raw requests where an
//! exact error code or response field is the point.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::broker::TestBroker;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tierlog::client::Connection;
use tierlog::clock::ManualClock;

const T0: i64 = 1_700_000_000_000;
const DEADLINE: Duration = Duration::from_secs(30);
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn txn_producer(addr: &str, id: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("transactional.id", id)
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, partition: i32, value: &str) {
    p.send(
        BaseRecord::<(), str>::to(topic)
            .partition(partition)
            .payload(value),
    )
    .map_err(|(e, _)| e)
    .expect("queued");
}

fn consumer(addr: &str, isolation: &str) -> BaseConsumer {
    common::txn::consumer(addr, "reader", isolation)
}

/// Values read from `topic`'s `partitions` from the start (see
/// [`common::txn::read_values`]).
fn read_values(c: &BaseConsumer, topic: &str, partitions: i32, expected: usize) -> Vec<String> {
    common::txn::read_values(c, topic, partitions, expected, DEADLINE)
}

/// `txns` transactions of 8 values each on partition 0 of `topic` by
/// producer `id`, committed and aborted in turn (the first committed);
/// returns the committed values and all of them.
fn alternate_commit_abort(
    addr: &str,
    id: &str,
    topic: &str,
    txns: usize,
    pad: char,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let p = txn_producer(addr, id);
    p.init_transactions(TXN_TIMEOUT).unwrap();
    let pad = pad.to_string().repeat(200);
    let mut committed = BTreeSet::new();
    let mut everything = BTreeSet::new();
    for t in 0..txns {
        p.begin_transaction().unwrap();
        for i in 0..8 {
            let v = format!("t{t}-{i}-{pad}");
            send(&p, topic, 0, &v);
            everything.insert(v.clone());
            if t % 2 == 0 {
                committed.insert(v);
            }
        }
        p.flush(TXN_TIMEOUT).unwrap();
        if t % 2 == 0 {
            p.commit_transaction(TXN_TIMEOUT).unwrap();
        } else {
            p.abort_transaction(TXN_TIMEOUT).unwrap();
        }
    }
    (committed, everything)
}

fn set(values: &[String]) -> BTreeSet<String> {
    values.iter().cloned().collect()
}

fn names(prefix: &str, partitions: i32, per: i32) -> BTreeSet<String> {
    (0..partitions)
        .flat_map(|p| (0..per).map(move |i| format!("{prefix}-{p}-{i}")))
        .collect()
}

fn send_all(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    prefix: &str,
    partitions: i32,
    per: i32,
) {
    for part in 0..partitions {
        for i in 0..per {
            send(p, topic, part, &format!("{prefix}-{part}-{i}"));
        }
    }
}

/// Commit, abort, commit across two partitions: a read_committed consumer
/// gets exactly the committed records, a read_uncommitted one all of them
/// (and neither ever a transaction marker).
#[test]
fn read_committed_sees_only_committed_transactions_across_two_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("txn", 2, &Default::default())
        .unwrap();
    let p = txn_producer(&broker.addr, "txn-a");
    p.init_transactions(TXN_TIMEOUT).unwrap();
    p.begin_transaction().unwrap();
    send_all(&p, "txn", "c1", 2, 3);
    p.commit_transaction(TXN_TIMEOUT).unwrap();
    p.begin_transaction().unwrap();
    send_all(&p, "txn", "ab", 2, 4);
    p.flush(TXN_TIMEOUT).unwrap();
    p.abort_transaction(TXN_TIMEOUT).unwrap();
    p.begin_transaction().unwrap();
    send_all(&p, "txn", "c2", 2, 2);
    p.commit_transaction(TXN_TIMEOUT).unwrap();

    let committed: BTreeSet<String> = names("c1", 2, 3)
        .union(&names("c2", 2, 2))
        .cloned()
        .collect();
    let rc = read_values(
        &consumer(&broker.addr, "read_committed"),
        "txn",
        2,
        committed.len(),
    );
    assert_eq!(rc.len(), committed.len(), "{rc:?}");
    assert_eq!(set(&rc), committed);

    let everything: BTreeSet<String> = committed.union(&names("ab", 2, 4)).cloned().collect();
    let ru = read_values(
        &consumer(&broker.addr, "read_uncommitted"),
        "txn",
        2,
        everything.len(),
    );
    assert_eq!(ru.len(), everything.len(), "{ru:?}");
    assert_eq!(set(&ru), everything);

    // Each partition: 3 + 4 + 2 records and three markers.
    for part in 0..2 {
        let o = broker.engine.offsets("txn", part).unwrap();
        assert_eq!(o.log_end_offset, 12);
        assert_eq!(broker.engine.last_stable_offset("txn", part).unwrap(), 12);
    }
    drop(p);
    broker.stop();
}

/// A second instance with the same transactional.id fences the first: the
/// first's open transaction is aborted, its commit fails, and only the
/// second's records are ever committed.
#[test]
fn a_zombie_producer_is_fenced_by_a_new_instance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("fence", 1, &Default::default())
        .unwrap();
    let zombie = txn_producer(&broker.addr, "txn-z");
    zombie.init_transactions(TXN_TIMEOUT).unwrap();
    zombie.begin_transaction().unwrap();
    send_all(&zombie, "fence", "zombie", 1, 3);
    zombie.flush(TXN_TIMEOUT).unwrap();

    let fresh = txn_producer(&broker.addr, "txn-z");
    fresh.init_transactions(TXN_TIMEOUT).unwrap();
    fresh.begin_transaction().unwrap();
    send_all(&fresh, "fence", "fresh", 1, 2);
    fresh.commit_transaction(TXN_TIMEOUT).unwrap();

    let err = zombie.commit_transaction(TXN_TIMEOUT).unwrap_err();
    match &err {
        KafkaError::Transaction(e) => assert!(e.is_fatal(), "fenced is fatal: {err:?}"),
        other => panic!("expected a fatal transaction error, got {other:?}"),
    }

    let rc = read_values(&consumer(&broker.addr, "read_committed"), "fence", 1, 2);
    assert_eq!(set(&rc), names("fresh", 1, 2), "{rc:?}");
    drop((zombie, fresh));
    broker.stop();
}

/// Consume-transform-produce: offsets sent with send_offsets_to_transaction
/// become the group's committed offsets when the transaction commits, and
/// are discarded when it aborts.
#[test]
fn offsets_sent_in_a_transaction_commit_with_it_and_not_on_abort() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.group_initial_rebalance_delay_ms = 0);
    broker
        .engine
        .create_topic("in", 1, &Default::default())
        .unwrap();
    broker
        .engine
        .create_topic("out", 1, &Default::default())
        .unwrap();
    let mut bytes = common::batch(0, 10, 10, T0);
    broker.engine.append("in", 0, &mut bytes).unwrap();

    let input: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "ctp")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    input.subscribe(&["in"]).unwrap();
    let p = txn_producer(&broker.addr, "txn-ctp");
    p.init_transactions(TXN_TIMEOUT).unwrap();

    // One transaction per round: consume n, produce n, send the offsets.
    let round = |n: usize, commit: bool| {
        let mut seen = 0;
        let mut next = 0;
        let deadline = Instant::now() + DEADLINE;
        p.begin_transaction().unwrap();
        while seen < n {
            assert!(Instant::now() < deadline, "consumed {seen} of {n}");
            match input.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    send(&p, "out", 0, &format!("out-{}", m.offset()));
                    next = m.offset() + 1;
                    seen += 1;
                }
                Some(Err(e)) => panic!("{e}"),
                None => {}
            }
        }
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("in", 0, Offset::Offset(next))
            .unwrap();
        let meta = input.group_metadata().expect("group metadata");
        p.send_offsets_to_transaction(&offsets, &meta, TXN_TIMEOUT)
            .unwrap();
        if commit {
            p.commit_transaction(TXN_TIMEOUT).unwrap();
        } else {
            p.abort_transaction(TXN_TIMEOUT).unwrap();
        }
    };
    let committed = |input: &BaseConsumer| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("in", 0);
        input
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap()
            .find_partition("in", 0)
            .unwrap()
            .offset()
    };
    round(10, true);
    assert_eq!(committed(&input), Offset::Offset(10));

    let mut more = common::batch(10, 5, 10, T0 + 10);
    broker.engine.append("in", 0, &mut more).unwrap();
    round(5, false);
    assert_eq!(
        committed(&input),
        Offset::Offset(10),
        "an aborted transaction's offsets are discarded"
    );

    let out = read_values(&consumer(&broker.addr, "read_committed"), "out", 1, 10);
    let want: BTreeSet<String> = (0..10).map(|i| format!("out-{i}")).collect();
    assert_eq!(set(&out), want, "{out:?}");
    drop((p, input));
    broker.stop();
}

// ---- raw requests ------------------------------------------------------------

/// A batch of `n` records from `pid`/`epoch` at sequence `seq`, marked
/// transactional when `transactional` (the builder's batch with its
/// producer fields and attributes patched and its CRC recomputed).
fn producer_batch(
    pid: i64,
    epoch: i16,
    seq: i32,
    n: usize,
    tag: &str,
    transactional: bool,
) -> Vec<u8> {
    let mut b = tierlog::format::BatchBuilder::new();
    for i in 0..n {
        b.push(tierlog::format::Record::new(
            None,
            Some(format!("{tag}-{i}").into_bytes()),
            T0 + i as i64,
        ));
    }
    let mut bytes = b.build().unwrap();
    if transactional {
        bytes[22] |= 0x10;
    }
    bytes[43..51].copy_from_slice(&pid.to_be_bytes());
    bytes[51..53].copy_from_slice(&epoch.to_be_bytes());
    bytes[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

async fn init(conn: &mut Connection, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let resp: InitProducerIdResponse = conn.call(ApiKey::InitProducerId, 3, &req).await.unwrap();
    (resp.error_code, resp.producer_id.0, resp.producer_epoch)
}

async fn add_partitions(
    conn: &mut Connection,
    id: &str,
    pid: i64,
    epoch: i16,
    topic: &str,
    parts: Vec<i32>,
) -> Vec<i16> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(pid.into())
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(parts)]);
    let resp: AddPartitionsToTxnResponse = conn
        .call(ApiKey::AddPartitionsToTxn, 3, &req)
        .await
        .unwrap();
    resp.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect()
}

async fn end_txn(conn: &mut Connection, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(pid.into())
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let resp: EndTxnResponse = conn.call(ApiKey::EndTxn, 3, &req).await.unwrap();
    resp.error_code
}

async fn produce(
    conn: &mut Connection,
    id: Option<&str>,
    topic: &str,
    partition: i32,
    batch: Vec<u8>,
) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_transactional_id(id.map(|i| TransactionalId(s(i))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(batch)))])]);
    let resp: ProduceResponse = conn.call(ApiKey::Produce, 9, &req).await.unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// One read_committed (isolation 1) or read_uncommitted fetch of
/// `topic`-0 from `offset`: (records bytes, last stable offset, aborted
/// transactions as (producer id, first offset)).
async fn fetch(
    conn: &mut Connection,
    topic: &str,
    offset: i64,
    isolation: i8,
) -> (Bytes, i64, Vec<(i64, i64)>) {
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse = conn.call(ApiKey::Fetch, 11, &req).await.unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (
        p.records.clone().unwrap_or_default(),
        p.last_stable_offset,
        p.aborted_transactions
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect(),
    )
}

async fn latest(conn: &mut Connection, topic: &str, isolation: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 5, &req).await.unwrap();
    resp.topics[0].partitions[0].offset
}

fn values(records: &Bytes) -> Vec<String> {
    tierlog::format::decode_records(records)
        .unwrap()
        .into_iter()
        .filter_map(|r| r.value.map(|v| String::from_utf8(v).unwrap()))
        .collect()
}

/// The protocol in detail: timeouts over transaction.max.timeout.ms, a
/// produce to a partition not in the transaction, transactional batches
/// without a transactional id, the LSO in Fetch and ListOffsets, and the
/// aborted transactions a read_committed fetch returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_stable_offset_and_aborted_transactions_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.transaction_max_timeout_ms = 60_000);
    broker
        .engine
        .create_topic("w", 2, &Default::default())
        .unwrap();
    let mut conn = Connection::connect(&broker.addr).await.unwrap();

    let (err, _, _) = init(&mut conn, "raw", 60_001).await;
    assert_eq!(err, ResponseError::InvalidTransactionTimeout.code());
    let (err, pid, epoch) = init(&mut conn, "raw", 60_000).await;
    assert_eq!((err, epoch), (0, 0));

    // Not added yet: refused, nothing appended.
    let b = producer_batch(pid, epoch, 0, 2, "early", true);
    let (err, _) = produce(&mut conn, Some("raw"), "w", 0, b.clone()).await;
    assert_eq!(err, ResponseError::InvalidTxnState.code());
    let (err, _) = produce(&mut conn, None, "w", 0, b).await;
    assert_eq!(
        err,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(broker.engine.offsets("w", 0).unwrap().log_end_offset, 0);

    // A plain record, then an open transaction from offset 1.
    let (err, _) = produce(
        &mut conn,
        None,
        "w",
        0,
        producer_batch(-1, -1, -1, 1, "plain", false),
    )
    .await;
    assert_eq!(err, 0);
    assert_eq!(
        add_partitions(&mut conn, "raw", pid, epoch, "w", vec![0, 7]).await,
        vec![
            ResponseError::OperationNotAttempted.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    assert_eq!(
        add_partitions(&mut conn, "raw", pid, epoch, "w", vec![0]).await,
        vec![0]
    );
    let (err, base) = produce(
        &mut conn,
        Some("raw"),
        "w",
        0,
        producer_batch(pid, epoch, 0, 3, "aborted", true),
    )
    .await;
    assert_eq!((err, base), (0, 1));
    assert_eq!(latest(&mut conn, "w", 0).await, 4);
    assert_eq!(
        latest(&mut conn, "w", 1).await,
        1,
        "read_committed latest is the LSO"
    );
    let (records, lso, aborted) = fetch(&mut conn, "w", 0, 1).await;
    assert_eq!(lso, 1);
    assert_eq!(
        values(&records),
        vec!["plain-0"],
        "read_committed stops at the LSO"
    );
    assert!(aborted.is_empty());
    let (records, lso, _) = fetch(&mut conn, "w", 0, 0).await;
    assert_eq!(lso, 1);
    assert_eq!(
        values(&records).len(),
        4,
        "read_uncommitted reads to the end"
    );

    // Abort: the marker at 4, the LSO at the end, the transaction listed.
    assert_eq!(end_txn(&mut conn, "raw", pid, epoch, false).await, 0);
    assert_eq!(
        end_txn(&mut conn, "raw", pid, epoch, false).await,
        0,
        "a retried EndTxn succeeds"
    );
    assert_eq!(
        end_txn(&mut conn, "raw", pid, epoch, true).await,
        ResponseError::InvalidTxnState.code()
    );
    assert_eq!(broker.engine.offsets("w", 0).unwrap().log_end_offset, 5);
    let (records, lso, aborted) = fetch(&mut conn, "w", 0, 1).await;
    assert_eq!(lso, 5);
    assert_eq!(aborted, vec![(pid, 1)]);
    assert_eq!(
        values(&records).len(),
        4,
        "aborted records are returned; clients drop them"
    );
    let (_, _, aborted) = fetch(&mut conn, "w", 5, 1).await;
    assert!(aborted.is_empty(), "nothing aborted at or after 5");

    // A second instance fences the first's epoch.
    let (err, pid2, epoch2) = init(&mut conn, "raw", 60_000).await;
    assert_eq!((err, pid2, epoch2), (0, pid, epoch + 1));
    assert_eq!(
        add_partitions(&mut conn, "raw", pid, epoch, "w", vec![1]).await,
        vec![ResponseError::ProducerFenced.code()]
    );
    broker.stop();
}

/// A broker restarted with a transaction open: the coordinator state and
/// the log's open transaction survive, read_committed stays below it until
/// `transaction.timeout.ms` passes, then the coordinator aborts it (epoch
/// bumped) and readers move past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_survives_a_restart_and_aborts_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let start = || TestBroker::start_with_clock(dir.path(), |_| {}, clock.clone());
    let broker = start();
    broker
        .engine
        .create_topic("r", 1, &Default::default())
        .unwrap();
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    let (_, pid, epoch) = init(&mut conn, "restart", 10_000).await;
    // One committed transaction, then one left open.
    assert_eq!(
        add_partitions(&mut conn, "restart", pid, epoch, "r", vec![0]).await,
        vec![0]
    );
    let (err, _) = produce(
        &mut conn,
        Some("restart"),
        "r",
        0,
        producer_batch(pid, epoch, 0, 2, "kept", true),
    )
    .await;
    assert_eq!(err, 0);
    assert_eq!(end_txn(&mut conn, "restart", pid, epoch, true).await, 0);
    assert_eq!(
        add_partitions(&mut conn, "restart", pid, epoch, "r", vec![0]).await,
        vec![0]
    );
    let (err, base) = produce(
        &mut conn,
        Some("restart"),
        "r",
        0,
        producer_batch(pid, epoch, 2, 2, "open", true),
    )
    .await;
    assert_eq!((err, base), (0, 3));
    drop(conn);
    broker.stop();

    let broker = start();
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    let (records, lso, _) = fetch(&mut conn, "r", 0, 1).await;
    assert_eq!(lso, 3, "the open transaction holds the LSO after a restart");
    assert_eq!(values(&records), vec!["kept-0", "kept-1"]);
    broker.txn_ticks.run_now().await;
    assert_eq!(fetch(&mut conn, "r", 0, 1).await.1, 3, "not timed out yet");

    clock.advance(10_001);
    broker.txn_ticks.run_now().await;
    let (records, lso, aborted) = fetch(&mut conn, "r", 0, 1).await;
    assert_eq!(lso, 6, "aborted at its timeout: marker at 5");
    assert_eq!(aborted, vec![(pid, 3)]);
    assert_eq!(
        values(&records),
        vec!["kept-0", "kept-1", "open-0", "open-1"]
    );
    // The producer was fenced by the abort's epoch bump.
    assert_eq!(
        add_partitions(&mut conn, "restart", pid, epoch, "r", vec![0]).await,
        vec![ResponseError::ProducerFenced.code()]
    );
    let describe: DescribeTransactionsResponse = conn
        .call(
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![
                TransactionalId(s("restart")),
                TransactionalId(s("nope")),
            ]),
        )
        .await
        .unwrap();
    let t = &describe.transaction_states[0];
    assert_eq!(
        (t.error_code, t.transaction_state.as_str(), t.producer_epoch),
        (0, "CompleteAbort", epoch + 1)
    );
    assert_eq!(
        describe.transaction_states[1].error_code,
        ResponseError::TransactionalIdNotFound.code()
    );
    broker.stop();
}

/// A transaction left PrepareCommit (EndTxn accepted, the broker stopped
/// before its markers): the coordinator completes it before serving —
/// COMMIT markers written, the LSO past it, its offsets committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_commit_is_completed_when_the_broker_starts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("p", 1, &Default::default())
        .unwrap();
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    let (_, pid, epoch) = init(&mut conn, "prep", 60_000).await;
    assert_eq!(
        add_partitions(&mut conn, "prep", pid, epoch, "p", vec![0]).await,
        vec![0]
    );
    let (err, _) = produce(
        &mut conn,
        Some("prep"),
        "p",
        0,
        producer_batch(pid, epoch, 0, 3, "prepared", true),
    )
    .await;
    assert_eq!(err, 0);
    drop(conn);
    broker.stop();

    // What the catalog holds if the broker stops between EndTxn's prepare
    // and its markers.
    {
        let engine = tierlog::Engine::open(tierlog::EngineConfig::new(dir.path())).unwrap();
        let mut row = engine
            .stored_transactions()
            .unwrap()
            .into_iter()
            .find(|t| t.transactional_id == "prep")
            .unwrap();
        assert_eq!(row.state, "Ongoing");
        row.state = "PrepareCommit".into();
        row.pending_offsets = vec![tierlog::catalog::PendingTxnOffset {
            group: "g".into(),
            topic: "p".into(),
            partition: 0,
            offset: 42,
            leader_epoch: -1,
            metadata: None,
        }];
        engine.store_transaction(&row).unwrap();
        assert_eq!(engine.last_stable_offset("p", 0).unwrap(), 0);
        engine.shutdown().unwrap();
    }

    let broker = TestBroker::start(dir.path());
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    let (records, lso, aborted) = fetch(&mut conn, "p", 0, 1).await;
    assert_eq!(lso, 4, "the COMMIT marker at 3");
    assert!(aborted.is_empty());
    assert_eq!(
        values(&records),
        vec!["prepared-0", "prepared-1", "prepared-2"]
    );
    let committed = broker.engine.committed_offsets("g").unwrap();
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].offset, 42);
    let row = broker
        .engine
        .stored_transactions()
        .unwrap()
        .into_iter()
        .find(|t| t.transactional_id == "prep")
        .unwrap();
    assert_eq!(row.state, "CompleteCommit");
    broker.stop();
}

/// Transactions whose segments were tiered and deleted locally: after a
/// restart, a read_committed consumer reading from the bucket gets exactly
/// the committed records (the aborted transactions come with the fetch
/// from the partition's index), a read_uncommitted one all of them.
#[test]
fn read_committed_filters_aborted_transactions_read_back_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic(
            "cold",
            1,
            &common::configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "4096"),
                ("retention.ms", "-1"),
                ("local.retention.bytes", "1"),
            ]),
        )
        .unwrap();
    let (committed, everything) = alternate_commit_abort(&broker.addr, "txn-cold", "cold", 8, 'x');
    broker.engine.run_remote_round().unwrap();
    broker.engine.run_local_retention();
    let local_start = broker
        .engine
        .offsets("cold", 0)
        .unwrap()
        .local_log_start_offset;
    assert!(
        local_start > 20,
        "most data is only in the bucket: local start {local_start}"
    );
    broker.stop();
    // Each tiered segment's aborted transactions are in its `.txnindex`
    // object: those of the segments no longer local are the four aborts
    // below the local log start, or some of them.
    let tiered = txn_index_entries(&dir.path().join("remote"));
    assert!(
        tiered.iter().any(|a| a.last_offset < local_start),
        "{tiered:?}"
    );
    assert!(tiered
        .windows(2)
        .all(|w| w[0].last_offset < w[1].last_offset));
    // Without any producer snapshot (the local state is rebuilt from the
    // last two local segments only), the aborted transactions below the
    // local log start come from the bucket's `.txnindex` objects alone.
    remove_files(&dir.path().join("cold-0"), "snapshot");

    let broker = TestBroker::start(dir.path());
    assert!(
        broker
            .engine
            .offsets("cold", 0)
            .unwrap()
            .local_log_start_offset
            > 20
    );
    let rc = read_values(
        &consumer(&broker.addr, "read_committed"),
        "cold",
        1,
        committed.len(),
    );
    assert_eq!(rc.len(), committed.len());
    assert_eq!(set(&rc), committed);
    let ru = read_values(
        &consumer(&broker.addr, "read_uncommitted"),
        "cold",
        1,
        everything.len(),
    );
    assert_eq!(set(&ru), everything);
    broker.stop();
}

/// Large transactions tiered and deleted locally: a consumer's fetches
/// from the bucket span chunk boundaries (1 MiB chunks under 1 MiB
/// fetches), so their records go out as slices of the cached chunks; a
/// read_committed consumer still gets exactly the committed records and
/// a read_uncommitted one all of them, each once.
#[test]
fn large_transactions_read_back_from_the_bucket_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    // Chunks of one checksum block (1 MiB): segments of two chunks.
    let broker = TestBroker::start_with(dir.path(), |c| c.remote_fetch_chunk_bytes = 64 * 1024);
    broker
        .engine
        .create_topic(
            "big",
            1,
            &common::configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "1500000"),
                ("retention.ms", "-1"),
                ("local.retention.bytes", "1"),
            ]),
        )
        .unwrap();
    let p = txn_producer(&broker.addr, "txn-big");
    p.init_transactions(TXN_TIMEOUT).unwrap();
    let pad = "y".repeat(1000);
    let (mut committed, mut everything) = (BTreeSet::new(), BTreeSet::new());
    for (t, n, commit) in [
        (0, 1500, false),
        (1, 1500, true),
        (2, 800, false),
        (3, 800, true),
    ] {
        p.begin_transaction().unwrap();
        for i in 0..n {
            let v = format!("t{t}-{i}-{pad}");
            send(&p, "big", 0, &v);
            everything.insert(v.clone());
            if commit {
                committed.insert(v);
            }
        }
        p.flush(TXN_TIMEOUT).unwrap();
        if commit {
            p.commit_transaction(TXN_TIMEOUT).unwrap();
        } else {
            p.abort_transaction(TXN_TIMEOUT).unwrap();
        }
    }
    drop(p);
    broker.engine.run_remote_round().unwrap();
    broker.engine.run_local_retention();
    let o = broker.engine.offsets("big", 0).unwrap();
    assert!(
        o.local_log_start_offset > 3000,
        "most data is only in the bucket: {o:?}"
    );
    let rc = read_values(
        &consumer(&broker.addr, "read_committed"),
        "big",
        1,
        committed.len(),
    );
    assert_eq!(rc.len(), committed.len(), "each committed record once");
    assert!(set(&rc) == committed, "exactly the committed records");
    let ru = read_values(
        &consumer(&broker.addr, "read_uncommitted"),
        "big",
        1,
        everything.len(),
    );
    assert_eq!(ru.len(), everything.len(), "each record once");
    assert!(set(&ru) == everything, "every record");
    broker.stop();
}

/// Every `.txnindex` file under `dir` (recursively), decoded, by marker
/// offset.
fn txn_index_entries(dir: &std::path::Path) -> Vec<tierlog::format::producer_snapshot::AbortedTxn> {
    let mut out = Vec::new();
    for path in files_with_ext(dir, "txnindex") {
        let bytes = std::fs::read(&path).unwrap();
        out.extend(tierlog::format::txn_index::decode_txn_index(&bytes).unwrap());
    }
    out.sort_by_key(|a| a.last_offset);
    out
}

fn files_with_ext(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_with_ext(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out
}

fn remove_files(dir: &std::path::Path, ext: &str) -> usize {
    let doomed = files_with_ext(dir, ext);
    for p in &doomed {
        std::fs::remove_file(p).unwrap();
    }
    doomed.len()
}

/// The aborted transactions of a partition live in its segments'
/// `.txnindex` files (Kafka's format): with every producer snapshot
/// deleted (the producer state is then rebuilt from the last two segments
/// only), read_committed still drops every aborted record; with the
/// `.txnindex` files deleted too, the broker rebuilds them from the
/// markers at open.
#[test]
fn the_txnindex_alone_filters_aborted_records_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("hot", 1, &common::configs(&[("segment.bytes", "4096")]))
        .unwrap();
    let (committed, everything) = alternate_commit_abort(&broker.addr, "txn-hot", "hot", 12, 'y');
    let segments = broker
        .engine
        .with_log("hot", 0, |l| Ok(l.segment_count()))
        .unwrap();
    assert!(segments > 4, "{segments} segments");
    broker.stop();
    let pdir = dir.path().join("hot-0");
    let written = txn_index_entries(&pdir);
    assert_eq!(written.len(), 6, "one entry per ABORT marker: {written:?}");
    assert!(written.iter().all(|a| a.first_offset < a.last_offset));
    assert!(remove_files(&pdir, "snapshot") > 0);

    let broker = TestBroker::start(dir.path());
    let rc = read_values(
        &consumer(&broker.addr, "read_committed"),
        "hot",
        1,
        committed.len(),
    );
    assert_eq!(set(&rc), committed);
    assert_eq!(rc.len(), committed.len());
    broker.stop();

    // Both gone: rebuilt from the markers when the log opens.
    remove_files(&pdir, "snapshot");
    assert_eq!(remove_files(&pdir, "txnindex"), segments);
    let broker = TestBroker::start(dir.path());
    assert_eq!(txn_index_entries(&pdir), written, "rebuilt as written");
    let rc = read_values(
        &consumer(&broker.addr, "read_committed"),
        "hot",
        1,
        committed.len(),
    );
    assert_eq!(set(&rc), committed);
    let ru = read_values(
        &consumer(&broker.addr, "read_uncommitted"),
        "hot",
        1,
        everything.len(),
    );
    assert_eq!(set(&ru), everything);
    broker.stop();
}

/// A producer that dies mid-transaction: read_committed consumers stay
/// below its transaction until `transaction.timeout.ms` passes, then the
/// coordinator aborts it and they move past (its records never shown).
#[test]
fn a_producer_killed_mid_transaction_is_aborted_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let broker = TestBroker::start_with_clock(dir.path(), |_| {}, clock.clone());
    broker
        .engine
        .create_topic("dead", 1, &Default::default())
        .unwrap();
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("transactional.id", "txn-dead")
        .set("transaction.timeout.ms", "20000")
        .create()
        .unwrap();
    p.init_transactions(TXN_TIMEOUT).unwrap();
    p.begin_transaction().unwrap();
    send_all(&p, "dead", "lost", 1, 3);
    p.flush(TXN_TIMEOUT).unwrap();
    // Killed: it never ends its transaction.
    std::mem::forget(p);
    let mut plain = common::batch(0, 2, 10, T0);
    broker.engine.append("dead", 0, &mut plain).unwrap();
    assert_eq!(broker.engine.last_stable_offset("dead", 0).unwrap(), 0);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(broker.txn_ticks.run_now());
    assert_eq!(
        broker.engine.last_stable_offset("dead", 0).unwrap(),
        0,
        "not timed out yet"
    );
    clock.advance(20_000);
    rt.block_on(broker.txn_ticks.run_now());
    assert_eq!(
        broker.engine.last_stable_offset("dead", 0).unwrap(),
        6,
        "the ABORT marker at 5"
    );
    let rc = read_values(&consumer(&broker.addr, "read_committed"), "dead", 1, 2);
    assert_eq!(rc.len(), 2, "only the plain records: {rc:?}");
    assert!(rc.iter().all(|v| v.starts_with("value-")), "{rc:?}");
    broker.stop();
}

/// Consume-transform-produce with a crash in the middle: a pipeline
/// commits three transactions, dies with a fourth open, the broker
/// restarts, and a new instance (same transactional.id and group) fences
/// the old one and finishes. Every input appears exactly once in the
/// committed output.
#[test]
fn consume_transform_produce_restarted_midway_outputs_every_input_once() {
    let dir = tempfile::tempdir().unwrap();
    let start = || TestBroker::start_with(dir.path(), |c| c.group_initial_rebalance_delay_ms = 0);
    let broker = start();
    broker
        .engine
        .create_topic("src", 1, &Default::default())
        .unwrap();
    broker
        .engine
        .create_topic("dst", 1, &Default::default())
        .unwrap();
    let mut bytes = common::batch(0, 30, 10, T0);
    broker.engine.append("src", 0, &mut bytes).unwrap();

    let pipeline = |addr: &str| {
        let input: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("group.id", "eos")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        input.subscribe(&["src"]).unwrap();
        let p = txn_producer(addr, "eos-pipeline");
        p.init_transactions(TXN_TIMEOUT).unwrap();
        (input, p)
    };
    // One transaction of `n` inputs; commit or leave it open.
    let step = |input: &BaseConsumer,
                p: &ThreadedProducer<DefaultProducerContext>,
                n: usize,
                commit: bool| {
        p.begin_transaction().unwrap();
        let (mut seen, mut next) = (0, 0);
        let deadline = Instant::now() + DEADLINE;
        while seen < n {
            assert!(Instant::now() < deadline, "consumed {seen} of {n}");
            match input.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    send(p, "dst", 0, &format!("out-{}", m.offset()));
                    next = m.offset() + 1;
                    seen += 1;
                }
                Some(Err(e)) => panic!("{e}"),
                None => {}
            }
        }
        p.flush(TXN_TIMEOUT).unwrap();
        if commit {
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset("src", 0, Offset::Offset(next))
                .unwrap();
            let meta = input.group_metadata().unwrap();
            p.send_offsets_to_transaction(&offsets, &meta, TXN_TIMEOUT)
                .unwrap();
            p.commit_transaction(TXN_TIMEOUT).unwrap();
        }
    };

    let (input, p) = pipeline(&broker.addr);
    for _ in 0..3 {
        step(&input, &p, 5, true);
    }
    step(&input, &p, 5, false); // dies with this one open
    std::mem::forget(p);
    drop(input);
    broker.stop();

    let broker = start();
    let (input, p) = pipeline(&broker.addr);
    for _ in 0..3 {
        step(&input, &p, 5, true);
    }
    let out = read_values(&consumer(&broker.addr, "read_committed"), "dst", 1, 30);
    let want: BTreeSet<String> = (0..30).map(|i| format!("out-{i}")).collect();
    assert_eq!(out.len(), 30, "each input once: {out:?}");
    assert_eq!(set(&out), want);
    drop((p, input));
    broker.stop();
}
