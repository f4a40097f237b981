//! The public error type.
//!
//! One [`Error`] with a small [`ErrorKind`] that callers (the broker, the CLI)
//! branch on, and a message a user can act on. Module error enums stay
//! internal and convert into it.

use std::fmt;

/// What kind of failure an [`Error`] is; the broker maps it to a Kafka
/// error code, the CLI to an exit message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or a setting is wrong (bad config value,
    /// bad topic name, an invalid record batch from a client).
    Invalid,
    /// Bytes from a client failed their checksum (a client may retry).
    Corrupt,
    /// The topic or partition does not exist.
    NotFound,
    /// The topic already exists.
    AlreadyExists,
    /// The offset is outside the log's range.
    OutOfRange,
    /// A batch or request exceeds a size limit.
    TooLarge,
    /// An idempotent producer's batch does not follow its last sequence
    /// number (a gap: an earlier batch was lost).
    OutOfOrderSequence,
    /// An idempotent producer's epoch is older than one already seen
    /// (a newer instance of the producer took over).
    InvalidProducerEpoch,
    /// A batch's timestamp is outside the topic's bounds
    /// (`message.timestamp.before.max.ms` / `after.max.ms`).
    InvalidTimestamp,
    /// Stored data is corrupt, unreadable or missing (a bad file on disk,
    /// a remote object failing its checksum or gone from the bucket).
    Data,
    /// A dependency (disk, object store) is failing; retrying may help.
    Unavailable,
    /// A broker policy refuses it (the partition budget).
    PolicyViolation,
    /// The engine is shut down.
    Closed,
    /// A bug: an invariant did not hold.
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::OutOfRange => "out of range",
            ErrorKind::TooLarge => "too large",
            ErrorKind::OutOfOrderSequence => "out of order sequence",
            ErrorKind::InvalidProducerEpoch => "invalid producer epoch",
            ErrorKind::InvalidTimestamp => "invalid timestamp",
            ErrorKind::Data => "data error",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::PolicyViolation => "policy violation",
            ErrorKind::Closed => "closed",
            ErrorKind::Internal => "internal error",
        };
        f.write_str(s)
    }
}

/// The engine's public error: a kind, a message naming what failed, and the
/// underlying cause when there is one.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// Indexes (within their batch) of the records that made a produced
    /// batch invalid, for Produce's `record_errors` (v8+).
    record_errors: Vec<i32>,
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
            record_errors: Vec::new(),
        }
    }

    /// Name the records (indexes within their batch) that made a produced
    /// batch invalid.
    pub fn with_record_errors(mut self, records: Vec<i32>) -> Self {
        self.record_errors = records;
        self
    }

    /// The records [`Error::with_record_errors`] named (empty for most
    /// errors).
    pub fn record_errors(&self) -> &[i32] {
        &self.record_errors
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// An `Invalid` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub(crate) fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Whether an operating-system I/O error caused this one (a failed
    /// read, write or fsync), as opposed to a refusal by the engine's logic.
    pub fn is_io(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = cause {
            if e.is::<std::io::Error>() {
                return true;
            }
            cause = e.source();
        }
        false
    }

    /// An I/O failure on `path` while doing `what` (for tools built on the
    /// library).
    pub fn io_public(what: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        Self::io(what, path, err)
    }

    /// An I/O failure on `path` while doing `what`.
    pub(crate) fn io(what: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        Self::new(
            ErrorKind::Unavailable,
            format!("{what} {}: {err}", path.display()),
        )
        .with_source(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_told_apart_from_refusals() {
        let io = Error::io(
            "cannot write",
            std::path::Path::new("/x"),
            std::io::Error::other("disk on fire"),
        );
        assert!(io.is_io());
        assert!(!Error::new(ErrorKind::Unavailable, "busy").is_io());
        let wrapped = Error::internal("outer").with_source(io);
        assert!(wrapped.is_io(), "found through the source chain");
    }
}
