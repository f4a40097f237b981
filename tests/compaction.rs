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
