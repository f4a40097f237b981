//! Opening a partition's log: trust what is durable, recover the rest.
//!
//! After a clean shutdown (the engine's marker file is present) segments
//! are opened as they are; only the tail after each segment's last index
//! entry is read to find its end. After a crash, segments wholly below the
//! recovery point (fsynced at roll) are opened the same way, and every
//! later segment is recovered: each batch is read and CRC-checked, offsets
//! must be dense, the indexes are rebuilt, and the log is truncated at the
//! first torn or corrupt batch (later segments, now after a gap, are
//! deleted). What was cut is logged. The `.txnindex` of every recovered
//! segment (and of any segment whose file is missing or unreadable) is
//! rebuilt from its markers when the producer state is replayed
//! (`producer_state::rebuild`), before the log is served.
//!
//! A problem in a segment that should be intact (below the recovery point,
//! or before the last segment after a clean shutdown) is not repaired: the
//! open fails with a `Data` error naming the file, position and offset.

use std::path::Path;

use crate::clock::SharedClock;
use crate::config::TopicConfig;
use crate::error::{Error, Result};

use super::paths::{
    parse_segment_file_name, INDEX_EXT, LOG_EXT, RECOVERY_POINT_FILE, TIME_INDEX_EXT, TXN_INDEX_EXT,
};
use super::segment::{Corruption, LogSegment};
use super::segments::LogSegments;

/// What opening a log had to repair.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments that were scanned batch by batch.
    pub segments_recovered: usize,
    /// Bytes cut from torn or corrupt tails.
    pub truncated_bytes: u64,
    /// Whole segments deleted because they followed a cut.
    pub segments_deleted: usize,
    /// Human-readable description of each cut.
    pub cuts: Vec<String>,
}

fn read_recovery_point(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join(RECOVERY_POINT_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn describe_cut(path: &Path, c: &Corruption, cut: u64) -> String {
    format!(
        "{}: cut {cut} bytes at position {} (offset {}): {}",
        path.display(),
        c.position,
        c.expected_offset,
        c.reason
    )
}

/// What the loader found: the segments to serve, the recovery point, and
/// what had to be repaired.
pub(super) struct LoadedSegments {
    pub segments: LogSegments,
    pub recovery_point: i64,
    pub report: RecoveryReport,
}

/// The loader (Kafka's `LogLoader`): from the files in `dir` (created if
/// needed) to a consistent list of segments. `clean_shutdown` says the
/// engine shut down cleanly last time.
pub(super) fn load(
    dir: &Path,
    name: &str,
    config: &TopicConfig,
    clock: &SharedClock,
    clean_shutdown: bool,
) -> Result<LoadedSegments> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io("cannot create partition directory", dir, e))?;
    if let Some(done) = super::cleaner::finish_interrupted_swap(dir)? {
        tracing::warn!(log = %name, "recovery: {done}");
    }
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("cannot list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot list", dir, e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if let Some(base) = parse_segment_file_name(file_name, LOG_EXT) {
            bases.push(base);
        } else if let Some(base) = parse_segment_file_name(file_name, INDEX_EXT)
            .or_else(|| parse_segment_file_name(file_name, TIME_INDEX_EXT))
            .or_else(|| parse_segment_file_name(file_name, TXN_INDEX_EXT))
        {
            index_files.push((base, entry.path()));
        } else if file_name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        } else if file_name.ends_with(super::segment::DELETED_SUFFIX) {
            // A segment deleted before a crash, not unlinked yet.
            tracing::info!(file = %entry.path().display(), "removing a deleted segment's file");
            let _ = std::fs::remove_file(entry.path());
        }
    }
    bases.sort_unstable();
    for (base, path) in index_files {
        if bases.binary_search(&base).is_err() {
            tracing::info!(file = %path.display(), "removing index file without a segment");
            let _ = std::fs::remove_file(path);
        }
    }

    let recovery_point = read_recovery_point(dir);
    let now = clock.now_ms();
    let interval = config.index_interval_bytes;
    let mut segments = LogSegments::new();
    let mut report = RecoveryReport::default();
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let trusted = (clean_shutdown && next_base.is_some())
            || next_base.is_some_and(|nb| nb <= recovery_point);
        if trusted {
            match LogSegment::open(dir, base, interval, now)? {
                Ok(seg) => segments.insert(seg),
                Err((seg, c)) => {
                    return Err(Error::data(format!(
                        "corrupt sealed segment {} at position {} (offset {}): {}",
                        seg.log_path().display(),
                        c.position,
                        c.expected_offset,
                        c.reason
                    )))
                }
            }
            continue;
        }
        // The last segment, or one not known to be fsynced.
        let (mut seg, corruption) = if clean_shutdown {
            match LogSegment::open(dir, base, interval, now)? {
                Ok(seg) => (seg, None),
                Err(_) => {
                    tracing::warn!(segment = base, log = %name, "active segment is damaged despite a clean shutdown; recovering it");
                    LogSegment::open_for_recovery(dir, base, interval, now)?
                }
            }
        } else {
            report.segments_recovered += 1;
            LogSegment::open_for_recovery(dir, base, interval, now)?
        };
        if let Some(c) = &corruption {
            let cut = file_len(seg.log_path()) - c.position;
            let message = describe_cut(seg.log_path(), c, cut);
            tracing::warn!(log = %name, "recovery: {message}");
            seg.truncate_file_at(c.position)?;
            report.truncated_bytes += cut;
            report.cuts.push(message);
        }
        seg.flush_indexes(false)?;
        let seg_end = seg.next_offset();
        let seg_path = seg.log_path().to_path_buf();
        segments.insert(seg);
        // Later segments are kept only if this one still ends where the
        // next begins: bytes cut after its last batch (a failed append)
        // leave no gap, a lost tail (a torn write, a power cut) does.
        match next_base {
            Some(nb) if nb != seg_end => {
                let message = format!(
                    "{} ends at offset {seg_end} but the next segment starts at {nb}: deleting every later segment",
                    seg_path.display()
                );
                tracing::warn!(log = %name, "recovery: {message}");
                report.cuts.push(message);
                for &later in &bases[i + 1..] {
                    report.truncated_bytes +=
                        file_len(&super::paths::segment_file(dir, later, LOG_EXT));
                    report.segments_deleted += 1;
                    for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT] {
                        let p = super::paths::segment_file(dir, later, ext);
                        if let Err(e) = std::fs::remove_file(&p) {
                            if e.kind() != std::io::ErrorKind::NotFound {
                                return Err(Error::io("cannot delete", &p, e));
                            }
                        }
                    }
                }
                super::local_log::sync_dir(dir)?;
                break;
            }
            _ => {}
        }
    }

    // Segments must not overlap. A trusted segment ending before the next
    // one starts was cleaned (its last records removed): its range runs to
    // the next base. (An untrusted one ending early lost its tail: every
    // later segment was deleted above.)
    let bases = segments.base_offsets();
    for w in bases.windows(2) {
        if let Some(seg) = segments.get_mut(w[0]) {
            if seg.next_offset() < w[1] {
                seg.extend_end(w[1]);
            }
        }
    }
    let mut prev: Option<&LogSegment> = None;
    for seg in segments.iter() {
        if let Some(p) = prev {
            if p.next_offset() != seg.base_offset() {
                return Err(Error::data(format!(
                    "segments do not line up: {} ends at offset {} but {} starts at {}",
                    p.log_path().display(),
                    p.next_offset(),
                    seg.log_path().display(),
                    seg.base_offset()
                )));
            }
        }
        prev = Some(seg);
    }

    if segments.is_empty() {
        segments.insert(LogSegment::create(dir, 0, interval, now)?);
        super::local_log::sync_dir(dir)?;
    }
    Ok(LoadedSegments {
        segments,
        recovery_point,
        report,
    })
}
