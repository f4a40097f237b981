//! `tierlog tier check` (the real binary) on a stopped broker's data
//! directory and its bucket, file:// and S3 (the in-process S3 server, or
//! moto with TIERLOG_TEST_S3_ENDPOINT): an object deleted behind
//! tierlog's back, one corrupted in place (same size: only --deep sees
//! it), a planted orphan, a crash's COPY_STARTED row with its partial
//! upload, a staging file (file://) and an interrupted multipart upload
//! (S3 servers that list them); --repair removes the orphan and the
//! leftovers and reports the rest.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Command, Output};
use std::sync::Arc;

use common::s3::{ACCESS_KEY, S3, SECRET_KEY};
use common::{batch, configs, open_with_remote};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tierlog::catalog::{RemoteSegment, RemoteState};
use tierlog::clock::ManualClock;
use tierlog::remote::keys::{segment_key, topic_dir, SegmentObject};
use tierlog::RemoteSettings;

const BIN: &str = env!("CARGO_BIN_EXE_tierlog");
const T0: i64 = 1_700_000_000_000;

/// A broker's data directory with `t-0` tiered into `store` (at least
/// three committed segments), shut down cleanly. Returns the committed
/// rows and the topic's bucket directory.
fn tiered_data_dir(
    data: &std::path::Path,
    store: Arc<dyn ObjectStore>,
) -> (Vec<RemoteSegment>, String) {
    let clock = ManualClock::new(T0);
    let engine = open_with_remote(
        data,
        &clock,
        RemoteSettings {
            task_interval_ms: 0,
            max_segments_per_round: 10_000,
            store: Some(store),
            ..RemoteSettings::new("test://store")
        },
    );
    let topic = engine
        .create_topic(
            "t",
            1,
            &configs(&[("remote.storage.enable", "true"), ("segment.bytes", "2000")]),
        )
        .unwrap();
    let mut next = 0;
    for _ in 0..30 {
        let mut b = batch(next, 5, 50, T0);
        next = engine.append("t", 0, &mut b).unwrap().last_offset + 1;
    }
    engine.run_remote_round().unwrap();
    let rows: Vec<RemoteSegment> = engine
        .remote_segments("t", 0)
        .unwrap()
        .into_iter()
        .filter(|r| r.state == RemoteState::CopyFinished)
        .collect();
    assert!(rows.len() >= 3, "{rows:?}");
    engine.shutdown().unwrap();
    (rows, topic_dir("t", &topic.id))
}

fn key(r: &RemoteSegment, o: SegmentObject) -> Path {
    segment_key(
        &r.topic,
        &r.topic_id,
        r.partition,
        r.base_offset,
        &r.segment_uuid,
        o,
    )
}

fn tier_check(data: &std::path::Path, url: &str, env: &[(&str, &str)], flags: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["tier", "check", "--data-dir"])
        .arg(data)
        .args(["--remote", url])
        .args(flags)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn list<'a>(report: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    report[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} missing from {report}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// The scenario on one bucket. `staging_root`: the file:// directory,
/// where a staging file of an interrupted put is planted too.
fn scenario(
    store: Arc<dyn ObjectStore>,
    engine_store: Arc<dyn ObjectStore>,
    url: &str,
    env: &[(&str, &str)],
    staging_root: Option<&std::path::Path>,
    s3: Option<&S3>,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (rows, topic_dir) = tiered_data_dir(&data, engine_store);
    let rt = tokio::runtime::Runtime::new().unwrap();

    // A clean bucket passes, deep too.
    let o = tier_check(&data, url, env, &["--deep"]);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("no problems found"), "{stdout}");

    // Behind tierlog's back: one object deleted, one corrupted in place
    // (same size), one orphan planted.
    let deleted = key(&rows[0], SegmentObject::Log);
    let corrupted = key(&rows[1], SegmentObject::Log);
    let orphan = Path::from(format!(
        "{topic_dir}/0/00000000000000099999-{}.log",
        uuid::Uuid::new_v4()
    ));
    rt.block_on(async {
        store.delete(&deleted).await.unwrap();
        let mut bytes = store
            .get(&corrupted)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        store.put(&corrupted, bytes.into()).await.unwrap();
        store
            .put(&orphan, b"not a segment".to_vec().into())
            .await
            .unwrap();
    });
    // A crash's leftover: a COPY_STARTED row and the one object its upload
    // wrote (the row is written in the catalog's file, as the broker would).
    let stuck = RemoteSegment {
        segment_uuid: uuid::Uuid::new_v4(),
        base_offset: rows.last().unwrap().last_offset + 1,
        last_offset: rows.last().unwrap().last_offset + 5,
        state: RemoteState::CopyStarted,
        ..rows[0].clone()
    };
    let db = rusqlite::Connection::open(data.join("catalog.db")).unwrap();
    db.execute(
        "INSERT INTO remote_segments (segment_uuid, topic, topic_id, partition, base_offset, \
         last_offset, first_timestamp, max_timestamp, state, updated_ms) \
         VALUES (?1, ?2, ?3, 0, ?4, ?5, 0, 0, 'COPY_STARTED', 0)",
        rusqlite::params![
            stuck.segment_uuid.to_string(),
            stuck.topic,
            stuck.topic_id.to_string(),
            stuck.base_offset,
            stuck.last_offset
        ],
    )
    .unwrap();
    let stuck_log = key(&stuck, SegmentObject::Log);
    rt.block_on(store.put(&stuck_log, b"half an upload".to_vec().into()))
        .unwrap();
    // An interrupted multipart upload (servers that list them: moto).
    let upload_key = format!(
        "{topic_dir}/0/00000000000000077777-{}.log",
        uuid::Uuid::new_v4()
    );
    let multipart = s3.filter(|s| s.lists_multipart_uploads()).inspect(|s| {
        rt.block_on(
            s.client()
                .create_multipart_upload()
                .bucket(&s.bucket)
                .key(&upload_key)
                .send(),
        )
        .unwrap();
    });
    let staging = staging_root.map(|root| {
        let p = root.join(format!("{topic_dir}/0/00000000000000088888-x.log#3"));
        std::fs::write(&p, b"half a put").unwrap();
        p
    });

    // Without --deep: the missing object and the orphan; exit 2.
    let o = tier_check(&data, url, env, &[]);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains(deleted.as_ref()), "{stdout}");
    assert!(stdout.contains(orphan.as_ref()), "{stdout}");
    assert!(stdout.contains("not checked (add --deep)"), "{stdout}");

    // --deep --json: the corrupt object too, by CRC32C.
    let o = tier_check(&data, url, env, &["--deep", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let report = json(&o);
    assert_eq!(list(&report, "missing"), vec![deleted.as_ref()]);
    let crc = list(&report, "crc_mismatches");
    assert_eq!(crc.len(), 1, "{report}");
    assert!(crc[0].starts_with(corrupted.as_ref()), "{report}");
    assert_eq!(list(&report, "orphans"), vec![orphan.as_ref()]);
    assert!(list(&report, "size_mismatches").is_empty(), "{report}");
    assert!(list(&report, "unknown_committed").is_empty(), "{report}");
    assert_eq!(
        report["committed_segments"].as_u64().unwrap(),
        rows.len() as u64
    );
    assert_eq!(
        list(&report, "staging_files").len(),
        usize::from(staging.is_some())
    );
    let stuck_copies = list(&report, "stuck_copies");
    assert_eq!(stuck_copies.len(), 1, "{report}");
    assert!(
        stuck_copies[0].contains(&stuck.segment_uuid.to_string()),
        "{report}"
    );
    match multipart {
        Some(_) => assert_eq!(
            list(&report, "multipart_uploads"),
            vec![upload_key.as_str()]
        ),
        None if s3.is_some() => assert!(
            report["multipart_not_checked"].is_string(),
            "s3s-fs does not list uploads: said so, {report}"
        ),
        None => assert!(report["multipart_not_checked"].is_null(), "{report}"),
    }

    // --repair: the orphan (and staging file) go; the missing and corrupt
    // committed objects are reported and left.
    let o = tier_check(&data, url, env, &["--repair", "--deep"]);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains(&format!("{orphan}: deleted")), "{stdout}");
    assert!(stdout.contains("2 problems left"), "{stdout}");
    assert!(stdout.contains("never repaired"), "{stdout}");
    rt.block_on(async {
        assert!(matches!(
            store.head(&orphan).await,
            Err(object_store::Error::NotFound { .. })
        ));
        assert!(store.head(&corrupted).await.is_ok(), "corrupt object kept");
    });
    if let Some(p) = &staging {
        assert!(!p.exists(), "staging file removed");
    }
    // The stuck copy went the reaper's way: objects deleted, row finished.
    assert!(
        stdout.contains(&format!(
            "segment {}: COPY_STARTED -> DELETE_FINISHED",
            stuck.segment_uuid
        )),
        "{stdout}"
    );
    rt.block_on(async {
        assert!(matches!(
            store.head(&stuck_log).await,
            Err(object_store::Error::NotFound { .. })
        ));
    });
    let state: String = db
        .query_row(
            "SELECT state FROM remote_segments WHERE segment_uuid = ?1",
            [stuck.segment_uuid.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "DELETE_FINISHED");
    drop(db);
    if let Some(s) = multipart {
        let left = rt
            .block_on(s.client().list_multipart_uploads().bucket(&s.bucket).send())
            .unwrap();
        assert!(left.uploads().is_empty(), "{left:?}");
    }
    let report = json(&tier_check(&data, url, env, &["--deep", "--json"]));
    assert!(list(&report, "orphans").is_empty(), "{report}");
    assert_eq!(list(&report, "missing").len(), 1, "{report}");
    assert_eq!(list(&report, "crc_mismatches").len(), 1, "{report}");

    // A running broker holds the data directory: the check refuses.
    let clock = ManualClock::new(T0);
    let running = common::open(&data, &clock);
    let o = tier_check(&data, url, env, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use by another tierlog process"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    drop(running);

    // A directory without a catalog is not judged against the bucket.
    let o = tier_check(&dir.path().join("typo"), url, env, &["--repair"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no catalog"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn check_finds_missing_corrupt_and_orphaned_objects_on_file_remote() {
    let bucket = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(bucket.path()).unwrap());
    let url = format!("file://{}", bucket.path().display());
    scenario(
        Arc::clone(&store),
        store,
        &url,
        &[],
        Some(bucket.path()),
        None,
    );
}

#[test]
fn check_finds_missing_corrupt_and_orphaned_objects_on_s3() {
    let s3 = S3::start();
    let url = format!("s3://{}?endpoint={}", s3.bucket, s3.endpoint);
    let env = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
    ];
    scenario(s3.store(), s3.store(), &url, &env, None, Some(&s3));
}

/// A committed segment's `.txnindex` object is judged by the size and
/// CRC32C the catalog records (migration 0011), like its other objects:
/// one missing or of another size is reported by every check. A segment
/// tiered before the catalog recorded them (its columns NULL) is judged
/// by its manifest, which `--deep` reads. A `.txnindex` of no segment is
/// an orphan like any other object.
#[test]
fn txnindex_objects_are_judged_by_the_catalog_or_else_their_manifest() {
    let bucket = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(bucket.path()).unwrap());
    let url = format!("file://{}", bucket.path().display());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (rows, topic_dir) = tiered_data_dir(&data, Arc::clone(&store));
    assert!(rows.iter().all(|r| r.txnindex.is_some_and(|t| t.size == 0)));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deleted = key(&rows[0], SegmentObject::TxnIndex);
    let corrupted = key(&rows[1], SegmentObject::TxnIndex);
    let unrecorded = key(&rows[2], SegmentObject::TxnIndex);
    let orphan = Path::from(format!(
        "{topic_dir}/0/00000000000000099999-{}.txnindex",
        uuid::Uuid::new_v4()
    ));
    rt.block_on(async {
        // Present (empty: no transaction was aborted) before.
        assert_eq!(store.head(&deleted).await.unwrap().size, 0);
        store.delete(&deleted).await.unwrap();
        store.put(&corrupted, vec![0u8; 34].into()).await.unwrap();
        store.put(&unrecorded, vec![0u8; 34].into()).await.unwrap();
        store.put(&orphan, vec![0u8; 34].into()).await.unwrap();
    });
    // The third segment as a catalog from before migration 0011 has it.
    let db = rusqlite::Connection::open(data.join("catalog.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE remote_segments SET txnindex_size = NULL, txnindex_crc32c = NULL \
             WHERE segment_uuid = ?1",
            [rows[2].segment_uuid.to_string()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let report = json(&tier_check(&data, &url, &[], &["--json"]));
    assert_eq!(list(&report, "missing"), vec![deleted.as_ref()], "{report}");
    let sizes = list(&report, "size_mismatches");
    assert_eq!(sizes.len(), 1, "{report}");
    assert!(sizes[0].starts_with(corrupted.as_ref()), "{report}");
    assert!(sizes[0].contains("the catalog records 0"), "{report}");
    assert_eq!(list(&report, "orphans"), vec![orphan.as_ref()]);

    let report = json(&tier_check(&data, &url, &[], &["--deep", "--json"]));
    assert_eq!(list(&report, "missing"), vec![deleted.as_ref()], "{report}");
    let mut sizes = list(&report, "size_mismatches");
    sizes.sort();
    let mut want = [corrupted.as_ref(), unrecorded.as_ref()];
    want.sort();
    assert_eq!(sizes.len(), 2, "{report}");
    for (got, want) in sizes.iter().zip(want) {
        assert!(got.starts_with(want), "{report}");
    }
    assert!(
        sizes
            .iter()
            .any(|s| s.starts_with(unrecorded.as_ref()) && s.contains("its manifest records 0")),
        "{report}"
    );
    assert_eq!(list(&report, "orphans"), vec![orphan.as_ref()]);
}
