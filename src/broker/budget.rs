//! The broker-wide budget of request bytes (Kafka's
//! `queued.max.request.bytes`, its `MemoryPool`).
//!
//! Owns: how many request bytes all connections together may hold at once
//! — frame bodies being read, read ahead or handled — and the
//! `tierlog_request_bytes_buffered` and `tierlog_request_budget_waiters`
//! gauges. A connection reserves a frame's size here after reading its
//! 4-byte prefix and before allocating or reading its body; when the budget
//! is spent it waits (and so stops reading its socket: TCP pushes back on
//! the client), it never allocates ahead. Must never let one frame hold
//! more than it reserved, nor release bytes a frame still holds.
//!
//! A quarter of the budget is only for *small* frames (at most
//! [`SMALL_FRAME`] bytes): large frames draw on the other three quarters
//! first, so connections stuck in the middle of large frames (slow or
//! hostile clients) cannot starve heartbeats, metadata and small produces.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Frames up to this size may use the reserved quarter of the budget.
pub const SMALL_FRAME: usize = 64 << 10;

/// The budget, shared by every connection of one broker.
#[derive(Debug)]
pub struct RequestBudget {
    /// Every frame's bytes.
    all: Arc<Semaphore>,
    /// Large frames' bytes (three quarters of `all`).
    large: Arc<Semaphore>,
    large_capacity: usize,
    metrics: Arc<Metrics>,
}

/// Bytes of one frame held in the budget; given back when dropped (after
/// the frame's response is written).
#[derive(Debug)]
pub struct Reservation {
    _all: OwnedSemaphorePermit,
    _large: Option<OwnedSemaphorePermit>,
    /// Bytes counted in `request_bytes_buffered` (the body's allocation).
    buffered: u64,
    metrics: Arc<Metrics>,
}

impl RequestBudget {
    /// A budget of `bytes` (at least 4 × [`SMALL_FRAME`], at most
    /// `i32::MAX`; the config validates that three quarters of it hold the
    /// largest request).
    pub fn new(bytes: usize, metrics: Arc<Metrics>) -> Self {
        let bytes = bytes.clamp(4 * SMALL_FRAME, i32::MAX as usize);
        let large_capacity = bytes - bytes / 4;
        RequestBudget {
            all: Arc::new(Semaphore::new(bytes)),
            large: Arc::new(Semaphore::new(large_capacity)),
            large_capacity,
            metrics,
        }
    }

    /// Wait until `size` bytes of a frame body may be held, and hold them.
    /// A frame larger than the large share (only possible when the config
    /// was not validated) takes all of it. `None` if the budget is closed.
    pub async fn reserve(&self, size: usize) -> Option<Reservation> {
        let waiting = Waiting::new(&self.metrics);
        let share = size.clamp(1, self.large_capacity);
        // Large first, then the total: nobody waits for `large` while
        // holding `all`, so the two never deadlock.
        let large = if size > SMALL_FRAME {
            Some(
                Arc::clone(&self.large)
                    .acquire_many_owned(share as u32)
                    .await
                    .ok()?,
            )
        } else {
            None
        };
        let all = Arc::clone(&self.all)
            .acquire_many_owned(share as u32)
            .await
            .ok()?;
        drop(waiting);
        Some(Reservation {
            _all: all,
            _large: large,
            buffered: 0,
            metrics: Arc::clone(&self.metrics),
        })
    }

    /// Bytes free now (for tests).
    #[cfg(test)]
    fn available(&self) -> usize {
        self.all.available_permits()
    }
}

impl Reservation {
    /// Count `bytes` allocated for the frame body this reservation covers.
    pub fn buffering(&mut self, bytes: usize) {
        self.buffered += bytes as u64;
        self.metrics.request_bytes_buffered.add(bytes as u64);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.metrics.request_bytes_buffered.sub(self.buffered);
    }
}

/// Counts one waiter in `request_budget_waiters` while alive (a cancelled
/// wait included).
struct Waiting<'a>(&'a Metrics);

impl<'a> Waiting<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.request_budget_waiters.add(1);
        Waiting(metrics)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.request_budget_waiters.sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_or_never<F: std::future::Future>(f: F) -> Option<F::Output> {
        futures::FutureExt::now_or_never(f)
    }

    #[test]
    fn large_frames_leave_a_quarter_for_small_ones() {
        let metrics = Arc::new(Metrics::default());
        let budget = RequestBudget::new(1 << 20, Arc::clone(&metrics));
        // Three large frames of 256 KiB fill the large share (768 KiB).
        let held: Vec<_> = (0..3)
            .map(|_| now_or_never(budget.reserve(256 << 10)).flatten().unwrap())
            .collect();
        assert!(
            now_or_never(budget.reserve(SMALL_FRAME + 1)).is_none(),
            "a fourth large frame waits"
        );
        assert_eq!(
            metrics.request_budget_waiters.get(),
            0,
            "a dropped wait is not counted"
        );
        // Small frames still get the reserved quarter, and no more.
        let small: Vec<_> = (0..4)
            .map(|_| now_or_never(budget.reserve(SMALL_FRAME)).flatten().unwrap())
            .collect();
        assert_eq!(budget.available(), 0);
        assert!(
            now_or_never(budget.reserve(1)).is_none(),
            "then small ones wait too"
        );
        drop(small);
        drop(held);
        assert_eq!(budget.available(), 1 << 20, "everything comes back");
    }

    #[test]
    fn buffered_bytes_are_counted_until_the_reservation_goes() {
        let metrics = Arc::new(Metrics::default());
        let budget = RequestBudget::new(1 << 20, Arc::clone(&metrics));
        let mut r = now_or_never(budget.reserve(1000)).flatten().unwrap();
        r.buffering(1000);
        assert_eq!(metrics.request_bytes_buffered.get(), 1000);
        drop(r);
        assert_eq!(metrics.request_bytes_buffered.get(), 0);
        assert_eq!(metrics.request_bytes_buffered.max(), 1000);
    }
}
