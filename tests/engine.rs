//! The embedded engine against real files: round trips across rolls, reads
//! at every offset, timestamp lookups, reopen after clean and unclean
//! shutdown, damaged files, bad input, configs.

mod common;

use std::io::Write;

use common::{batch, batch_with_ts, configs, open, read_all_checked, value_for};
use tierlog::clock::ManualClock;
use tierlog::format::batch::{BatchHeader, Batches};
use tierlog::format::{decode_records, BatchBuilder, Record};
use tierlog::log::paths::{partition_dir, segment_file, LOG_EXT};
use tierlog::{ErrorKind, TimestampAndOffset};

const T0: i64 = 1_700_000_000_000;

/// Appends `batches` batches of 1..=7 records, the record at offset `o`
/// stamped `T0 + 10 * o`; returns (base, last) per batch.
fn fill(
    engine: &tierlog::Engine,
    topic: &str,
    batches: usize,
    value_len: usize,
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut next = engine.offsets(topic, 0).unwrap().log_end_offset;
    for i in 0..batches {
        let count = 1 + i % 7;
        let mut b = batch_with_ts(next, count, value_len, |o| T0 + 10 * o);
        let info = engine.append(topic, 0, &mut b).unwrap();
        assert_eq!(info.base_offset, next);
        assert_eq!(info.last_offset, next + count as i64 - 1);
        out.push((info.base_offset, info.last_offset));
        next = info.last_offset + 1;
    }
    out
}

#[test]
fn round_trip_across_rolls_and_every_offset_reads_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("segment.bytes", "8192"), ("index.interval.bytes", "512")]),
        )
        .unwrap();
    let batches = fill(&engine, "t", 300, 100);
    let end = batches.last().unwrap().1 + 1;
    let segments = engine
        .with_log("t", 0, |log| Ok(log.segment_count()))
        .unwrap();
    assert!(
        segments > 10,
        "expected many rolls, got {segments} segments"
    );

    // A read at every offset starts with the batch that holds it.
    for &(base, last) in &batches {
        for offset in base..=last {
            let read = engine.read("t", 0, offset, 1).unwrap(); // min one batch
            let h = BatchHeader::validate(&read.records).unwrap();
            assert_eq!(
                (h.base_offset, h.last_offset()),
                (base, last),
                "read at {offset}"
            );
            assert_eq!(read.log_end_offset, end);
        }
    }
    // Reads return whole batches only and honour max_bytes.
    let read = engine.read("t", 0, 0, 3000).unwrap();
    assert!(read.records.len() <= 3000);
    let total: usize = Batches::new(&read.records)
        .map(|b| b.unwrap().1.size())
        .sum();
    assert_eq!(total, read.records.len());
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len() as i64, end);
    // At the end: empty; past it or below the start: out of range.
    assert!(engine
        .read("t", 0, end, 1 << 20)
        .unwrap()
        .records
        .is_empty());
    assert_eq!(
        engine.read("t", 0, end + 1, 100).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        engine.read("t", 0, -1, 100).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    engine.shutdown().unwrap();
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("segment.bytes", "4096"), ("index.interval.bytes", "256")]),
        )
        .unwrap();
    // Record at offset o has timestamp T0 + 10 * o.
    let batches = fill(&engine, "t", 120, 50);
    let end = batches.last().unwrap().1 + 1;
    for target_offset in 0..end {
        let ts = T0 + 10 * target_offset;
        assert_eq!(
            engine.offset_for_timestamp("t", 0, ts).unwrap(),
            Some(TimestampAndOffset {
                offset: target_offset,
                timestamp: ts,
            }),
            "exact timestamp of offset {target_offset}"
        );
        // A timestamp between two records finds the later one.
        if target_offset + 1 < end {
            assert_eq!(
                engine.offset_for_timestamp("t", 0, ts + 5).unwrap(),
                Some(TimestampAndOffset {
                    offset: target_offset + 1,
                    timestamp: ts + 10,
                })
            );
        }
    }
    assert_eq!(
        engine.offset_for_timestamp("t", 0, 0).unwrap(),
        Some(TimestampAndOffset {
            offset: 0,
            timestamp: T0,
        })
    );
    assert_eq!(
        engine.offset_for_timestamp("t", 0, T0 + 10 * end).unwrap(),
        None
    );
}

#[test]
fn reopen_after_clean_shutdown_keeps_data_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic(
            "t",
            2,
            &configs(&[("segment.bytes", "4096"), ("retention.ms", "-1")]),
        )
        .unwrap();
    let first = fill(&engine, "t", 50, 80);
    let id = engine.topic("t").unwrap().id;
    engine.shutdown().unwrap();
    assert_eq!(
        engine.read("t", 0, 0, 10).unwrap_err().kind(),
        ErrorKind::Closed
    );
    drop(engine);

    let engine = open(dir.path(), &clock);
    assert!(
        engine.recovery_reports().is_empty(),
        "clean shutdown needs no recovery"
    );
    let info = engine.topic("t").unwrap();
    assert_eq!((info.id, info.partitions), (id, 2));
    assert_eq!(
        info.overrides,
        configs(&[("segment.bytes", "4096"), ("retention.ms", "-1")])
    );
    assert_eq!(info.effective["retention.ms"], "-1");
    let end = first.last().unwrap().1 + 1;
    assert_eq!(engine.offsets("t", 0).unwrap().log_end_offset, end);
    let more = fill(&engine, "t", 20, 80);
    assert_eq!(more[0].0, end, "offsets continue after reopen");
    assert_eq!(
        read_all_checked(&engine, "t", 0, 0).len() as i64,
        more.last().unwrap().1 + 1
    );
    assert_eq!(engine.offsets("t", 1).unwrap().log_end_offset, 0);
    engine.shutdown().unwrap();
}

#[test]
fn unclean_reopen_recovers_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic("t", 1, &configs(&[("segment.bytes", "4096")]))
        .unwrap();
    let batches = fill(&engine, "t", 60, 60);
    let end = batches.last().unwrap().1 + 1;
    let active = engine
        .with_log("t", 0, |log| {
            Ok(log.segments().last().unwrap().log_path().to_path_buf())
        })
        .unwrap();
    drop(engine); // no shutdown: as after a crash

    // A torn write: the first 100 bytes of a valid batch at the end.
    let torn = batch(end, 5, 60, T0);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap()
        .write_all(&torn[..100])
        .unwrap();

    let engine = open(dir.path(), &clock);
    let reports = engine.recovery_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].1.truncated_bytes, 100);
    assert!(
        reports[0].1.cuts[0].contains(&active.display().to_string()),
        "{:?}",
        reports[0].1.cuts
    );
    assert_eq!(engine.offsets("t", 0).unwrap().log_end_offset, end);
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len() as i64, end);
    // Appends continue at the cut.
    let mut b = batch(end, 3, 60, T0);
    assert_eq!(engine.append("t", 0, &mut b).unwrap().base_offset, end);
    engine.shutdown().unwrap();
}

#[test]
fn unclean_reopen_cuts_a_corrupt_batch_and_everything_after() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("t", 1, &Default::default()).unwrap();
    let batches = fill(&engine, "t", 20, 60);
    let (path, positions) = engine
        .with_log("t", 0, |log| {
            let seg = log.segments().last().unwrap();
            let bytes = std::fs::read(seg.log_path()).unwrap();
            let positions: Vec<usize> = Batches::new(&bytes).map(|b| b.unwrap().0).collect();
            Ok((seg.log_path().to_path_buf(), positions))
        })
        .unwrap();
    drop(engine);
    // Flip a byte inside batch 10's records (CRC-covered).
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[positions[10] + 70] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let engine = open(dir.path(), &clock);
    let report = &engine.recovery_reports()[0].1;
    assert!(report.cuts[0].contains("CRC mismatch"), "{:?}", report.cuts);
    assert_eq!(report.truncated_bytes as usize, bytes.len() - positions[10]);
    assert_eq!(
        engine.offsets("t", 0).unwrap().log_end_offset,
        batches[10].0
    );
    read_all_checked(&engine, "t", 0, 0);
}

#[test]
fn a_corrupt_sealed_segment_takes_only_its_partition_offline() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic(
            "bad",
            1,
            &configs(&[
                ("segment.bytes", "2048"),
                ("index.interval.bytes", "100000"),
            ]),
        )
        .unwrap();
    engine.create_topic("good", 1, &Default::default()).unwrap();
    fill(&engine, "bad", 40, 60);
    fill(&engine, "good", 5, 60);
    engine.shutdown().unwrap();
    drop(engine);
    // Garble the header of the second batch of the first (sealed) segment.
    let seg = segment_file(&partition_dir(dir.path(), "bad", 0), 0, LOG_EXT);
    let mut bytes = std::fs::read(&seg).unwrap();
    let second = BatchHeader::parse(&bytes).unwrap().size();
    bytes[second + 16] = 9; // magic byte
    std::fs::write(&seg, &bytes).unwrap();

    let engine = open(dir.path(), &clock);
    let e = engine.read("bad", 0, 0, 100).unwrap_err();
    // Offline, as Kafka answers for a failed log directory
    // (KAFKA_STORAGE_ERROR); the message names the damage.
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    let msg = e.to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains(&format!("position {second}")),
        "{msg}"
    );
    assert!(msg.contains("magic 9"), "{msg}");
    // The other topic serves.
    read_all_checked(&engine, "good", 0, 0);
    let mut b = batch(0, 1, 10, T0);
    engine.append("good", 0, &mut b).unwrap();
    engine.shutdown().unwrap();
}

#[test]
fn missing_or_damaged_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("segment.bytes", "4096"), ("index.interval.bytes", "256")]),
        )
        .unwrap();
    let batches = fill(&engine, "t", 80, 60);
    engine.shutdown().unwrap();
    drop(engine);
    let pdir = partition_dir(dir.path(), "t", 0);
    std::fs::remove_file(segment_file(&pdir, 0, "index")).unwrap();
    let second = std::fs::read_dir(&pdir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "timeindex"))
        .max()
        .unwrap();
    std::fs::write(&second, [1u8; 13]).unwrap(); // not a whole entry
    let engine = open(dir.path(), &clock);
    for &(base, last) in &batches {
        let read = engine.read("t", 0, last, 1).unwrap();
        assert_eq!(BatchHeader::parse(&read.records).unwrap().base_offset, base);
    }
    assert!(engine.offset_for_timestamp("t", 0, T0).unwrap().is_some());
}

#[test]
fn bad_input_gets_clear_errors_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic("t", 1, &configs(&[("max.message.bytes", "2000")]))
        .unwrap();

    let mut good = batch(0, 2, 10, T0);
    let mut corrupt = good.clone();
    let n = corrupt.len();
    corrupt[n - 1] ^= 1;
    let e = engine.append("t", 0, &mut corrupt).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Corrupt,
        "a checksum failure (Kafka: CORRUPT_MESSAGE)"
    );
    assert!(e.to_string().contains("CRC mismatch"), "{e}");

    // A good batch followed by a torn one: nothing is appended.
    let mut two = good.clone();
    two.extend_from_slice(&good[..30]);
    assert_eq!(
        engine.append("t", 0, &mut two).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(engine.offsets("t", 0).unwrap().log_end_offset, 0);

    let mut big = batch(0, 1, 5000, T0);
    let e = engine.append("t", 0, &mut big).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(e.to_string().contains("max.message.bytes"), "{e}");

    assert_eq!(
        engine.append("t", 0, &mut []).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(
        engine.append("nope", 0, &mut good).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let e = engine.append("t", 7, &mut good).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("partition 7"), "{e}");

    let e = engine
        .create_topic("x", 1, &configs(&[("retention.mss", "1")]))
        .unwrap_err();
    assert!(e.to_string().contains("'retention.mss'"), "{e}");
    let e = engine
        .create_topic("x", 1, &configs(&[("segment.ms", "soon")]))
        .unwrap_err();
    assert!(e.to_string().contains("segment.ms"), "{e}");
    assert_eq!(
        engine
            .create_topic("a/b", 1, &Default::default())
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
    assert_eq!(
        engine
            .create_topic("x", 0, &Default::default())
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
    assert_eq!(
        engine
            .create_topic("t", 1, &Default::default())
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    assert!(
        engine.topic("x").is_err(),
        "failed creates leave nothing behind"
    );

    assert_eq!(engine.append("t", 0, &mut good).unwrap().base_offset, 0);
}

#[test]
fn log_append_time_topics_stamp_batches() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0 + 5_000);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("message.timestamp.type", "LogAppendTime")]),
        )
        .unwrap();
    let mut b = batch(0, 3, 10, 42);
    let info = engine.append("t", 0, &mut b).unwrap();
    assert_eq!(info.log_append_time, Some(T0 + 5_000));
    let read = engine.read("t", 0, 0, 1 << 20).unwrap();
    let h = BatchHeader::validate(&read.records).unwrap(); // CRC recomputed
    assert_eq!(h.max_timestamp, T0 + 5_000);
    assert!(decode_records(&read.records)
        .unwrap()
        .iter()
        .all(|r| r.timestamp == T0 + 5_000));
    assert_eq!(
        engine.offset_for_timestamp("t", 0, T0).unwrap(),
        Some(TimestampAndOffset {
            offset: 0,
            timestamp: T0 + 5_000,
        })
    );
}

#[test]
fn segment_ms_rolls_by_record_time_and_flush_ms_by_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("segment.ms", "1000"), ("flush.ms", "500")]),
        )
        .unwrap();
    let mut a = batch(0, 1, 10, T0);
    engine.append("t", 0, &mut a).unwrap();
    let mut b = batch(1, 1, 10, T0 + 999);
    engine.append("t", 0, &mut b).unwrap();
    assert_eq!(
        engine.with_log("t", 0, |l| Ok(l.segment_count())).unwrap(),
        1
    );
    let mut c = batch(2, 1, 10, T0 + 1001);
    engine.append("t", 0, &mut c).unwrap();
    assert_eq!(
        engine.with_log("t", 0, |l| Ok(l.segment_count())).unwrap(),
        2,
        "rolled after segment.ms"
    );

    assert!(!engine
        .with_log("t", 0, |l| l.flush_if_due(clock_now(&clock)))
        .unwrap());
    clock.advance(500);
    assert!(
        engine
            .with_log("t", 0, |l| l.flush_if_due(clock_now(&clock)))
            .unwrap(),
        "flush.ms due"
    );
    assert!(
        !engine
            .with_log("t", 0, |l| l.flush_if_due(clock_now(&clock)))
            .unwrap(),
        "nothing left to flush"
    );
}

fn clock_now(clock: &ManualClock) -> i64 {
    use tierlog::clock::Clock;
    clock.now_ms()
}

#[test]
fn flush_messages_policy_and_background_flush_advance_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("segment.bytes", "2048"), ("flush.messages", "3")]),
        )
        .unwrap();
    let batches = fill(&engine, "t", 40, 50);
    // Rolls leave sealed segments for the flush; flush.messages=3 forces one
    // on the next append, which syncs them and moves the recovery point.
    let (rp, active_base) = engine
        .with_log("t", 0, |l| {
            Ok((
                l.recovery_point(),
                l.segments().last().unwrap().base_offset(),
            ))
        })
        .unwrap();
    assert_eq!(
        rp, active_base,
        "sealed segments synced by the flush policy"
    );
    assert!(rp > 0);
    let end = batches.last().unwrap().1 + 1;
    engine.shutdown().unwrap();
    let rp =
        std::fs::read_to_string(partition_dir(dir.path(), "t", 0).join("recovery-point")).unwrap();
    assert_eq!(
        rp.trim().parse::<i64>().unwrap(),
        end,
        "clean shutdown syncs everything"
    );
}

/// Which appends a broker may run on its async worker: a partition whose
/// lock is free, whose topic never fsyncs on the append path and keeps
/// the producers' codecs. Not while something holds the partition (a
/// roll, retention, the cleaner), nor with `flush.messages`, `flush.ms` or
/// a recompressing `compression.type`, nor for an unknown partition.
#[test]
fn appends_are_quick_only_on_a_free_partition_without_fsync_or_recompression() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("plain", 1, &configs(&[])).unwrap();
    for (topic, key, value) in [
        ("msgs", "flush.messages", "1000"),
        ("ms", "flush.ms", "60000"),
        ("zstd", "compression.type", "zstd"),
    ] {
        engine
            .create_topic(topic, 1, &configs(&[(key, value)]))
            .unwrap();
        assert!(!engine.appends_quickly(topic, 0), "{key}={value}");
    }
    assert!(engine.appends_quickly("plain", 0));
    assert!(!engine.appends_quickly("plain", 1), "no such partition");
    assert!(!engine.appends_quickly("nope", 0), "no such topic");
    // While another thread holds the partition, not quick; after, quick.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let engine = &engine;
        s.spawn(move || {
            engine
                .with_log("plain", 0, |_| {
                    held_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                })
                .unwrap()
        });
        held_rx.recv().unwrap();
        assert!(!engine.appends_quickly("plain", 0), "its lock is held");
        release_tx.send(()).unwrap();
    });
    assert!(engine.appends_quickly("plain", 0));
    // Setting the policy on a live topic counts too.
    engine
        .set_topic_configs("plain", &configs(&[("flush.messages", "1")]))
        .unwrap();
    assert!(!engine.appends_quickly("plain", 0));
}

#[test]
fn truncate_and_delete_segments_below() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic("t", 1, &configs(&[("segment.bytes", "2048")]))
        .unwrap();
    let batches = fill(&engine, "t", 60, 50);
    let bases: Vec<i64> = engine
        .with_log("t", 0, |l| {
            Ok(l.segments().map(|s| s.base_offset()).collect())
        })
        .unwrap();
    assert!(bases.len() > 4);

    // Delete every segment wholly below the start of the third one.
    let deleted = engine
        .with_log("t", 0, |l| l.delete_segments_below(bases[2]))
        .unwrap();
    assert_eq!(
        deleted.iter().map(|d| d.base_offset).collect::<Vec<_>>(),
        bases[..2].to_vec()
    );
    assert_eq!(engine.offsets("t", 0).unwrap().log_start_offset, bases[2]);
    assert_eq!(
        engine.read("t", 0, 0, 100).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    read_all_checked(&engine, "t", 0, bases[2]);
    // Renamed under the partition's lock, unlinked after it: nothing of
    // the deleted segments is left once the call returns.
    let pdir = partition_dir(dir.path(), "t", 0);
    let names = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    for base in &bases[..2] {
        let stem = format!("{base:020}.");
        assert!(
            !names(&pdir).iter().any(|n| n.starts_with(&stem)),
            "segment {base}'s files are gone: {:?}",
            names(&pdir)
        );
    }
    assert!(!names(&pdir).iter().any(|n| n.ends_with(".deleted")));

    // Truncate into the middle of a batch: the whole batch goes.
    let (base, last) = batches[45];
    let mid = if last > base { base + 1 } else { base };
    engine.with_log("t", 0, |l| l.truncate_to(mid)).unwrap();
    assert_eq!(engine.offsets("t", 0).unwrap().log_end_offset, base);
    let mut b = batch(base, 2, 50, T0);
    assert_eq!(engine.append("t", 0, &mut b).unwrap().base_offset, base);
    read_all_checked(&engine, "t", 0, bases[2]);

    // Deleting everything keeps an empty active segment at the end.
    let end = engine.offsets("t", 0).unwrap().log_end_offset;
    engine
        .with_log("t", 0, |l| l.delete_segments_below(end))
        .unwrap();
    let offsets = engine.offsets("t", 0).unwrap();
    assert_eq!(
        (offsets.log_start_offset, offsets.log_end_offset),
        (end, end)
    );
    engine.shutdown().unwrap();
    drop(engine);
    // A crash between the rename and the unlinking leaves a `.log.deleted`
    // and the segment's index files: the next open removes them all, and
    // the segment stays deleted.
    let stale = 3i64;
    std::fs::write(pdir.join(format!("{stale:020}.log.deleted")), b"old").unwrap();
    std::fs::write(pdir.join(format!("{stale:020}.index")), b"").unwrap();
    std::fs::write(pdir.join(format!("{stale:020}.timeindex")), b"").unwrap();
    let engine = open(dir.path(), &clock);
    let offsets = engine.offsets("t", 0).unwrap();
    assert_eq!(
        (offsets.log_start_offset, offsets.log_end_offset),
        (end, end)
    );
    let stem = format!("{stale:020}.");
    assert!(
        !names(&pdir).iter().any(|n| n.starts_with(&stem)),
        "{:?}",
        names(&pdir)
    );
}

#[test]
fn topic_configs_validate_apply_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("t", 1, &Default::default()).unwrap();
    let e = engine
        .set_topic_configs(
            "t",
            &configs(&[("retention.ms", "100"), ("local.retention.ms", "200")]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("local.retention.ms"), "{e}");
    assert!(
        engine.topic("t").unwrap().overrides.is_empty(),
        "a rejected change changes nothing"
    );
    engine
        .set_topic_configs("t", &configs(&[("max.message.bytes", "100")]))
        .unwrap();
    let mut b = batch(0, 1, 200, T0);
    assert_eq!(
        engine.append("t", 0, &mut b).unwrap_err().kind(),
        ErrorKind::TooLarge,
        "applied at once"
    );
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(dir.path(), &clock);
    assert_eq!(
        engine.topic("t").unwrap().effective["max.message.bytes"],
        "100"
    );
    assert_eq!(
        engine.append("t", 0, &mut b).unwrap_err().kind(),
        ErrorKind::TooLarge,
        "after reopen"
    );
}

#[test]
fn delete_topic_removes_data_and_the_name_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("t", 2, &Default::default()).unwrap();
    fill(&engine, "t", 5, 10);
    let old_id = engine.topic("t").unwrap().id;
    engine.delete_topic("t").unwrap();
    assert!(!partition_dir(dir.path(), "t", 0).exists());
    assert_eq!(
        engine.read("t", 0, 0, 10).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        engine.delete_topic("t").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    engine.create_topic("t", 1, &Default::default()).unwrap();
    assert_ne!(engine.topic("t").unwrap().id, old_id);
    assert_eq!(engine.offsets("t", 0).unwrap().log_end_offset, 0);
    assert_eq!(engine.topics().len(), 1);
}

#[test]
fn compressed_batches_are_stored_as_sent() {
    use tierlog::format::Compression;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("t", 1, &Default::default()).unwrap();
    for (i, c) in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = BatchBuilder::new().compression(c);
        for j in 0..10 {
            let off = i as i64 * 10 + j;
            b.push(Record::new(None, Some(value_for(off, 300)), T0 + off));
        }
        let mut bytes = b.build().unwrap();
        let sent = bytes.clone();
        let info = engine.append("t", 0, &mut bytes).unwrap();
        let read = engine.read("t", 0, info.base_offset, 1 << 20).unwrap();
        // Identical to what was sent except the assigned base offset and
        // the stamped leader epoch (bytes 12..16, outside the CRC).
        assert_eq!(read.records[8..12], sent[8..12]);
        assert_eq!(read.records[12..16], 0i32.to_be_bytes());
        assert_eq!(read.records[16..], sent[16..]);
    }
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len(), 40);
    assert_eq!(
        engine.offset_for_timestamp("t", 0, T0 + 25).unwrap(),
        Some(TimestampAndOffset {
            offset: 25,
            timestamp: T0 + 25,
        })
    );
}

/// Appends `n` batches with the engine's background flush off, so every
/// segment stays above the recovery point (untrusted) at the next open.
fn segments_of(engine: &tierlog::Engine, topic: &str) -> Vec<std::path::PathBuf> {
    engine
        .with_log(topic, 0, |l| {
            Ok(l.segments().map(|s| s.log_path().to_path_buf()).collect())
        })
        .unwrap()
}

#[test]
fn stray_bytes_after_a_sealed_segment_are_cut_without_losing_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic("t", 1, &configs(&[("segment.bytes", "2048")]))
        .unwrap();
    let batches = fill(&engine, "t", 40, 60);
    let end = batches.last().unwrap().1 + 1;
    let segs = segments_of(&engine, "t");
    assert!(segs.len() >= 3);
    drop(engine); // crash: no sealed segment was fsynced, none is trusted
                  // What a failed (partial) append leaves behind.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segs[0])
        .unwrap()
        .write_all(&[7u8; 33])
        .unwrap();

    let engine = open(dir.path(), &clock);
    let report = &engine.recovery_reports()[0].1;
    assert_eq!(report.truncated_bytes, 33, "{report:?}");
    assert_eq!(report.segments_deleted, 0, "{report:?}");
    assert_eq!(engine.offsets("t", 0).unwrap().log_end_offset, end);
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len() as i64, end);
}

#[test]
fn a_sealed_segment_that_lost_its_tail_cuts_the_log_there_and_stays_online() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic("t", 1, &configs(&[("segment.bytes", "2048")]))
        .unwrap();
    fill(&engine, "t", 40, 60);
    let segs = segments_of(&engine, "t");
    drop(engine);
    // A power cut lost the unsynced tail of the second segment, exactly at a
    // batch boundary: it scans clean but ends before the third begins.
    let bytes = std::fs::read(&segs[1]).unwrap();
    let first = BatchHeader::parse(&bytes).unwrap();
    std::fs::write(&segs[1], &bytes[..first.size()]).unwrap();

    let engine = open(dir.path(), &clock);
    let report = &engine.recovery_reports()[0].1;
    assert!(report.segments_deleted >= 1, "{report:?}");
    assert_eq!(
        engine.offsets("t", 0).unwrap().log_end_offset,
        first.next_offset()
    );
    read_all_checked(&engine, "t", 0, 0);
    let mut b = batch(first.next_offset(), 2, 10, T0);
    assert_eq!(
        engine.append("t", 0, &mut b).unwrap().base_offset,
        first.next_offset()
    );
}

#[test]
fn an_empty_time_index_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("segment.bytes", "4096"), ("index.interval.bytes", "256")]),
        )
        .unwrap();
    let batches = fill(&engine, "t", 80, 60);
    engine.shutdown().unwrap();
    drop(engine);
    let pdir = partition_dir(dir.path(), "t", 0);
    std::fs::write(segment_file(&pdir, 0, "timeindex"), b"").unwrap();
    let engine = open(dir.path(), &clock);
    // The last record of the first segment is still found by its timestamp.
    let first_seg_end = engine
        .with_log("t", 0, |l| Ok(l.segments().next().unwrap().next_offset()))
        .unwrap();
    let last = first_seg_end - 1;
    assert_eq!(
        engine.offset_for_timestamp("t", 0, T0 + 10 * last).unwrap(),
        Some(TimestampAndOffset {
            offset: last,
            timestamp: T0 + 10 * last,
        })
    );
    assert!(batches.len() > 1);
}

#[test]
fn extreme_client_timestamps_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine
        .create_topic("t", 1, &configs(&[("segment.ms", "1000")]))
        .unwrap();
    let mut a = batch(0, 1, 10, i64::MAX - 10);
    engine.append("t", 0, &mut a).unwrap();
    let mut b = batch(1, 1, 10, i64::MIN);
    engine.append("t", 0, &mut b).unwrap();
    let mut c = batch(2, 1, 10, 0);
    engine.append("t", 0, &mut c).unwrap();
    assert_eq!(engine.offsets("t", 0).unwrap().log_end_offset, 3);
}

#[test]
fn a_stale_partition_directory_never_leaks_into_a_new_topic() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("old", 1, &Default::default()).unwrap();
    fill(&engine, "old", 5, 10);
    engine.shutdown().unwrap();
    drop(engine);
    // A directory with data but no catalog row, as a crash mid-delete leaves.
    let from = partition_dir(dir.path(), "old", 0);
    let to = partition_dir(dir.path(), "new", 0);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let engine = open(dir.path(), &clock);
    engine.create_topic("new", 1, &Default::default()).unwrap();
    assert_eq!(engine.offsets("new", 0).unwrap().log_end_offset, 0);
    assert!(engine.read("new", 0, 0, 1000).unwrap().records.is_empty());
    // Its owner ("old", still live) is not proven gone: the directory is
    // kept aside with its data, not deleted.
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-stray"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(segment_file(&kept[0], 0, LOG_EXT).exists());
    let read = read_all_checked(&engine, "old", 0, 0);
    assert_eq!(read.len(), 15);
}

#[test]
fn creating_an_existing_topic_again_changes_nothing_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    let id = engine
        .create_topic("victim", 1, &configs(&[("segment.bytes", "2048")]))
        .unwrap()
        .id;
    fill(&engine, "victim", 40, 60);
    let end = engine.offsets("victim", 0).unwrap().log_end_offset;
    let segments = segments_of(&engine, "victim");
    assert!(segments.len() > 2, "several segments: {segments:?}");
    for (partitions, overrides) in [(1, configs(&[])), (3, configs(&[("retention.ms", "1")]))] {
        let err = engine
            .create_topic("victim", partitions, &overrides)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
        assert!(err.to_string().contains("'victim' already exists"), "{err}");
    }
    assert_eq!(segments_of(&engine, "victim"), segments, "no file touched");
    let info = engine.topic("victim").unwrap();
    assert_eq!((info.id, info.partitions), (id, 1));
    assert_eq!(info.overrides, configs(&[("segment.bytes", "2048")]));
    // Appends go on at the same offsets, and a restart reads everything.
    fill(&engine, "victim", 3, 60);
    let end = end + 1 + 2 + 3;
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(dir.path(), &clock);
    assert_eq!(engine.offsets("victim", 0).unwrap().log_end_offset, end);
    assert_eq!(read_all_checked(&engine, "victim", 0, 0).len() as i64, end);
}

#[test]
fn partition_directories_name_their_topic_and_a_foreign_one_is_refused() {
    use tierlog::log::partition_metadata;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    let id = engine.create_topic("t", 2, &Default::default()).unwrap().id;
    fill(&engine, "t", 5, 10);
    let p0 = partition_dir(dir.path(), "t", 0);
    let p1 = partition_dir(dir.path(), "t", 1);
    assert_eq!(partition_metadata::read(&p0).unwrap(), Some(id));
    engine.shutdown().unwrap();
    drop(engine);
    // A directory made before tierlog wrote the file is adopted.
    std::fs::remove_file(p0.join("partition.metadata")).unwrap();
    // One naming another topic is not this topic's: offline, untouched.
    let foreign = uuid::Uuid::new_v4();
    partition_metadata::write(&p1, foreign).unwrap();
    let engine = open(dir.path(), &clock);
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len(), 15);
    assert_eq!(partition_metadata::read(&p0).unwrap(), Some(id));
    let err = engine.read("t", 1, 0, 100).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("belongs to topic id {foreign}")),
        "{err}"
    );
    assert_eq!(partition_metadata::read(&p1).unwrap(), Some(foreign));
    // The status page lists it offline with the reason, and the open's
    // error among the recent events, once (the flush job's check of
    // offline partitions does not repeat it).
    let status = engine.status_figures();
    assert_eq!(status.partitions.len(), 1, "{:?}", status.partitions);
    assert_eq!(status.offline.len(), 1, "{:?}", status.offline);
    assert_eq!(status.offline[0].partition, 1);
    assert!(
        status.offline[0]
            .reason
            .contains(&format!("belongs to topic id {foreign}")),
        "{:?}",
        status.offline
    );
    let opened = |events: &[tierlog::metrics::Event]| {
        events
            .iter()
            .filter(|e| {
                e.message
                    .starts_with("t-1 cannot be opened and stays offline")
            })
            .count()
    };
    assert_eq!(opened(&status.events), 1, "{:?}", status.events);
    engine.run_flush_check();
    let page = engine.render_status_page();
    assert!(page.contains("offline: "), "{page}");
    assert_eq!(opened(&engine.status_figures().events), 1);
    assert_eq!(engine.status_figures().events.len(), 1);
}

#[test]
fn a_delete_interrupted_after_its_catalog_transaction_is_finished_at_open() {
    use tierlog::catalog::{Catalog, SqliteCatalog};
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("gone", 1, &Default::default()).unwrap();
    engine.create_topic("kept", 1, &Default::default()).unwrap();
    fill(&engine, "gone", 5, 10);
    fill(&engine, "kept", 5, 10);
    engine.shutdown().unwrap();
    drop(engine);
    // The crash point: DeleteTopics' catalog transaction committed, no file
    // was removed yet.
    let mut catalog = SqliteCatalog::open(&tierlog::log::paths::catalog_file(dir.path())).unwrap();
    catalog.delete_topic("gone", T0).unwrap();
    drop(catalog);
    assert!(partition_dir(dir.path(), "gone", 0).exists());
    let engine = open(dir.path(), &clock);
    assert!(
        !partition_dir(dir.path(), "gone", 0).exists(),
        "finished at open"
    );
    assert_eq!(read_all_checked(&engine, "kept", 0, 0).len(), 15);
    engine.create_topic("gone", 1, &Default::default()).unwrap();
    assert_eq!(engine.offsets("gone", 0).unwrap().log_end_offset, 0);
}

#[test]
fn a_data_directory_is_used_by_one_engine_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    let mut config = tierlog::EngineConfig::new(dir.path());
    config.flush_check_interval = None;
    let e = tierlog::Engine::open(config).unwrap_err();
    assert!(
        e.to_string().contains("in use by another tierlog process"),
        "{e}"
    );
    drop(engine);
    open(dir.path(), &clock); // free again
}

#[test]
fn records_with_impossible_counts_are_rejected_at_append() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("t", 1, &Default::default()).unwrap();
    let mut b = BatchBuilder::new();
    let mut r = Record::new(None, Some(b"v".to_vec()), T0);
    r.headers.push(("h".into(), None));
    b.push(r);
    let good = b.build().unwrap();
    // The header count (zig-zag 2 = one header) rewritten as i32::MAX, the
    // record and batch lengths and the CRC fixed up to match.
    let mut bad = good.clone();
    let pos = bad.len() - 4;
    assert_eq!(bad[pos], 2);
    bad.splice(pos..pos + 1, [0xfe, 0xff, 0xff, 0xff, 0x0f]);
    bad[61] += 8;
    let len = (bad.len() - 12) as i32;
    bad[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    let e = engine.append("t", 0, &mut bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(e.to_string().contains("header count"), "{e}");
    assert_eq!(engine.offsets("t", 0).unwrap().log_end_offset, 0);
}

#[test]
fn max_timestamp_is_the_first_record_holding_it_not_its_batch_end() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("t", 1, &Default::default()).unwrap();
    assert_eq!(engine.max_timestamp_offset("t", 0).unwrap(), None);
    // Offsets 0..=2 stamped +5, +9, +7: the batch's max is at offset 1.
    let stamps = [5, 9, 7, 9, 3];
    let mut b = batch_with_ts(0, 3, 10, |o| T0 + stamps[o as usize]);
    engine.append("t", 0, &mut b).unwrap();
    assert_eq!(
        engine.max_timestamp_offset("t", 0).unwrap(),
        Some(TimestampAndOffset {
            offset: 1,
            timestamp: T0 + 9,
        })
    );
    // A later segment with the same max: the earlier record still wins,
    // as in Kafka.
    engine.with_log("t", 0, |l| l.roll(T0)).unwrap();
    let mut b = batch_with_ts(3, 2, 10, |o| T0 + stamps[o as usize]);
    engine.append("t", 0, &mut b).unwrap();
    assert_eq!(
        engine.max_timestamp_offset("t", 0).unwrap(),
        Some(TimestampAndOffset {
            offset: 1,
            timestamp: T0 + 9,
        })
    );
}

#[test]
fn an_engine_without_a_remote_tier_applies_retention_by_time_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut config =
        tierlog::EngineConfig::new(dir.path()).with_clock(std::sync::Arc::new(clock.clone()));
    config.remote = None;
    config.flush_check_interval = None;
    let engine = tierlog::Engine::open(config).unwrap();
    engine
        .create_topic(
            "by-time",
            1,
            &configs(&[("segment.bytes", "2048"), ("retention.ms", "1000")]),
        )
        .unwrap();
    engine
        .create_topic(
            "by-size",
            1,
            &configs(&[("segment.bytes", "2048"), ("retention.bytes", "4096")]),
        )
        .unwrap();
    fill(&engine, "by-time", 60, 60);
    fill(&engine, "by-size", 60, 60);
    let end = engine.offsets("by-time", 0).unwrap().log_end_offset;
    // Records are stamped T0 + 10 * offset: at this time none is expired.
    clock.set(T0);
    let before = engine
        .with_log("by-size", 0, |l| Ok(l.segment_count()))
        .unwrap();
    let deleted = engine.run_local_retention().local_deleted;
    let (size, count, oldest) = engine
        .with_log("by-size", 0, |l| {
            Ok((
                l.size_bytes(),
                l.segment_count(),
                l.segments().next().unwrap().size(),
            ))
        })
        .unwrap();
    assert!(
        deleted > 0 && count == before - deleted,
        "{deleted} of {before}"
    );
    assert!(size >= 4096, "keeps at least retention.bytes: {size}");
    assert!(
        size - oldest < 4096,
        "deletes all it may: {size} - {oldest}"
    );
    assert_eq!(engine.offsets("by-time", 0).unwrap().log_start_offset, 0);
    // Every record but the newest segment's is older than a second.
    clock.set(T0 + 10 * end + 1_500);
    assert!(engine.run_local_retention().local_deleted > 0);
    assert_eq!(
        engine
            .with_log("by-time", 0, |l| Ok(l.segment_count()))
            .unwrap(),
        1,
        "only the active segment is left"
    );
    let o = engine.offsets("by-time", 0).unwrap();
    assert!(o.log_start_offset > 0 && o.log_end_offset == end, "{o:?}");
    // Reads below the log start are out of range; above it they work.
    assert_eq!(
        engine.read("by-time", 0, 0, 100).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        read_all_checked(&engine, "by-time", 0, o.log_start_offset).len() as i64,
        end - o.log_start_offset
    );
    // Without a remote tier, the remote round is refused, not silently empty.
    assert_eq!(
        engine.run_remote_round().unwrap_err().kind(),
        ErrorKind::Invalid
    );
}

#[test]
fn damaged_files_at_start_up_never_panic_and_never_return_wrong_bytes() {
    use rand::{Rng, SeedableRng};
    let pristine = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let engine = open(pristine.path(), &clock);
        for t in ["a", "b"] {
            engine
                .create_topic(t, 1, &configs(&[("segment.bytes", "2048")]))
                .unwrap();
            fill(&engine, t, 40, 60);
        }
        // No shutdown: what a crash leaves (recovery runs at open).
    }
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(partition_dir(pristine.path(), "a", 0))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() > 6, "{files:?}");
    let copy_dir = |from: &std::path::Path, to: &std::path::Path| {
        for e in walk(from) {
            let rel = e.strip_prefix(from).unwrap();
            let dest = to.join(rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&e, &dest).unwrap();
        }
    };
    let b_end = {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), scratch.path());
        let engine = open(scratch.path(), &clock);
        engine.offsets("b", 0).unwrap().log_end_offset
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    for round in 0..40 {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), scratch.path());
        let victim = &files[rng.random_range(0..files.len())];
        let path = scratch
            .path()
            .join(victim.strip_prefix(pristine.path()).unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        let what = if bytes.is_empty() || rng.random_bool(0.5) {
            let at = rng.random_range(0..=bytes.len());
            bytes.truncate(at);
            format!("{} cut at {at}", path.display())
        } else {
            let at = rng.random_range(0..bytes.len());
            bytes[at] ^= 1 << rng.random_range(0..8);
            format!("{} bit flipped at {at}", path.display())
        };
        std::fs::write(&path, &bytes).unwrap();
        let engine = open(scratch.path(), &clock);
        // The other partition is untouched.
        assert_eq!(
            read_all_checked(&engine, "b", 0, 0).len() as i64,
            b_end,
            "round {round}: {what}"
        );
        // The damaged one serves exactly what it has, or is offline with
        // an error naming the problem.
        match engine.offsets("a", 0) {
            Ok(o) => {
                read_all_checked(&engine, "a", 0, o.log_start_offset);
            }
            Err(e) => assert!(!e.to_string().is_empty(), "round {round}: {what}"),
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Topic creation reserves its name and partitions under the topic lock
/// and does its catalog and file work outside it: racing creations of one
/// name give exactly one topic, and racing creations never exceed
/// `max.partitions` together.
#[test]
#[allow(clippy::disallowed_methods)] // racing threads are the point
fn racing_topic_creations_get_one_winner_per_name_and_respect_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let mut config = common::test_config(dir.path(), &clock);
    config.max_partitions = 10;
    let engine = std::sync::Arc::new(tierlog::Engine::open(config).unwrap());
    let race = |names: Vec<String>, partitions: u32| {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(names.len()));
        let handles: Vec<_> = names
            .into_iter()
            .map(|name| {
                let (engine, barrier) = (engine.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    engine
                        .create_topic(&name, partitions, &Default::default())
                        .map(|_| ())
                        .map_err(|e| e.kind())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    };
    let same = race(vec!["same".to_string(); 6], 2);
    assert_eq!(same.iter().filter(|r| r.is_ok()).count(), 1, "{same:?}");
    assert!(same
        .iter()
        .all(|r| r.is_ok() || *r == Err(ErrorKind::AlreadyExists)));
    // 2 held; eight more topics of 3 partitions race for the other 8.
    let many = race((0..8).map(|i| format!("t{i}")).collect(), 3);
    assert_eq!(many.iter().filter(|r| r.is_ok()).count(), 2, "{many:?}");
    assert!(many
        .iter()
        .all(|r| r.is_ok() || *r == Err(ErrorKind::PolicyViolation)));
    let held: u32 = engine.topics().iter().map(|t| t.partitions).sum();
    assert_eq!(held, 8);
    // The losers left nothing behind: their names are free again.
    let loser = (0..8)
        .map(|i| format!("t{i}"))
        .find(|n| engine.topic(n).is_err())
        .unwrap();
    engine.delete_topic("same").unwrap();
    engine.create_topic(&loser, 1, &Default::default()).unwrap();
}

/// Topic changes write the catalog and files without the topic lock, so
/// they must still apply one at a time per topic: a topic grown, altered
/// and (another one) created and deleted from several threads at once,
/// while a third takes appends, ends with every change, in memory and
/// after a restart.
#[test]
fn concurrent_changes_of_one_topic_apply_one_at_a_time_and_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_topic("g", 1, &configs(&[])).unwrap();
    engine.create_topic("steady", 1, &configs(&[])).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for total in 2..=8 {
                engine.create_partitions("g", total, false).unwrap();
            }
        });
        s.spawn(|| {
            for i in 0..20 {
                let ms = (60_000 + i).to_string();
                engine
                    .set_topic_configs("g", &configs(&[("retention.ms", &ms)]))
                    .unwrap();
            }
        });
        s.spawn(|| {
            for _ in 0..5 {
                engine.create_topic("x", 3, &configs(&[])).unwrap();
                engine.delete_topic("x").unwrap();
            }
        });
        s.spawn(|| {
            for i in 0..200 {
                engine
                    .append("steady", 0, &mut batch(i, 1, 10, T0))
                    .unwrap();
            }
        });
    });
    let check = |engine: &tierlog::Engine| {
        let g = engine.topic("g").unwrap();
        assert_eq!(g.partitions, 8, "no growth lost");
        assert_eq!(g.overrides, configs(&[("retention.ms", "60019")]));
        for p in 0..8 {
            engine.offsets("g", p).unwrap();
        }
        assert!(engine.topic("x").is_err());
        assert_eq!(engine.offsets("steady", 0).unwrap().log_end_offset, 200);
    };
    check(&engine);
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(dir.path(), &clock);
    check(&engine);
}
