//! object_store's staging files on a `file://` remote tier: a put writes
//! `<key>#<n>` and renames it to `<key>` when done, so a crash inside a put
//! leaves the staging file behind. object_store's listing hides them;
//! they are found by walking the directory.
//!
//! Owns finding and deleting them (the reaper, `tierlog tier check`). Must
//! never touch a file whose name is not `<name>#<digits>`.

use std::path::{Path, PathBuf};

/// Whether `name` is a staging file's name: `<name>#<digits>`.
pub fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Every staging file under `root`, with its modification time (ms since
/// the epoch; `i64::MAX` when unknown, so it is never judged old).
pub fn staging_files(root: &Path) -> Vec<(PathBuf, i64)> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(path);
                continue;
            }
            if !is_staging_name(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(i64::MAX, |d| d.as_millis() as i64);
            found.push((path, modified_ms));
        }
    }
    found.sort();
    found
}

/// Delete object_store's staging files under `root`: every one under
/// `live` dirs when `startup`, else those modified before `cutoff_ms`.
/// Returns how many went.
pub fn reap_staging_files(root: &Path, live: &[PathBuf], startup: bool, cutoff_ms: i64) -> usize {
    let mut removed = 0;
    for (path, modified_ms) in staging_files(root) {
        let leftover =
            (startup && live.iter().any(|l| path.starts_with(l))) || modified_ms < cutoff_ms;
        if leftover {
            tracing::info!(file = %path.display(), "deleting a staging file an interrupted upload left");
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot delete a staging file")
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_files_of_interrupted_puts_are_reaped() {
        let root = tempfile::tempdir().unwrap();
        let live = root.path().join("t-live");
        let other = root.path().join("t-gone");
        std::fs::create_dir_all(live.join("0")).unwrap();
        std::fs::create_dir_all(other.join("0")).unwrap();
        let files = [
            live.join("0/00000000000000000000-a.log#1"),
            other.join("0/00000000000000000000-b.log#7"),
            other.join("0/00000000000000000000-c.log#3"),
            live.join("0/00000000000000000000-a.log"),
            live.join("0/not#staging"),
        ];
        for f in &files {
            std::fs::write(f, b"x").unwrap();
        }
        // One staging file outside the live topics is old.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        std::fs::File::options()
            .write(true)
            .open(&files[2])
            .unwrap()
            .set_modified(old)
            .unwrap();
        let cutoff = 2_000_000; // ms: after `old`, before now
        assert_eq!(
            reap_staging_files(root.path(), std::slice::from_ref(&live), false, cutoff),
            1
        );
        assert!(
            !files[2].exists(),
            "old staging file outside live topics goes"
        );
        assert_eq!(reap_staging_files(root.path(), &[live], true, cutoff), 1);
        assert!(
            !files[0].exists(),
            "at start-up a live topic's staging file goes"
        );
        assert!(
            files[1].exists(),
            "a fresh one elsewhere stays (another upload may own it)"
        );
        assert!(files[3].exists() && files[4].exists(), "real objects stay");
    }
}
