//! `tierlog tier check`'s local half: the broker must be stopped. Takes the
//! data directory's lock (as the engine and restore do: a running broker
//! makes this fail), opens its catalog, and hands both tiers to
//! `remote/check.rs`. Never creates a catalog: a data directory without
//! one is an error, not an empty catalog whose every object looks orphaned.

use std::path::Path;

use crate::catalog::SqliteCatalog;
use crate::error::{Error, Result};
use crate::log::paths;
use crate::remote::admin::S3Admin;
use crate::remote::check::{check, CheckOptions, CheckReport};
use crate::remote::RemoteStore;

/// Compare the catalog of `data_dir` with `store` (and, on S3, `admin`'s
/// multipart uploads), repairing what is safe with `options.repair`.
pub async fn check_tier(
    data_dir: &Path,
    store: &RemoteStore,
    admin: Option<&S3Admin>,
    options: CheckOptions,
    now_ms: i64,
) -> Result<CheckReport> {
    let catalog_file = paths::catalog_file(data_dir);
    if !catalog_file.is_file() {
        return Err(Error::invalid(format!(
            "{} has no catalog ({}): not a tierlog data directory",
            data_dir.display(),
            catalog_file.display()
        )));
    }
    let _lock = super::data_dir::lock_data_dir(data_dir)?;
    let mut catalog = SqliteCatalog::open(&catalog_file)?;
    check(store, &mut catalog, admin, options, now_ms).await
}
