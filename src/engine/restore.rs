//! `tierlog restore`'s local half: lock a data directory without topics,
//! read the bucket's plan (`remote/restore.rs`: segments and the newest
//! catalog snapshot), with `verify` check every object it restores, create
//! each partition's empty local log where the bucket ends, take the
//! snapshot's cluster id, then write the catalog (topics, segments,
//! committed offsets, groups, the producer-id counter) in one transaction.
//! Nothing is deleted: a directory in a restored partition's way is
//! removed only if it names a topic this catalog deleted, else kept aside
//! and reported.

use std::collections::BTreeMap;
use std::path::Path;

use crate::catalog::{Catalog, CatalogRestore, SqliteCatalog};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::failpoints::fail_point;
use crate::log::partition_dirs::{self, Cleared};
use crate::log::paths;
use crate::remote::restore::{plan, verify, ProgressSink, RestoreProgress, RestoreReport};
use crate::remote::RemoteStore;

/// How `tierlog restore` runs beyond its defaults.
#[derive(Clone, Copy, Default)]
pub struct RestoreOptions<'a> {
    /// Read every object restored back and check its CRC32C first
    /// (`--verify`); a mismatch fails the restore before anything is
    /// written.
    pub verify: bool,
    /// Told each step (a progress bar, log lines).
    pub progress: Option<ProgressSink<'a>>,
}

/// Rebuild `data_dir` from the objects in `store`. The directory must hold
/// no topic yet (a fresh directory, or one whose catalog has none); it is
/// locked meanwhile, so no broker can run on it.
pub async fn restore(data_dir: &Path, store: &RemoteStore, now_ms: i64) -> Result<RestoreReport> {
    restore_with(data_dir, store, now_ms, RestoreOptions::default()).await
}

/// [`restore`] with `options` (`--verify`, progress).
pub async fn restore_with(
    data_dir: &Path,
    store: &RemoteStore,
    now_ms: i64,
    options: RestoreOptions<'_>,
) -> Result<RestoreReport> {
    let progress = |step: RestoreProgress<'_>| {
        if let Some(sink) = options.progress {
            sink(step);
        }
    };
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::io("cannot create data directory", data_dir, e))?;
    let _lock = super::data_dir::lock_data_dir(data_dir)?;
    let mut catalog = SqliteCatalog::open(&paths::catalog_file(data_dir))?;
    let existing = catalog.topics()?;
    if let Some(t) = existing.first() {
        return Err(Error::invalid(format!(
            "restore needs a data directory without topics; {} already has {} (first: '{}')",
            data_dir.display(),
            existing.len(),
            t.name
        )));
    }
    let mut plan = plan(store, now_ms).await?;
    progress(RestoreProgress::Planned {
        partitions: plan.starts.len(),
        segments: plan.report.segments,
        bytes: plan.report.bytes,
    });
    if options.verify {
        verify(store, &mut plan, &progress).await?;
    }
    // Local logs first (a failure leaves no catalog that points at them),
    // then the catalog in one transaction.
    let deleted = catalog.deleted_topic_ids()?;
    for start in &plan.starts {
        let (name, p) = (&start.topic.name, start.partition);
        if let Cleared::SetAside(kept) = partition_dirs::clear_way(data_dir, name, p, &deleted)? {
            plan.report.set_aside.push(kept);
        }
        let config = TopicConfig::resolve(&start.topic.configs, &BTreeMap::new())?;
        partition_dirs::create_starting_at(
            &paths::partition_dir(data_dir, name, p),
            start.topic.id,
            start.next_offset,
            config.index_interval_bytes,
            now_ms,
            start.producer_snapshot.as_deref(),
        )?;
        if start.log_start_floor > 0 {
            crate::log::write_log_start_floor(
                &paths::partition_dir(data_dir, name, p),
                start.log_start_floor,
            )?;
        }
        progress(RestoreProgress::PartitionCreated {
            partition: &format!("{name}-{p}"),
        });
    }
    if let Some(id) = &plan.report.cluster_id {
        super::data_dir::write_cluster_id(data_dir, id)?;
    }
    fail_point!("restore.after_local_logs");
    catalog.restore(&CatalogRestore {
        topics: plan.topics,
        segments: plan.segments,
        next_producer_id: plan.next_producer_id,
        committed_offsets: plan.committed_offsets,
        groups: plan.groups,
        users: plan.users,
        acls: plan.acls,
        transactions: plan.transactions,
        client_quotas: plan.client_quotas,
        restored_ms: now_ms,
    })?;
    Ok(plan.report)
}
