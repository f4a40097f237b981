//! The data directory as a whole: its exclusive lock, the clean-shutdown
//! marker and the cluster id (file names in `log/paths.rs`).

use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::log::paths;

/// Take the exclusive lock on `<data>/.lock`: two engines on one data
/// directory would recover and truncate each other's live segments. Held
/// while the returned file is open.
pub(crate) fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    let path = paths::lock_file(data_dir);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("cannot open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "data directory {} is in use by another tierlog process",
                data_dir.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", &path, e)),
    }
}

/// Whether the last shutdown was clean; the marker is removed durably
/// before anything is written, so a crash from here on is never mistaken
/// for a clean shutdown.
pub(crate) fn take_clean_shutdown_marker(data_dir: &Path) -> Result<bool> {
    let marker = paths::clean_shutdown_file(data_dir);
    if !marker.exists() {
        return Ok(false);
    }
    std::fs::remove_file(&marker).map_err(|e| Error::io("cannot remove", &marker, e))?;
    crate::log::local_log::sync_dir(data_dir)?;
    Ok(true)
}

/// Leave the clean-shutdown marker, durably.
pub(crate) fn write_clean_shutdown_marker(data_dir: &Path) -> Result<()> {
    let marker = paths::clean_shutdown_file(data_dir);
    std::fs::File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("cannot write", &marker, e))?;
    crate::log::local_log::sync_dir(data_dir)
}

/// The cluster id stored in the data directory, created on first open.
pub(crate) fn load_or_create_cluster_id(data_dir: &Path) -> Result<String> {
    let path = paths::cluster_id_file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {} // empty: a crash while creating it; create it anew
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot read", &path, e)),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    write_cluster_id(data_dir, &id)?;
    Ok(id)
}

/// Store `id` as the data directory's cluster id (replacing one there):
/// at creation, and by `tierlog restore` (the catalog snapshot's).
pub(crate) fn write_cluster_id(data_dir: &Path, id: &str) -> Result<()> {
    let path = paths::cluster_id_file(data_dir);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io("cannot write", &path, e))
}
