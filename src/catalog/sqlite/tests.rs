//! Unit tests of the SQLite catalog.

use super::*;

/// A `COPY_STARTED` row of partition 0 of `t`: offsets `base..=base + 9`.
fn copy_started(t: &TopicRecord, base: i64) -> RemoteSegment {
    RemoteSegment {
        segment_uuid: uuid::Uuid::new_v4(),
        topic: t.name.clone(),
        topic_id: t.id,
        partition: 0,
        base_offset: base,
        last_offset: base + 9,
        first_timestamp: 0,
        max_timestamp: 0,
        log_size: 0,
        index_size: 0,
        timeindex_size: 0,
        log_crc32c: 0,
        state: RemoteState::CopyStarted,
        updated_ms: 0,
        index_crc32c: None,
        timeindex_crc32c: None,
        log_blocks: None,
        txnindex: None,
    }
}

fn topic(name: &str) -> TopicRecord {
    TopicRecord {
        name: name.into(),
        id: uuid::Uuid::new_v4(),
        partitions: 3,
        configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        created_ms: 42,
    }
}

#[test]
fn topics_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let t = topic("orders");
    {
        let mut c = SqliteCatalog::open(&path).unwrap();
        c.create_topic(&t).unwrap();
        c.create_topic(&topic("other")).unwrap();
        let e = c.create_topic(&topic("orders")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    }
    let mut c = SqliteCatalog::open(&path).unwrap();
    assert_eq!(c.schema_version().unwrap(), MIGRATIONS.len() as u32);
    let all = c.topics().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], t, "ordered by name: orders, other");
    c.set_topic_configs(
        "orders",
        &[("segment.ms".to_string(), "5".to_string())].into(),
    )
    .unwrap();
    let orders = c
        .topics()
        .unwrap()
        .into_iter()
        .find(|x| x.name == "orders")
        .unwrap();
    assert_eq!(orders.configs.len(), 1);
    assert_eq!(orders.configs["segment.ms"], "5");
    assert_eq!(c.delete_topic("orders", 0).unwrap().id, t.id);
    assert_eq!(
        c.delete_topic("orders", 0).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        c.set_topic_configs("orders", &BTreeMap::new())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // Configs went with the topic (ON DELETE CASCADE).
    let n: i64 = c
        .conn
        .query_row(
            "SELECT COUNT(*) FROM topic_configs WHERE topic = 'orders'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    SqliteCatalog::open(&path).unwrap();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let e = SqliteCatalog::open(&path).unwrap_err();
    assert!(
        e.to_string().contains("newer than this tierlog supports"),
        "{e}"
    );
}

#[test]
fn garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    std::fs::write(
        &path,
        b"this is not a database, just some bytes that are long enough....",
    )
    .unwrap();
    let e = SqliteCatalog::open(&path).unwrap_err();
    assert!(e.to_string().contains("catalog.db"), "{e}");
}

#[test]
fn expiry_deletes_only_the_group_s_offsets_committed_by_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = SqliteCatalog::open(&dir.path().join("catalog.db")).unwrap();
    let o = |partition, commit_ms| CommittedOffset {
        topic: "t".into(),
        partition,
        offset: 1,
        leader_epoch: -1,
        metadata: None,
        commit_ms,
    };
    c.commit_offsets("g", &[o(0, 100), o(1, 200), o(2, 300)])
        .unwrap();
    c.commit_offsets("h", &[o(0, 100)]).unwrap();
    assert_eq!(c.expire_committed_offsets("g", 200).unwrap(), 2);
    let left: Vec<u32> = c
        .committed_offsets("g")
        .unwrap()
        .iter()
        .map(|o| o.partition)
        .collect();
    assert_eq!(left, vec![2]);
    assert_eq!(
        c.committed_offsets("h").unwrap().len(),
        1,
        "other groups keep theirs"
    );
    assert_eq!(c.expire_committed_offsets("g", 200).unwrap(), 0);
}

#[test]
fn committed_offsets_and_producer_ids_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let o = |topic: &str, partition, offset| CommittedOffset {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: Some("m".into()),
        commit_ms: 7,
    };
    {
        let mut c = SqliteCatalog::open(&path).unwrap();
        c.create_topic(&topic("orders")).unwrap();
        c.create_topic(&topic("other")).unwrap();
        c.commit_offsets("g", &[o("orders", 0, 5), o("other", 1, 9)])
            .unwrap();
        c.commit_offsets("g", &[o("orders", 0, 6)]).unwrap();
        c.commit_offsets("h", &[o("orders", 2, 1)]).unwrap();
        assert_eq!(c.allocate_producer_id().unwrap(), 0);
        assert_eq!(c.allocate_producer_id().unwrap(), 1);
    }
    let mut c = SqliteCatalog::open(&path).unwrap();
    assert_eq!(
        c.committed_offsets("g").unwrap(),
        vec![o("orders", 0, 6), o("other", 1, 9)]
    );
    assert_eq!(c.groups_with_offsets().unwrap(), vec!["g", "h"]);
    assert_eq!(c.allocate_producer_id().unwrap(), 2, "ids never repeat");
    // Deleting a topic drops its committed offsets.
    c.delete_topic("orders", 0).unwrap();
    assert_eq!(c.committed_offsets("g").unwrap(), vec![o("other", 1, 9)]);
    assert!(c.committed_offsets("h").unwrap().is_empty());
    assert_eq!(
        c.delete_committed_offsets("g", Some(&[("other".into(), 1)]))
            .unwrap(),
        1
    );
    assert!(c.groups_with_offsets().unwrap().is_empty());
}

#[test]
fn no_segment_of_a_deleted_topic_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = SqliteCatalog::open(&dir.path().join("c.db")).unwrap();
    let t = TopicRecord {
        name: "gone".into(),
        id: uuid::Uuid::new_v4(),
        partitions: 1,
        configs: Default::default(),
        created_ms: 0,
    };
    c.create_topic(&t).unwrap();
    c.delete_topic("gone", 1).unwrap();
    let seg = copy_started(&t, 0);
    let err = c.insert_remote_segment(&seg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(c.remote_segments(t.id, 0).unwrap().is_empty());
}

/// Coordinator rows are written without an fsync (`synchronous =
/// NORMAL`), and the connection is back at `FULL` for every other write.
#[test]
fn a_transaction_row_is_stored_and_the_connection_is_back_at_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let sync = |c: &SqliteCatalog| -> i64 {
        c.conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    };
    let row = super::super::StoredTransaction {
        transactional_id: "t".into(),
        producer_id: 7,
        producer_epoch: 1,
        state: "Ongoing".into(),
        timeout_ms: 60_000,
        txn_start_ms: 5,
        updated_ms: 6,
        partitions: vec![("a".into(), 0)],
        groups: vec![],
        pending_offsets: vec![],
    };
    {
        let mut c = SqliteCatalog::open(&path).unwrap();
        assert_eq!(sync(&c), 2, "FULL");
        c.store_transaction(&row).unwrap();
        assert_eq!(sync(&c), 2, "FULL again after the NORMAL write");
    }
    let c = SqliteCatalog::open(&path).unwrap();
    assert_eq!(c.stored_transactions().unwrap(), vec![row]);
}

/// A tiered segment's `.txnindex` size and CRC32C (migration 0011) are
/// written at the copy's end and read back after a reopen; a row that
/// never had them (tiered before the migration) reads as `None`.
#[test]
fn txnindex_figures_survive_reopen_and_may_be_absent() {
    use crate::format::manifest::ObjectInfo;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let t = topic("t");
    let (old, empty, full) = (
        copy_started(&t, 0),
        copy_started(&t, 10),
        copy_started(&t, 20),
    );
    {
        let mut c = SqliteCatalog::open(&path).unwrap();
        c.create_topic(&t).unwrap();
        for (seg, txnindex) in [
            (&old, None),
            (&empty, Some((0, 0))),
            (&full, Some((68, 0xdead_beef))),
        ] {
            c.insert_remote_segment(seg).unwrap();
            let mut done = seg.clone();
            done.state = RemoteState::CopyFinished;
            done.txnindex = txnindex.map(|(size, crc32c)| ObjectInfo { size, crc32c });
            c.transition_remote_segment(&done, RemoteState::CopyStarted)
                .unwrap();
        }
    }
    let c = SqliteCatalog::open(&path).unwrap();
    let got: Vec<_> = c
        .remote_segments(t.id, 0)
        .unwrap()
        .into_iter()
        .map(|s| (s.base_offset, s.state, s.txnindex))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, RemoteState::CopyFinished, None),
            (
                10,
                RemoteState::CopyFinished,
                Some(ObjectInfo { size: 0, crc32c: 0 })
            ),
            (
                20,
                RemoteState::CopyFinished,
                Some(ObjectInfo {
                    size: 68,
                    crc32c: 0xdead_beef
                })
            ),
        ]
    );
}
