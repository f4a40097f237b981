//! The injected clock. The engine asks a [`Clock`] for wall time and never
//! calls `SystemTime::now` itself, so tests move time instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place allowed to read the system time
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that only moves when told to; for tests and simulations.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock stopped at `start_ms`.
    pub fn new(start_ms: i64) -> Self {
        ManualClock {
            now: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    /// Move the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Set the clock to `ms`.
    pub fn set(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// Monotonic timers for request deadlines and backoffs (a Fetch's
/// `max_wait_ms`, an accept retry, injected store latency): they bound how
/// long a caller waits, not when engine work is due, so they are not
/// [`Clock`] time. The one place outside the task executor allowed tokio's
/// timers (clippy.toml).
#[allow(clippy::disallowed_methods)]
pub async fn monotonic_sleep(duration: std::time::Duration) {
    tokio::time::sleep(duration).await
}

/// Now on the monotonic timer of [`monotonic_sleep_until`].
#[allow(clippy::disallowed_methods)]
pub fn monotonic_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Sleep until `deadline` (from [`monotonic_now`]).
#[allow(clippy::disallowed_methods)]
pub async fn monotonic_sleep_until(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await
}
