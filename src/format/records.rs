//! Record-level encoding and decoding, for the CLI (`produce`, `consume`,
//! `inspect --records`) and tests. The append path never decodes records.
//!
//! Built on the `kafka-protocol` crate's RecordBatch v2 codec, which handles
//! every compression codec; this module only adapts its types.

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    self as kp, RecordBatchEncoder, RecordEncodeOptions, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use std::borrow::Cow;

use super::batch::{BatchHeader, Batches, TimestampType, HEADER_SIZE};
use super::compression::Compression;
use super::error::FormatError;

/// One record: what a producer sends and a consumer sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset in the partition (assigned by the broker; 0-based in a new batch).
    pub offset: i64,
    /// Timestamp in ms (create time, or the log-append time of its batch).
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// A record with no headers.
    pub fn new(key: Option<Vec<u8>>, value: Option<Vec<u8>>, timestamp: i64) -> Self {
        Record {
            offset: 0,
            timestamp,
            key,
            value,
            headers: Vec::new(),
        }
    }
}

/// Builds one RecordBatch v2 from records.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    records: Vec<Record>,
    compression: Compression,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty, uncompressed builder.
    pub fn new() -> Self {
        BatchBuilder {
            records: Vec::new(),
            compression: Compression::None,
        }
    }

    /// Compress the batch with `compression`.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Add a record.
    pub fn push(&mut self, record: Record) -> &mut Self {
        self.records.push(record);
        self
    }

    /// Number of records so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records yet.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encode the records as one batch with base offset 0 (the broker assigns
    /// the real one). Fails on an empty builder.
    pub fn build(&self) -> Result<Vec<u8>, FormatError> {
        if self.records.is_empty() {
            return Err(FormatError::Empty);
        }
        let records: Vec<kp::Record> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| kp::Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: kp::TimestampType::Creation,
                offset: i as i64,
                // offset - sequence must be constant for the encoder to keep
                // the records in one batch; this yields baseSequence -1
                // (no sequence), as a non-idempotent producer sends.
                sequence: i as i32 - 1,
                timestamp: r.timestamp,
                key: r.key.clone().map(Bytes::from),
                value: r.value.clone().map(Bytes::from),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                    .collect::<IndexMap<_, _>>(),
            })
            .collect();
        let options = RecordEncodeOptions {
            version: 2,
            compression: match self.compression {
                Compression::None => kp::Compression::None,
                Compression::Gzip => kp::Compression::Gzip,
                Compression::Snappy => kp::Compression::Snappy,
                Compression::Lz4 => kp::Compression::Lz4,
                Compression::Zstd => kp::Compression::Zstd,
            },
        };
        let mut out = bytes::BytesMut::new();
        RecordBatchEncoder::encode(&mut out, &records, &options)
            .map_err(|_| FormatError::MalformedRecords("record encoder rejected the records"))?;
        Ok(out.to_vec())
    }
}

/// A transaction marker's kind (Kafka's `ControlRecordType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// ABORT (type 0): the producer's open transaction is aborted.
    Abort,
    /// COMMIT (type 1): the producer's open transaction is committed.
    Commit,
}

/// A transaction marker: a control batch of one record, written by the
/// broker at EndTxn to every partition of the transaction.
///
/// ## Format
///
/// A RecordBatch v2 with attributes `transactional | control` (bits 4
/// and 5), the producer's id and epoch, baseSequence -1, and one record
/// whose key is Kafka's control record key (`version: int16` = 0,
/// `type: int16`: 0 ABORT, 1 COMMIT) and whose value is the end
/// transaction marker (`version: int16` = 0, `coordinatorEpoch: int32`).
/// Clients recognise the batch by its control bit and never show it.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let type_code: i16 = match kind {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&type_code.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = kp::Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id,
        producer_epoch,
        timestamp_type: kp::TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: IndexMap::new(),
    };
    let options = RecordEncodeOptions {
        version: 2,
        compression: kp::Compression::None,
    };
    let mut out = bytes::BytesMut::new();
    // One uncompressed record with a key and a value: the encoder has
    // nothing to refuse (it fails only on compression or mixed batches).
    if RecordBatchEncoder::encode(&mut out, &[record], &options).is_err() {
        return Vec::new();
    }
    out.to_vec()
}

/// The kind of the transaction marker `batch` holds (`None`: not a control
/// batch, or one whose key is not a known marker type).
pub fn control_type(header: &BatchHeader, batch: &[u8]) -> Option<ControlType> {
    if !header.is_control() {
        return None;
    }
    let section = records_section(header, batch).ok()?;
    let mut kind = None;
    walk_records(&section, header.record_count.min(1), false, |r| {
        kind = match r.key {
            Some([_, _, 0, 0, ..]) => Some(ControlType::Abort),
            Some([_, _, 0, 1, ..]) => Some(ControlType::Commit),
            _ => None,
        };
    })
    .ok()?;
    kind
}

/// One record of a batch, borrowing its bytes.
///
/// ## Format
///
/// A v2 record inside a batch's (decompressed) records section, all
/// integers zig-zag varints: `length`, `attributes: int8`,
/// `timestampDelta: varlong`, `offsetDelta`, `keyLength` (-1: null), `key`,
/// `valueLength` (-1: null), `value`, `headerCount`, then per header
/// `keyLength` (≥ 0), `key` (UTF-8), `valueLength` (-1: null), `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// The whole record as stored, its length varint included.
    pub raw: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn varlong(&mut self) -> Result<i64, FormatError> {
        // Most fields (small lengths, deltas, counts) fit in one byte.
        if let Some(&b) = self.buf.first() {
            if b & 0x80 == 0 {
                self.buf = &self.buf[1..];
                let raw = i64::from(b);
                return Ok((raw >> 1) ^ -(raw & 1));
            }
        }
        let mut raw: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(i)
                .ok_or(FormatError::MalformedRecords("truncated varint"))?;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(FormatError::MalformedRecords("varint longer than 10 bytes"))
    }

    fn varint(&mut self) -> Result<i32, FormatError> {
        i32::try_from(self.varlong()?)
            .map_err(|_| FormatError::MalformedRecords("varint out of range"))
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], FormatError> {
        if len > self.buf.len() {
            return Err(FormatError::MalformedRecords("length runs past the record"));
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    /// A length-prefixed byte string; -1 is null.
    fn nullable(&mut self) -> Result<Option<&'a [u8]>, FormatError> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err(FormatError::MalformedRecords("negative length")),
            n => self.bytes(n as usize).map(Some),
        }
    }
}

/// Walk exactly `count` records of a records section (uncompressed), every
/// length checked against the bytes present, so corrupt input costs no more
/// than its own size. Offset deltas must be 0, 1, 2, … as Kafka requires of
/// new batches when `consecutive` is set.
pub fn walk_records<'a>(
    mut section: &'a [u8],
    count: i32,
    consecutive: bool,
    mut f: impl FnMut(RawRecord<'a>),
) -> Result<(), FormatError> {
    for i in 0..count {
        let mut c = Cursor { buf: section };
        let len = c.varint()?;
        if len < 0 {
            return Err(FormatError::MalformedRecords("negative record length"));
        }
        let body = c.bytes(len as usize)?;
        let raw = &section[..section.len() - c.buf.len()];
        section = c.buf;
        let mut r = Cursor { buf: body };
        r.bytes(1)?; // attributes, unused in v2
        let timestamp_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        if consecutive && offset_delta != i {
            return Err(FormatError::MalformedRecords(
                "record offsets are not consecutive",
            ));
        }
        let key = r.nullable()?;
        let value = r.nullable()?;
        let header_count = r.varint()?;
        if header_count < 0 || header_count as usize > r.buf.len() / 2 {
            return Err(FormatError::MalformedRecords("impossible header count"));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let k = r
                .nullable()?
                .ok_or(FormatError::MalformedRecords("null header key"))?;
            if std::str::from_utf8(k).is_err() {
                return Err(FormatError::MalformedRecords("header key is not UTF-8"));
            }
            headers.push((k, r.nullable()?));
        }
        if !r.buf.is_empty() {
            return Err(FormatError::MalformedRecords("bytes left inside a record"));
        }
        f(RawRecord {
            raw,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        });
    }
    if !section.is_empty() {
        return Err(FormatError::MalformedRecords("bytes after the last record"));
    }
    Ok(())
}

/// The records section of a whole batch, decompressed when needed, at most
/// [`MAX_DECOMPRESSED_BYTES`](super::compression::MAX_DECOMPRESSED_BYTES).
pub fn records_section<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
) -> Result<Cow<'a, [u8]>, FormatError> {
    let raw = &batch[HEADER_SIZE..header.size()];
    match header.compression()? {
        Compression::None => Ok(Cow::Borrowed(raw)),
        codec => {
            super::compression::decompress(codec, raw, super::compression::MAX_DECOMPRESSED_BYTES)
                .map(Cow::Owned)
        }
    }
}

/// Decode every record of the batches in `buf` (any compression), with
/// absolute offsets. Records of a `LogAppendTime` batch get the batch's max
/// timestamp, as Kafka consumers see them. Control records are skipped.
/// Bounded by the input: corrupt counts and lengths are errors, never large
/// allocations.
pub fn decode_records(buf: &[u8]) -> Result<Vec<Record>, FormatError> {
    let mut out = Vec::new();
    for item in Batches::new(buf) {
        let (_, header, batch) = item?;
        if header.record_count < 0 {
            return Err(FormatError::InvalidRecordCount {
                count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        let section = records_section(&header, batch)?;
        let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
        let control = header.is_control();
        walk_records(&section, header.record_count, false, |r| {
            if control {
                return;
            }
            out.push(Record {
                offset: header.base_offset + i64::from(r.offset_delta),
                timestamp: if log_append_time {
                    header.max_timestamp
                } else {
                    header.base_timestamp.wrapping_add(r.timestamp_delta)
                },
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            v.map(<[u8]>::to_vec),
                        )
                    })
                    .collect(),
            });
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut b = BatchBuilder::new().compression(c);
            for i in 0..10 {
                let mut r = Record::new(
                    Some(vec![b'k', i]),
                    Some(vec![i; 300]),
                    5_000 + i64::from(i),
                );
                r.headers.push(("h".into(), Some(b"v".to_vec())));
                b.push(r);
            }
            let buf = b.build().unwrap();
            let h = crate::format::validator::validate_for_append(&buf, 1 << 20).unwrap();
            assert_eq!(h.compression().unwrap(), c);
            assert_eq!(h.record_count, 10);
            let back = decode_records(&buf).unwrap();
            assert_eq!(back.len(), 10);
            assert_eq!(back[3].value.as_deref(), Some(&[3u8; 300][..]));
            assert_eq!(
                back[3].headers,
                vec![("h".to_string(), Some(b"v".to_vec()))]
            );
            assert_eq!(back[9].timestamp, 5_009);
        }
    }

    #[test]
    fn huge_counts_are_errors_not_allocations() {
        use crate::format::batch::set_base_offset;
        let mut b = BatchBuilder::new();
        let mut r = Record::new(None, Some(b"v".to_vec()), 1);
        r.headers.push(("h".into(), None));
        b.push(r);
        let good = b.build().unwrap();
        // Header count varint of the only record set to i32::MAX.
        let mut bad = good.clone();
        let pos = bad.len() - 4; // header count, key len, 'h', value len(-1)
        assert_eq!(bad[pos], 2, "zig-zag 1 header");
        bad.splice(pos..pos + 1, [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        bad[HEADER_SIZE] += 8; // the record's length grew by 4 (zig-zag: +8)
        let len = (bad.len() - 12) as i32;
        bad[8..12].copy_from_slice(&len.to_be_bytes());
        set_base_offset(&mut bad, 0);
        assert!(decode_records(&bad).is_err());
        // A record count far beyond the bytes present.
        let mut bad = good.clone();
        bad[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_records(&bad).is_err());
    }

    #[test]
    fn empty_builder_is_an_error() {
        assert_eq!(BatchBuilder::new().build(), Err(FormatError::Empty));
    }
}
