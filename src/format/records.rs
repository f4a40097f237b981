//! Record-level encoding and decoding, for the CLI (`produce`, `consume`,
//! `inspect --records`) and tests. The append path never decodes records.
//!
//! Built on the `kafka-protocol` crate's RecordBatch v2 codec, which handles
//! every compression codec; this module only adapts its types.

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    self as kp, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use super::batch::{Batches, Compression, FormatError, TimestampType};

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

/// Decode every record of the batches in `buf` (any compression), with
/// absolute offsets. Records of a `LogAppendTime` batch get the batch's max
/// timestamp, as Kafka consumers see them. Control records are skipped. For
/// the CLI and tests; the append and fetch paths never call it.
pub fn decode_records(buf: &[u8]) -> Result<Vec<Record>, FormatError> {
    let mut out = Vec::new();
    for item in Batches::new(buf) {
        let (_, header, batch) = item?;
        let mut bytes = Bytes::copy_from_slice(batch);
        let set = RecordBatchDecoder::decode(&mut bytes)
            .map_err(|_| FormatError::MalformedRecords("record decoder rejected the batch"))?;
        let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
        for r in set.records {
            if r.control {
                continue;
            }
            out.push(Record {
                offset: r.offset,
                timestamp: if log_append_time {
                    header.max_timestamp
                } else {
                    r.timestamp
                },
                key: r.key.map(|b| b.to_vec()),
                value: r.value.map(|b| b.to_vec()),
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.map(|b| b.to_vec())))
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// Timestamp type of a decoded record set, for display.
pub fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
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
            let h = super::super::batch::validate_for_append(&buf, 1 << 20).unwrap();
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
    fn empty_builder_is_an_error() {
        assert_eq!(BatchBuilder::new().build(), Err(FormatError::Empty));
    }
}
