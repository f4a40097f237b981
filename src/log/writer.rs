//! The append path's rules and the flush policy (`LocalLog::append` in
//! `local_log.rs` applies them).
//!
//! An append validates every batch (sans-io, `format/`), assigns offsets by
//! patching baseOffset in place, rolls the active segment when
//! `segment.bytes`, `segment.ms` or offset/position limits say so, and
//! writes the whole request with one positioned `write(2)`. The page cache
//! does the buffering. fsync happens on roll, on clean shutdown, and when the
//! topic's `flush.messages` / `flush.ms` policy says so. What an append
//! refuses, and why, is `append_error.rs`.

use crate::config::TopicConfig;

/// What the flush policy has to know between appends.
#[derive(Debug, Clone, Copy)]
pub struct FlushState {
    /// Records appended since the last fsync.
    pub unflushed_messages: i64,
    /// When the last fsync happened.
    pub last_flush_ms: i64,
}

impl FlushState {
    pub fn new(now_ms: i64) -> Self {
        FlushState {
            unflushed_messages: 0,
            last_flush_ms: now_ms,
        }
    }

    /// Whether `flush.messages` or `flush.ms` call for an fsync now.
    pub fn due(&self, config: &TopicConfig, now_ms: i64) -> bool {
        self.unflushed_messages > 0
            && (self.unflushed_messages >= config.flush_messages
                || now_ms.saturating_sub(self.last_flush_ms) >= config.flush_ms)
    }
}
