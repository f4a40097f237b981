//! Sans-io formats: Kafka RecordBatch v2 headers, offset assignment, index
//! entries, record encoding for the CLI and tests.
//!
//! Owns: the byte layout of everything tierlog stores. Must never do I/O,
//! read the clock, or allocate per record on the append path.

pub mod batch;
pub mod compression;
pub mod index;
pub mod manifest;
pub mod producer_snapshot;
pub mod records;

pub use batch::{BatchHeader, Batches, Compression, FormatError, TimestampType};
pub use records::{decode_records, BatchBuilder, Record};
