//! Transparent remote reads: offsets only the bucket holds are served from
//! it, byte for byte, against a real S3 protocol server (in-process s3s, or
//! moto in CI via TIERLOG_TEST_S3_ENDPOINT), through the engine and through
//! librdkafka.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::broker::TestBroker;
use common::s3::S3;
use common::{
    batch_with_ts, configs, open_with_remote, read_all_checked, transactional, value_for,
};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tierlog::catalog::{RemoteSegment, RemoteState};
use tierlog::clock::ManualClock;
use tierlog::remote::faults::FaultStore;
use tierlog::remote::fetcher::FetchSettings;
use tierlog::remote::keys::{segment_key, SegmentObject};
use tierlog::remote::uploader::UploadSettings;
use tierlog::{Engine, ErrorKind, RemoteSettings, TimestampAndOffset};

const T0: i64 = 1_700_000_000_000;
const CHUNK: u64 = 8 * 1024;

/// An engine tiering to `store` with small chunks (8 KiB) and checksum
/// blocks (4 KiB), so small segments span several chunks.
fn engine(
    dir: &std::path::Path,
    clock: &ManualClock,
    store: Arc<dyn ObjectStore>,
    prefetch: usize,
) -> Engine {
    open_with_remote(
        dir,
        clock,
        RemoteSettings {
            task_interval_ms: 0,
            upload: UploadSettings {
                part_size: 5 << 20,
                crc_block_bytes: 4096,
                ..Default::default()
            },
            fetch: FetchSettings {
                chunk_bytes: CHUNK,
                prefetch_chunks: prefetch,
                cache_bytes: 64 << 20,
                ..Default::default()
            },
            store: Some(store),
            ..RemoteSettings::new("test://store")
        },
    )
}

/// A topic of ~40 KiB segments with everything but the active segment
/// tiered and deleted locally: `n` batches of 5 records of 300 bytes,
/// record at offset o stamped T0 + 10 o. Returns the log end offset.
fn tiered_topic(engine: &Engine, topic: &str, n: usize) -> i64 {
    engine
        .create_topic(
            topic,
            1,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "40000"),
                ("local.retention.bytes", "0"),
                ("retention.ms", "-1"), // brokers run on the system clock
            ]),
        )
        .unwrap();
    let mut next = 0;
    for _ in 0..n {
        let mut b = batch_with_ts(next, 5, 300, |o| T0 + 10 * o);
        next = engine.append(topic, 0, &mut b).unwrap().last_offset + 1;
    }
    // Tier, then (next round) drop the local copies of tiered segments.
    for _ in 0..3 {
        engine.run_remote_round().unwrap();
    }
    next
}

fn finished(engine: &Engine, topic: &str) -> Vec<RemoteSegment> {
    engine
        .remote_segments(topic, 0)
        .unwrap()
        .into_iter()
        .filter(|r| r.state == RemoteState::CopyFinished)
        .collect()
}

#[test]
fn offsets_only_the_bucket_holds_read_back_byte_for_byte() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, s3.store(), 2);
    let end = tiered_topic(&engine, "t", 200);

    let remote = finished(&engine, "t");
    assert!(remote.len() >= 4, "{} segments tiered", remote.len());
    let o = engine.offsets("t", 0).unwrap();
    assert_eq!(o.log_start_offset, 0, "the log starts in the bucket");
    assert_eq!(o.log_end_offset, end);
    assert!(
        o.local_log_start_offset > remote[2].last_offset,
        "local copies of tiered segments are gone: {o:?}"
    );
    assert_eq!(
        o.last_tiered_offset,
        Some(remote.last().unwrap().last_offset)
    );
    // Every record from offset 0, crossing segment and remote/local
    // boundaries, values checked (read_all_checked).
    let stats = engine.remote_fetcher().unwrap().stats();
    assert_eq!(
        stats.chunk_gets.load(Ordering::SeqCst),
        0,
        "nothing read yet"
    );
    let records = read_all_checked(&engine, "t", 0, 0);
    assert_eq!(records.len() as i64, end);
    assert!(
        stats.chunk_gets.load(Ordering::SeqCst) > 0,
        "offsets below the local start came from the bucket"
    );

    // Reads starting mid-segment (index lookup) and on a boundary.
    for &offset in &[
        3,
        remote[1].base_offset + 7,
        remote[1].last_offset,
        remote.last().unwrap().last_offset,
        o.local_log_start_offset,
    ] {
        let read = engine.read("t", 0, offset, 10_000).unwrap();
        let batches: Vec<_> = tierlog::format::Batches::new(&read.records)
            .map(|b| b.unwrap().1)
            .collect();
        assert!(!batches.is_empty());
        assert!(
            batches[0].base_offset <= offset && offset <= batches[0].last_offset(),
            "read at {offset} starts with the batch holding it"
        );
        assert!(read.records.len() <= 10_000);
        assert_eq!(read.log_start_offset, 0);
    }
    // Not even min_one: a limit below one batch gives nothing.
    let read = engine.read_bounded("t", 0, 0, 100, false).unwrap();
    assert!(read.records.is_empty());

    // By timestamp, in the remote part.
    let target = remote[1].base_offset + 2;
    assert_eq!(
        engine
            .offset_for_timestamp("t", 0, T0 + 10 * target - 5)
            .unwrap(),
        Some(TimestampAndOffset {
            offset: target,
            timestamp: T0 + 10 * target,
        })
    );
    assert_eq!(
        engine.offset_for_timestamp("t", 0, 0).unwrap(),
        Some(TimestampAndOffset {
            offset: 0,
            timestamp: T0,
        })
    );
    assert_eq!(
        engine.max_timestamp_offset("t", 0).unwrap(),
        Some(TimestampAndOffset {
            offset: end - 1,
            timestamp: T0 + 10 * (end - 1),
        })
    );

    // Below the log start: out of range.
    let e = engine.read("t", 0, -1, 1000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);

    // After a restart the map of remote segments comes from the catalog.
    engine.shutdown().unwrap();
    drop(engine);
    let engine = self::engine(dir.path(), &clock, s3.store(), 2);
    assert_eq!(engine.offsets("t", 0).unwrap().log_start_offset, 0);
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len() as i64, end);
}

#[test]
fn concurrent_readers_of_a_cold_range_share_one_get_per_chunk() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let counting = Arc::new(FaultStore::new(s3.store()));
    let faults = Arc::clone(&counting.faults);
    let engine = Arc::new(engine(dir.path(), &clock, counting, 2));
    tiered_topic(&engine, "t", 200);
    let remote = finished(&engine, "t");
    let local_start = engine.offsets("t", 0).unwrap().local_log_start_offset;
    let chunks: u64 = remote
        .iter()
        .filter(|s| s.base_offset < local_start)
        .map(|s| s.log_size.div_ceil(CHUNK))
        .sum();

    let gets_before = faults.gets.load(Ordering::SeqCst);
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || read_all_checked(&engine, "t", 0, 0).len())
        })
        .collect();
    let counts: Vec<usize> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");

    let stats = engine.remote_fetcher().unwrap().stats();
    let chunk_gets = stats.chunk_gets.load(Ordering::SeqCst);
    let index_gets = stats.index_gets.load(Ordering::SeqCst);
    let gets = faults.gets.load(Ordering::SeqCst) - gets_before;
    assert_eq!(
        chunk_gets, chunks,
        "6 readers, {chunks} chunks below the local start: one GET each"
    );
    assert_eq!(gets, chunk_gets + index_gets, "every GET is accounted for");
    assert!(
        index_gets <= remote.len() as u64,
        "one .index GET per segment at most"
    );
}

#[test]
fn a_corrupt_or_missing_remote_object_is_an_error_naming_it() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, s3.store(), 0);
    tiered_topic(&engine, "t", 200);
    let remote = finished(&engine, "t");
    let store = s3.store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = |seg: &RemoteSegment, o| {
        segment_key(
            &seg.topic,
            &seg.topic_id,
            seg.partition,
            seg.base_offset,
            &seg.segment_uuid,
            o,
        )
    };

    // One flipped byte in the second chunk of segment 0's .log.
    let log_key = key(&remote[0], SegmentObject::Log);
    let mut bytes = rt
        .block_on(async { store.get(&log_key).await.unwrap().bytes().await.unwrap() })
        .to_vec();
    bytes[CHUNK as usize + 100] ^= 0x01;
    rt.block_on(store.put(&log_key, PutPayload::from(bytes.clone())))
        .unwrap();
    // The first chunk is intact and reads.
    assert!(!engine.read("t", 0, 0, 1000).unwrap().records.is_empty());
    // Reading on into the damaged chunk fails, naming the object.
    let mut failed = None;
    let mut next = 0;
    while next <= remote[0].last_offset {
        match engine.read("t", 0, next, 4000) {
            Ok(r) => {
                let last = tierlog::format::Batches::new(&r.records)
                    .map(|b| b.unwrap().1.last_offset())
                    .last()
                    .unwrap();
                next = last + 1;
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let e = failed.expect("the corrupted chunk is never served");
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains(log_key.as_ref()), "{e}");
    assert!(e.to_string().contains("CRC32C"), "{e}");

    // A truncated .index of segment 1: a mid-segment read names it.
    let index_key = key(&remote[1], SegmentObject::Index);
    rt.block_on(store.put(&index_key, PutPayload::from(vec![0u8; 5])))
        .unwrap();
    let e = engine
        .read("t", 0, remote[1].base_offset + 7, 1000)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains(index_key.as_ref()), "{e}");

    // A missing .log of segment 2.
    let gone = key(&remote[2], SegmentObject::Log);
    rt.block_on(store.delete(&gone)).unwrap();
    let e = engine
        .read("t", 0, remote[2].base_offset, 1000)
        .unwrap_err();
    assert!(e.to_string().contains(gone.as_ref()), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");

    // The rest of the log still serves.
    let read = engine.read("t", 0, remote[3].base_offset, 1000).unwrap();
    assert!(!read.records.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_consumes_from_offset_zero_through_the_bucket() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with_store(
        dir.path(),
        |c| {
            c.remote_fetch_chunk_bytes = 64 * 1024;
            c.remote_log_manager_task_interval_ms = 3_600_000;
        },
        Some(s3.store()),
    );
    broker
        .engine
        .create_topic(
            "cold",
            1,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "100000"),
                ("local.retention.bytes", "0"),
            ]),
        )
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let n = 3000usize;
    let data: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("key-{i}"), value_for(i as i64, 200 + i % 300)))
        .collect();
    let sent: Vec<_> = data
        .iter()
        .map(|(k, v)| {
            producer.send(
                FutureRecord::to("cold").key(k).payload(v),
                Duration::from_secs(30),
            )
        })
        .collect();
    for (i, s) in sent.into_iter().enumerate() {
        assert_eq!(s.await.unwrap().offset, i as i64);
    }
    let engine = Arc::clone(&broker.engine);
    tokio::task::spawn_blocking(move || {
        for _ in 0..3 {
            engine.run_remote_round().unwrap();
        }
    })
    .await
    .unwrap();
    let o = broker.engine.offsets("cold", 0).unwrap();
    assert_eq!(o.log_start_offset, 0);
    assert!(
        o.local_log_start_offset > 1000,
        "most of the log is only in the bucket: {o:?}"
    );

    // The timestamp of offset 10, as stored (read back through the bucket).
    let engine = Arc::clone(&broker.engine);
    let broker_ts10 = tokio::task::spawn_blocking(move || {
        let read = engine.read("cold", 0, 10, 1).unwrap();
        tierlog::format::decode_records(&read.records)
            .unwrap()
            .into_iter()
            .find(|r| r.offset == 10)
            .unwrap()
            .timestamp
    })
    .await
    .unwrap();
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .set("group.id", "unused")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        // ListOffsets earliest is the bucket's start.
        let (low, high) = c
            .fetch_watermarks("cold", 0, Duration::from_secs(10))
            .unwrap();
        assert_eq!((low, high), (0, n as i64));
        // By timestamp, in the bucket's range: the first record at or after
        // it (librdkafka stamps records with the produce time, so ask for
        // the timestamp the broker reports for offset 10).
        let ts10 = broker_ts10;
        let mut times = TopicPartitionList::new();
        times
            .add_partition_offset("cold", 0, Offset::Offset(ts10))
            .unwrap();
        let found = c.offsets_for_times(times, Duration::from_secs(10)).unwrap();
        let got = found.find_partition("cold", 0).unwrap().offset();
        assert!(
            matches!(got, Offset::Offset(o) if o <= 10),
            "offset for the timestamp of offset 10: {got:?}"
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("cold", 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let mut next = 0i64;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while next < n as i64 {
            assert!(std::time::Instant::now() < deadline, "stuck at {next}");
            let Some(m) = c.poll(Duration::from_millis(500)) else {
                continue;
            };
            let m = m.unwrap();
            assert_eq!(m.offset(), next);
            assert_eq!(m.key().unwrap(), format!("key-{next}").as_bytes());
            assert_eq!(
                m.payload().unwrap(),
                value_for(next, 200 + next as usize % 300).as_slice()
            );
            next += 1;
        }
    })
    .await
    .unwrap();
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_bucket_answers_within_the_remote_wait_and_listoffsets_reports_both_starts() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{
        ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(FaultStore::new(s3.store()));
    let faults = Arc::clone(&slow.faults);
    let broker = TestBroker::start_with_store(
        dir.path(),
        |c| {
            c.remote_fetch_chunk_bytes = 16 * 1024;
            c.remote_fetch_max_wait_ms = 100;
            c.remote_fetch_prefetch_chunks = 0;
            c.remote_log_manager_task_interval_ms = 3_600_000;
        },
        Some(slow),
    );
    let engine = Arc::clone(&broker.engine);
    let (end, local_start, last_tiered) = tokio::task::spawn_blocking(move || {
        let end = tiered_topic(&engine, "slow", 200);
        let o = engine.offsets("slow", 0).unwrap();
        (end, o.local_log_start_offset, o.last_tiered_offset.unwrap())
    })
    .await
    .unwrap();
    assert!(local_start > 0);

    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let topic = || TopicName(StrBytes::from_static_str("slow"));
    let fetch = |max_wait_ms: i32| {
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])])
    };
    let v = conn.version(ApiKey::Fetch, (4, 12)).unwrap();

    // Every GET now takes 2 s; the Fetch waits 100 ms for the bucket and
    // answers with no records but the partition's real offsets.
    faults.get_latency_ms.store(2_000, Ordering::SeqCst);
    let resp: FetchResponse = conn.call(ApiKey::Fetch, v, &fetch(5_000)).await.unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(
        p.records.as_ref().is_none_or(|r| r.is_empty()),
        "no data yet"
    );
    assert_eq!((p.high_watermark, p.log_start_offset), (end, 0));
    // The read went on in the background; once its chunk is cached the
    // same Fetch returns data.
    faults.get_latency_ms.store(0, Ordering::SeqCst);
    let mut got = None;
    for _ in 0..100 {
        let resp: FetchResponse = conn.call(ApiKey::Fetch, v, &fetch(5_000)).await.unwrap();
        let p = &resp.responses[0].partitions[0];
        if p.records.as_ref().is_some_and(|r| !r.is_empty()) {
            got = p.records.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.expect("the remote read completes");
    let first = tierlog::format::Batches::new(&got)
        .next()
        .unwrap()
        .unwrap()
        .1;
    assert_eq!(first.base_offset, 0);

    // ListOffsets: earliest (-2) is the bucket's start, earliest local (-4,
    // v8+) the local start, latest tiered (-5, v9) the last tiered offset.
    let lv = conn.version(ApiKey::ListOffsets, (1, 9)).unwrap();
    assert_eq!(lv, 9, "the broker serves ListOffsets v9");
    for (ts, expected) in [
        (-2i64, 0i64),
        (-4, local_start),
        (-5, last_tiered),
        (-1, end),
    ] {
        let req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts)])]);
        let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, lv, &req).await.unwrap();
        let p = &resp.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset), (0, expected), "timestamp {ts}");
    }
    drop(conn);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_first_remote_batch_keeps_the_response_within_kip_74() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with_store(
        dir.path(),
        |c| {
            c.remote_fetch_max_wait_ms = 30_000;
            c.remote_log_manager_task_interval_ms = 3_600_000;
        },
        Some(s3.store()),
    );
    let engine = Arc::clone(&broker.engine);
    tokio::task::spawn_blocking(move || {
        tiered_topic(&engine, "cold", 50);
        engine.create_topic("hot", 1, &Default::default()).unwrap();
        for i in 0..20 {
            engine
                .append("hot", 0, &mut batch_with_ts(i * 5, 5, 300, |_| T0))
                .unwrap();
        }
    })
    .await
    .unwrap();
    assert!(
        broker
            .engine
            .offsets("cold", 0)
            .unwrap()
            .local_log_start_offset
            > 0
    );

    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let v = conn.version(ApiKey::Fetch, (4, 12)).unwrap();
    let part = |topic: &'static str, max: i32| {
        FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(max)])
    };
    // The cold partition comes first and allows 500 bytes; its first batch
    // (5 records of 300 bytes) is larger, and is returned whole (KIP-74).
    // The hot partition, read against the 500 bytes reserved for it, must
    // then return nothing: the response may exceed fetch.max.bytes only by
    // that one batch.
    let fetch_max = 12_000;
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(fetch_max)
        .with_topics(vec![part("cold", 500), part("hot", 10_000)]);
    // The cold chunk is loaded first (a Fetch of that partition alone):
    // beside the hot partition's records, a chunk still loading would be
    // left for the next Fetch.
    let alone = req.clone().with_topics(vec![part("cold", 500)]);
    let _: FetchResponse = conn.call(ApiKey::Fetch, v, &alone).await.unwrap();
    let resp: FetchResponse = conn.call(ApiKey::Fetch, v, &req).await.unwrap();
    let records = |i: usize| {
        let p = &resp.responses[i].partitions[0];
        assert_eq!(p.error_code, 0);
        p.records.clone().unwrap_or_default()
    };
    let (cold, hot) = (records(0), records(1));
    let batches: Vec<_> = tierlog::format::Batches::new(&cold)
        .map(|b| b.unwrap().1)
        .collect();
    assert_eq!(batches.len(), 1, "one oversized batch from the bucket");
    assert_eq!(batches[0].base_offset, 0);
    assert!(cold.len() > 500);
    assert!(hot.is_empty(), "hot returned {} bytes", hot.len());
    assert_eq!(resp.responses[1].partitions[0].high_watermark, 100);
    assert!(cold.len() + hot.len() <= (fetch_max as usize).max(cold.len()));

    // Asked alone, the hot partition serves its data.
    let req = req.with_topics(vec![part("hot", 10_000)]);
    let resp: FetchResponse = conn.call(ApiKey::Fetch, v, &req).await.unwrap();
    let hot = resp.responses[0].partitions[0].records.clone().unwrap();
    assert!(!hot.is_empty() && hot.len() <= 10_000);
    drop(conn);
    broker.stop();
}

/// `GET path` over HTTP/1.1: the status line and the body.
async fn http_get(addr: std::net::SocketAddr, method: &str, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: tierlog\r\nAccept: text/plain\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Samples of an exposition by `name{labels}`.
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// A compacted topic `m.c` cleaned by the broker's log-cleaner job, then
/// given a dirty section below its `min.cleanable.dirty.ratio` (so no
/// other pass follows); returns (dirty ratio, first dirty offset, last
/// clean ms) as its segment files and cleaner checkpoint say.
fn cleaned_compacted_topic(engine: &Engine) -> (f64, i64, i64) {
    engine
        .create_topic(
            "m.c",
            1,
            &configs(&[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "2048"),
                ("min.cleanable.dirty.ratio", "0.9"),
            ]),
        )
        .unwrap();
    let append = |keys: std::ops::Range<u32>| {
        for k in keys {
            let mut b = tierlog::format::BatchBuilder::new();
            b.push(tierlog::format::Record::new(
                Some(format!("key-{k}").into_bytes()),
                Some(vec![b'v'; 100]),
                T0,
            ));
            engine.append("m.c", 0, &mut b.build().unwrap()).unwrap();
        }
    };
    // 100 keys once each: nothing to remove, but never cleaned, so due.
    append(0..100);
    engine.flush().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while engine
        .log_cleaner()
        .totals
        .bytes_read
        .load(Ordering::SeqCst)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the log-cleaner job cleaned nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A dirty section of a few updates: far below a ratio of 0.9.
    append(0..20);
    engine.flush().unwrap();
    engine
        .with_log("m.c", 0, |l| {
            let cp = l.cleaner_checkpoint();
            let segs: Vec<(i64, u64)> = l.segments().map(|s| (s.base_offset(), s.size())).collect();
            // Every segment but the active one is sealed and fsynced.
            let (mut clean, mut dirty) = (0u64, 0u64);
            for w in segs.windows(2) {
                if w[1].0 <= cp.first_dirty_offset {
                    clean += w[0].1;
                } else {
                    dirty += w[0].1;
                }
            }
            assert!(clean > 0 && dirty > 0, "{segs:?} {cp:?}");
            Ok((
                dirty as f64 / (clean + dirty) as f64,
                cp.first_dirty_offset,
                cp.last_clean_ms,
            ))
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_over_http_with_both_tiers_counted() {
    use kafka_protocol::messages::ApiKey;

    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with_store(
        dir.path(),
        |c| {
            c.remote_log_manager_task_interval_ms = 3_600_000;
            // The log-cleaner job looks again soon after finding nothing.
            c.log_cleaner_backoff_ms = 50;
        },
        Some(s3.store()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A service of the engine's task executor, joined by its shutdown.
    broker.engine.serve_metrics(listener);

    // Tier a topic, then read it all back: the bucket's part, then local.
    let engine = Arc::clone(&broker.engine);
    let (end, offsets, remote_bytes, tiered_log_bytes) = tokio::task::spawn_blocking(move || {
        let end = tiered_topic(&engine, "m.t", 50);
        let o = engine.offsets("m.t", 0).unwrap();
        let mut next = 0;
        let mut remote_bytes = 0;
        while next < end {
            let read = engine.read("m.t", 0, next, 1 << 20).unwrap();
            if next < o.local_log_start_offset {
                remote_bytes += read.records.len();
            }
            next = tierlog::format::Batches::new(&read.records)
                .map(|b| b.unwrap().1.last_offset() + 1)
                .last()
                .unwrap();
        }
        let tiered: u64 = finished(&engine, "m.t").iter().map(|r| r.log_size).sum();
        (end, o, remote_bytes, tiered)
    })
    .await
    .unwrap();
    let engine = Arc::clone(&broker.engine);
    let (dirty_ratio, first_dirty, last_clean_ms) =
        tokio::task::spawn_blocking(move || cleaned_compacted_topic(&engine))
            .await
            .unwrap();
    assert!(offsets.local_log_start_offset > 0 && remote_bytes > 0);
    // Connecting sends ApiVersions.
    let conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    conn.version(ApiKey::Metadata, (0, 12)).unwrap();
    drop(conn);

    let (status, body) = http_get(addr, "GET", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let m = samples(&body);
    let p = |name: &str| {
        *m.get(&format!("{name}{{topic=\"m.t\",partition=\"0\"}}"))
            .unwrap_or_else(|| panic!("{name} missing from\n{body}"))
    };
    assert_eq!(p("tierlog_log_start_offset"), 0.0);
    assert_eq!(
        p("tierlog_local_log_start_offset"),
        offsets.local_log_start_offset as f64
    );
    assert_eq!(p("tierlog_log_end_offset"), end as f64);
    assert_eq!(
        p("tierlog_last_tiered_offset"),
        offsets.last_tiered_offset.unwrap() as f64
    );
    let c = |name: &str| {
        *m.get(name)
            .unwrap_or_else(|| panic!("{name} missing from\n{body}"))
    };
    // m.t's records and m.c's 120.
    assert_eq!(c("tierlog_append_records_total"), (end + 120) as f64);
    assert_eq!(c("tierlog_read_remote_bytes_total"), remote_bytes as f64);
    assert!(c("tierlog_read_local_bytes_total") > 0.0);
    // Every tiered .log went up (plus indexes and manifests).
    assert!(c("tierlog_remote_put_bytes_total") > tiered_log_bytes as f64);
    assert!(c("tierlog_remote_get_requests_total") >= 1.0);
    assert!(c("tierlog_remote_get_bytes_total") >= remote_bytes as f64);
    assert_eq!(c("tierlog_remote_errors_total"), 0.0);
    // The connection's ApiVersions was counted.
    assert!(c("tierlog_requests_total{api=\"ApiVersions\"}") >= 1.0);
    assert!(c("tierlog_connections_opened_total") >= 1.0);
    // The log cleaner: its totals, and gauges for the compacted topic only.
    let totals = &broker.engine.log_cleaner().totals;
    assert!(c("tierlog_log_cleaner_passes_total") >= 1.0);
    assert_eq!(
        c("tierlog_log_cleaner_passes_total"),
        totals.passes.load(Ordering::SeqCst) as f64
    );
    assert_eq!(c("tierlog_log_cleaner_failures_total"), 0.0);
    let read = c("tierlog_log_cleaner_read_bytes_total");
    assert!(read > 0.0 && read == totals.bytes_read.load(Ordering::SeqCst) as f64);
    let written = c("tierlog_log_cleaner_write_bytes_total");
    assert!(written > 0.0 && written == totals.bytes_written.load(Ordering::SeqCst) as f64);
    let cp = |name: &str| {
        *m.get(&format!("{name}{{topic=\"m.c\",partition=\"0\"}}"))
            .unwrap_or_else(|| panic!("{name} missing from\n{body}"))
    };
    assert!(dirty_ratio > 0.0 && dirty_ratio < 0.9, "{dirty_ratio}");
    assert!((cp("tierlog_log_cleaner_dirty_ratio") - dirty_ratio).abs() < 1e-12);
    assert!(first_dirty > 0);
    assert_eq!(
        cp("tierlog_log_cleaner_first_dirty_offset"),
        first_dirty as f64
    );
    assert!(last_clean_ms > 0);
    assert_eq!(
        cp("tierlog_log_cleaner_last_clean_timestamp_ms"),
        last_clean_ms as f64
    );
    assert!(
        !body.contains("tierlog_log_cleaner_dirty_ratio{topic=\"m.t\""),
        "{body}"
    );

    assert_eq!(
        http_get(addr, "GET", "/nope").await.0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        http_get(addr, "POST", "/metrics").await.0,
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert!(broker
        .engine
        .tasks()
        .status()
        .iter()
        .any(|j| j.name == "metrics-listener" && j.runs == 1));
    let engine = Arc::clone(&broker.engine);
    tokio::task::spawn_blocking(move || broker.stop())
        .await
        .unwrap();
    assert!(engine.tasks().status().is_empty(), "stopped and joined");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

/// A read that may not return an oversized first batch (not the first
/// partition of a fetch, KIP-74) answers empty at that batch: it never
/// steps over the segment to later offsets (the consumer would skip it).
#[test]
fn a_read_without_min_one_never_skips_an_oversized_batch() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, s3.store(), 0);
    engine
        .create_topic(
            "big",
            1,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "16384"),
                ("local.retention.bytes", "0"),
                ("retention.ms", "-1"),
            ]),
        )
        .unwrap();
    let mut big = batch_with_ts(0, 1, 12_000, |o| T0 + o);
    engine.append("big", 0, &mut big).unwrap();
    let mut next = 1;
    while engine
        .with_log("big", 0, |l| Ok(l.segment_count()))
        .unwrap()
        < 4
    {
        let mut b = batch_with_ts(next, 5, 100, |o| T0 + o);
        next = engine.append("big", 0, &mut b).unwrap().last_offset + 1;
    }
    engine.flush().unwrap();
    for _ in 0..3 {
        engine.run_remote_round().unwrap();
    }
    assert!(engine.offsets("big", 0).unwrap().local_log_start_offset > 0);
    let r = engine.read_bounded("big", 0, 0, 1000, false).unwrap();
    assert!(
        r.records.is_empty(),
        "{} bytes of later offsets",
        r.records.len()
    );
    let r = engine.read_bounded("big", 0, 0, 1000, true).unwrap();
    let (_, h, _) = tierlog::format::batch::Batches::new(&r.records)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!((h.base_offset, h.record_count), (0, 1));
}

/// A broker whose bucket answers through a [`FaultStore`] (GET latency
/// set by the test), with 16 KiB chunks, one chunk read ahead, a remote
/// wait of 10 s and no tiering rounds of its own.
fn slow_bucket_broker(
    dir: &std::path::Path,
    s3: &S3,
) -> (TestBroker, Arc<tierlog::remote::faults::Faults>) {
    let slow = Arc::new(FaultStore::new(s3.store()));
    let faults = Arc::clone(&slow.faults);
    let broker = TestBroker::start_with_store(
        dir,
        |c| {
            c.remote_fetch_chunk_bytes = 16 * 1024;
            c.remote_fetch_max_wait_ms = 10_000;
            c.remote_fetch_prefetch_chunks = 1;
            c.remote_log_manager_task_interval_ms = 3_600_000;
        },
        Some(slow),
    );
    (broker, faults)
}

/// A consumer's Fetch of partition 0 of each `(topic, offset, partition
/// max bytes)`, waiting up to 10 s for a byte, at most `max_bytes`.
fn fetch_partitions(
    parts: &[(&'static str, i64, i32)],
    max_bytes: i32,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let topics = parts
        .iter()
        .map(|&(topic, offset, max)| {
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(topic)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max)])
        })
        .collect();
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(10_000)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(topics)
}

/// A Fetch never waits for a GET when it has other data: a tiered
/// partition whose next chunk is still loading is answered empty (with its
/// offsets) beside a local partition's records, and the client's next
/// Fetch of it alone waits for that chunk and gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_with_other_data_does_not_wait_for_a_loading_chunk() {
    use kafka_protocol::messages::{ApiKey, FetchResponse};

    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let (broker, faults) = slow_bucket_broker(dir.path(), &s3);
    let engine = Arc::clone(&broker.engine);
    let end = tokio::task::spawn_blocking(move || {
        let end = tiered_topic(&engine, "cold", 200);
        engine
            .create_topic("hot", 1, &configs(&[("retention.ms", "-1")]))
            .unwrap();
        engine
            .append("hot", 0, &mut batch_with_ts(0, 5, 300, |o| T0 + o))
            .unwrap();
        end
    })
    .await
    .unwrap();
    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let v = conn.version(ApiKey::Fetch, (4, 12)).unwrap();
    let next_after = |records: &Option<bytes::Bytes>| {
        tierlog::format::Batches::new(records.as_deref().unwrap_or_default())
            .map(|b| b.unwrap().1.next_offset())
            .last()
    };
    // Every GET takes 2 s from now. Segments here are one chunk each
    // (checksum blocks round chunks up to a whole small segment), and the
    // read-ahead keeps one chunk after the one read. The first read waits
    // for the first segment's chunk (the second's loads beside it) and
    // stops after two batches.
    faults.get_latency_ms.store(2_000, Ordering::SeqCst);
    let mut read_cold = async |offset: i64, max: i32| {
        let resp: FetchResponse = conn
            .call(
                ApiKey::Fetch,
                v,
                &fetch_partitions(&[("cold", offset, max)], 1 << 20),
            )
            .await
            .unwrap();
        next_after(&resp.responses[0].partitions[0].records).expect("records")
    };
    let a = read_cold(0, 4000).await;
    // The rest of the first segment is cached (the third's chunk starts
    // loading), then the second's.
    let b = read_cold(a, 1 << 20).await;
    let c = read_cold(b, 1 << 20).await;
    assert_eq!((b, c), (120, 240), "the first two segments");
    // The third segment's chunk is still loading: with the local
    // partition's records to answer with, the Fetch does not wait for it.
    let resp: FetchResponse = conn
        .call(
            ApiKey::Fetch,
            v,
            &fetch_partitions(&[("cold", c, 1 << 20), ("hot", 0, 1 << 20)], 1 << 20),
        )
        .await
        .unwrap();
    let cold = &resp.responses[0].partitions[0];
    let hot = &resp.responses[1].partitions[0];
    assert_eq!((cold.error_code, hot.error_code), (0, 0));
    assert_eq!(
        next_after(&cold.records),
        None,
        "no wait for the loading chunk"
    );
    assert_eq!(cold.high_watermark, end, "its real offsets");
    assert_eq!(next_after(&hot.records), Some(5), "the local records");
    // Alone, the partition waits for its chunk.
    let resp: FetchResponse = conn
        .call(
            ApiKey::Fetch,
            v,
            &fetch_partitions(&[("cold", c, 1 << 20)], 1 << 20),
        )
        .await
        .unwrap();
    let records = resp.responses[0].partitions[0].records.clone();
    let first = tierlog::format::Batches::new(records.as_deref().unwrap_or_default())
        .next()
        .expect("the next chunk's records")
        .unwrap()
        .1;
    assert_eq!(first.base_offset, c);
    faults.get_latency_ms.store(0, Ordering::SeqCst);
    drop(conn);
    broker.stop();
}

/// A Fetch that waits for one partition's remote read also returns the
/// partitions it had left for the next Fetch (their chunks were loading)
/// when their chunks arrive meanwhile: the wait is not spent answering
/// with one partition alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_waiting_for_one_remote_read_also_returns_chunks_loaded_meanwhile() {
    use kafka_protocol::messages::{ApiKey, FetchResponse};

    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let (broker, faults) = slow_bucket_broker(dir.path(), &s3);
    let engine = Arc::clone(&broker.engine);
    tokio::task::spawn_blocking(move || {
        tiered_topic(&engine, "waited", 100);
        tiered_topic(&engine, "loading", 100);
    })
    .await
    .unwrap();
    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let v = conn.version(ApiKey::Fetch, (4, 12)).unwrap();
    // Every GET takes 1 s. Offset 7 of "waited" is inside its first
    // segment where no read stopped: its read needs the `.index` object,
    // then the chunk (2 s), and the Fetch waits for it. "loading" from its
    // start only needs its first chunk: loaded in the background (1 s),
    // the partition left for the next Fetch, and cached before "waited"'s
    // read ends.
    faults.get_latency_ms.store(1_000, Ordering::SeqCst);
    let resp: FetchResponse = conn
        .call(
            ApiKey::Fetch,
            v,
            &fetch_partitions(&[("waited", 7, 1 << 20), ("loading", 0, 1 << 20)], 4 << 20),
        )
        .await
        .unwrap();
    faults.get_latency_ms.store(0, Ordering::SeqCst);
    let first_offset = |i: usize| {
        let p = &resp.responses[i].partitions[0];
        assert_eq!(p.error_code, 0);
        tierlog::format::Batches::new(p.records.as_deref().unwrap_or_default())
            .next()
            .map(|b| b.unwrap().1.base_offset)
    };
    assert_eq!(first_offset(0), Some(5), "the batch holding offset 7");
    assert_eq!(
        first_offset(1),
        Some(0),
        "the partition left for the next Fetch, read once its chunk arrived"
    );
    drop(conn);
    broker.stop();
}

/// Kafka's KIP-1058 flag: the catalog records each tiered segment's
/// `.txnindex` size and CRC32C, so a read_committed search of tiered
/// segments GETs only the non-empty ones (most segments have no aborted
/// transaction), checks them against the catalog, and names one that is
/// damaged or missing.
#[test]
fn only_non_empty_txn_indexes_are_read_from_the_bucket() {
    use tierlog::format::records::ControlType;
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let counting = Arc::new(FaultStore::new(s3.store()));
    let faults = Arc::clone(&counting.faults);
    let engine = engine(dir.path(), &clock, counting, 0);
    tiered_topic(&engine, "t", 0);
    let mut next = 0;
    let plain = |engine: &Engine, n: usize, next: &mut i64| {
        for _ in 0..n {
            let mut b = batch_with_ts(*next, 5, 300, |o| T0 + 10 * o);
            *next = engine.append("t", 0, &mut b).unwrap().last_offset + 1;
        }
    };
    plain(&engine, 40, &mut next);
    // One aborted transaction of two batches, in the third segment or so.
    let first = next;
    for seq in [0, 5] {
        let mut b = transactional(batch_with_ts(next, 5, 300, |o| T0 + 10 * o), 9, seq);
        next = engine.append("t", 0, &mut b).unwrap().last_offset + 1;
    }
    let marker = engine
        .append_marker("t", 0, 9, 0, ControlType::Abort, 0)
        .unwrap();
    next = marker + 1;
    plain(&engine, 160, &mut next);
    for _ in 0..3 {
        engine.run_remote_round().unwrap();
    }
    let remote = finished(&engine, "t");
    let local_start = engine.offsets("t", 0).unwrap().local_log_start_offset;
    assert!(
        remote.len() >= 4 && local_start > marker,
        "{} tiered, local start {local_start}",
        remote.len()
    );
    let recorded: Vec<u64> = remote
        .iter()
        .map(|s| s.txnindex.expect("recorded at upload").size)
        .collect();
    let with_entries: Vec<&RemoteSegment> = remote
        .iter()
        .filter(|s| s.txnindex.is_some_and(|t| t.size > 0))
        .collect();
    assert_eq!(with_entries.len(), 1, "sizes {recorded:?}");
    let txn_seg = with_entries[0];
    assert!(txn_seg.base_offset <= marker && marker <= txn_seg.last_offset);

    // Nothing cached yet: past the segment holding the transaction, every
    // tiered segment's index is recorded empty, so the search makes no GET
    // at all; from the start, one GET for the one non-empty index and
    // none for the others.
    let gets_before = faults.gets.load(Ordering::SeqCst);
    assert!(engine
        .aborted_txns("t", 0, txn_seg.last_offset + 1, i64::MAX)
        .unwrap()
        .is_empty());
    assert_eq!(faults.gets.load(Ordering::SeqCst), gets_before);
    let aborted = engine.aborted_txns("t", 0, 0, i64::MAX).unwrap();
    assert_eq!(faults.gets.load(Ordering::SeqCst) - gets_before, 1);
    assert_eq!(aborted.len(), 1, "{aborted:?}");
    assert_eq!(aborted[0].producer_id, 9);
    assert_eq!(aborted[0].first_offset, first);
    assert_eq!(aborted[0].last_offset, marker);

    // Reopened (nothing cached), with that object damaged (same size, one
    // bit flipped): the search fails naming it; then with it missing
    // (the catalog records it, so it is not taken for a segment tiered
    // before `.txnindex` objects existed).
    let key = segment_key(
        &txn_seg.topic,
        &txn_seg.topic_id,
        txn_seg.partition,
        txn_seg.base_offset,
        &txn_seg.segment_uuid,
        SegmentObject::TxnIndex,
    );
    engine.shutdown().unwrap();
    drop(engine);
    let engine = self::engine(dir.path(), &clock, s3.store(), 0);
    let store = s3.store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut bad = rt
        .block_on(async { store.get(&key).await.unwrap().bytes().await.unwrap() })
        .to_vec();
    bad[10] ^= 0x01;
    rt.block_on(store.put(&key, PutPayload::from(bad))).unwrap();
    let e = engine.aborted_txns("t", 0, 0, i64::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains(key.as_ref()), "{e}");
    assert!(e.to_string().contains("CRC32C"), "{e}");
    rt.block_on(store.delete(&key)).unwrap();
    let e = engine.aborted_txns("t", 0, 0, i64::MAX).unwrap_err();
    assert!(e.to_string().contains(key.as_ref()), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    engine.shutdown().unwrap();
}
