//! The ordered set of a partition's segments, by base offset.

use std::collections::BTreeMap;

use super::segment::LogSegment;

/// Segments by base offset. Never empty once a log is open: the last one is
/// the active segment.
#[derive(Debug, Default)]
pub struct LogSegments {
    by_base: BTreeMap<i64, LogSegment>,
}

impl LogSegments {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, segment: LogSegment) {
        self.by_base.insert(segment.base_offset(), segment);
    }

    pub fn remove(&mut self, base_offset: i64) -> Option<LogSegment> {
        self.by_base.remove(&base_offset)
    }

    pub fn len(&self) -> usize {
        self.by_base.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_base.is_empty()
    }

    pub fn first(&self) -> Option<&LogSegment> {
        self.by_base.values().next()
    }

    pub fn last(&self) -> Option<&LogSegment> {
        self.by_base.values().next_back()
    }

    pub fn get_mut(&mut self, base_offset: i64) -> Option<&mut LogSegment> {
        self.by_base.get_mut(&base_offset)
    }

    pub fn last_mut(&mut self) -> Option<&mut LogSegment> {
        self.by_base.values_mut().next_back()
    }

    /// The segment that would hold `offset`: the last with base ≤ `offset`.
    pub fn floor(&self, offset: i64) -> Option<&LogSegment> {
        self.by_base.range(..=offset).next_back().map(|(_, s)| s)
    }

    /// Segments from the one holding `offset` on.
    pub fn starting_at(&self, offset: i64) -> impl Iterator<Item = &LogSegment> {
        let start = self
            .floor(offset)
            .map(|s| s.base_offset())
            .unwrap_or(i64::MIN);
        self.by_base.range(start..).map(|(_, s)| s)
    }

    pub fn iter(&self) -> impl Iterator<Item = &LogSegment> {
        self.by_base.values()
    }

    /// Base offsets in order.
    pub fn base_offsets(&self) -> Vec<i64> {
        self.by_base.keys().copied().collect()
    }
}
