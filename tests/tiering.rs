//! Tiering to S3-compatible storage, the remote segment lifecycle, and
//! retention, against a real S3 protocol server (in-process s3s, or moto in
//! CI via TIERLOG_TEST_S3_ENDPOINT) and the file:// store.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::s3::S3;
use common::{batch_with_ts, configs, open_with_remote, read_all_checked};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tierlog::catalog::RemoteState;
use tierlog::clock::{Clock, ManualClock};
use tierlog::format::manifest::SegmentManifest;
use tierlog::remote::faults::FaultStore;
use tierlog::remote::keys::{segment_key, SegmentObject};
use tierlog::remote::uploader::UploadSettings;
use tierlog::{Engine, RemoteSettings};

const T0: i64 = 1_700_000_000_000;

fn engine(
    dir: &std::path::Path,
    clock: &ManualClock,
    store: Arc<dyn ObjectStore>,
    grace_ms: i64,
) -> Engine {
    open_with_remote(
        dir,
        clock,
        RemoteSettings {
            task_interval_ms: 0,
            upload: UploadSettings {
                part_size: 5 << 20,
                max_concurrency: 2,
                ..Default::default()
            },
            orphan_grace_ms: grace_ms,
            max_segments_per_round: 10_000,
            store: Some(store),
            ..RemoteSettings::new("test://store")
        },
    )
}

/// Append `n` batches of 5 records to partition 0; record at offset o is
/// stamped T0 + 10 o.
fn fill(engine: &Engine, topic: &str, n: usize, value_len: usize) -> i64 {
    fill_partition(engine, topic, 0, n, value_len)
}

/// [`fill`] for partition `p`.
fn fill_partition(engine: &Engine, topic: &str, p: u32, n: usize, value_len: usize) -> i64 {
    let mut next = engine.offsets(topic, p).unwrap().log_end_offset;
    for _ in 0..n {
        let mut b = batch_with_ts(next, 5, value_len, |o| T0 + 10 * o);
        next = engine.append(topic, p, &mut b).unwrap().last_offset + 1;
    }
    next
}

async fn get(store: &Arc<dyn ObjectStore>, key: &Path) -> Vec<u8> {
    store
        .get(key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Every COPY_FINISHED segment's objects equal the local files, the manifest
/// is committed and its checksums hold; nothing else is in the bucket.
fn check_bucket(
    engine: &Engine,
    store: &Arc<dyn ObjectStore>,
    topic: &str,
    s3: Option<&S3>,
) -> usize {
    let s3_root = s3.and_then(|s| s.root.as_ref().map(|r| r.path()));
    let bucket = s3.map(|s| s.bucket.clone()).unwrap_or_default();
    let sdk = s3.map(|s| s.client());
    let info = engine.topic(topic).unwrap();
    let rows = engine.remote_segments(topic, 0).unwrap();
    let finished: Vec<_> = rows
        .iter()
        .filter(|r| r.state == RemoteState::CopyFinished)
        .collect();
    let local: Vec<(i64, [std::path::PathBuf; 4])> = engine
        .with_log(topic, 0, |l| {
            Ok(l.segments()
                .map(|s| (s.base_offset(), s.file_paths()))
                .collect())
        })
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut prev_end = None;
    for row in &finished {
        if let Some(end) = prev_end {
            assert_eq!(row.base_offset, end, "tiered in order, no gaps");
        }
        prev_end = Some(row.last_offset + 1);
        let key = |o| segment_key(topic, &info.id, 0, row.base_offset, &row.segment_uuid, o);
        let manifest =
            SegmentManifest::from_json(&rt.block_on(get(store, &key(SegmentObject::Manifest))))
                .unwrap();
        assert_eq!(
            (manifest.base_offset, manifest.last_offset),
            (row.base_offset, row.last_offset)
        );
        let (_, files) = local
            .iter()
            .find(|(b, _)| *b == row.base_offset)
            .expect("local copy still here");
        for (object, file, expect) in [
            (SegmentObject::Log, &files[0], manifest.objects.log),
            (SegmentObject::Index, &files[1], manifest.objects.index),
            (
                SegmentObject::TimeIndex,
                &files[2],
                manifest.objects.timeindex,
            ),
            (
                SegmentObject::TxnIndex,
                &files[3],
                manifest.objects.txnindex.expect("new manifests list it"),
            ),
        ] {
            let remote = rt.block_on(get(store, &key(object)));
            let local_bytes = std::fs::read(file).unwrap();
            assert_eq!(
                remote, local_bytes,
                "{object:?} of segment {} equals the local file",
                row.base_offset
            );
            if let Some(client) = &sdk {
                // Read back with aws-sdk-s3, not with tierlog's own client.
                let via_sdk = rt.block_on(async {
                    let out = client
                        .get_object()
                        .bucket(&bucket)
                        .key(key(object).as_ref())
                        .send()
                        .await
                        .unwrap();
                    out.body.collect().await.unwrap().into_bytes().to_vec()
                });
                assert_eq!(via_sdk, local_bytes, "aws-sdk-s3 reads the same bytes");
            }
            assert_eq!(
                (remote.len() as u64, crc32c::crc32c(&remote)),
                (expect.size, expect.crc32c)
            );
            if let Some(root) = s3_root {
                // Independent of every client: the server's own file.
                let on_server =
                    std::fs::read(root.join(&bucket).join(key(object).as_ref())).unwrap();
                assert_eq!(on_server, local_bytes);
            }
        }
    }
    let listed: Vec<_> = rt
        .block_on(futures::TryStreamExt::try_collect::<Vec<_>>(
            store.list(None),
        ))
        .unwrap();
    // Five objects per committed segment (.log, .index, .timeindex,
    // .txnindex, manifest), and the topic's topic.json.
    assert_eq!(
        listed.len(),
        finished.len() * 5 + 1,
        "only committed segments in the bucket: {listed:?}"
    );
    let topic_json = rt.block_on(get(
        store,
        &tierlog::remote::keys::topic_config_key(topic, &info.id),
    ));
    let described = tierlog::format::manifest::TopicManifest::from_json(&topic_json).unwrap();
    assert_eq!(
        (
            described.topic.as_str(),
            described.topic_id,
            described.partitions
        ),
        (topic, info.id, info.partitions)
    );
    assert_eq!(described.configs, info.overrides);
    finished.len()
}

#[test]
fn sealed_segments_tier_in_order_with_identical_bytes_s3_and_file() {
    let s3 = S3::start();
    let file_dir = tempfile::tempdir().unwrap();
    let file_store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(file_dir.path()).unwrap());
    // The engine gets its own client; checks use another (HTTP clients pool
    // connections per runtime).
    for (engine_store, store, server) in [
        (s3.store(), s3.store(), Some(&s3)),
        (Arc::clone(&file_store), file_store, None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let engine = engine(dir.path(), &clock, engine_store, 3_600_000);
        engine
            .create_topic(
                "t",
                1,
                &configs(&[("remote.storage.enable", "true"), ("segment.bytes", "4096")]),
            )
            .unwrap();
        fill(&engine, "t", 60, 100);
        let sealed = engine
            .with_log("t", 0, |l| Ok(l.segment_count() - 1))
            .unwrap();
        assert!(sealed >= 5);
        let report = engine.run_remote_round().unwrap();
        assert_eq!(report.uploaded, sealed);
        assert_eq!(check_bucket(&engine, &store, "t", server), sealed);
        // Idempotent: nothing new to upload.
        assert_eq!(engine.run_remote_round().unwrap().uploaded, 0);
        // More data, one more round: only the new sealed segments go.
        fill(&engine, "t", 20, 100);
        let now_sealed = engine
            .with_log("t", 0, |l| Ok(l.segment_count() - 1))
            .unwrap();
        assert_eq!(
            engine.run_remote_round().unwrap().uploaded,
            now_sealed - sealed
        );
        check_bucket(&engine, &store, "t", server);
        engine.shutdown().unwrap();
    }
}

#[test]
fn large_segments_upload_in_parts() {
    let s3 = S3::start();
    let store = s3.store();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, s3.store(), 3_600_000);
    engine
        .create_topic(
            "big",
            1,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "12582912"),
                ("max.message.bytes", "2000000"),
            ]),
        )
        .unwrap();
    fill(&engine, "big", 130, 20_000); // ~13 MB: one sealed segment of ~12 MB
    let report = engine.run_remote_round().unwrap();
    assert_eq!(report.uploaded, 1, "{report:?}");
    let rows = engine.remote_segments("big", 0).unwrap();
    assert!(
        rows[0].log_size > 10 << 20,
        "a multipart-sized segment: {}",
        rows[0].log_size
    );
    check_bucket(&engine, &store, "big", Some(&s3));
}

#[test]
fn upload_errors_delay_tiering_but_lose_nothing() {
    let s3 = S3::start();
    let faulty = Arc::new(FaultStore::new(s3.store()));
    let faults = Arc::clone(&faulty.faults);
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, faulty.clone(), 3_600_000);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "4096"),
                ("local.retention.bytes", "0"),
            ]),
        )
        .unwrap();
    let end = fill(&engine, "t", 40, 100);
    // The first two writes fail: the topic's topic.json (retried next
    // round) and the first segment's first object.
    faults.fail_writes.store(2, Ordering::SeqCst);
    faults.puts.store(0, Ordering::SeqCst);
    let report = engine.run_remote_round().unwrap();
    assert_eq!(report.upload_failures, 1, "{report:?}");
    assert_eq!(
        report.local_deleted, 0,
        "nothing local goes before its copy is COPY_FINISHED"
    );
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len() as i64, end);
    let rows = engine.remote_segments("t", 0).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].state,
        RemoteState::DeleteFinished,
        "the failed attempt was cleaned up"
    );
    // `tier status` names the failure, when, and the retry.
    let status = engine.tier_status(Some("t")).unwrap();
    let p = &status.partitions[0];
    let failure = p.last_upload_error.clone().expect("the failure is kept");
    assert_eq!((failure.at_ms, failure.base_offset), (T0, 0), "{failure:?}");
    assert_eq!(failure.consecutive_failures, 1);
    assert!(
        failure.next_attempt_ms.is_some_and(|t| t > T0),
        "{failure:?}"
    );
    assert!(!failure.error.is_empty());
    assert_eq!(p.segments.delete_finished, 1);
    assert!(p.copy_lag_segments >= 5 && p.copy_lag_bytes > 0, "{p:?}");
    assert_eq!(p.last_tiered_offset, None);
    // Backoff: an immediate round does not retry.
    assert_eq!(engine.run_remote_round().unwrap().uploaded, 0);
    clock.advance(5_000);
    let report = engine.run_remote_round().unwrap();
    let p = engine.tier_status(Some("t")).unwrap().partitions.remove(0);
    let failure = p.last_upload_error.clone().expect("still the last failure");
    assert_eq!(failure.consecutive_failures, 0, "an upload succeeded since");
    assert_eq!(failure.next_attempt_ms, None);
    assert_eq!(p.oldest_untiered_age_ms, None, "{p:?}");
    let sealed_before = rows.len();
    assert!(report.uploaded >= 5, "{report:?} after {sealed_before}");
    assert!(
        report.local_deleted >= 5,
        "local copies go once tiered: {report:?}"
    );
    let store = s3.store();
    // Only committed segments remain in the bucket (the failed attempt's
    // objects were deleted). Local files of deleted segments are gone, so
    // compare with the manifests only.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listed: Vec<_> = rt
        .block_on(futures::TryStreamExt::try_collect::<Vec<_>>(
            store.list(None),
        ))
        .unwrap();
    let finished = engine
        .remote_segments("t", 0)
        .unwrap()
        .into_iter()
        .filter(|r| r.state == RemoteState::CopyFinished)
        .count();
    assert_eq!(
        listed.len(),
        finished * 5 + 1,
        "committed segments and topic.json"
    );
    let offsets = engine.offsets("t", 0).unwrap();
    assert_eq!(offsets.log_end_offset, end);
    assert!(
        offsets.local_log_start_offset > 0,
        "local log start advanced"
    );
    assert_eq!(
        offsets.log_start_offset, 0,
        "the bucket still holds offset 0"
    );
    let read = engine.read("t", 0, 0, 1 << 20).unwrap();
    assert_eq!(
        tierlog::format::Batches::new(&read.records)
            .next()
            .unwrap()
            .unwrap()
            .1
            .base_offset,
        0,
        "offset 0 is read back from the bucket"
    );
}

#[test]
fn retention_by_time_and_bytes_total_and_local() {
    let s3 = S3::start();
    let store = s3.store();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, Arc::clone(&store), 3_600_000);
    let base = [("remote.storage.enable", "true"), ("segment.bytes", "4096")];

    // local.retention.ms: local copies older than 1 s go once tiered; the
    // remote copies stay (retention.ms is a week).
    let mut c = base.to_vec();
    c.push(("local.retention.ms", "1000"));
    engine.create_topic("local", 1, &configs(&c)).unwrap();
    let end = fill(&engine, "local", 60, 100);
    clock.set(T0 + 10 * end + 5_000);
    let r = engine.run_remote_round().unwrap();
    assert!(r.uploaded >= 5 && r.local_deleted == r.uploaded, "{r:?}");
    let finished = engine.remote_segments("local", 0).unwrap();
    assert!(finished
        .iter()
        .all(|r| r.state == RemoteState::CopyFinished));
    assert_eq!(
        engine
            .with_log("local", 0, |l| Ok(l.segment_count()))
            .unwrap(),
        1,
        "only the active segment is local"
    );

    // retention.ms over the whole log with local.retention.ms = -2 (same):
    // once expired, remote copies are deleted too.
    let mut c = base.to_vec();
    c.push(("retention.ms", "1000"));
    engine.create_topic("total", 1, &configs(&c)).unwrap();
    let end = fill(&engine, "total", 60, 100);
    clock.set(T0 + 10 * end - 2_000); // newest records are recent: nothing expired yet
    let r = engine.run_remote_round().unwrap();
    assert!(r.uploaded >= 5, "{r:?}");
    let tiered = r.uploaded;
    clock.set(T0 + 10 * end + 5_000);
    let r = engine.run_remote_round().unwrap();
    assert_eq!(r.remote_deleted, tiered, "{r:?}");
    assert_eq!(r.local_deleted, tiered, "-2: local follows the total");
    assert!(engine
        .remote_segments("total", 0)
        .unwrap()
        .iter()
        .all(|r| r.state == RemoteState::DeleteFinished));

    // retention.bytes over the whole log: keep at least 8 KiB, counting
    // remote copies; local.retention.bytes = 4 KiB keeps less locally.
    let mut c = base.to_vec();
    c.push(("retention.bytes", "8192"));
    c.push(("local.retention.bytes", "4096"));
    engine.create_topic("bytes", 1, &configs(&c)).unwrap();
    fill(&engine, "bytes", 60, 100);
    let r = engine.run_remote_round().unwrap();
    assert!(r.remote_deleted > 0 && r.local_deleted > 0, "{r:?}");
    let remote_kept: u64 = engine
        .remote_segments("bytes", 0)
        .unwrap()
        .iter()
        .filter(|r| r.state == RemoteState::CopyFinished)
        .map(|r| r.log_size)
        .sum();
    let local_kept = engine.with_log("bytes", 0, |l| Ok(l.size_bytes())).unwrap();
    assert!((4096..4096 + 8192).contains(&local_kept), "{local_kept}");
    assert!(
        remote_kept + 4096 >= 8192 || remote_kept >= 8192 - local_kept,
        "{remote_kept}"
    );

    // Without remote storage, retention is Kafka's: local only.
    engine
        .create_topic(
            "plain",
            1,
            &configs(&[("segment.bytes", "4096"), ("retention.ms", "1000")]),
        )
        .unwrap();
    let end = fill(&engine, "plain", 60, 100);
    clock.set(T0 + 10 * end + 5_000);
    let r = engine.run_remote_round().unwrap();
    assert!(r.local_deleted >= 5, "{r:?}");
    assert!(engine.remote_segments("plain", 0).unwrap().is_empty());
    assert_eq!(
        engine
            .with_log("plain", 0, |l| Ok(l.segment_count()))
            .unwrap(),
        1
    );
}

#[test]
fn the_reaper_removes_what_a_crash_left_behind() {
    let s3 = S3::start();
    let store = s3.store();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let topic_id;
    {
        let engine = engine(dir.path(), &clock, s3.store(), 0);
        engine
            .create_topic(
                "t",
                1,
                &configs(&[("remote.storage.enable", "true"), ("segment.bytes", "4096")]),
            )
            .unwrap();
        fill(&engine, "t", 30, 100);
        topic_id = engine.topic("t").unwrap().id;
        engine.shutdown().unwrap();
    }
    // What a crash mid-upload leaves: a COPY_STARTED row with some objects,
    // and objects whose row was never written.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let crashed = uuid::Uuid::new_v4();
    let stray = uuid::Uuid::new_v4();
    for (id, o) in [
        (crashed, SegmentObject::Index),
        (crashed, SegmentObject::Log),
        (stray, SegmentObject::Log),
    ] {
        rt.block_on(store.put(
            &segment_key("t", &topic_id, 0, 0, &id, o),
            b"partial".to_vec().into(),
        ))
        .unwrap();
    }
    let db = rusqlite::Connection::open(dir.path().join("catalog.db")).unwrap();
    db.execute(
        "INSERT INTO remote_segments (segment_uuid, topic, topic_id, partition, base_offset, last_offset, \
         first_timestamp, max_timestamp, state, updated_ms) VALUES (?1, 't', ?2, 0, 0, 4, 0, 0, 'COPY_STARTED', ?3)",
        rusqlite::params![crashed.to_string(), topic_id.to_string(), T0],
    )
    .unwrap();
    drop(db);

    let engine = engine(dir.path(), &clock, s3.store(), 0);
    // Object ages come from the store's clock, which is real time.
    use tierlog::clock::Clock;
    clock.set(tierlog::clock::SystemClock.now_ms() + 10_000);
    let report = engine.run_remote_round().unwrap();
    assert!(report.reaped >= 2, "{report:?}");
    let rows = engine.remote_segments("t", 0).unwrap();
    let crashed_row = rows.iter().find(|r| r.segment_uuid == crashed).unwrap();
    assert_eq!(crashed_row.state, RemoteState::DeleteFinished);
    // The same round tiered the real segments; no orphan remains.
    check_bucket(&engine, &s3.store(), "t", Some(&s3));
}

#[test]
fn an_unreachable_bucket_keeps_the_engine_serving_local_data() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    // Nothing listens on port 1.
    let engine = open_with_remote(
        dir.path(),
        &clock,
        RemoteSettings {
            task_interval_ms: 0,
            orphan_grace_ms: 3_600_000,
            max_segments_per_round: 10_000,
            ..RemoteSettings::new("s3://nowhere/prefix?endpoint=http://127.0.0.1:1")
        },
    );
    engine
        .create_topic(
            "t",
            1,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "4096"),
                ("local.retention.bytes", "0"),
            ]),
        )
        .unwrap();
    let end = fill(&engine, "t", 40, 100);
    let report = engine.run_remote_round().unwrap();
    assert_eq!(report.upload_failures, 1, "{report:?}");
    assert_eq!(report.local_deleted, 0);
    // The status page's recent errors show it, beside the log line.
    // (The reaper, which ran first, failed to list the bucket too.)
    let status = engine.status_figures();
    let event = status
        .events
        .iter()
        .find(|e| e.level == tierlog::metrics::EventLevel::Error)
        .unwrap_or_else(|| panic!("{:?}", status.events));
    assert_eq!(event.at_ms, clock.now_ms());
    assert!(
        event
            .message
            .starts_with("tiering t-0 at offset 0 failed (local data kept, retry in "),
        "{}",
        event.message
    );
    assert!(
        status
            .events
            .iter()
            .any(|e| e.message.starts_with("orphan reaper failed")),
        "{:?}",
        status.events
    );
    let page = engine.render_status_page();
    assert!(page.contains("tiering t-0 at offset 0 failed"), "{page}");
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len() as i64, end);
    let end2 = fill(&engine, "t", 5, 100);
    assert!(end2 > end, "appends go on");
    assert!(engine
        .remote_segments("t", 0)
        .unwrap()
        .iter()
        .all(|r| r.state != RemoteState::CopyFinished));
    engine.shutdown().unwrap();
}

fn list_all(store: &Arc<dyn ObjectStore>) -> Vec<object_store::ObjectMeta> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(futures::TryStreamExt::try_collect::<Vec<_>>(
        store.list(None),
    ))
    .unwrap()
}

#[test]
fn a_node_with_a_lost_catalog_never_empties_the_bucket() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let engine = engine(dir.path(), &clock, s3.store(), 0);
        engine
            .create_topic(
                "t",
                1,
                &configs(&[("remote.storage.enable", "true"), ("segment.bytes", "4096")]),
            )
            .unwrap();
        fill(&engine, "t", 30, 100);
        assert!(engine.run_remote_round().unwrap().uploaded >= 3);
        engine.shutdown().unwrap();
    }
    let before = list_all(&s3.store()).len();
    assert!(before >= 13);
    // The catalog is lost; the same data dir and bucket come back.
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let engine = engine(dir.path(), &clock, s3.store(), 0);
    engine
        .create_topic("t", 1, &configs(&[("remote.storage.enable", "true")]))
        .unwrap();
    use tierlog::clock::Clock;
    clock.set(tierlog::clock::SystemClock.now_ms() + 10_000);
    engine.run_remote_round().unwrap();
    let new_dir = tierlog::remote::keys::topic_dir("t", &engine.topic("t").unwrap().id);
    let old_objects = list_all(&s3.store())
        .into_iter()
        .filter(|o| !o.location.as_ref().starts_with(&new_dir))
        .count();
    assert_eq!(
        old_objects, before,
        "committed segments the catalog does not know are kept"
    );
}

#[test]
fn deleting_a_topic_deletes_its_remote_segments() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, s3.store(), 3_600_000);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("remote.storage.enable", "true"), ("segment.bytes", "4096")]),
        )
        .unwrap();
    fill(&engine, "t", 30, 100);
    assert!(engine.run_remote_round().unwrap().uploaded >= 3);
    assert!(!list_all(&s3.store()).is_empty());
    engine.delete_topic("t").unwrap();
    let report = engine.run_remote_round().unwrap();
    assert!(report.reaped >= 3, "{report:?}");
    assert!(
        list_all(&s3.store()).is_empty(),
        "the bucket holds nothing of the deleted topic"
    );
}

#[test]
fn creating_a_tiered_topic_again_keeps_its_local_and_remote_data() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, s3.store(), 0);
    let overrides = configs(&[
        ("remote.storage.enable", "true"),
        ("segment.bytes", "4096"),
        ("local.retention.bytes", "4096"),
    ]);
    engine.create_topic("t", 1, &overrides).unwrap();
    let end = fill(&engine, "t", 40, 100);
    let report = engine.run_remote_round().unwrap();
    assert!(
        report.uploaded >= 3 && report.local_deleted >= 1,
        "{report:?}"
    );
    let offsets = engine.offsets("t", 0).unwrap();
    assert!(
        offsets.local_log_start_offset > 0,
        "some data is only remote"
    );
    let objects = |s: &Arc<dyn ObjectStore>| {
        let mut keys: Vec<String> = list_all(s)
            .into_iter()
            .map(|o| o.location.to_string())
            .collect();
        keys.sort();
        keys
    };
    let before = objects(&s3.store());
    let err = engine.create_topic("t", 1, &overrides).unwrap_err();
    assert_eq!(err.kind(), tierlog::ErrorKind::AlreadyExists);
    // Rounds after the failed create delete nothing (grace 0: an orphan
    // would go at once).
    let report = engine.run_remote_round().unwrap();
    assert_eq!((report.reaped, report.remote_deleted), (0, 0), "{report:?}");
    assert_eq!(objects(&s3.store()), before, "no object deleted");
    engine.shutdown().unwrap();
    drop(engine);
    let engine = self::engine(dir.path(), &clock, s3.store(), 0);
    assert_eq!(engine.offsets("t", 0).unwrap(), offsets);
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len() as i64, end);
    engine.run_remote_round().unwrap();
    assert_eq!(
        objects(&s3.store()),
        before,
        "no object deleted after a restart"
    );
    engine.shutdown().unwrap();
}

#[test]
fn a_lost_partition_directory_never_reuses_tiered_offsets() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, s3.store(), 3_600_000);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("remote.storage.enable", "true"), ("segment.bytes", "4096")]),
        )
        .unwrap();
    let end = fill(&engine, "t", 30, 100);
    assert!(engine.run_remote_round().unwrap().uploaded >= 3);
    let tiered_end = engine.offsets("t", 0).unwrap().last_tiered_offset.unwrap() + 1;
    engine.shutdown().unwrap();
    drop(engine);
    // What a crash in an older DeleteTopics (directory renamed away, catalog
    // row kept) or a lost disk leaves.
    let pdir = tierlog::log::paths::partition_dir(dir.path(), "t", 0);
    std::fs::rename(&pdir, dir.path().join("elsewhere")).unwrap();

    let engine = self::engine(dir.path(), &clock, s3.store(), 3_600_000);
    let o = engine.offsets("t", 0).unwrap();
    assert_eq!(
        o.log_end_offset, tiered_end,
        "restarted after the tiered data: {o:?}"
    );
    assert_eq!(
        o.log_start_offset, 0,
        "the bucket still serves the old offsets"
    );
    let mut b = batch_with_ts(tiered_end, 1, 100, |o| T0 + 10 * o);
    let info = engine.append("t", 0, &mut b).unwrap();
    assert_eq!(
        info.base_offset, tiered_end,
        "no offset is handed out twice"
    );
    // Every offset reads back, the tiered ones from the bucket, the new one
    // locally, with its own bytes.
    let records = read_all_checked(&engine, "t", 0, 0);
    assert_eq!(records.len() as i64, tiered_end + 1);
    assert!(end >= tiered_end);
    engine.shutdown().unwrap();
}

#[test]
fn a_deleted_topic_leaves_no_topic_json_even_when_nothing_was_tiered() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, s3.store(), 3_600_000);
    let tiered = configs(&[("remote.storage.enable", "true"), ("segment.bytes", "4096")]);
    engine.create_topic("t", 1, &tiered).unwrap();
    fill(&engine, "t", 2, 100); // less than a segment: nothing to tier
    let r = engine.run_remote_round().unwrap();
    assert_eq!(r.uploaded, 0);
    assert_eq!(list_all(&s3.store()).len(), 1, "topic.json only");
    engine.delete_topic("t").unwrap();
    engine.run_remote_round().unwrap();
    assert!(list_all(&s3.store()).is_empty(), "the bucket is empty");

    // The name again: tiered, then restored, it is one topic.
    let id = engine.create_topic("t", 1, &tiered).unwrap().id;
    let end = fill(&engine, "t", 30, 100);
    assert!(engine.run_remote_round().unwrap().uploaded >= 3);
    engine.shutdown().unwrap();
    drop(engine);
    let fresh = tempfile::tempdir().unwrap();
    let remote = tierlog::remote::RemoteStore::new(s3.store(), "test://store");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(tierlog::restore(fresh.path(), &remote, T0))
        .unwrap();
    assert_eq!(report.topics, vec!["t".to_string()]);
    let engine = self::engine(fresh.path(), &clock, s3.store(), 3_600_000);
    assert_eq!(engine.topic("t").unwrap().id, id);
    let o = engine.offsets("t", 0).unwrap();
    assert!(o.log_end_offset <= end && o.log_end_offset > 0, "{o:?}");
    engine.shutdown().unwrap();
}

#[test]
fn turning_remote_storage_off_keeps_local_retention_working() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, s3.store(), 3_600_000);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "4096"),
                ("retention.bytes", "16384"),
            ]),
        )
        .unwrap();
    fill(&engine, "t", 30, 100);
    assert!(engine.run_remote_round().unwrap().uploaded >= 3);
    let tiered_end = engine.offsets("t", 0).unwrap().last_tiered_offset.unwrap() + 1;
    engine
        .set_topic_configs(
            "t",
            &configs(&[
                ("remote.storage.enable", "false"),
                ("segment.bytes", "4096"),
                ("retention.bytes", "16384"),
            ]),
        )
        .unwrap();
    // Much more than retention.bytes arrives after tiering stopped.
    for _ in 0..10 {
        fill(&engine, "t", 20, 100);
        let r = engine.run_remote_round().unwrap();
        assert_eq!(r.uploaded, 0, "nothing is tiered once it is off");
    }
    let local = engine.with_log("t", 0, |l| Ok(l.size_bytes())).unwrap();
    assert!(
        local <= 16384 + 2 * 4096,
        "local size stays bounded by retention.bytes: {local}"
    );
    let o = engine.offsets("t", 0).unwrap();
    assert!(o.local_log_start_offset > tiered_end, "{o:?}");
    // What is left reads back.
    read_all_checked(&engine, "t", 0, o.log_start_offset);
    engine.shutdown().unwrap();
}

#[test]
fn shutdown_cancels_a_tiering_round_stuck_on_a_hanging_bucket() {
    stuck_round_ends_on(|engine| engine.shutdown().unwrap());
}

#[test]
fn dropping_the_engine_cancels_a_tiering_round_stuck_on_a_hanging_bucket() {
    // What `tierlog serve` does when it fails after opening the engine.
    stuck_round_ends_on(drop);
}

fn stuck_round_ends_on(stop: fn(Engine)) {
    let s3 = S3::start();
    let faulty = Arc::new(FaultStore::new(s3.store()));
    let faults = Arc::clone(&faulty.faults);
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    // Every PUT hangs for an hour.
    faults.put_latency_ms.store(3_600_000, Ordering::SeqCst);
    let mut config = tierlog::EngineConfig::new(dir.path()).with_clock(Arc::new(clock.clone()));
    config.flush_check_interval = Some(std::time::Duration::from_millis(10));
    config.remote = Some(RemoteSettings {
        task_interval_ms: 0,
        store: Some(faulty.clone()),
        ..RemoteSettings::new("test://store")
    });
    let engine = Engine::open(config).unwrap();
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("remote.storage.enable", "true"), ("segment.bytes", "4096")]),
        )
        .unwrap();
    let end = fill(&engine, "t", 30, 100);
    // The background copy job is stuck in its first PUT.
    let started = std::time::Instant::now();
    while faults.puts.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no PUT started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let stopping = std::thread::spawn(move || {
        stop(engine);
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("shutdown finished without waiting for the hanging round");
    stopping.join().unwrap();

    // Nothing was lost, and the half-done round is the reaper's.
    faults.put_latency_ms.store(0, Ordering::SeqCst);
    let engine = self::engine(dir.path(), &clock, faulty.clone(), 0);
    assert_eq!(read_all_checked(&engine, "t", 0, 0).len() as i64, end);
    assert!(engine.run_remote_round().unwrap().uploaded >= 3);
    engine.shutdown().unwrap();
}

/// Read every record of a partition from `from` through a failing store:
/// a failed read is retried (its error must say what failed), a returned
/// record must be exactly what was written. Returns (records, errors seen).
fn read_all_through_faults(engine: &Engine, topic: &str, from: i64) -> (i64, usize) {
    let end = engine.offsets(topic, 0).unwrap().log_end_offset;
    let (mut next, mut errors) = (from, 0);
    while next < end {
        match engine.read(topic, 0, next, 64 * 1024) {
            Ok(read) => {
                assert!(
                    !read.records.is_empty(),
                    "empty read at {next} before {end}"
                );
                for r in tierlog::format::decode_records(&read.records).unwrap() {
                    if r.offset < next {
                        continue;
                    }
                    assert_eq!(r.offset, next, "offsets are dense");
                    let value = r.value.as_deref().unwrap();
                    assert_eq!(value, common::value_for(r.offset, value.len()).as_slice());
                    next += 1;
                }
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        tierlog::ErrorKind::Unavailable | tierlog::ErrorKind::Data
                    ),
                    "a clear store error, not {:?}: {e}",
                    e.kind()
                );
                assert!(!e.to_string().is_empty());
                errors += 1;
                assert!(errors < 10_000, "reads never got through: {e}");
            }
        }
    }
    (next - from, errors)
}

#[test]
fn tiering_reads_and_restore_survive_a_store_failing_a_fifth_of_requests() {
    // Seeded, so a failure replays: TIERLOG_SOAK_SEED=<n>.
    let seed: u64 = std::env::var("TIERLOG_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026);
    eprintln!("fault soak seed {seed}");
    let s3 = S3::start();
    let faulty = Arc::new(FaultStore::with_faults(
        s3.store(),
        tierlog::remote::faults::Faults::seeded(seed, 200, 100),
    ));
    let faults = Arc::clone(&faulty.faults);
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = engine(dir.path(), &clock, faulty.clone(), 3_600_000);
    engine
        .create_topic(
            "t",
            1,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "4096"),
                ("local.retention.bytes", "4096"),
            ]),
        )
        .unwrap();
    let end = fill(&engine, "t", 60, 100);
    let sealed_end = engine
        .with_log("t", 0, |l| Ok(l.segments().last().unwrap().base_offset()))
        .unwrap();
    // Everything sealed eventually tiers (failed attempts back off: move
    // the clock past any backoff between rounds).
    let mut rounds = 0;
    while engine
        .offsets("t", 0)
        .unwrap()
        .last_tiered_offset
        .is_none_or(|l| l + 1 < sealed_end)
    {
        rounds += 1;
        assert!(rounds < 500, "tiering never completed");
        clock.advance(120_000);
        engine.run_remote_round().unwrap();
    }
    assert!(faults.puts.load(Ordering::SeqCst) > 0);
    // Local copies went once tiered: reads go to the bucket.
    let o = engine.offsets("t", 0).unwrap();
    assert!(o.local_log_start_offset > 0, "{o:?}");
    let (read, errors) = read_all_through_faults(&engine, "t", 0);
    assert_eq!(read, end);
    eprintln!(
        "soak: {rounds} rounds, {errors} read errors, {} truncated bodies",
        faults.truncated.load(Ordering::SeqCst)
    );
    engine.shutdown().unwrap();
    drop(engine);

    // Restore through the same faults: retried until it gets through, then
    // every tiered record reads back exactly.
    let fresh = tempfile::tempdir().unwrap();
    let remote = tierlog::remote::RemoteStore::new(faulty.clone(), "test://store");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut attempts = 0;
    let report = loop {
        attempts += 1;
        match rt.block_on(tierlog::restore(fresh.path(), &remote, T0)) {
            Ok(r) => break r,
            Err(e) => {
                assert!(attempts < 200, "restore never got through: {e}");
                assert!(!e.to_string().is_empty());
            }
        }
    };
    let (first, next) = report.partitions["t-0"];
    assert_eq!(first, 0);
    let restored = self::engine(fresh.path(), &clock, faulty.clone(), 3_600_000);
    assert_eq!(read_all_through_faults(&restored, "t", 0).0, next);

    // With the faults gone, the reaper leaves no object the catalog does
    // not reference as COPY_FINISHED.
    faults.fail_per_mille.store(0, Ordering::SeqCst);
    faults.truncate_per_mille.store(0, Ordering::SeqCst);
    // Past the grace period of every object written (by the store's clock,
    // which is the real one).
    use tierlog::clock::Clock;
    clock.set(tierlog::clock::SystemClock.now_ms() + 2 * 3_600_000);
    restored.run_remote_round().unwrap();
    let finished: std::collections::HashSet<uuid::Uuid> = restored
        .remote_segments("t", 0)
        .unwrap()
        .into_iter()
        .filter(|r| r.state == RemoteState::CopyFinished)
        .map(|r| r.segment_uuid)
        .collect();
    for o in list_all(&s3.store()) {
        if let Some(uuid) = tierlog::remote::keys::segment_uuid_of(&o.location) {
            assert!(finished.contains(&uuid), "orphaned object {}", o.location);
        }
    }
    restored.shutdown().unwrap();
}

#[test]
fn a_crash_mid_multipart_leaves_no_parts_after_the_reaper() {
    let s3 = S3::start();
    if !s3.lists_multipart_uploads() {
        eprintln!(
            "skipped in-process: s3s-fs does not list multipart uploads; CI runs this against moto"
        );
        return;
    }
    let client = s3.client();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let topic_id = {
        let engine = engine(dir.path(), &clock, s3.store(), 3_600_000);
        engine
            .create_topic("t", 1, &configs(&[("remote.storage.enable", "true")]))
            .unwrap();
        let id = engine.topic("t").unwrap().id;
        engine.shutdown().unwrap();
        id
    };
    // What a crash mid-upload leaves: a started multipart upload with a part.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = segment_key(
        "t",
        &topic_id,
        0,
        0,
        &uuid::Uuid::new_v4(),
        SegmentObject::Log,
    );
    let uploads = |rt: &tokio::runtime::Runtime| {
        rt.block_on(client.list_multipart_uploads().bucket(&s3.bucket).send())
            .unwrap()
            .uploads()
            .len()
    };
    // And one of a topic deleted meanwhile (no live prefix covers it).
    let deleted_key = segment_key(
        "gone",
        &uuid::Uuid::new_v4(),
        0,
        0,
        &uuid::Uuid::new_v4(),
        SegmentObject::Log,
    );
    for key in [&key, &deleted_key] {
        rt.block_on(async {
            let started = client
                .create_multipart_upload()
                .bucket(&s3.bucket)
                .key(key.as_ref())
                .send()
                .await
                .unwrap();
            client
                .upload_part()
                .bucket(&s3.bucket)
                .key(key.as_ref())
                .upload_id(started.upload_id().unwrap())
                .part_number(1)
                .body(vec![7u8; 5 << 20].into())
                .send()
                .await
                .unwrap();
        });
    }
    assert_eq!(uploads(&rt), 2);
    // Both are older than the grace period by the time the broker restarts.
    use tierlog::clock::Clock;
    clock.set(tierlog::clock::SystemClock.now_ms() + 2 * 3_600_000);

    let engine = open_with_remote(
        dir.path(),
        &clock,
        RemoteSettings {
            task_interval_ms: 0,
            orphan_grace_ms: 3_600_000,
            max_segments_per_round: 10_000,
            admin: Some(Arc::new(tierlog::remote::admin::S3Admin::new(
                s3.client(),
                s3.bucket.clone(),
                "",
            ))),
            store: Some(s3.store()),
            ..RemoteSettings::new("test://store")
        },
    );
    let report = engine.run_remote_round().unwrap();
    assert!(report.reaped >= 1, "{report:?}");
    assert_eq!(uploads(&rt), 0, "no multipart upload left after the reaper");
}

#[test]
fn restore_rebuilds_a_lost_data_directory_from_the_bucket() {
    use tierlog::remote::RemoteStore;
    use tierlog::restore;

    let s3 = S3::start();
    let clock = ManualClock::new(T0);
    let lost = tempfile::tempdir().unwrap();
    let engine = engine(lost.path(), &clock, s3.store(), 60_000);
    engine
        .create_topic(
            "r",
            2,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "4000"),
                ("retention.ms", "-1"),
            ]),
        )
        .unwrap();
    let ends: Vec<i64> = (0..2)
        .map(|p| fill_partition(&engine, "r", p, 40, 100))
        .collect();
    engine.run_remote_round().unwrap();
    let tiered: Vec<i64> = (0..2)
        .map(|p| engine.offsets("r", p).unwrap().last_tiered_offset.unwrap())
        .collect();
    let before: Vec<_> = (0..2)
        .map(|p| read_all_checked(&engine, "r", p, 0))
        .collect();
    // Partition 1 loses the .log of its second segment: that manifest is
    // skipped, and with it everything before the gap.
    let rows = engine.remote_segments("r", 1).unwrap();
    assert!(rows.len() >= 4, "{} segments tiered", rows.len());
    let broken = &rows[1];
    let topic_id = engine.topic("r").unwrap().id;
    let key = segment_key(
        "r",
        &topic_id,
        1,
        broken.base_offset,
        &broken.segment_uuid,
        SegmentObject::Log,
    );
    let store = s3.store();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store.delete(&key)).unwrap();
    engine.shutdown().unwrap();
    drop(engine);
    drop(lost); // the local disk is gone

    let fresh = tempfile::tempdir().unwrap();
    let remote = RemoteStore::new(s3.store(), "test://store");
    let report = rt.block_on(restore(fresh.path(), &remote, T0)).unwrap();
    assert_eq!(report.topics, vec!["r".to_string()]);
    assert_eq!(report.partitions["r-0"], (0, tiered[0] + 1));
    assert_eq!(
        report.partitions["r-1"],
        (rows[2].base_offset, tiered[1] + 1)
    );
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    assert!(
        report.skipped[0].contains("is missing"),
        "{:?}",
        report.skipped
    );
    assert!(
        report.skipped[1].contains("before missing offsets"),
        "{:?}",
        report.skipped
    );

    let engine = self::engine(fresh.path(), &clock, s3.store(), 60_000);
    let info = engine.topic("r").unwrap();
    assert_eq!((info.id, info.partitions), (topic_id, 2));
    assert_eq!(info.overrides["segment.bytes"], "4000");
    for p in 0..2u32 {
        let o = engine.offsets("r", p).unwrap();
        let start = report.partitions[&format!("r-{p}")].0;
        assert_eq!(o.log_start_offset, start);
        assert_eq!(o.local_log_start_offset, tiered[p as usize] + 1);
        assert_eq!(o.log_end_offset, tiered[p as usize] + 1);
        // Everything the bucket held reads back byte for byte.
        let after = read_all_checked(&engine, "r", p, start);
        let expected: Vec<_> = before[p as usize]
            .iter()
            .filter(|r| r.offset >= start && r.offset <= tiered[p as usize])
            .cloned()
            .collect();
        assert_eq!(after, expected, "partition {p}");
        // New records continue after the bucket's last offset.
        let next = o.log_end_offset;
        let mut b = batch_with_ts(next, 5, 100, |o| T0 + 10 * o);
        assert_eq!(engine.append("r", p, &mut b).unwrap().base_offset, next);
    }
    assert!(ends.iter().zip(&tiered).all(|(e, t)| t < e));
    engine.shutdown().unwrap();
    drop(engine);

    // A directory that has topics is refused, and left as it was.
    let err = rt.block_on(restore(fresh.path(), &remote, T0)).unwrap_err();
    assert!(err.to_string().contains("without topics"), "{err}");
    let engine = self::engine(fresh.path(), &clock, s3.store(), 60_000);
    assert_eq!(
        engine.offsets("r", 0).unwrap().log_end_offset,
        tiered[0] + 6
    );
}
