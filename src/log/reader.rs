//! The read path over a log's segments: by offset (for fetch) and by
//! timestamp (for ListOffsets). `LocalLog` calls these under its lock;
//! [`plan`] is the part of a read by offset that must run under it, so the
//! bytes can be read after it (a fetch never holds up appends while it
//! copies them).

use crate::error::{Error, ErrorKind, Result};
use crate::format::batch::TimestampType;
use crate::format::records::decode_records;

use super::segment::{SegmentRead, TimestampScan};
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
    match max_timestamp(segments) {
        // No record is newer: the first at or after it holds it.
        Some(ts) => offset_for_timestamp(segments, ts),
        None => Ok(None),
    }
}

/// The largest timestamp of the log's batches, `None` when it is empty
/// (segment metadata only: no I/O).
pub(super) fn max_timestamp(segments: &LogSegments) -> Option<i64> {
    segments
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.max_timestamp())
        .max()
}

/// The first record with timestamp ≥ `timestamp`: its timestamp and
/// offset, or `None` when every record is older. Batches without records
/// (emptied by the log cleaner; they keep their max timestamp) and control
/// batches are passed over. (All of it under the caller's borrow of the
/// segments; [`plan_timestamp_step`] and [`TimestampStep::find`] split it
/// so the scan runs outside the log's lock.)
pub(super) fn offset_for_timestamp(
    segments: &LogSegments,
    timestamp: i64,
) -> Result<Option<TimestampAndOffset>> {
    let mut after = None;
    while let Some(step) = plan_timestamp_step(segments, timestamp, after)? {
        if let Some(found) = step.find(timestamp)? {
            return Ok(Some(found));
        }
        after = Some(step.base_offset);
    }
    Ok(None)
}

/// One segment of a timestamp lookup, planned under the log's lock
/// ([`plan_timestamp_step`]) and searched after it ([`TimestampStep::find`]):
/// the decompression of its batches never holds up appends.
pub(crate) struct TimestampStep {
    /// The planned segment's base offset: the next step starts after it.
    pub(crate) base_offset: i64,
    scan: TimestampScan,
}

/// The first segment after the one based at `after` (from the first when
/// `None`) that may hold a record with timestamp ≥ `timestamp`, its scan
/// planned; `None` when no segment may.
pub(super) fn plan_timestamp_step(
    segments: &LogSegments,
    timestamp: i64,
    after: Option<i64>,
) -> Result<Option<TimestampStep>> {
    let Some(segment) = segments
        .iter()
        .filter(|s| after.is_none_or(|a| s.base_offset() > a))
        .find(|s| s.max_timestamp() >= timestamp)
    else {
        return Ok(None);
    };
    Ok(Some(TimestampStep {
        base_offset: segment.base_offset(),
        scan: segment.plan_timestamp_scan(timestamp)?,
    }))
}

impl TimestampStep {
    /// The first record with timestamp ≥ `timestamp` in the planned
    /// segment, if it has one.
    pub(crate) fn find(&self, timestamp: i64) -> Result<Option<TimestampAndOffset>> {
        let mut found = None;
        self.scan.scan(|pos, header, bytes| {
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
                    self.scan.log_path().display()
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
        Ok(found)
    }
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

    /// A read planned as a file region holds exactly the whole batches a
    /// copying read returns, for any limit (the header walk starts at an
    /// offset index entry near the end; entries every 64 bytes here).
    #[test]
    fn a_file_region_holds_what_a_copying_read_returns() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(T0);
        let config = crate::config::TopicConfig {
            index_interval_bytes: 64,
            ..Default::default()
        };
        let mut log = LocalLog::open(
            dir.path().to_path_buf(),
            "t-0".into(),
            config,
            std::sync::Arc::new(clock),
            false,
        )
        .unwrap()
        .0;
        let mut offset = 0;
        let mut offsets = Vec::new();
        for n in [1, 3, 1, 20, 2, 1, 1, 9, 4, 1, 30, 1] {
            offsets.push(offset);
            log.append(&mut batch(n)).unwrap();
            offset += n as i64;
        }
        let size = log.read(0, 1 << 20, true).unwrap().len();
        for &from in &offsets {
            for max_bytes in (0..size + 100).step_by(37) {
                for min_one in [true, false] {
                    let copied = log.read(from, max_bytes, min_one).unwrap();
                    let plan = log.plan_read(from, max_bytes, min_one).unwrap();
                    let region = plan.read.unwrap().region().unwrap();
                    match region {
                        None => assert!(copied.is_empty(), "from {from}, max {max_bytes}"),
                        Some(r) => {
                            assert_eq!(r.read().unwrap(), copied, "from {from}, max {max_bytes}");
                            let last = crate::format::batch::Batches::new(&copied)
                                .map(|b| b.unwrap().1.next_offset())
                                .last();
                            assert_eq!(Some(r.next_offset()), last);
                        }
                    }
                }
            }
        }
    }

    /// A timestamp lookup's step planned under the lock searches the
    /// segment as it was then: deleting it (retention, once the lock is
    /// free) before the search changes nothing; the next step starts
    /// after it.
    #[test]
    fn a_planned_timestamp_step_searches_the_segment_as_planned() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        for _ in 0..3 {
            log.append(&mut batch(10)).unwrap();
        }
        log.roll(T0).unwrap();
        log.append(&mut batch(10)).unwrap();
        let step = log.plan_timestamp_step(T0, None).unwrap().unwrap();
        assert_eq!(step.base_offset, 0);
        let next = log.plan_timestamp_step(T0, Some(0)).unwrap().unwrap();
        assert_eq!(next.base_offset, 30);
        assert!(log.plan_timestamp_step(T0, Some(30)).unwrap().is_none());
        assert!(log.plan_timestamp_step(T0 + 1, None).unwrap().is_none());
        assert_eq!(log.delete_segments_below(30).unwrap().len(), 1);
        let found = step.find(T0).unwrap().unwrap();
        assert_eq!((found.timestamp, found.offset), (T0, 0));
        assert_eq!(next.find(T0).unwrap().unwrap().offset, 30);
        assert_eq!(log.offset_for_timestamp(T0).unwrap().unwrap().offset, 30);
    }
}
