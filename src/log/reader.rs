//! The read path over a log's segments: by offset (for fetch) and by
//! timestamp (for ListOffsets). `LocalLog` calls these under its lock;
//! [`plan`] is the part of a read by offset that must run under it, so the
//! bytes can be read after it (a fetch never holds up appends while it
//! copies them).

use crate::error::{Error, ErrorKind, Result};
use crate::format::batch::TimestampType;
use crate::format::records::decode_records;

use super::segment::SegmentRead;
use super::segments::LogSegments;
use super::time_index::TimestampAndOffset;

/// Whole batches starting with the one holding `offset`, at most
/// `max_bytes` of them from one segment, but always the first batch
/// whole when `min_one` (Kafka's KIP-74 rule, so a consumer never sticks
/// on a large batch). Empty at the log end; `OutOfRange` outside
/// `[log start, log end]`.
pub(super) fn read(
    name: &str,
    segments: &LogSegments,
    (start, end): (i64, i64),
    offset: i64,
    max_bytes: usize,
    min_one: bool,
) -> Result<Vec<u8>> {
    check_range(name, (start, end), offset)?;
    if offset == end {
        return Ok(Vec::new());
    }
    // Normally one segment's batches. A cleaned segment may hold only
    // batches emptied by the log cleaner (bare headers): then the next
    // segment's batches follow in the same answer, so a consumer always
    // gets a record when there is one (librdkafka takes an answer without
    // any for a too-small fetch size, and gives up after ten).
    let mut out = Vec::new();
    for segment in segments.starting_at(offset) {
        // Until a record is in the answer, the first batch may come whole
        // (KIP-74) as the caller allowed: `out` holds only emptied batches.
        let from = if out.is_empty() {
            offset
        } else {
            segment.base_offset()
        };
        let Some(bytes) = segment.read(from, max_bytes - out.len(), min_one)? else {
            continue;
        };
        let had_room = !bytes.is_empty();
        out.extend_from_slice(&bytes);
        if !had_room || holds_records(&out) || out.len() >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// `OutOfRange` unless `offset` is within `[log start, log end]`.
fn check_range(name: &str, (start, end): (i64, i64), offset: i64) -> Result<()> {
    if offset < start || offset > end {
        return Err(Error::new(
            ErrorKind::OutOfRange,
            format!(
                "offset {offset} is out of range for {name}: log start offset {start}, log end offset {end}"
            ),
        ));
    }
    Ok(())
}

/// A read by offset planned under the log's lock ([`plan`]).
pub(crate) struct ReadPlan {
    /// The first segment's bytes to read, `None` at the log end.
    pub(crate) read: Option<SegmentRead>,
    /// The base offset of the segment after that one: where a read that
    /// found only batches the cleaner emptied goes on (as [`read`] does).
    pub(crate) following: Option<i64>,
}

/// The part of [`read`] that needs the log's lock: the range check, then
/// the first segment holding `offset` or a batch after it, its position
/// found and its read planned.
pub(super) fn plan(
    name: &str,
    segments: &LogSegments,
    (start, end): (i64, i64),
    offset: i64,
    max_bytes: usize,
    min_one: bool,
) -> Result<ReadPlan> {
    check_range(name, (start, end), offset)?;
    let mut plan = ReadPlan {
        read: None,
        following: None,
    };
    if offset == end {
        return Ok(plan);
    }
    let mut candidates = segments.starting_at(offset).peekable();
    while let Some(segment) = candidates.next() {
        if let Some(read) = segment.plan_read(offset, max_bytes, min_one)? {
            plan.read = Some(read);
            plan.following = candidates.peek().map(|s| s.base_offset());
            break;
        }
    }
    Ok(plan)
}

/// Whether `batches` (whole batches) hold a record, or a control batch.
pub(crate) fn holds_records(batches: &[u8]) -> bool {
    crate::format::batch::Batches::new(batches)
        .filter_map(|b| b.ok())
        .any(|(_, h, _)| h.record_count > 0 || h.is_control())
}

/// The largest timestamp in the log and its offset (Kafka's
/// `MAX_TIMESTAMP` lookup), `None` when the log is empty. The offset is
/// the first record holding it (Kafka since KAFKA-16310, and the remote
/// tier's answer), not its batch's last offset.
pub(super) fn max_timestamp_offset(segments: &LogSegments) -> Result<Option<TimestampAndOffset>> {
    let max = segments
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.max_timestamp())
        .max();
    match max {
        // No record is newer: the first at or after it holds it.
        Some(ts) => offset_for_timestamp(segments, ts),
        None => Ok(None),
    }
}

/// The first record with timestamp ≥ `timestamp`: its timestamp and
/// offset, or `None` when every record is older. Batches without records
/// (emptied by the log cleaner; they keep their max timestamp) and control
/// batches are passed over.
pub(super) fn offset_for_timestamp(
    segments: &LogSegments,
    timestamp: i64,
) -> Result<Option<TimestampAndOffset>> {
    for segment in segments.iter().filter(|s| s.max_timestamp() >= timestamp) {
        let mut found = None;
        segment.scan_from_timestamp(timestamp, |pos, header, bytes| {
            if header.max_timestamp < timestamp || header.record_count <= 0 || header.is_control() {
                return Ok(true);
            }
            if header.timestamp_type() == TimestampType::LogAppendTime {
                found = Some(TimestampAndOffset {
                    timestamp: header.max_timestamp,
                    offset: header.base_offset,
                });
                return Ok(false);
            }
            let records = decode_records(bytes).map_err(|e| {
                Error::data(format!(
                    "cannot decode batch at position {pos} of {}: {e}",
                    segment.log_path().display()
                ))
            })?;
            found = records
                .iter()
                .find(|r| r.timestamp >= timestamp)
                .map(|r| TimestampAndOffset {
                    timestamp: r.timestamp,
                    offset: r.offset,
                });
            Ok(found.is_none())
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::LocalLog;

    const T0: i64 = 1_700_000_000_000;

    fn batch(n: usize) -> Vec<u8> {
        let mut b = crate::format::BatchBuilder::new();
        for i in 0..n {
            b.push(crate::format::Record::new(
                None,
                Some(format!("value-{i}").into_bytes()),
                T0,
            ));
        }
        b.build().unwrap()
    }

    fn open(dir: &std::path::Path) -> LocalLog {
        let clock = crate::clock::ManualClock::new(T0);
        LocalLog::open(
            dir.to_path_buf(),
            "t-0".into(),
            crate::config::TopicConfig::default(),
            std::sync::Arc::new(clock),
            false,
        )
        .unwrap()
        .0
    }

    /// A read planned under the lock returns what the log held then:
    /// neither appends after it nor the deletion of its segment (retention
    /// running once the lock is free) change or fail it.
    #[test]
    fn a_planned_read_returns_the_log_as_it_was_planned() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        for _ in 0..3 {
            log.append(&mut batch(10)).unwrap();
        }
        let expected = log.read(0, 1 << 20, true).unwrap();
        let plan = log.plan_read(0, 1 << 20, true).unwrap();
        assert_eq!(plan.following, None, "one segment");
        // Appends to the same segment after the plan.
        log.append(&mut batch(10)).unwrap();
        let after_appends = log.plan_read(0, 1 << 20, true).unwrap();
        assert_eq!(plan.read.unwrap().read().unwrap(), expected);
        // Rolled, then the planned segment deleted before the read.
        log.roll(T0).unwrap();
        log.append(&mut batch(10)).unwrap();
        let deleted = log.delete_segments_below(40).unwrap();
        assert_eq!(deleted.len(), 1);
        let bytes = after_appends.read.unwrap().read().unwrap();
        assert_eq!(bytes.len(), expected.len() * 4 / 3);
        assert_eq!(&bytes[..expected.len()], &expected[..]);
        // At the log end: nothing to read.
        let at_end = log.plan_read(50, 1 << 20, true).unwrap();
        assert!(at_end.read.is_none());
        assert!(log.plan_read(51, 1 << 20, true).is_err());
    }
}
