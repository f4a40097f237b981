//! `tierlog restore`'s local half: lock a data directory without topics,
//! read the bucket's plan (`remote/restore.rs`), create each partition's
//! empty local log where the bucket ends, then the catalog in one
//! transaction. Nothing is deleted: a directory in a restored partition's
//! way is removed only if it names a topic this catalog deleted, else kept
//! aside and reported.

use std::collections::BTreeMap;
use std::path::Path;

use crate::catalog::{Catalog, SqliteCatalog};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::failpoints::fail_point;
use crate::log::partition_dirs::{self, Cleared};
use crate::log::paths;
use crate::remote::restore::{plan, RestoreReport};
use crate::remote::RemoteStore;

/// Rebuild `data_dir` from the objects in `store`. The directory must hold
/// no topic yet (a fresh directory, or one whose catalog has none); it is
/// locked meanwhile, so no broker can run on it.
pub async fn restore(data_dir: &Path, store: &RemoteStore, now_ms: i64) -> Result<RestoreReport> {
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
    }
    fail_point!("restore.after_local_logs");
    catalog.restore(&plan.topics, &plan.segments, plan.next_producer_id)?;
    Ok(plan.report)
}
