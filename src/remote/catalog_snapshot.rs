//! Catalog snapshots in the bucket (`_catalog/<taken_ms:020>.snapshot.json`,
//! format on [`crate::format::catalog_snapshot`]): writing one and keeping
//! the newest [`KEEP_SNAPSHOTS`], and finding the newest valid one for
//! `tierlog restore`.
//!
//! Must never delete anything but an older catalog snapshot (a key under
//! `_catalog/` that parses as one): segment objects and `topic.json` are
//! the remote log manager's.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::error::{Error, ErrorKind, Result};
use crate::format::catalog_snapshot::CatalogSnapshot;
use crate::remote::keys::{catalog_snapshot_key, catalog_snapshot_taken_ms, CATALOG_SNAPSHOT_DIR};
use crate::remote::RemoteStore;

/// Snapshots kept in the bucket: the newest few, so a damaged newest one
/// still leaves `tierlog restore` an older one to fall back to.
pub const KEEP_SNAPSHOTS: usize = 5;

fn unavailable(what: String, e: object_store::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("{what}: {e}")).with_source(e)
}

/// Upload `snapshot` under its key, then delete all but the newest
/// [`KEEP_SNAPSHOTS`]. Returns the key written and how many older
/// snapshots went. A failed delete is only logged: the next write
/// retries it.
pub async fn write(store: &RemoteStore, snapshot: &CatalogSnapshot) -> Result<(Path, usize)> {
    let key = catalog_snapshot_key(snapshot.taken_ms);
    store
        .store
        .put(&key, snapshot.to_json().into())
        .await
        .map_err(|e| unavailable(format!("cannot write catalog snapshot {key}"), e))?;
    let mut pruned = 0;
    for old in snapshots(store).await?.into_iter().skip(KEEP_SNAPSHOTS) {
        match store.store.delete(&old.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => pruned += 1,
            Err(e) => {
                tracing::warn!(key = %old.location, error = %e, "cannot delete an old catalog snapshot; retried after the next one")
            }
        }
    }
    Ok((key, pruned))
}

/// Every catalog snapshot in the bucket, newest first.
pub async fn snapshots(store: &RemoteStore) -> Result<Vec<ObjectMeta>> {
    let listed: Vec<ObjectMeta> = store
        .store
        .list(Some(&Path::from(CATALOG_SNAPSHOT_DIR)))
        .try_collect()
        .await
        .map_err(|e| unavailable(format!("cannot list {CATALOG_SNAPSHOT_DIR}/"), e))?;
    Ok(newest_first(listed))
}

/// The catalog snapshots among `objects`, newest first.
pub fn newest_first(objects: impl IntoIterator<Item = ObjectMeta>) -> Vec<ObjectMeta> {
    let mut found: Vec<(i64, ObjectMeta)> = objects
        .into_iter()
        .filter_map(|o| Some((catalog_snapshot_taken_ms(&o.location)?, o)))
        .collect();
    found.sort_by_key(|(taken_ms, _)| std::cmp::Reverse(*taken_ms));
    found.into_iter().map(|(_, o)| o).collect()
}

/// The newest snapshot of `candidates` (newest first) that reads back
/// whole, parses, has a version this build knows and its checksum;
/// each one passed over is added to `skipped` with why. A read that
/// fails (the bucket unreachable) fails: it says nothing of the snapshot.
pub async fn newest_valid(
    store: &RemoteStore,
    candidates: &[ObjectMeta],
    skipped: &mut Vec<String>,
) -> Result<Option<(Path, CatalogSnapshot)>> {
    for o in candidates {
        let k = &o.location;
        let bytes = store
            .store
            .get(k)
            .await
            .map_err(|e| unavailable(format!("cannot read {k}"), e))?
            .bytes()
            .await
            .map_err(|e| unavailable(format!("cannot read {k}"), e))?;
        if bytes.len() as u64 != o.size {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot read {k}: got {} of its {} bytes",
                    bytes.len(),
                    o.size
                ),
            ));
        }
        match CatalogSnapshot::from_json(&bytes) {
            Ok(s) => return Ok(Some((k.clone(), s))),
            Err(e) => skipped.push(format!("{k}: {e}; using an older catalog snapshot")),
        }
    }
    Ok(None)
}
