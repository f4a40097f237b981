//! Client quotas (KIP-13, KIP-55, KIP-124, KIP-546) against an in-process
//! broker: AlterClientQuotas / DescribeClientQuotas with their checks and
//! filters, quotas surviving a restart, `tierlog quota`, and throttling
//! seen by real clients: `throttle_time_ms` in Produce, Fetch and other
//! responses, the connection held back (KIP-219 mute, or the response
//! delayed for an older version), every byte still delivered and nobody
//! disconnected; librdkafka producers, one limited and one not.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::broker::TestBroker;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tierlog::client::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_tierlog");

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// An AlterClientQuotas entry: `entity` as (type, name; `None` = default),
/// `ops` as (key, value; `None` = remove).
fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, Option<f64>)]) -> EntryData {
    EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(s(t))
                        .with_entity_name(n.map(s))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, v)| match v {
                    Some(v) => OpData::default().with_key(s(k)).with_value(*v),
                    None => OpData::default().with_key(s(k)).with_remove(true),
                })
                .collect(),
        )
}

async fn alter(
    conn: &mut Connection,
    entries: Vec<EntryData>,
    validate_only: bool,
) -> Vec<(i16, String)> {
    let req = AlterClientQuotasRequest::default()
        .with_entries(entries)
        .with_validate_only(validate_only);
    let resp: AlterClientQuotasResponse =
        conn.call(ApiKey::AlterClientQuotas, 1, &req).await.unwrap();
    resp.entries
        .iter()
        .map(|e| {
            (
                e.error_code,
                e.error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// Described entities as sorted text lines: `user=alice client-id=<default>
/// consumer_byte_rate=2048 …`.
async fn describe(
    conn: &mut Connection,
    filter: &[(&str, i8, Option<&str>)],
    strict: bool,
) -> Result<Vec<String>, i16> {
    let req = DescribeClientQuotasRequest::default()
        .with_strict(strict)
        .with_components(
            filter
                .iter()
                .map(|(t, m, n)| {
                    ComponentData::default()
                        .with_entity_type(s(t))
                        .with_match_type(*m)
                        .with_match(n.map(s))
                })
                .collect(),
        );
    let resp: DescribeClientQuotasResponse = conn
        .call(ApiKey::DescribeClientQuotas, 1, &req)
        .await
        .unwrap();
    if resp.error_code != 0 {
        return Err(resp.error_code);
    }
    let mut lines: Vec<String> = resp
        .entries
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let mut parts: Vec<String> = e
                .entity
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.entity_type.as_str(),
                        p.entity_name.as_deref().unwrap_or("<default>")
                    )
                })
                .collect();
            let mut values: Vec<String> = e
                .values
                .iter()
                .map(|v| format!("{}={}", v.key.as_str(), v.value))
                .collect();
            values.sort();
            parts.extend(values);
            parts.join(" ")
        })
        .collect();
    lines.sort();
    Ok(lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_altered_described_checked_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    let entries = || {
        vec![
            entry(
                &[("user", Some("alice"))],
                &[("producer_byte_rate", Some(1024.0))],
            ),
            entry(
                &[("user", Some("alice")), ("client-id", None)],
                &[
                    ("consumer_byte_rate", Some(2048.0)),
                    ("request_percentage", Some(12.5)),
                ],
            ),
            entry(
                &[("client-id", None)],
                &[("producer_byte_rate", Some(100.0))],
            ),
        ]
    };
    // validate_only checks and changes nothing.
    let results = alter(&mut conn, entries(), true).await;
    assert!(results.iter().all(|(code, _)| *code == 0), "{results:?}");
    assert_eq!(
        describe(&mut conn, &[], false).await.unwrap(),
        Vec::<String>::new()
    );

    let results = alter(&mut conn, entries(), false).await;
    assert!(results.iter().all(|(code, _)| *code == 0), "{results:?}");
    let all = vec![
        "client-id=<default> producer_byte_rate=100".to_string(),
        "user=alice client-id=<default> consumer_byte_rate=2048 request_percentage=12.5"
            .to_string(),
        "user=alice producer_byte_rate=1024".to_string(),
    ];
    assert_eq!(describe(&mut conn, &[], false).await.unwrap(), all);

    // Filters: exact, default, any; strict keeps only entities with
    // exactly the filtered parts.
    assert_eq!(
        describe(&mut conn, &[("user", 0, Some("alice"))], false)
            .await
            .unwrap(),
        all[1..].to_vec()
    );
    assert_eq!(
        describe(&mut conn, &[("user", 0, Some("alice"))], true)
            .await
            .unwrap(),
        all[2..].to_vec()
    );
    assert_eq!(
        describe(&mut conn, &[("client-id", 1, None)], true)
            .await
            .unwrap(),
        all[..1].to_vec()
    );
    assert_eq!(
        describe(&mut conn, &[("client-id", 2, None)], false)
            .await
            .unwrap(),
        all[..2].to_vec()
    );
    assert_eq!(
        describe(&mut conn, &[("user", 0, Some("bob"))], false)
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    let invalid = ResponseError::InvalidRequest.code();
    assert_eq!(
        describe(&mut conn, &[("group", 2, None)], false).await,
        Err(invalid)
    );
    assert_eq!(
        describe(&mut conn, &[("user", 0, None)], false).await,
        Err(invalid),
        "an exact match needs a name"
    );

    // Refusals, each for its entry only: the valid one beside them applies.
    let results = alter(
        &mut conn,
        vec![
            entry(
                &[("user", Some("x"))],
                &[("controller_mutation_rate", Some(1.0))],
            ),
            entry(&[("user", Some("x"))], &[("producer_byte_rate", Some(0.0))]),
            entry(
                &[("user", Some("x"))],
                &[("producer_byte_rate", Some(10.5))],
            ),
            entry(
                &[("ip", Some("10.0.0.1"))],
                &[("producer_byte_rate", Some(1.0))],
            ),
            entry(
                &[("user", Some("x")), ("user", Some("y"))],
                &[("producer_byte_rate", Some(1.0))],
            ),
            entry(&[], &[("producer_byte_rate", Some(1.0))]),
            entry(
                &[("user", Some("x"))],
                &[
                    ("producer_byte_rate", Some(1.0)),
                    ("producer_byte_rate", Some(2.0)),
                ],
            ),
            entry(
                &[("client-id", Some("valid"))],
                &[("request_percentage", Some(50.0))],
            ),
        ],
        false,
    )
    .await;
    for (i, (code, message)) in results.iter().enumerate().take(7) {
        assert_eq!(*code, invalid, "entry {i}: {message}");
        assert!(!message.is_empty(), "entry {i} says why");
    }
    assert_eq!(results[7].0, 0, "{results:?}");

    // Removal.
    let results = alter(
        &mut conn,
        vec![
            entry(&[("user", Some("alice"))], &[("producer_byte_rate", None)]),
            entry(
                &[("client-id", Some("valid"))],
                &[("request_percentage", None)],
            ),
        ],
        false,
    )
    .await;
    assert!(results.iter().all(|(code, _)| *code == 0), "{results:?}");
    assert_eq!(
        describe(&mut conn, &[], false).await.unwrap(),
        all[..2].to_vec()
    );

    // Durable: the catalog keeps them across a restart.
    drop(conn);
    broker.stop();
    let broker = TestBroker::start(dir.path());
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    assert_eq!(
        describe(&mut conn, &[], false).await.unwrap(),
        all[..2].to_vec()
    );
}

/// A Produce of one batch of `count` records of `value_len` bytes.
fn produce(topic: &str, count: usize, value_len: usize) -> ProduceRequest {
    let batch = common::batch(0, count, value_len, 1_700_000_000_000);
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.into()))])])
}

/// Send `req` at `version`: the response and how long it took.
async fn timed<Req, Resp>(
    conn: &mut Connection,
    api: ApiKey,
    version: i16,
    req: &Req,
) -> (Resp, Duration)
where
    Req: kafka_protocol::protocol::Encodable,
    Resp: kafka_protocol::protocol::Decodable,
{
    let started = Instant::now();
    let resp = conn.call(api, version, req).await.unwrap();
    (resp, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_over_its_quota_is_throttled_and_muted_never_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    // Two windows of 1 s: the rate is measured over about the last second
    // or two, so a test sees throttling within a few requests.
    let broker = TestBroker::start_with(dir.path(), |c| c.quota_window_num = 2);
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let mut admin = Connection::connect(&broker.addr).await.unwrap();
    let results = alter(
        &mut admin,
        vec![entry(
            &[("client-id", Some("slow"))],
            &[("producer_byte_rate", Some(100_000.0))],
        )],
        false,
    )
    .await;
    assert_eq!(results[0].0, 0, "{results:?}");

    let mut slow = Connection::connect(&broker.addr).await.unwrap();
    slow.set_client_id("slow");
    let mut fast = Connection::connect(&broker.addr).await.unwrap();
    fast.set_client_id("fast");
    // 100 records of 900 bytes: about 92 KB a request, the quota's 100 KB/s
    // over the 1 s minimum window is passed by the second one.
    let req = produce("t", 100, 900);
    let mut throttles = Vec::new();
    let mut latencies = Vec::new();
    for _ in 0..4 {
        let (resp, took): (ProduceResponse, _) = timed(&mut slow, ApiKey::Produce, 9, &req).await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        throttles.push(resp.throttle_time_ms);
        latencies.push(took);
        // The unlimited client on the same broker is never throttled.
        let (resp, _): (ProduceResponse, _) = timed(&mut fast, ApiKey::Produce, 9, &req).await;
        assert_eq!(
            resp.throttle_time_ms, 0,
            "the unlimited client is throttled"
        );
    }
    assert_eq!(throttles[0], 0, "within quota at first: {throttles:?}");
    assert!(
        throttles[1] > 0,
        "over quota, throttle_time_ms is set: {throttles:?}"
    );
    // KIP-219 (Produce v9): the throttled response came at once, and the
    // next request waited out the throttle (the connection was muted).
    for i in 1..3 {
        if throttles[i] > 0 {
            let muted = Duration::from_millis(throttles[i] as u64 * 8 / 10);
            assert!(
                latencies[i + 1] >= muted,
                "request {} answered after {:?}, though the previous one was throttled {} ms",
                i + 1,
                latencies[i + 1],
                throttles[i]
            );
        }
    }
    // Every record is appended and the connection still serves.
    assert_eq!(broker.engine.offsets("t", 0).unwrap().log_end_offset, 800);
    let _: MetadataResponse = slow
        .call(ApiKey::Metadata, 9, &MetadataRequest::default())
        .await
        .unwrap();

    // An older client (Produce v5, before KIP-219): its throttled response
    // itself is held back for the throttle time.
    let mut old = Connection::connect(&broker.addr).await.unwrap();
    old.set_client_id("slow");
    let mut throttled = false;
    for _ in 0..3 {
        let (resp, took): (ProduceResponse, _) = timed(&mut old, ApiKey::Produce, 5, &req).await;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
        if resp.throttle_time_ms > 0 {
            assert!(
                took >= Duration::from_millis(resp.throttle_time_ms as u64 * 8 / 10),
                "a v5 response throttled {} ms came after {took:?}",
                resp.throttle_time_ms
            );
            throttled = true;
            break;
        }
    }
    assert!(throttled, "the v5 client went over its quota too");

    // Kafka's throttle-time, by quota type, in the metrics.
    let metrics = broker.engine.metrics();
    assert!(metrics.quota_throttled[0].get() >= 2);
    assert!(metrics.quota_throttle_time_ms[0].get() > 0);
    assert_eq!(metrics.quota_throttled[1].get(), 0, "no fetch quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_over_its_quota_gets_all_its_records_then_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.quota_window_num = 2);
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let mut admin = Connection::connect(&broker.addr).await.unwrap();
    for _ in 0..2 {
        let (resp, _): (ProduceResponse, _) =
            timed(&mut admin, ApiKey::Produce, 9, &produce("t", 100, 900)).await;
        assert_eq!(resp.throttle_time_ms, 0);
    }
    let results = alter(
        &mut admin,
        vec![entry(
            &[("user", Some("ANONYMOUS")), ("client-id", Some("reader"))],
            &[("consumer_byte_rate", Some(50_000.0))],
        )],
        false,
    )
    .await;
    assert_eq!(results[0].0, 0, "{results:?}");

    let mut reader = Connection::connect(&broker.addr).await.unwrap();
    reader.set_client_id("reader");
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(10 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(10 << 20)])]);
    let (resp, _): (FetchResponse, _) = timed(&mut reader, ApiKey::Fetch, 11, &fetch).await;
    // The whole log (about 185 KB) comes back: nothing is cut short.
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let records = p.records.as_ref().map(|r| r.len()).unwrap_or(0);
    assert!(records > 180_000, "{records} bytes of records");
    // 185 KB against 50 KB/s over at least 1 s: throttled about 2.7 s.
    assert!(
        resp.throttle_time_ms > 1000,
        "throttle_time_ms {}",
        resp.throttle_time_ms
    );
    // Fetch v11 throttles client-side (KIP-219): the connection is muted,
    // the next request waits.
    let (_, took): (MetadataResponse, _) = timed(
        &mut reader,
        ApiKey::Metadata,
        9,
        &MetadataRequest::default(),
    )
    .await;
    assert!(
        took >= Duration::from_millis(resp.throttle_time_ms as u64 * 8 / 10),
        "muted {} ms, the next request took {took:?}",
        resp.throttle_time_ms
    );
    // Counted as a fetch (consumer_byte_rate) throttle.
    assert!(broker.engine.metrics().quota_throttled[1].get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_time_over_request_percentage_is_throttled_within_one_window() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.quota_window_num = 2);
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let mut admin = Connection::connect(&broker.addr).await.unwrap();
    // 0.001 % of a thread: 10 µs of handling a second.
    let results = alter(
        &mut admin,
        vec![entry(
            &[("client-id", Some("busy"))],
            &[("request_percentage", Some(0.001))],
        )],
        false,
    )
    .await;
    assert_eq!(results[0].0, 0, "{results:?}");
    let mut busy = Connection::connect(&broker.addr).await.unwrap();
    busy.set_client_id("busy");
    let mut throttled = None;
    for _ in 0..200 {
        let (resp, _): (MetadataResponse, _) =
            timed(&mut busy, ApiKey::Metadata, 9, &MetadataRequest::default()).await;
        if resp.throttle_time_ms > 0 {
            throttled = Some(resp.throttle_time_ms);
            break;
        }
    }
    let t = throttled.expect("Metadata requests over request_percentage are throttled");
    // Kafka bounds the request-time throttle by one window (1 s).
    assert!(t <= 1000, "throttle_time_ms {t}");
    assert!(broker.engine.metrics().quota_throttled[2].get() >= 1);
    // The admin connection (another client id) is not throttled.
    let (resp, _): (MetadataResponse, _) =
        timed(&mut admin, ApiKey::Metadata, 9, &MetadataRequest::default()).await;
    assert_eq!(resp.throttle_time_ms, 0);
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tierlog_quota_sets_describes_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let b = broker.addr.as_str();
    let (ok, out, err) = cli(&[
        "quota",
        "set",
        "--user",
        "alice",
        "--producer-byte-rate",
        "1MiB",
        "--request-percentage",
        "50",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("user=alice"), "{out}");
    let (ok, _, err) = cli(&[
        "quota",
        "set",
        "--default-user",
        "--client-id",
        "etl",
        "--consumer-byte-rate",
        "2048",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&["quota", "describe", "--bootstrap", b]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "user=<default> client-id=etl\tconsumer_byte_rate=2048\n\
         user=alice\tproducer_byte_rate=1048576 request_percentage=50\n",
    );
    let (ok, out, _) = cli(&["quota", "describe", "--user", "alice", "--bootstrap", b]);
    assert!(ok);
    assert_eq!(
        out,
        "user=alice\tproducer_byte_rate=1048576 request_percentage=50\n"
    );
    // A bad value is refused with the broker's reason.
    let (ok, _, err) = cli(&[
        "quota",
        "set",
        "--user",
        "alice",
        "--request-percentage",
        "0",
        "--bootstrap",
        b,
    ]);
    assert!(!ok);
    assert!(
        err.contains("INVALID_REQUEST") || err.contains("InvalidRequest"),
        "{err}"
    );
    assert!(err.contains("request_percentage"), "{err}");
    // No entity: refused before anything is sent.
    let (ok, _, err) = cli(&[
        "quota",
        "set",
        "--producer-byte-rate",
        "1",
        "--bootstrap",
        b,
    ]);
    assert!(!ok && err.contains("--user"), "{err}");
    // Remove one key, then every key of an entity.
    let (ok, _, err) = cli(&[
        "quota",
        "remove",
        "--user",
        "alice",
        "--request-percentage",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&[
        "quota",
        "remove",
        "--default-user",
        "--client-id",
        "etl",
        "--bootstrap",
        b,
    ]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&["quota", "describe", "--bootstrap", b]);
    assert_eq!(out, "user=alice\tproducer_byte_rate=1048576\n");
    let (ok, _, err) = cli(&["quota", "remove", "--user", "nobody", "--bootstrap", b]);
    assert!(!ok && err.contains("no quota"), "{err}");
}

/// Counts librdkafka's acknowledged bytes with their times, and its
/// error callbacks (a disconnect would show there).
#[derive(Clone, Default)]
struct Acks {
    acked: Arc<Mutex<Vec<(Instant, usize)>>>,
    failed: Arc<Mutex<usize>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl rdkafka::client::ClientContext for Acks {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.errors
            .lock()
            .unwrap()
            .push(format!("{error} | {reason}"));
    }
}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        match result {
            Ok(m) => self
                .acked
                .lock()
                .unwrap()
                .push((Instant::now(), m.payload().map(|p| p.len()).unwrap_or(0))),
            Err(_) => *self.failed.lock().unwrap() += 1,
        }
    }
}

/// The check: a producer limited to 1 MB/s is held to within 20%
/// of it while an unlimited one on the same broker is not slowed, and
/// both get every record delivered without a disconnect.
#[test]
fn librdkafka_producer_limited_to_1_mb_s_is_held_there_while_another_is_not() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.quota_window_num = 2);
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut admin = Connection::connect(&broker.addr).await.unwrap();
        let results = alter(
            &mut admin,
            vec![entry(
                &[("client-id", Some("limited"))],
                &[("producer_byte_rate", Some(1_000_000.0))],
            )],
            false,
        )
        .await;
        assert_eq!(results[0].0, 0, "{results:?}");
    });
    let producer = |client_id: &str| -> (BaseProducer<Acks>, Acks) {
        let acks = Acks::default();
        let p = ClientConfig::new()
            .set("bootstrap.servers", &broker.addr)
            .set("client.id", client_id)
            .set("linger.ms", "5")
            .set("queue.buffering.max.kbytes", "1024")
            .set("message.timeout.ms", "120000")
            .create_with_context(acks.clone())
            .unwrap();
        (p, acks)
    };
    let (limited, limited_acks) = producer("limited");
    let (free, free_acks) = producer("free");
    let value = vec![b'x'; 1000];
    let started = Instant::now();
    let run = Duration::from_secs(10);
    let mut sent = [0usize; 2];
    while started.elapsed() < run {
        for (i, p) in [&limited, &free].into_iter().enumerate() {
            // Keep each producer's queue full: as fast as it may go.
            for _ in 0..200 {
                match p.send(BaseRecord::<(), [u8]>::to("t").payload(&value)) {
                    Ok(()) => sent[i] += 1,
                    Err(_) => break,
                }
            }
            p.poll(Duration::ZERO);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    limited.flush(Duration::from_secs(60)).unwrap();
    free.flush(Duration::from_secs(60)).unwrap();

    // Acknowledged bytes between 2 s and 10 s (after the first window's
    // burst), per second.
    let rate = |acks: &Acks| {
        let from = started + Duration::from_secs(2);
        let to = started + run;
        let bytes: usize = acks
            .acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, n)| n)
            .sum();
        bytes as f64 / (to - from).as_secs_f64()
    };
    let limited_rate = rate(&limited_acks);
    let free_rate = rate(&free_acks);
    println!("limited: {limited_rate:.0} B/s, unlimited: {free_rate:.0} B/s");
    // Values are 1000 of the ~1030 bytes a record takes in a request.
    assert!(
        (800_000.0..=1_200_000.0).contains(&limited_rate),
        "the limited producer ran at {limited_rate:.0} B/s, not within 20% of 1 MB/s"
    );
    assert!(
        free_rate > 2.0 * limited_rate,
        "the unlimited producer ran at {free_rate:.0} B/s beside {limited_rate:.0} B/s"
    );
    for (name, acks, n) in [
        ("limited", &limited_acks, sent[0]),
        ("free", &free_acks, sent[1]),
    ] {
        assert_eq!(
            acks.acked.lock().unwrap().len(),
            n,
            "{name}: every record acknowledged"
        );
        assert_eq!(
            *acks.failed.lock().unwrap(),
            0,
            "{name}: no delivery failed"
        );
        let errors = acks.errors.lock().unwrap();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    assert_eq!(
        broker.engine.offsets("t", 0).unwrap().log_end_offset as usize,
        sent[0] + sent[1]
    );
    assert!(broker.engine.metrics().quota_throttled[0].get() > 0);
}
