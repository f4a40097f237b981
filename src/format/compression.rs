//! Bounded decompression of a batch's records section.
//!
//! A compressed batch is small on the wire but can expand without limit: a
//! 1 MB gzip or zstd batch of zeros is a gigabyte of records, and a raw
//! snappy block declares its own output length in five bytes. Every codec
//! here stops at a limit and reports it, instead of allocating whatever the
//! input asks for. The limit is checked before any output is reserved.

use std::io::Read;

use super::error::FormatError;

/// The compression bits of a batch's attributes (bits 0-2).
const COMPRESSION_MASK: i16 = 0x07;

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub(crate) fn from_attributes(attributes: i16) -> Result<Self, FormatError> {
        Ok(match attributes & COMPRESSION_MASK {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(FormatError::UnknownCompression(other)),
        })
    }

    /// The codec's value in a batch's attributes (bits 0-2).
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name for the codec.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Largest records section a compressed batch may expand to. Producers
/// bound a batch before compressing it (librdkafka's `batch.size`, Java's
/// `batch.size` and `max.request.size`, all ~1 MB by default), so a legal
/// batch is far below this; a batch above it is refused as invalid.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// xerial snappy-java's stream header, which Kafka's snappy batches start
/// with; without it the bytes are one raw snappy block (Java falls back the
/// same way).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Decompress `input` (the records section of a batch compressed with
/// `codec`) into at most `limit` bytes.
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
    match codec {
        Compression::None => bounded_copy(input, limit),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), limit),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(input).map_err(|_| undecodable())?;
            read_bounded(decoder, limit)
        }
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|_| undecodable())?;
            read_bounded(decoder, limit)
        }
        Compression::Snappy => snappy(input, limit),
    }
}

/// Whether a snappy records section uses the xerial framing (Java's
/// producers) rather than one raw block (librdkafka's).
pub fn is_xerial_snappy(input: &[u8]) -> bool {
    input.len() >= XERIAL_HEADER_LEN && input.starts_with(XERIAL_MAGIC)
}

/// Compress a records section with `codec`, as a Kafka producer would:
/// gzip, lz4 frames, zstd frames, and snappy as one raw block or, with
/// `xerial`, in the xerial framing (header, then length-prefixed blocks of
/// at most 32 KiB input each). The log cleaner uses it to rewrite a batch in
/// the codec it came with.
pub fn compress(codec: Compression, input: &[u8], xerial: bool) -> Result<Vec<u8>, FormatError> {
    use std::io::Write;
    let failed = |_| FormatError::MalformedRecords("the records could not be compressed");
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(input).map_err(failed)?;
            e.finish().map_err(failed)
        }
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .build(Vec::new())
                .map_err(failed)?;
            e.write_all(input).map_err(failed)?;
            let (out, result) = e.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        Compression::Zstd => zstd::encode_all(input, 3).map_err(failed),
        Compression::Snappy if !xerial => snap::raw::Encoder::new()
            .compress_vec(input)
            .map_err(|_| FormatError::MalformedRecords("the records could not be compressed")),
        Compression::Snappy => {
            // Header: magic, version 1, compatible version 1.
            let mut out = Vec::with_capacity(input.len() / 2 + XERIAL_HEADER_LEN);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for chunk in input.chunks(32 * 1024) {
                let block = encoder.compress_vec(chunk).map_err(|_| {
                    FormatError::MalformedRecords("the records could not be compressed")
                })?;
                out.extend_from_slice(&(block.len() as i32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
    }
}

fn undecodable() -> FormatError {
    FormatError::MalformedRecords("records do not decompress")
}

fn too_large(limit: usize) -> FormatError {
    FormatError::DecompressedTooLarge { limit }
}

fn bounded_copy(input: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
    if input.len() > limit {
        return Err(too_large(limit));
    }
    Ok(input.to_vec())
}

/// Read a streaming decoder to its end, failing once it yields more than
/// `limit` bytes. Memory grows with the output actually produced.
fn read_bounded(decoder: impl Read, limit: usize) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|_| undecodable())?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// Kafka's snappy: the xerial framing (16-byte header, then blocks each
/// prefixed with a big-endian u32 length), or one raw block.
fn snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
    if input.len() < XERIAL_HEADER_LEN || &input[..XERIAL_MAGIC.len()] != XERIAL_MAGIC {
        let mut out = Vec::new();
        snappy_block(input, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = &input[XERIAL_HEADER_LEN..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(FormatError::MalformedRecords(
                "truncated snappy block length",
            ));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(FormatError::MalformedRecords("truncated snappy block"));
        }
        let (block, tail) = tail.split_at(len);
        snappy_block(block, &mut out, limit)?;
        rest = tail;
    }
    Ok(out)
}

/// Append one raw snappy block to `out`, checking its declared length
/// against what `limit` leaves before reserving anything.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), FormatError> {
    let len = snap::raw::decompress_len(block).map_err(|_| undecodable())?;
    if len > limit.saturating_sub(out.len()) {
        return Err(too_large(limit));
    }
    let start = out.len();
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|_| undecodable())?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let (out, r) = e.finish();
        r.unwrap();
        out
    }

    fn xerial(data: &[u8]) -> Vec<u8> {
        let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in data.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    fn all_codecs(data: &[u8]) -> Vec<(Compression, Vec<u8>)> {
        vec![
            (Compression::Gzip, gzip(data)),
            (Compression::Lz4, lz4(data)),
            (Compression::Zstd, zstd::encode_all(data, 3).unwrap()),
            (Compression::Snappy, xerial(data)),
            (
                Compression::Snappy,
                snap::raw::Encoder::new().compress_vec(data).unwrap(),
            ),
        ]
    }

    #[test]
    fn every_codec_round_trips_up_to_the_limit() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for (codec, packed) in all_codecs(&data) {
            assert_eq!(
                decompress(codec, &packed, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn output_above_the_limit_is_refused_for_every_codec() {
        let data = vec![0u8; 1 << 20];
        for (codec, packed) in all_codecs(&data) {
            assert!(
                packed.len() < data.len() / 10,
                "{codec:?} should compress zeros"
            );
            let err = decompress(codec, &packed, data.len() - 1).unwrap_err();
            assert!(
                matches!(err, FormatError::DecompressedTooLarge { limit } if limit == data.len() - 1),
                "{codec:?}: {err}"
            );
        }
        assert!(matches!(
            decompress(Compression::None, &data, 10),
            Err(FormatError::DecompressedTooLarge { .. })
        ));
    }

    #[test]
    fn a_raw_snappy_header_claiming_gigabytes_allocates_nothing() {
        // Varint 0xFFFFFFFF: a 4 GiB block declared in five bytes.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let err = decompress(Compression::Snappy, &bomb, MAX_DECOMPRESSED_BYTES).unwrap_err();
        assert!(
            matches!(err, FormatError::DecompressedTooLarge { .. }),
            "{err}"
        );
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        framed.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
        framed.extend_from_slice(&bomb);
        let err = decompress(Compression::Snappy, &framed, MAX_DECOMPRESSED_BYTES).unwrap_err();
        assert!(
            matches!(err, FormatError::DecompressedTooLarge { .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let data = vec![7u8; 100_000];
        for (codec, packed) in all_codecs(&data) {
            for cut in [0, 1, packed.len() / 2, packed.len() - 1] {
                let r = decompress(codec, &packed[..cut], MAX_DECOMPRESSED_BYTES);
                // Never wrong bytes: an error, or a prefix of the data (a
                // cut at a xerial block boundary, or inside lz4's end mark,
                // is still a readable stream; the batch CRC covers that).
                if let Ok(out) = r {
                    assert!(data.starts_with(&out), "{codec:?} cut at {cut}");
                }
            }
            let mut flipped = packed.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0xff;
            let _ = decompress(codec, &flipped, MAX_DECOMPRESSED_BYTES);
        }
    }
}
