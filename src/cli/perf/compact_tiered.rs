//! `tierlog perf compact --remote URL`: tiered compaction against a plain
//! read and write of the same bytes in the same store.
//!
//! The log is generated as for local compaction, on a topic with
//! `remote.storage.enable=true` and `local.retention.bytes=0`, tiered by
//! remote log manager rounds until the bucket holds all of it and no local
//! copy is left, and the engine is reopened (cold caches). Then, timed: the
//! raw baseline (every tiered `.log` object read with ranged GETs of the
//! remote read path's chunk size, as many in flight as the read path keeps
//! (the chunk a read needs and its prefetches), and written back as a new
//! object with the uploader's part size and parts in flight), the engine's
//! log cleaner until the whole log is clean (it reads the bucket through the
//! remote read path and uploads the cleaned segments), and the raw baseline
//! again (from the first copies: the engine's objects were replaced). Every
//! object of the run is deleted afterwards.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use tierlog::catalog::RemoteState;
use tierlog::clock::SystemClock;
use tierlog::remote::fetcher::FetchSettings;
use tierlog::remote::keys::{segment_key, SegmentObject};
use tierlog::remote::uploader::UploadSettings;
use tierlog::remote::RemoteStore;
use tierlog::{Engine, EngineConfig, Error, ErrorKind, RemoteSettings};

use super::compact::{
    clean_whole_log, generate, mib, peak_rss_kib, status_kib, Cleaned, CompactArgs, TOPIC,
};
use super::{delete_prefix, run_url, runtime_error};

/// The remote read path's chunk size here: the cleaner asks for 4 MiB per
/// read of a tiered segment, so each read is one ranged GET of that size.
const CHUNK_BYTES: u64 = 4 << 20;
/// Remote log manager rounds allowed to tier the generated log.
const MAX_ROUNDS: usize = 20;

fn unavailable(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, what.to_string())
}

/// Reset this process's peak RSS (VmHWM) to its current RSS, so that the
/// next reading covers what runs from now on; false where the kernel does
/// not allow it (then the peak covers the whole run). Memory the allocator
/// kept from earlier phases (the tiering's part buffers) is returned to the
/// OS first, where the allocator is glibc's.
pub(super) fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it takes no
    // pointer and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Read each of `objects` (key, size) with ranged GETs of `chunk` bytes,
/// `parallel` in flight, and write the bytes as they arrive to a new object
/// `<prefix>/<i>` (one PUT up to `upload.part_size`, else multipart with the
/// uploader's part size and parts in flight). Returns the new objects, the
/// bytes read (= written) and the time taken.
async fn raw_read_write(
    store: &RemoteStore,
    objects: &[(ObjectPath, u64)],
    prefix: &str,
    chunk: u64,
    parallel: usize,
    upload: UploadSettings,
) -> Result<(Vec<(ObjectPath, u64)>, u64, Duration), Error> {
    use futures::StreamExt;
    use object_store::{ObjectStoreExt, WriteMultipart};
    let start = Instant::now();
    let mut written = Vec::new();
    let mut total = 0u64;
    for (i, (key, size)) in objects.iter().enumerate() {
        let dest = ObjectPath::from(format!("{prefix}/{i}"));
        let put_failed = |e: object_store::Error| unavailable(format!("raw PUT of {dest}: {e}"));
        let ranges: Vec<std::ops::Range<u64>> = (0..size.div_ceil(chunk))
            .map(|n| n * chunk..((n + 1) * chunk).min(*size))
            .collect();
        let mut gets = futures::stream::iter(ranges)
            .map(|range| async move { store.store.get_range(key, range).await })
            .buffered(parallel.max(1));
        let get_failed = |e: object_store::Error| unavailable(format!("raw GET of {key}: {e}"));
        if *size as usize <= upload.part_size {
            let mut body = Vec::with_capacity(*size as usize);
            while let Some(bytes) = gets.next().await {
                body.extend_from_slice(&bytes.map_err(get_failed)?);
            }
            total += body.len() as u64;
            store
                .store
                .put(&dest, body.into())
                .await
                .map_err(put_failed)?;
        } else {
            let part = tierlog::remote::uploader::part_size_for(*size, upload.part_size);
            let multipart = store.store.put_multipart(&dest).await.map_err(put_failed)?;
            let mut w = WriteMultipart::new_with_chunk_size(multipart, part);
            while let Some(bytes) = gets.next().await {
                let bytes = bytes.map_err(get_failed)?;
                w.wait_for_capacity(upload.max_concurrency)
                    .await
                    .map_err(put_failed)?;
                total += bytes.len() as u64;
                w.write(&bytes);
            }
            w.finish().await.map_err(put_failed)?;
        }
        written.push((dest, *size));
    }
    Ok((written, total, start.elapsed()))
}

/// The benchmark against the store at `remote` (a fresh prefix of it);
/// leaves no object of the run behind.
pub(super) fn run(args: &CompactArgs, scratch: &Path, remote: &str) -> Result<(), Error> {
    let tier_url = run_url(remote, &format!("perf-{}", uuid::Uuid::new_v4().simple()));
    // The raw baseline uses a client of its own; the engine builds its
    // store from the URL and counts its requests itself.
    let raw_store = args.store_profile.store(&tier_url)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(runtime_error)?;
    let result = measure(args, scratch, remote, &tier_url, &raw_store, &runtime);
    // Leave nothing behind: every object of the run (the engine's and the
    // baseline's).
    runtime.block_on(delete_prefix(&raw_store, None));
    if let Some(dir) = tier_url.strip_prefix("file://") {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn measure(
    args: &CompactArgs,
    scratch: &Path,
    remote: &str,
    tier_url: &str,
    raw_store: &RemoteStore,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Error> {
    let mut config = EngineConfig::new(scratch.join("engine")).with_clock(Arc::new(SystemClock));
    // No background jobs: rounds and the cleaner run only when called.
    config.flush_check_interval = None;
    config.cleaner.dedupe_buffer_bytes = args.dedupe_buffer_bytes;
    let upload = UploadSettings::default();
    let fetch = FetchSettings {
        chunk_bytes: CHUNK_BYTES,
        cache_bytes: args.remote_cache_bytes,
        ..FetchSettings::default()
    };
    config.remote = Some(RemoteSettings {
        task_interval_ms: i64::MAX,
        upload,
        fetch,
        orphan_grace_ms: i64::MAX,
        max_segments_per_round: 10_000,
        // The engine's own client, in the same S3 profile as the baseline's.
        store: (!args.store_profile.profile().is_off())
            .then(|| args.store_profile.store(tier_url).map(|s| s.store))
            .transpose()?,
        ..RemoteSettings::new(tier_url)
    });
    let engine = Engine::open(config.clone())?;
    // A ratio of 0: when the keys do not fit one map, the next passes
    // clean the rest at once (the job would, over its next runs).
    let topic_configs = [
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("remote.storage.enable".to_string(), "true".to_string()),
        ("local.retention.bytes".to_string(), "0".to_string()),
        ("segment.bytes".to_string(), args.segment_bytes.to_string()),
        ("min.cleanable.dirty.ratio".to_string(), "0".to_string()),
    ]
    .into();
    engine.create_topic(TOPIC, 1, &topic_configs)?;
    generate(&engine, args)?;

    // Tier every sealed segment; the local copies go
    // (local.retention.bytes=0).
    let mut rounds = 0;
    let end = loop {
        engine.run_remote_round()?;
        rounds += 1;
        let o = engine.offsets(TOPIC, 0)?;
        let tiered = o.last_tiered_offset.map_or(0, |t| t + 1);
        if tiered == o.log_end_offset && o.local_log_start_offset == o.log_end_offset {
            break o.log_end_offset;
        }
        if rounds >= MAX_ROUNDS {
            return Err(unavailable(format!(
                "the log did not move to the bucket entirely in {rounds} rounds ({o:?}); see the log for the cause"
            )));
        }
    };
    let tiered = |engine: &Engine| -> Result<Vec<_>, Error> {
        Ok(engine
            .remote_segments(TOPIC, 0)?
            .into_iter()
            .filter(|s| s.state == RemoteState::CopyFinished)
            .collect())
    };
    let segments = tiered(&engine)?;
    let objects: Vec<(ObjectPath, u64)> = segments
        .iter()
        .map(|s| {
            let key = segment_key(
                &s.topic,
                &s.topic_id,
                s.partition,
                s.base_offset,
                &s.segment_uuid,
                SegmentObject::Log,
            );
            (key, s.log_size)
        })
        .collect();
    let local_before = engine.with_log(TOPIC, 0, |l| Ok(l.size_bytes()))?;
    let before: u64 = objects.iter().map(|o| o.1).sum::<u64>() + local_before;
    // Cold caches: what the pass reads comes from the store.
    engine.shutdown()?;
    drop(engine);
    let engine = Engine::open(config)?;
    let fetcher = engine
        .remote_fetcher()
        .ok_or_else(|| Error::internal("the reopened engine has no remote tier"))?;
    let first = segments
        .first()
        .ok_or_else(|| Error::internal("nothing was tiered"))?;
    let chunk = fetcher.chunk_size(first);
    // The chunk a sequential read needs and the ones it prefetches.
    let parallel = fetch.prefetch_chunks + 1;
    println!(
        "compact: {} records over {} keys, {} B values, {:.1} MiB tiered in {} segments of up to {:.1} MiB ({rounds} rounds), dedupe buffer {:.1} MiB, store {remote}",
        args.updates,
        args.keys.min(args.updates),
        args.value_size,
        mib(before),
        segments.len(),
        mib(args.segment_bytes),
        mib(args.dedupe_buffer_bytes)
    );
    println!("compact: {}", args.store_profile.describe());
    println!(
        "compact: ranged GETs of {} KiB ({parallel} in flight), parts of {} MiB ({} in flight), remote cache {:.1} MiB",
        chunk >> 10,
        upload.part_size >> 20,
        upload.max_concurrency,
        mib(args.remote_cache_bytes)
    );

    // Raw baseline, first half: the engine's objects, copied to new ones
    // that are the second half's source.
    let (copies, raw1_bytes, raw1) = runtime.block_on(raw_read_write(
        raw_store, &objects, "raw-1", chunk, parallel, upload,
    ))?;

    // The peak RSS from here covers the cleaning (not the generation or
    // the tiering, whose uploads buffer parts of whole segments).
    let rss_reset = reset_peak_rss();
    let rss_at_reset_mib = status_kib("VmRSS")?.div_ceil(1024);
    let Cleaned {
        passes,
        stats,
        elapsed: clean_elapsed,
    } = clean_whole_log(&engine, end)?;
    let peak_rss_mib = peak_rss_kib()?.div_ceil(1024);
    let local_after = engine.with_log(TOPIC, 0, |l| Ok(l.size_bytes()))?;
    let after_segments = tiered(&engine)?;
    let after: u64 = after_segments.iter().map(|s| s.log_size).sum::<u64>() + local_after;

    let (_, raw2_bytes, raw2) = runtime.block_on(raw_read_write(
        raw_store, &copies, "raw-2", chunk, parallel, upload,
    ))?;
    engine.shutdown()?;
    drop(engine);

    println!(
        "compact: {passes} passes, the cleaner read {:.1} MiB and wrote {:.1} MiB in {:.3} s with {} GETs and {} PUTs; {} tiered segments after",
        mib(stats.bytes_read),
        mib(stats.bytes_written),
        clean_elapsed.as_secs_f64(),
        stats.remote_get_requests,
        stats.remote_put_requests,
        after_segments.len()
    );
    println!(
        "compact: raw GET + PUT {:.1} MB/s before the cleaning, {:.1} MB/s after",
        raw1_bytes as f64 / 1e6 / raw1.as_secs_f64(),
        raw2_bytes as f64 / 1e6 / raw2.as_secs_f64()
    );
    if rss_reset {
        println!("compact: RSS {rss_at_reset_mib} MiB when the peak was reset before the cleaning");
    } else {
        println!(
            "compact: the peak RSS could not be reset before the cleaning: it covers the whole run"
        );
    }
    let gib = before as f64 / (1u64 << 30) as f64;
    let compact_mbps = before as f64 / 1e6 / clean_elapsed.as_secs_f64();
    let raw_mbps = (raw1_bytes + raw2_bytes) as f64 / 1e6 / (raw1 + raw2).as_secs_f64();
    println!("compact.MBps={compact_mbps:.1}");
    println!("raw_rw.MBps={raw_mbps:.1}");
    println!(
        "compact.bytes_after_ratio={:.4}",
        after as f64 / before as f64
    );
    println!(
        "compact.remote_get_requests_per_gib={:.1}",
        stats.remote_get_requests as f64 / gib
    );
    println!(
        "compact.remote_put_requests_per_gib={:.1}",
        stats.remote_put_requests as f64 / gib
    );
    println!("compact.peak_rss_mib={peak_rss_mib}");
    println!("compact.ratio_vs_raw_rw={:.3}", compact_mbps / raw_mbps);
    Ok(())
}
