//! Compacted topics (`cleanup.policy=compact`): the log cleaner against real
//! files, checked against a model of the table (key → latest value).

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{configs, open};
use rand::{Rng, SeedableRng};
use tierlog::clock::ManualClock;
use tierlog::format::batch::Batches;
use tierlog::format::{decode_records, BatchBuilder, Compression, Record};
use tierlog::Engine;

const T0: i64 = 1_700_000_000_000;

/// One produced record: key, value (None: tombstone).
type Kv = (String, Option<Vec<u8>>);
/// A table: key → latest value.
type Table = BTreeMap<Vec<u8>, Vec<u8>>;

fn build(records: &[Kv], codec: Compression, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new().compression(codec);
    for (k, v) in records {
        b.push(Record::new(Some(k.clone().into_bytes()), v.clone(), ts));
    }
    b.build().unwrap()
}

/// Every record of partition 0 from `from` to the log end, reading batch
/// after batch (gaps included), with the offsets seen strictly increasing.
fn read_from(engine: &Engine, topic: &str, from: i64) -> Vec<Record> {
    let end = engine.offsets(topic, 0).unwrap().log_end_offset;
    let mut out: Vec<Record> = Vec::new();
    let mut offset = from;
    while offset < end {
        let read = engine.read(topic, 0, offset, 1 << 20).unwrap();
        assert!(!read.records.is_empty(), "no batch at {offset} (end {end})");
        for b in Batches::new(&read.records) {
            let (_, h, _) = b.unwrap();
            assert!(h.last_offset() >= offset, "a batch before {offset}");
            offset = h.next_offset();
        }
        for r in decode_records(&read.records).unwrap() {
            if let Some(last) = out.last() {
                assert!(r.offset > last.offset, "offsets increase");
            }
            out.push(r);
        }
    }
    out
}

/// Replay `records` into a table (what a consumer rebuilding state does).
fn table(records: &[Record]) -> Table {
    let mut t = BTreeMap::new();
    for r in records {
        let k = r.key.clone().expect("every record has a key");
        match &r.value {
            Some(v) => t.insert(k, v.clone()),
            None => t.remove(&k),
        };
    }
    t
}

/// ListOffsets by timestamp answers, for each of `timestamps`, the first
/// record of `records` (what the topic holds) at or after it.
fn assert_timestamp_lookups(engine: &Engine, topic: &str, records: &[Record], timestamps: &[i64]) {
    for &ts in timestamps {
        let want = records
            .iter()
            .find(|r| r.timestamp >= ts)
            .map(|r| (r.timestamp, r.offset));
        let got = engine
            .offset_for_timestamp(topic, 0, ts)
            .unwrap()
            .map(|t| (t.timestamp, t.offset));
        assert_eq!(got, want, "timestamp {ts}");
    }
}

fn compact_topic(engine: &Engine, name: &str, extra: &[(&str, &str)]) {
    let mut c = vec![("cleanup.policy", "compact"), ("segment.bytes", "16384")];
    c.extend_from_slice(extra);
    engine.create_topic(name, 1, &configs(&c)).unwrap();
}

/// Produce `n` records over `keys` keys (about one in ten a tombstone) in
/// batches of 1–10 with every codec; returns the model table and each
/// key's latest offset.
fn produce_random(
    engine: &Engine,
    topic: &str,
    n: usize,
    keys: usize,
    seed: u64,
) -> (Table, HashMap<Vec<u8>, i64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut model = BTreeMap::new();
    let mut latest = HashMap::new();
    let mut produced = 0;
    while produced < n {
        let count = rng.random_range(1..=10).min(n - produced);
        let recs: Vec<Kv> = (0..count)
            .map(|i| {
                let k = format!("key-{}", rng.random_range(0..keys));
                let v = (rng.random_range(0..10) != 0)
                    .then(|| format!("{k}=v{}", produced + i).repeat(8).into_bytes());
                (k, v)
            })
            .collect();
        let codec = codecs[rng.random_range(0..codecs.len())];
        let mut b = build(&recs, codec, T0 + produced as i64);
        let info = engine.append(topic, 0, &mut b).unwrap();
        for (i, (k, v)) in recs.iter().enumerate() {
            let k = k.clone().into_bytes();
            latest.insert(k.clone(), info.base_offset + i as i64);
            match v {
                Some(v) => model.insert(k, v.clone()),
                None => model.remove(&k),
            };
        }
        produced += count;
    }
    (model, latest)
}

#[test]
fn cleaning_keeps_the_latest_value_of_every_key_and_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    compact_topic(&engine, "table", &[]);
    let (model, latest) = produce_random(&engine, "table", 6000, 300, 7);
    engine.flush().unwrap();
    let before = read_from(&engine, "table", 0);
    assert_eq!(before.len(), 6000);
    assert_eq!(table(&before), model);
    let bytes_before = engine.with_log("table", 0, |l| Ok(l.size_bytes())).unwrap();

    let report = engine.run_log_cleaner();
    assert_eq!(report.partitions_cleaned, 1, "{report:?}");
    let after = read_from(&engine, "table", 0);
    assert_eq!(table(&after), model, "the table is intact");
    let end = engine
        .with_log("table", 0, |l| {
            Ok(l.cleaner_checkpoint().first_dirty_offset)
        })
        .unwrap();
    assert!(end > 0);
    // In the cleaned section each key appears once: at its latest offset
    // below the cleaned end.
    let mut seen = HashMap::new();
    for r in after.iter().filter(|r| r.offset < end) {
        let k = r.key.clone().unwrap();
        assert!(
            seen.insert(k.clone(), r.offset).is_none(),
            "key {k:?} twice"
        );
        if latest[&k] < end {
            assert_eq!(r.offset, latest[&k], "only the latest value stays");
        }
    }
    assert!(
        after.len() < before.len() / 3,
        "{} of {}",
        after.len(),
        before.len()
    );
    let bytes_after = engine.with_log("table", 0, |l| Ok(l.size_bytes())).unwrap();
    assert!(
        bytes_after < bytes_before / 2,
        "{bytes_after} of {bytes_before}"
    );
    // Nothing is due right after a pass.
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 0);
    // ListOffsets by timestamp on cleaned segments: the first record kept
    // with a timestamp at or after the one asked for.
    assert_timestamp_lookups(
        &engine,
        "table",
        &after,
        &[T0, T0 + 1, T0 + 777, T0 + 3000, T0 + 5990],
    );

    // Offsets never go back: the log end is where it was, and new records
    // follow it.
    let end_before = engine.offsets("table", 0).unwrap().log_end_offset;
    assert_eq!(end_before, 6000);

    // A crash (no clean shutdown): the cleaned segments are trusted, their
    // gaps are not taken for a lost tail.
    drop(engine);
    let engine = open(dir.path(), &clock);
    assert_eq!(engine.offsets("table", 0).unwrap().log_end_offset, 6000);
    let reopened = read_from(&engine, "table", 0);
    assert_eq!(
        reopened.iter().map(|r| r.offset).collect::<Vec<_>>(),
        after.iter().map(|r| r.offset).collect::<Vec<_>>()
    );
    assert_eq!(table(&reopened), model);

    // More updates, a second pass over clean and dirty sections together.
    produce_random(&engine, "table", 3000, 300, 8);
    let mut expected = model.clone();
    // The second run's table applies on top of the first.
    let second = read_from(&engine, "table", 6000);
    for r in &second {
        let k = r.key.clone().unwrap();
        match &r.value {
            Some(v) => expected.insert(k, v.clone()),
            None => expected.remove(&k),
        };
    }
    engine.flush().unwrap();
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    assert_eq!(table(&read_from(&engine, "table", 0)), expected);
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(dir.path(), &clock);
    assert_eq!(table(&read_from(&engine, "table", 0)), expected);
    assert_eq!(engine.offsets("table", 0).unwrap().log_end_offset, 9000);
}

#[test]
fn tombstones_go_after_delete_retention_ms() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    compact_topic(&engine, "t", &[("delete.retention.ms", "60000")]);
    let kv = |k: &str, v: Option<&str>| (k.to_string(), v.map(|v| v.as_bytes().to_vec()));
    for recs in [
        vec![kv("a", Some("1")), kv("b", Some("1"))],
        vec![kv("a", None)],
    ] {
        engine
            .append("t", 0, &mut build(&recs, Compression::None, T0))
            .unwrap();
    }
    // Enough other keys to seal the segment holding the tombstone.
    while engine.with_log("t", 0, |l| Ok(l.segment_count())).unwrap() < 3 {
        let recs = vec![kv("filler", Some(&"x".repeat(1000)))];
        engine
            .append("t", 0, &mut build(&recs, Compression::None, T0))
            .unwrap();
    }
    engine.flush().unwrap();
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    let keys = |e: &Engine| {
        read_from(e, "t", 0)
            .into_iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.unwrap()).unwrap(),
                    r.value.is_none(),
                )
            })
            .filter(|(k, _)| k != "filler")
            .collect::<Vec<_>>()
    };
    // The tombstone of `a` stays readable for delete.retention.ms (a
    // consumer that saw the old value learns it is deleted).
    assert_eq!(
        keys(&engine),
        vec![("b".to_string(), false), ("a".to_string(), true)]
    );
    clock.advance(30_000);
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 0, "not yet");
    assert_eq!(keys(&engine).len(), 2);
    // After the horizon, a pass is due even with nothing dirty, and the
    // tombstone goes. The horizon is in the batch: it survives a restart.
    clock.advance(31_000);
    drop(engine);
    let engine = open(dir.path(), &clock);
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    assert_eq!(keys(&engine), vec![("b".to_string(), false)]);
}

#[test]
fn keyless_records_are_refused_and_retention_does_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    compact_topic(&engine, "t", &[("retention.ms", "1000")]);
    let mut b = BatchBuilder::new();
    b.push(Record::new(Some(b"k".to_vec()), Some(b"v".to_vec()), T0));
    b.push(Record::new(None, Some(b"v".to_vec()), T0));
    let e = engine.append("t", 0, &mut b.build().unwrap()).unwrap_err();
    assert_eq!(e.kind(), tierlog::ErrorKind::Invalid);
    assert_eq!(e.record_errors(), &[1]);
    assert!(e.to_string().contains("without a key"), "{e}");
    // A keyed batch is taken, and retention.ms (without `delete` in the
    // policy) does not delete it.
    for i in 0..40 {
        let recs = vec![(format!("k{i}"), Some(vec![b'x'; 1000]))];
        engine
            .append("t", 0, &mut build(&recs, Compression::None, T0))
            .unwrap();
    }
    engine.flush().unwrap();
    clock.advance(10_000_000);
    engine.run_local_retention();
    assert_eq!(engine.offsets("t", 0).unwrap().log_start_offset, 0);
    // With `compact,delete` it does.
    engine
        .set_topic_configs(
            "t",
            &configs(&[
                ("cleanup.policy", "compact,delete"),
                ("retention.ms", "1000"),
                ("segment.bytes", "16384"),
            ]),
        )
        .unwrap();
    engine.run_local_retention();
    assert!(engine.offsets("t", 0).unwrap().log_start_offset > 0);
}

#[test]
fn an_idempotent_producers_retry_after_cleaning_is_still_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    compact_topic(&engine, "t", &[]);
    let mut first = build(
        &[("a".to_string(), Some(b"1".to_vec()))],
        Compression::None,
        T0,
    );
    first[43..51].copy_from_slice(&7i64.to_be_bytes());
    first[51..53].copy_from_slice(&0i16.to_be_bytes());
    first[53..57].copy_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&first[21..]);
    first[17..21].copy_from_slice(&crc.to_be_bytes());
    let retry = first.clone();
    let info = engine.append("t", 0, &mut first).unwrap();
    // `a` is overwritten by another producer, in a later segment.
    while engine.with_log("t", 0, |l| Ok(l.segment_count())).unwrap() < 3 {
        let recs = vec![("a".to_string(), Some(vec![b'x'; 1000]))];
        engine
            .append("t", 0, &mut build(&recs, Compression::None, T0))
            .unwrap();
    }
    engine.flush().unwrap();
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    let end = engine.offsets("t", 0).unwrap().log_end_offset;
    // Restart: producer state comes back from its snapshot (cleaning
    // leaves snapshots alone).
    drop(engine);
    let engine = open(dir.path(), &clock);
    let again = engine.append("t", 0, &mut retry.clone()).unwrap();
    assert!(again.duplicate, "the retry is recognised");
    assert_eq!(again.base_offset, info.base_offset);
    assert_eq!(
        engine.offsets("t", 0).unwrap().log_end_offset,
        end,
        "nothing appended"
    );
    // The producer's value of `a` is gone (its batch stays as a bare
    // header); the latest value stays.
    let recs = read_from(&engine, "t", 0);
    assert!(recs.iter().all(|r| r.offset != info.base_offset));
    let read = engine.read("t", 0, info.base_offset, 1 << 20).unwrap();
    let (_, h, _) = Batches::new(&read.records).next().unwrap().unwrap();
    assert_eq!(
        (h.base_offset, h.record_count, h.producer_id),
        (info.base_offset, 0, 7)
    );
    assert!(recs.iter().any(|r| r.key.as_deref() == Some(b"a")));
}

/// Transactions on a compacted topic: an aborted record never supersedes
/// the committed value of its key, and the cleaner stays below an open
/// transaction (the last stable offset), so a later abort cannot lose
/// the value before it.
#[test]
fn aborted_and_open_transactions_never_supersede_committed_values() {
    use tierlog::format::records::ControlType;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    compact_topic(&engine, "t", &[]);
    let plain = |k: &str, v: &str| {
        build(
            &[(k.to_string(), Some(v.as_bytes().to_vec()))],
            Compression::None,
            T0,
        )
    };
    let fill = |engine: &Engine, segments: usize| {
        let mut i = 0;
        while engine.with_log("t", 0, |l| Ok(l.segment_count())).unwrap() < segments {
            let recs = vec![(format!("fill-{i}"), Some(vec![b'x'; 1000]))];
            engine
                .append("t", 0, &mut build(&recs, Compression::None, T0))
                .unwrap();
            i += 1;
        }
    };
    engine
        .append("t", 0, &mut plain("a", "committed-a"))
        .unwrap();
    engine
        .append("t", 0, &mut txn_record(9, 0, "a", "aborted-a"))
        .unwrap();
    engine
        .append_marker("t", 0, 9, 0, ControlType::Abort, 0)
        .unwrap();
    engine
        .append("t", 0, &mut plain("b", "committed-b"))
        .unwrap();
    fill(&engine, 3);
    // An open transaction, then more segments after it.
    engine
        .append("t", 0, &mut txn_record(10, 0, "b", "open-b"))
        .unwrap();
    fill(&engine, 6);
    engine.flush().unwrap();
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    let value = |engine: &Engine, key: &[u8]| -> Vec<String> {
        read_from(engine, "t", 0)
            .into_iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
            .collect()
    };
    assert!(
        value(&engine, b"a").contains(&"committed-a".to_string()),
        "the aborted record did not supersede it: {:?}",
        value(&engine, b"a")
    );
    assert!(value(&engine, b"b").contains(&"committed-b".to_string()));
    // The open transaction aborts: b's committed value is still there.
    engine
        .append_marker("t", 0, 10, 0, ControlType::Abort, 0)
        .unwrap();
    assert!(value(&engine, b"b").contains(&"committed-b".to_string()));
}

/// A transactional batch of one record (producer `pid`, epoch 0).
fn txn_record(pid: i64, seq: i32, k: &str, v: &str) -> Vec<u8> {
    let b = build(
        &[(k.to_string(), Some(v.as_bytes().to_vec()))],
        Compression::None,
        T0,
    );
    common::transactional(b, pid, seq)
}

/// Control batches (transaction markers) from offset 0 to the log end.
fn markers(engine: &Engine, topic: &str) -> Vec<i64> {
    let end = engine.offsets(topic, 0).unwrap().log_end_offset;
    let mut out = Vec::new();
    let mut offset = engine.offsets(topic, 0).unwrap().log_start_offset;
    while offset < end {
        let read = engine.read(topic, 0, offset, 1 << 20).unwrap();
        for b in Batches::new(&read.records) {
            let (_, h, _) = b.unwrap();
            if h.is_control() {
                out.push(h.base_offset);
            }
            offset = h.next_offset();
        }
    }
    out
}

/// Kafka's cleaner rules for transactions, checked on `topic` of `engine`
/// (local, or tiered when `tier` runs the remote rounds between steps):
/// aborted records go in the first pass; an ABORT marker then gets its
/// delete horizon and goes after it; a COMMIT marker stays while its
/// transaction's records do, and goes a horizon after they are superseded.
fn transactions_are_cleaned_away(
    engine: &Engine,
    clock: &ManualClock,
    topic: &str,
    tier: &dyn Fn(&Engine),
) {
    use tierlog::format::records::ControlType;
    let fill = |engine: &Engine, from: usize, n: usize| {
        for i in from..from + n {
            let recs = vec![(format!("fill-{}", i % 40), Some(vec![b'x'; 1000]))];
            engine
                .append(topic, 0, &mut build(&recs, Compression::None, T0))
                .unwrap();
        }
    };
    for i in 0..5 {
        engine
            .append(
                topic,
                0,
                &mut txn_record(7, i, &format!("k{i}"), &format!("c-{i}")),
            )
            .unwrap();
    }
    engine
        .append_marker(topic, 0, 7, 0, ControlType::Commit, 0)
        .unwrap();
    for i in 0..5 {
        engine
            .append(
                topic,
                0,
                &mut txn_record(8, 2 * i, &format!("k{i}"), &format!("a-{i}")),
            )
            .unwrap();
        engine
            .append(
                topic,
                0,
                &mut txn_record(8, 2 * i + 1, &format!("only-aborted-{i}"), "a"),
            )
            .unwrap();
    }
    let abort = engine
        .append_marker(topic, 0, 8, 0, ControlType::Abort, 0)
        .unwrap();
    fill(engine, 0, 80);
    engine.flush().unwrap();
    assert_eq!(markers(engine, topic).len(), 2);
    let end = engine.offsets(topic, 0).unwrap().log_end_offset;
    let aborted = engine.aborted_txns(topic, 0, 0, end).unwrap();
    assert_eq!(aborted.len(), 1, "{aborted:?}");
    assert_eq!((aborted[0].producer_id, aborted[0].last_offset), (8, abort));
    tier(engine);
    // The producers are idle past producer.id.expiration.ms: their last
    // batches need not stay for their sequence numbers.
    clock.advance(2 * 86_400_000);
    engine.run_flush_check();

    let values = |engine: &Engine| -> Vec<String> {
        read_from(engine, topic, 0)
            .into_iter()
            .filter(|r| !r.key.as_deref().unwrap_or_default().starts_with(b"fill"))
            .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
            .collect()
    };
    // Pass 1: the aborted records go, the committed ones stay; both
    // markers stay (the ABORT one until its horizon).
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    assert_eq!(values(engine), ["c-0", "c-1", "c-2", "c-3", "c-4"]);
    assert_eq!(markers(engine, topic).len(), 2);
    // No aborted record is left: no read_committed consumer needs an entry.
    assert_eq!(engine.aborted_txns(topic, 0, 0, end).unwrap(), vec![]);
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 0, "not due");
    // After delete.retention.ms the ABORT marker goes.
    clock.advance(61_000);
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    assert_eq!(markers(engine, topic).len(), 1, "the COMMIT marker stays");
    assert_eq!(values(engine), ["c-0", "c-1", "c-2", "c-3", "c-4"]);

    // The committed records superseded: their marker goes a horizon later.
    for i in 0..5 {
        let recs = vec![(format!("k{i}"), Some(format!("p-{i}").into_bytes()))];
        engine
            .append(topic, 0, &mut build(&recs, Compression::None, T0))
            .unwrap();
    }
    fill(engine, 80, 60);
    engine.flush().unwrap();
    tier(engine);
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    assert_eq!(values(engine), ["p-0", "p-1", "p-2", "p-3", "p-4"]);
    assert_eq!(markers(engine, topic).len(), 1);
    clock.advance(61_000);
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    assert_eq!(markers(engine, topic), Vec::<i64>::new());
    assert_eq!(values(engine), ["p-0", "p-1", "p-2", "p-3", "p-4"]);
}

#[test]
fn the_cleaner_removes_aborted_records_then_markers_past_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    compact_topic(&engine, "t", &[("delete.retention.ms", "60000")]);
    transactions_are_cleaned_away(&engine, &clock, "t", &|_| {});
}

// ---------------------------------------------------------------------------
// Tiered compaction: the history in the bucket is cleaned too

fn tiered_engine(
    dir: &std::path::Path,
    clock: &ManualClock,
    store: std::sync::Arc<dyn object_store::ObjectStore>,
) -> Engine {
    common::open_with_remote(
        dir,
        clock,
        tierlog::RemoteSettings {
            task_interval_ms: 0,
            // Reaped at once: the test checks the bucket right after.
            orphan_grace_ms: 0,
            fetch: tierlog::remote::fetcher::FetchSettings {
                chunk_bytes: 8 * 1024,
                cache_bytes: 16 << 20,
                ..Default::default()
            },
            store: Some(store),
            ..tierlog::RemoteSettings::new("test://store")
        },
    )
}

/// Every object key in the store.
fn bucket(store: &std::sync::Arc<dyn object_store::ObjectStore>) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listed: Vec<object_store::ObjectMeta> = rt
        .block_on(futures::TryStreamExt::try_collect(store.list(None)))
        .unwrap();
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

/// The bucket holds exactly the objects of the catalog's `COPY_FINISHED`
/// segments (five each: .log, .index, .timeindex, .txnindex, manifest) and
/// the topic.json, once the reaper has run.
fn assert_no_orphan(
    engine: &Engine,
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    topic: &str,
) {
    engine.run_remote_round().unwrap();
    let rows = engine.remote_segments(topic, 0).unwrap();
    let finished: Vec<_> = rows
        .iter()
        .filter(|r| r.state == tierlog::catalog::RemoteState::CopyFinished)
        .collect();
    assert_eq!(
        finished.len(),
        rows.iter()
            .filter(|r| r.state != tierlog::catalog::RemoteState::DeleteFinished)
            .count(),
        "no row half done: {rows:?}"
    );
    let keys = bucket(store);
    assert_eq!(keys.len(), finished.len() * 5 + 1, "{keys:?}");
    for r in &finished {
        let id = r.segment_uuid.to_string();
        assert_eq!(keys.iter().filter(|k| k.contains(&id)).count(), 5, "{id}");
    }
}

#[test]
fn tiered_compaction_cleans_the_bucket_and_keeps_the_table() {
    let s3 = common::s3::S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = tiered_engine(dir.path(), &clock, s3.store());
    compact_topic(
        &engine,
        "table",
        &[
            ("remote.storage.enable", "true"),
            ("local.retention.bytes", "0"),
        ],
    );
    let (model, _) = produce_random(&engine, "table", 5000, 200, 11);
    engine.flush().unwrap();
    // Tier every sealed segment; local copies go (local.retention.bytes=0).
    for _ in 0..3 {
        engine.run_remote_round().unwrap();
    }
    let before: Vec<_> = engine.remote_segments("table", 0).unwrap();
    let tiered_bytes: u64 = before.iter().map(|r| r.log_size).sum();
    assert!(before.len() > 5, "{} tiered segments", before.len());
    let o = engine.offsets("table", 0).unwrap();
    assert!(
        o.local_log_start_offset > 0 && o.log_start_offset == 0,
        "{o:?}"
    );
    assert_eq!(table(&read_from(&engine, "table", 0)), model);
    // Restarted: cold caches, so the pass's reads reach the bucket.
    engine.shutdown().unwrap();
    drop(engine);
    let engine = tiered_engine(dir.path(), &clock, s3.store());

    // The pass reads the bucket, uploads cleaned segments and swaps them in.
    let report = engine.run_log_cleaner();
    assert_eq!(report.partitions_cleaned, 1, "{report:?}");
    assert!(
        report.stats.remote_get_requests > 0 && report.stats.remote_put_requests > 0,
        "{report:?}"
    );
    let after = read_from(&engine, "table", 0);
    assert_eq!(table(&after), model, "the table is intact");
    // ListOffsets by timestamp over cleaned tiered segments.
    assert_timestamp_lookups(&engine, "table", &after, &[T0, T0 + 2500, T0 + 4990]);
    let finished: Vec<_> = engine
        .remote_segments("table", 0)
        .unwrap()
        .into_iter()
        .filter(|r| r.state == tierlog::catalog::RemoteState::CopyFinished)
        .collect();
    let cleaned_bytes: u64 = finished.iter().map(|r| r.log_size).sum();
    assert!(
        cleaned_bytes < tiered_bytes / 2,
        "{cleaned_bytes} of {tiered_bytes} bytes"
    );
    // Ranges still tile the log from 0, with no gap between segments.
    let mut next = 0;
    for r in &finished {
        assert_eq!(r.base_offset, next, "{finished:?}");
        next = r.last_offset + 1;
    }
    // Each cleaned segment's manifest says what it replaced.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let topic_id = engine.topic("table").unwrap().id;
    for r in &finished {
        let key = tierlog::remote::keys::segment_key(
            "table",
            &topic_id,
            0,
            r.base_offset,
            &r.segment_uuid,
            tierlog::remote::keys::SegmentObject::Manifest,
        );
        let bytes = rt
            .block_on(async {
                object_store::ObjectStoreExt::get(&*s3.store(), &key)
                    .await?
                    .bytes()
                    .await
            })
            .unwrap();
        let m = tierlog::format::manifest::SegmentManifest::from_json(&bytes).unwrap();
        let c = m.compaction.expect("a cleaned segment");
        assert!(!c.replaces.is_empty());
        assert!(before.iter().any(|b| c.replaces.contains(&b.segment_uuid)));
    }
    // The replaced objects are the reaper's: none is left.
    assert_no_orphan(&engine, &s3.store(), "table");

    // More updates: the second pass covers the bucket and the local tail.
    produce_random(&engine, "table", 2000, 200, 12);
    let expected = table(&read_from(&engine, "table", 0));
    engine.flush().unwrap();
    for _ in 0..3 {
        engine.run_remote_round().unwrap();
    }
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    assert_eq!(table(&read_from(&engine, "table", 0)), expected);
    assert_no_orphan(&engine, &s3.store(), "table");
    let end = engine.offsets("table", 0).unwrap().log_end_offset;
    // What the bucket alone holds: the records up to the last tiered offset.
    let tiered = engine
        .offsets("table", 0)
        .unwrap()
        .last_tiered_offset
        .unwrap();
    let in_bucket: Vec<Record> = read_from(&engine, "table", 0)
        .into_iter()
        .filter(|r| r.offset <= tiered)
        .collect();
    let in_bucket = table(&in_bucket);
    engine.shutdown().unwrap();
    drop(engine);

    // A restart, then `tierlog restore` from the bucket alone: the table
    // comes back from the cleaned segments.
    let engine = tiered_engine(dir.path(), &clock, s3.store());
    assert_eq!(table(&read_from(&engine, "table", 0)), expected);
    assert_eq!(engine.offsets("table", 0).unwrap().log_end_offset, end);
    engine.shutdown().unwrap();
    drop(engine);
    let fresh = tempfile::tempdir().unwrap();
    let remote = tierlog::remote::RemoteStore::new(s3.store(), "test://store");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(tierlog::restore(fresh.path(), &remote, T0))
        .unwrap();
    assert_eq!(report.topics, vec!["table".to_string()]);
    let engine = tiered_engine(fresh.path(), &clock, s3.store());
    // Restore brings back the table as the bucket holds it.
    assert_eq!(table(&read_from(&engine, "table", 0)), in_bucket);
    engine.shutdown().unwrap();
}

/// The same rules on a tiered topic whose local copies are gone: the
/// aborted transactions come from the bucket's `.txnindex` objects, and
/// the cleaned segments are uploaded with theirs.
#[test]
fn tiered_compaction_removes_aborted_records_and_markers() {
    let s3 = common::s3::S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = tiered_engine(dir.path(), &clock, s3.store());
    compact_topic(
        &engine,
        "tt",
        &[
            ("remote.storage.enable", "true"),
            ("local.retention.bytes", "0"),
            ("delete.retention.ms", "60000"),
        ],
    );
    let tier = |engine: &Engine| {
        for _ in 0..3 {
            engine.run_remote_round().unwrap();
        }
        let o = engine.offsets("tt", 0).unwrap();
        assert!(o.local_log_start_offset > 20, "{o:?}");
    };
    transactions_are_cleaned_away(&engine, &clock, "tt", &tier);
    let keys = bucket(&s3.store());
    assert!(keys.iter().any(|k| k.ends_with(".txnindex")), "{keys:?}");
    assert_no_orphan(&engine, &s3.store(), "tt");
    engine.shutdown().unwrap();
}

#[test]
fn more_keys_than_the_dedupe_buffer_holds_are_cleaned_in_several_passes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut config = common::test_config(dir.path(), &clock);
    // Room for about 900 keys per pass.
    config.cleaner.dedupe_buffer_bytes = 24 * 1000;
    let engine = Engine::open(config).unwrap();
    compact_topic(&engine, "t", &[("min.cleanable.dirty.ratio", "0.01")]);
    let (model, _) = produce_random(&engine, "t", 8000, 3000, 5);
    engine.flush().unwrap();
    let mut passes = 0;
    while engine.run_log_cleaner().partitions_cleaned > 0 {
        passes += 1;
        assert_eq!(
            table(&read_from(&engine, "t", 0)),
            model,
            "after pass {passes}"
        );
        assert!(passes < 50);
    }
    assert!(passes >= 3, "{passes} passes");
    let cp = engine
        .with_log("t", 0, |l| Ok(l.cleaner_checkpoint()))
        .unwrap();
    let sealed_end = engine
        .with_log("t", 0, |l| Ok(l.segments().last().unwrap().base_offset()))
        .unwrap();
    assert_eq!(
        cp.first_dirty_offset, sealed_end,
        "everything sealed was cleaned"
    );
}

// ---------------------------------------------------------------------------
// Through a real Kafka client (librdkafka) and the broker

mod kafka {
    // Real servers and clients with wall-clock timeouts; the one-owner
    // rules of clippy.toml are for the library.
    #![allow(clippy::disallowed_methods)]

    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use rdkafka::admin::{
        AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    };
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::message::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};

    use super::common::broker::TestBroker;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", addr)
            .create()
            .expect("admin")
    }

    fn producer(addr: &str) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("producer")
    }

    async fn create(addr: &str, name: &str, configs: &[(&str, &str)]) {
        let mut t = NewTopic::new(name, 1, TopicReplication::Fixed(1));
        for (k, v) in configs {
            t = t.set(k, v);
        }
        let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
        let r = admin(addr).create_topics([&t], &opts).await.unwrap();
        assert_eq!(r, vec![Ok(name.to_string())]);
    }

    async fn send(
        p: &FutureProducer,
        topic: &str,
        key: Option<&str>,
        value: Option<&str>,
    ) -> Result<i64, KafkaError> {
        let mut r = FutureRecord::<str, str>::to(topic).partition(0);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = value {
            r = r.payload(v);
        }
        p.send(r, Duration::from_secs(10))
            .await
            .map(|d| d.offset)
            .map_err(|(e, _)| e)
    }

    /// Read `topic` from offset 0 to its high watermark and replay it into
    /// a table; offsets must increase.
    fn replay(addr: &str, topic: &str) -> BTreeMap<String, String> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("group.id", "unused")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "error")
            .create()
            .unwrap();
        let (_, high) = c.fetch_watermarks(topic, 0, TIMEOUT).unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(0))
            .unwrap();
        c.assign(&tpl).unwrap();
        let mut table = BTreeMap::new();
        let mut last = -1;
        let deadline = Instant::now() + TIMEOUT;
        while last + 1 < high {
            assert!(Instant::now() < deadline, "read {last} of {high}");
            let Some(m) = c.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.expect("no consume error");
            assert!(m.offset() > last);
            last = m.offset();
            let k = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            match m.payload() {
                Some(v) => table.insert(k, String::from_utf8(v.to_vec()).unwrap()),
                None => table.remove(&k),
            };
        }
        table
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_keyless_record_is_refused_and_the_policy_alters_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let broker = TestBroker::start(dir.path());
        create(&broker.addr, "t", &[("cleanup.policy", "compact")]).await;
        let p = producer(&broker.addr);
        assert_eq!(send(&p, "t", Some("k"), Some("v")).await.unwrap(), 0);
        let e = send(&p, "t", None, Some("v")).await.unwrap_err();
        assert_eq!(
            e,
            KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord),
            "{e:?}"
        );
        // compact → delete: keyless records are taken; and back.
        let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
        let a = admin(&broker.addr);
        let to = |policy: &'static str| {
            AlterConfig::new(ResourceSpecifier::Topic("t")).set("cleanup.policy", policy)
        };
        a.alter_configs([&to("delete")], &opts).await.unwrap();
        send(&p, "t", None, Some("v"))
            .await
            .expect("keyless under delete");
        a.alter_configs([&to("compact,delete")], &opts)
            .await
            .unwrap();
        let e = send(&p, "t", None, Some("v")).await.unwrap_err();
        assert_eq!(
            e,
            KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)
        );
        broker.stop();
    }

    /// Kafka Connect keeps its configs in a compacted topic and rebuilds
    /// them by reading it from offset 0 at every start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connect_style_config_topic_rebuilds_the_same_state_after_restart_and_cleaning() {
        let dir = tempfile::tempdir().unwrap();
        // The broker's own cleaner job waits an hour between runs here.
        let broker = TestBroker::start_with(dir.path(), |c| c.log_cleaner_backoff_ms = 3_600_000);
        create(
            &broker.addr,
            "connect-configs",
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "16384"),
                ("remote.storage.enable", "true"),
                ("local.retention.bytes", "0"),
            ],
        )
        .await;
        let p = producer(&broker.addr);
        let mut model = BTreeMap::new();
        for i in 0..3000 {
            let key = format!("connector-{}", i % 40);
            if i % 97 == 0 {
                send(&p, "connect-configs", Some(&key), None).await.unwrap();
                model.remove(&key);
            } else {
                let v = format!("{{\"tasks.max\": {i}, \"name\": \"{key}\"}}");
                send(&p, "connect-configs", Some(&key), Some(&v))
                    .await
                    .unwrap();
                model.insert(key, v);
            }
        }
        drop(p);
        assert_eq!(replay(&broker.addr, "connect-configs"), model);
        let before = broker
            .engine
            .with_log("connect-configs", 0, |l| Ok(l.size_bytes()))
            .unwrap();
        // Tiered before the restart: the restarted broker's own cleaner job
        // (it runs at start-up) then cleans in the bucket too, never only
        // locally ahead of the tiering.
        let engine = std::sync::Arc::clone(&broker.engine);
        tokio::task::spawn_blocking(move || {
            engine.flush().unwrap();
            for _ in 0..3 {
                engine.run_remote_round().unwrap();
            }
        })
        .await
        .unwrap();
        broker.stop();
        let broker = TestBroker::start(dir.path());
        broker.engine.flush().unwrap();
        // Tiered (the local copies go), then cleaned in the bucket. (The
        // broker's own jobs may have been first.)
        let engine = std::sync::Arc::clone(&broker.engine);
        tokio::task::spawn_blocking(move || {
            for _ in 0..3 {
                engine.run_remote_round().unwrap();
            }
            assert!(!engine
                .remote_segments("connect-configs", 0)
                .unwrap()
                .is_empty());
            engine.run_log_cleaner();
        })
        .await
        .unwrap();
        let text = broker.engine.render_metrics();
        let puts: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("tierlog_log_cleaner_remote_put_requests_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(puts > 0, "tiered compaction's PUTs are counted");
        let cleaned = broker
            .engine
            .with_log("connect-configs", 0, |l| {
                Ok(l.cleaner_checkpoint().first_dirty_offset)
            })
            .unwrap();
        assert!(cleaned > 0, "a pass ran");
        let after: u64 = broker
            .engine
            .remote_segments("connect-configs", 0)
            .unwrap()
            .iter()
            .filter(|r| r.state == tierlog::catalog::RemoteState::CopyFinished)
            .map(|r| r.log_size)
            .sum::<u64>()
            + broker
                .engine
                .with_log("connect-configs", 0, |l| Ok(l.size_bytes()))
                .unwrap();
        assert!(after < before / 4, "{after} of {before} bytes left");
        // A new worker reading from 0 rebuilds the same configs.
        assert_eq!(replay(&broker.addr, "connect-configs"), model);
        broker.stop();
    }
}

#[test]
fn runs_of_the_cleaner_from_two_threads_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    compact_topic(&engine, "turns", &[]);
    let (model, _) = produce_random(&engine, "turns", 4000, 200, 11);
    engine.flush().unwrap();
    // The background job and Engine::run_log_cleaner (or two callers) may
    // run at once: one pass cleans, the other then finds nothing due.
    let cleaned: usize = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| engine.run_log_cleaner().partitions_cleaned))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert_eq!(cleaned, 1);
    assert_eq!(
        engine
            .log_cleaner()
            .totals
            .passes
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(table(&read_from(&engine, "turns", 0)), model);
}
