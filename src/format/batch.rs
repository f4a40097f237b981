//! Kafka RecordBatch v2 ("magic 2") header parsing, validation and the
//! broker-side patches (offset assignment, log-append time).
//!
//! ## Format
//!
//! A record batch, big-endian, as Kafka defines it (KIP-98):
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset            assigned by the broker
//!      8     4  batchLength           bytes after this field
//!     12     4  partitionLeaderEpoch  assigned by the broker
//!     16     1  magic                 must be 2
//!     17     4  crc                   CRC32C of bytes 21..end
//!     21     2  attributes            bits 0-2 compression, 3 timestamp type,
//!                                     4 transactional, 5 control
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordCount
//!     61     …  records (compressed as a whole when compression != 0)
//! ```
//!
//! baseOffset and partitionLeaderEpoch lie outside the CRC, so the broker can
//! assign them without recomputing it. A log segment is a concatenation of
//! such batches.

pub use super::compression::Compression;
pub use super::error::FormatError;

/// Size of the fixed batch header, records excluded.
pub const HEADER_SIZE: usize = 61;
/// Bytes before `batchLength` counts: baseOffset and batchLength itself.
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batchLength`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_SIZE - LOG_OVERHEAD) as i32;
/// The only supported record format.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Meaning of the batch timestamps (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when appended (`maxTimestamp` holds it).
    LogAppendTime,
}

/// The parsed fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parse the fixed header at the start of `buf`. Checks the magic byte and
    /// that `batchLength` is plausible; does not need the records to be present
    /// and does not check the CRC (see [`BatchHeader::validate`]).
    pub fn parse(buf: &[u8]) -> Result<Self, FormatError> {
        if buf.len() < HEADER_SIZE {
            // A magic byte that is visible but wrong is the better message.
            if buf.len() > MAGIC && buf[MAGIC] as i8 != MAGIC_V2 {
                return Err(FormatError::UnsupportedMagic(buf[MAGIC] as i8));
            }
            return Err(FormatError::Truncated {
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(FormatError::UnsupportedMagic(magic));
        }
        let batch_length = i32_at(buf, BATCH_LENGTH);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(FormatError::InvalidLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET),
            batch_length,
            partition_leader_epoch: i32_at(buf, LEADER_EPOCH),
            magic,
            crc: u32::from_be_bytes([buf[CRC], buf[CRC + 1], buf[CRC + 2], buf[CRC + 3]]),
            attributes: i16_at(buf, ATTRIBUTES),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP),
            producer_id: i64_at(buf, PRODUCER_ID),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH),
            base_sequence: i32_at(buf, BASE_SEQUENCE),
            record_count: i32_at(buf, RECORD_COUNT),
        })
    }

    /// Parse and fully validate the batch at the start of `buf`: header,
    /// length within `buf`, CRC32C, record count against last offset delta,
    /// and a known compression codec.
    pub fn validate(buf: &[u8]) -> Result<Self, FormatError> {
        let header = Self::parse(buf)?;
        let size = header.size();
        if buf.len() < size {
            return Err(FormatError::Truncated {
                needed: size,
                available: buf.len(),
            });
        }
        let computed = crc32c::crc32c(&buf[ATTRIBUTES..size]);
        if computed != header.crc {
            return Err(FormatError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
        header.compression()?;
        if header.record_count < 0 || header.last_offset_delta < 0 {
            return Err(FormatError::InvalidRecordCount {
                count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }

    /// Total size of the batch in bytes, including baseOffset and batchLength.
    pub fn size(&self) -> usize {
        // batch_length >= MIN_BATCH_LENGTH > 0 was checked by parse().
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record of the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec.
    pub fn compression(&self) -> Result<Compression, FormatError> {
        Compression::from_attributes(self.attributes)
    }

    /// Timestamp type.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// A control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Set the batch's baseOffset (outside the CRC: no recomputation).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Set the batch's partitionLeaderEpoch (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Mark the batch as `LogAppendTime` with `timestamp` as its max timestamp,
/// and recompute the CRC (both fields are inside it). `batch` must be one
/// whole, validated batch.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = i16_at(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// How many bytes of whole batches at the start of `records` have a base
/// offset below `limit`, and the offset after the last of them (`None`:
/// no batch qualifies). A read_committed fetch returns only these (Kafka
/// reads up to the last stable offset, which never falls inside a batch).
pub fn prefix_below(records: &[u8], limit: i64) -> (usize, Option<i64>) {
    let mut end = 0;
    let mut next = None;
    for batch in Batches::new(records) {
        match batch {
            Ok((at, h, bytes)) if h.base_offset < limit => {
                end = at + bytes.len();
                next = Some(h.next_offset());
            }
            _ => break,
        }
    }
    (end, next)
}

/// Iterator over the batches concatenated in a buffer, yielding each batch's
/// position, header and bytes. Only headers are checked (no CRC); a buffer
/// that ends inside a batch yields `Err(Truncated)` once and then stops.
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Batches<'a> {
    /// Iterate over the batches in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Batches {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Position of the next batch to be yielded (the end of whole batches so
    /// far).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(usize, BatchHeader, &'a [u8]), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let size = header.size();
        if rest.len() < size {
            self.failed = true;
            return Some(Err(FormatError::Truncated {
                needed: size,
                available: rest.len(),
            }));
        }
        let at = self.pos;
        self.pos += size;
        Some(Ok((at, header, &rest[..size])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::records::{BatchBuilder, Record};
    use crate::format::validator::validate_for_append;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for i in 0..5 {
            b.push(Record::new(
                Some(format!("k{i}").into_bytes()),
                Some(vec![i as u8; 100]),
                1_000 + i,
            ));
        }
        b.build().expect("build")
    }

    #[test]
    fn parses_and_validates_a_built_batch() {
        let buf = sample();
        let h = BatchHeader::validate(&buf).expect("valid");
        assert_eq!(h.record_count, 5);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.size(), buf.len());
        assert_eq!(h.max_timestamp, 1_004);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.compression(), Ok(Compression::None));
        validate_for_append(&buf, 1 << 20).expect("valid for append");
    }

    #[test]
    fn base_offset_patch_keeps_crc_valid() {
        let mut buf = sample();
        set_base_offset(&mut buf, 1234);
        set_partition_leader_epoch(&mut buf, 7);
        let h = BatchHeader::validate(&buf).expect("still valid");
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.last_offset(), 1238);
        assert_eq!(h.partition_leader_epoch, 7);
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut buf = sample();
        set_log_append_time(&mut buf, 99_999);
        let h = BatchHeader::validate(&buf).expect("valid after patch");
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, 99_999);
    }

    #[test]
    fn flipped_byte_is_a_crc_mismatch() {
        let mut buf = sample();
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert!(matches!(
            BatchHeader::validate(&buf),
            Err(FormatError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn truncated_and_bad_magic_are_errors() {
        let buf = sample();
        assert!(matches!(
            BatchHeader::validate(&buf[..buf.len() - 1]),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            BatchHeader::parse(&buf[..10]),
            Err(FormatError::Truncated { .. })
        ));
        let mut v1 = buf.clone();
        v1[MAGIC] = 1;
        assert_eq!(
            BatchHeader::parse(&v1),
            Err(FormatError::UnsupportedMagic(1))
        );
        let mut short = buf.clone();
        short[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&short),
            Err(FormatError::InvalidLength(10))
        );
    }

    #[test]
    fn append_validation_rejects_inconsistent_counts() {
        let mut buf = sample();
        // recordCount 6 with lastOffsetDelta 4, CRC fixed up so only the count is wrong.
        buf[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&6i32.to_be_bytes());
        let crc = crc32c::crc32c(&buf[ATTRIBUTES..]);
        buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_for_append(&buf, 1 << 20),
            Err(FormatError::InvalidRecordCount { .. })
        ));
        // Consistent count and delta, but the records section holds only 5.
        buf[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&buf[ATTRIBUTES..]);
        buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_for_append(&buf, 1 << 20),
            Err(FormatError::MalformedRecords(_))
        ));
    }

    #[test]
    fn append_validation_enforces_the_size_limit() {
        let buf = sample();
        assert!(matches!(
            validate_for_append(&buf, buf.len() - 1),
            Err(FormatError::TooLarge { .. })
        ));
    }

    #[test]
    fn batches_iterates_and_reports_a_torn_tail() {
        let one = sample();
        let mut buf = one.clone();
        buf.extend_from_slice(&one);
        buf.extend_from_slice(&one[..30]);
        let items: Vec<_> = Batches::new(&buf).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert!(items[2].is_err());
    }

    /// Writes the fixtures in `src/format/fixtures/`; run by hand with
    /// `cargo test regenerate_fixtures -- --ignored` after a format change.
    #[test]
    #[ignore]
    fn regenerate_fixtures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/format/fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        let fix_crc = |b: &mut Vec<u8>| {
            let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
            b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        };
        let good = sample();
        let mut gz = BatchBuilder::new().compression(Compression::Gzip);
        gz.push(Record::new(Some(b"k".to_vec()), Some(vec![7; 500]), 1));
        let mut files: Vec<(&str, Vec<u8>)> = vec![
            ("valid-uncompressed.bin", good.clone()),
            ("valid-gzip.bin", gz.build().unwrap()),
        ];
        let mut b = good.clone();
        let n = b.len();
        b[n - 3] ^= 0x40;
        files.push(("crc-mismatch.bin", b));
        files.push(("truncated.bin", good[..good.len() - 10].to_vec()));
        files.push(("header-only-fragment.bin", good[..40].to_vec()));
        let mut b = good.clone();
        b[MAGIC] = 1;
        files.push(("magic-v1.bin", b));
        let mut b = good.clone();
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&(-1i32).to_be_bytes());
        files.push(("negative-length.bin", b));
        let mut b = good.clone();
        b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&9i32.to_be_bytes());
        fix_crc(&mut b);
        files.push(("count-mismatch.bin", b));
        let mut b = good[..HEADER_SIZE].to_vec();
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&MIN_BATCH_LENGTH.to_be_bytes());
        b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&0i32.to_be_bytes());
        b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut b);
        files.push(("zero-records.bin", b));
        let mut b = good.clone();
        b[HEADER_SIZE] = 0x7e; // first record claims 63 bytes more than it has
        fix_crc(&mut b);
        files.push(("record-overruns-batch.bin", b));
        let mut b = good.clone();
        b[ATTRIBUTES + 1] |= 0x07; // compression codec 7
        fix_crc(&mut b);
        files.push(("unknown-codec.bin", b));
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    /// The corrupt fixtures beside this parser: each must be an error.
    #[test]
    fn corrupt_fixtures_are_rejected() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/format/fixtures");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("bin") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read fixture");
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let result = validate_for_append(&bytes, 1 << 20);
            if name.starts_with("valid") {
                assert!(result.is_ok(), "{name}: {result:?}");
            } else {
                assert!(result.is_err(), "{name} should be rejected");
            }
            seen += 1;
        }
        assert!(seen >= 5, "expected the fixture set, found {seen}");
    }

    proptest! {
        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = BatchHeader::parse(&bytes);
            let _ = BatchHeader::validate(&bytes);
            let _ = validate_for_append(&bytes, 1 << 20);
            for item in Batches::new(&bytes) { let _ = item; }
        }

        /// Any single flipped bit inside the CRC-covered part is detected.
        #[test]
        fn any_bit_flip_in_crc_range_is_detected(pos in 21usize..600, bit in 0u8..8) {
            let mut buf = sample();
            let pos = pos % buf.len();
            prop_assume!(pos >= ATTRIBUTES);
            buf[pos] ^= 1 << bit;
            prop_assert!(validate_for_append(&buf, 1 << 20).is_err());
        }

        /// Valid batches with arbitrary contents round-trip through the builder,
        /// the validator and the decoder.
        #[test]
        fn built_batches_round_trip(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20),
            ts in 0i64..1_000_000_000_000,
            base in 0i64..1_000_000_000,
        ) {
            let mut b = BatchBuilder::new();
            for (i, v) in values.iter().enumerate() {
                b.push(Record::new(None, Some(v.clone()), ts + i as i64));
            }
            let mut buf = b.build().unwrap();
            set_base_offset(&mut buf, base);
            let h = validate_for_append(&buf, 1 << 20).unwrap();
            prop_assert_eq!(h.record_count as usize, values.len());
            let decoded = crate::format::decode_records(&buf).unwrap();
            prop_assert_eq!(decoded.len(), values.len());
            for (i, r) in decoded.iter().enumerate() {
                prop_assert_eq!(r.offset, base + i as i64);
                prop_assert_eq!(r.value.as_deref(), Some(values[i].as_slice()));
            }
        }
    }
}
