//! The log start offset DeleteRecords sets (Kafka's
//! `log-start-offset-checkpoint`, here one file per partition,
//! `<partition>/log-start-offset`): records below it are gone for readers
//! at once, and the segments wholly below it are deleted by retention,
//! locally and in the bucket. Written atomically (write, fsync, rename,
//! fsync the directory) before DeleteRecords answers, so an acknowledged
//! deletion survives a crash.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

use super::local_log::sync_dir;
use super::paths::LOG_START_OFFSET_FILE;

/// The floor recorded in `dir` (0 when none was ever set). A file that
/// does not parse is an error naming it: ignoring it would bring records
/// back that a client deleted.
pub(super) fn read(dir: &Path) -> Result<i64> {
    let path = dir.join(LOG_START_OFFSET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<i64>().map_err(|_| {
            Error::new(
                crate::error::ErrorKind::Data,
                format!(
                    "{}: '{}' is not an offset (the log start offset DeleteRecords set)",
                    path.display(),
                    text.trim()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io("cannot read the log start offset", &path, e)),
    }
}

/// Record `offset` as the floor of the log in `dir`, durably.
pub(crate) fn write(dir: &Path, offset: i64) -> Result<()> {
    let path = dir.join(LOG_START_OFFSET_FILE);
    let tmp = dir.join(format!("{LOG_START_OFFSET_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{offset}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir).map_err(|e| std::io::Error::other(e.to_string()))
    };
    write().map_err(|e| Error::io("cannot write the log start offset", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_round_trips_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), 0);
        write(dir.path(), 42).unwrap();
        assert_eq!(read(dir.path()).unwrap(), 42);
        std::fs::write(dir.path().join(LOG_START_OFFSET_FILE), "4x\n").unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("log-start-offset") && e.contains("4x"), "{e}");
    }
}
