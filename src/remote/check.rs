//! `tierlog tier check`: compare the catalog with the bucket, offline, and
//! with `--repair` do what the reaper would (docs/design.md §4).
//!
//! Owns the comparison and the safe repairs. The broker must be stopped
//! (`engine/check.rs` holds the data directory's lock), so no upload of
//! this broker is in flight and every leftover under its topics' prefixes
//! is a crash's or an operator's, as at the reaper's start-up round.
//!
//! Judged: only what lies under the prefix of a topic the catalog holds
//! (`<topic>-<topic_id>/`, its id being this catalog's):
//! - each `COPY_FINISHED` row's four catalogued objects (`.log`,
//!   `.index`, `.timeindex`, manifest) must exist, the `.log`, `.index`
//!   and `.timeindex` with the sizes the row records; with
//!   `deep`, each is read and its CRC32C compared with the row's, and the
//!   manifest must parse and agree with the row. The `.txnindex` is
//!   judged like them by the size and CRC32C the row records (migration
//!   0011); for a row tiered before, which records none, `deep` takes
//!   them from the manifest (segments tiered before `.txnindex` objects
//!   existed list none);
//! - objects of a segment no row references: an orphan when the segment
//!   has no manifest (never committed), else an unknown committed segment;
//! - objects of `DELETE_FINISHED` rows (the row says they are gone);
//! - rows stuck in `COPY_STARTED` or `DELETE_STARTED`;
//! - object_store's staging files (`<key>#<n>`, file:// only) and
//!   multipart uploads in progress (S3 only).
//!
//! Repairs (`repair`), each what the reaper does: stuck rows are finished
//! (objects deleted, row `DELETE_FINISHED`), orphans and the objects of
//! `DELETE_FINISHED` rows deleted, staging files removed, multipart uploads
//! aborted. Must never delete a committed object or a row: a missing or
//! corrupt committed object, and an unknown committed segment, are
//! reported and left for an operator (the data may exist nowhere else).
//! Everything outside the catalog's topics is counted and left alone.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::catalog::{Catalog, RemoteSegment, RemoteState};
use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::SegmentManifest;
use crate::remote::admin::S3Admin;
use crate::remote::keys::{segment_key, segment_uuid_of, topic_dir, SegmentObject};
use crate::remote::uploader::{delete_segment, SegmentOwner};
use crate::remote::RemoteStore;

/// What `tierlog tier check` does besides comparing.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Carry out the safe repairs.
    pub repair: bool,
    /// Read every committed object and compare its CRC32C.
    pub deep: bool,
}

/// What a check found and did. Every list names the key or the row.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub remote: String,
    pub deep: bool,
    pub repair: bool,
    /// `COPY_FINISHED` rows compared.
    pub committed_segments: usize,
    /// Objects listed under the catalog's topics.
    pub objects: usize,
    /// Objects of `COPY_FINISHED` rows not in the bucket.
    pub missing: Vec<String>,
    /// Objects whose size is not the row's.
    pub size_mismatches: Vec<String>,
    /// Objects whose CRC32C is not the row's (`deep`).
    pub crc_mismatches: Vec<String>,
    /// Manifests that do not parse or disagree with their row (`deep`).
    pub manifest_mismatches: Vec<String>,
    /// Objects of never-committed segments no row references.
    pub orphans: Vec<String>,
    /// Objects of committed segments (manifest present) no row references.
    pub unknown_committed: Vec<String>,
    /// Objects of `DELETE_FINISHED` rows.
    pub deleted_leftovers: Vec<String>,
    /// Rows in `COPY_STARTED` (`topic-partition base_offset uuid`).
    pub stuck_copies: Vec<String>,
    /// Rows in `DELETE_STARTED`.
    pub stuck_deletes: Vec<String>,
    /// object_store staging files (file://).
    pub staging_files: Vec<String>,
    /// Multipart uploads in progress (S3).
    pub multipart_uploads: Vec<String>,
    /// Why multipart uploads were not checked, if they were not.
    pub multipart_not_checked: Option<String>,
    /// Objects outside the catalog's topics, or not segment objects
    /// (`topic.json` excepted): not judged, left alone.
    pub not_judged: usize,
    /// What `repair` did.
    pub repaired: Vec<String>,
    /// What `repair` tried and could not do (the error).
    pub repair_failures: Vec<String>,
}

impl CheckReport {
    /// Problems found: everything but what is not judged.
    pub fn problems(&self) -> usize {
        self.unrepairable() + self.repairable()
    }

    /// Problems `repair` leaves by design: missing or corrupt committed
    /// objects and unknown committed segments.
    pub fn unrepairable(&self) -> usize {
        self.missing.len()
            + self.size_mismatches.len()
            + self.crc_mismatches.len()
            + self.manifest_mismatches.len()
            + self.unknown_committed.len()
    }

    /// Problems `repair` fixes.
    pub fn repairable(&self) -> usize {
        self.orphans.len()
            + self.deleted_leftovers.len()
            + self.stuck_copies.len()
            + self.stuck_deletes.len()
            + self.staging_files.len()
            + self.multipart_uploads.len()
    }

    /// Problems still there after this run: all of them without `repair`,
    /// else the unrepairable ones and the failed repairs.
    pub fn remaining(&self) -> usize {
        if self.repair {
            self.unrepairable() + self.repair_failures.len()
        } else {
            self.problems()
        }
    }
}

fn row_name(r: &RemoteSegment) -> String {
    format!(
        "{}-{} base_offset {} segment {}",
        r.topic, r.partition, r.base_offset, r.segment_uuid
    )
}

fn owner(r: &RemoteSegment) -> SegmentOwner {
    SegmentOwner {
        topic: r.topic.clone(),
        topic_id: r.topic_id,
        partition: r.partition,
    }
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

fn unavailable(what: String, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("{what}: {e}"))
}

/// Compare `catalog` with `store` (and with `admin`, S3's multipart
/// uploads), and with `options.repair` repair what is safe. `now_ms`
/// stamps the rows a repair moves.
pub async fn check(
    store: &RemoteStore,
    catalog: &mut dyn Catalog,
    admin: Option<&S3Admin>,
    options: CheckOptions,
    now_ms: i64,
) -> Result<CheckReport> {
    let mut report = CheckReport {
        remote: store.url().to_string(),
        deep: options.deep,
        repair: options.repair,
        ..Default::default()
    };
    let topics: HashSet<String> = catalog
        .topics()?
        .iter()
        .map(|t| topic_dir(&t.name, &t.id))
        .collect();
    let mut rows: HashMap<uuid::Uuid, RemoteSegment> = HashMap::new();
    for state in [
        RemoteState::CopyStarted,
        RemoteState::CopyFinished,
        RemoteState::DeleteStarted,
        RemoteState::DeleteFinished,
    ] {
        for row in catalog.remote_segments_in_state(state)? {
            rows.insert(row.segment_uuid, row);
        }
    }
    let listed: Vec<object_store::ObjectMeta> = store
        .store
        .list(None)
        .try_collect()
        .await
        .map_err(|e| unavailable(format!("cannot list {}", store.url()), e))?;
    // Objects under the catalog's topics, by key.
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for o in &listed {
        let k = o.location.as_ref();
        let judged = k.split('/').next().is_some_and(|t| topics.contains(t))
            && (segment_uuid_of(&o.location).is_some()
                || o.location.filename() == Some("topic.json"));
        if judged {
            sizes.insert(k.to_string(), o.size);
        } else {
            report.not_judged += 1;
        }
    }
    report.objects = sizes.len();

    // Committed rows: every object there, of the recorded size (and CRC).
    let mut finished: Vec<&RemoteSegment> = rows
        .values()
        .filter(|r| r.state == RemoteState::CopyFinished)
        .collect();
    finished.sort_by_key(|r| (r.topic.clone(), r.partition, r.base_offset));
    report.committed_segments = finished.len();
    for r in &finished {
        let mut objects = vec![
            (SegmentObject::Log, Some(r.log_size), Some(r.log_crc32c)),
            (SegmentObject::Index, Some(r.index_size), r.index_crc32c),
            (
                SegmentObject::TimeIndex,
                Some(r.timeindex_size),
                r.timeindex_crc32c,
            ),
            (SegmentObject::Manifest, None, None),
        ];
        if let Some(t) = r.txnindex {
            objects.push((SegmentObject::TxnIndex, Some(t.size), Some(t.crc32c)));
        }
        for (o, want_size, want_crc) in objects {
            let k = key(r, o);
            let Some(&size) = sizes.get(k.as_ref()) else {
                report.missing.push(k.to_string());
                continue;
            };
            if let Some(want) = want_size.filter(|w| *w != size) {
                report
                    .size_mismatches
                    .push(format!("{k}: {size} bytes, the catalog records {want}"));
                continue;
            }
            if !options.deep {
                continue;
            }
            if o == SegmentObject::Manifest {
                let bytes = read(store, &k).await?;
                if let Some(why) = manifest_disagrees(&bytes, r) {
                    report.manifest_mismatches.push(format!("{k}: {why}"));
                }
                // A `.txnindex` the catalog does not record (tiered
                // before migration 0011): the manifest's figures.
                let listed = SegmentManifest::from_json(&bytes)
                    .ok()
                    .and_then(|m| m.objects.txnindex)
                    .filter(|_| r.txnindex.is_none());
                if let Some(t) = listed {
                    let tk = key(r, SegmentObject::TxnIndex);
                    match sizes.get(tk.as_ref()) {
                        None => report.missing.push(tk.to_string()),
                        Some(&size) if size != t.size => report.size_mismatches.push(format!(
                            "{tk}: {size} bytes, its manifest records {}",
                            t.size
                        )),
                        Some(_) => {
                            let got = crc_of(store, &tk).await?;
                            if got != t.crc32c {
                                report.crc_mismatches.push(format!(
                                    "{tk}: CRC32C {got:#010x}, its manifest records {:#010x}",
                                    t.crc32c
                                ));
                            }
                        }
                    }
                }
            } else if let Some(want) = want_crc {
                let got = crc_of(store, &k).await?;
                if got != want {
                    report.crc_mismatches.push(format!(
                        "{k}: CRC32C {got:#010x}, the catalog records {want:#010x}"
                    ));
                }
            }
        }
    }

    // Objects by segment uuid: no row, or a row that says they are gone.
    let mut by_segment: BTreeMap<uuid::Uuid, Vec<String>> = BTreeMap::new();
    for k in sizes.keys() {
        if let Some(uuid) = segment_uuid_of(&Path::from(k.as_str())) {
            by_segment.entry(uuid).or_default().push(k.clone());
        }
    }
    let mut deletable: Vec<String> = Vec::new();
    for (uuid, keys) in &by_segment {
        match rows.get(uuid).map(|r| r.state) {
            None if keys.iter().any(|k| k.ends_with(".manifest.json")) => {
                report.unknown_committed.extend(keys.iter().cloned());
            }
            None => {
                report.orphans.extend(keys.iter().cloned());
                deletable.extend(keys.iter().cloned());
            }
            Some(RemoteState::DeleteFinished) => {
                report.deleted_leftovers.extend(keys.iter().cloned());
                deletable.extend(keys.iter().cloned());
            }
            Some(_) => {}
        }
    }
    let mut stuck: Vec<RemoteSegment> = rows
        .values()
        .filter(|r| {
            matches!(
                r.state,
                RemoteState::CopyStarted | RemoteState::DeleteStarted
            )
        })
        .cloned()
        .collect();
    stuck.sort_by_key(|r| (r.topic.clone(), r.partition, r.base_offset));
    for r in &stuck {
        match r.state {
            RemoteState::CopyStarted => report.stuck_copies.push(row_name(r)),
            _ => report.stuck_deletes.push(row_name(r)),
        }
    }

    // Leftovers of interrupted puts and uploads under the catalog's topics.
    let mut staging = Vec::new();
    if let Some(root) = store.local_root() {
        for t in &topics {
            for (path, _) in crate::remote::staging::staging_files(&root.join(t)) {
                report.staging_files.push(path.display().to_string());
                staging.push(path);
            }
        }
    }
    let mut uploads = Vec::new();
    match admin {
        Some(admin) => {
            let mut dirs: Vec<&String> = topics.iter().collect();
            dirs.sort();
            for t in dirs {
                match admin.list_uploads(t).await {
                    Ok(found) => uploads.extend(found),
                    Err(e) => {
                        report.multipart_not_checked = Some(e.to_string());
                        break;
                    }
                }
            }
            report
                .multipart_uploads
                .extend(uploads.iter().map(|u| u.key.clone()));
        }
        None if store.url().starts_with("s3://") => {
            report.multipart_not_checked = Some("no S3 admin client".into());
        }
        None => {}
    }

    if options.repair {
        repair(
            store,
            catalog,
            admin,
            &mut report,
            &stuck,
            &deletable,
            &staging,
            &uploads,
            now_ms,
        )
        .await;
    }
    Ok(report)
}

/// The reaper's repairs, each recorded in `report` (done or failed).
#[allow(clippy::too_many_arguments)]
async fn repair(
    store: &RemoteStore,
    catalog: &mut dyn Catalog,
    admin: Option<&S3Admin>,
    report: &mut CheckReport,
    stuck: &[RemoteSegment],
    deletable: &[String],
    staging: &[std::path::PathBuf],
    uploads: &[crate::remote::admin::PendingUpload],
    now_ms: i64,
) {
    for row in stuck {
        let what = row_name(row);
        match finish_delete(store, catalog, row.clone(), now_ms).await {
            Ok(()) => report.repaired.push(format!(
                "{what}: {} -> DELETE_FINISHED, objects deleted",
                row.state.as_str()
            )),
            Err(e) => report.repair_failures.push(format!("{what}: {e}")),
        }
    }
    for k in deletable {
        match store.store.delete(&Path::from(k.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                report.repaired.push(format!("{k}: deleted"))
            }
            Err(e) => report
                .repair_failures
                .push(format!("{k}: cannot delete: {e}")),
        }
    }
    for path in staging {
        match std::fs::remove_file(path) {
            Ok(()) => report.repaired.push(format!("{}: deleted", path.display())),
            Err(e) => report
                .repair_failures
                .push(format!("{}: cannot delete: {e}", path.display())),
        }
    }
    if let Some(admin) = admin {
        for u in uploads {
            match admin.abort_upload(u).await {
                Ok(()) => report.repaired.push(format!("{}: upload aborted", u.key)),
                Err(e) => report.repair_failures.push(e.to_string()),
            }
        }
    }
}

/// What the reaper does with a stuck row: `DELETE_STARTED` (from
/// `COPY_STARTED`), its objects deleted, `DELETE_FINISHED`.
async fn finish_delete(
    store: &RemoteStore,
    catalog: &mut dyn Catalog,
    mut row: RemoteSegment,
    now_ms: i64,
) -> Result<()> {
    if row.state == RemoteState::CopyStarted {
        row.state = RemoteState::DeleteStarted;
        row.updated_ms = now_ms;
        catalog.transition_remote_segment(&row, RemoteState::CopyStarted)?;
    }
    delete_segment(store, &owner(&row), row.base_offset, row.segment_uuid).await?;
    row.state = RemoteState::DeleteFinished;
    row.updated_ms = now_ms;
    catalog.transition_remote_segment(&row, RemoteState::DeleteStarted)
}

async fn read(store: &RemoteStore, k: &Path) -> Result<bytes::Bytes> {
    let got = store
        .store
        .get(k)
        .await
        .map_err(|e| unavailable(format!("cannot read {k}"), e))?;
    got.bytes()
        .await
        .map_err(|e| unavailable(format!("cannot read {k}"), e))
}

/// The CRC32C of object `k`, read as a stream (a segment may be larger
/// than memory allows). `tierlog restore --verify` uses it too.
pub(crate) async fn crc_of(store: &RemoteStore, k: &Path) -> Result<u32> {
    let mut stream = store
        .store
        .get(k)
        .await
        .map_err(|e| unavailable(format!("cannot read {k}"), e))?
        .into_stream();
    let mut crc = 0;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| unavailable(format!("cannot read {k}"), e))?
    {
        crc = crc32c::crc32c_append(crc, &chunk);
    }
    Ok(crc)
}

/// Why a manifest does not describe `row`'s segment, if it does not.
fn manifest_disagrees(bytes: &[u8], row: &RemoteSegment) -> Option<String> {
    let m = match SegmentManifest::from_json(bytes) {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    let o = &m.objects;
    let want = (
        row.segment_uuid,
        row.topic_id,
        row.partition,
        row.base_offset,
        row.last_offset,
    );
    let got = (
        m.segment_uuid,
        m.topic_id,
        m.partition,
        m.base_offset,
        m.last_offset,
    );
    if got != want {
        return Some(format!(
            "names segment {} of {}-{} offsets {}..={}, the catalog {} of {}-{} offsets {}..={}",
            m.segment_uuid,
            m.topic,
            m.partition,
            m.base_offset,
            m.last_offset,
            row.segment_uuid,
            row.topic,
            row.partition,
            row.base_offset,
            row.last_offset
        ));
    }
    let sizes = (o.log.size, o.index.size, o.timeindex.size, o.log.crc32c);
    let want = (
        row.log_size,
        row.index_size,
        row.timeindex_size,
        row.log_crc32c,
    );
    if sizes != want
        || row.index_crc32c.is_some_and(|c| c != o.index.crc32c)
        || row
            .timeindex_crc32c
            .is_some_and(|c| c != o.timeindex.crc32c)
        || row.txnindex.is_some_and(|t| o.txnindex != Some(t))
    {
        return Some("its object sizes or checksums are not the catalog's".into());
    }
    None
}
