//! Rewriting one stored batch for log compaction (Kafka's
//! `MemoryRecords.filterTo`), and in another codec for a topic's
//! `compression.type` ([`recompress_batch`]): the top layer of `format/`,
//! beside the validator.
//!
//! A batch keeps its baseOffset, lastOffsetDelta, producer id, epoch and
//! base sequence, its partition leader epoch, max timestamp and codec;
//! only the records the caller drops go, so the offsets of the records
//! that stay never change (a consumer sees gaps, as on a compacted Kafka
//! topic). A batch loses nothing and needs no delete horizon: its bytes are
//! kept as they are.
//!
//! ## Delete horizon (KIP-534)
//!
//! Attribute bit 6 marks a batch whose `baseTimestamp` holds its *delete
//! horizon*: the time after which its tombstones may be removed. The
//! cleaner sets it (now + `delete.retention.ms`) the first time it keeps a
//! batch with a tombstone; record timestamp deltas are re-encoded against
//! the new base, so every record keeps its timestamp.

use super::batch::{BatchHeader, HEADER_SIZE};
use super::compression::{self, Compression};
use super::error::FormatError;
use super::records::{records_section, walk_records};

/// Attribute bit: `baseTimestamp` is the batch's delete horizon.
pub const DELETE_HORIZON_BIT: i16 = 0x40;
const COMPRESSION_MASK: i16 = 0x07;

const BATCH_LENGTH: usize = 8;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const BASE_TIMESTAMP: usize = 27;
const RECORD_COUNT: usize = 57;

/// One record as the cleaner's predicate sees it.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// A null value: the key's deletion marker.
    pub tombstone: bool,
}

/// What filtering a batch gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record stays and nothing needs rewriting: keep the bytes.
    Unchanged,
    /// The batch as rewritten (some records dropped, or the delete horizon
    /// set); possibly empty of records when `keep_empty` asked for it.
    Rewritten(Vec<u8>),
    /// No record stays and the batch is not needed.
    Dropped,
}

/// The delete horizon of a batch, when it has one.
pub fn delete_horizon(header: &BatchHeader) -> Option<i64> {
    (header.attributes & DELETE_HORIZON_BIT != 0).then_some(header.base_timestamp)
}

/// Filter the records of `batch` (one whole stored batch with `header`):
/// `keep` says which records stay. When a kept record is a tombstone and
/// the batch has no delete horizon yet, the rewritten batch gets
/// `new_horizon`. With `keep_empty`, a batch losing every record stays as a
/// header without records (an idempotent producer's last batch: its
/// sequence must survive); otherwise it is dropped. Control batches are
/// returned unchanged.
pub fn filter_batch(
    header: &BatchHeader,
    batch: &[u8],
    new_horizon: i64,
    keep_empty: bool,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Filtered, FormatError> {
    if header.is_control() {
        return Ok(Filtered::Unchanged);
    }
    let section = records_section(header, batch)?;
    let mut kept: Vec<(&[u8], i64, bool)> = Vec::new();
    let mut total = 0i32;
    let mut kept_tombstone = false;
    walk_records(&section, header.record_count, false, |r| {
        total += 1;
        let view = RecordView {
            offset: header.base_offset + i64::from(r.offset_delta),
            key: r.key,
            tombstone: r.value.is_none(),
        };
        if keep(&view) {
            kept_tombstone |= view.tombstone;
            kept.push((r.raw, r.timestamp_delta, view.tombstone));
        }
    })?;
    let set_horizon = kept_tombstone && delete_horizon(header).is_none();
    if kept.len() as i32 == total && !set_horizon {
        return Ok(Filtered::Unchanged);
    }
    if kept.is_empty() {
        return Ok(if keep_empty {
            Filtered::Rewritten(empty_batch(header, batch))
        } else {
            Filtered::Dropped
        });
    }
    let codec = header.compression()?;
    let mut plain = Vec::with_capacity(kept.iter().map(|(raw, _, _)| raw.len()).sum());
    let base_timestamp = if set_horizon {
        for (raw, delta, _) in &kept {
            let timestamp = header.base_timestamp.wrapping_add(*delta);
            reencode_with_delta(raw, timestamp.wrapping_sub(new_horizon), &mut plain)?;
        }
        new_horizon
    } else {
        for (raw, _, _) in &kept {
            plain.extend_from_slice(raw);
        }
        header.base_timestamp
    };
    let raw_section = &batch[HEADER_SIZE..header.size()];
    let xerial = codec == Compression::Snappy && compression::is_xerial_snappy(raw_section);
    let records = compression::compress(codec, &plain, xerial)?;
    let mut out = Vec::with_capacity(HEADER_SIZE + records.len());
    out.extend_from_slice(&batch[..HEADER_SIZE]);
    out.extend_from_slice(&records);
    let attributes = header.attributes | if set_horizon { DELETE_HORIZON_BIT } else { 0 };
    finish_header(&mut out, attributes, base_timestamp, kept.len() as i32);
    Ok(Filtered::Rewritten(out))
}

/// `batch` (one whole stored batch with `header`, a transaction marker
/// the cleaner may remove) with its delete horizon set to `horizon`
/// (KIP-534: the marker goes once it has passed): every record kept, its
/// timestamp re-encoded against the new base.
pub fn with_delete_horizon(
    header: &BatchHeader,
    batch: &[u8],
    horizon: i64,
) -> Result<Vec<u8>, FormatError> {
    let section = records_section(header, batch)?;
    let mut plain = Vec::with_capacity(section.len() + 16);
    let mut result = Ok(());
    walk_records(&section, header.record_count, false, |r| {
        let timestamp = header.base_timestamp.wrapping_add(r.timestamp_delta);
        if result.is_ok() {
            result = reencode_with_delta(r.raw, timestamp.wrapping_sub(horizon), &mut plain);
        }
    })?;
    result?;
    let codec = header.compression()?;
    let records = compression::compress(codec, &plain, false)?;
    let mut out = Vec::with_capacity(HEADER_SIZE + records.len());
    out.extend_from_slice(&batch[..HEADER_SIZE]);
    out.extend_from_slice(&records);
    finish_header(
        &mut out,
        header.attributes | DELETE_HORIZON_BIT,
        horizon,
        header.record_count,
    );
    Ok(out)
}

/// `batch` (one whole, validated batch with `header`) with its records in
/// `codec`, everything else kept; `None` when it is already in `codec`, is
/// a control batch or has no records (Kafka's broker-side
/// `compression.type`). Snappy is written in the xerial framing, as the
/// Java client and Kafka write it.
pub fn recompress_batch(
    header: &BatchHeader,
    batch: &[u8],
    codec: Compression,
) -> Result<Option<Vec<u8>>, FormatError> {
    if header.is_control() || header.record_count == 0 || header.compression()? == codec {
        return Ok(None);
    }
    let plain = records_section(header, batch)?;
    let records = compression::compress(codec, &plain, true)?;
    let mut out = Vec::with_capacity(HEADER_SIZE + records.len());
    out.extend_from_slice(&batch[..HEADER_SIZE]);
    out.extend_from_slice(&records);
    let attributes = (header.attributes & !COMPRESSION_MASK) | codec.attribute_bits();
    finish_header(
        &mut out,
        attributes,
        header.base_timestamp,
        header.record_count,
    );
    Ok(Some(out))
}

/// The header of `batch` with no records: compression off (nothing to
/// compress), everything else kept (its offsets among them).
pub fn empty_batch(header: &BatchHeader, batch: &[u8]) -> Vec<u8> {
    let mut out = batch[..HEADER_SIZE].to_vec();
    finish_header(
        &mut out,
        header.attributes & !COMPRESSION_MASK,
        header.base_timestamp,
        0,
    );
    out
}

/// Set batchLength, attributes, baseTimestamp and recordCount of the batch
/// in `out` (header and records), then its CRC.
fn finish_header(out: &mut [u8], attributes: i16, base_timestamp: i64, count: i32) {
    let length = (out.len() - 12) as i32;
    out[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    out[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    out[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

fn put_varlong(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Length in bytes of the varint at the start of `buf` (already validated
/// by the walk that produced it).
fn varint_len(buf: &[u8]) -> usize {
    buf.iter()
        .position(|b| b & 0x80 == 0)
        .map_or(buf.len(), |i| i + 1)
}

/// `raw` (one whole record, length varint first) with its timestamp delta
/// replaced by `delta`, appended to `out`.
fn reencode_with_delta(raw: &[u8], delta: i64, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let len_len = varint_len(raw);
    let body = raw
        .get(len_len..)
        .filter(|b| !b.is_empty())
        .ok_or(FormatError::MalformedRecords("record without a body"))?;
    // attributes (1 byte), then the timestamp delta varlong, then the rest.
    let old_delta_len = varint_len(&body[1..]);
    let rest = &body[1 + old_delta_len..];
    let mut new_body = Vec::with_capacity(body.len() + 10);
    new_body.push(body[0]);
    put_varlong(delta, &mut new_body);
    new_body.extend_from_slice(rest);
    put_varlong(new_body.len() as i64, out);
    out.extend_from_slice(&new_body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::batch::{set_base_offset, BatchHeader};
    use crate::format::records::{decode_records, BatchBuilder, Record};

    fn batch(codec: Compression, records: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = BatchBuilder::new().compression(codec);
        for (i, (k, v)) in records.iter().enumerate() {
            b.push(Record::new(
                Some(k.as_bytes().to_vec()),
                v.map(|v| v.as_bytes().to_vec()),
                1_000 + i as i64,
            ));
        }
        let mut buf = b.build().unwrap();
        set_base_offset(&mut buf, 100);
        buf
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn a_marker_gets_its_delete_horizon_and_keeps_its_record() {
        use crate::format::records::{control_batch, control_type, ControlType};
        let mut buf = control_batch(7, 1, ControlType::Abort, 0, 5_000);
        set_base_offset(&mut buf, 40);
        let h = BatchHeader::validate(&buf).unwrap();
        assert_eq!(delete_horizon(&h), None);
        let out = with_delete_horizon(&h, &buf, 9_000).unwrap();
        let h2 = BatchHeader::validate(&out).unwrap();
        assert_eq!(delete_horizon(&h2), Some(9_000));
        assert!(h2.is_control() && h2.is_transactional());
        assert_eq!(
            (h2.base_offset, h2.producer_id, h2.producer_epoch),
            (40, 7, 1)
        );
        assert_eq!(control_type(&h2, &out), Some(ControlType::Abort));
        assert_eq!((h2.record_count, h2.max_timestamp), (1, 5_000));
        let section = records_section(&h2, &out).unwrap();
        let mut stamps = Vec::new();
        walk_records(&section, 1, false, |r| {
            stamps.push(h2.base_timestamp + r.timestamp_delta)
        })
        .unwrap();
        assert_eq!(stamps, vec![5_000], "the record keeps its timestamp");
    }

    #[test]
    fn dropped_records_leave_offsets_timestamps_and_codec_alone() {
        for codec in CODECS {
            let buf = batch(
                codec,
                &[("a", Some("1")), ("b", Some("2")), ("a", Some("3"))],
            );
            let h = BatchHeader::validate(&buf).unwrap();
            let out = filter_batch(&h, &buf, 0, false, |r| r.offset != 100).unwrap();
            let Filtered::Rewritten(out) = out else {
                panic!("{codec:?}: {out:?}")
            };
            let nh = BatchHeader::validate(&out).unwrap();
            assert_eq!(nh.base_offset, 100);
            assert_eq!(nh.last_offset(), 102, "lastOffsetDelta kept");
            assert_eq!(nh.record_count, 2);
            assert_eq!(nh.compression().unwrap(), codec);
            assert_eq!(nh.max_timestamp, h.max_timestamp);
            let recs = decode_records(&out).unwrap();
            assert_eq!(
                recs.iter()
                    .map(|r| (r.offset, r.timestamp))
                    .collect::<Vec<_>>(),
                vec![(101, 1_001), (102, 1_002)]
            );
            assert_eq!(recs[1].value.as_deref(), Some(&b"3"[..]));
        }
    }

    #[test]
    fn a_kept_tombstone_gets_the_delete_horizon_and_keeps_its_timestamps() {
        for codec in CODECS {
            let buf = batch(codec, &[("a", None), ("b", Some("2"))]);
            let h = BatchHeader::validate(&buf).unwrap();
            assert_eq!(delete_horizon(&h), None);
            let Filtered::Rewritten(out) = filter_batch(&h, &buf, 90_000, false, |_| true).unwrap()
            else {
                panic!("the horizon is a rewrite")
            };
            let nh = BatchHeader::validate(&out).unwrap();
            assert_eq!(delete_horizon(&nh), Some(90_000));
            let recs = decode_records(&out).unwrap();
            assert_eq!(
                recs.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
                vec![1_000, 1_001]
            );
            assert_eq!(recs[0].value, None);
            // Once set, the horizon is not moved and nothing is rewritten.
            assert_eq!(
                filter_batch(&nh, &out, 99_999, false, |_| true).unwrap(),
                Filtered::Unchanged
            );
        }
    }

    #[test]
    fn an_emptied_batch_is_dropped_or_kept_as_a_bare_header() {
        let buf = batch(Compression::Gzip, &[("a", Some("1"))]);
        let h = BatchHeader::validate(&buf).unwrap();
        assert_eq!(
            filter_batch(&h, &buf, 0, false, |_| false).unwrap(),
            Filtered::Dropped
        );
        let Filtered::Rewritten(out) = filter_batch(&h, &buf, 0, true, |_| false).unwrap() else {
            panic!("kept")
        };
        let nh = BatchHeader::validate(&out).unwrap();
        assert_eq!((nh.record_count, nh.last_offset()), (0, 100));
        assert_eq!(nh.compression().unwrap(), Compression::None);
        assert!(decode_records(&out).unwrap().is_empty());
    }

    #[test]
    fn nothing_dropped_is_unchanged() {
        let buf = batch(Compression::Lz4, &[("a", Some("1")), ("b", Some("2"))]);
        let h = BatchHeader::validate(&buf).unwrap();
        assert_eq!(
            filter_batch(&h, &buf, 0, false, |_| true).unwrap(),
            Filtered::Unchanged
        );
    }

    #[test]
    fn recompressing_keeps_every_record_and_the_header() {
        let records = [("a", Some("1")), ("b", None), ("c", Some("3"))];
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for from in codecs {
            let mut original = batch(from, &records);
            set_base_offset(&mut original, 40);
            let h = BatchHeader::validate(&original).unwrap();
            for to in codecs {
                let Some(out) = recompress_batch(&h, &original, to).unwrap() else {
                    assert_eq!(from, to, "only the same codec is left alone");
                    continue;
                };
                assert_ne!(from, to);
                let oh = BatchHeader::validate(&out).expect("CRC and length right");
                assert_eq!(oh.compression().unwrap(), to);
                assert_eq!(
                    (oh.base_offset, oh.last_offset_delta, oh.record_count),
                    (h.base_offset, h.last_offset_delta, h.record_count)
                );
                assert_eq!(
                    (oh.base_timestamp, oh.max_timestamp, oh.producer_id),
                    (h.base_timestamp, h.max_timestamp, h.producer_id)
                );
                assert_eq!(
                    decode_records(&out).unwrap(),
                    decode_records(&original).unwrap(),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }
}
