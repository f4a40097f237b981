//! The catalog snapshot job: every `catalog.snapshot.interval.ms`, and
//! once more at a clean shutdown, the catalog (topics with and without
//! remote storage, committed offsets, stored groups, the producer-id
//! counter) and each partition's log end offset go to the bucket as one
//! snapshot (`remote/catalog_snapshot.rs`), so `tierlog restore` can
//! rebuild a whole broker, not only its tiered segments.
//!
//! Writes only when the content changed since the last snapshot this
//! process wrote (its time aside). Before its first write a process reads
//! the bucket's newest snapshot: one of another cluster id (this broker
//! runs on a new or lost data directory that was not restored) is never
//! replaced, so a fresh node cannot push a good snapshot out; and each
//! snapshot is taken after the newest there, so names keep their order
//! (newest last) if the clock steps back. A failed
//! upload (or that refusal) is logged and recorded as a recent warning and
//! retried next interval; it never stops the broker. Must never write to
//! the catalog or delete anything but old snapshots.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::catalog::{snapshot, SharedCatalog};
use crate::error::{Error, ErrorKind, Result};
use crate::log_manager::LogManager;
use crate::metrics::EventLevel;
use crate::remote::catalog_snapshot::{newest_valid, snapshots, write};
use crate::remote::RemoteStore;
use crate::sync::lock;
use crate::tasks::remote_log_manager::RemoteLogManager;

/// How long a snapshot's upload may take before it is given up (and
/// retried next interval): a failing bucket must not hold shutdown.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// Written under this key.
    Written(String),
    /// The catalog had not changed since the last snapshot written.
    Unchanged,
}

/// Writes catalog snapshots; remembers what it wrote last.
#[derive(Debug)]
pub(crate) struct CatalogSnapshotter {
    /// This data directory's cluster id, in every snapshot.
    cluster_id: String,
    /// Held by a run from start to end: runs (the job, an explicit write)
    /// never interleave.
    state: Mutex<WriterState>,
}

#[derive(Debug, Default)]
struct WriterState {
    /// The time of the newest snapshot in the bucket (this process's last
    /// or, before its first, the bucket's): the next is taken after it,
    /// so snapshot names keep their order if the clock steps back. `None`
    /// until the bucket was checked.
    newest_ms: Option<i64>,
    /// The content checksum of the last snapshot written.
    last_written: Option<u32>,
}

impl CatalogSnapshotter {
    pub(crate) fn new(cluster_id: String) -> Self {
        CatalogSnapshotter {
            cluster_id,
            state: Mutex::new(WriterState::default()),
        }
    }

    /// Take a snapshot and upload it unless it equals the last one written
    /// (or `force`). The first run of a process checks the bucket's newest
    /// snapshot first (another cluster's is never replaced). Store
    /// requests run on the remote log manager's runtime, from a thread
    /// outside any runtime.
    pub(crate) fn run(
        &self,
        logs: &LogManager,
        catalog: &SharedCatalog,
        manager: &RemoteLogManager,
        now_ms: i64,
        force: bool,
    ) -> Result<SnapshotOutcome> {
        let mut state = lock(&self.state);
        let handle = manager
            .handle()
            .ok_or_else(|| Error::internal("the remote tier's runtime is gone"))?;
        let store = manager.store();
        let newest_ms = match state.newest_ms {
            Some(ms) => ms,
            None => {
                let ms = block_on(
                    &handle,
                    store,
                    newest_of_this_cluster(store, &self.cluster_id),
                )?
                .unwrap_or(i64::MIN);
                state.newest_ms = Some(ms);
                ms
            }
        };
        // Log end offsets and DeleteRecords floors first, outside the
        // catalog's lock (a partition is never locked while the catalog is).
        let offsets: HashMap<uuid::Uuid, (Vec<i64>, Vec<i64>)> = logs
            .topic_states()
            .iter()
            .map(|t| {
                let (ends, floors) = t
                    .partitions
                    .iter()
                    .map_while(|p| {
                        // One lock of the partition for both.
                        p.with_log(|l| Ok((l.log_end_offset(), l.start_floor())))
                            .ok()
                    })
                    .unzip();
                (t.record.id, (ends, floors))
            })
            .collect();
        let taken_ms = now_ms.max(newest_ms.saturating_add(1));
        let taken = {
            let catalog = lock(catalog);
            snapshot::take(&**catalog, &self.cluster_id, taken_ms, |t| {
                offsets.get(&t.id).cloned().unwrap_or_default()
            })?
        };
        let content = taken.content_checksum();
        if !force && state.last_written == Some(content) {
            return Ok(SnapshotOutcome::Unchanged);
        }
        let (key, pruned) = block_on(&handle, store, write(store, &taken))?;
        state.last_written = Some(content);
        state.newest_ms = Some(taken_ms);
        tracing::info!(
            key = %key,
            topics = taken.topics.len(),
            committed_offsets = taken.committed_offsets.len(),
            groups = taken.groups.len(),
            next_producer_id = taken.next_producer_id,
            pruned,
            "catalog snapshot written"
        );
        Ok(SnapshotOutcome::Written(key.to_string()))
    }

    /// [`CatalogSnapshotter::run`], a failure logged and recorded as a
    /// recent warning (the job's and shutdown's way: never an error that
    /// stops anything).
    pub(crate) fn run_logged(
        &self,
        logs: &LogManager,
        catalog: &SharedCatalog,
        manager: &RemoteLogManager,
        now_ms: i64,
    ) {
        if let Err(e) = self.run(logs, catalog, manager, now_ms, false) {
            tracing::warn!(remote = manager.store().url(), error = %e, "catalog snapshot failed; retried next interval");
            logs.record_event(
                EventLevel::Warn,
                format!("catalog snapshot failed (retried next interval): {e}"),
            );
        }
    }
}

/// Run `request` (a store request of this job) on `handle`'s runtime from
/// a fresh thread, outside every runtime whatever the caller's (shutdown
/// may be called from async code), joined at once; given up after
/// [`UPLOAD_TIMEOUT`].
fn block_on<T: Send>(
    handle: &tokio::runtime::Handle,
    store: &RemoteStore,
    request: impl std::future::Future<Output = Result<T>> + Send,
) -> Result<T> {
    let bounded = async {
        tokio::time::timeout(UPLOAD_TIMEOUT, request)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "catalog snapshot: {} did not answer within {}s",
                        store.url(),
                        UPLOAD_TIMEOUT.as_secs()
                    ),
                )
            })?
    };
    std::thread::scope(|s| {
        s.spawn(|| handle.block_on(bounded))
            .join()
            .unwrap_or_else(|_| Err(Error::internal("a catalog snapshot request panicked")))
    })
}

/// The time of the bucket's newest valid catalog snapshot, if any; an
/// error if it is of another cluster than `cluster_id` (this broker must
/// not replace it).
async fn newest_of_this_cluster(store: &RemoteStore, cluster_id: &str) -> Result<Option<i64>> {
    let candidates = snapshots(store).await?;
    let mut damaged = Vec::new();
    let Some((key, newest)) = newest_valid(store, &candidates, &mut damaged).await? else {
        return Ok(None);
    };
    if newest.cluster_id != cluster_id {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "not replacing catalog snapshot {key} in {}: it is of cluster {}, this data \
                 directory is cluster {cluster_id} (new, or lost and not restored). Stop the \
                 broker and run `tierlog restore` into an empty data directory, or delete \
                 _catalog/ from the bucket to start a new cluster on it",
                store.url(),
                newest.cluster_id
            ),
        ));
    }
    Ok(Some(newest.taken_ms))
}
