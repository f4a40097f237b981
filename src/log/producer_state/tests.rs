//! Tests of the producer state: sequence checks, expiry, snapshots and
//! their recovery, transactions.

use super::*;
use crate::clock::Clock;
use crate::log::LocalLog;

fn header(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
    BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: records - 1,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        record_count: records,
    }
}

use crate::error::ErrorKind;

/// The public kind of a refusal, as the broker sees it.
fn kind(r: std::result::Result<ProducerCheck, AppendError>) -> ErrorKind {
    Error::from(r.expect_err("rejected")).kind()
}

#[test]
fn duplicates_gaps_and_epochs() {
    let mut m = ProducerStateManager::default();
    let b0 = header(7, 0, 0, 5, 100);
    assert_eq!(m.check([&b0]).unwrap(), ProducerCheck::Append);
    m.update(&b0, 0);
    // The same batch again: a duplicate with its original offsets.
    match m.check([&header(7, 0, 0, 5, -1)]).unwrap() {
        ProducerCheck::Duplicate(b) => assert_eq!((b.first_offset, b.last_offset), (100, 104)),
        other => panic!("{other:?}"),
    }
    // Next in sequence appends; a gap does not.
    assert_eq!(
        m.check([&header(7, 0, 5, 1, -1)]).unwrap(),
        ProducerCheck::Append
    );
    assert_eq!(
        kind(m.check([&header(7, 0, 7, 1, -1)])),
        ErrorKind::OutOfOrderSequence
    );
    // Within one request, the second batch follows the first.
    assert_eq!(
        m.check([&header(7, 0, 5, 2, -1), &header(7, 0, 7, 1, -1)])
            .unwrap(),
        ProducerCheck::Append
    );
    // A new epoch starts at 0; an old epoch is fenced.
    assert_eq!(
        kind(m.check([&header(7, 1, 5, 1, -1)])),
        ErrorKind::OutOfOrderSequence
    );
    m.update(&header(7, 1, 0, 1, 105), 0);
    assert_eq!(
        kind(m.check([&header(7, 0, 5, 1, -1)])),
        ErrorKind::InvalidProducerEpoch
    );
    // Unknown producers and non-idempotent batches pass.
    assert_eq!(
        m.check([&header(9, 0, 42, 1, -1), &header(-1, -1, -1, 3, -1)])
            .unwrap(),
        ProducerCheck::Append
    );
}

/// A refusal says which producer, which epoch and which sequences, so
/// an operator can tell a lost batch from a fenced producer.
#[test]
fn a_refusal_names_the_producer_and_its_sequences() {
    let mut m = ProducerStateManager::default();
    m.update(&header(7, 2, 0, 5, 100), 0);
    let gap = m.check([&header(7, 2, 7, 1, -1)]).unwrap_err();
    assert!(
        matches!(
            gap,
            AppendError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 2,
                expected: 5,
                got: 7
            }
        ),
        "{gap:?}"
    );
    let message = Error::from(gap).to_string();
    assert!(
        message.contains("producer 7 (epoch 2): got sequence 7, expected 5"),
        "{message}"
    );
    // A new epoch must start again at 0.
    let new_epoch = m.check([&header(7, 3, 5, 1, -1)]).unwrap_err();
    assert!(
        matches!(
            new_epoch,
            AppendError::OutOfOrderSequence {
                producer_id: 7,
                epoch: 3,
                expected: 0,
                got: 5
            }
        ),
        "{new_epoch:?}"
    );
    let fenced = m.check([&header(7, 1, 5, 1, -1)]).unwrap_err();
    assert!(
        matches!(
            fenced,
            AppendError::InvalidProducerEpoch {
                producer_id: 7,
                current: 2,
                got: 1
            }
        ),
        "{fenced:?}"
    );
    let message = Error::from(fenced).to_string();
    assert!(
        message.contains("producer 7 epoch 1 is older than the current epoch 2"),
        "{message}"
    );
    let unsequenced = m.check([&header(8, 0, -1, 1, -1)]).unwrap_err();
    let message = Error::from(unsequenced).to_string();
    assert!(
        message.contains("producer 8 (epoch 0) has no sequence number"),
        "{message}"
    );
    // After the largest sequence the next one is 0.
    m.update(&header(9, 0, i32::MAX - 1, 2, 200), 0);
    let wrapped = m.check([&header(9, 0, 1, 1, -1)]).unwrap_err();
    assert!(
        matches!(
            wrapped,
            AppendError::OutOfOrderSequence {
                expected: 0,
                got: 1,
                ..
            }
        ),
        "{wrapped:?}"
    );
}

/// Through the log's public boundary: the kind the broker maps to
/// OUT_OF_ORDER_SEQUENCE_NUMBER, the message naming the partition's
/// producer and sequences, nothing appended.
#[test]
fn an_append_out_of_sequence_is_refused_with_the_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(T0);
    let mut log = open(dir.path(), &clock, false);
    log.append(&mut idempotent_batch(3, 0, 2, T0)).unwrap();
    let e = log.append(&mut idempotent_batch(3, 5, 1, T0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfOrderSequence);
    assert!(!e.is_io(), "a refusal keeps the partition online");
    assert!(
        e.to_string()
            .contains("producer 3 (epoch 0): got sequence 5, expected 2"),
        "{e}"
    );
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn keeps_five_batches_and_wraps_sequences() {
    let mut m = ProducerStateManager::default();
    for i in 0..7 {
        m.update(&header(1, 0, i * 2, 2, i64::from(i) * 2), 0);
    }
    let e = m.producer(1).unwrap();
    assert_eq!(e.batches.len(), BATCHES_PER_PRODUCER);
    assert_eq!(e.batches[0].first_seq, 4);
    // The oldest batches are forgotten: no longer recognised.
    assert_eq!(
        kind(m.check([&header(1, 0, 0, 2, -1)])),
        ErrorKind::OutOfOrderSequence
    );
    assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
    assert!(in_sequence(i32::MAX, 0));
    let snap = m.snapshot(14);
    let back = ProducerStateManager::from_snapshot(snap.clone());
    assert_eq!(back.snapshot(14), snap);
}

const T0: i64 = 1_700_000_000_000;

/// `n` records from producer `pid` (epoch 0) from sequence `seq`, with
/// timestamp `ts`.
fn idempotent_batch(pid: i64, seq: i32, n: usize, ts: i64) -> Vec<u8> {
    let mut b = crate::format::BatchBuilder::new();
    for i in 0..n {
        b.push(crate::format::Record::new(
            None,
            Some(format!("{pid}-{seq}-{i}").into_bytes()),
            ts,
        ));
    }
    let mut bytes = b.build().unwrap();
    bytes[43..51].copy_from_slice(&pid.to_be_bytes());
    bytes[51..53].copy_from_slice(&0i16.to_be_bytes());
    bytes[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn open(dir: &Path, clock: &crate::clock::ManualClock, clean: bool) -> LocalLog {
    LocalLog::open(
        dir.to_path_buf(),
        "t-0".into(),
        crate::config::TopicConfig::default(),
        std::sync::Arc::new(clock.clone()),
        clean,
    )
    .unwrap()
    .0
}

#[test]
fn producers_idle_past_the_expiration_are_forgotten() {
    let mut m = ProducerStateManager::default();
    m.update(&header(1, 0, 0, 1, 0), T0);
    m.update(&header(2, 0, 0, 1, 1), T0 + 600);
    // An older snapshot's entry (no last_timestamp): its last batch's
    // max timestamp counts.
    let mut old = header(3, 0, 0, 1, 2);
    old.max_timestamp = T0 + 900;
    m.update(&old, -1);
    assert_eq!(m.remove_expired(T0 + 999, 1000), 0);
    assert_eq!(m.remove_expired(T0 + 1000, 1000), 1, "idle exactly 1000 ms");
    assert!(m.producer(1).is_none());
    assert!(m.producer(2).is_some() && m.producer(3).is_some());
    assert_eq!(m.remove_expired(T0 + 1900, 1000), 2);
    assert!(m.is_empty());
    // Offset-based eviction keeps producers with a batch at or above
    // the log start.
    m.update(&header(4, 0, 0, 5, 10), T0);
    m.update(&header(5, 0, 0, 5, 20), T0);
    assert_eq!(m.remove_below(15), 1);
    assert!(m.producer(4).is_none() && m.producer(5).is_some());
}

#[test]
fn an_expired_producer_leaves_the_log_and_the_next_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(T0);
    let mut log = open(dir.path(), &clock, false);
    log.set_producer_id_expiration_ms(1000);
    log.append(&mut idempotent_batch(1, 0, 2, T0)).unwrap();
    clock.advance(600);
    log.append(&mut idempotent_batch(2, 0, 2, T0)).unwrap();
    clock.advance(500);
    // The periodic path: producer 1 has been idle for 1100 ms.
    log.expire_producers(clock.now_ms());
    assert!(log.producer_state().producer(1).is_none());
    assert!(log.producer_state().producer(2).is_some());
    // Forgotten: it may start at any sequence.
    log.append(&mut idempotent_batch(1, 40, 1, T0)).unwrap();
    // At a roll, idle producers are not written to the snapshot.
    clock.advance(1000);
    log.append(&mut idempotent_batch(1, 41, 1, T0)).unwrap();
    let now = clock.now_ms();
    log.roll(now).unwrap();
    let snap = read_snapshot(dir.path(), log.log_end_offset()).unwrap();
    let ids: Vec<i64> = snap.producers.iter().map(|p| p.producer_id).collect();
    assert_eq!(ids, vec![1], "producer 2 was idle for 1500 ms");
    assert_eq!(snap.producers[0].last_timestamp, now);
}

/// A transactional batch of producer `pid` (epoch 0).
fn txn_batch(pid: i64, seq: i32, n: usize) -> Vec<u8> {
    let mut bytes = idempotent_batch(pid, seq, n, T0);
    bytes[22] |= 0x10;
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn open_transactions_hold_the_lso_and_aborts_are_indexed_across_a_crash() {
    use crate::format::records::ControlType;
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(T0);
    let mut log = open(dir.path(), &clock, false);
    log.append(&mut idempotent_batch(9, 0, 1, T0)).unwrap(); // offset 0
    log.append(&mut txn_batch(1, 0, 2)).unwrap(); // 1-2
    log.append(&mut txn_batch(2, 0, 2)).unwrap(); // 3-4
    assert_eq!(log.last_stable_offset(), 1);
    assert_eq!(log.append_marker(1, 0, ControlType::Abort, 0).unwrap(), 5);
    assert_eq!(log.last_stable_offset(), 3, "producer 2 is still open");
    log.roll(T0).unwrap(); // the snapshot at 6 has the abort and the open one
    assert_eq!(log.append_marker(2, 0, ControlType::Commit, 0).unwrap(), 6);
    log.append(&mut txn_batch(1, 2, 1)).unwrap(); // 7, open again
    assert_eq!(log.append_marker(1, 0, ControlType::Abort, 0).unwrap(), 8);
    assert_eq!(log.last_stable_offset(), 9);
    assert!(
        log.append_marker(1, -1, ControlType::Abort, 0).is_err(),
        "a marker of an older epoch is refused"
    );
    drop(log); // a crash: the tail after the snapshot is scanned again

    let mut log = open(dir.path(), &clock, false);
    assert_eq!(log.last_stable_offset(), 9);
    let aborted: Vec<(i64, i64, i64)> = log
        .aborted_txns(0, 9)
        .0
        .iter()
        .map(|a| (a.producer_id, a.first_offset, a.last_offset))
        .collect();
    assert_eq!(aborted, vec![(1, 1, 5), (1, 7, 8)]);
    assert_eq!(
        log.aborted_txns(6, 7).0,
        vec![],
        "nothing aborted overlaps [6, 7)"
    );
    assert_eq!(log.aborted_txns(2, 3).0.len(), 1);
    // An open transaction survives the crash too.
    log.append(&mut txn_batch(3, 0, 1)).unwrap(); // 9
    log.roll(T0).unwrap();
    drop(log);
    let log = open(dir.path(), &clock, false);
    assert_eq!(log.last_stable_offset(), 9);
    assert_eq!(
        log.producer_state()
            .producer(3)
            .unwrap()
            .current_txn_first_offset,
        Some(9)
    );
}

fn snapshot_offsets(dir: &Path) -> Vec<i64> {
    snapshot_files(dir)
}

/// Whether a retry of `batch` is recognised as a duplicate.
fn is_duplicate(log: &LocalLog, batch: &[u8]) -> bool {
    let h = BatchHeader::parse(batch).unwrap();
    matches!(
        log.producer_state().check([&h]),
        Ok(ProducerCheck::Duplicate(_))
    )
}

#[test]
fn a_restart_after_a_roll_reads_the_roll_snapshot_and_scans_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(T0);
    let mut log = open(dir.path(), &clock, false);
    let before_roll = idempotent_batch(1, 0, 3, T0);
    log.append(&mut before_roll.clone()).unwrap();
    log.append(&mut idempotent_batch(2, 0, 1, T0)).unwrap();
    log.roll(T0).unwrap();
    assert_eq!(snapshot_offsets(dir.path()), vec![4]);
    // The sealed segment is fsynced (the background flush): only the
    // active one is recovered after the crash.
    log.flush().unwrap();
    let after_roll = idempotent_batch(1, 3, 2, T0);
    log.append(&mut after_roll.clone()).unwrap();
    drop(log); // a crash: no shutdown snapshot

    let mut log = open(dir.path(), &clock, false);
    assert!(is_duplicate(&log, &before_roll));
    assert!(is_duplicate(&log, &after_roll));
    assert!(log.producer_state().producer(2).is_some());
    // Loading again shows the path taken: the snapshot at 4, then the
    // one batch after it.
    assert_eq!(log.load_producer_state().unwrap(), 1);
}

#[test]
fn without_a_snapshot_only_the_last_two_segments_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(T0);
    let mut log = open(dir.path(), &clock, false);
    for pid in 1..=4 {
        log.append(&mut idempotent_batch(pid, 0, 2, T0)).unwrap();
        log.append(&mut idempotent_batch(pid, 2, 2, T0)).unwrap();
        if pid < 4 {
            log.roll(T0).unwrap();
        }
    }
    // A clean shutdown (after a crash, Kafka and tierlog scan from the
    // log start: the recovered segments' txnindexes are rebuilt).
    log.close().unwrap();
    drop(log);
    for offset in snapshot_offsets(dir.path()) {
        std::fs::remove_file(segment_file(dir.path(), offset, SNAPSHOT_EXT)).unwrap();
    }

    let mut log = open(dir.path(), &clock, true);
    assert_eq!(log.segment_count(), 4);
    let known: Vec<bool> = (1..=4)
        .map(|pid| log.producer_state().producer(pid).is_some())
        .collect();
    assert_eq!(known, vec![false, false, true, true]);
    assert_eq!(log.producer_state().producer(4).unwrap().batches.len(), 2);
    // The rebuilt state was snapshotted at the log end: the next open
    // scans nothing.
    assert_eq!(snapshot_offsets(dir.path()), vec![16]);
    assert_eq!(log.load_producer_state().unwrap(), 0);
}

#[test]
fn a_rolls_snapshot_is_synced_with_its_sealed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(T0);
    let mut log = open(dir.path(), &clock, false);
    log.append(&mut idempotent_batch(1, 0, 2, T0)).unwrap();
    log.roll(T0).unwrap();
    let snapshot = segment_file(dir.path(), 2, SNAPSHOT_EXT);
    assert!(snapshot.exists());
    let pending = log.pending_flush().expect("the sealed segment waits");
    assert!(pending.files.contains(&snapshot), "{:?}", pending.files);
    pending.sync().unwrap();
    log.complete_flush(&pending).unwrap();
    assert!(log.pending_flush().is_none());
}

#[test]
fn a_corrupt_snapshot_falls_back_to_the_one_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(T0);
    let mut log = open(dir.path(), &clock, false);
    let first = idempotent_batch(1, 0, 1, T0);
    log.append(&mut first.clone()).unwrap();
    log.roll(T0).unwrap();
    log.append(&mut idempotent_batch(2, 0, 1, T0)).unwrap();
    log.roll(T0).unwrap();
    log.append(&mut idempotent_batch(3, 0, 1, T0)).unwrap();
    log.flush().unwrap();
    drop(log);
    assert_eq!(snapshot_offsets(dir.path()), vec![1, 2]);
    std::fs::write(segment_file(dir.path(), 2, SNAPSHOT_EXT), b"{\"format_ver").unwrap();

    let mut log = open(dir.path(), &clock, false);
    // Producer 1 is only in the snapshot at 1 (the last two segments
    // alone would not know it).
    assert!(is_duplicate(&log, &first));
    assert!((2..=3).all(|pid| log.producer_state().producer(pid).is_some()));
    assert_eq!(log.load_producer_state().unwrap(), 2);
}

#[test]
fn an_unreadable_batch_keeps_the_state_before_it_and_the_log_online() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(T0);
    let config = crate::config::TopicConfig {
        index_interval_bytes: 0,
        ..Default::default()
    };
    let open_clean = || {
        LocalLog::open(
            dir.path().to_path_buf(),
            "t-0".into(),
            config.clone(),
            std::sync::Arc::new(clock.clone()),
            true,
        )
    };
    let (mut log, _) = open_clean().unwrap();
    let b0 = idempotent_batch(1, 0, 1, T0);
    log.append(&mut b0.clone()).unwrap();
    log.append(&mut idempotent_batch(1, 1, 1, T0)).unwrap();
    log.append(&mut idempotent_batch(1, 2, 1, T0)).unwrap();
    log.roll(T0).unwrap();
    log.append(&mut idempotent_batch(2, 0, 1, T0)).unwrap();
    log.close().unwrap();
    for offset in snapshot_offsets(dir.path()) {
        std::fs::remove_file(segment_file(dir.path(), offset, SNAPSHOT_EXT)).unwrap();
    }
    // Break the magic byte of the second batch of the sealed segment
    // (its index entries let the clean open skip over it).
    let path = segment_file(dir.path(), 0, super::super::paths::LOG_EXT);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[b0.len() + 16] = 7;
    std::fs::write(&path, bytes).unwrap();

    let (log, _) = open_clean().expect("a bad batch does not take the log offline");
    let p1 = log
        .producer_state()
        .producer(1)
        .expect("read before the bad batch");
    assert_eq!(p1.batches.len(), 1);
    assert!(log.producer_state().producer(2).is_none());
}

#[test]
fn the_txnindex_holds_each_abort_and_is_rebuilt_when_missing_or_garbled() {
    use crate::format::producer_snapshot::AbortedTxn;
    use crate::format::records::ControlType;
    use crate::log::paths::TXN_INDEX_EXT;
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(T0);
    let mut log = open(dir.path(), &clock, false);
    log.append(&mut txn_batch(1, 0, 2)).unwrap(); // 0-1
    assert_eq!(log.append_marker(1, 0, ControlType::Abort, 0).unwrap(), 2);
    log.roll(T0).unwrap();
    log.append(&mut txn_batch(2, 0, 2)).unwrap(); // 3-4
    log.append(&mut txn_batch(3, 0, 1)).unwrap(); // 5, open past the abort
    assert_eq!(log.append_marker(2, 0, ControlType::Abort, 0).unwrap(), 6);
    assert_eq!(log.append_marker(3, 0, ControlType::Commit, 0).unwrap(), 7);
    log.roll(T0).unwrap();
    log.append(&mut idempotent_batch(9, 0, 1, T0)).unwrap(); // 8
    log.close().unwrap();
    drop(log);
    let read = |base: i64| -> Vec<AbortedTxn> {
        let bytes = std::fs::read(segment_file(dir.path(), base, TXN_INDEX_EXT)).unwrap();
        crate::format::txn_index::decode_txn_index(&bytes).unwrap()
    };
    let first = AbortedTxn {
        producer_id: 1,
        first_offset: 0,
        last_offset: 2,
        last_stable_offset: 3,
    };
    // Producer 3's open transaction (from 5) holds the LSO of the abort.
    let second = AbortedTxn {
        producer_id: 2,
        first_offset: 3,
        last_offset: 6,
        last_stable_offset: 5,
    };
    assert_eq!(read(0), vec![first]);
    assert_eq!(read(3), vec![second]);
    assert_eq!(read(8), vec![], "a segment without aborts has an empty one");

    // One missing, one garbled, no snapshot: rebuilt from the markers.
    std::fs::remove_file(segment_file(dir.path(), 0, TXN_INDEX_EXT)).unwrap();
    std::fs::write(segment_file(dir.path(), 3, TXN_INDEX_EXT), [7u8; 35]).unwrap();
    for offset in snapshot_offsets(dir.path()) {
        std::fs::remove_file(segment_file(dir.path(), offset, SNAPSHOT_EXT)).unwrap();
    }
    let log = open(dir.path(), &clock, true);
    assert_eq!(read(0), vec![first]);
    assert_eq!(read(3), vec![second]);
    // No entry's LSO reaches 9: the walk goes on to the log end.
    assert_eq!(log.aborted_txns(0, 9), (vec![first, second], false));
    // From 4: the first ended before it.
    assert_eq!(log.aborted_txns(4, 9), (vec![second], false));
    assert_eq!(log.aborted_txns(0, 1), (vec![first], true));
}
