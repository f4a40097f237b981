//! `tierlog perf catchup`: catch-up reads of tiered data through the
//! engine's remote path against parallel ranged GETs of the same objects.
//! With `--partitions P` the log is P partitions of `--total-bytes / P`
//! each, read concurrently as P catch-up consumers would; with
//! `--store-latency-ms` / `--store-stream-mbps` the store (the engine's and
//! the baseline's alike) answers like S3.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierlog::clock::SystemClock;
use tierlog::{Engine, EngineConfig, Error};

use super::{batch_pool, delete_prefix, run_url, runtime_error};
use crate::cli::parse_size;

#[derive(clap::Args)]
pub struct CatchupArgs {
    /// Directory for the generated log (a scratch subdirectory is removed
    /// afterwards).
    #[arg(long)]
    data_dir: PathBuf,
    /// The store: file://DIR or s3://BUCKET[/PREFIX] (AWS_* variables apply).
    #[arg(long)]
    remote: String,
    /// Bytes of log to generate, tier and read back (whole batches, at
    /// most this many).
    #[arg(long, value_parser = parse_size, default_value = "1GiB")]
    total_bytes: u64,
    /// Segment size of the generated log (Kafka's default segment.bytes).
    #[arg(long, value_parser = parse_size, default_value = "1GiB")]
    segment_bytes: u64,
    /// Ranged GET size (`remote.fetch.chunk.bytes`).
    #[arg(long, value_parser = parse_size, default_value = "8MiB")]
    chunk_bytes: u64,
    /// Chunks read ahead at first (`remote.fetch.prefetch.chunks`; the
    /// window grows from there).
    #[arg(long, default_value_t = 2)]
    prefetch_chunks: usize,
    /// Bytes asked for per read, as a consumer's max.partition.fetch.bytes.
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    fetch_bytes: u64,
    /// Partitions, each of `--total-bytes / P`, read concurrently (one
    /// catch-up consumer each).
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// The chunk cache (`remote.cache.bytes`; default the broker's).
    #[arg(long, value_parser = parse_size, default_value_t = tierlog::remote::fetcher::DEFAULT_CACHE_BYTES)]
    cache_bytes: u64,
    /// Chunk GETs in flight per broker (`remote.fetch.max.concurrent.gets`).
    #[arg(long, default_value_t = tierlog::remote::fetcher::DEFAULT_MAX_CONCURRENT_GETS)]
    max_concurrent_gets: usize,
    /// Ranged GETs the raw baseline keeps in flight.
    #[arg(long, default_value_t = 32)]
    raw_gets_in_flight: usize,
    #[command(flatten)]
    store_profile: super::store_profile::StoreProfileArgs,
}

/// Ranged GETs of `chunk` bytes over `objects` (key, size), `parallel` in
/// flight; returns bytes read and the time taken.
async fn raw_gets(
    store: &tierlog::remote::RemoteStore,
    objects: &[(object_store::path::Path, u64)],
    chunk: u64,
    parallel: usize,
) -> Result<(u64, Duration), Error> {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    let ranges: Vec<(object_store::path::Path, std::ops::Range<u64>)> = objects
        .iter()
        .flat_map(|(key, size)| {
            (0..size.div_ceil(chunk))
                .map(move |n| (key.clone(), n * chunk..((n + 1) * chunk).min(*size)))
        })
        .collect();
    let start = Instant::now();
    let mut total = 0u64;
    let mut gets = futures::stream::iter(ranges)
        .map(|(key, range)| async move { store.store.get_range(&key, range).await })
        .buffered(parallel.max(1));
    while let Some(r) = gets.next().await {
        let bytes = r.map_err(|e| {
            Error::new(
                tierlog::ErrorKind::Unavailable,
                format!("raw GET failed: {e}"),
            )
        })?;
        total += bytes.len() as u64;
    }
    Ok((total, start.elapsed()))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub(super) fn catchup(args: CatchupArgs) -> Result<ExitCode, Error> {
    use std::sync::atomic::Ordering;
    use tierlog::remote::faults::FaultStore;
    use tierlog::remote::fetcher::FetchSettings;
    use tierlog::remote::keys::{segment_key, SegmentObject};
    use tierlog::RemoteSettings;

    const TOPIC: &str = "perf-catchup";
    let scratch = args.data_dir.join(format!(
        "tierlog-perf-catchup-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| Error::io_public("cannot create", &scratch, e))?;
    let tier_url = run_url(
        &args.remote,
        &format!("perf-{}", uuid::Uuid::new_v4().simple()),
    );
    // The engine's store is wrapped to count GETs; the raw baseline uses a
    // client of its own.
    let tier_store = args.store_profile.store(&tier_url)?;
    let counting = Arc::new(FaultStore::new(Arc::clone(&tier_store.store)));
    let faults = Arc::clone(&counting.faults);
    let raw_store = args.store_profile.store(&tier_url)?;
    let partitions = args.partitions.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(runtime_error)?;

    let result = (|| -> Result<(), Error> {
        let mut config =
            EngineConfig::new(scratch.join("engine")).with_clock(Arc::new(SystemClock));
        config.flush_check_interval = None;
        config.remote = Some(RemoteSettings {
            task_interval_ms: i64::MAX,
            fetch: FetchSettings {
                chunk_bytes: args.chunk_bytes,
                prefetch_chunks: args.prefetch_chunks,
                cache_bytes: args.cache_bytes,
                max_concurrent_gets: args.max_concurrent_gets,
                ..FetchSettings::default()
            },
            orphan_grace_ms: i64::MAX,
            max_segments_per_round: 10_000,
            store: Some(counting.clone()),
            ..RemoteSettings::new(tier_url.clone())
        });
        let engine = Engine::open(config)?;
        let topic_configs = [
            ("remote.storage.enable".to_string(), "true".to_string()),
            ("segment.bytes".to_string(), args.segment_bytes.to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
            ("local.retention.bytes".to_string(), "0".to_string()),
        ]
        .into();
        engine.create_topic(TOPIC, partitions, &topic_configs)?;
        let mut pool = batch_pool(1024, 16)?;
        let n = pool.len() as u64;
        let per_partition = args.total_bytes / u64::from(partitions);
        for p in 0..partitions {
            let mut written = 0u64;
            let mut i = 0u64;
            // Up to per_partition bytes, not past it, and no tail segment
            // smaller than a chunk (it would cost a whole GET for a few
            // bytes).
            loop {
                let b = &mut pool[(i % n) as usize];
                if written + b.len() as u64 > per_partition {
                    break;
                }
                let active = engine.with_log(TOPIC, p, |l| {
                    Ok(l.segments().last().map_or(0, |s| s.size()))
                })?;
                if active + b.len() as u64 > args.segment_bytes
                    && per_partition - written < args.chunk_bytes
                {
                    break;
                }
                engine.append(TOPIC, p, b)?;
                written += b.len() as u64;
                i += 1;
            }
            engine.with_log(TOPIC, p, |l| {
                let now = tierlog::clock::Clock::now_ms(&SystemClock);
                l.roll(now)?;
                l.flush()
            })?;
        }
        // Tier everything, then drop the local copies.
        let mut ends = Vec::new();
        for round in 0.. {
            engine.run_remote_round()?;
            let all: Result<Vec<_>, Error> =
                (0..partitions).map(|p| engine.offsets(TOPIC, p)).collect();
            let all = all?;
            let done = all
                .iter()
                .all(|o| o.local_log_start_offset == o.log_end_offset && o.log_start_offset == 0);
            if done && round >= 1 {
                ends = all.iter().map(|o| o.log_end_offset).collect();
                break;
            }
            if round >= 20 {
                return Err(Error::new(
                    tierlog::ErrorKind::Unavailable,
                    format!("the log did not move to the bucket entirely ({all:?}); see the log for the cause"),
                ));
            }
        }
        let mut all_segments = Vec::new();
        for p in 0..partitions {
            all_segments.extend(
                engine
                    .remote_segments(TOPIC, p)?
                    .into_iter()
                    .filter(|s| s.state == tierlog::catalog::RemoteState::CopyFinished),
            );
        }
        let segments: Vec<_> = all_segments
            .iter()
            .filter(|s| s.partition == 0)
            .cloned()
            .collect();
        let objects: Vec<(object_store::path::Path, u64)> = all_segments
            .iter()
            .map(|s| {
                (
                    segment_key(
                        &s.topic,
                        &s.topic_id,
                        s.partition,
                        s.base_offset,
                        &s.segment_uuid,
                        SegmentObject::Log,
                    ),
                    s.log_size,
                )
            })
            .collect();
        let total: u64 = objects.iter().map(|o| o.1).sum();
        let fetcher = engine
            .remote_fetcher()
            .ok_or_else(|| Error::invalid("no remote tier"))?;
        let chunk = fetcher.chunk_size(&segments[0]);
        let clear = || futures::executor::block_on(fetcher.cache().clear());

        // First byte: a cold engine read at a segment's start against one
        // raw GET of a chunk of another segment, alternating, median of 5.
        let mut cold = Vec::new();
        let mut raw_first = Vec::new();
        for round in 0..5 {
            let seg = &segments[round % segments.len()];
            let other = &objects[(round + 1) % objects.len()];
            let start = Instant::now();
            runtime
                .block_on(async {
                    use object_store::ObjectStoreExt;
                    raw_store
                        .store
                        .get_range(&other.0, 0..chunk.min(other.1))
                        .await
                })
                .map_err(|e| {
                    Error::new(
                        tierlog::ErrorKind::Unavailable,
                        format!("raw GET failed: {e}"),
                    )
                })?;
            raw_first.push(start.elapsed());
            clear();
            let start = Instant::now();
            let read = engine.read(TOPIC, 0, seg.base_offset, args.fetch_bytes as usize)?;
            cold.push(start.elapsed());
            if read.records.is_empty() {
                return Err(Error::internal("a cold read returned nothing"));
            }
            // Its prefetches finish before the next measurement.
            let deadline = Instant::now() + Duration::from_secs(60);
            while fetcher.prefetches_in_flight() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        let parallel = args.raw_gets_in_flight;
        let (raw1_bytes, raw1) =
            runtime.block_on(raw_gets(&raw_store, &objects, chunk, parallel))?;
        clear();
        let rss_reset = super::compact_tiered::reset_peak_rss();
        let rss_at_start_mib = super::compact::status_kib("VmRSS")? >> 10;
        let gets_before = faults.gets.load(Ordering::SeqCst);
        fetcher
            .stats()
            .max_gets_in_flight
            .store(0, Ordering::SeqCst);
        fetcher.stats().max_window.store(0, Ordering::SeqCst);
        let evictions_before = fetcher.cache().chunk_evictions();
        let dropped_before = fetcher.stats().dropped_behind.load(Ordering::SeqCst);
        let start = Instant::now();
        // One catch-up consumer per partition, all at once.
        let read_partition = |p: u32| -> Result<u64, Error> {
            let end = ends[p as usize];
            let mut offset = 0;
            let mut read_bytes = 0u64;
            while offset < end {
                let read = engine.read(TOPIC, p, offset, args.fetch_bytes as usize)?;
                let last = tierlog::format::Batches::new(&read.records)
                    .filter_map(|b| b.ok())
                    .map(|b| b.1.last_offset())
                    .last()
                    .ok_or_else(|| {
                        Error::internal(format!(
                            "an empty read of partition {p} at offset {offset}"
                        ))
                    })?;
                read_bytes += read.records.len() as u64;
                offset = last + 1;
            }
            Ok(read_bytes)
        };
        let read_bytes = std::thread::scope(|s| -> Result<u64, Error> {
            let readers: Vec<_> = (0..partitions)
                .map(|p| s.spawn(move || read_partition(p)))
                .collect();
            let mut sum = 0;
            for r in readers {
                sum += r
                    .join()
                    .map_err(|_| Error::internal("a catch-up reader panicked"))??;
            }
            Ok(sum)
        })?;
        let catchup_elapsed = start.elapsed();
        let peak_rss_mib = super::compact::peak_rss_kib()? >> 10;
        let max_gets = fetcher.stats().max_gets_in_flight.load(Ordering::SeqCst);
        let max_window = fetcher.stats().max_window.load(Ordering::SeqCst);
        let evictions = fetcher.cache().chunk_evictions() - evictions_before;
        let dropped = fetcher.stats().dropped_behind.load(Ordering::SeqCst) - dropped_before;
        let gets = faults.gets.load(Ordering::SeqCst) - gets_before;
        let chunk_gets = fetcher.stats().chunk_gets.load(Ordering::SeqCst);
        let index_gets = fetcher.stats().index_gets.load(Ordering::SeqCst);
        let (raw2_bytes, raw2) =
            runtime.block_on(raw_gets(&raw_store, &objects, chunk, parallel))?;
        engine.shutdown()?;
        if read_bytes != total {
            return Err(Error::internal(format!(
                "read back {read_bytes} bytes of {total}"
            )));
        }

        let catchup_mbps = read_bytes as f64 / 1e6 / catchup_elapsed.as_secs_f64();
        let raw_mbps = (raw1_bytes + raw2_bytes) as f64 / 1e6 / (raw1 + raw2).as_secs_f64();
        let (cold, raw_first) = (median(cold), median(raw_first));
        println!(
            "catchup: {:.1} MiB in {} segments of {partitions} partitions, chunk {} KiB, prefetch {} at first, reads of {} KiB, store {}",
            total as f64 / (1u64 << 20) as f64,
            all_segments.len(),
            chunk >> 10,
            args.prefetch_chunks,
            args.fetch_bytes >> 10,
            args.remote
        );
        println!(
            "catchup: {}; remote.cache.bytes {} MiB, remote.fetch.max.concurrent.gets {}, raw baseline {} GETs in flight",
            args.store_profile.describe(),
            args.cache_bytes >> 20,
            args.max_concurrent_gets,
            args.raw_gets_in_flight
        );
        println!("catchup.partitions={partitions}");
        println!("catchup.MBps={catchup_mbps:.1}");
        println!("raw_get.MBps={raw_mbps:.1}");
        println!("catchup.first_byte_ms={:.2}", cold.as_secs_f64() * 1e3);
        println!("raw_get.first_byte_ms={:.2}", raw_first.as_secs_f64() * 1e3);
        println!(
            "catchup.first_byte_ratio_vs_raw_get={:.3}",
            cold.as_secs_f64() / raw_first.as_secs_f64()
        );
        println!("catchup.get_requests={gets} (all phases: chunk GETs {chunk_gets}, index GETs {index_gets})");
        println!(
            "catchup.get_requests_per_gib={:.3}",
            gets as f64 / (read_bytes as f64 / (1u64 << 30) as f64)
        );
        println!("catchup.max_gets_in_flight={max_gets}");
        println!("catchup.max_read_ahead_chunks={max_window}");
        println!("catchup.chunk_evictions={evictions}");
        println!("catchup.chunks_dropped_behind={dropped}");
        if rss_reset {
            println!("catchup.rss_at_start_mib={rss_at_start_mib}");
            println!("catchup.peak_rss_mib={peak_rss_mib}");
        } else {
            println!(
                "catchup.peak_rss_mib={peak_rss_mib} (whole run: the peak could not be reset)"
            );
        }
        if partitions == 1 && args.store_profile.store_stream_mbps > 0.0 {
            println!(
                "catchup.single_partition_streams={:.2}",
                catchup_mbps / args.store_profile.store_stream_mbps
            );
        }
        println!("catchup.ratio_vs_raw_get={:.3}", catchup_mbps / raw_mbps);
        Ok(())
    })();
    // Leave nothing behind: local scratch and every object of the run.
    runtime.block_on(delete_prefix(&raw_store, None));
    if let Some(dir) = tier_url.strip_prefix("file://") {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result.map(|()| ExitCode::SUCCESS)
}
