//! `tierlog perf compact`: the log cleaner against a plain copy of the same
//! bytes.
//!
//! A compacted topic's partition is filled with `--updates` keyed records
//! over `--keys` keys (untimed), rolled and fsynced; then, timed: the raw
//! baseline (every segment file read sequentially and written to one new
//! file in the partition's directory, fsynced at the end, as the cleaner
//! fsyncs what it writes), the engine's log cleaner until the whole log is
//! clean, and the raw baseline again (from the first copy: the segments
//! were replaced), so both sides see the same machine. Throughput on both
//! sides is bytes of log before cleaning ÷ seconds.
//!
//! With `--remote URL` the log is tiered first and cleaned in the store
//! (`compact_tiered.rs`); the generation and the cleaning loop are shared.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierlog::clock::{Clock, SystemClock};
use tierlog::format::{BatchBuilder, Record};
use tierlog::log::cleaner::CleanStats;
use tierlog::{Engine, EngineConfig, Error, ErrorKind};

use crate::cli::parse_size;

pub(super) const TOPIC: &str = "perf-compact";
/// Target size of a generated batch (records per batch = this ÷ value size).
const BATCH_BYTES: u64 = 16 << 10;
/// Passes after which a run that still has a dirty section is an error.
const MAX_PASSES: usize = 1000;

#[derive(clap::Args)]
pub struct CompactArgs {
    /// Directory for the generated log (a scratch subdirectory is removed
    /// afterwards).
    #[arg(long)]
    pub(super) data_dir: PathBuf,
    /// Distinct keys. The first this many records write every key once;
    /// the rest update keys drawn at random (fixed seed).
    #[arg(long, default_value_t = 10_000)]
    pub(super) keys: u64,
    /// Records to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub(super) updates: u64,
    /// Bytes of each record's value.
    #[arg(long, value_parser = parse_size, default_value = "1024")]
    pub(super) value_size: u64,
    /// The cleaner's key map budget (`log.cleaner.dedupe.buffer.size`):
    /// more keys than fit are cleaned in further passes.
    #[arg(long, value_parser = parse_size, default_value = "128MiB")]
    pub(super) dedupe_buffer_bytes: u64,
    /// `segment.bytes` of the generated log (and of the cleaned groups).
    #[arg(long, value_parser = parse_size, default_value = "1GiB")]
    pub(super) segment_bytes: u64,
    /// Tiered compaction: the log is tiered to this store (file://DIR or
    /// s3://BUCKET[/PREFIX]; AWS_* variables apply) and cleaned there.
    #[arg(long)]
    pub(super) remote: Option<String>,
    /// With --remote: the remote read path's chunk cache
    /// (`remote.cache.bytes`), part of the RSS.
    #[arg(long, value_parser = parse_size, default_value = "256MiB")]
    pub(super) remote_cache_bytes: u64,
    /// With --remote: an S3 profile of the store, for the engine and the
    /// raw baseline alike (off by default).
    #[command(flatten)]
    pub(super) store_profile: super::store_profile::StoreProfileArgs,
}

pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// Peak resident set size of this process (VmHWM), in KiB.
pub(super) fn peak_rss_kib() -> Result<u64, Error> {
    status_kib("VmHWM")
}

/// A `<field>: <n> kB` line of /proc/self/status (VmHWM, VmRSS), in KiB.
pub(super) fn status_kib(field: &str) -> Result<u64, Error> {
    let path = Path::new("/proc/self/status");
    let status =
        std::fs::read_to_string(path).map_err(|e| Error::io_public("cannot read", path, e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::internal(format!("no {field} line in /proc/self/status")))
}

/// Copy `sources` one after the other into `dest` (created), fsync it;
/// returns bytes copied and the time taken.
fn raw_copy(sources: &[PathBuf], dest: &Path) -> Result<(u64, Duration), Error> {
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut out =
        std::fs::File::create(dest).map_err(|e| Error::io_public("cannot create", dest, e))?;
    let mut bytes = 0u64;
    for src in sources {
        let mut f =
            std::fs::File::open(src).map_err(|e| Error::io_public("cannot open", src, e))?;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| Error::io_public("cannot read", src, e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| Error::io_public("cannot write", dest, e))?;
            bytes += n as u64;
        }
    }
    out.sync_all()
        .map_err(|e| Error::io_public("cannot fsync", dest, e))?;
    Ok((bytes, start.elapsed()))
}

/// Append `updates` records over `keys` keys to partition 0 of `TOPIC`,
/// then roll and fsync so that every record is in a sealed, fsynced
/// segment the cleaner may take.
pub(super) fn generate(engine: &Engine, args: &CompactArgs) -> Result<(), Error> {
    let value_size = args.value_size as usize;
    let per_batch = (BATCH_BYTES / args.value_size.max(1)).max(1);
    // Values are windows of one random buffer (no compression: their
    // content does not change the work).
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let filler: Vec<u8> = (0..value_size + 4096).map(|_| next() as u8).collect();
    let ts = SystemClock.now_ms();
    let mut i = 0u64;
    while i < args.updates {
        let mut builder = BatchBuilder::new();
        let end = (i + per_batch).min(args.updates);
        for r in i..end {
            let key = if r < args.keys { r } else { next() % args.keys };
            let at = (r as usize * 8) % 4096;
            builder.push(Record::new(
                Some(format!("key-{key:010}").into_bytes()),
                Some(filler[at..at + value_size].to_vec()),
                ts,
            ));
        }
        let mut batch = builder
            .build()
            .map_err(|e| Error::invalid(format!("cannot build benchmark batch: {e}")))?;
        engine.append(TOPIC, 0, &mut batch)?;
        i = end;
    }
    engine.with_log(TOPIC, 0, |l| {
        l.roll(SystemClock.now_ms())?;
        l.flush()
    })?;
    engine.flush()
}

/// What cleaning the whole log took.
pub(super) struct Cleaned {
    pub(super) passes: usize,
    /// The passes' reports, summed.
    pub(super) stats: CleanStats,
    pub(super) elapsed: Duration,
}

/// Run the cleaner until the log is clean up to `end` (timed): more keys
/// than one map holds take several passes, as the job would over its next
/// runs.
pub(super) fn clean_whole_log(engine: &Engine, end: i64) -> Result<Cleaned, Error> {
    let mut passes = 0usize;
    let mut stats = CleanStats::default();
    let start = Instant::now();
    loop {
        let report = engine.run_log_cleaner();
        if report.partitions_cleaned == 0 {
            break;
        }
        passes += 1;
        let s = report.stats;
        stats.bytes_read += s.bytes_read;
        stats.bytes_written += s.bytes_written;
        stats.records_read += s.records_read;
        stats.records_kept += s.records_kept;
        stats.batches_rewritten += s.batches_rewritten;
        stats.remote_get_requests += s.remote_get_requests;
        stats.remote_put_requests += s.remote_put_requests;
        let first_dirty =
            engine.with_log(TOPIC, 0, |l| Ok(l.cleaner_checkpoint().first_dirty_offset))?;
        if first_dirty >= end || passes >= MAX_PASSES {
            break;
        }
    }
    let elapsed = start.elapsed();
    let first_dirty =
        engine.with_log(TOPIC, 0, |l| Ok(l.cleaner_checkpoint().first_dirty_offset))?;
    if passes == 0 || first_dirty < end {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "the cleaner did not clean the whole log: {passes} passes, clean up to offset {first_dirty} of {end}, {} failed passes; see the log for the cause",
                engine.log_cleaner().totals.failures.load(Ordering::Relaxed)
            ),
        ));
    }
    Ok(Cleaned {
        passes,
        stats,
        elapsed,
    })
}

pub(super) fn compact(args: CompactArgs) -> Result<ExitCode, Error> {
    if args.keys == 0 || args.updates == 0 {
        return Err(Error::invalid("--keys and --updates must be positive"));
    }
    let scratch = args.data_dir.join(format!(
        "tierlog-perf-compact-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| Error::io_public("cannot create", &scratch, e))?;
    let result = match &args.remote {
        Some(url) => super::compact_tiered::run(&args, &scratch, url),
        None => {
            if !args.store_profile.profile().is_off() {
                println!(
                    "compact: --store-latency-ms / --store-stream-mbps ignored without --remote"
                );
            }
            run(&args, &scratch)
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    result.map(|()| ExitCode::SUCCESS)
}

fn run(args: &CompactArgs, scratch: &Path) -> Result<(), Error> {
    let mut config = EngineConfig::new(scratch.join("engine")).with_clock(Arc::new(SystemClock));
    // No background jobs: the cleaner runs only when timed.
    config.flush_check_interval = None;
    config.cleaner.dedupe_buffer_bytes = args.dedupe_buffer_bytes;
    let engine = Engine::open(config)?;
    // A ratio of 0: when the keys do not fit one map, the next passes
    // clean the rest at once (the job would, over its next runs).
    let topic_configs = [
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), args.segment_bytes.to_string()),
        ("min.cleanable.dirty.ratio".to_string(), "0".to_string()),
    ]
    .into();
    engine.create_topic(TOPIC, 1, &topic_configs)?;
    generate(&engine, args)?;

    let (dir, segments, before, end) = engine.with_log(TOPIC, 0, |l| {
        let view = l.cleaner_view();
        let cleanable_end = view.cleanable.last().map_or(-1, |s| s.end_offset);
        if cleanable_end != l.log_end_offset() {
            return Err(Error::internal(format!(
                "the generated log is not all cleanable (cleanable to {cleanable_end}, log end {})",
                l.log_end_offset()
            )));
        }
        let paths: Vec<PathBuf> = view.cleanable.iter().map(|s| s.log_path.clone()).collect();
        Ok((view.dir, paths, l.size_bytes(), l.log_end_offset()))
    })?;
    println!(
        "compact: {} records over {} keys, {} B values, {:.1} MiB in {} segments of up to {:.1} MiB, dedupe buffer {:.1} MiB",
        args.updates,
        args.keys.min(args.updates),
        args.value_size,
        mib(before),
        segments.len(),
        mib(args.segment_bytes),
        mib(args.dedupe_buffer_bytes)
    );

    // Raw baseline, first half: the segments as they are, copied within
    // the partition's directory; the copy then moves aside to be the
    // second half's source.
    let copy_1 = dir.join("raw-copy-1.bin");
    let (raw1_bytes, raw1) = raw_copy(&segments, &copy_1)?;
    let source_2 = scratch.join("raw-source.bin");
    std::fs::rename(&copy_1, &source_2).map_err(|e| Error::io_public("cannot move", &copy_1, e))?;

    let Cleaned {
        passes,
        stats,
        elapsed: clean_elapsed,
    } = clean_whole_log(&engine, end)?;
    let after = engine.with_log(TOPIC, 0, |l| Ok(l.size_bytes()))?;

    let copy_2 = dir.join("raw-copy-2.bin");
    let (raw2_bytes, raw2) = raw_copy(std::slice::from_ref(&source_2), &copy_2)?;
    let _ = std::fs::remove_file(&copy_2);
    let _ = std::fs::remove_file(&source_2);
    println!(
        "compact: {passes} passes, the cleaner read {:.1} MiB and wrote {:.1} MiB in {:.3} s",
        mib(stats.bytes_read),
        mib(stats.bytes_written),
        clean_elapsed.as_secs_f64()
    );
    println!(
        "compact: raw read + write {:.1} MB/s before the cleaning, {:.1} MB/s after",
        raw1_bytes as f64 / 1e6 / raw1.as_secs_f64(),
        raw2_bytes as f64 / 1e6 / raw2.as_secs_f64()
    );
    engine.shutdown()?;
    drop(engine);

    let peak_rss_mib = peak_rss_kib()?.div_ceil(1024);
    let compact_mbps = before as f64 / 1e6 / clean_elapsed.as_secs_f64();
    let raw_mbps = (raw1_bytes + raw2_bytes) as f64 / 1e6 / (raw1 + raw2).as_secs_f64();
    println!(
        "compact: RSS target with many keys (dedupe buffer + 64 MiB): {:.1} MiB",
        mib(args.dedupe_buffer_bytes) + 64.0
    );
    println!("compact.MBps={compact_mbps:.1}");
    println!("raw_rw.MBps={raw_mbps:.1}");
    println!(
        "compact.bytes_after_ratio={:.4}",
        after as f64 / before as f64
    );
    println!("compact.peak_rss_mib={peak_rss_mib}");
    println!("compact.ratio_vs_raw_rw={:.3}", compact_mbps / raw_mbps);
    Ok(())
}
