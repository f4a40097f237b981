//! Sans-io formats: Kafka RecordBatch v2 headers, offset assignment, index
//! entries, record encoding for the CLI and tests.
//!
//! Owns: the byte layout of everything tierlog stores. Must never do I/O,
//! read the clock, or allocate per record on the append path.
//!
//! Layers, lowest first (each file imports only from those before it):
//! `error` ← `compression` ← `batch` (the header) ← `records` ←
//! `validator` (Kafka's `LogValidator`); `index`, `manifest` and
//! `producer_snapshot` stand apart.

pub mod batch;
pub mod compression;
pub mod error;
pub mod index;
pub mod manifest;
pub mod producer_snapshot;
pub mod records;
pub mod validator;

pub use batch::{BatchHeader, Batches, Compression, FormatError, TimestampType};
pub use records::{decode_records, BatchBuilder, Record};
