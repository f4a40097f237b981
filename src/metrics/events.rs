//! The last warnings and errors an operator should see, for the status
//! page: a small bounded ring, fed where those events are logged (upload
//! failures, partitions taken offline, failed cleaning or retention).
//!
//! Owns: the ring and its bound. Must never grow without bound, hold a
//! secret (callers pass messages without URLs or credentials), or replace
//! the log line (the event is recorded beside it).

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::sync::lock;

/// Events kept; older ones drop out.
pub const RECENT_EVENTS: usize = 32;

/// How bad an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLevel {
    Warn,
    Error,
}

impl EventLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            EventLevel::Warn => "WARN",
            EventLevel::Error => "ERROR",
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Engine clock, ms.
    pub at_ms: i64,
    pub level: EventLevel,
    /// What happened, for a person (client-supplied text allowed: the
    /// page escapes it).
    pub message: String,
}

/// The ring of the last [`RECENT_EVENTS`] events.
#[derive(Debug, Default)]
pub struct RecentEvents {
    ring: Mutex<VecDeque<Event>>,
    /// Events recorded since start, dropped ones included.
    total: std::sync::atomic::AtomicU64,
}

impl RecentEvents {
    /// Record an event at `at_ms` (engine clock).
    pub fn record(&self, at_ms: i64, level: EventLevel, message: impl Into<String>) {
        let mut ring = lock(&self.ring);
        if ring.len() == RECENT_EVENTS {
            ring.pop_front();
        }
        ring.push_back(Event {
            at_ms,
            level,
            message: message.into(),
        });
        self.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The kept events, newest first.
    pub fn recent(&self) -> Vec<Event> {
        lock(&self.ring).iter().rev().cloned().collect()
    }

    /// Events recorded since start, including those no longer kept.
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_events_newest_first() {
        let events = RecentEvents::default();
        for i in 0..(RECENT_EVENTS as i64 + 5) {
            events.record(i, EventLevel::Warn, format!("event {i}"));
        }
        let kept = events.recent();
        assert_eq!(kept.len(), RECENT_EVENTS);
        assert_eq!(kept[0].message, format!("event {}", RECENT_EVENTS + 4));
        assert_eq!(kept.last().unwrap().message, "event 5");
        assert_eq!(events.total(), RECENT_EVENTS as u64 + 5);
    }
}
