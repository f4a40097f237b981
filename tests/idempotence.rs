//! Idempotent producers: InitProducerId, sequence checks on Produce, and
//! producer state surviving restarts. First with raw requests (exact error
//! codes), then with librdkafka retrying through a broker restart.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::broker::TestBroker;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tierlog::client::Connection;
use tierlog::format::decode_records;

const T0: i64 = 1_700_000_000_000;

/// A batch of `n` records from producer `pid`/`epoch` starting at sequence
/// `seq` (the builder's batch with its producer fields patched and its CRC
/// recomputed).
fn idempotent_batch(pid: i64, epoch: i16, seq: i32, n: usize, tag: &str) -> Vec<u8> {
    let mut b = tierlog::format::BatchBuilder::new();
    for i in 0..n {
        b.push(tierlog::format::Record::new(
            None,
            Some(format!("{tag}-{i}").into_bytes()),
            T0 + i as i64,
        ));
    }
    let mut bytes = b.build().unwrap();
    bytes[43..51].copy_from_slice(&pid.to_be_bytes());
    bytes[51..53].copy_from_slice(&epoch.to_be_bytes());
    bytes[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

async fn init_producer_id(conn: &mut Connection, transactional: Option<&str>) -> (i16, i64, i16) {
    let v = conn.version(ApiKey::InitProducerId, (0, 4)).unwrap();
    let req = InitProducerIdRequest::default()
        .with_transactional_id(
            transactional.map(|t| TransactionalId(StrBytes::from_string(t.into()))),
        )
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let resp: InitProducerIdResponse = conn.call(ApiKey::InitProducerId, v, &req).await.unwrap();
    (resp.error_code, resp.producer_id.0, resp.producer_epoch)
}

/// Produce one batch to `topic`-0; (error code, base offset).
async fn produce(conn: &mut Connection, topic: &str, batch: Vec<u8>) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])]);
    let resp: ProduceResponse = conn.call(ApiKey::Produce, 9, &req).await.unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn log_end(broker: &TestBroker, topic: &str) -> i64 {
    broker.engine.offsets(topic, 0).unwrap().log_end_offset
}

const OK: i16 = 0;

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_are_acknowledged_and_gaps_refused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("idem", 1, &Default::default())
        .unwrap();
    let mut conn = Connection::connect(&broker.addr).await.unwrap();

    let (err, pid, epoch) = init_producer_id(&mut conn, None).await;
    assert_eq!((err, epoch), (OK, 0));
    let (_, other, _) = init_producer_id(&mut conn, None).await;
    assert_ne!(pid, other, "every InitProducerId gets a new id");
    let (err, txn_pid, txn_epoch) = init_producer_id(&mut conn, Some("txn")).await;
    assert_eq!(
        (err, txn_epoch),
        (OK, 0),
        "a transactional id gets its own id"
    );
    assert!(txn_pid != pid && txn_pid != other);

    let first = idempotent_batch(pid, 0, 0, 3, "a");
    assert_eq!(produce(&mut conn, "idem", first.clone()).await, (OK, 0));
    // The same batch again (a retry): acknowledged at its original offset,
    // not appended.
    assert_eq!(produce(&mut conn, "idem", first.clone()).await, (OK, 0));
    assert_eq!(log_end(&broker, "idem"), 3);
    assert_eq!(
        produce(&mut conn, "idem", idempotent_batch(pid, 0, 3, 2, "b")).await,
        (OK, 3)
    );
    // A gap (sequence 5..9 never arrived).
    let (err, _) = produce(&mut conn, "idem", idempotent_batch(pid, 0, 10, 1, "c")).await;
    assert_eq!(err, ResponseError::OutOfOrderSequenceNumber.code());
    // A new epoch starts at sequence 0; then the old epoch is fenced.
    let (err, _) = produce(&mut conn, "idem", idempotent_batch(pid, 1, 7, 1, "d")).await;
    assert_eq!(err, ResponseError::OutOfOrderSequenceNumber.code());
    let bumped = idempotent_batch(pid, 1, 0, 1, "e");
    assert_eq!(produce(&mut conn, "idem", bumped.clone()).await, (OK, 5));
    let (err, _) = produce(&mut conn, "idem", idempotent_batch(pid, 0, 5, 1, "f")).await;
    assert_eq!(err, ResponseError::InvalidProducerEpoch.code());
    assert_eq!(log_end(&broker, "idem"), 6);
    drop(conn);

    // Clean restart: the state comes from the snapshot written at shutdown.
    broker.stop();
    let broker = TestBroker::start(dir.path());
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    assert_eq!(produce(&mut conn, "idem", bumped.clone()).await, (OK, 5));
    let (err, _) = produce(&mut conn, "idem", idempotent_batch(pid, 1, 3, 1, "g")).await;
    assert_eq!(err, ResponseError::OutOfOrderSequenceNumber.code());
    let next = idempotent_batch(pid, 1, 1, 2, "h");
    assert_eq!(produce(&mut conn, "idem", next.clone()).await, (OK, 6));
    drop(conn);

    // Crash (no clean shutdown): the state is rebuilt from the log tail.
    drop(broker);
    let broker = TestBroker::start(dir.path());
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    assert_eq!(produce(&mut conn, "idem", next).await, (OK, 6));
    assert_eq!(log_end(&broker, "idem"), 8);
    let (err, fresh, _) = init_producer_id(&mut conn, None).await;
    assert_eq!(err, OK);
    assert!(fresh > other, "producer ids never repeat after a restart");
}

/// A TCP proxy in front of the broker that can swallow responses and cut
/// every connection, and be pointed at a restarted broker.
struct Proxy {
    addr: String,
    target: Arc<Mutex<String>>,
    drop_responses: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let target = Arc::new(Mutex::new(String::new()));
        let drop_responses = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (t, d, c) = (
            Arc::clone(&target),
            Arc::clone(&drop_responses),
            Arc::clone(&connections),
        );
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let to = t.lock().unwrap().clone();
                let d = Arc::clone(&d);
                let task = tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&to).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::io::copy(&mut cr, &mut sw);
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if d.load(Ordering::SeqCst) {
                                continue; // the response is lost
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Proxy {
            addr,
            target,
            drop_responses,
            connections,
            _accept: accept,
        }
    }

    fn point_at(&self, broker: &str) {
        *self.target.lock().unwrap() = broker.to_string();
    }

    fn cut_all(&self) {
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_producer_retrying_across_a_broker_restart_writes_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start().await;
    let advertise = proxy.addr.clone();
    let start = |dir: &std::path::Path| {
        let a = advertise.clone();
        TestBroker::start_with(dir, move |c| c.advertised_listener = Some(a))
    };
    let broker = start(dir.path());
    proxy.point_at(&broker.addr);
    broker
        .engine
        .create_topic("payments", 1, &Default::default())
        .unwrap();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &proxy.addr)
        .set("enable.idempotence", "true")
        // Batches, not one request per record: the 10 records sent while
        // responses are lost must reach the broker within the 5 requests
        // in flight an idempotent producer allows (with linger.ms 0 on a
        // loaded machine, one request each stopped at 25 of 30 in a CI run).
        .set("linger.ms", "5")
        .set("retry.backoff.ms", "200")
        .set("request.timeout.ms", "60000")
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    let send = |i: usize| {
        let payload = format!("payment-{i}");
        let p = producer.clone();
        async move {
            p.send(
                FutureRecord::<(), _>::to("payments")
                    .partition(0)
                    .payload(&payload),
                Duration::from_secs(120),
            )
            .await
            .map(|d| d.offset)
            .map_err(|(e, _)| e)
        }
    };
    for i in 0..20 {
        assert_eq!(send(i).await.unwrap(), i as i64);
    }

    // Responses are lost from now on: the broker appends, the producer
    // never hears of it.
    proxy.drop_responses.store(true, Ordering::SeqCst);
    // Enqueued in order now (not when a future is first polled).
    let pending: Vec<_> = (20..30)
        .map(|i| {
            let payload = format!("payment-{i}");
            producer
                .send_result(
                    FutureRecord::<(), _>::to("payments")
                        .partition(0)
                        .payload(&payload),
                )
                .map_err(|(e, _)| e)
                .expect("enqueued")
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while log_end(&broker, "payments") < 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker never got the unacknowledged records"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Restart the broker (a crash: no clean shutdown) and let the producer
    // reconnect and retry the batches it has no answer for.
    proxy.cut_all();
    drop(broker);
    let broker = start(dir.path());
    proxy.drop_responses.store(false, Ordering::SeqCst);
    proxy.point_at(&broker.addr);
    let mut offsets = Vec::new();
    for p in pending {
        let delivered = p.await.unwrap().map_err(|(e, _)| e);
        offsets.push(delivered.expect("acknowledged after the restart").offset);
    }
    assert_eq!(
        offsets,
        (20..30).collect::<Vec<i64>>(),
        "the retries got the original offsets"
    );
    assert_eq!(log_end(&broker, "payments"), 30, "no record written twice");
    let read = broker.engine.read("payments", 0, 0, 1 << 20).unwrap();
    let values: Vec<String> = decode_records(&read.records)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
        .collect();
    let expected: Vec<String> = (0..30).map(|i| format!("payment-{i}")).collect();
    assert_eq!(values, expected);
}

#[test]
fn restore_hands_out_producer_ids_above_every_one_the_bucket_knows() {
    let clock = tierlog::clock::ManualClock::new(T0);
    let lost = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let settings = || tierlog::RemoteSettings {
        task_interval_ms: 0,
        ..tierlog::RemoteSettings::new(url.clone())
    };
    let engine = common::open_with_remote(lost.path(), &clock, settings());
    engine
        .create_topic(
            "t",
            1,
            &common::configs(&[("remote.storage.enable", "true")]),
        )
        .unwrap();
    let old = engine.allocate_producer_id().unwrap();
    let mut b = idempotent_batch(old, 0, 0, 1, "old");
    assert_eq!(engine.append("t", 0, &mut b).unwrap().base_offset, 0);
    engine.with_log("t", 0, |l| l.roll(T0)).unwrap();
    assert_eq!(engine.run_remote_round().unwrap().uploaded, 1);
    engine.shutdown().unwrap();
    drop(engine);
    drop(lost);

    let fresh = tempfile::tempdir().unwrap();
    let store = tierlog::remote::RemoteStore::from_url(&url).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(tierlog::restore(fresh.path(), &store, T0))
        .unwrap();
    let engine = common::open_with_remote(fresh.path(), &clock, settings());
    let new = engine.allocate_producer_id().unwrap();
    assert!(
        new > old,
        "InitProducerId after a restore: {new} reuses {old}"
    );
    // Its first batch (epoch 0, sequence 0) is stored, not taken for a
    // duplicate of the old producer's.
    let mut b = idempotent_batch(new, 0, 0, 1, "new");
    let info = engine.append("t", 0, &mut b).unwrap();
    assert_eq!(info.base_offset, 1);
    let read = engine.read("t", 0, 1, 1 << 20).unwrap();
    let records = decode_records(&read.records).unwrap();
    assert_eq!(records[0].value.as_deref(), Some(&b"new-0"[..]));
    // The old producer's state came back with the bucket: its retry is
    // still recognised.
    let mut retry = idempotent_batch(old, 0, 0, 1, "old");
    assert_eq!(engine.append("t", 0, &mut retry).unwrap().base_offset, 0);
    assert_eq!(engine.offsets("t", 0).unwrap().log_end_offset, 2);
    engine.shutdown().unwrap();
}
