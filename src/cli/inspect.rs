//! `tierlog inspect FILE`: dump a segment or index file, flagging problems.

use std::path::Path;
use std::process::ExitCode;

use tierlog::format::batch::{BatchHeader, Batches};
use tierlog::format::index::{decode_offset_index, decode_time_index};
use tierlog::format::records::decode_records;
use tierlog::format::txn_index::decode_txn_index;
use tierlog::log::paths::{
    parse_segment_file_name, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT,
};
use tierlog::Error;

pub fn run(path: &Path, records: bool) -> Result<ExitCode, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let base = parse_segment_file_name(name, ext).unwrap_or(0);
    match ext {
        INDEX_EXT => {
            let entries = decode_offset_index(&bytes).map_err(|e| {
                Error::new(tierlog::ErrorKind::Data, format!("{}: {e}", path.display()))
            })?;
            for e in &entries {
                println!(
                    "offset: {} position: {}",
                    base + i64::from(e.relative_offset),
                    e.position
                );
            }
            println!("entries: {}", entries.len());
            Ok(ExitCode::SUCCESS)
        }
        TIME_INDEX_EXT => {
            let entries = decode_time_index(&bytes).map_err(|e| {
                Error::new(tierlog::ErrorKind::Data, format!("{}: {e}", path.display()))
            })?;
            for e in &entries {
                println!(
                    "timestamp: {} offset: {}",
                    e.timestamp,
                    base + i64::from(e.relative_offset)
                );
            }
            println!("entries: {}", entries.len());
            Ok(ExitCode::SUCCESS)
        }
        TXN_INDEX_EXT => {
            let entries = decode_txn_index(&bytes).map_err(|e| {
                Error::new(tierlog::ErrorKind::Data, format!("{}: {e}", path.display()))
            })?;
            for e in &entries {
                println!(
                    "producerId: {} firstOffset: {} lastOffset: {} lastStableOffset: {}",
                    e.producer_id, e.first_offset, e.last_offset, e.last_stable_offset
                );
            }
            println!("entries: {}", entries.len());
            Ok(ExitCode::SUCCESS)
        }
        LOG_EXT | "bin" => Ok(dump_log(path, &bytes, base, records)),
        _ => Err(Error::invalid(format!(
            "{}: expected a .log, .index, .timeindex or .txnindex file",
            path.display()
        ))),
    }
}

/// A segment's batches in order; offsets only increase. The log cleaner
/// leaves gaps (between batches, and inside a batch whose records it
/// thinned, which keeps its offset span): they are counted as offsets
/// removed, not problems. An offset going backwards is one.
fn dump_log(path: &Path, bytes: &[u8], base: i64, show_records: bool) -> ExitCode {
    let is_segment = path.extension().and_then(|e| e.to_str()) == Some(LOG_EXT);
    let mut batches = 0u64;
    let mut record_total = 0i64;
    let mut problems = 0u64;
    // Offsets absent between batches (from the file's base offset for a
    // segment) and inside batches.
    let (mut gap_offsets, mut thinned_offsets) = (0i64, 0i64);
    // Where the previous batch ended.
    let mut expected = None::<i64>;
    let mut iter = Batches::new(bytes);
    loop {
        let at = iter.position();
        let Some(item) = iter.next() else { break };
        match item {
            Ok((pos, h, batch)) => {
                batches += 1;
                record_total += i64::from(h.record_count);
                let crc = match BatchHeader::validate(batch) {
                    Ok(_) => "ok".to_string(),
                    Err(e) => {
                        problems += 1;
                        format!("BAD ({e})")
                    }
                };
                // A first batch below the file's base is a MISMATCH (below).
                let from = expected.or(is_segment.then_some(base));
                let mut order = match from {
                    Some(x) if expected.is_some() && h.base_offset < x => {
                        problems += 1;
                        format!(
                            " OUT OF ORDER (base offset below {x}, where the previous batch ended)"
                        )
                    }
                    Some(x) if h.base_offset > x => {
                        gap_offsets += h.base_offset - x;
                        format!(" gap: {} offsets before it", h.base_offset - x)
                    }
                    _ => String::new(),
                };
                let span = h.last_offset() - h.base_offset + 1;
                if span > i64::from(h.record_count) && h.record_count >= 0 {
                    let thinned = span - i64::from(h.record_count);
                    thinned_offsets += thinned;
                    order.push_str(&format!(" thinned: {thinned} offsets removed inside"));
                }
                println!(
                    "baseOffset: {} lastOffset: {} count: {} position: {pos} size: {} baseTimestamp: {} maxTimestamp: {} timestampType: {:?} compression: {} producerId: {} crc: {crc}{order}",
                    h.base_offset,
                    h.last_offset(),
                    h.record_count,
                    h.size(),
                    h.base_timestamp,
                    h.max_timestamp,
                    h.timestamp_type(),
                    h.compression().map(|c| c.name()).unwrap_or("unknown"),
                    h.producer_id,
                );
                expected = Some(expected.map_or(h.next_offset(), |x| x.max(h.next_offset())));
                if show_records {
                    match decode_records(batch) {
                        Ok(rs) => {
                            for r in rs {
                                println!(
                                    "  | offset: {} timestamp: {} key: {} value: {} headers: {}",
                                    r.offset,
                                    r.timestamp,
                                    r.key
                                        .as_deref()
                                        .map(String::from_utf8_lossy)
                                        .unwrap_or("null".into()),
                                    r.value
                                        .as_deref()
                                        .map(String::from_utf8_lossy)
                                        .unwrap_or("null".into()),
                                    r.headers.len()
                                );
                            }
                        }
                        Err(e) => println!("  | cannot decode records: {e}"),
                    }
                }
            }
            Err(e) => {
                problems += 1;
                println!("CORRUPT at position {at}: {e}");
            }
        }
    }
    if batches > 0 && is_segment {
        // The first batch starts at the file name's offset, or after it
        // once the cleaner removed the first records (counted above).
        if let Some(Ok((_, first, _))) = Batches::new(bytes).next() {
            if first.base_offset < base {
                problems += 1;
                println!(
                    "MISMATCH: first batch has base offset {} but the file name says {base}",
                    first.base_offset
                );
            }
        }
    }
    if gap_offsets + thinned_offsets > 0 {
        println!(
            "offsets removed (as by the log cleaner): {} ({gap_offsets} between batches, {thinned_offsets} inside batches)",
            gap_offsets + thinned_offsets
        );
    }
    println!(
        "file: {} bytes: {} batches: {batches} records: {record_total} problems: {problems}",
        path.display(),
        bytes.len()
    );
    if problems > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
