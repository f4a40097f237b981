//! `partition.metadata`: which topic a partition directory belongs to.
//!
//! A directory is named `<topic>-<partition>`, but a name can be reused: a
//! topic deleted and created again, or a crash between a catalog change and
//! the file operations that follow it. The topic id in this file is what
//! proves whose data a directory holds, so that no directory is ever
//! removed, or read as another topic's, by its name alone.
//!
//! ## Format
//!
//! Kafka's file name and layout (Kafka writes the id in its base64 form;
//! tierlog writes the UUID's text form), two `key: value` lines:
//!
//! ```text
//! version: 0
//! topic_id: 0b3c7f9e-5a43-4c1a-9a43-2f6de1d6c8a1
//! ```
//!
//! Written to a temporary file, fsynced, renamed into place, and the
//! directory fsynced: it is either absent or whole.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

use super::paths::partition_metadata_file;

const VERSION: u32 = 0;

/// Write `dir/partition.metadata` naming `topic_id`, durably.
pub fn write(dir: &Path, topic_id: uuid::Uuid) -> Result<()> {
    let path = partition_metadata_file(dir);
    let tmp = path.with_extension("metadata.tmp");
    let text = format!("version: {VERSION}\ntopic_id: {}\n", topic_id.hyphenated());
    std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io("cannot write", &path, e))?;
    super::local_log::sync_dir(dir)
}

/// The topic id in `dir/partition.metadata`: `None` when the file is
/// absent (a directory made before tierlog wrote it, or a crash before it
/// was written), an error naming the file when it cannot be read or parsed.
pub fn read(dir: &Path) -> Result<Option<uuid::Uuid>> {
    let path = partition_metadata_file(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read", &path, e)),
    };
    parse(&text)
        .map(Some)
        .map_err(|why| Error::data(format!("{}: {why}", path.display())))
}

fn parse(text: &str) -> std::result::Result<uuid::Uuid, String> {
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line '{line}' is not 'key: value'"))?;
        match key.trim() {
            "version" => version = Some(value.trim().to_string()),
            "topic_id" => topic_id = Some(value.trim().to_string()),
            other => return Err(format!("unknown key '{other}'")),
        }
    }
    match version.as_deref() {
        Some("0") => {}
        Some(v) => return Err(format!("unsupported version {v} (this tierlog reads 0)")),
        None => return Err("no version line".into()),
    }
    let id = topic_id.ok_or("no topic_id line")?;
    uuid::Uuid::parse_str(&id).map_err(|e| format!("bad topic_id '{id}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_absent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let id = uuid::Uuid::new_v4();
        write(dir.path(), id).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(id));
        let text = std::fs::read_to_string(partition_metadata_file(dir.path())).unwrap();
        assert_eq!(text, format!("version: 0\ntopic_id: {id}\n"));
    }

    #[test]
    fn damaged_files_are_errors_naming_the_problem() {
        for (text, why) in [
            ("", "no version line"),
            ("version: 1\ntopic_id: x\n", "unsupported version 1"),
            ("version: 0\n", "no topic_id line"),
            ("version: 0\ntopic_id: nope\n", "bad topic_id 'nope'"),
            ("garbage", "is not 'key: value'"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
