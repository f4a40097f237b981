//! `tierlog inspect FILE`: dump a segment or index file, flagging problems.

use std::path::Path;
use std::process::ExitCode;

use tierlog::format::batch::{BatchHeader, Batches};
use tierlog::format::index::{decode_offset_index, decode_time_index};
use tierlog::format::records::decode_records;
use tierlog::log::paths::{parse_segment_file_name, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
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
        LOG_EXT | "bin" => Ok(dump_log(path, &bytes, base, records)),
        _ => Err(Error::invalid(format!(
            "{}: expected a .log, .index or .timeindex file",
            path.display()
        ))),
    }
}

fn dump_log(path: &Path, bytes: &[u8], base: i64, show_records: bool) -> ExitCode {
    let mut batches = 0u64;
    let mut record_total = 0i64;
    let mut problems = 0u64;
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
                let dense = match expected {
                    Some(x) if x != h.base_offset => {
                        problems += 1;
                        format!(" GAP (expected base offset {x})")
                    }
                    _ => String::new(),
                };
                println!(
                    "baseOffset: {} lastOffset: {} count: {} position: {pos} size: {} baseTimestamp: {} maxTimestamp: {} timestampType: {:?} compression: {} producerId: {} crc: {crc}{dense}",
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
                expected = Some(h.next_offset());
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
    if batches > 0 && expected.is_some() {
        // First batch's base should match the file name.
        if let Some(Ok((_, first, _))) = Batches::new(bytes).next() {
            if first.base_offset != base
                && path.extension().and_then(|e| e.to_str()) == Some(LOG_EXT)
            {
                problems += 1;
                println!(
                    "MISMATCH: first batch has base offset {} but the file name says {base}",
                    first.base_offset
                );
            }
        }
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
