//! Client-supplied text on its way into a log line.
//!
//! Owns [`escape`], the one way a string a client chose (topic name, group
//! id, member id, client id) enters a log line, used by the broker and the
//! group coordinator alike. Must never let a client's bytes into the log
//! raw: control characters would make the log binary or forge lines.

use std::fmt;

/// Characters of a client string written to the log; the rest is counted.
pub const MAX_LOGGED_CHARS: usize = 200;

/// A client-supplied string made safe for one log line: control and
/// other non-printable characters, quotes and backslashes escaped as Rust
/// does (`\n`, `\u{1b}`), cut after [`MAX_LOGGED_CHARS`] characters.
pub struct Escaped<'a>(&'a str);

/// See [`Escaped`]: `tracing::warn!(group = %escape(&id), ...)`.
pub fn escape(s: &str) -> Escaped<'_> {
    Escaped(s)
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(MAX_LOGGED_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        if let Some((at, _)) = chars.next() {
            write!(f, "…(+{} bytes)", self.0.len() - at)?;
        }
        Ok(())
    }
}
