//! What the broker writes to the log about its clients.
//!
//! Owns: [`escape`], the one way a client-supplied string (topic name,
//! group id, member id, client id, a decode error quoting the request)
//! enters a log line, and [`WarnLimiter`], the broker-wide rate limit of
//! per-connection warnings. Must never write a client's bytes raw (control
//! characters would make the log binary or forge lines) and never let a
//! flood of bad connections become a flood of log lines.

use std::fmt;
use std::sync::Mutex;

use crate::clock::SharedClock;
use crate::sync::lock;

pub use crate::text::{escape, Escaped};

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Warnings allowed in a burst.
pub const WARN_BURST: u32 = 5;
/// Warnings allowed per second after a burst.
pub const WARN_PER_SECOND: u32 = 5;

/// A token bucket for per-connection warnings (a malformed frame, a
/// connection closed on an error, an API tierlog lacks): at most
/// [`WARN_BURST`] at once and [`WARN_PER_SECOND`] a second broker-wide.
/// What it refuses is counted, and the next warning it lets through says
/// how many went unlogged.
#[derive(Debug)]
pub struct WarnLimiter {
    clock: SharedClock,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens in thousandths (one token refills in 1000 / rate ms).
    millitokens: u64,
    last_ms: i64,
    suppressed: u64,
}

/// The limiter's answer for one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log it; `suppressed` warnings were dropped since the last one
    /// logged (say so in the line when non-zero).
    Log { suppressed: u64 },
    /// Drop it (counted).
    Suppress,
}

impl WarnLimiter {
    pub fn new(clock: SharedClock) -> Self {
        let now = clock.now_ms();
        WarnLimiter {
            clock,
            state: Mutex::new(Bucket {
                millitokens: u64::from(WARN_BURST) * 1000,
                last_ms: now,
                suppressed: 0,
            }),
        }
    }

    /// May a warning be logged now?
    pub fn admit(&self) -> Admit {
        let now = self.clock.now_ms();
        let mut b = lock(&self.state);
        // A clock moved backwards refills nothing.
        let elapsed = u64::try_from(now.saturating_sub(b.last_ms)).unwrap_or(0);
        if elapsed > 0 {
            b.last_ms = now;
            b.millitokens = b
                .millitokens
                .saturating_add(elapsed.saturating_mul(u64::from(WARN_PER_SECOND)))
                .min(u64::from(WARN_BURST) * 1000);
        }
        if b.millitokens >= 1000 {
            b.millitokens -= 1000;
            Admit::Log {
                suppressed: std::mem::take(&mut b.suppressed),
            }
        } else {
            b.suppressed += 1;
            Admit::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::text::MAX_LOGGED_CHARS;

    #[test]
    fn escape_makes_control_characters_visible_and_cuts_long_strings() {
        let s = "grp\n2024-01-01 INFO forged\u{1b}[31m\0\"q\"\\";
        let out = escape(s).to_string();
        assert_eq!(out, r#"grp\n2024-01-01 INFO forged\u{1b}[31m\0\"q\"\\"#);
        assert!(out.chars().all(|c| !c.is_control()));
        assert_eq!(escape("orders-eu").to_string(), "orders-eu");
        assert_eq!(format!("{:?}", escape("a\tb")), r#""a\tb""#);
        let long = "x".repeat(MAX_LOGGED_CHARS + 50);
        assert_eq!(
            escape(&long).to_string(),
            format!("{}…(+50 bytes)", "x".repeat(MAX_LOGGED_CHARS))
        );
        // Multi-byte characters are cut at a character, counted in bytes.
        let wide = "é".repeat(MAX_LOGGED_CHARS + 1);
        assert!(escape(&wide).to_string().ends_with("…(+2 bytes)"));
    }

    #[test]
    fn the_limiter_lets_a_burst_through_then_suppresses_and_summarises() {
        let clock = ManualClock::new(1_000_000);
        let limiter = WarnLimiter::new(Arc::new(clock.clone()));
        for _ in 0..WARN_BURST {
            assert_eq!(limiter.admit(), Admit::Log { suppressed: 0 });
        }
        for _ in 0..1000 {
            assert_eq!(limiter.admit(), Admit::Suppress);
        }
        // Not a whole token yet.
        clock.advance(1000 / i64::from(WARN_PER_SECOND) - 1);
        assert_eq!(limiter.admit(), Admit::Suppress);
        clock.advance(1);
        assert_eq!(limiter.admit(), Admit::Log { suppressed: 1001 });
        assert_eq!(limiter.admit(), Admit::Suppress);
        // A long quiet spell refills the burst, not more.
        clock.advance(3_600_000);
        for i in 0..WARN_BURST {
            let suppressed = if i == 0 { 1 } else { 0 };
            assert_eq!(limiter.admit(), Admit::Log { suppressed });
        }
        assert_eq!(limiter.admit(), Admit::Suppress);
        // A clock set back refills nothing and does not panic.
        clock.advance(-10_000);
        assert_eq!(limiter.admit(), Admit::Suppress);
    }
}
