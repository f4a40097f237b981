//! Whole-broker restore (issue 18): the catalog snapshots a broker writes
//! to the bucket and `tierlog restore` using them — against the real
//! `tierlog serve` binary with librdkafka consumer groups and producers,
//! and on an engine for the damaged-snapshot fallback and `--verify`.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{err, out, Server};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tierlog::catalog::CommittedOffset;
use tierlog::clock::ManualClock;
use tierlog::format::catalog_snapshot::CatalogSnapshot;
use tierlog::format::manifest::SegmentManifest;
use tierlog::remote::restore::RestoreProgress;
use tierlog::remote::RemoteStore;
use tierlog::{RemoteSettings, RestoreOptions, SnapshotOutcome};

const BIN: &str = env!("CARGO_BIN_EXE_tierlog");
const T0: i64 = 1_700_000_000_000;

/// The catalog snapshots in a file:// bucket, oldest first.
fn snapshot_files(bucket: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(bucket.join("_catalog"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".snapshot.json"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The newest catalog snapshot in a file:// bucket, parsed and checked.
fn newest_snapshot(bucket: &Path) -> Option<CatalogSnapshot> {
    let newest = snapshot_files(bucket).pop()?;
    Some(CatalogSnapshot::from_json(&std::fs::read(newest).unwrap()).unwrap())
}

/// Wait (up to a minute) for `what` to hold.
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The highest offset of `topic`'s partition 0 in committed manifests of
/// a file:// bucket (-1 with none).
fn tiered_up_to(bucket: &Path, topic: &str) -> i64 {
    let Ok(dirs) = std::fs::read_dir(bucket) else {
        return -1;
    };
    let mut last = -1;
    for d in dirs.flatten() {
        if !d
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{topic}-"))
        {
            continue;
        }
        for f in std::fs::read_dir(d.path().join("0"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().ends_with(".manifest.json") {
                if let Ok(m) = SegmentManifest::from_json(&std::fs::read(f.path()).unwrap()) {
                    last = last.max(m.last_offset);
                }
            }
        }
    }
    last
}

/// A producer id from InitProducerId, over the wire.
fn init_producer_id(addr: &str) -> i64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut conn = tierlog::client::Connection::connect(addr).await.unwrap();
        let v = conn.version(ApiKey::InitProducerId, (0, 4)).unwrap();
        let req = InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let resp: InitProducerIdResponse =
            conn.call(ApiKey::InitProducerId, v, &req).await.unwrap();
        assert_eq!(resp.error_code, 0, "InitProducerId");
        resp.producer_id.0
    })
}

fn consumer(addr: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap()
}

/// A member of `group` subscribes to `topic` (JoinGroup, SyncGroup),
/// consumes from where the group stands until it has read offset
/// `upto - 1`, commits `upto` and leaves. Returns the first offset read.
fn consume_and_commit(addr: &str, group: &str, topic: &str, upto: i64) -> i64 {
    let c = consumer(addr, group);
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "{group} did not read {topic} up to {upto}"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert(m.offset());
                if m.offset() + 1 >= upto {
                    break;
                }
            }
            Some(Err(e)) => panic!("{group} consuming {topic}: {e}"),
            None => {}
        }
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Offset(upto))
        .unwrap();
    c.commit(&list, CommitMode::Sync).unwrap();
    c.unsubscribe();
    first.unwrap()
}

/// Standalone commits (OffsetCommit without a generation).
fn commit(addr: &str, group: &str, offsets: &[(&str, i64)]) {
    let c = consumer(addr, group);
    let mut list = TopicPartitionList::new();
    for (topic, offset) in offsets {
        list.add_partition_offset(topic, 0, Offset::Offset(*offset))
            .unwrap();
    }
    c.commit(&list, CommitMode::Sync).unwrap();
}

/// The committed offset of `group` on `topic`-0, as OffsetFetch answers.
fn committed(c: &BaseConsumer, topic: &str) -> Offset {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let got = c.committed_offsets(list, Duration::from_secs(30)).unwrap();
    got.find_partition(topic, 0).unwrap().offset()
}

/// The first record `group` reads from `topic`-0, resuming where it
/// committed: (offset, value).
fn resume(c: &BaseConsumer, topic: &str) -> (i64, String) {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Stored).unwrap();
    c.assign(&list).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "nothing read from {topic}");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                return (m.offset(), value);
            }
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            None => {}
        }
    }
}

fn produce_idempotent(addr: &str, topic: &str, values: &[&str]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for v in values {
        producer
            .send(BaseRecord::<(), str>::to(topic).payload(*v).partition(0))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(producer.in_flight_count(), 0, "every record delivered");
}

#[test]
fn a_wiped_broker_restored_from_the_bucket_resumes_both_groups_at_their_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bucket = dir.path().join("bucket");
    let url = format!("file://{}", bucket.display());
    let config = dir.path().join("tierlog.toml");
    // The default snapshot interval (a minute): what the restore finds is
    // the snapshot written at shutdown.
    std::fs::write(
        &config,
        "remote_log_manager_task_interval_ms = 100\nflush_check_interval_ms = 100\n\
         group_initial_rebalance_delay_ms = 0\n",
    )
    .unwrap();
    let env = [
        ("TIERLOG_CONFIG", config.to_str().unwrap()),
        ("TIERLOG_REMOTE", url.as_str()),
    ];
    let server = Server::start_with_env(&data, &env);

    // A tiered topic and one without tiering (a config of its own).
    for args in [
        &[
            "topic",
            "create",
            "orders",
            "--config",
            "remote.storage.enable=true",
            "--config",
            "segment.bytes=2048",
        ][..],
        &[
            "topic",
            "create",
            "audit",
            "--config",
            "retention.ms=123456789",
        ][..],
    ] {
        let o = server.run(args, None);
        assert!(o.status.success(), "{}", err(&o));
    }
    let lines = |name: &str, n: usize| -> String {
        (0..n)
            .map(|i| format!("{name}-{i:04}-{}\n", "x".repeat(40)))
            .collect()
    };
    for (topic, n) in [("orders", 200), ("audit", 30)] {
        let o = server.run(
            &["produce", topic, "--partition", "0", "--batch-lines", "10"],
            Some(&lines(topic, n)),
        );
        assert!(o.status.success(), "{}", err(&o));
    }
    // An idempotent producer (librdkafka) appends, and one more producer
    // id is handed out over the wire: the highest id before the restore.
    produce_idempotent(&server.addr, "orders", &["idem-0", "idem-1"]);
    let old_pid = init_producer_id(&server.addr);

    // Two groups consume (as members: JoinGroup, SyncGroup, Fetch) and
    // commit different offsets on both topics, then leave.
    for (group, topic, upto) in [
        ("billing", "orders", 50),
        ("billing", "audit", 30),
        ("analytics", "orders", 120),
        ("analytics", "audit", 10),
    ] {
        assert_eq!(consume_and_commit(&server.addr, group, topic, upto), 0);
    }

    // The bucket holds orders past both groups' offsets.
    wait_for("orders tiered past offset 150", || {
        tiered_up_to(&bucket, "orders") >= 150
    });
    server.stop();

    // The snapshot written at shutdown holds both groups, the topic
    // without tiering and the producer-id counter.
    let snap = newest_snapshot(&bucket).expect("a catalog snapshot in the bucket");
    let mut offsets: Vec<(String, String, i64)> = snap
        .committed_offsets
        .iter()
        .map(|o| (o.group.clone(), o.topic.clone(), o.offset))
        .collect();
    offsets.sort();
    assert_eq!(
        offsets,
        [
            ("analytics", "audit", 10),
            ("analytics", "orders", 120),
            ("billing", "audit", 30),
            ("billing", "orders", 50)
        ]
        .map(|(g, t, o)| (g.to_string(), t.to_string(), o))
    );
    assert!(snap.next_producer_id > old_pid, "{snap:?}");
    let audit = snap.topics.iter().find(|t| t.name == "audit").unwrap();
    assert_eq!(audit.log_end_offsets, vec![30]);
    // Both groups' last generations, stored Empty once their members left.
    let groups: Vec<(&str, bool)> = snap
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.as_str(),
                g.generation_id > 0 && g.emptied_ms.is_some(),
            )
        })
        .collect();
    assert_eq!(groups, [("analytics", true), ("billing", true)]);

    // The disk is lost; the bucket is not.
    std::fs::remove_dir_all(&data).unwrap();
    let restored = Command::new(BIN)
        .args(["restore", "--verify", "--data-dir"])
        .arg(&data)
        .args(["--remote", &url])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(restored.status.success(), "{}", err(&restored));
    let summary = out(&restored);
    assert!(
        summary.contains(&format!("(cluster id {})", snap.cluster_id)),
        "{summary}"
    );
    assert!(
        summary.contains("restored 2 topics, 2 partitions,")
            && summary.contains("2 groups (4 committed offsets)")
            && summary.contains("objects verified"),
        "{summary}"
    );
    // Not a terminal: plain log lines, no bar.
    assert!(
        err(&restored).contains("partition created"),
        "{}",
        err(&restored)
    );

    let server = Server::start_with_env(&data, &env);
    // The topic without tiering is back, empty, with its config, at the
    // offset where it ended.
    let o = server.run(&["topic", "describe", "audit"], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("retention.ms=123456789"), "{}", out(&o));
    let o = server.run(
        &["produce", "audit", "--partition", "0"],
        Some("after-restore\n"),
    );
    assert!(o.status.success(), "{}", err(&o));

    // Both groups' offsets are back, and each resumes exactly where it
    // committed: as a member again (the restored groups rebalance) and
    // by an assignment that asks for the stored offset.
    let billing = consumer(&server.addr, "billing");
    let analytics = consumer(&server.addr, "analytics");
    assert_eq!(committed(&billing, "orders"), Offset::Offset(50));
    assert_eq!(committed(&billing, "audit"), Offset::Offset(30));
    assert_eq!(committed(&analytics, "orders"), Offset::Offset(120));
    assert_eq!(committed(&analytics, "audit"), Offset::Offset(10));
    assert_eq!(
        consume_and_commit(&server.addr, "billing", "orders", 60),
        50
    );
    assert_eq!(
        consume_and_commit(&server.addr, "analytics", "orders", 130),
        120
    );
    assert_eq!(consume_and_commit(&server.addr, "billing", "audit", 31), 30);
    let (offset, value) = resume(&billing, "orders");
    assert_eq!(offset, 60);
    assert!(value.starts_with("orders-0060-"), "{value}");
    let (offset, value) = resume(&analytics, "orders");
    assert_eq!(offset, 130);
    assert!(value.starts_with("orders-0130-"), "{value}");

    // No producer id is handed out twice: a new one is above the old, and
    // a new idempotent producer appends.
    let new_pid = init_producer_id(&server.addr);
    assert!(
        new_pid > old_pid,
        "InitProducerId after restore: {new_pid} reuses {old_pid}"
    );
    produce_idempotent(&server.addr, "orders", &["idem-after"]);
    server.stop();
    // The restored broker is the same cluster: it goes on writing
    // snapshots, with what happened after the restore.
    let after = newest_snapshot(&bucket).unwrap();
    assert_eq!(after.cluster_id, snap.cluster_id);
    assert!(after.taken_ms > snap.taken_ms);
    assert!(
        after
            .committed_offsets
            .iter()
            .any(|o| (o.group.as_str(), o.topic.as_str(), o.offset) == ("billing", "orders", 60)),
        "{after:?}"
    );
}

#[test]
fn a_running_broker_writes_a_catalog_snapshot_every_interval_when_something_changed() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let url = format!("file://{}", bucket.display());
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[
            ("TIERLOG_REMOTE", url.as_str()),
            ("TIERLOG_CATALOG_SNAPSHOT_INTERVAL_MS", "200"),
        ],
    );
    let o = server.run(&["topic", "create", "plain"], None);
    assert!(o.status.success(), "{}", err(&o));

    let has_offset = |offset: i64| {
        newest_snapshot(&bucket).is_some_and(|s| {
            s.committed_offsets
                .iter()
                .any(|o| o.group == "g" && o.topic == "plain" && o.offset == offset)
                && s.topics.iter().any(|t| t.name == "plain")
        })
    };
    commit(&server.addr, "g", &[("plain", 3)]);
    wait_for("a snapshot with the committed offset", || has_offset(3));

    // Nothing changes: no new snapshot for several intervals.
    let before = snapshot_files(&bucket);
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(
        snapshot_files(&bucket),
        before,
        "unchanged catalog, new snapshot"
    );

    // Each change is written; only the newest five are kept.
    for offset in 4..10 {
        commit(&server.addr, "g", &[("plain", offset)]);
        wait_for("a snapshot with the new offset", || has_offset(offset));
    }
    // (Older ones are deleted right after each write.)
    wait_for("only the newest five snapshots kept", || {
        snapshot_files(&bucket).len() == 5
    });
    let kept = snapshot_files(&bucket);
    assert!(has_offset(9), "{kept:?}");
    // The broker still runs (its own snapshot cadence took no part in
    // stopping it).
    server.stop();
}

/// Run `f` again while the data directory it locks is in use: another
/// test of this binary may be spawning a process (a broker, the CLI) just
/// then, and the child holds a copy of every open descriptor, a data
/// directory's lock among them, until it execs.
fn when_unlocked<T>(mut f: impl FnMut() -> tierlog::Result<T>) -> tierlog::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(e) if e.to_string().contains("in use by another") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

/// An engine on `dir` with the file:// remote tier `url`, rounds and
/// snapshots only when asked.
fn engine_on(dir: &Path, clock: &ManualClock, url: &str) -> tierlog::Engine {
    let mut config = common::test_config(dir, clock);
    config.remote = Some(RemoteSettings {
        task_interval_ms: 0,
        ..RemoteSettings::new(url)
    });
    when_unlocked(|| tierlog::Engine::open(config.clone())).unwrap()
}

/// `tierlog::restore_with` into `dir` (see [`when_unlocked`]).
fn restore_into(
    dir: &Path,
    store: &RemoteStore,
    options: RestoreOptions<'_>,
) -> tierlog::Result<tierlog::remote::restore::RestoreReport> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    when_unlocked(|| rt.block_on(tierlog::restore_with(dir, store, T0, options)))
}

fn offset(topic: &str, offset: i64) -> CommittedOffset {
    CommittedOffset {
        topic: topic.into(),
        partition: 0,
        offset,
        leader_epoch: -1,
        metadata: Some("m".into()),
        commit_ms: T0,
    }
}

#[test]
fn restore_falls_back_past_a_damaged_newest_snapshot_and_says_why() {
    let clock = ManualClock::new(T0);
    let lost = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let engine = engine_on(lost.path(), &clock, &url);
    engine
        .create_topic("plain", 1, &common::configs(&[]))
        .unwrap();
    engine.commit_offsets("g", &[offset("plain", 5)]).unwrap();
    let SnapshotOutcome::Written(older) = engine.write_catalog_snapshot().unwrap() else {
        panic!("forced snapshot not written");
    };
    clock.advance(1_000);
    engine.commit_offsets("g", &[offset("plain", 9)]).unwrap();
    let SnapshotOutcome::Written(newer) = engine.write_catalog_snapshot().unwrap() else {
        panic!("forced snapshot not written");
    };
    assert_ne!(older, newer);
    engine.shutdown().unwrap();
    drop(engine);

    // One byte of the newest changes: a committed offset, not its checksum.
    let path = bucket.path().join(&newer);
    let text = std::fs::read_to_string(&path).unwrap();
    let damaged = text.replacen("\"offset\": 9", "\"offset\": 8", 1);
    assert_ne!(damaged, text);
    std::fs::write(&path, damaged).unwrap();

    let fresh = tempfile::tempdir().unwrap();
    let store = RemoteStore::from_url(&url).unwrap();
    let report = restore_into(fresh.path(), &store, RestoreOptions::default()).unwrap();
    assert_eq!(report.snapshot.as_deref(), Some(older.as_str()));
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.contains(&newer) && s.contains("checksum mismatch")),
        "{:?}",
        report.skipped
    );
    assert_eq!((report.groups, report.committed_offsets), (1, 1));
    let engine = engine_on(fresh.path(), &clock, &url);
    assert_eq!(
        engine.committed_offsets("g").unwrap(),
        vec![offset("plain", 5)]
    );
    assert_eq!(engine.topic("plain").unwrap().partitions, 1);
    engine.shutdown().unwrap();
}

#[test]
fn restore_verify_reads_every_object_back_and_refuses_a_corrupted_one() {
    let clock = ManualClock::new(T0);
    let lost = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let engine = engine_on(lost.path(), &clock, &url);
    engine
        .create_topic(
            "t",
            1,
            &common::configs(&[("remote.storage.enable", "true")]),
        )
        .unwrap();
    for i in 0..3 {
        let mut b = common::batch(i * 10, 10, 100, T0);
        engine.append("t", 0, &mut b).unwrap();
        engine.with_log("t", 0, |l| l.roll(T0)).unwrap();
    }
    assert_eq!(engine.run_remote_round().unwrap().uploaded, 3);
    engine.shutdown().unwrap();
    drop(engine);
    let store = RemoteStore::from_url(&url).unwrap();

    // Intact: every object is read back, each counted once.
    let verified = std::sync::Mutex::new(Vec::new());
    let sink = |step: RestoreProgress<'_>| {
        if let RestoreProgress::Verified { key, .. } = step {
            verified.lock().unwrap().push(key.to_string());
        }
    };
    let ok = tempfile::tempdir().unwrap();
    let report = restore_into(
        ok.path(),
        &store,
        RestoreOptions {
            verify: true,
            progress: Some(&sink),
        },
    )
    .unwrap();
    assert_eq!(report.segments, 3);
    // .log, .index, .timeindex and .txnindex of each segment.
    assert_eq!(report.verified_objects, 12);
    assert_eq!(verified.lock().unwrap().len(), 12);
    assert_eq!(
        verified
            .lock()
            .unwrap()
            .iter()
            .filter(|k| k.ends_with(".txnindex"))
            .count(),
        3
    );
    assert!(report.snapshot.is_none(), "no snapshot was written");

    // One byte of a .log changes, its size not.
    let log = walk(bucket.path())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0xff;
    std::fs::write(&log, bytes).unwrap();
    let name = log.file_name().unwrap().to_string_lossy().into_owned();

    let fresh = tempfile::tempdir().unwrap();
    let e = restore_into(
        fresh.path(),
        &store,
        RestoreOptions {
            verify: true,
            progress: None,
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("--verify") && e.to_string().contains(&name),
        "{e}"
    );
    // Nothing was written: the directory takes a restore (one without
    // --verify takes the bucket as it is).
    let report = restore_into(fresh.path(), &store, RestoreOptions::default()).unwrap();
    assert_eq!(report.segments, 3);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A bucket that refuses writes costs the broker a recent warning per
/// try, never its jobs or its shutdown; the next try after it recovers
/// writes the snapshot.
#[test]
fn a_failing_bucket_only_delays_catalog_snapshots() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let inner = RemoteStore::from_url(&format!("file://{}", bucket.path().display()))
        .unwrap()
        .store;
    let faulty = tierlog::remote::faults::FaultStore::new(inner);
    let faults = std::sync::Arc::clone(&faulty.faults);
    faults
        .unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut config = common::test_config(dir.path(), &clock);
    // Background jobs on: the catalog-snapshot job runs every 100 ms of
    // the manual clock, checked every 20 ms of real time.
    config.flush_check_interval = Some(Duration::from_millis(20));
    config.remote = Some(RemoteSettings {
        task_interval_ms: i64::MAX,
        catalog_snapshot_interval_ms: 100,
        store: Some(std::sync::Arc::new(faulty)),
        ..RemoteSettings::new("test://failing")
    });
    let engine = tierlog::Engine::open(config).unwrap();
    let failures = || {
        engine
            .metrics()
            .events
            .recent()
            .iter()
            .filter(|e| e.message.contains("catalog snapshot failed"))
            .count()
    };
    wait_for("a recorded snapshot failure", || failures() >= 1);
    assert!(snapshot_files(bucket.path()).is_empty());

    faults
        .unavailable
        .store(false, std::sync::atomic::Ordering::SeqCst);
    clock.advance(100);
    wait_for("a snapshot once the bucket is back", || {
        !snapshot_files(bucket.path()).is_empty()
    });

    // Down again, with a change to write: shutdown still succeeds, and
    // says why the last snapshot is missing.
    faults
        .unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    engine.commit_offsets("g", &[offset("t", 1)]).unwrap();
    let before = failures();
    engine.shutdown().unwrap();
    assert!(
        failures() > before,
        "the failed shutdown snapshot is recorded"
    );
}

/// A topic deleted and created again after the last snapshot: the name
/// goes to the topic the bucket describes, and the restore says so.
#[test]
fn a_topic_created_again_after_the_snapshot_is_restored_from_the_bucket() {
    let clock = ManualClock::new(T0);
    let lost = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let engine = engine_on(lost.path(), &clock, &url);
    let tiered = common::configs(&[("remote.storage.enable", "true")]);
    let old = engine.create_topic("x", 1, &tiered).unwrap().id;
    engine.write_catalog_snapshot().unwrap();
    engine.delete_topic("x").unwrap();
    let new = engine.create_topic("x", 2, &tiered).unwrap().id;
    let mut b = common::batch(0, 10, 100, T0);
    engine.append("x", 0, &mut b).unwrap();
    engine.with_log("x", 0, |l| l.roll(T0)).unwrap();
    assert_eq!(engine.run_remote_round().unwrap().uploaded, 1);
    engine.shutdown().unwrap();
    drop(engine);

    let fresh = tempfile::tempdir().unwrap();
    let store = RemoteStore::from_url(&url).unwrap();
    let report = restore_into(fresh.path(), &store, RestoreOptions::default()).unwrap();
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.contains(&old.to_string()) && s.contains(&new.to_string())),
        "{:?}",
        report.skipped
    );
    assert_eq!(report.segments, 1);
    let engine = engine_on(fresh.path(), &clock, &url);
    let x = engine.topic("x").unwrap();
    assert_eq!((x.id, x.partitions), (new, 2));
    engine.shutdown().unwrap();
}

/// On S3 (the in-process server, or the CI one) under a prefix: the
/// snapshot lands under `<prefix>/_catalog/` and a restore reads it back.
#[test]
fn catalog_snapshots_live_under_the_remote_prefix_on_s3() {
    let s3 = common::s3::S3::start();
    let prefixed: std::sync::Arc<dyn object_store::ObjectStore> = std::sync::Arc::new(
        object_store::prefix::PrefixStore::new(s3.store(), "tenant/a"),
    );
    let clock = ManualClock::new(T0);
    let lost = tempfile::tempdir().unwrap();
    let engine = common::open_with_remote(
        lost.path(),
        &clock,
        RemoteSettings {
            task_interval_ms: 0,
            store: Some(std::sync::Arc::clone(&prefixed)),
            ..RemoteSettings::new(format!("s3://{}/tenant/a", s3.bucket))
        },
    );
    engine
        .create_topic("plain", 1, &common::configs(&[]))
        .unwrap();
    engine.commit_offsets("g", &[offset("plain", 7)]).unwrap();
    let SnapshotOutcome::Written(key) = engine.write_catalog_snapshot().unwrap() else {
        panic!("forced snapshot not written");
    };
    engine.shutdown().unwrap();
    drop(engine);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let raw: Vec<String> = rt
        .block_on(futures::TryStreamExt::try_collect::<Vec<_>>(
            s3.store().list(None),
        ))
        .unwrap()
        .into_iter()
        .map(|o| o.location.to_string())
        .collect();
    assert_eq!(raw, vec![format!("tenant/a/{key}")]);

    let fresh = tempfile::tempdir().unwrap();
    let store = RemoteStore::new(prefixed, format!("s3://{}/tenant/a", s3.bucket));
    let report = restore_into(fresh.path(), &store, RestoreOptions::default()).unwrap();
    assert_eq!(report.snapshot.as_deref(), Some(key.as_str()));
    assert_eq!(report.topics, vec!["plain".to_string()]);
    assert_eq!(report.committed_offsets, 1);
}

/// A broker on a new (or lost and not restored) data directory pointed at
/// a bucket with another cluster's snapshots never replaces them: it says
/// to restore first. After the restore it is that cluster and writes.
#[test]
fn a_broker_of_another_cluster_never_replaces_the_buckets_snapshots() {
    let clock = ManualClock::new(T0);
    let first = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let engine = engine_on(first.path(), &clock, &url);
    engine
        .create_topic("kept", 1, &common::configs(&[]))
        .unwrap();
    engine.commit_offsets("g", &[offset("kept", 4)]).unwrap();
    engine.write_catalog_snapshot().unwrap();
    let ours = engine.cluster_id().to_string();
    engine.shutdown().unwrap();
    drop(engine);
    let before = snapshot_files(bucket.path());

    // The disk is lost; a broker starts on an empty one, same bucket.
    let fresh = tempfile::tempdir().unwrap();
    let engine = engine_on(fresh.path(), &clock, &url);
    assert_ne!(engine.cluster_id(), ours);
    clock.advance(1_000);
    let e = engine.write_catalog_snapshot().unwrap_err();
    assert!(
        e.to_string().contains(&ours) && e.to_string().contains("tierlog restore"),
        "{e}"
    );
    assert_eq!(
        snapshot_files(bucket.path()),
        before,
        "the good snapshot was replaced"
    );
    engine.shutdown().unwrap();
    drop(engine);

    // Restored into that (topic-less) directory, it is the old cluster.
    let store = RemoteStore::from_url(&url).unwrap();
    let report = restore_into(fresh.path(), &store, RestoreOptions::default()).unwrap();
    assert_eq!(report.cluster_id.as_deref(), Some(ours.as_str()));
    let engine = engine_on(fresh.path(), &clock, &url);
    assert_eq!(engine.cluster_id(), ours);
    assert_eq!(
        engine.committed_offsets("g").unwrap(),
        vec![offset("kept", 4)]
    );
    clock.advance(1_000);
    assert!(matches!(
        engine.write_catalog_snapshot().unwrap(),
        SnapshotOutcome::Written(_)
    ));
    engine.shutdown().unwrap();
}

/// A clock that steps back does not make a new snapshot look older than
/// the one before it (restore takes the highest name).
#[test]
fn a_snapshot_taken_after_the_clock_stepped_back_still_sorts_newest() {
    let clock = ManualClock::new(T0 + 60_000);
    let dir = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let engine = engine_on(dir.path(), &clock, &url);
    engine.commit_offsets("g", &[offset("t", 1)]).unwrap();
    engine.write_catalog_snapshot().unwrap();
    clock.set(T0);
    engine.commit_offsets("g", &[offset("t", 2)]).unwrap();
    engine.write_catalog_snapshot().unwrap();
    engine.shutdown().unwrap();
    let newest = newest_snapshot(bucket.path()).unwrap();
    assert_eq!(newest.committed_offsets[0].offset, 2);
    assert!(newest.taken_ms > T0 + 60_000);
}

/// DeleteRecords' log start travels in the catalog snapshot: a restored
/// broker still refuses reads below it, and its first round deletes the
/// tiered segments wholly below it.
#[test]
fn records_deleted_before_the_snapshot_stay_deleted_after_a_restore() {
    let clock = ManualClock::new(T0);
    let lost = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let engine = engine_on(lost.path(), &clock, &url);
    let tiered = common::configs(&[
        ("remote.storage.enable", "true"),
        ("segment.bytes", "2048"),
        ("retention.ms", "-1"),
    ]);
    engine.create_topic("t", 1, &tiered).unwrap();
    for i in 0..20 {
        let mut b = common::batch(i * 5, 5, 100, T0);
        engine.append("t", 0, &mut b).unwrap();
    }
    engine.run_remote_round().unwrap();
    let tiered_end = engine.offsets("t", 0).unwrap().last_tiered_offset.unwrap();
    assert!(tiered_end > 60, "{tiered_end}");
    assert_eq!(engine.delete_records("t", 0, 42).unwrap(), 42);
    engine.write_catalog_snapshot().unwrap();
    engine.shutdown().unwrap();
    drop(engine);

    let fresh = tempfile::tempdir().unwrap();
    let store = RemoteStore::from_url(&url).unwrap();
    restore_into(fresh.path(), &store, RestoreOptions::default()).unwrap();
    let engine = engine_on(fresh.path(), &clock, &url);
    assert_eq!(engine.offsets("t", 0).unwrap().log_start_offset, 42);
    let e = engine.read("t", 0, 10, 1 << 20).unwrap_err();
    assert_eq!(e.kind(), tierlog::ErrorKind::OutOfRange);
    assert!(!engine.read("t", 0, 42, 1 << 20).unwrap().records.is_empty());
    engine.run_remote_round().unwrap();
    let live: Vec<_> = engine
        .remote_segments("t", 0)
        .unwrap()
        .into_iter()
        .filter(|r| r.state == tierlog::catalog::RemoteState::CopyFinished)
        .collect();
    assert!(!live.is_empty());
    assert!(live.iter().all(|r| r.last_offset >= 42), "{live:?}");
    engine.shutdown().unwrap();
}

/// SCRAM users travel in the catalog snapshot (version 2): the restored
/// broker checks logins against the same salted credentials, and the
/// snapshot never holds a password. Client quotas come back with them.
#[test]
fn users_are_in_the_snapshot_and_restored_without_their_passwords() {
    use tierlog::security::{ScramCredential, ScramMechanism};
    let clock = ManualClock::new(T0);
    let lost = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let engine = engine_on(lost.path(), &clock, &url);
    let alice = ScramCredential::from_password(
        "alice",
        ScramMechanism::Sha512,
        b"correct horse battery staple",
        b"0123456789abcdef",
        4096,
    );
    engine.upsert_scram_credential(&alice).unwrap();
    // Client quotas travel the same way (snapshot version 3).
    use tierlog::catalog::quotas::{ClientQuota, EntityName, QuotaEntity, QuotaKey};
    let quota = ClientQuota {
        entity: QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: Some(EntityName::Default),
        },
        key: QuotaKey::ProducerByteRate,
        value: 1_048_576.0,
    };
    engine
        .alter_client_quotas(&[(quota.entity.clone(), quota.key, Some(quota.value))])
        .unwrap();
    let SnapshotOutcome::Written(key) = engine.write_catalog_snapshot().unwrap() else {
        panic!("forced snapshot not written");
    };
    engine.shutdown().unwrap();
    drop(engine);
    let text = std::fs::read_to_string(bucket.path().join(&key)).unwrap();
    assert!(
        text.contains(&format!(
            "\"version\": {}",
            tierlog::format::catalog_snapshot::CATALOG_SNAPSHOT_VERSION
        )) && text.contains("\"alice\"")
            && text.contains("producer_byte_rate"),
        "{text}"
    );
    assert!(!text.contains("correct horse"), "no password in the bucket");

    let fresh = tempfile::tempdir().unwrap();
    let store = RemoteStore::from_url(&url).unwrap();
    let report = restore_into(fresh.path(), &store, RestoreOptions::default()).unwrap();
    assert_eq!(report.users, 1);
    assert_eq!(report.client_quotas, 1);
    let engine = engine_on(fresh.path(), &clock, &url);
    assert_eq!(engine.client_quotas().unwrap(), vec![quota]);
    let restored = engine.scram_credentials(Some("alice")).unwrap();
    assert_eq!(restored.len(), 1);
    assert!(restored[0].check_password(b"correct horse battery staple"));
    assert!(!restored[0].check_password(b"wrong"));
    engine.shutdown().unwrap();
}

/// ACLs travel in the catalog snapshot (version 3): the restored broker
/// holds the same bindings, so a restore never opens a closed resource.
#[test]
fn acls_are_in_the_snapshot_and_restored() {
    use tierlog::security::acl::{
        AclBinding, AclFilter, AclOperation, AclPermission, PatternType, ResourceType,
    };
    let clock = ManualClock::new(T0);
    let lost = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let engine = engine_on(lost.path(), &clock, &url);
    let allow = AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: "orders-".into(),
        pattern_type: PatternType::Prefixed,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: AclOperation::Read,
        permission: AclPermission::Allow,
    };
    let deny = AclBinding {
        resource_type: ResourceType::Group,
        resource_name: "billing".into(),
        pattern_type: PatternType::Literal,
        permission: AclPermission::Deny,
        ..allow.clone()
    };
    engine.create_acls(&[allow.clone(), deny.clone()]).unwrap();
    let SnapshotOutcome::Written(key) = engine.write_catalog_snapshot().unwrap() else {
        panic!("forced snapshot not written");
    };
    engine.shutdown().unwrap();
    drop(engine);
    let text = std::fs::read_to_string(bucket.path().join(&key)).unwrap();
    assert!(
        text.contains("\"version\": 3") && text.contains("\"orders-\""),
        "{text}"
    );

    let fresh = tempfile::tempdir().unwrap();
    let store = RemoteStore::from_url(&url).unwrap();
    let report = restore_into(fresh.path(), &store, RestoreOptions::default()).unwrap();
    assert_eq!(report.acls, 2);
    let engine = engine_on(fresh.path(), &clock, &url);
    let mut want = vec![allow, deny];
    want.sort();
    assert_eq!(*engine.acls(), want);
    // And they are the catalog's, not only the open engine's copy.
    let removed = engine.delete_acls(&[AclFilter::any()]).unwrap();
    assert_eq!(removed[0].len(), 2);
    assert!(engine.acls().is_empty());
    engine.shutdown().unwrap();
}
